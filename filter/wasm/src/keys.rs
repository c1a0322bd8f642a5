//! Key cache: resolved keys in shared data (all workers of this Envoy), with
//! a per-VM copy in front. Unknown keys are remembered only per VM (unless
//! they were known before), so random keys cannot grow shared memory.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

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

/// Entries are shared, not copied, between the cache and the requests
/// using them (a resolved key holds several lists).
pub enum Lookup {
    Fresh(Rc<CachedKey>),
    /// Older than its TTL, no change known: use it, refresh in the background.
    Expired(Rc<CachedKey>),
    /// Read before the last user/key change (older key epoch): wait for a
    /// fresh answer, but use this if the control plane cannot be reached.
    Outdated(Rc<CachedKey>),
    Missing,
}

#[derive(Default)]
pub struct KeyCache {
    local: RefCell<HashMap<String, Rc<CachedKey>>>,
}

fn shared_key(hash: &str) -> String {
    format!("hubgate.key.{hash}")
}

impl KeyCache {
    pub fn lookup(&self, hash: &str, now_ms: i64, epoch: Option<u64>, ttl_ms: u64, negative_ttl_ms: u64) -> Lookup {
        let current = |e: &CachedKey| epoch.is_none_or(|epoch| e.epoch >= epoch);
        let young = |e: &CachedKey| {
            let ttl = if e.key.is_some() { ttl_ms } else { negative_ttl_ms };
            now_ms - e.fetched_ms < ttl as i64
        };
        let local = self.local.borrow().get(hash).cloned();
        if let Some(entry) = local.as_ref().filter(|e| current(e) && young(e)) {
            return Lookup::Fresh(entry.clone());
        }
        let shared: Option<Rc<CachedKey>> = host::shared_get(&shared_key(hash))
            .0
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .map(Rc::new);
        let newest = match (shared, local) {
            (Some(s), Some(l)) => Some(if s.fetched_ms >= l.fetched_ms { s } else { l }),
            (s, l) => s.or(l),
        };
        match newest {
            Some(e) if current(&e) && young(&e) => {
                self.remember_locally(hash, e.clone());
                Lookup::Fresh(e)
            }
            Some(e) if current(&e) => Lookup::Expired(e),
            Some(e) => Lookup::Outdated(e),
            None => Lookup::Missing,
        }
    }

    /// The control plane could not answer: keep serving `entry` from this
    /// VM for `window_ms` without asking again (fail-static).
    pub fn hold(&self, hash: &str, entry: &CachedKey, now_ms: i64, epoch: Option<u64>, ttl_ms: u64, window_ms: u64) {
        let held = CachedKey {
            fetched_ms: now_ms - ttl_ms as i64 + window_ms as i64,
            epoch: epoch.unwrap_or(entry.epoch).max(entry.epoch),
            key: entry.key.clone(),
        };
        self.remember_locally(hash, Rc::new(held));
    }

    pub fn store(&self, hash: &str, entry: Rc<CachedKey>) {
        // An unknown key is shared only to overwrite a known one (a deleted
        // key must not live on in other workers); random keys stay local.
        let share = entry.key.is_some() || host::shared_get(&shared_key(hash)).0.is_some();
        if share {
            match serde_json::to_vec(entry.as_ref()) {
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

    fn remember_locally(&self, hash: &str, entry: Rc<CachedKey>) {
        let mut local = self.local.borrow_mut();
        if local.len() >= LOCAL_MAX {
            local.clear();
        }
        local.insert(hash.to_string(), entry);
    }
}
