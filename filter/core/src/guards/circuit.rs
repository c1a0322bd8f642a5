//! Circuit breaker per provider (SPEC §6): `failure_threshold` consecutive
//! failures open it for `open_seconds`; then it is half-open: requests go
//! to the provider again, `half_open_successes` successes in a row close
//! it, one failure opens it again. A failure is a 5xx or a 429 from the
//! provider, or Envoy failing to reach it; other answers, 404 and client
//! errors included (SPEC §6), count as successes (the provider is up). The state sits in shared data, so every
//! worker of the Envoy process shares it.

use hubgate_wire::CircuitSettings;
use serde::{Deserialize, Serialize};

use crate::shared::{self, SharedData};

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Circuit {
    /// Consecutive failures while closed.
    pub failures: u32,
    /// Open until then (unix ms); 0 when closed.
    pub open_until_ms: i64,
    /// Successes in a row since it went half-open.
    pub successes: u32,
}

impl Circuit {
    /// Open: requests do not go to the provider.
    pub fn is_open(&self, now_ms: i64) -> bool {
        now_ms < self.open_until_ms
    }

    fn half_open(&self, now_ms: i64) -> bool {
        self.open_until_ms != 0 && !self.is_open(now_ms)
    }

    fn record(mut self, settings: &CircuitSettings, failed: bool, now_ms: i64) -> Circuit {
        let open = |c: &mut Circuit| {
            c.open_until_ms = now_ms.saturating_add(i64::from(settings.open_seconds) * 1000);
            c.failures = 0;
            c.successes = 0;
        };
        if self.is_open(now_ms) {
            // An answer to a request sent before it opened.
            return self;
        }
        if self.half_open(now_ms) {
            if failed {
                open(&mut self);
            } else {
                self.successes += 1;
                if self.successes >= settings.half_open_successes.max(1) {
                    self = Circuit::default();
                }
            }
            return self;
        }
        if failed {
            self.failures += 1;
            if self.failures >= settings.failure_threshold.max(1) {
                open(&mut self);
            }
        } else {
            self.failures = 0;
        }
        self
    }
}

/// Whether an answer with `status` counts against the provider.
pub fn is_failure(status: u16) -> bool {
    status >= 500 || status == 429
}

fn store_key(provider_id: i64) -> String {
    format!("hubgate.circuit.{provider_id}")
}

pub fn read(store: &dyn SharedData, provider_id: i64) -> Circuit {
    let (bytes, _) = store.get(&store_key(provider_id));
    bytes.and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// Records one answer of the provider. `None`: shared data could not be
/// updated.
pub fn record(store: &dyn SharedData, provider_id: i64, settings: &CircuitSettings, status: u16, now_ms: i64) -> Option<Circuit> {
    let failed = is_failure(status);
    let current = read(store, provider_id);
    // Nothing to write for a success on a closed circuit without failures.
    if !failed && current == Circuit::default() {
        return Some(current);
    }
    shared::update(store, &store_key(provider_id), |bytes| {
        let circuit: Circuit = bytes.and_then(|b| serde_json::from_slice(b).ok()).unwrap_or_default();
        let next = circuit.record(settings, failed, now_ms);
        (next, serde_json::to_vec(&next).unwrap_or_default())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::FakeShared;

    const T0: i64 = 1_767_225_600_000;

    #[test]
    fn opens_after_the_threshold_half_opens_and_closes_after_successes() {
        let store = FakeShared::default();
        let settings = CircuitSettings { failure_threshold: 3, open_seconds: 60, half_open_successes: 2 };
        let rec = |status, at| record(&store, 7, &settings, status, at).unwrap();
        rec(503, T0);
        rec(429, T0);
        rec(200, T0);
        assert_eq!(read(&store, 7), Circuit::default(), "a success resets the count");
        rec(500, T0);
        assert_eq!(rec(404, T0), Circuit::default(), "a 404 is not the provider failing");
        rec(500, T0);
        assert_eq!(rec(400, T0), Circuit::default(), "nor is a client error");
        rec(502, T0);
        rec(503, T0);
        let c = rec(504, T0 + 1);
        assert!(c.is_open(T0 + 1) && c.is_open(T0 + 60_000) && !c.is_open(T0 + 60_001));
        // Answers to requests sent before it opened change nothing.
        assert_eq!(rec(200, T0 + 2), c);
        // Half-open: one failure opens it again for the full time.
        let c = rec(503, T0 + 60_001);
        assert!(c.is_open(T0 + 120_000) && !c.is_open(T0 + 120_001));
        // Half-open again: two successes close it.
        assert_eq!(rec(200, T0 + 120_001).successes, 1);
        assert_eq!(rec(200, T0 + 120_002), Circuit::default());
        assert_eq!(store.get("hubgate.circuit.8").0, None, "other providers untouched");
    }
}
