//! Event ingestion's bookkeeping: the usage and request rollups and the
//! sessions equal the sum of the stored rows, however a batch repeats users,
//! keys and sessions and however often (or concurrently) it is delivered; quota
//! leases are charged once; a fixed five-hour window is locked only when it
//! moves.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hubgate_wire::RequestEvent;
use reqwest::StatusCode;
use rust_decimal::Decimal;
use sqlx::Connection;

use crate::common::{event, ingest, spawn, TestApp};

const HOUR_MS: i64 = 3_600_000;

/// Event `n` of a batch: three users with two keys each, five sessions per
/// key, spread over three hours; every seventh one refused by a guard.
fn mixed(prefix: &str, n: i64, now_ms: i64) -> RequestEvent {
    let mut e = event(&format!("{prefix}-{n}"));
    let user = 1 + n % 3;
    let key = user * 10 + n % 2;
    e.user_id = Some(user);
    e.key_id = Some(key);
    e.provider_id = Some(1 + n % 2);
    e.session_id = Some(format!("s{}", n % 5));
    e.started_at_ms = now_ms - (n % 3) * HOUR_MS - n;
    e.cost_usd = Decimal::new(1000 + n, 6);
    e.usage.input_tokens = 100 + n as u64;
    e.usage.output_tokens = 10 + n as u64;
    if n % 7 == 0 {
        e.blocked_by = Some("sensitive_word".into());
    }
    e
}

/// Every rollup bucket equals the sum of its stored, forwarded rows, and
/// each session's request count the number of its forwarded rows.
async fn assert_bookkeeping_matches_rows(app: &TestApp) {
    for (kind, column) in [
        ("user", "user_id"),
        ("key", "key_id"),
        ("provider", "provider_id"),
    ] {
        let from_rows: Vec<(i64, DateTime<Utc>, Decimal, i64, i64, i64)> =
            sqlx::query_as(&format!(
                "SELECT {column}, date_trunc('hour', started_at), sum(cost_usd), count(*), \
                   sum(input_tokens)::int8, sum(output_tokens)::int8 \
                 FROM message_request WHERE blocked_by IS NULL AND {column} IS NOT NULL \
                 GROUP BY 1, 2 ORDER BY 1, 2"
            ))
            .fetch_all(&app.pool)
            .await
            .unwrap();
        let rollup: Vec<(i64, DateTime<Utc>, Decimal, i64, i64, i64)> = sqlx::query_as(
            "SELECT entity_id, bucket_start, cost_usd, request_count, input_tokens, output_tokens \
             FROM usage_rollup WHERE entity_type = $1 ORDER BY 1, 2",
        )
        .bind(kind)
        .fetch_all(&app.pool)
        .await
        .unwrap();
        assert!(!rollup.is_empty());
        assert_eq!(rollup, from_rows, "{kind} rollup");
    }
    let from_rows: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT key_id, session_id, count(*) FROM message_request \
         WHERE blocked_by IS NULL AND key_id IS NOT NULL AND session_id IS NOT NULL \
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let sessions: Vec<(i64, String, i64)> =
        sqlx::query_as("SELECT key_id, session_id, request_count FROM sessions ORDER BY 1, 2")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert!(!sessions.is_empty());
    assert_eq!(sessions, from_rows, "sessions");
    crate::overview::assert_request_rollup_matches_rows(app).await;
}

#[tokio::test]
async fn a_batch_with_repeated_users_keys_and_sessions_adds_up() {
    let app = spawn().await;
    let now = Utc::now().timestamp_millis();
    let first: Vec<_> = (0..120).map(|n| mixed("a", n, now)).collect();
    let ack = ingest(&app, &first).await;
    assert_eq!((ack.accepted, ack.duplicates), (120, 0));
    assert_bookkeeping_matches_rows(&app).await;

    // Delivered again, then again with new events among the old ones.
    let ack = ingest(&app, &first).await;
    assert_eq!((ack.accepted, ack.duplicates), (0, 120));
    let mut mixed_batch: Vec<_> = (60..120).map(|n| mixed("a", n, now)).collect();
    mixed_batch.extend((0..60).map(|n| mixed("b", n, now)));
    let ack = ingest(&app, &mixed_batch).await;
    assert_eq!((ack.accepted, ack.duplicates), (60, 60));
    assert_eq!(app.count("message_request").await, 180);
    assert_bookkeeping_matches_rows(&app).await;
}

#[tokio::test]
async fn concurrent_deliveries_of_a_batch_store_and_charge_it_once() {
    let app = spawn().await;
    let (lease,): (i64,) = sqlx::query_as(
        "INSERT INTO quota_leases (instance, entity_type, entity_id, limit_type, granted_usd, expires_at) \
         VALUES ('envoy-a', 'key', 10, 'usd_total', 100, now() + interval '1 hour') RETURNING id",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let now = Utc::now().timestamp_millis();
    let batch: Vec<_> = (0..200)
        .map(|n| {
            let mut e = mixed("c", n, now);
            e.leases = vec![lease];
            e
        })
        .collect();
    let body = serde_json::to_value(hubgate_wire::EventBatch {
        events: batch.clone(),
    })
    .unwrap();
    let post = || app.internal_post(hubgate_wire::EVENTS_PATH, body.clone());
    let answers = tokio::join!(post(), post(), post(), post());
    let mut accepted = 0;
    let mut duplicates = 0;
    for (status, ack) in [answers.0, answers.1, answers.2, answers.3] {
        assert_eq!(status, StatusCode::OK, "{ack}");
        let ack: hubgate_wire::EventBatchAck = serde_json::from_value(ack).unwrap();
        accepted += ack.accepted;
        duplicates += ack.duplicates;
    }
    assert_eq!((accepted, duplicates), (200, 600));
    assert_eq!(app.count("message_request").await, 200);
    assert_bookkeeping_matches_rows(&app).await;

    let (spent,): (Decimal,) = sqlx::query_as("SELECT spent_usd FROM quota_leases WHERE id = $1")
        .bind(lease)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let charged: Decimal = batch.iter().map(|e| e.cost_usd).sum();
    assert_eq!(spent, charged, "every event's cost once");
}

#[tokio::test]
async fn charges_inside_an_open_five_hour_window_do_not_lock_it() {
    let app = spawn().await;
    let user = app.create_user("alice").await["id"].as_i64().unwrap();
    let now = Utc::now().timestamp_millis();
    let charge = |id: &str, at_ms: i64| {
        let mut e = event(id);
        e.user_id = Some(user);
        e.started_at_ms = at_ms;
        e
    };
    ingest(&app, &[charge("open", now - HOUR_MS)]).await;
    let opened: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT five_hour_opened_at FROM users WHERE id = $1")
            .bind(user)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(opened.map(|t| t.timestamp_millis()), Some(now - HOUR_MS));

    // Another transaction holds the user's row: a charge inside the window
    // is stored all the same.
    let mut other = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
    let mut tx = other.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
        .bind(user)
        .execute(&mut *tx)
        .await
        .unwrap();
    let ack = tokio::time::timeout(
        Duration::from_secs(10),
        ingest(&app, &[charge("inside", now)]),
    )
    .await
    .expect("a charge inside the window waits for no lock");
    assert_eq!(ack.accepted, 1);
    tx.rollback().await.unwrap();

    // One five hours after the opening opens the next window.
    ingest(&app, &[charge("next", now + 4 * HOUR_MS)]).await;
    let opened: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT five_hour_opened_at FROM users WHERE id = $1")
            .bind(user)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        opened.map(|t| t.timestamp_millis()),
        Some(now + 4 * HOUR_MS)
    );
}

#[tokio::test]
async fn what_ingestion_updates_is_in_no_index() {
    let app = spawn().await;
    // An update that changes no indexed column, on a page with room, stays
    // on the page and writes no index entry (HOT).
    let indexed: Vec<(String, String)> = sqlx::query_as(
        "SELECT i.indexrelid::regclass::text, a.attname::text FROM pg_index i \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
         WHERE (i.indrelid = 'sessions'::regclass \
             AND a.attname IN ('provider_id', 'client', 'first_seen_at', 'last_seen_at', 'request_count')) \
            OR (i.indrelid = 'usage_rollup'::regclass \
             AND a.attname IN ('cost_usd', 'request_count', 'input_tokens', 'output_tokens'))",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(indexed, vec![]);
    let options: Vec<(String, Option<Vec<String>>)> = sqlx::query_as(
        "SELECT relname::text, reloptions FROM pg_class \
         WHERE relname IN ('sessions', 'usage_rollup') ORDER BY relname",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        options,
        vec![
            (
                "sessions".to_string(),
                Some(vec!["fillfactor=50".to_string()])
            ),
            (
                "usage_rollup".to_string(),
                Some(vec!["fillfactor=70".to_string()])
            ),
        ]
    );
}
