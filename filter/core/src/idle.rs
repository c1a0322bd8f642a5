//! A provider's idle timeout (SPEC §6): a response stream that moves no
//! byte for `idle_ms` is cut. Envoy's idle timeouts are per route or per
//! listener, not per provider, so the filter keeps the deadlines of the
//! streams of its VM here and its root context's tick cuts the ones past
//! theirs (within one tick of the deadline).

use std::collections::{HashMap, HashSet};

#[derive(Default, Debug)]
pub struct IdleWatch {
    /// Context id → (idle ms, deadline ms).
    streams: HashMap<u32, (i64, i64)>,
    cut: HashSet<u32>,
}

impl IdleWatch {
    pub fn watch(&mut self, context: u32, idle_ms: u32, now_ms: i64) {
        let idle = i64::from(idle_ms);
        self.streams.insert(context, (idle, now_ms.saturating_add(idle)));
    }

    /// Bytes moved: the deadline starts again.
    pub fn touch(&mut self, context: u32, now_ms: i64) {
        if let Some((idle, deadline)) = self.streams.get_mut(&context) {
            *deadline = now_ms.saturating_add(*idle);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// The streams idle past their timeout, to be cut now; they are no
    /// longer watched and are remembered as cut.
    pub fn expired(&mut self, now_ms: i64) -> Vec<u32> {
        let due: Vec<u32> = self.streams.iter().filter(|(_, &(_, deadline))| deadline <= now_ms).map(|(&id, _)| id).collect();
        for id in &due {
            self.streams.remove(id);
            self.cut.insert(*id);
        }
        due
    }

    /// Stops watching a stream (it ended); whether it was cut.
    pub fn forget(&mut self, context: u32) -> bool {
        self.streams.remove(&context);
        self.cut.remove(&context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_cut_only_after_idle_ms_without_bytes() {
        let mut w = IdleWatch::default();
        w.watch(1, 500, 1_000);
        w.watch(2, 2_000, 1_000);
        assert!(w.expired(1_499).is_empty());
        w.touch(1, 1_400);
        assert!(w.expired(1_899).is_empty(), "bytes at 1400 moved the deadline to 1900");
        assert_eq!(w.expired(1_900), vec![1]);
        assert!(w.expired(2_000).is_empty(), "cut once");
        assert!(w.forget(1), "remembered as cut");
        assert!(!w.forget(1));
        assert!(!w.forget(2), "ended in time");
        assert!(w.is_empty());
        w.touch(3, 0);
        assert!(w.is_empty(), "touching an unwatched stream adds nothing");
    }
}
