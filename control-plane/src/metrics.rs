//! Prometheus counters (the `prometheus-client` crate), rendered on
//! `/metrics` in the OpenMetrics text format.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::app::AppState;

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SnapshotLabels {
    result: String,
}

pub struct Metrics {
    registry: Registry,
    http: Family<HttpLabels, Counter>,
    pub events_accepted: Counter,
    pub events_duplicate: Counter,
    pub snapshot_full: Counter,
    pub snapshot_not_modified: Counter,
    pub expired_disabled: Counter,
    pub admin_auth_failures: Counter,
    pub admin_auth_lockouts: Counter,
    pub internal_forbidden_source: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let http = Family::<HttpLabels, Counter>::default();
        registry.register(
            "hubgate_cp_http_requests",
            "HTTP requests by route, method and status",
            http.clone(),
        );
        let snapshots = Family::<SnapshotLabels, Counter>::default();
        registry.register(
            "hubgate_cp_snapshot_responses",
            "Snapshot answers by result",
            snapshots.clone(),
        );
        let snapshot = |result: &str| {
            snapshots
                .get_or_create(&SnapshotLabels {
                    result: result.to_string(),
                })
                .clone()
        };
        let mut counter = |name: &str, help: &str| {
            let counter = Counter::default();
            registry.register(name, help, counter.clone());
            counter
        };
        Metrics {
            http,
            events_accepted: counter("hubgate_cp_events_ingested", "Usage events stored"),
            events_duplicate: counter(
                "hubgate_cp_events_duplicate",
                "Usage events received again and ignored (idempotent retries)",
            ),
            snapshot_full: snapshot("full"),
            snapshot_not_modified: snapshot("not_modified"),
            expired_disabled: counter(
                "hubgate_cp_expired_disabled",
                "Expired users and keys marked disabled by the background sweep",
            ),
            admin_auth_failures: counter(
                "hubgate_cp_admin_auth_failures",
                "Failed admin API authentications (missing or unknown credential)",
            ),
            admin_auth_lockouts: counter(
                "hubgate_cp_admin_auth_lockouts",
                "Client addresses locked out of the admin API after too many failed authentications",
            ),
            internal_forbidden_source: counter(
                "hubgate_cp_internal_forbidden_source",
                "Internal API connections refused because the peer is not in HUBGATE_INTERNAL_ALLOW",
            ),
            registry,
        }
    }
}

impl Metrics {
    pub fn record_http(&self, route: &str, method: &str, status: u16) {
        self.http
            .get_or_create(&HttpLabels {
                route: route.to_string(),
                method: method.to_string(),
                status,
            })
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %err, "cannot render the metrics");
        }
        out
    }
}

/// Counts every response by matched route (never the raw path, which would
/// let callers grow the label set without bound).
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => m.to_string(),
        _ => "other".to_string(),
    };
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    state.metrics.record_http(&route, &method, status);
    tracing::debug!(%method, %route, status, elapsed_ms = started.elapsed().as_millis() as u64, "request");
    response
}
