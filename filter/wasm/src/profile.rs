//! Where the filter's time goes inside Envoy's V8, per phase (cargo feature
//! `profile`, never in a shipped build: each timer costs two hostcalls).
//! Every 5,000 requests each VM logs the mean microseconds per request of
//! every phase, e.g. `deploy/build` with `HUBGATE_WASM_FEATURES=profile`,
//! then `tests/bench/run` and read Envoy's log.

#[derive(Clone, Copy)]
pub enum Phase {
    RequestHeaders,
    HeaderCopy,
    Chain,
    RequestBody,
    BodyRead,
    Forward,
    ResponseHeaders,
    ResponseBody,
    Log,
    EventBuild,
    EventRecord,
}

#[cfg(feature = "profile")]
mod imp {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use super::Phase;

    const NAMES: [&str; 11] = [
        "request_headers", "header_copy", "chain", "request_body", "body_read", "forward", "response_headers", "response_body", "log", "event_build", "event_record",
    ];
    const EVERY: u64 = 5000;

    thread_local! {
        static TOTALS: RefCell<([u128; 11], u64)> = const { RefCell::new(([0; 11], 0)) };
        static GUARDS: RefCell<BTreeMap<&'static str, u128>> = const { RefCell::new(BTreeMap::new()) };
    }

    pub fn guard_spent(guard: &'static str, ns: u128) {
        GUARDS.with(|g| *g.borrow_mut().entry(guard).or_default() += ns);
    }

    fn now() -> u128 {
        crate::host::now_ns()
    }

    pub fn time<T>(phase: Phase, f: impl FnOnce() -> T) -> T {
        let start = now();
        let out = f();
        let spent = now().saturating_sub(start);
        TOTALS.with(|t| {
            if let Some(slot) = t.borrow_mut().0.get_mut(phase as usize) {
                *slot += spent;
            }
        });
        out
    }

    pub fn request_done() {
        TOTALS.with(|t| {
            let mut t = t.borrow_mut();
            t.1 += 1;
            if t.1 < EVERY {
                return;
            }
            let per_request = |ns: u128| ns as f64 / EVERY as f64 / 1000.0;
            let line: Vec<String> = NAMES.iter().zip(t.0.iter()).map(|(n, ns)| format!("{n}={:.1}", per_request(*ns))).collect();
            let guards: Vec<String> = GUARDS.with(|g| std::mem::take(&mut *g.borrow_mut())).into_iter().map(|(n, ns)| format!("{n}={:.1}", per_request(ns))).collect();
            let start = now();
            for _ in 0..100 {
                let _ = now();
            }
            let timer = (now() - start) as f64 / 100.0 / 1000.0;
            log::warn!("hubgate profile (µs per request over {EVERY}; one timer reading {timer:.2}): {} | guards: {}", line.join(" "), guards.join(" "));
            *t = ([0; 11], 0);
        });
    }
}

#[cfg(feature = "profile")]
pub use imp::{guard_spent, request_done, time};

#[cfg(not(feature = "profile"))]
#[inline(always)]
pub fn time<T>(_phase: Phase, f: impl FnOnce() -> T) -> T {
    f()
}

#[cfg(not(feature = "profile"))]
#[inline(always)]
pub fn request_done() {}
