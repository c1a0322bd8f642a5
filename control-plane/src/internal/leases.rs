//! `POST LEASES_PATH`: quota budget for one filter instance (SPEC §4).
//!
//! For each cost limit of the key and of its user, the instance gets a slice
//! of what is left: `limit − spent − outstanding`, where `outstanding` is
//! what live leases (of every instance) were granted and have not yet been
//! charged by ingested events. All instances together therefore never hold
//! more than the limit; the overshoot bound is in the README. A slice is a
//! quarter of what is left (at least the waiting request's estimate), so a
//! nearly spent budget goes out in small pieces. Grants for one key or user
//! are serialized with a transaction-scoped advisory lock, so two
//! control-plane replicas cannot hand out the same budget twice.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, TimeDelta, Utc};
use hubgate_wire::{Grant, LeaseRequest, LeaseResponse};
use rust_decimal::Decimal;
use sqlx::PgConnection;

use crate::app::AppState;
use crate::errors::{ApiError, ApiResult};
use crate::extract::JsonBody;
use crate::limits::usage::{cost_windows, CostWindow, Entity};

/// How long an instance that got nothing waits before asking again.
const REFUSED_RETRY: TimeDelta = TimeDelta::seconds(5);

pub async fn grant(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<LeaseRequest>,
) -> ApiResult<Json<LeaseResponse>> {
    if req.instance.is_empty() || req.instance.len() > 200 {
        return Err(ApiError::validation("instance", "1 to 200 characters"));
    }
    if req.need_usd < Decimal::ZERO {
        return Err(ApiError::validation("need_usd", "must not be negative"));
    }
    let ttl = TimeDelta::from_std(state.lease_ttl).unwrap_or(TimeDelta::seconds(60));
    let mut tx = state.pool.begin().await?;
    let user_id = sqlx::query_scalar!(
        "SELECT user_id FROM keys WHERE id = $1 AND deleted_at IS NULL",
        req.key_id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(ApiError::NotFound)?;
    // Key first, then its user: every grant takes the locks in this order.
    lock(&mut tx, Entity::Key, req.key_id).await?;
    lock(&mut tx, Entity::User, user_id).await?;
    let now = Utc::now();
    // Leases before spend, each read in its own statement (READ COMMITTED):
    // an ingest committing in between is then counted twice (as spend and
    // as outstanding), never missed. Ingest does not take the advisory lock.
    let live = sqlx::query_as!(
        Live,
        "SELECT id, instance, entity_type, limit_type, granted_usd, spent_usd FROM quota_leases \
         WHERE ((entity_type = 'key' AND entity_id = $1) OR (entity_type = 'user' AND entity_id = $2)) \
           AND expires_at > $3 \
         ORDER BY id FOR UPDATE",
        req.key_id,
        user_id,
        now
    )
    .fetch_all(&mut *tx)
    .await?;
    let (_, key_windows) = cost_windows(&mut tx, Entity::Key, req.key_id, now).await?;
    let (_, user_windows) = cost_windows(&mut tx, Entity::User, user_id, now).await?;
    let mut grants = Vec::new();
    let limited = key_windows
        .iter()
        .map(|w| (Entity::Key, req.key_id, w))
        .chain(user_windows.iter().map(|w| (Entity::User, user_id, w)));
    for (entity, id, window) in limited {
        let live: Vec<&Live> = live
            .iter()
            .filter(|l| l.entity_type == entity.name() && l.limit_type == window.limit_type)
            .collect();
        if let Some(grant) = grant_one(&mut tx, &req, (entity, id), window, &live, now, ttl).await?
        {
            grants.push(grant);
        }
    }
    tx.commit().await?;
    Ok(Json(LeaseResponse {
        grants,
        now_ms: now.timestamp_millis(),
    }))
}

async fn lock(conn: &mut PgConnection, entity: Entity, id: i64) -> ApiResult<()> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        format!("hubgate.quota.{}.{id}", entity.name())
    )
    .execute(conn)
    .await?;
    Ok(())
}

struct Live {
    id: i64,
    instance: String,
    entity_type: String,
    limit_type: String,
    granted_usd: Decimal,
    spent_usd: Decimal,
}

async fn grant_one(
    conn: &mut PgConnection,
    req: &LeaseRequest,
    (entity, id): (Entity, i64),
    window: &CostWindow,
    live: &[&Live],
    now: DateTime<Utc>,
    ttl: TimeDelta,
) -> ApiResult<Option<Grant>> {
    let Some(limit) = window.limit_usd else {
        return Ok(None);
    };
    let outstanding: Decimal = live
        .iter()
        .map(|l| (l.granted_usd - l.spent_usd).max(Decimal::ZERO))
        .sum();
    let room = limit - window.spent_usd - outstanding;
    let slice = if room <= Decimal::ZERO {
        Decimal::ZERO
    } else {
        // Never more than the room, and never less than the request needs
        // when the room has it.
        use rust_decimal::RoundingStrategy::{AwayFromZero, ToZero};
        let quarter = (room / Decimal::from(4)).round_dp_with_strategy(6, ToZero);
        room.min(
            req.need_usd
                .round_dp_with_strategy(6, AwayFromZero)
                .max(quarter),
        )
    };
    tracing::debug!(
        instance = %req.instance, entity = entity.name(), id, limit_type = window.limit_type,
        %limit, spent = %window.spent_usd, %outstanding, %room, %slice, "quota lease"
    );
    let reset_at = (window.mode == "fixed")
        .then_some(window.reset_at)
        .flatten();
    let expires = reset_at.map_or(now + ttl, |r| r.min(now + ttl));
    let own = live.iter().find(|l| l.instance == req.instance);
    let lease_granted = own.map_or(Decimal::ZERO, |l| l.granted_usd) + slice;
    let lease_id = match own {
        Some(own) => {
            sqlx::query!(
                "UPDATE quota_leases SET granted_usd = granted_usd + $2, expires_at = $3 WHERE id = $1",
                own.id,
                slice,
                expires
            )
            .execute(&mut *conn)
            .await?;
            own.id
        }
        None if slice > Decimal::ZERO => {
            sqlx::query_scalar!(
                "INSERT INTO quota_leases (instance, entity_type, entity_id, limit_type, granted_usd, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                req.instance,
                entity.name(),
                id,
                window.limit_type,
                slice,
                expires
            )
            .fetch_one(&mut *conn)
            .await?
        }
        None => 0,
    };
    let expires = if lease_id == 0 {
        now + REFUSED_RETRY
    } else {
        expires
    };
    Ok(Some(Grant {
        entity: match entity {
            Entity::Key => hubgate_wire::Entity::Key,
            Entity::User => hubgate_wire::Entity::User,
        },
        entity_id: id,
        limit_type: window.limit_type.to_string(),
        lease_id,
        granted_usd: slice,
        lease_granted_usd: if lease_id == 0 {
            Decimal::ZERO
        } else {
            lease_granted
        },
        limit_usd: limit,
        spent_usd: window.spent_usd,
        unallocated_usd: (room - slice).max(Decimal::ZERO),
        expires_at_ms: expires.timestamp_millis(),
        reset_at_ms: window.reset_at.map(|t| t.timestamp_millis()),
        rolling_hours: window.rolling_hours,
    }))
}
