//! Cost quotas (SPEC §4), checked by the rate-limit guard in the spec's
//! order. Before admission a request reserves its estimate (prompt bytes / 4
//! input tokens + `max_tokens` output tokens, priced with the dearest
//! provider multiplier) against budget this Envoy process holds; the budget
//! comes from leases the control plane grants per (key or user, window) out
//! of the authoritative totals. When the request ends, the reservation is
//! settled to the real cost, and the event names the leases it spent under
//! so the control plane charges them.
//!
//! Budgets sit in shared data, one entry per key and per user, so every
//! worker of the process spends the same slices. A request waits for the
//! control plane only when a window has no usable lease or its budget is
//! short; otherwise the lease is refilled in the background once half of
//! its last slice is spent or its expiry is near.

use hubgate_wire::{Entity, Grant, LeaseResponse, Limits, ResolvedKey, Usage};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::chain::Exchange;
use crate::cost::cost;
use crate::locale::Locale;
use crate::reply::LocalReply;
use crate::shared::{self, SharedData};
use crate::time::rfc3339;

/// Output tokens assumed when the request sets no `max_tokens`.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u64 = 8192;
/// Refill a lease when its expiry is this close.
const RENEW_BEFORE_MS: i64 = 20_000;
/// At most one refill, and one wait after a short answer, per this long.
const ASK_EVERY_MS: i64 = 5_000;

/// One limited window's budget as this process holds it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Slot {
    pub limit_type: String,
    /// 0: the control plane had nothing to grant.
    pub lease_id: i64,
    /// Granted and not yet reserved or spent.
    pub balance: Decimal,
    pub limit: Decimal,
    /// What the control plane had left for anyone at the last grant.
    pub unallocated: Decimal,
    /// What the lease granted in all, as far as this process has heard.
    pub granted: Decimal,
    /// The last slice granted (refills start below half of it).
    pub slice: Decimal,
    pub expires_ms: i64,
    pub reset_ms: Option<i64>,
    pub rolling_hours: Option<i64>,
    /// No background refill before this (one is in flight).
    pub refill_after_ms: i64,
    /// The control plane had too little to grant: requests that do not fit
    /// are refused without asking again until this.
    pub refused_until_ms: i64,
}

fn add(a: Decimal, b: Decimal) -> Decimal {
    a.checked_add(b).unwrap_or(Decimal::MAX)
}

fn sub(a: Decimal, b: Decimal) -> Decimal {
    a.checked_sub(b).unwrap_or(Decimal::MIN)
}

/// One cost limit of a key or a user.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub entity: Entity,
    pub id: i64,
    /// `usd_total`, `usd_5h`, `daily_quota`, `usd_weekly` or `usd_monthly`.
    pub limit_type: &'static str,
    pub usd: Decimal,
}

/// The cost limits that apply to a request with `key`, in SPEC §4 order.
pub fn limited(key: &ResolvedKey) -> Vec<Limit> {
    fn of(l: &Limits) -> [(&'static str, Option<Decimal>); 5] {
        [
            ("usd_total", l.limit_total_usd),
            ("usd_5h", l.limit_5h_usd),
            ("daily_quota", l.limit_daily_usd),
            ("usd_weekly", l.limit_weekly_usd),
            ("usd_monthly", l.limit_monthly_usd),
        ]
    }
    let mut out = Vec::new();
    for (k, u) in of(&key.limits).into_iter().zip(of(&key.user.limits)) {
        if let (limit_type, Some(usd)) = k {
            out.push(Limit { entity: Entity::Key, id: key.id, limit_type, usd });
        }
        if let (limit_type, Some(usd)) = u {
            out.push(Limit { entity: Entity::User, id: key.user.id, limit_type, usd });
        }
    }
    out
}

/// Whether a limit type comes before the concurrency and RPM checks.
pub fn is_total(limit_type: &str) -> bool {
    limit_type == "usd_total"
}

/// The priced upper estimate of a request (0 when its model has no price:
/// such a request is billed nothing).
pub fn estimate(ex: &Exchange) -> Decimal {
    let Some(snapshot) = ex.snapshot.as_ref() else { return Decimal::ZERO };
    let Some(price) = ex.info.model.as_deref().and_then(|m| snapshot.prices.lookup(m)) else {
        return Decimal::ZERO;
    };
    let multiplier =
        snapshot.providers.iter().map(|p| p.provider.cost_multiplier).max().unwrap_or(Decimal::ONE);
    let body = ex.body.as_ref().map_or(0, |b| b.len()) as u64;
    let usage = Usage {
        input_tokens: body.div_ceil(4),
        output_tokens: ex.info.max_tokens.unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS),
        ..Usage::default()
    };
    cost(&usage, price, multiplier).unwrap_or(Decimal::MAX)
}

/// Each key and user once, in first-seen order.
fn distinct(items: impl Iterator<Item = (Entity, i64)>) -> Vec<(Entity, i64)> {
    let mut out: Vec<(Entity, i64)> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

fn budget_key(entity: Entity, id: i64) -> String {
    match entity {
        Entity::Key => format!("hubgate.quota.key.{id}"),
        Entity::User => format!("hubgate.quota.user.{id}"),
    }
}

fn read(bytes: Option<&[u8]>) -> Vec<Slot> {
    bytes.and_then(|b| serde_json::from_slice(b).ok()).unwrap_or_default()
}

/// Read-modify-write of one key's or user's slots (CAS, retried).
fn update<T>(store: &dyn SharedData, (entity, id): (Entity, i64), change: impl Fn(&mut Vec<Slot>) -> T) -> Option<T> {
    shared::update(store, &budget_key(entity, id), |current| {
        let mut slots = read(current);
        let result = change(&mut slots);
        (result, serde_json::to_vec(&slots).unwrap_or_default())
    })
}

/// The stored slot of each limit (one read per key or user).
pub fn slots(store: &dyn SharedData, limits: &[Limit]) -> Vec<Option<Slot>> {
    let budgets: Vec<((Entity, i64), Vec<Slot>)> = distinct(limits.iter().map(|l| (l.entity, l.id)))
        .into_iter()
        .map(|(entity, id)| ((entity, id), read(store.get(&budget_key(entity, id)).0.as_deref())))
        .collect();
    limits
        .iter()
        .map(|l| {
            let (_, slots) = budgets.iter().find(|(owner, _)| *owner == (l.entity, l.id))?;
            slots.iter().find(|s| s.limit_type == l.limit_type).cloned()
        })
        .collect()
}

/// What the stored budget says about one limit for a request of `need`.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// The budget covers it.
    Covered,
    /// Ask the control plane (no lease, an old one, a changed limit, or
    /// too little left), and wait.
    Ask,
    /// Over the limit, as far as this process knows.
    Over(Slot),
}

pub fn state(slot: Option<&Slot>, limit: Decimal, need: Decimal, now_ms: i64) -> State {
    let Some(slot) = slot else { return State::Ask };
    if slot.limit != limit || slot.expires_ms <= now_ms {
        return State::Ask;
    }
    if slot.lease_id != 0 && slot.balance > Decimal::ZERO && slot.balance >= need {
        return State::Covered;
    }
    if now_ms < slot.refused_until_ms {
        State::Over(slot.clone())
    } else {
        State::Ask
    }
}

/// The control plane had too little for a request: requests that do not
/// fit are refused without asking again for a while. Returns the slot.
pub fn refuse_for_a_while(store: &dyn SharedData, limit: &Limit, slot: &Slot, now_ms: i64) -> Slot {
    let refused = Slot { refused_until_ms: now_ms + ASK_EVERY_MS, ..slot.clone() };
    let stored = update(store, (limit.entity, limit.id), |slots| {
        for s in slots.iter_mut().filter(|s| s.limit_type == slot.limit_type && s.lease_id == slot.lease_id) {
            s.refused_until_ms = refused.refused_until_ms;
        }
    });
    if stored.is_none() {
        log::warn!("could not store a quota refusal in shared data");
    }
    refused
}

/// A request's hold on its budgets: what it reserved, under which leases.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reservation {
    pub estimate: Decimal,
    pub held: Vec<Held>,
}

/// One budget a reservation took from.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub entity: Entity,
    pub id: i64,
    pub limit_type: String,
    pub lease_id: i64,
}

impl Reservation {
    pub fn lease_ids(&self) -> Vec<i64> {
        self.held.iter().map(|h| h.lease_id).collect()
    }
}

/// The budget a reservation found short, and whose it is.
pub type Short = (Entity, Box<Slot>);

/// Takes `need` from every limited budget of the request; on a race lost to
/// another worker, gives back what it took and names the short slot.
/// `Err(None)`: shared data failed.
pub fn reserve(store: &dyn SharedData, limits: &[Limit], need: Decimal, now_ms: i64) -> Result<(Reservation, bool), Option<Short>> {
    let mut taken = Reservation { estimate: need, held: Vec::new() };
    let mut refill = false;
    for (entity, id) in distinct(limits.iter().map(|l| (l.entity, l.id))) {
        let names: Vec<&str> = limits.iter().filter(|l| (l.entity, l.id) == (entity, id)).map(|l| l.limit_type).collect();
        let done = update(store, (entity, id), |slots| {
            let mine = |s: &Slot| names.contains(&s.limit_type.as_str());
            if let Some(short) = slots.iter().find(|s| mine(s) && (s.lease_id == 0 || s.balance < need)) {
                return Err(Box::new(short.clone()));
            }
            let mut held = Vec::new();
            let mut wants_refill = false;
            for s in slots.iter_mut().filter(|s| mine(s)) {
                s.balance = sub(s.balance, need);
                held.push(Held { entity, id, limit_type: s.limit_type.clone(), lease_id: s.lease_id });
                let low = s.balance.checked_mul(Decimal::TWO).is_none_or(|b| b < s.slice) || s.expires_ms - now_ms < RENEW_BEFORE_MS;
                if low && now_ms >= s.refill_after_ms {
                    s.refill_after_ms = now_ms + ASK_EVERY_MS;
                    wants_refill = true;
                }
            }
            Ok((held, wants_refill))
        });
        match done {
            Some(Ok((held, wants_refill))) => {
                taken.held.extend(held);
                refill |= wants_refill;
            }
            Some(Err(short)) => {
                settle(store, &taken, Decimal::ZERO);
                return Err(Some((entity, short)));
            }
            None => {
                settle(store, &taken, Decimal::ZERO);
                return Err(None);
            }
        }
    }
    Ok((taken, refill))
}

/// Gives back the estimate and charges the real `cost` instead.
pub fn settle(store: &dyn SharedData, reservation: &Reservation, cost: Decimal) {
    for (entity, id) in distinct(reservation.held.iter().map(|h| (h.entity, h.id))) {
        let updated = update(store, (entity, id), |slots| {
            for s in slots.iter_mut() {
                // A slot under a newer lease no longer holds this budget.
                let held = reservation.held.iter().any(|h| {
                    (h.entity, h.id, h.lease_id) == (entity, id, s.lease_id) && h.limit_type == s.limit_type
                });
                if held {
                    s.balance = add(s.balance, sub(reservation.estimate, cost));
                }
            }
        });
        if updated.is_none() {
            log::warn!("could not settle a quota reservation in shared data");
        }
    }
}

/// Stores the budgets a lease answer granted. A grant under the lease a
/// slot already holds adds to it; any other replaces it.
pub fn apply(store: &dyn SharedData, answer: &LeaseResponse, now_ms: i64) {
    // The lease's end on this clock, a second early.
    let skew = if answer.now_ms > 0 { now_ms - answer.now_ms } else { 0 };
    for (entity, id) in distinct(answer.grants.iter().map(|g| (g.entity, g.entity_id))) {
        let grants: Vec<&Grant> = answer.grants.iter().filter(|g| (g.entity, g.entity_id) == (entity, id)).collect();
        let updated = update(store, (entity, id), |slots| {
            *slots = grants
                .iter()
                .map(|g| merge(slots.iter().find(|s| s.limit_type == g.limit_type), g, now_ms, skew))
                .collect();
        });
        if updated.is_none() {
            log::warn!("could not store a quota lease in shared data");
        }
    }
}

fn merge(old: Option<&Slot>, g: &Grant, now_ms: i64, skew: i64) -> Slot {
    // Lease ids only grow: an answer about an older lease than the one held
    // arrived late and changes nothing.
    if let Some(s) = old.filter(|s| g.lease_id != 0 && g.lease_id < s.lease_id) {
        return s.clone();
    }
    // Cumulative: an answer lost on the way, or one arriving after a newer
    // one, neither loses nor doubles budget, whether or not the lease had
    // run out here in between.
    let same = old.filter(|s| s.lease_id == g.lease_id && g.lease_id != 0);
    let granted = same.map_or(g.lease_granted_usd, |s| s.granted.max(g.lease_granted_usd));
    let balance = add(same.map_or(Decimal::ZERO, |s| s.balance), sub(granted, same.map_or(Decimal::ZERO, |s| s.granted)));
    let expires_ms = g.expires_at_ms.saturating_add(skew).saturating_sub(1_000);
    Slot {
        limit_type: g.limit_type.clone(),
        lease_id: g.lease_id,
        balance,
        limit: g.limit_usd,
        unallocated: g.unallocated_usd,
        granted,
        slice: if g.granted_usd > Decimal::ZERO { g.granted_usd } else { same.map_or(Decimal::ZERO, |s| s.slice) },
        expires_ms: same.map_or(expires_ms, |s| s.expires_ms.max(expires_ms)),
        reset_ms: g.reset_at_ms,
        rolling_hours: g.rolling_hours,
        refill_after_ms: now_ms,
        // Nothing granted: the next requests that do not fit are refused
        // without asking for a while.
        refused_until_ms: if g.granted_usd > Decimal::ZERO { 0 } else { now_ms + ASK_EVERY_MS },
    }
}

/// The 402 of a cost limit: SPEC §4's body fields, headers and messages.
pub fn over_limit(entity: Entity, slot: &Slot, now_ms: i64, locale: Locale) -> LocalReply {
    let code = match slot.limit_type.as_str() {
        "usd_total" => "usd_total_exceeded",
        "usd_5h" => "usd_5h_exceeded",
        "daily_quota" => "daily_quota_exceeded",
        "usd_weekly" => "usd_weekly_exceeded",
        _ => "usd_monthly_exceeded",
    };
    // Used, or held by requests in flight and other instances.
    let current = sub(sub(slot.limit, slot.unallocated), slot.balance.max(Decimal::ZERO))
        .clamp(Decimal::ZERO, slot.limit)
        .round_dp(6)
        .normalize();
    let limit = slot.limit.normalize();
    let (who_en, who_zh) = match entity {
        Entity::Key => ("Key", "密钥"),
        Entity::User => ("User", "用户"),
    };
    let (window_en, window_zh) = match slot.limit_type.as_str() {
        "usd_total" => ("total", "总"),
        "usd_5h" => ("5-hour", "5 小时"),
        "daily_quota" => ("daily", "每日"),
        "usd_weekly" => ("weekly", "每周"),
        _ => ("monthly", "每月"),
    };
    // A rolling window whose oldest charge is not known yet (still on its
    // way to the control plane) is clear a full window from now at the latest.
    let reset_ms = match slot.rolling_hours {
        Some(hours) => Some(slot.reset_ms.unwrap_or(now_ms + hours * 3_600_000)),
        None => slot.reset_ms,
    };
    let (reset_en, reset_zh) = match (slot.rolling_hours, reset_ms) {
        (Some(_), Some(reset)) => {
            let (n, en, zh) = until(reset - now_ms);
            (format!("Quota will reset in {n} {en}"), format!("额度将在 {n} {zh}后重置"))
        }
        (_, Some(reset)) => (format!("Quota will reset at {}", rfc3339(reset)), format!("额度将在 {} 重置", rfc3339(reset))),
        (_, None) => ("Ask an admin to raise or reset it".to_string(), "请联系管理员提高或重置限额".to_string()),
    };
    let en = format!("{who_en} {window_en} cost limit exceeded: ${current} of ${limit} used. {reset_en}.");
    let zh = format!("{who_zh}{window_zh}消费限额已用尽：已用 ${current}，限额 ${limit}。{reset_zh}。");
    let mut reply = LocalReply::new(402, code, locale.pick(&en, &zh))
        .with_detail("limit_type", json!(slot.limit_type))
        .with_detail("current", json!(current.to_string()))
        .with_detail("limit", json!(limit.to_string()))
        .with_detail("reset_time", reset_ms.map_or(json!(null), |r| json!(rfc3339(r))))
        .with_header("x-ratelimit-limit", limit.to_string())
        .with_header("x-ratelimit-remaining", "0");
    if let Some(reset) = reset_ms {
        reply = reply
            .with_header("x-ratelimit-reset", (reset + 999).div_euclid(1000).to_string())
            .with_header("retry-after", ((reset - now_ms).max(1) + 999).div_euclid(1000).to_string());
    }
    reply
}

/// A duration as a whole number of hours (rounded up), or of minutes when
/// under an hour.
fn until(ms: i64) -> (i64, &'static str, &'static str) {
    let minutes = (ms.max(0) + 59_999) / 60_000;
    if minutes >= 60 {
        ((minutes + 59) / 60, "hours", "小时")
    } else {
        (minutes.max(1), "minutes", "分钟")
    }
}

/// The answer when no lease could be had at all.
pub fn unavailable() -> LocalReply {
    LocalReply::new(503, "quota_unavailable", "The gateway cannot check this key's cost limits right now. Retry shortly.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::FakeShared;

    const NOW: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn slot(limit_type: &str, balance: &str) -> Slot {
        Slot {
            limit_type: limit_type.into(),
            lease_id: 3,
            balance: d(balance),
            limit: d("10"),
            unallocated: d("0.25"),
            granted: d("5"),
            slice: d("1"),
            expires_ms: NOW + 60_000,
            reset_ms: None,
            rolling_hours: None,
            refill_after_ms: 0,
            refused_until_ms: 0,
        }
    }

    #[test]
    fn a_slot_is_used_only_while_its_lease_and_limit_hold() {
        let s = slot("usd_5h", "1");
        assert_eq!(state(Some(&s), d("10"), d("0.5"), NOW), State::Covered);
        assert_eq!(state(Some(&s), d("10"), d("2"), NOW), State::Ask, "too little: ask for more");
        assert_eq!(state(Some(&s), d("20"), d("0.5"), NOW), State::Ask, "the admin changed the limit");
        assert_eq!(state(Some(&s), d("10"), d("0.5"), NOW + 60_000), State::Ask, "the lease expired");
        assert_eq!(state(None, d("10"), d("0"), NOW), State::Ask);
        let refused = Slot { refused_until_ms: NOW + 5_000, ..s.clone() };
        assert!(matches!(state(Some(&refused), d("10"), d("2"), NOW), State::Over(_)));
        let empty = Slot { balance: Decimal::ZERO, ..refused };
        assert!(matches!(state(Some(&empty), d("10"), d("0"), NOW), State::Over(_)), "an unpriced request needs budget too");
    }

    #[test]
    fn a_reservation_lost_to_a_race_gives_back_what_it_took() {
        let store = FakeShared::default();
        let write = |slots: &[Slot]| serde_json::to_vec(slots).unwrap();
        store.set("hubgate.quota.key.1", &write(&[slot("usd_total", "1")]), None).unwrap();
        store.set("hubgate.quota.user.2", &write(&[slot("usd_total", "0.1")]), None).unwrap();
        let limit = |entity, id| Limit { entity, id, limit_type: "usd_total", usd: d("10") };
        let limits = [limit(Entity::Key, 1), limit(Entity::User, 2)];
        let (entity, short) = reserve(&store, &limits, d("0.5"), NOW).unwrap_err().unwrap();
        assert_eq!((entity, short.balance), (Entity::User, d("0.1")));
        let key = read(store.get("hubgate.quota.key.1").0.as_deref());
        assert_eq!(key[0].balance, d("1"), "the key's part was given back");
        let (held, refill) = reserve(&store, &limits, d("0.05"), NOW).unwrap();
        assert!(refill, "the user's slot is below half its slice");
        assert_eq!(held.lease_ids(), vec![3, 3]);
        settle(&store, &held, d("0.02"));
        let user = read(store.get("hubgate.quota.user.2").0.as_deref());
        assert_eq!(user[0].balance, d("0.08"));
    }

    #[test]
    fn a_new_lease_replaces_the_budget_and_the_same_one_adds_to_it() {
        let store = FakeShared::default();
        let grant = |lease: i64, granted: &str, total: &str| Grant {
            entity: Entity::Key,
            entity_id: 1,
            limit_type: "usd_weekly".into(),
            lease_id: lease,
            granted_usd: d(granted),
            lease_granted_usd: d(total),
            limit_usd: d("10"),
            spent_usd: d("4"),
            unallocated_usd: d("2"),
            expires_at_ms: NOW + 60_000,
            reset_at_ms: Some(NOW + 86_400_000),
            rolling_hours: None,
        };
        let balance = |store: &FakeShared| read(store.get("hubgate.quota.key.1").0.as_deref())[0].balance;
        apply(&store, &LeaseResponse { grants: vec![grant(7, "1.5", "1.5")], now_ms: NOW }, NOW);
        apply(&store, &LeaseResponse { grants: vec![grant(7, "0.5", "2")], now_ms: NOW }, NOW);
        assert_eq!(balance(&store), d("2"));
        // The answer granting 0.25 was lost; the next one brings it too.
        apply(&store, &LeaseResponse { grants: vec![grant(7, "0.25", "2.5")], now_ms: NOW }, NOW);
        assert_eq!(balance(&store), d("2.5"));
        // A late answer changes nothing.
        apply(&store, &LeaseResponse { grants: vec![grant(7, "0.5", "2")], now_ms: NOW }, NOW);
        assert_eq!(balance(&store), d("2.5"));
        apply(&store, &LeaseResponse { grants: vec![grant(8, "0.25", "0.25")], now_ms: NOW }, NOW);
        assert_eq!(balance(&store), d("0.25"), "the old lease's budget is gone with it");
        // A late answer about lease 7 does not bring it back.
        apply(&store, &LeaseResponse { grants: vec![grant(7, "0.5", "3")], now_ms: NOW }, NOW);
        assert_eq!(balance(&store), d("0.25"));
        // A renewal arriving after the lease ran out here adds only what is new.
        let late = NOW + 120_000;
        apply(&store, &LeaseResponse { grants: vec![grant(8, "0.5", "0.75")], now_ms: late }, late);
        assert_eq!(balance(&store), d("0.75"));
        // The control plane's clock is 10 s ahead: the lease ends 10 s (and a
        // second) earlier on this clock.
        apply(&store, &LeaseResponse { grants: vec![grant(9, "1", "1")], now_ms: late + 10_000 }, late);
        let slot = read(store.get("hubgate.quota.key.1").0.as_deref())[0].clone();
        assert_eq!(slot.expires_ms, NOW + 60_000 - 10_000 - 1_000);
    }

    #[test]
    fn refusals_name_the_window_and_when_it_resets() {
        let fixed = Slot { reset_ms: Some(NOW + 90_000), ..slot("usd_weekly", "0") };
        let reply = over_limit(Entity::User, &fixed, NOW, Locale::En);
        assert_eq!((reply.status, reply.code), (402, "usd_weekly_exceeded"));
        assert_eq!(reply.message, "User weekly cost limit exceeded: $9.75 of $10 used. Quota will reset at 2026-01-01T00:01:30Z.");
        assert!(reply.headers.contains(&("retry-after".into(), "90".into())));
        assert_eq!(reply.details.get("current"), Some(&json!("9.75")));
        let rolling = Slot { reset_ms: Some(NOW + 2 * 3_600_000 + 1), rolling_hours: Some(5), ..slot("usd_5h", "0") };
        let reply = over_limit(Entity::Key, &rolling, NOW, Locale::En);
        assert!(reply.message.ends_with("Quota will reset in 3 hours."), "{}", reply.message);
        let unknown = Slot { reset_ms: None, ..rolling };
        let reply = over_limit(Entity::Key, &unknown, NOW, Locale::En);
        assert!(reply.message.ends_with("Quota will reset in 5 hours."), "{}", reply.message);
        assert!(reply.headers.contains(&("retry-after".into(), "18000".into())));
        let total = over_limit(Entity::Key, &slot("usd_total", "0"), NOW, Locale::En);
        assert_eq!(total.code, "usd_total_exceeded");
        assert!(total.headers.iter().all(|(n, _)| n != "retry-after"), "a lifetime total never resets by itself");
        assert_eq!(total.details.get("reset_time"), Some(&json!(null)));
        assert!(over_limit(Entity::Key, &fixed, NOW, Locale::ZhCn).message.contains("消费限额已用尽"));
    }
}
