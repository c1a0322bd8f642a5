//! RPM and concurrency across instances (SPEC §4), checked by the
//! rate-limit guard. This Envoy process counts a user's requests a minute
//! and a key's or user's active sessions itself (`rate_limit`), but only up
//! to the share the control plane granted it; the shares of all instances
//! together never exceed the limit. A request waits for the control plane
//! only when its count does not fit the share held; a share is renewed in
//! the background before it stops being usable, or when it is nearly used.
//! When the control plane cannot be asked, the process falls back to the
//! whole limit on its own counts (the README gives the bound).

use hubgate_wire::{Entity, ShareAsk, ShareKind, ShareResponse};
use serde::{Deserialize, Serialize};

use super::rate_limit::note_active_elsewhere;
use crate::shared::{self, SharedData};

/// Renew a share when it stops being usable within this.
const RENEW_BEFORE_MS: i64 = 20_000;
/// At most one background ask per share per this long.
const ASK_EVERY_MS: i64 = 5_000;

/// One share as this process holds it (times on this process's clock).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub share: u32,
    pub limit: u32,
    /// What the other instances held at the last answer.
    pub others: u32,
    pub usable_until_ms: i64,
    /// The control plane had too little: counts that do not fit are refused
    /// without asking again until this.
    pub retry_ms: i64,
    /// No background ask before this (one is in flight).
    pub renew_after_ms: i64,
}

fn store_key(kind: ShareKind, entity: Entity, id: i64) -> String {
    format!("hubgate.share.{}.{}.{id}", kind.as_str(), entity.as_str())
}

pub fn read(store: &dyn SharedData, kind: ShareKind, entity: Entity, id: i64) -> Option<Held> {
    let (bytes, _) = store.get(&store_key(kind, entity, id));
    serde_json::from_slice(&bytes?).ok()
}

/// How far this process may count right now under a limit of `limit`.
pub fn allowance(held: Option<&Held>, limit: u32, now_ms: i64, asked: bool, failed: bool) -> u32 {
    match held {
        // The control plane did not answer: this process alone, as if it
        // were the only one.
        _ if failed => limit,
        Some(h) if now_ms < h.usable_until_ms => h.share,
        Some(_) => 0,
        // Asked, and the control plane has no such limit (any more).
        None if asked => limit,
        None => 0,
    }
}

/// Whether a count that does not fit its allowance may ask for more. A
/// new session always may (it may be active through another instance, and
/// new sessions are rare); more requests a minute not before the retry time
/// of a short answer.
pub fn may_ask(held: Option<&Held>, kind: ShareKind, allowance: u32, limit: u32, now_ms: i64, asked: bool) -> bool {
    !asked && allowance < limit && (kind == ShareKind::Sessions || held.is_none_or(|h| h.retry_ms <= now_ms))
}

/// Whether the share needs renewing in the background, given the count
/// this process has after admitting a request; marks it asked if so.
pub fn renew_due(store: &dyn SharedData, kind: ShareKind, entity: Entity, id: i64, count: u32, now_ms: i64) -> bool {
    let Some(held) = read(store, kind, entity, id) else { return false };
    let expiring = held.usable_until_ms - now_ms < RENEW_BEFORE_MS;
    let nearly_used = count.saturating_mul(4) >= held.share.saturating_mul(3) && held.share < held.limit;
    if held.renew_after_ms > now_ms || held.retry_ms > now_ms || !(expiring || nearly_used) {
        return false;
    }
    shared::update(store, &store_key(kind, entity, id), |current| {
        let Some(mut h) = current.and_then(|b| serde_json::from_slice::<Held>(b).ok()) else {
            return (false, current.map(<[u8]>::to_vec).unwrap_or_default());
        };
        let due = h.renew_after_ms <= now_ms;
        h.renew_after_ms = now_ms + ASK_EVERY_MS;
        (due, serde_json::to_vec(&h).unwrap_or_default())
    })
    .unwrap_or(false)
}

/// Stores the control plane's answer.
pub fn apply(store: &dyn SharedData, answer: &ShareResponse, now_ms: i64) {
    // Its times on this clock, the end of use a second early.
    let skew = if answer.now_ms > 0 { now_ms - answer.now_ms } else { 0 };
    for s in &answer.shares {
        let fresh = Held {
            share: s.share,
            limit: s.limit,
            others: s.others,
            usable_until_ms: s.usable_until_ms.saturating_add(skew).saturating_sub(1_000),
            retry_ms: s.retry_at_ms.saturating_add(skew),
            renew_after_ms: 0,
        };
        let updated = shared::update(store, &store_key(s.kind, s.entity, s.entity_id), |current| {
            let old = current.and_then(|b| serde_json::from_slice::<Held>(b).ok());
            // An answer older than the share held (two asks crossed) only
            // brings news of the others.
            let held = match old {
                Some(old) if old.usable_until_ms > fresh.usable_until_ms => {
                    Held { others: fresh.others, retry_ms: old.retry_ms.max(fresh.retry_ms), ..old }
                }
                _ => fresh,
            };
            ((), serde_json::to_vec(&held).unwrap_or_default())
        });
        if updated.is_none() {
            log::warn!("could not store a rate share in shared data");
        }
        if let Some(session) = &s.active_session {
            if note_active_elsewhere(store, s.entity.as_str(), s.entity_id, session, now_ms).is_none() {
                log::warn!("could not note a session active elsewhere in shared data");
            }
        }
    }
}

/// An ask for a share of `kind` for `entity` large enough for `need` (and
/// the new session waiting, if any).
pub fn ask(entity: Entity, kind: ShareKind, need: u32, session: Option<String>) -> ShareAsk {
    ShareAsk { entity, kind, need, session }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::FakeShared;
    use hubgate_wire::Share;

    const T0: i64 = 1_767_225_600_000;

    fn answer(share: u32, usable_until_ms: i64, retry_at_ms: i64, now_ms: i64) -> ShareResponse {
        ShareResponse {
            shares: vec![Share {
                entity: Entity::User,
                entity_id: 7,
                kind: ShareKind::Rpm,
                limit: 10,
                share,
                others: 4,
                usable_until_ms,
                retry_at_ms,
                active_session: None,
            }],
            now_ms,
        }
    }

    #[test]
    fn a_share_is_usable_until_its_end_on_this_clock() {
        let store = FakeShared::default();
        // The control plane's clock runs 10 s ahead of this one.
        apply(&store, &answer(6, T0 + 70_000, T0 + 10_000, T0 + 10_000), T0);
        let held = read(&store, ShareKind::Rpm, Entity::User, 7);
        assert_eq!(held.map(|h| (h.share, h.others, h.usable_until_ms)), Some((6, 4, T0 + 59_000)));
        assert_eq!(allowance(held.as_ref(), 10, T0 + 58_999, false, false), 6);
        assert_eq!(allowance(held.as_ref(), 10, T0 + 59_000, false, false), 0);
        // Nothing held: ask; asked and still nothing: the limit is gone.
        assert_eq!(allowance(None, 10, T0, false, false), 0);
        assert_eq!(allowance(None, 10, T0, true, false), 10);
        // The control plane did not answer: the whole limit, alone.
        assert_eq!(allowance(held.as_ref(), 10, T0 + 60_000, true, true), 10);
    }

    #[test]
    fn a_short_answer_stops_asking_for_a_while() {
        let store = FakeShared::default();
        apply(&store, &answer(0, T0, T0 + 5_000, T0), T0);
        let held = read(&store, ShareKind::Rpm, Entity::User, 7);
        let rpm = ShareKind::Rpm;
        assert!(!may_ask(held.as_ref(), rpm, 0, 10, T0 + 4_999, false));
        assert!(may_ask(held.as_ref(), rpm, 0, 10, T0 + 5_000, false));
        assert!(!may_ask(held.as_ref(), rpm, 0, 10, T0 + 5_000, true), "asked once already");
        assert!(!may_ask(None, rpm, 10, 10, T0, false), "the whole limit needs no more");
        assert!(may_ask(held.as_ref(), ShareKind::Sessions, 0, 10, T0, false), "a new session may be active elsewhere");
    }

    #[test]
    fn an_older_answer_does_not_replace_a_newer_share() {
        let store = FakeShared::default();
        apply(&store, &answer(8, T0 + 61_000, T0, T0), T0);
        apply(&store, &answer(6, T0 + 60_000, T0, T0), T0);
        assert_eq!(read(&store, ShareKind::Rpm, Entity::User, 7).map(|h| h.share), Some(8));
    }

    #[test]
    fn renewals_come_before_the_end_or_when_nearly_used_once_per_while() {
        let store = FakeShared::default();
        apply(&store, &answer(8, T0 + 60_000, T0, T0), T0);
        assert!(!renew_due(&store, ShareKind::Rpm, Entity::User, 7, 5, T0));
        assert!(renew_due(&store, ShareKind::Rpm, Entity::User, 7, 6, T0), "3/4 used");
        assert!(!renew_due(&store, ShareKind::Rpm, Entity::User, 7, 6, T0 + 1_000), "one in flight");
        assert!(renew_due(&store, ShareKind::Rpm, Entity::User, 7, 1, T0 + 41_000), "ends within 20 s");
    }
}
