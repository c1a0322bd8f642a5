//! Guard 9 (SPEC §4), in the spec's order: key total → user total (cost,
//! `quota`) → key concurrency → user concurrency → user RPM → key and user
//! 5 h, daily, weekly, monthly (cost).
//! - Concurrency: `limit_concurrent_sessions` active sessions (a request
//!   within the last 300 s, SPEC §2.7); a key without a limit of its own
//!   takes its user's; an already active session always passes; 0 or unset
//!   is no limit. A request without a session id is not limited.
//! - RPM: a user's requests per rolling minute, in one-second buckets: a
//!   request counts for the 60 seconds that begin with its own.
//!
//! Both are counted per Envoy process (all its workers share the counts in
//! shared data), each process up to the share of the limit the control
//! plane granted it (`share`), so they hold across instances. Cost limits
//! hold across instances through leases (`quota`). Only
//! conversation requests count (passthrough endpoints such as count_tokens
//! never do; warmup is answered earlier). Fails open: a shared-data failure
//! lets the request through, counted.

use serde_json::json;

use rust_decimal::Decimal;

use hubgate_wire::{Entity, ShareKind};

use super::quota::{self, State};
use super::share;
use crate::chain::{Callout, Cx, Guard, Step};
use crate::hash::fnv1a;
use crate::locale::Locale;
use crate::reply::LocalReply;
use crate::shared::{self, SharedData};
use crate::time::rfc3339;

const BUCKETS: usize = 60;
/// A session is active this long after its last request (SPEC §2.7).
pub const SESSION_ACTIVE_MS: i64 = 300_000;

/// A refusal: how many requests the last minute holds, and when one more
/// fits (unix milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    pub current: u64,
    pub reset_ms: i64,
}

/// The minute's count in shared data: the second of the newest bucket, then
/// 60 counts, one per second, newest last.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Window {
    second: i64,
    counts: [u32; BUCKETS],
}

impl Window {
    fn read(bytes: Option<&[u8]>) -> Window {
        let mut w = Window { second: 0, counts: [0; BUCKETS] };
        let Some(bytes) = bytes.filter(|b| b.len() == 8 + 4 * BUCKETS) else { return w };
        let (second, counts) = bytes.split_at(8);
        w.second = second.try_into().map_or(0, i64::from_le_bytes);
        for (slot, chunk) in w.counts.iter_mut().zip(counts.chunks_exact(4)) {
            *slot = chunk.try_into().map_or(0, u32::from_le_bytes);
        }
        w
    }

    fn write(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 4 * BUCKETS);
        out.extend_from_slice(&self.second.to_le_bytes());
        for count in self.counts {
            out.extend_from_slice(&count.to_le_bytes());
        }
        out
    }

    /// Moves the newest bucket to `second`, forgetting what left the minute.
    fn advance(&mut self, second: i64) {
        let shift = second.saturating_sub(self.second);
        if shift <= 0 {
            return;
        }
        match usize::try_from(shift) {
            Ok(shift) if shift < BUCKETS => {
                self.counts.rotate_left(shift);
                for slot in self.counts.iter_mut().rev().take(shift) {
                    *slot = 0;
                }
            }
            _ => self.counts = [0; BUCKETS],
        }
        self.second = second;
    }

    fn total(&self) -> u64 {
        self.counts.iter().map(|&c| u64::from(c)).sum()
    }

    /// Whether one more request fits under `limit`, or why not.
    fn fits(&self, limit: u32) -> Result<(), Full> {
        let (total, limit) = (self.total(), u64::from(limit));
        if total >= limit {
            return Err(Full { current: total, reset_ms: self.reset_ms(limit) });
        }
        Ok(())
    }

    /// When enough of the oldest requests have left for one more to fit.
    fn reset_ms(&self, limit: u64) -> i64 {
        let mut leaving = self.total().saturating_sub(limit.saturating_sub(1));
        for (age, &count) in self.counts.iter().enumerate() {
            leaving = leaving.saturating_sub(u64::from(count));
            if leaving == 0 {
                // Bucket `age` (0 = oldest) leaves once its second is 60 s old.
                let bucket_second = self.second - (BUCKETS - 1 - age) as i64;
                return (bucket_second + BUCKETS as i64) * 1000;
            }
        }
        (self.second + 1) * 1000
    }
}

/// Counts one request of `user` at `now_ms` against `limit` a minute: the
/// minute's count with it, or why it does not fit. `None`: the shared count
/// could not be updated.
pub fn take(store: &dyn SharedData, user: i64, now_ms: i64, limit: u32) -> Option<Result<u64, Full>> {
    shared::update(store, &format!("hubgate.rpm.{user}"), |current| {
        let mut w = Window::read(current);
        w.advance(now_ms.div_euclid(1000));
        let fits = w.fits(limit);
        if fits.is_ok() {
            if let Some(newest) = w.counts.last_mut() {
                *newest = newest.saturating_add(1);
            }
        }
        (fits.map(|()| w.total()), w.write())
    })
}

/// Whether one more request of `user` would fit, without counting it (the
/// minute's count so far).
pub fn peek(store: &dyn SharedData, user: i64, now_ms: i64, limit: u32) -> Option<Result<u64, Full>> {
    let mut w = Window::read(store.get(&format!("hubgate.rpm.{user}")).0.as_deref());
    w.advance(now_ms.div_euclid(1000));
    Some(w.fits(limit).map(|()| w.total()))
}

/// The 429 of a full minute: SPEC §4's body fields and headers.
pub fn refusal(full: Full, limit: u32, now_ms: i64, locale: Locale) -> LocalReply {
    let retry_secs = ((full.reset_ms - now_ms).max(1) + 999).div_euclid(1000);
    let message = match locale {
        Locale::En => format!(
            "Rate limit exceeded: {} requests in the last minute (limit {limit}). Retry in {retry_secs} seconds.",
            full.current
        ),
        Locale::ZhCn => {
            format!("请求过于频繁：最近一分钟内 {} 次请求（限制 {limit} 次）。请在 {retry_secs} 秒后重试。", full.current)
        }
    };
    limited(LocalReply::new(429, "rpm_exceeded", message), "rpm", full, limit, now_ms)
}

/// SPEC §4's fields and headers on a limit's refusal.
fn limited(reply: LocalReply, limit_type: &str, full: Full, limit: u32, now_ms: i64) -> LocalReply {
    let ceil_secs = |ms: i64| (ms + 999).div_euclid(1000);
    reply
        .with_detail("limit_type", json!(limit_type))
        .with_detail("current", json!(full.current))
        .with_detail("limit", json!(limit))
        .with_detail("reset_time", json!(rfc3339(full.reset_ms)))
        .with_header("x-ratelimit-limit", limit.to_string())
        .with_header("x-ratelimit-remaining", "0")
        .with_header("x-ratelimit-reset", ceil_secs(full.reset_ms).to_string())
        .with_header("retry-after", ceil_secs((full.reset_ms - now_ms).max(1)).to_string())
}

/// The sessions of one key or user still active at `now_ms`: (session id
/// hash, last request in unix milliseconds), stored 16 bytes each.
fn active_sessions(bytes: Option<&[u8]>, now_ms: i64) -> Vec<(u64, i64)> {
    bytes
        .unwrap_or_default()
        .chunks_exact(16)
        .filter_map(|c| {
            let (id, seen) = c.split_at(8);
            Some((u64::from_le_bytes(id.try_into().ok()?), i64::from_le_bytes(seen.try_into().ok()?)))
        })
        .filter(|&(_, seen)| seen > now_ms - SESSION_ACTIVE_MS)
        .collect()
}

fn write_sessions(sessions: &[(u64, i64)]) -> Vec<u8> {
    sessions.iter().flat_map(|(id, seen)| id.to_le_bytes().into_iter().chain(seen.to_le_bytes())).collect()
}

fn sessions_key(kind: &str, id: i64) -> String {
    format!("hubgate.sessions.{kind}.{id}")
}

/// Sessions the control plane found active through another instance: they
/// pass here without taking a slot of this process's share.
fn elsewhere_key(kind: &str, id: i64) -> String {
    format!("hubgate.sessions.{kind}.{id}.elsewhere")
}

fn is_active_in(store: &dyn SharedData, key: &str, hash: u64, now_ms: i64) -> bool {
    active_sessions(store.get(key).0.as_deref(), now_ms).iter().any(|&(h, _)| h == hash)
}

/// Whether `session` may run under a limit of `limit` active sessions of
/// `kind` `id` at `now_ms` (read only: see [`track_session`]).
pub fn check_session(store: &dyn SharedData, kind: &str, id: i64, session: &str, now_ms: i64, limit: u32) -> Result<(), Full> {
    let hash = fnv1a(session.as_bytes());
    let (bytes, _) = store.get(&sessions_key(kind, id));
    let active = active_sessions(bytes.as_deref(), now_ms);
    if active.iter().any(|&(h, _)| h == hash)
        || active.len() < limit as usize
        || is_active_in(store, &elsewhere_key(kind, id), hash, now_ms)
    {
        return Ok(());
    }
    let oldest = active.iter().map(|&(_, seen)| seen).min().unwrap_or(now_ms);
    Err(Full { current: active.len() as u64, reset_ms: oldest + SESSION_ACTIVE_MS })
}

fn touch(store: &dyn SharedData, key: &str, hash: u64, now_ms: i64) -> Option<u64> {
    shared::update(store, key, |current| {
        let mut active = active_sessions(current, now_ms);
        active.retain(|&(h, _)| h != hash);
        active.push((hash, now_ms));
        (active.len() as u64, write_sessions(&active))
    })
}

/// Records `session` as active at `now_ms` (and forgets inactive ones):
/// how many this process counts now. `None`: the shared list could not be
/// updated.
pub fn track_session(store: &dyn SharedData, kind: &str, id: i64, session: &str, now_ms: i64) -> Option<u64> {
    let hash = fnv1a(session.as_bytes());
    let elsewhere = elsewhere_key(kind, id);
    let (bytes, _) = store.get(&sessions_key(kind, id));
    let local = active_sessions(bytes.as_deref(), now_ms);
    if !local.iter().any(|&(h, _)| h == hash) && is_active_in(store, &elsewhere, hash, now_ms) {
        touch(store, &elsewhere, hash, now_ms)?;
        return Some(local.len() as u64);
    }
    touch(store, &sessions_key(kind, id), hash, now_ms)
}

/// Notes `session` as active through another instance (the control
/// plane's word).
pub fn note_active_elsewhere(store: &dyn SharedData, kind: &str, id: i64, session: &str, now_ms: i64) -> Option<()> {
    touch(store, &elsewhere_key(kind, id), fnv1a(session.as_bytes()), now_ms).map(drop)
}

/// The 429 of a concurrency limit.
pub fn too_many_sessions(full: Full, limit: u32, now_ms: i64, locale: Locale) -> LocalReply {
    let (en, zh) = (
        format!("Too many active sessions: {} of {limit}. Finish one, or retry after {}.", full.current, rfc3339(full.reset_ms)),
        format!("活跃会话过多：{} 个（限制 {limit} 个）。请结束一个会话，或在 {} 后重试。", full.current, rfc3339(full.reset_ms)),
    );
    limited(LocalReply::new(429, "concurrent_sessions_exceeded", locale.pick(&en, &zh)), "concurrent_sessions", full, limit, now_ms)
}

/// A count limited by `limit` (RPM or active sessions) and how far this
/// process may go with it now.
struct Counted {
    kind: ShareKind,
    entity: Entity,
    id: i64,
    limit: u32,
    held: Option<share::Held>,
    allowance: u32,
}

impl Counted {
    #[allow(clippy::too_many_arguments)]
    fn new(
        store: &dyn SharedData,
        kind: ShareKind,
        entity: Entity,
        id: i64,
        limit: u32,
        now: i64,
        asked: bool,
        failed: bool,
    ) -> Counted {
        let held = share::read(store, kind, entity, id);
        let allowance = share::allowance(held.as_ref(), limit, now, asked, failed).min(limit);
        Counted { kind, entity, id, limit, held, allowance }
    }

    /// A refusal of this process's count, told for all instances: what the
    /// others hold counts too, and a short share is not asked again before
    /// its retry time.
    fn widen(&self, full: Full, now: i64) -> Full {
        match self.held {
            Some(h) if self.allowance < self.limit => Full {
                current: full.current + u64::from(h.others),
                reset_ms: full.reset_ms.max(h.retry_ms).max(now + 1_000),
            },
            _ => full,
        }
    }
}

pub struct RateLimit;

impl Guard for RateLimit {
    fn name(&self) -> &'static str {
        "rate_limit"
    }

    fn fails_open(&self) -> bool {
        true
    }

    fn check(&self, cx: &mut Cx<'_>) -> Result<Step, String> {
        if !cx.ex.endpoint.is_conversation() {
            return Ok(Step::Next);
        }
        let entry = cx.ex.key_entry.clone();
        let Some(key) = entry.as_ref().and_then(|e| e.key.as_ref()) else {
            return Err("rate limit before auth".to_string());
        };
        let now = cx.host.now_ms();
        let store = cx.host.shared();
        let locale = cx.ex.snapshot.as_ref().map_or(Locale::En, |s| s.locale);
        let costs = quota::limited(key);
        let need = if costs.is_empty() { Decimal::ZERO } else { quota::estimate(cx.ex) };
        let slots = quota::slots(store, &costs);
        let mut states: Vec<State> =
            costs.iter().zip(&slots).map(|(c, slot)| quota::state(slot.as_ref(), c.usd, need, now)).collect();
        if states.contains(&State::Ask) {
            if !cx.ex.lease_asked {
                cx.ex.lease_asked = true;
                return Ok(Step::Wait(Callout::Lease { key_id: key.id, need_usd: need, wait: true }));
            }
            // Asked already: what is still short is over its limit, unless
            // the control plane did not answer.
            for ((c, slot), state) in costs.iter().zip(&slots).zip(states.iter_mut()) {
                if *state != State::Ask {
                    continue;
                }
                // The control plane's limit wins over a key cached before a change.
                match slot {
                    Some(slot) if !cx.ex.lease_failed && slot.expires_ms > now => {
                        *state = State::Over(quota::refuse_for_a_while(store, c, slot, now));
                    }
                    _ => return Ok(Step::Answer(quota::unavailable())),
                }
            }
        }
        let over = |totals: bool| {
            costs.iter().zip(&states).find_map(|(c, state)| match state {
                State::Over(slot) if quota::is_total(c.limit_type) == totals => {
                    Some(quota::over_limit(c.entity, slot, now, locale))
                }
                _ => None,
            })
        };
        if let Some(reply) = over(true) {
            return Ok(Step::Answer(reply));
        }
        let user = &key.user;
        let user_sessions = user.limits.limit_concurrent_sessions.filter(|&l| l > 0);
        let key_sessions = key.limits.limit_concurrent_sessions.filter(|&l| l > 0).or(user_sessions);
        let session = cx.ex.session_id.clone();
        let (asked, failed) = (cx.ex.share_asked, cx.ex.share_failed);
        let mut limits: Vec<Counted> = Vec::new();
        if session.is_some() {
            for (entity, id, limit) in [(Entity::Key, key.id, key_sessions), (Entity::User, user.id, user_sessions)] {
                if let Some(limit) = limit {
                    limits.push(Counted::new(store, ShareKind::Sessions, entity, id, limit, now, asked, failed));
                }
            }
        }
        if let Some(limit) = user.rpm {
            limits.push(Counted::new(store, ShareKind::Rpm, Entity::User, user.id, limit, now, asked, failed));
        }
        let session = session.as_deref().unwrap_or_default();
        let count = |c: &Counted| match c.kind {
            ShareKind::Sessions => check_session(store, c.entity.as_str(), c.id, session, now, c.allowance),
            ShareKind::Rpm => peek(store, c.id, now, c.allowance).unwrap_or(Ok(0)).map(|_| ()),
        };
        // Every share too small for this request, asked for in one call.
        let asks: Vec<_> = limits
            .iter()
            .filter_map(|c| match count(c) {
                Err(full) if share::may_ask(c.held.as_ref(), c.kind, c.allowance, c.limit, now, asked) => {
                    let need = u32::try_from(full.current + 1).unwrap_or(u32::MAX);
                    let new_session = (c.kind == ShareKind::Sessions).then(|| session.to_string());
                    Some(share::ask(c.entity, c.kind, need, new_session))
                }
                _ => None,
            })
            .collect();
        if !asks.is_empty() {
            cx.ex.share_asked = true;
            return Ok(Step::Wait(Callout::Share { key_id: key.id, asks, wait: true }));
        }
        for c in limits.iter().filter(|c| c.kind == ShareKind::Sessions) {
            if let Err(full) = count(c) {
                return Ok(Step::Answer(too_many_sessions(c.widen(full, now), c.limit, now, locale)));
            }
        }
        let later = over(false);
        let mut rpm_count = 0;
        if let Some(c) = limits.iter().find(|c| c.kind == ShareKind::Rpm) {
            // A request refused by a later limit does not count in the minute.
            let counted =
                if later.is_some() { peek(store, c.id, now, c.allowance) } else { take(store, c.id, now, c.allowance) };
            match counted {
                Some(Ok(n)) => rpm_count = n,
                Some(Err(full)) => return Ok(Step::Answer(refusal(c.widen(full, now), c.limit, now, locale))),
                // Cost limits are never let through unchecked.
                None if !costs.is_empty() => return Ok(Step::Answer(quota::unavailable())),
                None => return Err("cannot update the request count".to_string()),
            }
        }
        if let Some(reply) = later {
            return Ok(Step::Answer(reply));
        }
        if !costs.is_empty() {
            match quota::reserve(store, &costs, need, now) {
                Ok((reservation, refill)) => {
                    cx.ex.reservation = Some(reservation);
                    if refill {
                        cx.background.push(Callout::Lease { key_id: key.id, need_usd: Decimal::ZERO, wait: false });
                    }
                }
                Err(Some((entity, short))) => return Ok(Step::Answer(quota::over_limit(entity, &short, now, locale))),
                Err(None) => {
                    log::warn!("cannot reserve quota budget in shared data");
                    return Ok(Step::Answer(quota::unavailable()));
                }
            }
        }
        let mut renewals = Vec::new();
        for c in &limits {
            let counted = match c.kind {
                ShareKind::Sessions => track_session(store, c.entity.as_str(), c.id, session, now)
                    .ok_or_else(|| "cannot update the active sessions".to_string())?,
                ShareKind::Rpm => rpm_count,
            };
            let counted = u32::try_from(counted).unwrap_or(u32::MAX);
            if share::renew_due(store, c.kind, c.entity, c.id, counted, now) {
                renewals.push(share::ask(c.entity, c.kind, counted, None));
            }
        }
        if !renewals.is_empty() {
            cx.background.push(Callout::Share { key_id: key.id, asks: renewals, wait: false });
        }
        Ok(Step::Next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::FakeShared;

    const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn takes(store: &FakeShared, at_ms: &[i64], limit: u32) -> Vec<Result<(), Full>> {
        at_ms.iter().map(|&t| take(store, 7, t, limit).unwrap_or(Ok(0)).map(|_| ())).collect()
    }

    #[test]
    fn the_limit_holds_over_a_rolling_minute() {
        let store = FakeShared::default();
        // Three at 0 s, 10 s and 20 s; the fourth within the minute is refused.
        let got = takes(&store, &[T0, T0 + 10_000, T0 + 20_000, T0 + 59_999], 3);
        assert!(got[..3].iter().all(Result::is_ok));
        // It fits once the first has left: 60 s after its second began.
        assert_eq!(got[3], Err(Full { current: 3, reset_ms: T0 + 60_000 }));
        assert_eq!(takes(&store, &[T0 + 60_000], 3), vec![Ok(())]);
        // Refusals do not count: the next fits when the 10 s one leaves.
        assert_eq!(takes(&store, &[T0 + 65_000], 3), vec![Err(Full { current: 3, reset_ms: T0 + 70_000 })]);
        assert_eq!(takes(&store, &[T0 + 70_000], 3), vec![Ok(())]);
    }

    #[test]
    fn a_quiet_minute_forgets_everything() {
        let store = FakeShared::default();
        assert!(takes(&store, &[T0, T0, T0], 3).iter().all(Result::is_ok));
        assert!(takes(&store, &[T0 + 1_000], 3)[0].is_err());
        assert!(takes(&store, &[T0 + 3_600_000, T0 + 3_600_001, T0 + 3_600_002], 3).iter().all(Result::is_ok));
    }

    #[test]
    fn users_are_counted_apart_and_races_retry() {
        let store = FakeShared::default();
        assert_eq!(take(&store, 1, T0, 1), Some(Ok(1)));
        assert_eq!(take(&store, 2, T0, 1), Some(Ok(1)));
        store.cas_conflicts.set(2);
        assert_eq!(take(&store, 1, T0, 1).map(|r| r.is_err()), Some(true));
        store.cas_conflicts.set(100);
        assert_eq!(take(&store, 2, T0, 1), None, "every attempt lost: the guard fails open");
    }

    #[test]
    fn a_clock_going_back_counts_in_the_newest_second() {
        let store = FakeShared::default();
        assert!(takes(&store, &[T0 + 5_000, T0 + 1_000], 2).iter().all(Result::is_ok));
        assert!(takes(&store, &[T0 + 5_000], 2)[0].is_err());
    }

    #[test]
    fn active_sessions_are_limited_and_expire() {
        let store = FakeShared::default();
        let admit = |session: &str, at: i64| {
            let checked = check_session(&store, "key", 1, session, at, 2);
            if checked.is_ok() {
                assert!(track_session(&store, "key", 1, session, at).is_some());
            }
            checked
        };
        assert_eq!(admit("a", T0), Ok(()));
        assert_eq!(admit("b", T0 + 1_000), Ok(()));
        // A third session waits for the oldest to go quiet (300 s).
        assert_eq!(admit("c", T0 + 2_000), Err(Full { current: 2, reset_ms: T0 + SESSION_ACTIVE_MS }));
        // An active session always passes, and stays active.
        assert_eq!(admit("a", T0 + 200_000), Ok(()));
        assert_eq!(admit("c", T0 + 300_000), Err(Full { current: 2, reset_ms: T0 + 1_000 + SESSION_ACTIVE_MS }));
        // b went quiet: c takes its place.
        assert_eq!(admit("c", T0 + 301_001), Ok(()));
        let stored = store.get("hubgate.sessions.key.1").0.unwrap_or_default();
        assert_eq!(stored.len(), 2 * 16, "b is forgotten");
        // Another key or user has its own list.
        assert_eq!(check_session(&store, "user", 1, "z", T0 + 301_001, 1), Ok(()));
    }

    #[test]
    fn the_session_refusal_names_its_limit() {
        let reply = too_many_sessions(Full { current: 2, reset_ms: T0 + 300_000 }, 2, T0 + 100_000, Locale::En);
        assert_eq!((reply.status, reply.code), (429, "concurrent_sessions_exceeded"));
        assert_eq!(reply.message, "Too many active sessions: 2 of 2. Finish one, or retry after 2026-01-01T00:05:00Z.");
        assert_eq!(reply.details.get("limit_type"), Some(&json!("concurrent_sessions")));
        assert!(reply.headers.contains(&("retry-after".to_string(), "200".to_string())));
    }

    #[test]
    fn the_refusal_carries_the_spec_fields_and_headers() {
        let full = Full { current: 3, reset_ms: T0 + 42_500 };
        let reply = refusal(full, 3, T0 + 10_000, Locale::En);
        assert_eq!(reply.status, 429);
        assert_eq!(reply.code, "rpm_exceeded");
        assert_eq!(reply.message, "Rate limit exceeded: 3 requests in the last minute (limit 3). Retry in 33 seconds.");
        assert_eq!(reply.details.get("limit_type"), Some(&json!("rpm")));
        assert_eq!(reply.details.get("current"), Some(&json!(3)));
        assert_eq!(reply.details.get("limit"), Some(&json!(3)));
        assert_eq!(reply.details.get("reset_time"), Some(&json!("2026-01-01T00:00:42Z")));
        let header = |name: &str| reply.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(header("x-ratelimit-limit"), Some("3"));
        assert_eq!(header("x-ratelimit-remaining"), Some("0"));
        assert_eq!(header("x-ratelimit-reset"), Some("1767225643"));
        assert_eq!(header("retry-after"), Some("33"));
        assert!(refusal(full, 3, T0, Locale::ZhCn).message.contains("最近一分钟内 3 次请求"));
    }
}
