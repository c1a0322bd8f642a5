//! `POST EVENTS_PATH`: batched usage events. Inserted in one transaction,
//! each only if its `event_id` is new to `audit_event_ids` (and once per
//! batch), so a retried batch never double-counts;
//! the hourly usage rollup and the `sessions` table (SPEC §2.7) are updated
//! for newly stored events only, in the same transaction.
//!
//! Ingestion never refuses a well-formed batch because of odd values (the
//! filter retries until accepted): values Postgres cannot store are repaired
//! and flagged instead.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use hubgate_wire::{EventBatch, EventBatchAck, RequestEvent};
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::types::Json as DbJson;
use sqlx::PgConnection;

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
    // An id repeated within the batch is stored once, like a resent one.
    let mut ids = std::collections::HashSet::new();
    let rows: Vec<Row> = batch
        .events
        .into_iter()
        .map(|e| Row::from_event(e, received_at))
        .filter(|r| ids.insert(r.event_id.clone()))
        .collect();
    let mut tx = state.pool.begin().await?;
    let stored = insert(&mut tx, &rows).await?;
    update_rollup(&mut tx, &stored).await?;
    update_five_hour_windows(&mut tx, &stored).await?;
    update_sessions(&mut tx, &stored, received_at).await?;
    update_leases(&mut tx, &rows, &stored).await?;
    tx.commit().await?;

    let accepted = stored.len() as u32;
    let duplicates = sent as u32 - accepted;
    state.metrics.events_accepted.inc_by(u64::from(accepted));
    state.metrics.events_duplicate.inc_by(u64::from(duplicates));
    tracing::debug!(accepted, duplicates, "events ingested");
    Ok(Json(EventBatchAck {
        accepted,
        duplicates,
    }))
}

/// An event made storable.
struct Row {
    event_id: String,
    request_id: String,
    started_at: DateTime<Utc>,
    received_at: DateTime<Utc>,
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
        Row {
            event_id: clean(e.event_id),
            request_id: clean(e.request_id),
            started_at,
            received_at,
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
async fn update_leases(
    conn: &mut PgConnection,
    rows: &[Row],
    stored: &[Stored],
) -> Result<(), sqlx::Error> {
    if rows.iter().all(|r| r.leases.is_empty()) {
        return Ok(());
    }
    let new: std::collections::HashSet<&str> = stored.iter().map(|s| s.event_id.as_str()).collect();
    // BTreeMap: rows locked in one order across concurrent batches.
    let mut charges: BTreeMap<i64, Decimal> = BTreeMap::new();
    for row in rows
        .iter()
        .filter(|r| r.cost_usd > Decimal::ZERO && new.contains(r.event_id.as_str()))
    {
        for &lease in &row.leases {
            *charges.entry(lease).or_default() += row.cost_usd;
        }
    }
    if charges.is_empty() {
        return Ok(());
    }
    let (ids, costs): (Vec<i64>, Vec<Decimal>) = charges.into_iter().unzip();
    // Rows locked in id order, as a grant locks them: no deadlock.
    sqlx::query("SELECT 1 FROM quota_leases WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(&ids)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE quota_leases q SET spent_usd = q.spent_usd + c.cost          FROM UNNEST($1::int8[], $2::numeric[]) AS c(id, cost) WHERE q.id = c.id",
    )
    .bind(ids)
    .bind(costs)
    .execute(conn)
    .await?;
    Ok(())
}

/// What the rollup and the sessions need from each newly stored event.
#[derive(sqlx::FromRow)]
struct Stored {
    event_id: String,
    user_id: Option<i64>,
    key_id: Option<i64>,
    provider_id: Option<i64>,
    started_at: DateTime<Utc>,
    cost_usd: Decimal,
    input_tokens: i64,
    output_tokens: i64,
    blocked_by: Option<String>,
    session_id: Option<String>,
    user_agent: Option<String>,
}

/// One INSERT of the whole batch, each column bound as one array
/// (`UNNEST`): the statement is the same for every batch size, so Postgres
/// plans it once per connection, and binding is one value per column.
async fn insert(conn: &mut PgConnection, rows: &[Row]) -> Result<Vec<Stored>, sqlx::Error> {
    fn col<'a, T: 'a>(rows: &'a [Row], f: impl Fn(&'a Row) -> T) -> Vec<T> {
        rows.iter().map(f).collect()
    }
    // Flags vary in number per row and Postgres arrays cannot be ragged:
    // each row's go as one JSON array.
    let flags: Vec<Value> = col(rows, |r| Value::from(r.flags.clone()));
    sqlx::query_as(
        "WITH new_ids AS ( \
           INSERT INTO audit_event_ids (event_id) SELECT unnest($1::text[]) \
           ON CONFLICT (event_id) DO NOTHING RETURNING event_id) \
         INSERT INTO message_request (event_id, request_id, started_at, received_at, user_id, key_id, key_masked, \
           provider_id, method, endpoint, original_model, upstream_model, status, duration_ms, ttfb_ms, input_tokens, \
           output_tokens, cache_creation_5m_tokens, cache_creation_1h_tokens, cache_read_tokens, cost_usd, \
           cost_multiplier, session_id, user_agent, client_ip, stream, blocked_by, blocked_reason, error, flags) \
         SELECT e.event_id, e.request_id, e.started_at, e.received_at, e.user_id, e.key_id, e.key_masked, \
           e.provider_id, e.method, e.endpoint, e.original_model, e.upstream_model, e.status, e.duration_ms, \
           e.ttfb_ms, e.input_tokens, e.output_tokens, e.cache_creation_5m_tokens, e.cache_creation_1h_tokens, \
           e.cache_read_tokens, e.cost_usd, e.cost_multiplier, e.session_id, e.user_agent, e.client_ip, e.stream, \
           e.blocked_by, e.blocked_reason, e.error, \
           ARRAY(SELECT jsonb_array_elements_text(e.flags)) \
         FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::int8[], $6::int8[], \
           $7::text[], $8::int8[], $9::text[], $10::text[], $11::text[], $12::text[], $13::int4[], $14::int8[], \
           $15::int8[], $16::int8[], $17::int8[], $18::int8[], $19::int8[], $20::int8[], $21::numeric[], \
           $22::numeric[], $23::text[], $24::text[], $25::text[], $26::bool[], $27::text[], $28::jsonb[], \
           $29::text[], $30::jsonb[]) \
           AS e(event_id, request_id, started_at, received_at, user_id, key_id, key_masked, provider_id, method, \
             endpoint, original_model, upstream_model, status, duration_ms, ttfb_ms, input_tokens, output_tokens, \
             cache_creation_5m_tokens, cache_creation_1h_tokens, cache_read_tokens, cost_usd, cost_multiplier, \
             session_id, user_agent, client_ip, stream, blocked_by, blocked_reason, error, flags) \
         WHERE e.event_id IN (SELECT event_id FROM new_ids) \
         RETURNING event_id, user_id, key_id, provider_id, started_at, cost_usd, input_tokens, output_tokens, blocked_by, \
           session_id, user_agent",
    )
    .bind(col(rows, |r| r.event_id.as_str()))
    .bind(col(rows, |r| r.request_id.as_str()))
    .bind(col(rows, |r| r.started_at))
    .bind(col(rows, |r| r.received_at))
    .bind(col(rows, |r| r.user_id))
    .bind(col(rows, |r| r.key_id))
    .bind(col(rows, |r| r.key_masked.as_deref()))
    .bind(col(rows, |r| r.provider_id))
    .bind(col(rows, |r| r.method.as_str()))
    .bind(col(rows, |r| r.endpoint.as_str()))
    .bind(col(rows, |r| r.original_model.as_deref()))
    .bind(col(rows, |r| r.upstream_model.as_deref()))
    .bind(col(rows, |r| r.status))
    .bind(col(rows, |r| r.duration_ms))
    .bind(col(rows, |r| r.ttfb_ms))
    .bind(col(rows, |r| r.input_tokens))
    .bind(col(rows, |r| r.output_tokens))
    .bind(col(rows, |r| r.cache_creation_5m_tokens))
    .bind(col(rows, |r| r.cache_creation_1h_tokens))
    .bind(col(rows, |r| r.cache_read_tokens))
    .bind(col(rows, |r| r.cost_usd))
    .bind(col(rows, |r| r.cost_multiplier))
    .bind(col(rows, |r| r.session_id.as_deref()))
    .bind(col(rows, |r| r.user_agent.as_deref()))
    .bind(col(rows, |r| r.client_ip.as_deref()))
    .bind(col(rows, |r| r.stream))
    .bind(col(rows, |r| r.blocked_by.as_deref()))
    .bind(col(rows, |r| r.blocked_reason.as_ref().map(DbJson)))
    .bind(col(rows, |r| r.error.as_deref()))
    .bind(flags.iter().map(DbJson).collect::<Vec<_>>())
    .fetch_all(conn)
    .await
}

#[derive(Default)]
struct Bucket {
    cost_usd: Decimal,
    requests: i64,
    input_tokens: i64,
    output_tokens: i64,
}

/// Adds the new events to the hourly per-user/key/provider buckets. Requests
/// a guard answered (blocked_by set, e.g. warmup) are not usage.
async fn update_rollup(conn: &mut PgConnection, stored: &[Stored]) -> Result<(), sqlx::Error> {
    // BTreeMap: a fixed row order, so concurrent batches lock rows in the
    // same order and cannot deadlock.
    let mut buckets: BTreeMap<(&'static str, i64, DateTime<Utc>), Bucket> = BTreeMap::new();
    for s in stored.iter().filter(|s| s.blocked_by.is_none()) {
        let hour = s
            .started_at
            .duration_trunc(TimeDelta::hours(1))
            .unwrap_or(s.started_at);
        for (kind, id) in [
            ("user", s.user_id),
            ("key", s.key_id),
            ("provider", s.provider_id),
        ] {
            let Some(id) = id else { continue };
            let b = buckets.entry((kind, id, hour)).or_default();
            b.cost_usd = b.cost_usd.checked_add(s.cost_usd).unwrap_or(Decimal::MAX);
            b.requests += 1;
            b.input_tokens = b.input_tokens.saturating_add(s.input_tokens);
            b.output_tokens = b.output_tokens.saturating_add(s.output_tokens);
        }
    }
    if buckets.is_empty() {
        return Ok(());
    }
    let mut kinds = Vec::new();
    let mut ids = Vec::new();
    let mut hours = Vec::new();
    let mut costs = Vec::new();
    let mut requests = Vec::new();
    let mut inputs = Vec::new();
    let mut outputs = Vec::new();
    for ((kind, id, hour), b) in buckets {
        kinds.push(kind.to_string());
        ids.push(id);
        hours.push(hour);
        costs.push(b.cost_usd);
        requests.push(b.requests);
        inputs.push(b.input_tokens);
        outputs.push(b.output_tokens);
    }
    sqlx::query(
        "INSERT INTO usage_rollup (entity_type, entity_id, bucket_start, cost_usd, request_count, input_tokens, \
           output_tokens) \
         SELECT * FROM UNNEST($1::text[], $2::int8[], $3::timestamptz[], $4::numeric[], $5::int8[], $6::int8[], \
           $7::int8[]) \
         ON CONFLICT (entity_type, entity_id, bucket_start) DO UPDATE SET \
           cost_usd = usage_rollup.cost_usd + EXCLUDED.cost_usd, \
           request_count = usage_rollup.request_count + EXCLUDED.request_count, \
           input_tokens = usage_rollup.input_tokens + EXCLUDED.input_tokens, \
           output_tokens = usage_rollup.output_tokens + EXCLUDED.output_tokens",
    )
    .bind(kinds)
    .bind(ids)
    .bind(hours)
    .bind(costs)
    .bind(requests)
    .bind(inputs)
    .bind(outputs)
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves each charged user's and key's fixed 5 h window
/// (`five_hour_opened_at`) past the new charges, oldest first: a charge
/// after the window ended opens the next one; one older than the window
/// belongs to an earlier window and changes nothing. Two queries per table
/// whatever the batch: the rows are read (and locked, in id order) at once
/// and only those whose window moved are written.
async fn update_five_hour_windows(
    conn: &mut PgConnection,
    stored: &[Stored],
) -> Result<(), sqlx::Error> {
    let mut charges: BTreeMap<(&'static str, i64), Vec<DateTime<Utc>>> = BTreeMap::new();
    for s in stored
        .iter()
        .filter(|s| s.blocked_by.is_none() && s.cost_usd > Decimal::ZERO)
    {
        for (table, id) in [("users", s.user_id), ("keys", s.key_id)] {
            if let Some(id) = id {
                charges.entry((table, id)).or_default().push(s.started_at);
            }
        }
    }
    for table in ["users", "keys"] {
        let ids: Vec<i64> = charges
            .keys()
            .filter(|(t, _)| *t == table)
            .map(|(_, id)| *id)
            .collect();
        if ids.is_empty() {
            continue;
        }
        let current: Vec<(i64, Option<DateTime<Utc>>)> = sqlx::query_as(&format!(
            "SELECT id, five_hour_opened_at FROM {table} WHERE id = ANY($1) ORDER BY id FOR UPDATE"
        ))
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
        let mut moved_ids = Vec::new();
        let mut moved_to = Vec::new();
        for (id, opened) in current {
            let mut times = charges.remove(&(table, id)).unwrap_or_default();
            times.sort();
            let moved = times.into_iter().fold(opened, |opened, at| {
                Some(windows::five_hours_opened_by(opened, at))
            });
            if let Some(to) = moved.filter(|_| moved != opened) {
                moved_ids.push(id);
                moved_to.push(to);
            }
        }
        if !moved_ids.is_empty() {
            sqlx::query(&format!(
                "UPDATE {table} t SET five_hour_opened_at = m.opened \
                 FROM UNNEST($1::int8[], $2::timestamptz[]) AS m(id, opened) WHERE t.id = m.id"
            ))
            .bind(&moved_ids)
            .bind(&moved_to)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
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

/// Records the new events' session activity (SPEC §2.7), one upsert per
/// batch. Only forwarded requests count: an event a guard answered
/// (`blocked_by` set: refusals, warmup) is not session activity. Sessions
/// are keyed by (key_id, session_id), so a client-chosen session id never
/// reaches another key's session; events without a key are skipped.
///
/// A session is seen at its requests' start times (never later than their
/// arrival here). user_id, provider_id and client come from the latest
/// request that carries them, across batches too: an older batch arriving
/// late does not overwrite them.
async fn update_sessions(
    conn: &mut PgConnection,
    stored: &[Stored],
    received_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let mut events: Vec<(DateTime<Utc>, i64, &str, &Stored)> = stored
        .iter()
        .filter(|s| s.blocked_by.is_none())
        .filter_map(|s| {
            let key_id = s.key_id?;
            let session_id = s.session_id.as_deref()?;
            Some((s.started_at.min(received_at), key_id, session_id, s))
        })
        .collect();
    if events.is_empty() {
        return Ok(());
    }
    // Oldest first (stable: batch order breaks ties), so later events win.
    events.sort_by_key(|(seen, ..)| *seen);
    // BTreeMap: a fixed row order, so concurrent batches lock rows in the
    // same order and cannot deadlock.
    let mut sessions: BTreeMap<(i64, &str), SessionDelta<'_>> = BTreeMap::new();
    for (seen, key_id, session_id, s) in events {
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
        d.user_id = s.user_id.or(d.user_id);
        d.provider_id = s.provider_id.or(d.provider_id);
        d.client = s
            .user_agent
            .as_deref()
            .map(|ua| clip(ua, MAX_CLIENT_CHARS))
            .or(d.client);
    }
    let mut key_ids = Vec::with_capacity(sessions.len());
    let mut session_ids = Vec::with_capacity(sessions.len());
    let mut user_ids = Vec::with_capacity(sessions.len());
    let mut provider_ids = Vec::with_capacity(sessions.len());
    let mut clients = Vec::with_capacity(sessions.len());
    let mut firsts = Vec::with_capacity(sessions.len());
    let mut lasts = Vec::with_capacity(sessions.len());
    let mut requests = Vec::with_capacity(sessions.len());
    for ((key_id, session_id), d) in sessions {
        key_ids.push(key_id);
        session_ids.push(session_id);
        user_ids.push(d.user_id);
        provider_ids.push(d.provider_id);
        clients.push(d.client);
        firsts.push(d.first_seen_at);
        lasts.push(d.last_seen_at);
        requests.push(d.requests);
    }
    // In ON CONFLICT DO UPDATE, `sessions.*` is the row before this update.
    sqlx::query(
        "INSERT INTO sessions (key_id, session_id, user_id, provider_id, client, first_seen_at, last_seen_at, \
           request_count) \
         SELECT * FROM UNNEST($1::int8[], $2::text[], $3::int8[], $4::int8[], $5::text[], $6::timestamptz[], \
           $7::timestamptz[], $8::int8[]) \
         ON CONFLICT (key_id, session_id) DO UPDATE SET \
           first_seen_at = LEAST(sessions.first_seen_at, EXCLUDED.first_seen_at), \
           last_seen_at = GREATEST(sessions.last_seen_at, EXCLUDED.last_seen_at), \
           request_count = sessions.request_count + EXCLUDED.request_count, \
           user_id = CASE WHEN EXCLUDED.last_seen_at >= sessions.last_seen_at \
             THEN COALESCE(EXCLUDED.user_id, sessions.user_id) ELSE COALESCE(sessions.user_id, EXCLUDED.user_id) END, \
           provider_id = CASE WHEN EXCLUDED.last_seen_at >= sessions.last_seen_at \
             THEN COALESCE(EXCLUDED.provider_id, sessions.provider_id) \
             ELSE COALESCE(sessions.provider_id, EXCLUDED.provider_id) END, \
           client = CASE WHEN EXCLUDED.last_seen_at >= sessions.last_seen_at \
             THEN COALESCE(EXCLUDED.client, sessions.client) ELSE COALESCE(sessions.client, EXCLUDED.client) END",
    )
    .bind(key_ids)
    .bind(session_ids)
    .bind(user_ids)
    .bind(provider_ids)
    .bind(clients)
    .bind(firsts)
    .bind(lasts)
    .bind(requests)
    .execute(conn)
    .await?;
    Ok(())
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
