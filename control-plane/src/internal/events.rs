//! `POST EVENTS_PATH`: batched usage events. Inserted in one transaction,
//! each only if its `event_id` is new to `audit_event_ids` (and once per
//! batch), so a retried batch never double-counts; the hourly usage and
//! request rollups, the `sessions` table (SPEC §2.7), the fixed five-hour
//! windows and the quota leases are updated for newly stored events only,
//! in the same transaction.
//!
//! Ingestion never refuses a well-formed batch because of odd values (the
//! filter retries until accepted): values Postgres cannot store are repaired
//! and flagged instead.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use hubgate_wire::{CostBreakdown, EventBatch, EventBatchAck, RequestEvent};
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::types::Json as DbJson;
use sqlx::{PgConnection, PgPool};

use crate::app::AppState;
use crate::errors::{ApiError, ApiResult};
use crate::extract::TypedBody;
use crate::limits::windows;

pub const MAX_BATCH: usize = 1000;
/// Earliest plausible `started_at`: 2020-01-01T00:00:00Z.
const EARLIEST_STARTED_AT: i64 = 1_577_836_800;

pub async fn ingest(
    State(state): State<AppState>,
    TypedBody(batch): TypedBody<EventBatch>,
) -> ApiResult<Json<EventBatchAck>> {
    if batch.events.len() > MAX_BATCH {
        return Err(ApiError::validation(
            "events",
            format!("at most {MAX_BATCH} events per batch"),
        ));
    }
    if batch.events.is_empty() {
        return Ok(Json(EventBatchAck {
            accepted: 0,
            duplicates: 0,
        }));
    }
    let received_at = Utc::now();
    let sent = batch.events.len();
    let mut rows: Vec<Row> = batch
        .events
        .into_iter()
        .map(|e| Row::from_event(e, received_at))
        .collect();
    drop_repeated_ids(&mut rows);
    // A batch is almost always new, and stored as such; one sent again (the
    // filter retries until acknowledged) collides with its stored ids and
    // is stored again, skipping them.
    let stored = match store(&state.pool, &rows, received_at, Ids::New).await {
        Err(e) if is_stored_id(&e) => {
            store(&state.pool, &rows, received_at, Ids::MaybeStored).await?
        }
        result => result?,
    };

    let accepted = stored as u32;
    let duplicates = sent as u32 - accepted;
    state.metrics.events_accepted.inc_by(u64::from(accepted));
    state.metrics.events_duplicate.inc_by(u64::from(duplicates));
    tracing::debug!(accepted, duplicates, "events ingested");
    Ok(Json(EventBatchAck {
        accepted,
        duplicates,
    }))
}

/// An id repeated within the batch is stored once, like a resent one.
fn drop_repeated_ids(rows: &mut Vec<Row>) {
    let first: Vec<bool> = {
        let mut seen = HashSet::with_capacity(rows.len());
        rows.iter()
            .map(|r| seen.insert(r.event_id.as_str()))
            .collect()
    };
    if first.iter().all(|&f| f) {
        return;
    }
    let mut first = first.into_iter();
    rows.retain(|_| first.next().unwrap_or(false));
}

enum Ids {
    /// None of the batch's ids is stored yet.
    New,
    /// Some may be: those are skipped.
    MaybeStored,
}

/// The batch's new events, and what they add to the usage rollup, the
/// sessions, the five-hour windows and the quota leases, in one
/// transaction. Returns how many events were new.
async fn store(
    pool: &PgPool,
    rows: &[Row],
    received_at: DateTime<Utc>,
    ids: Ids,
) -> Result<usize, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let stored: Vec<&Row> = match ids {
        Ids::New => {
            insert_new(&mut tx, rows, received_at).await?;
            rows.iter().collect()
        }
        Ids::MaybeStored => insert_unstored(&mut tx, rows, received_at).await?,
    };
    if !stored.is_empty() {
        add_usage(&mut tx, &stored, received_at).await?;
        update_leases(&mut tx, &stored).await?;
    }
    tx.commit().await?;
    Ok(stored.len())
}

/// An id of the batch is in `audit_event_ids` already: the batch, or part
/// of it, was delivered before.
fn is_stored_id(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(e) => {
            e.code().as_deref() == Some("23505") && e.constraint() == Some("audit_event_ids_pkey")
        }
        _ => false,
    }
}

/// An event made storable.
struct Row {
    event_id: String,
    request_id: String,
    started_at: DateTime<Utc>,
    user_id: Option<i64>,
    key_id: Option<i64>,
    key_masked: Option<String>,
    provider_id: Option<i64>,
    method: String,
    endpoint: String,
    original_model: Option<String>,
    upstream_model: Option<String>,
    status: i32,
    duration_ms: i64,
    ttfb_ms: Option<i64>,
    input_tokens: i64,
    output_tokens: i64,
    cache_creation_5m_tokens: i64,
    cache_creation_1h_tokens: i64,
    cache_read_tokens: i64,
    cost_usd: Decimal,
    cost_multiplier: Decimal,
    cost_breakdown: Option<CostBreakdown>,
    session_id: Option<String>,
    user_agent: Option<String>,
    client_ip: Option<String>,
    stream: bool,
    blocked_by: Option<String>,
    blocked_reason: Option<Value>,
    error: Option<String>,
    flags: Vec<String>,
    leases: Vec<i64>,
}

/// Postgres text cannot hold NUL.
fn clean(s: String) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{fffd}")
    } else {
        s
    }
}

fn clean_opt(s: Option<String>) -> Option<String> {
    s.map(clean)
}

fn clean_json(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(clean(s)),
        Value::Array(items) => Value::Array(items.into_iter().map(clean_json).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (clean(k), clean_json(v)))
                .collect(),
        ),
        other => other,
    }
}

fn big(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A negative amount would lower the usage rollup; it becomes 0.
fn not_negative(value: Decimal, flags: &mut Vec<String>) -> Decimal {
    if value.is_sign_negative() && !value.is_zero() {
        if !flags.iter().any(|f| f == "invalid_cost") {
            flags.push("invalid_cost".to_string());
        }
        Decimal::ZERO
    } else {
        value
    }
}

/// A breakdown with a negative part is dropped (and the row flagged
/// `invalid_cost`): it could not add up to a cost that is never negative.
fn breakdown(parts: CostBreakdown, flags: &mut Vec<String>) -> Option<CostBreakdown> {
    let all = [
        parts.input_usd,
        parts.output_usd,
        parts.cache_creation_5m_usd,
        parts.cache_creation_1h_usd,
        parts.cache_read_usd,
    ];
    if all.iter().all(|p| !p.is_sign_negative() || p.is_zero()) {
        return Some(parts);
    }
    if !flags.iter().any(|f| f == "invalid_cost") {
        flags.push("invalid_cost".to_string());
    }
    None
}

/// Indexed text must stay well under Postgres's btree row limit (~2.7 KB),
/// or one event would make its whole batch unstorable: longer values are
/// cut and flagged.
const MAX_INDEXED_CHARS: usize = 256;

fn indexed(value: Option<String>, flag: &str, flags: &mut Vec<String>) -> Option<String> {
    let value = clean_opt(value)?;
    match value.char_indices().nth(MAX_INDEXED_CHARS) {
        Some((end, _)) => {
            flags.push(flag.to_string());
            Some(value[..end].to_string())
        }
        None => Some(value),
    }
}

impl Row {
    fn from_event(e: RequestEvent, received_at: DateTime<Utc>) -> Row {
        let mut flags: Vec<String> = e.flags.into_iter().map(clean).collect();
        // Before hubgate existed or over a day ahead (clock skew is far
        // smaller) is a broken clock; such a time would also land the
        // usage in a quota window it does not belong to.
        let latest = received_at + TimeDelta::days(1);
        let started_at = match DateTime::<Utc>::from_timestamp_millis(e.started_at_ms) {
            Some(t) if t.timestamp() >= EARLIEST_STARTED_AT && t <= latest => t,
            _ => {
                flags.push("invalid_started_at".to_string());
                received_at
            }
        };
        let session_id = indexed(e.session_id, "session_id_truncated", &mut flags);
        let blocked_by = indexed(e.blocked_by, "blocked_by_truncated", &mut flags);
        let cost_usd = not_negative(e.cost_usd, &mut flags);
        let cost_multiplier = not_negative(e.cost_multiplier, &mut flags);
        let cost_breakdown = e
            .cost_breakdown
            .and_then(|parts| breakdown(parts, &mut flags));
        Row {
            event_id: clean(e.event_id),
            request_id: clean(e.request_id),
            started_at,
            user_id: e.user_id,
            key_id: e.key_id,
            key_masked: clean_opt(e.key_masked),
            provider_id: e.provider_id,
            method: clean(e.method),
            endpoint: clean(e.endpoint),
            original_model: clean_opt(e.original_model),
            upstream_model: clean_opt(e.upstream_model),
            status: i32::from(e.status),
            duration_ms: big(e.duration_ms),
            ttfb_ms: e.ttfb_ms.map(big),
            input_tokens: big(e.usage.input_tokens),
            output_tokens: big(e.usage.output_tokens),
            cache_creation_5m_tokens: big(e.usage.cache_creation_5m_tokens),
            cache_creation_1h_tokens: big(e.usage.cache_creation_1h_tokens),
            cache_read_tokens: big(e.usage.cache_read_tokens),
            cost_usd,
            cost_multiplier,
            cost_breakdown,
            session_id,
            user_agent: clean_opt(e.user_agent),
            client_ip: clean_opt(e.client_ip),
            stream: e.stream,
            blocked_by,
            blocked_reason: e.blocked_reason.map(clean_json),
            error: clean_opt(e.error),
            flags,
            leases: e.leases,
        }
    }
}

/// Charges the new events' cost to the quota leases they spent under
/// (SPEC §4): what a lease was granted and its events have not charged yet
/// is what its instance may still spend.
async fn update_leases(conn: &mut PgConnection, stored: &[&Row]) -> Result<(), sqlx::Error> {
    // BTreeMap: rows locked in one order across concurrent batches.
    let mut charges: BTreeMap<i64, Decimal> = BTreeMap::new();
    for row in stored.iter().filter(|r| r.cost_usd > Decimal::ZERO) {
        for &lease in &row.leases {
            *charges.entry(lease).or_default() += row.cost_usd;
        }
    }
    if charges.is_empty() {
        return Ok(());
    }
    let (ids, costs): (Vec<i64>, Vec<Decimal>) = charges.into_iter().unzip();
    // Rows locked in id order, as a grant locks them: no deadlock.
    sqlx::query!(
        "SELECT 1 AS locked FROM quota_leases WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        &ids
    )
    .fetch_all(&mut *conn)
    .await?;
    sqlx::query!(
        "UPDATE quota_leases q SET spent_usd = q.spent_usd + c.cost \
         FROM UNNEST($1::int8[], $2::numeric[]) AS c(id, cost) WHERE q.id = c.id",
        &ids,
        &costs
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Stores a batch none of whose ids is stored: plain inserts, with no
/// per-row conflict handling. A stored id makes it fail on
/// `audit_event_ids_pkey`.
async fn insert_new(
    conn: &mut PgConnection,
    rows: &[Row],
    received_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let ids: Vec<&str> = rows.iter().map(|r| r.event_id.as_str()).collect();
    sqlx::query!(
        "INSERT INTO audit_event_ids (event_id) SELECT unnest($1::text[])",
        &ids as &[&str]
    )
    .execute(&mut *conn)
    .await?;
    let rows: Vec<&Row> = rows.iter().collect();
    insert_events(conn, &rows, received_at).await
}

/// Stores the batch's events whose ids are new to `audit_event_ids`;
/// returns them.
async fn insert_unstored<'a>(
    conn: &mut PgConnection,
    rows: &'a [Row],
    received_at: DateTime<Utc>,
) -> Result<Vec<&'a Row>, sqlx::Error> {
    let ids: Vec<&str> = rows.iter().map(|r| r.event_id.as_str()).collect();
    let new: HashSet<String> = sqlx::query_scalar!(
        "INSERT INTO audit_event_ids (event_id) SELECT unnest($1::text[]) \
         ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
        &ids as &[&str]
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    let rows: Vec<&Row> = rows.iter().filter(|r| new.contains(&r.event_id)).collect();
    if !rows.is_empty() {
        insert_events(conn, &rows, received_at).await?;
    }
    Ok(rows)
}

/// Inserts the events into the audit log. Each column is bound as one
/// array except `received_at` ($3), the same for the whole batch: the
/// statement is the same for every batch size, so Postgres plans it once
/// per connection, and binding is one value per column. The arrays are
/// unnested in the select list, which streams their rows (`UNNEST` in
/// `FROM` would first copy them all into a tuplestore). An event's flags go
/// as one JSON array (Postgres arrays cannot be ragged), NULL when there
/// are none.
async fn insert_events(
    conn: &mut PgConnection,
    rows: &[&Row],
    received_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    fn col<'a, T: 'a>(rows: &[&'a Row], f: impl Fn(&'a Row) -> T) -> Vec<T> {
        rows.iter().map(|&r| f(r)).collect()
    }
    sqlx::query!(
        "INSERT INTO message_request (event_id, request_id, started_at, received_at, user_id, key_id, \
           key_masked, provider_id, method, endpoint, original_model, upstream_model, status, duration_ms, \
           ttfb_ms, input_tokens, output_tokens, cache_creation_5m_tokens, cache_creation_1h_tokens, \
           cache_read_tokens, cost_usd, cost_multiplier, session_id, user_agent, client_ip, stream, blocked_by, \
           blocked_reason, error, flags, cost_breakdown) \
         SELECT e.event_id, e.request_id, e.started_at, $3::timestamptz, e.user_id, e.key_id, e.key_masked, \
           e.provider_id, e.method, e.endpoint, e.original_model, e.upstream_model, e.status, e.duration_ms, \
           e.ttfb_ms, e.input_tokens, e.output_tokens, e.cache_creation_5m_tokens, e.cache_creation_1h_tokens, \
           e.cache_read_tokens, e.cost_usd, e.cost_multiplier, e.session_id, e.user_agent, e.client_ip, e.stream, \
           e.blocked_by, e.blocked_reason, e.error, \
           CASE WHEN e.flags IS NULL THEN '{}' ELSE ARRAY(SELECT jsonb_array_elements_text(e.flags)) END, \
           e.cost_breakdown \
         FROM (SELECT unnest($1::text[]) AS event_id, unnest($2::text[]) AS request_id, \
           unnest($4::timestamptz[]) AS started_at, unnest($5::int8[]) AS user_id, unnest($6::int8[]) AS key_id, \
           unnest($7::text[]) AS key_masked, unnest($8::int8[]) AS provider_id, unnest($9::text[]) AS method, \
           unnest($10::text[]) AS endpoint, unnest($11::text[]) AS original_model, \
           unnest($12::text[]) AS upstream_model, unnest($13::int4[]) AS status, \
           unnest($14::int8[]) AS duration_ms, unnest($15::int8[]) AS ttfb_ms, \
           unnest($16::int8[]) AS input_tokens, unnest($17::int8[]) AS output_tokens, \
           unnest($18::int8[]) AS cache_creation_5m_tokens, unnest($19::int8[]) AS cache_creation_1h_tokens, \
           unnest($20::int8[]) AS cache_read_tokens, unnest($21::numeric[]) AS cost_usd, \
           unnest($22::numeric[]) AS cost_multiplier, unnest($23::text[]) AS session_id, \
           unnest($24::text[]) AS user_agent, unnest($25::text[]) AS client_ip, unnest($26::bool[]) AS stream, \
           unnest($27::text[]) AS blocked_by, unnest($28::jsonb[]) AS blocked_reason, \
           unnest($29::text[]) AS error, unnest($30::jsonb[]) AS flags, \
           unnest($31::jsonb[]) AS cost_breakdown) AS e",
        &col(rows, |r| r.event_id.as_str()) as &[&str],
        &col(rows, |r| r.request_id.as_str()) as &[&str],
        received_at,
        &col(rows, |r| r.started_at),
        &col(rows, |r| r.user_id) as &[Option<i64>],
        &col(rows, |r| r.key_id) as &[Option<i64>],
        &col(rows, |r| r.key_masked.as_deref()) as &[Option<&str>],
        &col(rows, |r| r.provider_id) as &[Option<i64>],
        &col(rows, |r| r.method.as_str()) as &[&str],
        &col(rows, |r| r.endpoint.as_str()) as &[&str],
        &col(rows, |r| r.original_model.as_deref()) as &[Option<&str>],
        &col(rows, |r| r.upstream_model.as_deref()) as &[Option<&str>],
        &col(rows, |r| r.status),
        &col(rows, |r| r.duration_ms),
        &col(rows, |r| r.ttfb_ms) as &[Option<i64>],
        &col(rows, |r| r.input_tokens),
        &col(rows, |r| r.output_tokens),
        &col(rows, |r| r.cache_creation_5m_tokens),
        &col(rows, |r| r.cache_creation_1h_tokens),
        &col(rows, |r| r.cache_read_tokens),
        &col(rows, |r| r.cost_usd),
        &col(rows, |r| r.cost_multiplier),
        &col(rows, |r| r.session_id.as_deref()) as &[Option<&str>],
        &col(rows, |r| r.user_agent.as_deref()) as &[Option<&str>],
        &col(rows, |r| r.client_ip.as_deref()) as &[Option<&str>],
        &col(rows, |r| r.stream),
        &col(rows, |r| r.blocked_by.as_deref()) as &[Option<&str>],
        &col(rows, |r| r.blocked_reason.as_ref().map(DbJson)) as &[Option<DbJson<&Value>>],
        &col(rows, |r| r.error.as_deref()) as &[Option<&str>],
        &col(rows, |r| Some(&r.flags).filter(|f| !f.is_empty()).map(DbJson)) as &[Option<DbJson<&Vec<String>>>],
        &col(rows, |r| r.cost_breakdown.as_ref().map(DbJson)) as &[Option<DbJson<&CostBreakdown>>],
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Adds the new events to the hourly usage and request rollups, the
/// sessions and the five-hour windows in one statement. Its rows are the
/// ones concurrent batches share, so it runs last, just before the commit:
/// they stay locked for as short a time as possible. Each table's rows are
/// written in one order (sorted keys), in every batch: no deadlock.
async fn add_usage(
    conn: &mut PgConnection,
    stored: &[&Row],
    received_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let rollup = Rollup::of(stored);
    let requests = RequestRollup::of(stored);
    let sessions = Sessions::of(stored, received_at);
    let charges = Charges::of(stored);
    if rollup.ids.is_empty()
        && requests.hours.is_empty()
        && sessions.key_ids.is_empty()
        && charges.0.is_empty()
    {
        return Ok(());
    }
    let (user_ids, user_due) = charges.due("users");
    let (key_ids, key_due) = charges.due("keys");
    // The windows are only read here: one moves only when a charge comes
    // five hours or more after it opened (or none is open), which is rare,
    // and then it is locked and moved below. One that does not move now
    // cannot move for these charges later either: windows only move
    // forward. In ON CONFLICT DO UPDATE, `sessions.*` is the row before
    // this update.
    let moving: Vec<(String, i64)> = sqlx::query!(
        "WITH rollup AS ( \
           INSERT INTO usage_rollup (entity_type, entity_id, bucket_start, cost_usd, request_count, input_tokens, \
             output_tokens) \
           SELECT unnest($1::text[]), unnest($2::int8[]), unnest($3::timestamptz[]), unnest($4::numeric[]), \
             unnest($5::int8[]), unnest($6::int8[]), unnest($7::int8[]) \
           ON CONFLICT (entity_type, entity_id, bucket_start) DO UPDATE SET \
             cost_usd = usage_rollup.cost_usd + EXCLUDED.cost_usd, \
             request_count = usage_rollup.request_count + EXCLUDED.request_count, \
             input_tokens = usage_rollup.input_tokens + EXCLUDED.input_tokens, \
             output_tokens = usage_rollup.output_tokens + EXCLUDED.output_tokens), \
         requests AS ( \
           INSERT INTO request_rollup (bucket_start, model, upstream_model, status, blocked_by, request_count, \
             cost_usd, input_tokens, output_tokens) \
           SELECT unnest($20::timestamptz[]), unnest($21::text[]), unnest($28::text[]), unnest($22::int4[]), \
             unnest($23::text[]), unnest($24::int8[]), unnest($25::numeric[]), unnest($26::int8[]), \
             unnest($27::int8[]) \
           ON CONFLICT (bucket_start, model, upstream_model, status, blocked_by) DO UPDATE SET \
             request_count = request_rollup.request_count + EXCLUDED.request_count, \
             cost_usd = request_rollup.cost_usd + EXCLUDED.cost_usd, \
             input_tokens = request_rollup.input_tokens + EXCLUDED.input_tokens, \
             output_tokens = request_rollup.output_tokens + EXCLUDED.output_tokens), \
         seen AS ( \
           INSERT INTO sessions (key_id, session_id, user_id, provider_id, client, first_seen_at, last_seen_at, \
             request_count) \
           SELECT unnest($8::int8[]), unnest($9::text[]), unnest($10::int8[]), unnest($11::int8[]), \
             unnest($12::text[]), unnest($13::timestamptz[]), unnest($14::timestamptz[]), unnest($15::int8[]) \
           ON CONFLICT (key_id, session_id) DO UPDATE SET \
             first_seen_at = LEAST(sessions.first_seen_at, EXCLUDED.first_seen_at), \
             last_seen_at = GREATEST(sessions.last_seen_at, EXCLUDED.last_seen_at), \
             request_count = sessions.request_count + EXCLUDED.request_count, \
             user_id = CASE WHEN EXCLUDED.last_seen_at >= sessions.last_seen_at \
               THEN COALESCE(EXCLUDED.user_id, sessions.user_id) \
               ELSE COALESCE(sessions.user_id, EXCLUDED.user_id) END, \
             provider_id = CASE WHEN EXCLUDED.last_seen_at >= sessions.last_seen_at \
               THEN COALESCE(EXCLUDED.provider_id, sessions.provider_id) \
               ELSE COALESCE(sessions.provider_id, EXCLUDED.provider_id) END, \
             client = CASE WHEN EXCLUDED.last_seen_at >= sessions.last_seen_at \
               THEN COALESCE(EXCLUDED.client, sessions.client) ELSE COALESCE(sessions.client, EXCLUDED.client) END) \
         SELECT 'users' AS \"kind!\", u.id AS \"id!\" FROM users u \
           JOIN UNNEST($16::int8[], $17::timestamptz[]) AS c(id, due) ON u.id = c.id \
           WHERE u.five_hour_opened_at IS NULL OR u.five_hour_opened_at <= c.due \
         UNION ALL \
         SELECT 'keys', k.id FROM keys k JOIN UNNEST($18::int8[], $19::timestamptz[]) AS c(id, due) ON k.id = c.id \
           WHERE k.five_hour_opened_at IS NULL OR k.five_hour_opened_at <= c.due",
        &rollup.kinds as &[&str],
        &rollup.ids,
        &rollup.hours,
        &rollup.costs,
        &rollup.requests,
        &rollup.inputs,
        &rollup.outputs,
        &sessions.key_ids,
        &sessions.session_ids as &[&str],
        &sessions.user_ids as &[Option<i64>],
        &sessions.provider_ids as &[Option<i64>],
        &sessions.clients as &[Option<&str>],
        &sessions.firsts,
        &sessions.lasts,
        &sessions.requests,
        &user_ids,
        &user_due,
        &key_ids,
        &key_due,
        &requests.hours,
        &requests.models as &[&str],
        &requests.statuses,
        &requests.blocked_by as &[&str],
        &requests.requests,
        &requests.costs,
        &requests.inputs,
        &requests.outputs,
        &requests.upstream_models as &[&str]
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| (r.kind, r.id))
    .collect();
    if !moving.is_empty() {
        move_five_hour_windows(conn, &charges, &moving).await?;
    }
    Ok(())
}

#[derive(Default)]
struct Bucket {
    cost_usd: Decimal,
    requests: i64,
    input_tokens: i64,
    output_tokens: i64,
}

/// The new events summed per hourly per-user/key/provider bucket, as
/// columns. Requests a guard answered (blocked_by set, e.g. warmup) are not
/// usage.
#[derive(Default)]
struct Rollup {
    kinds: Vec<&'static str>,
    ids: Vec<i64>,
    hours: Vec<DateTime<Utc>>,
    costs: Vec<Decimal>,
    requests: Vec<i64>,
    inputs: Vec<i64>,
    outputs: Vec<i64>,
}

impl Rollup {
    fn of(stored: &[&Row]) -> Rollup {
        // BTreeMap: a fixed row order, so concurrent batches lock rows in
        // the same order and cannot deadlock.
        let mut buckets: BTreeMap<(&'static str, i64, DateTime<Utc>), Bucket> = BTreeMap::new();
        for r in stored.iter().filter(|r| r.blocked_by.is_none()) {
            let hour = r
                .started_at
                .duration_trunc(TimeDelta::hours(1))
                .unwrap_or(r.started_at);
            for (kind, id) in [
                ("user", r.user_id),
                ("key", r.key_id),
                ("provider", r.provider_id),
            ] {
                let Some(id) = id else { continue };
                let b = buckets.entry((kind, id, hour)).or_default();
                b.cost_usd = b.cost_usd.checked_add(r.cost_usd).unwrap_or(Decimal::MAX);
                b.requests += 1;
                b.input_tokens = b.input_tokens.saturating_add(r.input_tokens);
                b.output_tokens = b.output_tokens.saturating_add(r.output_tokens);
            }
        }
        let mut out = Rollup::default();
        for ((kind, id, hour), b) in buckets {
            out.kinds.push(kind);
            out.ids.push(id);
            out.hours.push(hour);
            out.costs.push(b.cost_usd);
            out.requests.push(b.requests);
            out.inputs.push(b.input_tokens);
            out.outputs.push(b.output_tokens);
        }
        out
    }
}

/// The new events counted per hour, original and upstream model, status and
/// blocked_by (`request_rollup`, migrations 0017 and 0019), as columns: every
/// stored request, guard refusals included. No model and no blocked_by are
/// `''`.
#[derive(Default)]
struct RequestRollup<'a> {
    hours: Vec<DateTime<Utc>>,
    models: Vec<&'a str>,
    upstream_models: Vec<&'a str>,
    statuses: Vec<i32>,
    blocked_by: Vec<&'a str>,
    requests: Vec<i64>,
    costs: Vec<Decimal>,
    inputs: Vec<i64>,
    outputs: Vec<i64>,
}

/// `request_rollup.model` holds at most this many characters of the model.
pub const MAX_ROLLUP_MODEL_CHARS: usize = MAX_INDEXED_CHARS;

impl<'a> RequestRollup<'a> {
    fn of(stored: &[&'a Row]) -> RequestRollup<'a> {
        // BTreeMap: rows written in one order by every batch (no deadlock).
        type Key<'k> = (DateTime<Utc>, &'k str, &'k str, i32, &'k str);
        let mut buckets: BTreeMap<Key<'a>, Bucket> = BTreeMap::new();
        for &r in stored {
            let hour = r
                .started_at
                .duration_trunc(TimeDelta::hours(1))
                .unwrap_or(r.started_at);
            let model = clip(
                r.original_model.as_deref().unwrap_or_default(),
                MAX_ROLLUP_MODEL_CHARS,
            );
            let upstream = clip(
                r.upstream_model.as_deref().unwrap_or_default(),
                MAX_ROLLUP_MODEL_CHARS,
            );
            let blocked_by = r.blocked_by.as_deref().unwrap_or_default();
            let b = buckets
                .entry((hour, model, upstream, r.status, blocked_by))
                .or_default();
            b.cost_usd = b.cost_usd.checked_add(r.cost_usd).unwrap_or(Decimal::MAX);
            b.requests += 1;
            b.input_tokens = b.input_tokens.saturating_add(r.input_tokens);
            b.output_tokens = b.output_tokens.saturating_add(r.output_tokens);
        }
        let mut out = RequestRollup::default();
        for ((hour, model, upstream, status, blocked_by), b) in buckets {
            out.hours.push(hour);
            out.models.push(model);
            out.upstream_models.push(upstream);
            out.statuses.push(status);
            out.blocked_by.push(blocked_by);
            out.requests.push(b.requests);
            out.costs.push(b.cost_usd);
            out.inputs.push(b.input_tokens);
            out.outputs.push(b.output_tokens);
        }
        out
    }
}

/// The times of the new events' charges per user and per key
/// (`("users" | "keys", id)`), oldest first.
struct Charges(BTreeMap<(&'static str, i64), Vec<DateTime<Utc>>>);

impl Charges {
    fn of(stored: &[&Row]) -> Charges {
        let mut charges: BTreeMap<(&'static str, i64), Vec<DateTime<Utc>>> = BTreeMap::new();
        for r in stored
            .iter()
            .filter(|r| r.blocked_by.is_none() && r.cost_usd > Decimal::ZERO)
        {
            for (table, id) in [("users", r.user_id), ("keys", r.key_id)] {
                if let Some(id) = id {
                    charges.entry((table, id)).or_default().push(r.started_at);
                }
            }
        }
        for times in charges.values_mut() {
            times.sort();
        }
        Charges(charges)
    }

    /// Each charged id of `table`, and the latest opening of its fixed 5 h
    /// window that its latest charge falls outside of.
    fn due(&self, table: &str) -> (Vec<i64>, Vec<DateTime<Utc>>) {
        self.0
            .iter()
            .filter(|((t, _), _)| *t == table)
            .filter_map(|((_, id), times)| Some((*id, *times.last()? - windows::FIVE_HOURS)))
            .unzip()
    }
}

/// Moves the fixed 5 h windows (`five_hour_opened_at`) of the users and
/// keys in `moving` past the new charges, oldest first: a charge after the
/// window ended opens the next one; one older than the window belongs to an
/// earlier window and changes nothing. The rows are locked (in id order)
/// and read again, as a concurrent batch may have moved them.
async fn move_five_hour_windows(
    conn: &mut PgConnection,
    charges: &Charges,
    moving: &[(String, i64)],
) -> Result<(), sqlx::Error> {
    for table in ["users", "keys"] {
        let ids: BTreeSet<i64> = moving
            .iter()
            .filter(|(t, _)| t == table)
            .map(|(_, id)| *id)
            .collect();
        if ids.is_empty() {
            continue;
        }
        let ids: Vec<i64> = ids.into_iter().collect();
        let current: Vec<(i64, Option<DateTime<Utc>>)> = if table == "users" {
            sqlx::query_as!(
                FiveHours,
                "SELECT id, five_hour_opened_at FROM users WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                &ids
            )
            .fetch_all(&mut *conn)
            .await?
        } else {
            sqlx::query_as!(
                FiveHours,
                "SELECT id, five_hour_opened_at FROM keys WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                &ids
            )
            .fetch_all(&mut *conn)
            .await?
        }
        .into_iter()
        .map(|r| (r.id, r.five_hour_opened_at))
        .collect();
        let mut moved_ids = Vec::new();
        let mut moved_to = Vec::new();
        for (id, opened) in current {
            let times = charges
                .0
                .get(&(table, id))
                .map(Vec::as_slice)
                .unwrap_or_default();
            let moved = times.iter().fold(opened, |opened, &at| {
                Some(windows::five_hours_opened_by(opened, at))
            });
            if let Some(to) = moved.filter(|_| moved != opened) {
                moved_ids.push(id);
                moved_to.push(to);
            }
        }
        if moved_ids.is_empty() {
            continue;
        }
        if table == "users" {
            sqlx::query!(
                "UPDATE users t SET five_hour_opened_at = m.opened \
                 FROM UNNEST($1::int8[], $2::timestamptz[]) AS m(id, opened) WHERE t.id = m.id",
                &moved_ids,
                &moved_to
            )
            .execute(&mut *conn)
            .await?;
        } else {
            sqlx::query!(
                "UPDATE keys t SET five_hour_opened_at = m.opened \
                 FROM UNNEST($1::int8[], $2::timestamptz[]) AS m(id, opened) WHERE t.id = m.id",
                &moved_ids,
                &moved_to
            )
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

struct FiveHours {
    id: i64,
    five_hour_opened_at: Option<DateTime<Utc>>,
}

/// `sessions.client` holds at most this many characters of the user agent.
const MAX_CLIENT_CHARS: usize = 256;

fn clip(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

/// One (key, session)'s forwarded requests within a batch.
struct SessionDelta<'a> {
    user_id: Option<i64>,
    provider_id: Option<i64>,
    client: Option<&'a str>,
    first_seen_at: DateTime<Utc>,
    last_seen_at: DateTime<Utc>,
    requests: i64,
}

/// The new events' session activity (SPEC §2.7), one row per (key,
/// session), as columns. Only forwarded requests count: an event a guard
/// answered (`blocked_by` set: refusals, warmup) is not session activity.
/// Sessions are keyed by (key_id, session_id), so a client-chosen session
/// id never reaches another key's session; events without a key are
/// skipped.
///
/// A session is seen at its requests' start times (never later than their
/// arrival here). user_id, provider_id and client come from the latest
/// request that carries them, across batches too (the upsert compares with
/// the stored row): an older batch arriving late does not overwrite them.
#[derive(Default)]
struct Sessions<'a> {
    key_ids: Vec<i64>,
    session_ids: Vec<&'a str>,
    user_ids: Vec<Option<i64>>,
    provider_ids: Vec<Option<i64>>,
    clients: Vec<Option<&'a str>>,
    firsts: Vec<DateTime<Utc>>,
    lasts: Vec<DateTime<Utc>>,
    requests: Vec<i64>,
}

impl<'a> Sessions<'a> {
    fn of(stored: &[&'a Row], received_at: DateTime<Utc>) -> Sessions<'a> {
        let mut events: Vec<(DateTime<Utc>, i64, &'a str, &'a Row)> = stored
            .iter()
            .filter(|r| r.blocked_by.is_none())
            .filter_map(|&r| {
                let key_id = r.key_id?;
                let session_id = r.session_id.as_deref()?;
                Some((r.started_at.min(received_at), key_id, session_id, r))
            })
            .collect();
        // Oldest first (stable: batch order breaks ties), so later events win.
        events.sort_by_key(|(seen, ..)| *seen);
        // BTreeMap: a fixed row order, so concurrent batches lock rows in the
        // same order and cannot deadlock.
        let mut sessions: BTreeMap<(i64, &'a str), SessionDelta<'a>> = BTreeMap::new();
        for (seen, key_id, session_id, r) in events {
            let d = sessions
                .entry((key_id, session_id))
                .or_insert_with(|| SessionDelta {
                    user_id: None,
                    provider_id: None,
                    client: None,
                    first_seen_at: seen,
                    last_seen_at: seen,
                    requests: 0,
                });
            d.first_seen_at = d.first_seen_at.min(seen);
            d.last_seen_at = d.last_seen_at.max(seen);
            d.requests += 1;
            d.user_id = r.user_id.or(d.user_id);
            d.provider_id = r.provider_id.or(d.provider_id);
            d.client = r
                .user_agent
                .as_deref()
                .map(|ua| clip(ua, MAX_CLIENT_CHARS))
                .or(d.client);
        }
        let mut out = Sessions::default();
        for ((key_id, session_id), d) in sessions {
            out.key_ids.push(key_id);
            out.session_ids.push(session_id);
            out.user_ids.push(d.user_id);
            out.provider_ids.push(d.provider_id);
            out.clients.push(d.client);
            out.firsts.push(d.first_seen_at);
            out.lasts.push(d.last_seen_at);
            out.requests.push(d.requests);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn clip_counts_characters() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("abcdef", 3), "abc");
        assert_eq!(clip("ééé", 2), "éé");
        assert_eq!(clip("", 2), "");
    }
}
