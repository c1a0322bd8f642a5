//! Storage of the brute-force counters (per client IP and per key) in
//! shared data, so every worker of this Envoy sees the same counts.

use hubgate_core::guards::lockout::{FailureWindow, LockoutPolicy};

use crate::host;

fn key(kind: &str, id: &str) -> String {
    format!("hubgate.lockout.{kind}.{id}")
}

/// Seconds left of a lockout on this IP or key, if any.
pub fn locked_for_secs(kind: &str, id: &str, now_ms: i64) -> Option<u64> {
    let (bytes, _) = host::shared_get(&key(kind, id));
    FailureWindow::from_bytes(&bytes?).locked_for_secs(now_ms)
}

pub fn record_failure(kind: &str, id: &str, now_ms: i64, policy: &LockoutPolicy) {
    let stored = host::shared_update(&key(kind, id), |current| {
        let mut window = current.map(FailureWindow::from_bytes).unwrap_or_default();
        window.record_failure(now_ms, policy);
        ((), window.to_bytes().to_vec())
    });
    if stored.is_none() {
        log::warn!("could not record an auth failure for {kind}");
    }
}
