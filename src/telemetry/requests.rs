//! Process-wide query and HTTP metrics: typed `prometheus-client` families the API records into
//! and every render registers.

use std::sync::OnceLock;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds (seconds) of the query duration histogram.
const QUERY_BOUNDS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// Upper bounds (seconds) of the HTTP request duration histogram.
const HTTP_BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

/// The query kinds [`observe_query`] distinguishes.
const QUERY_KINDS: [&str; 2] = ["instant", "range"];

/// The outcomes [`observe_query`] distinguishes: success, then the API's `errorType`s.
const QUERY_RESULTS: [&str; 8] = [
    "success",
    "bad_data",
    "execution",
    "timeout",
    "canceled",
    "internal",
    "unavailable",
    "not_found",
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueryLabels {
    kind: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    handler: String,
    code: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerLabel {
    handler: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

struct RequestMetrics {
    queries: Family<QueryLabels, Counter>,
    query_durations: HistogramFamily<KindLabel>,
    http_requests: Family<HttpLabels, Counter>,
    http_durations: HistogramFamily<HandlerLabel>,
    queries_in_flight: Gauge,
    connections_open: Gauge,
    connection_limit_reached: Counter,
    connection_timeouts: Counter,
}

fn metrics() -> &'static RequestMetrics {
    static METRICS: OnceLock<RequestMetrics> = OnceLock::new();
    METRICS.get_or_init(|| RequestMetrics {
        queries: Family::default(),
        query_durations: Family::new_with_constructor(|| Histogram::new(QUERY_BOUNDS)),
        http_requests: Family::default(),
        http_durations: Family::new_with_constructor(|| Histogram::new(HTTP_BOUNDS)),
        queries_in_flight: Gauge::default(),
        connections_open: Gauge::default(),
        connection_limit_reached: Counter::default(),
        connection_timeouts: Counter::default(),
    })
}

/// One PromQL query being answered, counted in `tidemark_queries_in_flight` until dropped.
#[must_use = "the query counts as in flight only while this lives"]
pub struct QueryInFlight(());

impl QueryInFlight {
    /// Counts a query as in flight.
    pub fn start() -> QueryInFlight {
        metrics().queries_in_flight.inc();
        QueryInFlight(())
    }
}

impl Drop for QueryInFlight {
    fn drop(&mut self) {
        metrics().queries_in_flight.dec();
    }
}

/// One HTTP connection accepted and not yet closed, counted in
/// `tidemark_http_connections_open` until dropped.
#[must_use = "the connection counts as open only while this lives"]
pub struct ConnectionOpen(());

impl ConnectionOpen {
    /// Counts a connection as open.
    pub fn start() -> ConnectionOpen {
        metrics().connections_open.inc();
        ConnectionOpen(())
    }
}

impl Drop for ConnectionOpen {
    fn drop(&mut self) {
        metrics().connections_open.dec();
    }
}

/// Counts one pause of the accept loop at `web.max_connections`.
pub fn connection_limit_reached() {
    metrics().connection_limit_reached.inc();
}

/// Counts one connection closed for sending no complete request headers within
/// `web.read_header_timeout` (silent, slow or idle).
pub fn connection_timed_out() {
    metrics().connection_timeouts.inc();
}

/// One of `known`, or `"other"`: label values stay a small fixed set whatever callers pass.
fn known(v: &str, known: &[&'static str]) -> &'static str {
    known.iter().find(|k| **k == v).copied().unwrap_or("other")
}

/// Records one PromQL evaluation: `kind` is `instant` or `range`; `outcome` is `success` or
/// the API's `errorType` (`bad_data`, `execution`, `timeout`, `canceled`, `internal`,
/// `unavailable`, `not_found`); anything else counts as `other`. `secs` is the wall time from
/// parsing to the result.
pub fn observe_query(kind: &str, outcome: &str, secs: f64) {
    let m = metrics();
    let kind = known(kind, &QUERY_KINDS);
    let result = known(outcome, &QUERY_RESULTS);
    m.queries.get_or_create(&QueryLabels { kind, result }).inc();
    m.query_durations
        .get_or_create(&KindLabel { kind })
        .observe(secs.max(0.0));
}

/// Records one HTTP request: `handler` is the route pattern (`/api/v1/query`, never the raw
/// path, which would make one series per URL), `code` the response status.
pub fn observe_http(handler: &str, code: u16, secs: f64) {
    let m = metrics();
    m.http_requests
        .get_or_create(&HttpLabels {
            handler: handler.to_string(),
            code,
        })
        .inc();
    m.http_durations
        .get_or_create(&HandlerLabel {
            handler: handler.to_string(),
        })
        .observe(secs.max(0.0));
}

/// Axum middleware recording every request with [`observe_http`]; the handler label is the
/// matched route pattern, `other` for requests no route matched. Add it with
/// `Router::layer(axum::middleware::from_fn(telemetry::http_metrics))`. The duration ends when
/// the response head is ready, before a streamed body is sent.
pub async fn http_metrics(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let handler = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string());
    let began = Instant::now();
    let resp = next.run(req).await;
    observe_http(
        handler.as_deref().unwrap_or("other"),
        resp.status().as_u16(),
        began.elapsed().as_secs_f64(),
    );
    resp
}

/// Adds the query and HTTP families (shared handles, not copies) to a render's registry.
pub(super) fn register(reg: &mut Registry) {
    let m = metrics();
    reg.register(
        "tidemark_queries",
        "PromQL queries evaluated, by kind (instant, range) and result (success or the API error type)",
        m.queries.clone(),
    );
    reg.register(
        "tidemark_query_duration_seconds",
        "Time to parse and evaluate a PromQL query, by kind",
        m.query_durations.clone(),
    );
    reg.register(
        "tidemark_queries_in_flight",
        "PromQL queries being answered now, those waiting for an engine slot included",
        m.queries_in_flight.clone(),
    );
    reg.register(
        "tidemark_http_requests",
        "HTTP requests served, by route and status code",
        m.http_requests.clone(),
    );
    reg.register(
        "tidemark_http_request_duration_seconds",
        "Time to produce an HTTP response, by route",
        m.http_durations.clone(),
    );
    reg.register(
        "tidemark_http_connections_open",
        "HTTP connections accepted and not yet closed",
        m.connections_open.clone(),
    );
    reg.register(
        "tidemark_http_connection_limit_reached",
        "Times the server stopped accepting because web.max_connections connections were open",
        m.connection_limit_reached.clone(),
    );
    reg.register(
        "tidemark_http_connection_timeouts",
        "Connections closed for sending no complete request headers within web.read_header_timeout",
        m.connection_timeouts.clone(),
    );
}
