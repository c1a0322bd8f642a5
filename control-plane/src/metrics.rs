//! Prometheus counters, rendered as text on `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::app::AppState;

#[derive(Default)]
pub struct Metrics {
    /// (route, method, status) → count.
    http: Mutex<BTreeMap<(String, String, u16), u64>>,
    pub events_accepted: AtomicU64,
    pub events_duplicate: AtomicU64,
    pub snapshot_full: AtomicU64,
    pub snapshot_not_modified: AtomicU64,
    pub expired_disabled: AtomicU64,
    pub admin_auth_failures: AtomicU64,
    pub admin_auth_lockouts: AtomicU64,
    pub internal_forbidden_source: AtomicU64,
}

impl Metrics {
    pub fn record_http(&self, route: &str, method: &str, status: u16) {
        let mut map = self
            .http
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *map.entry((route.to_string(), method.to_string(), status))
            .or_insert(0) += 1;
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP hubgate_cp_http_requests_total HTTP requests by route, method and status.\n",
        );
        out.push_str("# TYPE hubgate_cp_http_requests_total counter\n");
        {
            let map = self
                .http
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for ((route, method, status), count) in map.iter() {
                let _ = writeln!(
                    out,
                    "hubgate_cp_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {count}",
                    escape(route),
                    escape(method)
                );
            }
        }
        counter(
            &mut out,
            "hubgate_cp_events_ingested_total",
            "Usage events stored.",
            &self.events_accepted,
        );
        counter(
            &mut out,
            "hubgate_cp_events_duplicate_total",
            "Usage events received again and ignored (idempotent retries).",
            &self.events_duplicate,
        );
        out.push_str("# HELP hubgate_cp_snapshot_responses_total Snapshot answers by result.\n");
        out.push_str("# TYPE hubgate_cp_snapshot_responses_total counter\n");
        let _ = writeln!(
            out,
            "hubgate_cp_snapshot_responses_total{{result=\"full\"}} {}",
            self.snapshot_full.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "hubgate_cp_snapshot_responses_total{{result=\"not_modified\"}} {}",
            self.snapshot_not_modified.load(Ordering::Relaxed)
        );
        counter(
            &mut out,
            "hubgate_cp_expired_disabled_total",
            "Expired users and keys marked disabled by the background sweep.",
            &self.expired_disabled,
        );
        counter(
            &mut out,
            "hubgate_cp_admin_auth_failures_total",
            "Failed admin API authentications (missing or unknown credential).",
            &self.admin_auth_failures,
        );
        counter(
            &mut out,
            "hubgate_cp_admin_auth_lockouts_total",
            "Client addresses locked out of the admin API after too many failed authentications.",
            &self.admin_auth_lockouts,
        );
        counter(
            &mut out,
            "hubgate_cp_internal_forbidden_source_total",
            "Internal API connections refused because the peer is not in HUBGATE_INTERNAL_ALLOW.",
            &self.internal_forbidden_source,
        );
        out
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: &AtomicU64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
