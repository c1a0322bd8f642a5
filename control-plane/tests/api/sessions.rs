use chrono::{DateTime, Utc};
use hubgate_wire::RequestEvent;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::{assert_error, event, ingest, spawn, spawn_with, TestApp};

const SECOND: i64 = 1000;
const HOUR: i64 = 3600 * SECOND;

/// A forwarded request of `session` under `key` (user `key / 10`),
/// started `ago_ms` before `now_ms`.
fn req(id: &str, key: i64, session: &str, now_ms: i64, ago_ms: i64) -> RequestEvent {
    let mut e = event(id);
    e.key_id = Some(key);
    e.user_id = Some(key / 10);
    e.provider_id = Some(1);
    e.session_id = Some(session.to_string());
    e.started_at_ms = now_ms - ago_ms;
    e
}

#[derive(Debug, sqlx::FromRow)]
struct Row {
    user_id: Option<i64>,
    provider_id: Option<i64>,
    client: Option<String>,
    first_seen_at: DateTime<Utc>,
    last_seen_at: DateTime<Utc>,
    request_count: i64,
}

async fn row(app: &TestApp, key: i64, session: &str) -> Option<Row> {
    sqlx::query_as(
        "SELECT user_id, provider_id, client, first_seen_at, last_seen_at, request_count \
         FROM sessions WHERE key_id = $1 AND session_id = $2",
    )
    .bind(key)
    .bind(session)
    .fetch_optional(&app.pool)
    .await
    .unwrap()
}

/// (key_id, session_id) of each listed item, in order.
fn listed(page: &Value) -> Vec<(i64, String)> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["key_id"].as_i64().unwrap(),
                i["session_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn ms(value: &Value) -> i64 {
    DateTime::parse_from_rfc3339(value.as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

#[tokio::test]
async fn events_create_and_update_a_session() {
    let app = spawn().await;
    let now = Utc::now().timestamp_millis();

    let mut a = req("a", 10, "sess-1", now, 60 * SECOND);
    a.provider_id = Some(1);
    a.user_agent = Some("claude-cli/2.0.0 (external, cli)".into());
    let mut b = req("b", 10, "sess-1", now, 30 * SECOND);
    b.provider_id = Some(2);
    b.user_agent = Some("claude-cli/2.1.0 (external, cli)".into());
    // Listed after b but older: b stays the latest.
    let mut c = req("c", 10, "sess-1", now, 45 * SECOND);
    c.provider_id = Some(3);
    // No key or no session id: no session.
    let mut no_key = req("no-key", 10, "sess-2", now, 0);
    no_key.key_id = None;
    let mut no_session = req("no-session", 10, "sess-3", now, 0);
    no_session.session_id = None;
    let ack = ingest(&app, &[a, b, c, no_key, no_session]).await;
    assert_eq!(ack.accepted, 5);
    assert_eq!(app.count("sessions").await, 1);

    let r = row(&app, 10, "sess-1").await.unwrap();
    assert_eq!(r.first_seen_at.timestamp_millis(), now - 60 * SECOND);
    assert_eq!(r.last_seen_at.timestamp_millis(), now - 30 * SECOND);
    assert_eq!(r.request_count, 3);
    assert_eq!(r.user_id, Some(1));
    assert_eq!(r.provider_id, Some(2), "from the latest request");
    assert_eq!(
        r.client.as_deref(),
        Some("claude-cli/2.1.0 (external, cli)")
    );

    // A late batch with an older request moves first_seen_at only.
    let mut old = req("old", 10, "sess-1", now, 120 * SECOND);
    old.provider_id = Some(4);
    old.user_agent = Some("old-agent/1.0".into());
    ingest(&app, &[old]).await;
    let r = row(&app, 10, "sess-1").await.unwrap();
    assert_eq!(r.first_seen_at.timestamp_millis(), now - 120 * SECOND);
    assert_eq!(r.last_seen_at.timestamp_millis(), now - 30 * SECOND);
    assert_eq!(r.request_count, 4);
    assert_eq!(r.provider_id, Some(2));
    assert_eq!(
        r.client.as_deref(),
        Some("claude-cli/2.1.0 (external, cli)")
    );

    // A newer one moves last_seen_at, the provider and the client; a long
    // user agent is clipped to 256 characters.
    let mut new = req("new", 10, "sess-1", now, 0);
    new.provider_id = Some(5);
    new.user_agent = Some("é".repeat(300));
    ingest(&app, &[new]).await;
    let r = row(&app, 10, "sess-1").await.unwrap();
    assert_eq!(r.first_seen_at.timestamp_millis(), now - 120 * SECOND);
    assert_eq!(r.last_seen_at.timestamp_millis(), now);
    assert_eq!(r.request_count, 5);
    assert_eq!(r.provider_id, Some(5));
    assert_eq!(r.client, Some("é".repeat(256)));

    // A newer request without a provider or user agent keeps the known ones.
    let mut bare = req("bare", 10, "sess-1", now, 0);
    bare.provider_id = None;
    bare.user_agent = None;
    ingest(&app, &[bare]).await;
    let r = row(&app, 10, "sess-1").await.unwrap();
    assert_eq!(r.request_count, 6);
    assert_eq!(r.provider_id, Some(5));
    assert_eq!(r.client, Some("é".repeat(256)));
}

#[tokio::test]
async fn a_retried_batch_does_not_count_twice() {
    let app = spawn().await;
    let now = Utc::now().timestamp_millis();
    let batch: Vec<_> = (0..3)
        .map(|i| req(&format!("r{i}"), 10, "sess", now, i * SECOND))
        .collect();
    ingest(&app, &batch).await;
    let ack = ingest(&app, &batch).await;
    assert_eq!((ack.accepted, ack.duplicates), (0, 3));
    assert_eq!(row(&app, 10, "sess").await.unwrap().request_count, 3);

    // Old and new events mixed: only the new one counts.
    let mut mixed = batch.clone();
    mixed.push(req("r3", 10, "sess", now, 0));
    let ack = ingest(&app, &mixed).await;
    assert_eq!((ack.accepted, ack.duplicates), (1, 3));
    assert_eq!(row(&app, 10, "sess").await.unwrap().request_count, 4);

    // The same event twice within one batch is one request.
    let twice = vec![req("r4", 10, "sess", now, 0), req("r4", 10, "sess", now, 0)];
    let ack = ingest(&app, &twice).await;
    assert_eq!((ack.accepted, ack.duplicates), (1, 1));
    assert_eq!(row(&app, 10, "sess").await.unwrap().request_count, 5);
}

#[tokio::test]
async fn refused_and_warmup_requests_are_not_session_activity() {
    let app = spawn().await;
    let now = Utc::now().timestamp_millis();
    let mut warmup = req("warmup", 10, "sess-w", now, 0);
    warmup.blocked_by = Some("warmup".into());
    let mut refused = req("refused", 10, "sess-r", now, 0);
    refused.status = 400;
    refused.blocked_by = Some("model_not_allowed".into());
    ingest(&app, &[warmup, refused]).await;
    assert_eq!(app.count("message_request").await, 2);
    assert_eq!(app.count("sessions").await, 0);

    // Nor do they touch an existing session.
    ingest(&app, &[req("ok", 10, "sess-r", now, 60 * SECOND)]).await;
    let mut later = req("refused-later", 10, "sess-r", now, 0);
    later.status = 429;
    later.blocked_by = Some("concurrent_sessions".into());
    later.provider_id = Some(9);
    ingest(&app, &[later]).await;
    let r = row(&app, 10, "sess-r").await.unwrap();
    assert_eq!(r.request_count, 1);
    assert_eq!(r.last_seen_at.timestamp_millis(), now - 60 * SECOND);
    assert_eq!(r.provider_id, Some(1));
}

#[tokio::test]
async fn one_session_id_under_two_keys_is_two_sessions() {
    let app = spawn().await;
    let now = Utc::now().timestamp_millis();
    let mut other = req("k2", 20, "shared-id", now, 0);
    other.provider_id = Some(7);
    ingest(
        &app,
        &[
            req("k1a", 10, "shared-id", now, 10 * SECOND),
            req("k1b", 10, "shared-id", now, 5 * SECOND),
            other,
        ],
    )
    .await;
    assert_eq!(app.count("sessions").await, 2);
    let mine = row(&app, 10, "shared-id").await.unwrap();
    let theirs = row(&app, 20, "shared-id").await.unwrap();
    assert_eq!(
        (mine.request_count, mine.user_id, mine.provider_id),
        (2, Some(1), Some(1))
    );
    assert_eq!(
        (theirs.request_count, theirs.user_id, theirs.provider_id),
        (1, Some(2), Some(7))
    );

    let (_, page) = app.get("/api/v1/sessions?key_id=20").await;
    assert_eq!(listed(&page), [(20, "shared-id".to_string())]);
    assert_eq!(page["items"][0]["request_count"], 1);
}

#[tokio::test]
async fn listing_shows_active_sessions_by_default() {
    let app = spawn().await;
    let now = Utc::now().timestamp_millis();
    let mut events = vec![
        // Active: within 300 s.
        req("a1", 10, "s-a", now, 100 * SECOND),
        req("a2", 10, "s-a", now, 10 * SECOND),
        req("b", 11, "s-b", now, 20 * SECOND),
        req("c", 20, "s-c", now, 250 * SECOND),
        // Idle, still retained.
        req("d", 10, "s-d", now, 400 * SECOND),
        req("e", 20, "s-e", now, 2 * HOUR),
    ];
    events[1].user_agent = Some("codex_cli_rs/0.1.2".into());
    events[1].provider_id = Some(3);
    ingest(&app, &events).await;

    let (status, page) = app.get("/api/v1/sessions").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        listed(&page),
        [
            (10, "s-a".to_string()),
            (11, "s-b".to_string()),
            (20, "s-c".to_string())
        ],
        "active only, newest first"
    );
    assert_eq!(page["total"], 3);
    assert_eq!(page["page"], 1);
    assert_eq!(page["page_size"], 50);
    let first = &page["items"][0];
    assert_eq!(
        first
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>(),
        [
            "active",
            "client",
            "first_seen_at",
            "key_id",
            "last_seen_at",
            "provider_id",
            "request_count",
            "session_id",
            "user_id"
        ]
    );
    assert_eq!(first["session_id"], "s-a");
    assert_eq!(first["user_id"], 1);
    assert_eq!(first["key_id"], 10);
    assert_eq!(first["client"], "codex_cli_rs/0.1.2");
    assert_eq!(first["provider_id"], 3);
    assert_eq!(first["request_count"], 2);
    assert_eq!(first["active"], true);
    assert_eq!(ms(&first["first_seen_at"]), now - 100 * SECOND);
    assert_eq!(ms(&first["last_seen_at"]), now - 10 * SECOND);

    // Filters.
    let (_, page) = app.get("/api/v1/sessions?user_id=1").await;
    assert_eq!(
        listed(&page),
        [(10, "s-a".to_string()), (11, "s-b".to_string())]
    );
    let (_, page) = app.get("/api/v1/sessions?key_id=10").await;
    assert_eq!(listed(&page), [(10, "s-a".to_string())]);
    let (_, page) = app.get("/api/v1/sessions?key_id=10&active=true").await;
    assert_eq!(listed(&page), [(10, "s-a".to_string())]);

    // active=false: every retained session, idle ones flagged.
    let (_, page) = app.get("/api/v1/sessions?active=false").await;
    assert_eq!(page["total"], 5);
    assert_eq!(
        listed(&page),
        [
            (10, "s-a".to_string()),
            (11, "s-b".to_string()),
            (20, "s-c".to_string()),
            (10, "s-d".to_string()),
            (20, "s-e".to_string())
        ]
    );
    let active: Vec<bool> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["active"].as_bool().unwrap())
        .collect();
    assert_eq!(active, [true, true, true, false, false]);
    let (_, page) = app.get("/api/v1/sessions?active=false&user_id=2").await;
    assert_eq!(
        listed(&page),
        [(20, "s-c".to_string()), (20, "s-e".to_string())]
    );
    let (_, page) = app.get("/api/v1/sessions?active=false&key_id=10").await;
    assert_eq!(
        listed(&page),
        [(10, "s-a".to_string()), (10, "s-d".to_string())]
    );

    // Paging.
    let (_, page) = app
        .get("/api/v1/sessions?active=false&page_size=2&page=2")
        .await;
    assert_eq!(page["total"], 5);
    assert_eq!(page["page"], 2);
    assert_eq!(page["page_size"], 2);
    assert_eq!(
        listed(&page),
        [(20, "s-c".to_string()), (10, "s-d".to_string())]
    );
    let (_, page) = app
        .get("/api/v1/sessions?active=false&page_size=2&page=4")
        .await;
    assert!(listed(&page).is_empty());
    assert_eq!(page["total"], 5);

    // Admin only.
    let (status, _) = app.send(Method::GET, "/api/v1/sessions", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bad_session_filters_are_422_naming_the_field() {
    let app = spawn().await;
    for (query, field) in [
        ("user_id=abc", "user_id"),
        ("key_id=1.5", "key_id"),
        ("key_id=", "key_id"),
        ("active=maybe", "active"),
        ("active=1", "active"),
        ("active=", "active"),
        ("page=0", "page"),
        ("page_size=501", "page_size"),
        ("page_size=0", "page_size"),
        ("session=abc", "session"),
        ("user_id=%00", "user_id"),
    ] {
        let (status, body) = app.get(&format!("/api/v1/sessions?{query}")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert_error(&body, "validation_failed", Some(field));
    }
}

#[tokio::test]
async fn idle_sessions_are_deleted_after_a_day() {
    // The sweep is driven by hand here; the background one would race it.
    let app = spawn_with(|c| c.background_jobs = false).await;
    let now = Utc::now().timestamp_millis();
    ingest(
        &app,
        &[
            // Last request over 24 h ago, although the session began earlier.
            req("gone-1", 10, "gone", now, 30 * HOUR),
            req("gone-2", 10, "gone", now, 25 * HOUR),
            req("kept", 10, "kept", now, 23 * HOUR),
            req("fresh", 20, "fresh", now, 0),
        ],
    )
    .await;
    assert_eq!(app.count("sessions").await, 3);

    let deleted = hubgate_control_plane::background::delete_idle_sessions(&app.pool)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    assert!(row(&app, 10, "gone").await.is_none());
    assert!(row(&app, 10, "kept").await.is_some());
    assert!(row(&app, 20, "fresh").await.is_some());
    let (_, page) = app.get("/api/v1/sessions?active=false").await;
    assert_eq!(
        listed(&page),
        [(20, "fresh".to_string()), (10, "kept".to_string())]
    );
    assert_eq!(
        hubgate_control_plane::background::delete_idle_sessions(&app.pool)
            .await
            .unwrap(),
        0
    );
    // The audit log is untouched.
    assert_eq!(app.count("message_request").await, 4);
}
