//! `POST SHARES_PATH`: RPM and concurrency shares for one filter instance
//! (SPEC §4).
//!
//! Each instance counts requests a minute (a user's `rpm`) and active
//! sessions (`limit_concurrent_sessions` of a key or user) by itself, up to
//! the share it holds. A share is usable for the lease TTL and stays
//! reserved for the counting window after that (60 s for RPM, 300 s for
//! sessions), so what an instance admitted under it is never handed to
//! another instance while it still counts. The shares of all instances
//! together never exceed the limit. Grants for one key or user are
//! serialized with a transaction-scoped advisory lock.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, TimeDelta, Utc};
use hubgate_wire::{Entity, Share, ShareAsk, ShareKind, ShareRequest, ShareResponse};
use sqlx::PgConnection;

use crate::app::AppState;
use crate::errors::{ApiError, ApiResult};
use crate::extract::JsonBody;

/// How long an instance whose share fell short waits before asking again.
const SHORT_RETRY: TimeDelta = TimeDelta::seconds(5);

/// How long what an instance admitted still counts against the limit.
fn counting_window(kind: ShareKind) -> TimeDelta {
    match kind {
        ShareKind::Rpm => TimeDelta::seconds(60),
        ShareKind::Sessions => TimeDelta::seconds(300),
    }
}

struct Limits {
    user_id: i64,
    key_sessions: Option<i32>,
    user_sessions: Option<i32>,
    rpm: Option<i32>,
}

pub async fn grant(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<ShareRequest>,
) -> ApiResult<Json<ShareResponse>> {
    if req.instance.is_empty() || req.instance.len() > 200 {
        return Err(ApiError::validation("instance", "1 to 200 characters"));
    }
    if req.asks.len() > 3 {
        return Err(ApiError::validation("asks", "at most 3 asks"));
    }
    let ttl = TimeDelta::from_std(state.lease_ttl).unwrap_or(TimeDelta::seconds(60));
    let mut tx = state.pool.begin().await?;
    let limits = sqlx::query_as!(
        Limits,
        "SELECT k.user_id, k.limit_concurrent_sessions AS key_sessions, \
                u.limit_concurrent_sessions AS user_sessions, u.rpm \
         FROM keys k JOIN users u ON u.id = k.user_id \
         WHERE k.id = $1 AND k.deleted_at IS NULL",
        req.key_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let limits = limits.ok_or(ApiError::NotFound)?;
    let positive = |l: Option<i32>| l.and_then(|l| u32::try_from(l).ok()).filter(|&l| l > 0);
    // Key first, then its user: every grant takes the locks in this order.
    lock(&mut tx, "key", req.key_id).await?;
    lock(&mut tx, "user", limits.user_id).await?;
    let now = Utc::now();
    let mut shares = Vec::new();
    let mut seen = Vec::new();
    for ask in &req.asks {
        let (id, limit) = match (ask.entity, ask.kind) {
            (Entity::Key, ShareKind::Sessions) => (
                req.key_id,
                positive(limits.key_sessions).or(positive(limits.user_sessions)),
            ),
            (Entity::User, ShareKind::Sessions) => (limits.user_id, positive(limits.user_sessions)),
            (Entity::User, ShareKind::Rpm) => (limits.user_id, positive(limits.rpm)),
            (Entity::Key, ShareKind::Rpm) => (req.key_id, None),
        };
        let Some(limit) = limit else { continue };
        if seen.contains(&(ask.entity, ask.kind)) {
            continue;
        }
        seen.push((ask.entity, ask.kind));
        shares.push(grant_one(&mut tx, &req.instance, ask, id, limit, now, ttl).await?);
    }
    tx.commit().await?;
    Ok(Json(ShareResponse {
        shares,
        now_ms: now.timestamp_millis(),
    }))
}

async fn lock(conn: &mut PgConnection, entity: &str, id: i64) -> ApiResult<()> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        format!("hubgate.share.{entity}.{id}")
    )
    .execute(conn)
    .await?;
    Ok(())
}

struct Row {
    instance: String,
    share: i32,
    usable_until: DateTime<Utc>,
    held: i32,
    held_until: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl Row {
    /// What the row keeps from other instances at `now`.
    fn reserved(&self, now: DateTime<Utc>) -> u32 {
        if self.expires_at <= now {
            return 0;
        }
        let held = if self.held_until > now { self.held } else { 0 };
        u32::try_from(self.share.max(held)).unwrap_or(0)
    }
}

/// The share an instance gets out of `avail` (what the others leave) when
/// it needs `need`. RPM gets half of what is left beyond the need, so busy
/// instances converge on the whole limit in a few asks; sessions get
/// exactly the need (a new session is rare, an idle slot is wasted).
fn size(kind: ShareKind, avail: u32, need: u32) -> u32 {
    match kind {
        ShareKind::Rpm => avail.min(need.max((avail + need).div_ceil(2))),
        ShareKind::Sessions => avail.min(need),
    }
}

async fn grant_one(
    conn: &mut PgConnection,
    instance: &str,
    ask: &ShareAsk,
    id: i64,
    limit: u32,
    now: DateTime<Utc>,
    ttl: TimeDelta,
) -> ApiResult<Share> {
    let (entity, kind) = (ask.entity.as_str(), ask.kind.as_str());
    let rows = sqlx::query_as!(
        Row,
        "SELECT instance, share, usable_until, held, held_until, expires_at FROM rate_shares \
         WHERE entity_type = $1 AND entity_id = $2 AND kind = $3 AND expires_at > $4 \
         ORDER BY instance FOR UPDATE",
        entity,
        id,
        kind,
        now
    )
    .fetch_all(&mut *conn)
    .await?;
    let others: u32 = rows
        .iter()
        .filter(|r| r.instance != instance)
        .map(|r| r.reserved(now))
        .sum();
    let own = rows.iter().find(|r| r.instance == instance);
    let avail = limit.saturating_sub(others);
    // Unless granted more below, the instance keeps what it holds.
    let mut share = Share {
        entity: ask.entity,
        entity_id: id,
        kind: ask.kind,
        limit,
        share: own.map_or(0, |o| u32::try_from(o.share).unwrap_or(0)),
        others,
        usable_until_ms: own.map_or(now, |o| o.usable_until).timestamp_millis(),
        retry_at_ms: now.timestamp_millis(),
        active_session: None,
    };
    let mut short = avail < ask.need;
    if let (ShareKind::Sessions, Some(session)) = (ask.kind, &ask.session) {
        let (active, others_active) = recorded_sessions(conn, ask.entity, id, session, now).await?;
        if active {
            // Already active through another instance: it passes there
            // without a share.
            share.active_session = Some(session.clone());
            return Ok(share);
        }
        // Sessions admitted as already active elsewhere hold no share: the
        // recorded ones count too.
        short |= others_active >= i64::from(limit);
    }
    if short {
        share.retry_at_ms = (now + SHORT_RETRY).timestamp_millis();
    } else {
        share.share = size(ask.kind, avail, ask.need);
        let usable_until = now + ttl;
        // A lowered share keeps the previous one reserved until it would have
        // expired: the instance may have used it until it heard of this one.
        let (held, held_until) = own.map_or((0, now), |o| (o.reserved(now), o.expires_at));
        sqlx::query!(
            "INSERT INTO rate_shares \
               (entity_type, entity_id, kind, instance, share, usable_until, held, held_until, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (entity_type, entity_id, kind, instance) DO UPDATE SET \
               share = EXCLUDED.share, usable_until = EXCLUDED.usable_until, held = EXCLUDED.held, \
               held_until = EXCLUDED.held_until, expires_at = EXCLUDED.expires_at",
            entity,
            id,
            kind,
            instance,
            i32::try_from(share.share).unwrap_or(i32::MAX),
            usable_until,
            i32::try_from(held).unwrap_or(i32::MAX),
            held_until,
            usable_until + counting_window(ask.kind)
        )
        .execute(&mut *conn)
        .await?;
        share.usable_until_ms = usable_until.timestamp_millis();
    }
    tracing::debug!(
        instance,
        entity,
        id,
        kind,
        limit,
        others,
        need = ask.need,
        share = share.share,
        short,
        "rate share"
    );
    Ok(share)
}

/// Whether `session` has been seen active under the key or user (its last
/// request within the counting window), and how many other sessions have.
async fn recorded_sessions(
    conn: &mut PgConnection,
    entity: Entity,
    id: i64,
    session: &str,
    now: DateTime<Utc>,
) -> ApiResult<(bool, i64)> {
    let since = now - counting_window(ShareKind::Sessions);
    let row = match entity {
        Entity::Key => sqlx::query!(
            r#"SELECT coalesce(bool_or(session_id = $2), false) AS "active!",
                      count(*) FILTER (WHERE session_id <> $2) AS "others!"
               FROM sessions WHERE key_id = $1 AND last_seen_at > $3"#,
            id,
            session,
            since
        )
        .fetch_one(conn)
        .await
        .map(|r| (r.active, r.others))?,
        Entity::User => sqlx::query!(
            r#"SELECT coalesce(bool_or(session_id = $2), false) AS "active!",
                      count(*) FILTER (WHERE session_id <> $2) AS "others!"
               FROM sessions WHERE user_id = $1 AND last_seen_at > $3"#,
            id,
            session,
            since
        )
        .fetch_one(conn)
        .await
        .map(|r| (r.active, r.others))?,
    };
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpm_shares_take_half_of_what_is_left_beyond_the_need() {
        assert_eq!(size(ShareKind::Rpm, 60, 1), 31);
        assert_eq!(size(ShareKind::Rpm, 60, 32), 46);
        assert_eq!(size(ShareKind::Rpm, 60, 60), 60);
        assert_eq!(size(ShareKind::Rpm, 1, 1), 1);
        assert_eq!(size(ShareKind::Rpm, 10, 20), 10);
        assert_eq!(size(ShareKind::Sessions, 5, 2), 2);
        assert_eq!(size(ShareKind::Sessions, 1, 2), 1);
    }
}
