//! Circuit breaker per provider (SPEC §6): `failure_threshold` consecutive
//! failures open it for `open_seconds`; then it is half-open: requests go
//! to the provider again, `half_open_successes` successes in a row close
//! it, one failure opens it again. A failure is a 5xx or a 429 from the
//! provider, or Envoy failing to reach it; other answers, 404 and client
//! errors included (SPEC §6), count as successes (the provider is up). The state sits in shared data, so every
//! worker of the Envoy process shares it.
//!
//! Reset (admin API): the snapshot carries the provider's reset marker
//! (`CircuitSettings::reset_at_ms`); a state recorded under an older marker
//! counts as closed. [`report`] clears such states in shared data (run on
//! the root tick and when a snapshot arrives), so selection, which reads
//! shared data only, sees the reset within a tick. The same tick reports
//! the states to the control plane ([`claim_report`]).

use hubgate_wire::{CircuitSettings, CircuitState, ProviderCircuit, CIRCUIT_REPORT_EVERY_MS};
use serde::{Deserialize, Serialize};

use crate::shared::{self, SetError, SharedData};

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Circuit {
    /// Consecutive failures while closed.
    pub failures: u32,
    /// Open until then (unix ms); 0 when closed.
    pub open_until_ms: i64,
    /// Successes in a row since it went half-open.
    pub successes: u32,
    /// The provider's reset marker this state was recorded under.
    #[serde(default)]
    pub reset_at_ms: i64,
}

impl Circuit {
    /// Open: requests do not go to the provider.
    pub fn is_open(&self, now_ms: i64) -> bool {
        now_ms < self.open_until_ms
    }

    fn half_open(&self, now_ms: i64) -> bool {
        self.open_until_ms != 0 && !self.is_open(now_ms)
    }

    pub fn state(&self, now_ms: i64) -> CircuitState {
        if self.is_open(now_ms) {
            CircuitState::Open
        } else if self.half_open(now_ms) {
            CircuitState::HalfOpen
        } else {
            CircuitState::Closed
        }
    }

    /// Closed, no failure counted.
    fn is_clear(&self) -> bool {
        self.failures == 0 && self.open_until_ms == 0 && self.successes == 0
    }

    /// The state under the provider's current reset marker: closed and
    /// cleared when it was recorded before the last reset.
    pub fn under(self, settings: &CircuitSettings) -> Circuit {
        if self.reset_at_ms < settings.reset_at_ms {
            Circuit { reset_at_ms: settings.reset_at_ms, ..Circuit::default() }
        } else {
            self
        }
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
                    self = Circuit { reset_at_ms: self.reset_at_ms, ..Circuit::default() };
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

fn parse(bytes: Option<&[u8]>) -> Circuit {
    bytes.and_then(|b| serde_json::from_slice(b).ok()).unwrap_or_default()
}

pub fn read(store: &dyn SharedData, provider_id: i64) -> Circuit {
    let (bytes, _) = store.get(&store_key(provider_id));
    parse(bytes.as_deref())
}

/// Records one answer of the provider. `None`: shared data could not be
/// updated.
pub fn record(store: &dyn SharedData, provider_id: i64, settings: &CircuitSettings, status: u16, now_ms: i64) -> Option<Circuit> {
    let failed = is_failure(status);
    let current = read(store, provider_id).under(settings);
    // Nothing to write for a success on a closed circuit without failures.
    if !failed && current.is_clear() {
        return Some(current);
    }
    shared::update(store, &store_key(provider_id), |bytes| {
        let next = parse(bytes).under(settings).record(settings, failed, now_ms);
        (next, serde_json::to_vec(&next).unwrap_or_default())
    })
}

/// The circuits of `providers` (id and settings, from the snapshot) as
/// this Envoy process holds them, for the report to the control plane. A
/// state recorded before its provider's last reset is cleared in shared
/// data first; if that write fails it is reported as stored (the control
/// plane ignores it: its marker is old) and cleared on a later tick.
pub fn report<'a>(store: &dyn SharedData, providers: impl IntoIterator<Item = (i64, &'a CircuitSettings)>, now_ms: i64) -> Vec<ProviderCircuit> {
    providers
        .into_iter()
        .map(|(id, settings)| {
            let stored = read(store, id);
            let mut circuit = stored.under(settings);
            if circuit != stored && !stored.is_clear() {
                let cleared = shared::update(store, &store_key(id), |bytes| {
                    let next = parse(bytes).under(settings);
                    (next, serde_json::to_vec(&next).unwrap_or_default())
                });
                circuit = cleared.unwrap_or(stored);
            }
            ProviderCircuit {
                provider_id: id,
                state: circuit.state(now_ms),
                failures: circuit.failures,
                successes: circuit.successes,
                open_until_ms: (circuit.open_until_ms != 0).then_some(circuit.open_until_ms),
                reset_at_ms: circuit.reset_at_ms,
            }
        })
        .collect()
}

/// What the process last reported: the circuits' fingerprint and when.
const REPORTED_KEY: &str = "hubgate.circuit.reported";

fn fingerprint(circuits: &[ProviderCircuit]) -> u64 {
    crate::hash::fnv1a(&serde_json::to_vec(circuits).unwrap_or_default())
}

fn reported(bytes: Option<&[u8]>) -> (u64, i64) {
    let word = |at: usize| bytes.and_then(|b| b.get(at..at + 8)).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes);
    (word(0), word(8) as i64)
}

/// Whether this VM sends `circuits` now: when they differ from what the
/// process last reported, or that is [`CIRCUIT_REPORT_EVERY_MS`] old. One
/// VM of the process wins the claim; the others see it as reported.
pub fn claim_report(store: &dyn SharedData, circuits: &[ProviderCircuit], now_ms: i64) -> bool {
    let digest = fingerprint(circuits);
    let (current, cas) = store.get(REPORTED_KEY);
    let (last_digest, last_ms) = reported(current.as_deref());
    if last_digest == digest && now_ms.saturating_sub(last_ms) < CIRCUIT_REPORT_EVERY_MS {
        return false;
    }
    let mut next = digest.to_le_bytes().to_vec();
    next.extend_from_slice(&now_ms.to_le_bytes());
    match store.set(REPORTED_KEY, &next, cas) {
        Ok(()) => true,
        Err(SetError::CasMismatch | SetError::Failed) => false,
    }
}

/// The claimed report did not arrive: the next tick sends one again.
pub fn report_failed(store: &dyn SharedData) {
    let _ = shared::update(store, REPORTED_KEY, |_| ((), Vec::new()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::FakeShared;

    const T0: i64 = 1_767_225_600_000;

    #[test]
    fn opens_after_the_threshold_half_opens_and_closes_after_successes() {
        let store = FakeShared::default();
        let settings = CircuitSettings { failure_threshold: 3, open_seconds: 60, half_open_successes: 2, reset_at_ms: 0 };
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

    fn settings(reset_at_ms: i64) -> CircuitSettings {
        CircuitSettings { failure_threshold: 2, open_seconds: 60, half_open_successes: 1, reset_at_ms }
    }

    #[test]
    fn a_newer_reset_marker_clears_the_state_on_the_next_answer() {
        let store = FakeShared::default();
        record(&store, 7, &settings(0), 503, T0);
        let open = record(&store, 7, &settings(0), 503, T0).unwrap();
        assert!(open.is_open(T0 + 1));
        // The snapshot now carries a reset: the next answer starts from closed.
        let after = record(&store, 7, &settings(100), 200, T0 + 2).unwrap();
        assert_eq!(after, Circuit { reset_at_ms: 100, ..Circuit::default() });
        // Failures after the reset count under the new marker.
        let c = record(&store, 7, &settings(100), 503, T0 + 3).unwrap();
        assert_eq!((c.failures, c.reset_at_ms), (1, 100));
        assert_eq!(read(&store, 7), c);
        // A request that started under the old snapshot does not undo the reset.
        let c = record(&store, 7, &settings(0), 503, T0 + 4).unwrap();
        assert!(c.is_open(T0 + 5) && c.reset_at_ms == 100);
    }

    #[test]
    fn the_report_clears_circuits_reset_since_and_describes_each_provider() {
        let store = FakeShared::default();
        let s0 = settings(0);
        record(&store, 1, &s0, 503, T0);
        record(&store, 1, &s0, 503, T0);
        record(&store, 2, &s0, 500, T0);
        record(&store, 3, &s0, 503, T0);
        record(&store, 3, &s0, 503, T0);
        let report_at = |now, s1: &CircuitSettings| report(&store, [(1, s1), (2, &s0), (3, &s0), (4, &s0)], now);
        let r = report_at(T0 + 1, &s0);
        let open_until = Some(T0 + 60_000);
        assert_eq!(
            r,
            vec![
                ProviderCircuit { provider_id: 1, state: CircuitState::Open, failures: 0, successes: 0, open_until_ms: open_until, reset_at_ms: 0 },
                ProviderCircuit { provider_id: 2, state: CircuitState::Closed, failures: 1, successes: 0, open_until_ms: None, reset_at_ms: 0 },
                ProviderCircuit { provider_id: 3, state: CircuitState::Open, failures: 0, successes: 0, open_until_ms: open_until, reset_at_ms: 0 },
                ProviderCircuit { provider_id: 4, state: CircuitState::Closed, failures: 0, successes: 0, open_until_ms: None, reset_at_ms: 0 },
            ]
        );
        assert_eq!(report_at(T0 + 60_000, &s0)[0].state, CircuitState::HalfOpen, "open time over");

        // Provider 1 is reset: the report clears it in shared data, so the
        // selection (which reads shared data) sees it closed.
        let s1 = settings(500);
        let r = report_at(T0 + 2, &s1);
        assert_eq!(r[0], ProviderCircuit { provider_id: 1, state: CircuitState::Closed, failures: 0, successes: 0, open_until_ms: None, reset_at_ms: 500 });
        assert!(!read(&store, 1).is_open(T0 + 2));
        assert_eq!(read(&store, 1).reset_at_ms, 500);
        assert!(read(&store, 3).is_open(T0 + 2), "other providers keep their state");
    }

    #[test]
    fn a_reset_that_loses_the_race_is_reported_as_stored_and_cleared_later() {
        let store = FakeShared::default();
        record(&store, 1, &settings(0), 503, T0);
        record(&store, 1, &settings(0), 503, T0);
        store.cas_conflicts.set(8);
        let r = report(&store, [(1, &settings(500))], T0 + 1);
        assert_eq!((r[0].state, r[0].reset_at_ms), (CircuitState::Open, 0));
        let r = report(&store, [(1, &settings(500))], T0 + 2);
        assert_eq!((r[0].state, r[0].reset_at_ms), (CircuitState::Closed, 500));
    }

    #[test]
    fn one_report_per_change_or_heartbeat() {
        let store = FakeShared::default();
        let closed = report(&store, [(1, &settings(0))], T0);
        assert!(claim_report(&store, &closed, T0), "the first report");
        assert!(!claim_report(&store, &closed, T0 + 1_000), "nothing changed: another VM or tick does not send it again");
        record(&store, 1, &settings(0), 503, T0 + 1_500);
        let failing = report(&store, [(1, &settings(0))], T0 + 2_000);
        assert!(claim_report(&store, &failing, T0 + 2_000), "a change is sent at once");
        assert!(!claim_report(&store, &failing, T0 + 2_000 + CIRCUIT_REPORT_EVERY_MS - 1));
        assert!(claim_report(&store, &failing, T0 + 2_000 + CIRCUIT_REPORT_EVERY_MS), "heartbeat");
        report_failed(&store);
        assert!(claim_report(&store, &failing, T0 + 2_000 + CIRCUIT_REPORT_EVERY_MS + 1), "a failed report is sent again");
        report_failed(&store);
        store.cas_conflicts.set(1);
        assert!(!claim_report(&store, &failing, T0 + 2_000 + CIRCUIT_REPORT_EVERY_MS + 2), "another VM claimed it first");
    }
}
