//! What the chain needs from its host, behind traits so the whole chain
//! runs natively in tests: the clock, shared data and counters, plus the
//! per-VM state guards keep between requests.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use crate::config::PluginConfig;
use crate::guards::lockout::ClientTable;
use crate::guards::pending_auth::PendingAuth;
use crate::idle::IdleWatch;
use crate::keys::KeyCache;
use crate::segments::SeenParts;
use crate::shared::{FakeShared, SharedData};

pub trait Host {
    /// Host clock, unix milliseconds.
    fn now_ms(&self) -> i64;
    /// Fresh randomness for load balancing (the host clock's nanoseconds
    /// are enough).
    fn seed(&self) -> u64;
    /// Shared data of this Envoy process.
    fn shared(&self) -> &dyn SharedData;
    /// Adds one to a counter.
    fn count(&self, metric: &str);
    /// Adds `n` to a counter.
    fn count_n(&self, metric: &str, n: u64) {
        for _ in 0..n {
            self.count(metric);
        }
    }
    /// Host clock in nanoseconds and where a guard's time is summed; only
    /// the `profile` feature calls them.
    #[cfg(feature = "profile")]
    fn now_ns(&self) -> u128 {
        0
    }
    #[cfg(feature = "profile")]
    fn guard_spent(&self, _guard: &'static str, _ns: u128) {}
}

/// State one VM (one Envoy worker) keeps for its requests.
pub struct VmState {
    pub config: PluginConfig,
    pub keys: KeyCache,
    pub clients: ClientTable,
    pub pending_auth: RefCell<PendingAuth>,
    /// Big parts of recent bodies and what the guards found in them.
    pub seen_parts: RefCell<SeenParts>,
    /// Response streams with a provider idle timeout.
    pub idle: RefCell<IdleWatch>,
}

impl VmState {
    /// `seed` keys the lockout buckets; the same for every VM of a process.
    pub fn new(config: PluginConfig, seed: &str) -> VmState {
        let clients = ClientTable::new(seed, config.lockout_buckets);
        VmState {
            config,
            keys: KeyCache::default(),
            clients,
            pending_auth: RefCell::new(PendingAuth::default()),
            seen_parts: RefCell::default(),
            idle: RefCell::default(),
        }
    }
}

/// An in-memory host for native tests.
#[derive(Default)]
pub struct FakeHost {
    pub now_ms: Cell<i64>,
    pub shared: FakeShared,
    pub counters: RefCell<HashMap<String, u64>>,
}

impl FakeHost {
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.borrow().get(name).copied().unwrap_or(0)
    }
}

impl Host for FakeHost {
    fn now_ms(&self) -> i64 {
        self.now_ms.get()
    }

    fn seed(&self) -> u64 {
        7
    }

    fn shared(&self) -> &dyn SharedData {
        &self.shared
    }

    fn count(&self, metric: &str) {
        self.count_n(metric, 1);
    }

    fn count_n(&self, metric: &str, n: u64) {
        *self.counters.borrow_mut().entry(metric.to_string()).or_default() += n;
    }
}
