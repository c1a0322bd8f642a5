//! Key cache: resolved keys in shared data (all workers of this Envoy), with
//! a per-VM copy in front. Unknown keys are remembered only per VM (unless
//! they were known before), so random keys cannot grow shared memory.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use hubgate_wire::ResolvedKey;
use serde::{Deserialize, Serialize};

use crate::guards::client::ClientRule;
use crate::shared::SharedData;

/// Per-VM entries beyond this are dropped wholesale (they are only a cache).
const LOCAL_MAX: usize = 10_000;

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct CachedKey {
    pub fetched_ms: i64,
    /// Key epoch of the control-plane answer; older than the snapshot's
    /// epoch means a user or key changed since.
    pub epoch: u64,
    pub key: Option<ResolvedKey>,
    /// The user's client lists, compiled on first use in this VM.
    #[serde(skip)]
    pub client_rule: OnceCell<ClientRule>,
}

impl CachedKey {
    pub fn new(fetched_ms: i64, epoch: u64, key: Option<ResolvedKey>) -> CachedKey {
        CachedKey { fetched_ms, epoch, key, client_rule: OnceCell::new() }
    }

    /// The client rule of the key's user (empty for an unknown key).
    pub fn client_rule(&self) -> &ClientRule {
        self.client_rule.get_or_init(|| match &self.key {
            Some(k) => ClientRule::compile(&k.user.allowed_clients, &k.user.blocked_clients),
            None => ClientRule::default(),
        })
    }
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

/// Half of the hex SHA-256 (128 bits) names a key in the caches: plenty to
/// keep keys apart, and 32 bytes less per entry in every map.
fn short(hash: &str) -> &str {
    hash.get(..32).unwrap_or(hash)
}

fn shared_key(hash: &str) -> String {
    format!("hubgate.key.{}", short(hash))
}

impl KeyCache {
    pub fn lookup(
        &self,
        shared: &dyn SharedData,
        hash: &str,
        now_ms: i64,
        epoch: Option<u64>,
        ttl_ms: u64,
        negative_ttl_ms: u64,
    ) -> Lookup {
        let current = |e: &CachedKey| epoch.is_none_or(|epoch| e.epoch >= epoch);
        let young = |e: &CachedKey| {
            let ttl = if e.key.is_some() { ttl_ms } else { negative_ttl_ms };
            now_ms - e.fetched_ms < ttl as i64
        };
        let local = self.local.borrow().get(short(hash)).cloned();
        if let Some(entry) = local.as_ref().filter(|e| current(e) && young(e)) {
            return Lookup::Fresh(entry.clone());
        }
        let shared: Option<Rc<CachedKey>> = shared
            .get(&shared_key(hash))
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
            client_rule: entry.client_rule.clone(),
        };
        self.remember_locally(hash, Rc::new(held));
    }

    /// Caches a control-plane answer. Errors (shared data full, …) are
    /// returned for the caller to log; the entry is kept locally anyway.
    pub fn store(&self, shared: &dyn SharedData, hash: &str, entry: Rc<CachedKey>) -> Result<(), String> {
        // An unknown key is shared only to overwrite a known one (a deleted
        // key must not live on in other workers); random keys stay local.
        let share = entry.key.is_some() || shared.get(&shared_key(hash)).0.is_some();
        let result = if share {
            match serde_json::to_vec(entry.as_ref()) {
                Ok(bytes) => shared.set(&shared_key(hash), &bytes, None).map_err(|e| format!("cannot cache key: {e:?}")),
                Err(e) => Err(format!("cannot encode key cache entry: {e}")),
            }
        } else {
            Ok(())
        };
        self.remember_locally(hash, entry);
        result
    }

    fn remember_locally(&self, hash: &str, entry: Rc<CachedKey>) {
        let hash = short(hash);
        let mut local = self.local.borrow_mut();
        if local.len() >= LOCAL_MAX && !local.contains_key(hash) {
            // Unknown keys go first: a flood of random keys must not evict
            // the keys in use.
            local.retain(|_, e| e.key.is_some());
            if local.len() >= LOCAL_MAX {
                local.clear();
            }
        }
        local.insert(hash.to_string(), entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::FakeShared;
    use hubgate_wire::{ResolvedUser, Role};

    fn key(id: i64) -> ResolvedKey {
        ResolvedKey {
            id,
            name: "k".into(),
            masked: "sk-…abcd".into(),
            enabled: true,
            expires_at_ms: None,
            can_login_web_ui: false,
            limits: Default::default(),
            provider_group: None,
            user: ResolvedUser {
                id: 1,
                name: "u".into(),
                enabled: true,
                expires_at_ms: None,
                role: Role::User,
                allowed_clients: vec![],
                blocked_clients: vec![],
                allowed_models: vec![],
                rpm: None,
                limits: Default::default(),
                daily_reset_mode: Default::default(),
                daily_reset_time: "00:00".into(),
                provider_group: None,
            },
        }
    }

    fn entry(fetched_ms: i64, epoch: u64, key: Option<ResolvedKey>) -> Rc<CachedKey> {
        Rc::new(CachedKey::new(fetched_ms, epoch, key))
    }

    #[test]
    fn a_key_stored_by_one_worker_is_found_by_another() {
        let shared = FakeShared::default();
        let (a, b) = (KeyCache::default(), KeyCache::default());
        a.store(&shared, "h", entry(1000, 1, Some(key(7)))).unwrap();
        match b.lookup(&shared, "h", 2000, Some(1), 60_000, 5_000) {
            Lookup::Fresh(e) => assert_eq!(e.key.as_ref().map(|k| k.id), Some(7)),
            _ => panic!("not fresh"),
        }
    }

    #[test]
    fn unknown_keys_stay_local_unless_they_replace_a_known_one() {
        let shared = FakeShared::default();
        let cache = KeyCache::default();
        cache.store(&shared, "random", entry(1000, 1, None)).unwrap();
        assert!(shared.is_empty(), "a random key grew shared memory");
        cache.store(&shared, "h", entry(1000, 1, Some(key(7)))).unwrap();
        KeyCache::default().store(&shared, "h", entry(2000, 2, None)).unwrap();
        assert!(matches!(KeyCache::default().lookup(&shared, "h", 2500, Some(2), 60_000, 5_000), Lookup::Fresh(e) if e.key.is_none()));
    }

    #[test]
    fn a_random_key_flood_keeps_the_keys_in_use() {
        let shared = FakeShared::default();
        let cache = KeyCache::default();
        cache.store(&shared, "good", entry(1000, 1, Some(key(7)))).unwrap();
        for i in 0..(LOCAL_MAX * 2) {
            cache.store(&shared, &format!("random-{i}"), entry(1000, 1, None)).unwrap();
        }
        assert!(cache.local.borrow().contains_key("good"));
        assert!(cache.local.borrow().len() <= LOCAL_MAX);
    }

    #[test]
    fn caches_name_a_key_by_half_its_hash() {
        let shared = FakeShared::default();
        let cache = KeyCache::default();
        let hash = hubgate_wire::hash_key("sk-test-0123456789");
        cache.store(&shared, &hash, entry(1000, 1, Some(key(7)))).unwrap();
        let name = format!("hubgate.key.{}", &hash[..32]);
        assert!(shared.get(&name).0.is_some());
        assert!(cache.local.borrow().contains_key(&hash[..32]));
        let other = KeyCache::default();
        assert!(matches!(other.lookup(&shared, &hash, 2000, Some(1), 60_000, 5_000), Lookup::Fresh(e) if e.key.as_ref().map(|k| k.id) == Some(7)));
        // Entries stay small: a plain key is well under 300 bytes with its name.
        assert!(shared.bytes() < 300, "{} bytes", shared.bytes());
    }

    #[test]
    fn ttl_and_epoch() {
        let shared = FakeShared::default();
        let cache = KeyCache::default();
        cache.store(&shared, "h", entry(1000, 1, Some(key(7)))).unwrap();
        assert!(matches!(cache.lookup(&shared, "h", 70_000, Some(1), 60_000, 5_000), Lookup::Expired(_)));
        assert!(matches!(cache.lookup(&shared, "h", 2_000, Some(2), 60_000, 5_000), Lookup::Outdated(_)));
        assert!(matches!(cache.lookup(&shared, "x", 2_000, Some(1), 60_000, 5_000), Lookup::Missing));
    }
}
