//! Key cache: resolved keys in shared data (all workers of this Envoy), with
//! a per-VM copy in front. Unknown keys are remembered only per VM, so
//! random keys cannot grow shared memory.

use std::cell::RefCell;
use std::collections::HashMap;

use hubgate_wire::ResolvedKey;
use serde::{Deserialize, Serialize};

use crate::host;

/// Per-VM entries beyond this are dropped wholesale (they are only a cache).
const LOCAL_MAX: usize = 10_000;

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct CachedKey {
    pub fetched_ms: i64,
    /// Key epoch of the control-plane answer; older than the snapshot's
    /// epoch means a user or key changed since.
    pub epoch: u64,
    pub key: Option<ResolvedKey>,
}

pub enum Lookup {
    Fresh(CachedKey),
    /// Too old or from an older epoch: refresh it, but use it if the control
    /// plane cannot be reached (fail-static).
    Stale(CachedKey),
    Missing,
}

#[derive(Default)]
pub struct KeyCache {
    local: RefCell<HashMap<String, CachedKey>>,
}

fn shared_key(hash: &str) -> String {
    format!("hubgate.key.{hash}")
}

impl KeyCache {
    pub fn lookup(&self, hash: &str, now_ms: i64, epoch: Option<u64>, ttl_ms: u64, negative_ttl_ms: u64) -> Lookup {
        let is_fresh = |e: &CachedKey| {
            let ttl = if e.key.is_some() { ttl_ms } else { negative_ttl_ms };
            now_ms - e.fetched_ms < ttl as i64 && epoch.is_none_or(|current| e.epoch >= current)
        };
        let local = self.local.borrow().get(hash).cloned();
        if let Some(entry) = local.as_ref().filter(|e| is_fresh(e)) {
            return Lookup::Fresh(entry.clone());
        }
        let shared: Option<CachedKey> = host::shared_get(&shared_key(hash))
            .0
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        match (shared, local) {
            (Some(s), _) if is_fresh(&s) => {
                self.remember_locally(hash, s.clone());
                Lookup::Fresh(s)
            }
            (Some(s), Some(l)) => Lookup::Stale(if s.fetched_ms >= l.fetched_ms { s } else { l }),
            (Some(s), None) => Lookup::Stale(s),
            (None, Some(l)) => Lookup::Stale(l),
            (None, None) => Lookup::Missing,
        }
    }

    pub fn store(&self, hash: &str, entry: CachedKey) {
        if entry.key.is_some() {
            match serde_json::to_vec(&entry) {
                Ok(bytes) => {
                    if let Err(e) = host::shared_set(&shared_key(hash), &bytes, None) {
                        log::warn!("cannot cache key: {e:?}");
                    }
                }
                Err(e) => log::warn!("cannot encode key cache entry: {e}"),
            }
        }
        self.remember_locally(hash, entry);
    }

    fn remember_locally(&self, hash: &str, entry: CachedKey) {
        let mut local = self.local.borrow_mut();
        if local.len() >= LOCAL_MAX {
            local.clear();
        }
        local.insert(hash.to_string(), entry);
    }
}
