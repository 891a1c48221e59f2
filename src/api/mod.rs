//! The HTTP API: Prometheus's `/api/v1` shapes over tidemark's storage and query engine, the
//! lifecycle endpoints, and whatever else Grafana's Prometheus data source calls.
//!
//! `api` may call `query`, `storage` and `model`; it must never call `scrape` or `cli` (target
//! state reaches it through [`TargetsView`], implemented by the caller).

mod params;
mod response;
mod series;
mod status;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use axum::Router;
use axum::routing::get;

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
    pub health: String,
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

/// What the scraper tells the API about its targets.
pub trait TargetsView: Send + Sync + 'static {
    /// Active targets and dropped ones.
    fn targets(&self) -> (Vec<ActiveTarget>, Vec<DroppedTarget>);
}

/// Everything the handlers read.
pub struct ApiState {
    /// Storage.
    pub db: Arc<Db>,
    /// Scrape targets.
    pub targets: Arc<dyn TargetsView>,
    /// The configuration file as loaded, for `/api/v1/status/config`.
    pub config_yaml: String,
    /// When the process started.
    pub started: SystemTime,
    /// Set once startup (WAL replay, first config) is done; `/-/ready` answers 503 before.
    pub ready: AtomicBool,
    /// Where `/-/reload` asks for a reload (and gets the outcome); `None` when the lifecycle
    /// API is off, and the endpoint answers 403.
    pub reload: Option<ReloadSender>,
}

/// Asks the agent to reload its configuration; the reply says whether it worked.
pub type ReloadSender = tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<Result<(), String>>>;

/// The router with every endpoint.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/metrics", get(status::metrics))
        .route("/-/healthy", get(status::healthy).head(status::healthy))
        .route("/-/ready", get(status::ready).head(status::ready))
        .route(
            "/-/reload",
            axum::routing::post(status::reload).put(status::reload),
        )
        .route("/api/v1/status/buildinfo", get(status::buildinfo))
        .route("/api/v1/status/config", get(status::config))
        .route("/api/v1/status/runtimeinfo", get(status::runtimeinfo))
        .route("/api/v1/targets", get(status::targets))
        .route("/api/v1/series", get(series::series).post(series::series))
        .route("/api/v1/labels", get(series::labels).post(series::labels))
        .route("/api/v1/label/{name}/values", get(series::label_values))
        .with_state(state)
}

impl ApiState {
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}
