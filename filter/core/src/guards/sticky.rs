//! Sticky sessions (SPEC §6): a session that is past its first message
//! keeps the provider it was sent to while that provider stays eligible.
//! Bindings sit in shared data, one list per key (session id hash, provider,
//! last use), so every worker of the Envoy process sees them; a binding
//! lapses after the session's idle time, and a key keeps at most
//! `MAX_PER_KEY` (the oldest go first).

use crate::hash::fnv1a;
use crate::shared::{self, SharedData};

/// A binding lapses this long after its last use (a session's idle time).
const BINDING_MS: i64 = 300_000;
/// The last use is written again only after this long (writes cost).
const REFRESH_MS: i64 = 30_000;
const MAX_PER_KEY: usize = 256;
const ENTRY: usize = 24;

fn store_key(key_id: i64) -> String {
    format!("hubgate.sticky.{key_id}")
}

/// (session hash, provider id, last use ms), still live at `now_ms`.
fn read(bytes: Option<&[u8]>, now_ms: i64) -> Vec<(u64, i64, i64)> {
    bytes
        .unwrap_or_default()
        .chunks_exact(ENTRY)
        .filter_map(|c| {
            let (hash, rest) = c.split_at(8);
            let (provider, seen) = rest.split_at(8);
            Some((
                u64::from_le_bytes(hash.try_into().ok()?),
                i64::from_le_bytes(provider.try_into().ok()?),
                i64::from_le_bytes(seen.try_into().ok()?),
            ))
        })
        .filter(|&(_, _, seen)| seen > now_ms - BINDING_MS)
        .collect()
}

/// The provider `session` of `key_id` is bound to, and when it was last
/// used.
pub fn bound(store: &dyn SharedData, key_id: i64, session: &str, now_ms: i64) -> Option<(i64, i64)> {
    let hash = fnv1a(session.as_bytes());
    let (bytes, _) = store.get(&store_key(key_id));
    read(bytes.as_deref(), now_ms).into_iter().find(|&(h, _, _)| h == hash).map(|(_, p, seen)| (p, seen))
}

/// Binds `session` to `provider` (a write only when the binding changes or
/// its last use is getting old). `None`: shared data could not be updated.
pub fn bind(
    store: &dyn SharedData,
    key_id: i64,
    session: &str,
    provider: i64,
    before: Option<(i64, i64)>,
    now_ms: i64,
) -> Option<()> {
    if before.is_some_and(|(p, seen)| p == provider && now_ms - seen < REFRESH_MS) {
        return Some(());
    }
    let hash = fnv1a(session.as_bytes());
    shared::update(store, &store_key(key_id), |current| {
        let mut entries = read(current, now_ms);
        entries.retain(|&(h, _, _)| h != hash);
        entries.push((hash, provider, now_ms));
        if entries.len() > MAX_PER_KEY {
            entries.sort_by_key(|&(_, _, seen)| seen);
            entries.drain(..entries.len() - MAX_PER_KEY);
        }
        let bytes = entries
            .iter()
            .flat_map(|(h, p, seen)| h.to_le_bytes().into_iter().chain(p.to_le_bytes()).chain(seen.to_le_bytes()))
            .collect();
        ((), bytes)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::FakeShared;

    const T0: i64 = 1_767_225_600_000;

    #[test]
    fn bindings_last_while_used_and_are_bounded() {
        let store = FakeShared::default();
        assert_eq!(bound(&store, 1, "s", T0), None);
        bind(&store, 1, "s", 7, None, T0).unwrap();
        assert_eq!(bound(&store, 1, "s", T0 + 1), Some((7, T0)));
        assert_eq!(bound(&store, 2, "s", T0 + 1), None, "per key");
        // A recent binding is not written again; an older one is refreshed.
        bind(&store, 1, "s", 7, Some((7, T0)), T0 + 10_000).unwrap();
        assert_eq!(bound(&store, 1, "s", T0 + 10_000), Some((7, T0)));
        bind(&store, 1, "s", 7, Some((7, T0)), T0 + 40_000).unwrap();
        assert_eq!(bound(&store, 1, "s", T0 + 40_000), Some((7, T0 + 40_000)));
        // Rebinding (after a failover or a provider change) replaces it.
        bind(&store, 1, "s", 9, Some((7, T0 + 40_000)), T0 + 41_000).unwrap();
        assert_eq!(bound(&store, 1, "s", T0 + 41_000), Some((9, T0 + 41_000)));
        // Idle past the session time: gone.
        assert_eq!(bound(&store, 1, "s", T0 + 41_000 + BINDING_MS), None);
        for i in 0..300 {
            bind(&store, 3, &format!("s{i}"), 1, None, T0 + i).unwrap();
        }
        assert_eq!(store.get("hubgate.sticky.3").0.unwrap().len(), MAX_PER_KEY * ENTRY);
        assert_eq!(bound(&store, 3, "s0", T0 + 300), None, "the oldest went first");
        assert_eq!(bound(&store, 3, "s299", T0 + 300), Some((1, T0 + 299)));
    }
}
