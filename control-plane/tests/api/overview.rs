//! `GET /api/v1/overview`: the window's buckets, totals, top users and
//! models, status codes, active sessions and circuits, from the request
//! rollup kept at ingestion (day, week) or the audit rows (hour); the
//! rollup counts a resent event once and its backfill (migration 0017)
//! counts rows as ingestion does.

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, TimeDelta, Timelike, Utc};
use hubgate_wire::RequestEvent;
use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::common::{assert_error, event, ingest, spawn, TestApp};

fn dec(v: &Value) -> Decimal {
    v.as_str().unwrap().parse().unwrap()
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

#[allow(clippy::too_many_arguments)]
fn at(
    id: &str,
    user: i64,
    key: i64,
    when: DateTime<Utc>,
    model: Option<&str>,
    status: u16,
    blocked_by: Option<&str>,
    cost: &str,
) -> RequestEvent {
    let mut e = event(id);
    e.user_id = Some(user);
    e.key_id = Some(key);
    e.provider_id = Some(1);
    e.started_at_ms = when.timestamp_millis();
    e.original_model = model.map(str::to_string);
    e.upstream_model = model.map(str::to_string);
    e.status = status;
    e.blocked_by = blocked_by.map(str::to_string);
    e.cost_usd = cost.parse().unwrap();
    e
}

async fn overview(app: &TestApp, query: &str) -> Value {
    let (status, body) = app.get(&format!("/api/v1/overview{query}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The series as start → (requests, cost, errors, blocked), non-empty
/// buckets only; checks that it covers the window bucket by bucket.
fn series(o: &Value, buckets: usize) -> BTreeMap<DateTime<Utc>, (i64, Decimal, i64, i64)> {
    let size = o["bucket_seconds"].as_i64().unwrap();
    let (from, to) = (time(&o["from"]), time(&o["to"]));
    let points = o["series"].as_array().unwrap();
    assert_eq!(points.len(), buckets, "{o}");
    assert_eq!((to - from).num_seconds(), size * buckets as i64);
    assert_eq!(from.timestamp() % size, 0, "aligned");
    let mut out = BTreeMap::new();
    for (i, p) in points.iter().enumerate() {
        let start = time(&p["start"]);
        assert_eq!(start, from + TimeDelta::seconds(size * i as i64));
        let v = (
            p["requests"].as_i64().unwrap(),
            dec(&p["cost_usd"]),
            p["errors"].as_i64().unwrap(),
            p["blocked"].as_i64().unwrap(),
        );
        if v != (0, Decimal::ZERO, 0, 0) {
            out.insert(start, v);
        }
    }
    out
}

fn hour(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::hours(1)).unwrap()
}

#[tokio::test]
async fn overview_sums_the_window() {
    let app = spawn().await;
    let alice = app.create_user("alice").await["id"].as_i64().unwrap();
    let bob = app.create_user("bob").await["id"].as_i64().unwrap();
    let (ak, _) = app.create_key(alice, json!({ "name": "a" })).await;
    let (bk, _) = app.create_key(bob, json!({ "name": "b" })).await;
    let (ak, bk) = (ak["id"].as_i64().unwrap(), bk["id"].as_i64().unwrap());
    let p1 = app.create_provider("p1", "sk-1").await["id"]
        .as_i64()
        .unwrap();
    let p2 = app.create_provider("p2", "sk-2").await["id"]
        .as_i64()
        .unwrap();
    app.patch(
        &format!("/api/v1/providers/{p2}"),
        json!({ "enabled": false }),
    )
    .await;
    let now_ms = Utc::now().timestamp_millis();
    let (status, _) = app
        .internal_post(
            hubgate_wire::CIRCUITS_PATH,
            json!({"instance": "envoy-a", "now_ms": now_ms, "circuits": [
                {"provider_id": p1, "state": "open", "failures": 5, "successes": 0,
                 "open_until_ms": now_ms + 60_000, "reset_at_ms": 0}]}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let now = Utc::now();
    // Well inside the current 5-minute bucket and the last hour.
    let recent = now - TimeDelta::seconds(1);
    let earlier = now - TimeDelta::hours(2);
    let yesterday = now - TimeDelta::hours(30);
    let sonnet = Some("claude-sonnet-4-5");
    let mut events = vec![
        at("e1", alice, ak, recent, sonnet, 200, None, "0.5"),
        at("e2", alice, ak, earlier, sonnet, 500, None, "0"),
        at("e3", bob, bk, earlier, Some("gpt-5"), 200, None, "0.25"),
        at(
            "e4",
            bob,
            bk,
            earlier,
            sonnet,
            400,
            Some("sensitive_word"),
            "0",
        ),
        at("e5", bob, bk, earlier, None, 429, None, "0"),
        at("e6", alice, ak, recent, sonnet, 429, None, "0"),
        at("e7", alice, ak, yesterday, Some("gpt-5"), 200, None, "9"),
    ];
    events[0].session_id = Some("s-1".into());
    events[0].usage.input_tokens = 7;
    ingest(&app, &events).await;

    let day = overview(&app, "").await;
    assert_eq!(day["window"], "day");
    assert_eq!(day["bucket_seconds"], 3600);
    let to = time(&day["to"]);
    assert!(to > now && to - now <= TimeDelta::hours(1) && to.minute() == 0);
    let points = series(&day, 24);
    let one = Decimal::ONE;
    assert_eq!(
        points,
        BTreeMap::from([
            (hour(earlier), (4, "0.25".parse().unwrap(), 2, 1)),
            (hour(recent), (2, one / Decimal::TWO, 1, 0)),
        ])
    );
    let totals = &day["totals"];
    assert_eq!(totals["requests"], 6);
    assert_eq!(dec(&totals["cost_usd"]), "0.75".parse().unwrap());
    assert_eq!(totals["errors"], 3, "500 and two 429s");
    assert_eq!(totals["blocked"], 1);
    assert_eq!(totals["input_tokens"], 7 + 5 * 1000);
    assert_eq!(totals["output_tokens"], 6 * 200);

    let users: Vec<(i64, &str, i64, Decimal)> = day["top_users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["user_id"].as_i64().unwrap(),
                u["name"].as_str().unwrap(),
                u["requests"].as_i64().unwrap(),
                dec(&u["cost_usd"]),
            )
        })
        .collect();
    assert_eq!(
        users,
        [
            (alice, "alice", 3, one / Decimal::TWO),
            (bob, "bob", 2, "0.25".parse().unwrap()),
        ],
        "forwarded requests only: bob's refusal is not counted"
    );
    assert_eq!(
        day["top_models"],
        json!([
            {"model": "claude-sonnet-4-5", "requests": 4, "cost_usd": "0.5"},
            {"model": "gpt-5", "requests": 1, "cost_usd": "0.25"},
        ]),
        "by cost; e5 has no model"
    );
    assert_eq!(
        day["codes"],
        json!([
            {"status": 429, "blocked_by": null, "requests": 2},
            {"status": 400, "blocked_by": "sensitive_word", "requests": 1},
            {"status": 500, "blocked_by": null, "requests": 1},
        ]),
        "most frequent first; plain 200s left out"
    );
    assert_eq!(day["active_sessions"], 1);
    assert_eq!(
        day["providers"],
        json!([
            {"id": p1, "name": "p1", "enabled": true, "circuit": "open"},
            {"id": p2, "name": "p2", "enabled": false, "circuit": "closed"},
        ])
    );

    let week = overview(&app, "?window=week").await;
    assert_eq!(
        (week["window"].as_str(), week["bucket_seconds"].as_i64()),
        (Some("week"), Some(3600))
    );
    let points = series(&week, 168);
    assert_eq!(points.len(), 3);
    assert_eq!(points[&hour(yesterday)], (1, Decimal::from(9), 0, 0));
    assert_eq!(week["totals"]["requests"], 7);
    assert_eq!(week["top_users"][0]["user_id"], alice);
    assert_eq!(
        dec(&week["top_users"][0]["cost_usd"]),
        "9.5".parse().unwrap()
    );
    assert_eq!(week["top_models"][0]["model"], "gpt-5");

    let last_hour = overview(&app, "?window=hour").await;
    assert_eq!(last_hour["bucket_seconds"], 300);
    let points = series(&last_hour, 12);
    let five = recent.duration_trunc(TimeDelta::minutes(5)).unwrap();
    assert_eq!(
        points,
        BTreeMap::from([(five, (2, one / Decimal::TWO, 1, 0))])
    );
    assert_eq!(last_hour["totals"]["requests"], 2);
    assert_eq!(last_hour["totals"]["input_tokens"], 1007);
    assert_eq!(
        last_hour["top_users"],
        json!([{"user_id": alice, "name": "alice", "requests": 2, "cost_usd": "0.5"}])
    );
    assert_eq!(
        last_hour["codes"],
        json!([{"status": 429, "blocked_by": null, "requests": 1}])
    );
    assert_eq!(
        last_hour["top_models"],
        json!([{"model": "claude-sonnet-4-5", "requests": 2, "cost_usd": "0.5"}])
    );
}

#[tokio::test]
async fn an_empty_window_is_all_zeros() {
    let app = spawn().await;
    for (window, buckets) in [("hour", 12), ("day", 24), ("week", 168)] {
        let o = overview(&app, &format!("?window={window}")).await;
        assert!(series(&o, buckets).is_empty());
        assert_eq!(
            o["totals"],
            json!({"requests": 0, "cost_usd": "0", "errors": 0, "blocked": 0,
                   "input_tokens": 0, "output_tokens": 0})
        );
        for list in ["top_users", "top_models", "codes", "providers"] {
            assert_eq!(o[list], json!([]), "{window} {list}");
        }
        assert_eq!(o["active_sessions"], 0);
    }
}

#[tokio::test]
async fn bad_windows_and_callers_are_refused() {
    let app = spawn().await;
    for (query, field) in [
        ("window=month", "window"),
        ("window=DAY", "window"),
        ("window=", "window"),
        ("days=1", "days"),
    ] {
        let (status, body) = app.get(&format!("/api/v1/overview?{query}")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_error(&body, "validation_failed", Some(field));
    }
    let user = app.create_user("u").await["id"].as_i64().unwrap();
    let (_, raw) = app
        .create_key(user, json!({ "name": "web", "can_login_web_ui": true }))
        .await;
    let (status, body) = app
        .send(Method::GET, "/api/v1/overview", Some(&raw), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&body, "forbidden", None);
    let (status, _) = app.send(Method::GET, "/api/v1/overview", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// One cell of `request_rollup`: hour, original and upstream model, status,
/// blocked_by, requests, cost, input and output tokens.
type RollupCell = (
    DateTime<Utc>,
    String,
    String,
    i32,
    String,
    i64,
    Decimal,
    i64,
    i64,
);

/// The request rollup, in key order.
async fn request_rollup(app: &TestApp) -> Vec<RollupCell> {
    sqlx::query_as(
        "SELECT bucket_start, model, upstream_model, status, blocked_by, request_count, cost_usd, \
           input_tokens, output_tokens FROM request_rollup ORDER BY 1, 2, 3, 4, 5",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

/// The request rollup equals the audit rows counted per hour, original and
/// upstream model, status and blocked_by.
pub async fn assert_request_rollup_matches_rows(app: &TestApp) {
    let from_rows: Vec<RollupCell> = sqlx::query_as(
        "SELECT date_trunc('hour', started_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', \
           left(coalesce(original_model, ''), 256), left(coalesce(upstream_model, ''), 256), status, \
           coalesce(blocked_by, ''), count(*), sum(cost_usd), sum(input_tokens)::int8, \
           sum(output_tokens)::int8 \
         FROM message_request GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let rollup = request_rollup(app).await;
    assert!(!rollup.is_empty());
    assert_eq!(rollup, from_rows, "request rollup");
}

#[tokio::test]
async fn resent_events_are_counted_once() {
    let app = spawn().await;
    let now = Utc::now();
    let batch: Vec<RequestEvent> = (0..40)
        .map(|n| {
            let when = now - TimeDelta::minutes(n * 37);
            let status = [200, 200, 429, 500][n as usize % 4];
            let blocked = (n % 5 == 0).then_some("rpm_limit");
            let model = ["claude-sonnet-4-5", "gpt-5", "Gemini-2.5-Pro"][n as usize % 3];
            at(
                &format!("r{n}"),
                1 + n % 3,
                10 + n % 3,
                when,
                Some(model),
                status,
                blocked,
                "0.01",
            )
        })
        .collect();
    let ack = ingest(&app, &batch).await;
    assert_eq!((ack.accepted, ack.duplicates), (40, 0));
    let first = overview(&app, "?window=week").await;
    assert_request_rollup_matches_rows(&app).await;

    // Sent again, then half of it again among new events.
    let ack = ingest(&app, &batch).await;
    assert_eq!((ack.accepted, ack.duplicates), (0, 40));
    assert_eq!(
        overview(&app, "?window=week").await["totals"],
        first["totals"]
    );
    let mut mixed: Vec<RequestEvent> = batch[20..].to_vec();
    mixed.extend((0..20).map(|n| {
        let mut e = batch[n].clone();
        e.event_id = format!("new-{n}");
        e
    }));
    let ack = ingest(&app, &mixed).await;
    assert_eq!((ack.accepted, ack.duplicates), (20, 20));
    let after = overview(&app, "?window=week").await;
    assert_eq!(after["totals"]["requests"], 60);
    assert_request_rollup_matches_rows(&app).await;
}

/// Migration 0017 fills the request rollup from the audit rows already
/// stored: its statement, run again on rows ingested since, gives what
/// ingestion wrote.
#[tokio::test]
async fn the_backfill_counts_rows_as_ingestion_does() {
    let app = spawn().await;
    let now = Utc::now();
    let long_model = "m".repeat(300);
    let mut events: Vec<RequestEvent> = (0..30)
        .map(|n| {
            let when = now - TimeDelta::minutes(n * 53);
            let blocked = (n % 4 == 0).then_some("sensitive_word");
            let model = [Some("a"), None, Some(long_model.as_str())][n as usize % 3];
            let mut e = at(
                &format!("b{n}"),
                1,
                10,
                when,
                model,
                200 + (n % 2) as u16 * 229,
                blocked,
                "0.5",
            );
            e.usage.output_tokens = n as u64;
            e
        })
        .collect();
    events[1].original_model = Some(String::new());
    ingest(&app, &events).await;
    assert_request_rollup_matches_rows(&app).await;
    let ingested = request_rollup(&app).await;
    assert!(
        ingested.iter().any(|c| c.1.chars().count() == 256),
        "long models cut"
    );

    let migration = include_str!("../../migrations/0019_rollup_upstream_model.sql");
    let start = migration.find("INSERT INTO request_rollup").unwrap();
    let backfill = &migration[start..start + migration[start..].find(';').unwrap()];
    sqlx::query("DELETE FROM request_rollup")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query(backfill).execute(&app.pool).await.unwrap();
    assert_eq!(request_rollup(&app).await, ingested);
}
