//! The bound on the shared event queue: a counter of undelivered events
//! (queued, or taken by a flusher and not yet accepted) in shared data,
//! changed with CAS by every VM of the process.
//!
//! A change that loses every CAS attempt (or meets a host failure) is not
//! lost: the VM carries it and writes it with its next change (or on its
//! tick, [`EventDepth::settle`]), so the counter never drifts for good.

use std::cell::Cell;

use crate::chain::Host;
use crate::shared;

pub const DEPTH_KEY: &str = "hubgate.events.v2.depth";

/// This VM's view of the counter: the change it still owes.
#[derive(Default)]
pub struct EventDepth {
    carried: Cell<i64>,
}

fn read(bytes: Option<&[u8]>) -> u64 {
    bytes.and_then(|b| b.get(..8)).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes)
}

fn apply(depth: u64, delta: i64) -> u64 {
    if delta >= 0 {
        depth.saturating_add(delta.unsigned_abs())
    } else {
        depth.saturating_sub(delta.unsigned_abs())
    }
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl EventDepth {
    /// Takes room for up to `want` events in a queue of at most `max`;
    /// returns how many fit. When every CAS attempt loses, the decision is
    /// made on the last value read and carried (the bound may be off by
    /// that much until the next change lands).
    pub fn reserve(&self, host: &dyn Host, want: u64, max: u64) -> u64 {
        let carried = self.carried.get();
        let mut decided = 0;
        let written = shared::update(host.shared(), DEPTH_KEY, |cur| {
            let depth = apply(read(cur), carried);
            decided = want.min(max.saturating_sub(depth));
            (decided, apply(depth, signed(decided)).to_le_bytes().to_vec())
        });
        match written {
            Some(granted) => {
                self.carried.set(0);
                granted
            }
            None => {
                self.carry(host, carried.saturating_add(signed(decided)));
                decided
            }
        }
    }

    /// `n` events left the bound (delivered, or dropped for good).
    pub fn release(&self, host: &dyn Host, n: u64) {
        self.change(host, -signed(n));
    }

    /// Writes a carried change, if any (called on the VM's tick).
    pub fn settle(&self, host: &dyn Host) {
        if self.carried.get() != 0 {
            self.change(host, 0);
        }
    }

    /// The change this VM still owes the shared counter.
    pub fn carried(&self) -> i64 {
        self.carried.get()
    }

    fn change(&self, host: &dyn Host, delta: i64) {
        let total = self.carried.get().saturating_add(delta);
        if total == 0 {
            return;
        }
        let written = shared::update(host.shared(), DEPTH_KEY, |cur| ((), apply(read(cur), total).to_le_bytes().to_vec()));
        match written {
            Some(()) => self.carried.set(0),
            None => self.carry(host, total),
        }
    }

    fn carry(&self, host: &dyn Host, total: i64) {
        self.carried.set(total);
        host.count("hubgate_events_depth_contended_total");
        log::warn!("event queue counter stayed contended; {total} carried to the next change");
    }
}

/// The counter's value in shared data (for tests and diagnostics).
pub fn depth(host: &dyn Host) -> u64 {
    read(host.shared().get(DEPTH_KEY).0.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::FakeHost;

    #[test]
    fn reserves_up_to_the_bound() {
        let host = FakeHost::default();
        let d = EventDepth::default();
        assert_eq!(d.reserve(&host, 8, 10), 8);
        assert_eq!(d.reserve(&host, 8, 10), 2);
        assert_eq!(d.reserve(&host, 8, 10), 0);
        assert_eq!(depth(&host), 10);
        d.release(&host, 4);
        assert_eq!(depth(&host), 6);
        // Two VMs share one counter.
        let other = EventDepth::default();
        assert_eq!(other.reserve(&host, 5, 10), 4);
        assert_eq!(depth(&host), 10);
    }

    #[test]
    fn never_below_zero() {
        let host = FakeHost::default();
        let d = EventDepth::default();
        d.release(&host, 3);
        assert_eq!(depth(&host), 0);
        assert_eq!(d.reserve(&host, 1, 1), 1);
    }

    #[test]
    fn a_release_that_loses_every_cas_is_carried_into_the_next_change() {
        let host = FakeHost::default();
        let d = EventDepth::default();
        assert_eq!(d.reserve(&host, 10, 10), 10);
        host.shared.cas_conflicts.set(100);
        d.release(&host, 4);
        assert_eq!(depth(&host), 10, "the write lost every race");
        assert_eq!(d.carried(), -4);
        assert_eq!(host.counter("hubgate_events_depth_contended_total"), 1);
        host.shared.cas_conflicts.set(0);
        // The next change writes both: room for the 4 released events.
        assert_eq!(d.reserve(&host, 6, 10), 4);
        assert_eq!(depth(&host), 10);
        assert_eq!(d.carried(), 0);
        d.release(&host, 10);
        assert_eq!(depth(&host), 0, "the bound drifted");
    }

    #[test]
    fn a_reservation_that_loses_every_cas_is_carried_and_settled_on_tick() {
        let host = FakeHost::default();
        let d = EventDepth::default();
        assert_eq!(d.reserve(&host, 2, 10), 2);
        host.shared.cas_conflicts.set(100);
        // Decided on the last value read: the events are kept.
        assert_eq!(d.reserve(&host, 5, 10), 5);
        assert_eq!(depth(&host), 2);
        assert_eq!(d.carried(), 5);
        // Still contended on the tick: still carried.
        d.settle(&host);
        assert_eq!(d.carried(), 5);
        host.shared.cas_conflicts.set(0);
        d.settle(&host);
        assert_eq!((depth(&host), d.carried()), (7, 0));
        d.settle(&host);
        assert_eq!(depth(&host), 7);
        // Everything delivered: back to zero.
        d.release(&host, 7);
        assert_eq!(depth(&host), 0);
    }

    #[test]
    fn a_carried_reservation_counts_against_the_bound() {
        let host = FakeHost::default();
        let d = EventDepth::default();
        assert_eq!(d.reserve(&host, 4, 10), 4);
        host.shared.cas_conflicts.set(100);
        assert_eq!(d.reserve(&host, 4, 10), 4);
        host.shared.cas_conflicts.set(0);
        // 4 written + 4 carried: only 2 more fit.
        assert_eq!(d.reserve(&host, 4, 10), 2);
        assert_eq!(depth(&host), 10);
    }
}
