//! The HTTP API: Prometheus's `/api/v1` shapes over tidemark's storage and query engine, the
//! lifecycle endpoints, and whatever else Grafana's Prometheus data source calls.
//!
//! `api` may call `query`, `storage` and `model`; it must never call `scrape` or `cli` (target
//! state reaches it through [`TargetsView`], implemented by the caller).

mod admin;
mod federate;
/// Public for `benches/json.rs` only.
#[doc(hidden)]
pub mod json;
mod metadata;
mod params;
mod query;
mod response;
mod series;
pub mod server;
mod status;
pub mod web;
mod write;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use axum::Router;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::model::Health;
use crate::query::Engine;
use crate::storage::Db;

pub use response::ApiError;

/// One active scrape target as `/api/v1/targets` lists it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveTarget {
    /// Labels before relabeling.
    pub discovered_labels: std::collections::BTreeMap<String, String>,
    /// Labels the target's series get.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The job name.
    pub scrape_pool: String,
    /// The URL scraped.
    pub scrape_url: String,
    /// The same URL as seen from outside (no rewriting here).
    pub global_url: String,
    /// The last scrape's error, empty when it succeeded.
    pub last_error: String,
    /// Start of the last scrape, RFC 3339.
    pub last_scrape: String,
    /// Seconds the last scrape took.
    pub last_scrape_duration: f64,
    /// `up`, `down` or `unknown`.
    pub health: Health,
    /// Prometheus duration.
    pub scrape_interval: String,
    /// Prometheus duration.
    pub scrape_timeout: String,
}

/// A target dropped by relabeling.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DroppedTarget {
    /// Labels before relabeling.
    pub discovered_labels: std::collections::BTreeMap<String, String>,
    /// The job name.
    #[serde(skip)]
    pub scrape_pool: String,
}

/// One metric family's metadata as a target exposed it (`# TYPE`, `# HELP`, `# UNIT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetadataRef<'a> {
    /// `counter`, `gauge`, … `unknown` when the family had no TYPE line.
    pub kind: &'a str,
    /// The HELP text, empty without one.
    pub help: &'a str,
    /// The UNIT, empty without one.
    pub unit: &'a str,
}

/// What the scraper tells the API about its targets.
pub trait TargetsView: Send + Sync + 'static {
    /// Active targets and dropped ones.
    fn targets(&self) -> (Vec<ActiveTarget>, Vec<DroppedTarget>);

    /// Calls `f` with each metric family's metadata of each active target, in target order;
    /// only for family `metric` when given. Without a scraper there is none.
    fn metadata(&self, metric: Option<&str>, f: &mut dyn FnMut(&str, MetadataRef<'_>)) {
        let _ = (metric, f);
    }
}

/// Everything the handlers read.
pub struct ApiState {
    /// Storage.
    pub db: Arc<Db>,
    /// The PromQL engine, with the query limits in force.
    pub engine: Arc<Engine>,
    /// Scrape targets.
    pub targets: Arc<dyn TargetsView>,
    /// The configuration in force as `Config::render` writes it (secrets as `<secret>`), for
    /// `/api/v1/status/config`; replaced by each successful reload.
    pub config_yaml: std::sync::RwLock<String>,
    /// When the process started.
    pub started: SystemTime,
    /// Set once startup (WAL replay, first config) is done; `/-/ready` answers 503 before.
    pub ready: AtomicBool,
    /// Where `/-/reload` asks for a reload (and gets the outcome); `None` when the lifecycle
    /// API is off, and the endpoint answers 403.
    pub reload: Option<ReloadSender>,
    /// Where `/-/quit` asks the agent to shut down; `None` when the lifecycle API is off.
    pub quit: Option<QuitSender>,
    /// Serve the admin API (`/api/v1/admin/tsdb/...`); off answers as Prometheus does.
    pub admin_api: bool,
    /// Accept remote write at `/api/v1/write`; off answers 404.
    pub remote_write_receiver: bool,
    /// The effective settings under Prometheus's flag names, for `/api/v1/status/flags`.
    pub flags: BTreeMap<String, String>,
    /// `global.external_labels`, added to what `/federate` serves.
    pub external_labels: BTreeMap<String, String>,
    /// Basic auth, CORS and the request body limit applied to every endpoint.
    pub web: Arc<web::WebSecurity>,
}

/// Asks the agent to reload its configuration; the reply says whether it worked.
pub type ReloadSender =
    tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<Result<(), ReloadError>>>;

/// Why a reload failed; `/-/reload` answers `failed to reload config: ` and this text.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The configuration, or a file it names, could not be loaded, so nothing changed. The
    /// text has every cause, outermost first (`a: b: c`).
    #[error("{0}")]
    Config(String),
    /// The scrape jobs were applied but a remote's client could not be built; the previous
    /// remote write queues keep running.
    #[error("remote_write: {0}")]
    RemoteWrite(#[source] crate::remote_write::RemoteWriteError),
}

/// Asks the agent to shut down, as SIGTERM does.
pub type QuitSender = tokio::sync::mpsc::Sender<()>;

/// The router with every endpoint, behind `state.web`'s basic auth, CORS and body limit.
pub fn router(state: Arc<ApiState>) -> Router {
    let sec = state.web.clone();
    // The extractors' own limit (axum's default is 2 MiB) set to the configured one, so a
    // body without a Content-Length is cut off at the same size.
    let body_limit = match usize::try_from(sec.max_body()) {
        Ok(0) | Err(_) => axum::extract::DefaultBodyLimit::disable(),
        Ok(n) => axum::extract::DefaultBodyLimit::max(n),
    };
    Router::new()
        .route("/metrics", get(status::metrics))
        .route("/federate", get(federate::federate))
        .route("/-/healthy", get(status::healthy).head(status::healthy))
        .route("/-/ready", get(status::ready).head(status::ready))
        .route(
            "/-/reload",
            post(status::reload)
                .put(status::reload)
                .get(status::lifecycle_get),
        )
        .route(
            "/-/quit",
            post(status::quit)
                .put(status::quit)
                .get(status::lifecycle_get),
        )
        .route(
            "/api/v1/query",
            get(query::query)
                .post(query::query)
                .route_layer(axum::middleware::from_fn(queries_in_flight)),
        )
        .route(
            "/api/v1/query_range",
            get(query::query_range)
                .post(query::query_range)
                .route_layer(axum::middleware::from_fn(queries_in_flight)),
        )
        .route(
            "/api/v1/query_exemplars",
            get(query::query_exemplars).post(query::query_exemplars),
        )
        .route(
            "/api/v1/format_query",
            get(query::format_query).post(query::format_query),
        )
        .route("/api/v1/series", get(series::series).post(series::series))
        .route("/api/v1/labels", get(series::labels).post(series::labels))
        // GET only, as in Prometheus: Grafana never POSTs here.
        .route("/api/v1/label/{name}/values", get(series::label_values))
        .route("/api/v1/metadata", get(metadata::metadata))
        .route("/api/v1/rules", get(status::rules))
        .route("/api/v1/alerts", get(status::alerts))
        .route("/api/v1/status/buildinfo", get(status::buildinfo))
        .route("/api/v1/status/config", get(status::config))
        .route("/api/v1/status/flags", get(status::flags))
        .route("/api/v1/status/runtimeinfo", get(status::runtimeinfo))
        .route("/api/v1/status/tsdb", get(status::tsdb))
        .route("/api/v1/targets", get(status::targets))
        .route(
            "/api/v1/admin/tsdb/delete_series",
            post(admin::delete_series).put(admin::delete_series),
        )
        .route(
            "/api/v1/admin/tsdb/clean_tombstones",
            post(admin::clean_tombstones).put(admin::clean_tombstones),
        )
        .route(
            "/api/v1/admin/tsdb/snapshot",
            post(admin::snapshot).put(admin::snapshot),
        )
        .route("/api/v1/write", post(write::write))
        // Routes go above this line: the layers below wrap only the routes added before them.
        .layer(body_limit)
        .layer(axum::middleware::from_fn_with_state(
            sec.clone(),
            web::body_limit,
        ))
        .layer(axum::middleware::from_fn(api_options))
        .layer(axum::middleware::from_fn_with_state(sec.clone(), web::cors))
        .layer(axum::middleware::from_fn_with_state(sec, web::basic_auth))
        .layer(axum::middleware::from_fn(crate::telemetry::http_metrics))
        .with_state(state)
}

/// Counts a PromQL query in `tidemark_queries_in_flight` from when its request reaches the
/// handler (waiting for an engine slot included) until its response is ready.
async fn queries_in_flight(req: Request, next: Next) -> Response {
    let _in_flight = crate::telemetry::QueryInFlight::start();
    next.run(req).await
}

/// Prometheus answers OPTIONS on any `/api/v1/` path with 204 and no body: a CORS preflight,
/// which gets its CORS headers from `web::cors` (none unless `web.cors_origin` is set, so
/// browsers refuse cross-origin reads by default).
async fn api_options(req: Request, next: Next) -> Response {
    if req.method() == Method::OPTIONS && req.uri().path().starts_with("/api/v1/") {
        return StatusCode::NO_CONTENT.into_response();
    }
    next.run(req).await
}

impl ApiState {
    /// State over `db` and `engine` with no targets' config, flags or external labels, not
    /// ready, lifecycle API off; callers fill in what they have.
    pub fn new(db: Arc<Db>, engine: Arc<Engine>, targets: Arc<dyn TargetsView>) -> ApiState {
        ApiState {
            db,
            engine,
            targets,
            config_yaml: std::sync::RwLock::new(String::new()),
            started: SystemTime::now(),
            ready: AtomicBool::new(false),
            reload: None,
            quit: None,
            admin_api: false,
            remote_write_receiver: false,
            flags: BTreeMap::new(),
            external_labels: BTreeMap::new(),
            web: Arc::default(),
        }
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// The current time in milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
