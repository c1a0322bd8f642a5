use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Utc};
use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::common::{assert_error, event, ingest, spawn, TestApp};

/// A forwarded request of `user` (and `key`) costing `cost` USD, made at `at`.
fn charge(
    id: &str,
    user: i64,
    key: Option<i64>,
    at: DateTime<Utc>,
    cost: &str,
) -> hubgate_wire::RequestEvent {
    let mut e = event(id);
    e.user_id = Some(user);
    e.key_id = key;
    e.provider_id = Some(1);
    e.started_at_ms = at.timestamp_millis();
    e.cost_usd = cost.parse().unwrap();
    e
}

fn time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .map(|s| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc))
}

fn dec(v: &Value) -> Decimal {
    v.as_str().unwrap().parse().unwrap()
}

/// The window of `limit_type` in a usage answer.
fn window<'a>(usage: &'a Value, limit_type: &str) -> &'a Value {
    usage["windows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["limit_type"] == limit_type)
        .unwrap_or_else(|| panic!("no {limit_type} window in {usage}"))
}

async fn usage(app: &TestApp, path: &str) -> Value {
    let (status, body) = app.get(path).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Now, to the millisecond (events carry milliseconds).
fn now_ms() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap()
}

fn utc_midnight(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.from_utc_datetime(&t.date_naive().and_time(NaiveTime::MIN))
}

#[tokio::test]
async fn usage_sums_each_window_and_ignores_other_users_and_refusals() {
    let app = spawn().await;
    let user = app.create_user("alice").await["id"].as_i64().unwrap();
    let other = app.create_user("bob").await["id"].as_i64().unwrap();
    let (status, body) = app
        .patch(
            &format!("/api/v1/users/{user}"),
            json!({"limit_total_usd": 10, "limit_5h_usd": "2.5", "limit_daily_usd": 3, "limit_weekly_usd": 5,
                   "limit_monthly_usd": 8, "rpm": 60, "limit_concurrent_sessions": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let now = now_ms();
    // Costs are distinct powers of two (in thousandths): each sum says
    // exactly which requests it counted.
    let ages = [
        Duration::seconds(10),
        Duration::minutes(30),
        Duration::minutes(4 * 60 + 59),
        Duration::minutes(5 * 60 + 1),
        Duration::hours(23),
        Duration::hours(25),
        Duration::days(8),
        Duration::days(40),
    ];
    let mut events = Vec::new();
    let mut charges = Vec::new();
    for (i, age) in ages.iter().enumerate() {
        let cost = Decimal::new(1 << i, 3);
        charges.push((now - *age, cost));
        events.push(charge(
            &format!("c{i}"),
            user,
            None,
            now - *age,
            &cost.to_string(),
        ));
    }
    // Not this user's, and a refused request: never counted.
    events.push(charge("other", other, None, now, "7"));
    let mut refused = charge("refused", user, None, now, "0");
    refused.blocked_by = Some("sensitive_word".into());
    refused.status = 400;
    events.push(refused);
    assert_eq!(ingest(&app, &events).await.accepted, 10);

    let body = usage(&app, &format!("/api/v1/usage/users/{user}")).await;
    assert_eq!(body["entity"], "user");
    assert_eq!(body["user_id"], user);
    assert_eq!(body["timezone"], "UTC");
    let at = time(&body["at"]).unwrap();
    let since = |start: DateTime<Utc>| -> Decimal {
        charges
            .iter()
            .filter(|(t, _)| *t >= start && *t <= at)
            .map(|(_, c)| *c)
            .sum()
    };
    let day = utc_midnight(at);
    let monday = day - Duration::days(i64::from(at.weekday().num_days_from_monday()));
    let first = day - Duration::days(i64::from(at.day() - 1));
    let expected = [
        ("usd_total", "lifetime", None, Decimal::new(255, 3), "10"),
        (
            "usd_5h",
            "rolling",
            Some(at - Duration::hours(5)),
            Decimal::ZERO,
            "2.5",
        ),
        ("daily_quota", "fixed", Some(day), Decimal::ZERO, "3"),
        ("usd_weekly", "fixed", Some(monday), Decimal::ZERO, "5"),
        ("usd_monthly", "fixed", Some(first), Decimal::ZERO, "8"),
    ];
    for (limit_type, mode, start, total, limit) in expected {
        let w = window(&body, limit_type);
        assert_eq!(w["mode"], mode, "{w}");
        assert_eq!(time(&w["window_start"]), start, "{w}");
        let spent = start.map_or(total, since);
        assert_eq!(dec(&w["spent_usd"]), spent, "{limit_type}: {w}");
        let limit: Decimal = limit.parse().unwrap();
        assert_eq!(dec(&w["limit_usd"]), limit, "{w}");
        assert_eq!(
            dec(&w["remaining_usd"]),
            (limit - spent).max(Decimal::ZERO),
            "{w}"
        );
    }
    // The three newest charges are inside the rolling 5 h window: it resets
    // when the oldest of them (4 h 59 min old) leaves it.
    let five = window(&body, "usd_5h");
    assert_eq!(dec(&five["spent_usd"]), Decimal::new(7, 3));
    assert_eq!(five["rolling_hours"], 5);
    assert_eq!(
        time(&five["reset_at"]),
        Some(charges[2].0 + Duration::hours(5))
    );
    assert_eq!(
        time(&window(&body, "usd_weekly")["reset_at"]),
        Some(monday + Duration::days(7))
    );
    assert_eq!(time(&window(&body, "usd_total")["reset_at"]), None);
    assert_eq!(body["rpm"], json!({"current": 1, "limit": 60}));
    assert_eq!(body["concurrent_sessions"]["limit"], 2);
}

#[tokio::test]
async fn key_usage_counts_the_key_only_with_its_own_limits() {
    let app = spawn().await;
    let user = app.create_user("alice").await["id"].as_i64().unwrap();
    let (a, _) = app
        .create_key(user, json!({"name": "a", "limit_daily_usd": "0.5"}))
        .await;
    let (b, _) = app.create_key(user, json!({"name": "b"})).await;
    let (a, b) = (a["id"].as_i64().unwrap(), b["id"].as_i64().unwrap());
    let now = now_ms();
    let mut s1 = charge("s1", user, Some(a), now - Duration::seconds(5), "0.125");
    s1.session_id = Some("sess-1".into());
    let events = [
        s1,
        charge("s2", user, Some(a), now - Duration::seconds(4), "0.25"),
        charge("s3", user, Some(b), now - Duration::seconds(3), "1"),
    ];
    ingest(&app, &events).await;

    let body = usage(&app, &format!("/api/v1/usage/keys/{a}")).await;
    assert_eq!(body["entity"], "key");
    assert_eq!(body["user_id"], user);
    assert_eq!(
        dec(&window(&body, "usd_total")["spent_usd"]),
        Decimal::new(375, 3)
    );
    let daily = window(&body, "daily_quota");
    assert_eq!(dec(&daily["limit_usd"]), Decimal::new(5, 1));
    assert_eq!(dec(&daily["remaining_usd"]), Decimal::new(125, 3));
    assert!(window(&body, "usd_weekly")["limit_usd"].is_null());
    assert!(body["rpm"].is_null(), "keys have no RPM: {body}");
    assert_eq!(body["concurrent_sessions"]["current"], 1);

    let body = usage(&app, &format!("/api/v1/usage/users/{user}")).await;
    assert_eq!(
        dec(&window(&body, "usd_total")["spent_usd"]),
        Decimal::new(1375, 3)
    );
}

#[tokio::test]
async fn reset_starts_the_lifetime_total_again() {
    let app = spawn().await;
    let user = app.create_user("alice").await["id"].as_i64().unwrap();
    let (key, _) = app.create_key(user, json!({"name": "a"})).await;
    let key = key["id"].as_i64().unwrap();
    let before = now_ms() - Duration::seconds(30);
    ingest(&app, &[charge("old", user, Some(key), before, "2")]).await;

    let (status, body) = app
        .post(&format!("/api/v1/usage/users/{user}/reset"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let total = window(&body, "usd_total");
    assert_eq!(dec(&total["spent_usd"]), Decimal::ZERO);
    let reset_at = time(&total["window_start"]).unwrap();
    // The other windows still count the old charge; the key's total too.
    assert_eq!(
        dec(&window(&body, "daily_quota")["spent_usd"]),
        Decimal::TWO
    );
    let (_, shown) = app.get(&format!("/api/v1/users/{user}")).await;
    assert_eq!(time(&shown["cost_reset_at"]), Some(reset_at));
    let body = usage(&app, &format!("/api/v1/usage/keys/{key}")).await;
    assert_eq!(dec(&window(&body, "usd_total")["spent_usd"]), Decimal::TWO);

    ingest(
        &app,
        &[charge(
            "new",
            user,
            Some(key),
            reset_at + Duration::milliseconds(5),
            "0.5",
        )],
    )
    .await;
    let body = usage(&app, &format!("/api/v1/usage/users/{user}")).await;
    assert_eq!(
        dec(&window(&body, "usd_total")["spent_usd"]),
        Decimal::new(5, 1)
    );

    let (status, body) = app.post("/api/v1/usage/keys/999999/reset", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn fixed_five_hour_windows_open_at_a_charge() {
    let app = spawn().await;
    let user = app.create_user("alice").await["id"].as_i64().unwrap();
    let idle = app.create_user("bob").await["id"].as_i64().unwrap();
    for id in [user, idle] {
        let (status, body) = app
            .patch(
                &format!("/api/v1/users/{id}"),
                json!({"limit_5h_usd": 1, "limit_5h_mode": "fixed"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let now = now_ms();
    let opened = now - Duration::minutes(30);
    ingest(
        &app,
        &[
            // Opens a window that ends 1 h ago; the next charge is inside it.
            charge("w1", user, None, now - Duration::hours(6), "0.25"),
            charge("w1b", user, None, now - Duration::minutes(330), "0.125"),
            // After it ended: opens the current window.
            charge("w2", user, None, opened, "0.5"),
            charge("idle", idle, None, now - Duration::hours(6), "0.5"),
        ],
    )
    .await;
    // A late event from the first window changes nothing.
    ingest(
        &app,
        &[charge(
            "late",
            user,
            None,
            now - Duration::minutes(340),
            "0.0625",
        )],
    )
    .await;

    let body = usage(&app, &format!("/api/v1/usage/users/{user}")).await;
    let five = window(&body, "usd_5h");
    assert_eq!(five["mode"], "fixed");
    assert_eq!(time(&five["window_start"]), Some(opened), "{five}");
    assert_eq!(
        time(&five["reset_at"]),
        Some(opened + Duration::hours(5)),
        "{five}"
    );
    assert_eq!(dec(&five["spent_usd"]), Decimal::new(5, 1));
    assert!(five["rolling_hours"].is_null());

    // No window running: nothing counts until the next charge opens one.
    let body = usage(&app, &format!("/api/v1/usage/users/{idle}")).await;
    let five = window(&body, "usd_5h");
    assert_eq!(dec(&five["spent_usd"]), Decimal::ZERO);
    assert!(five["reset_at"].is_null(), "{five}");
    assert_eq!(dec(&five["remaining_usd"]), Decimal::ONE);
}

#[tokio::test]
async fn fixed_windows_follow_the_configured_time_zone() {
    let app = spawn().await;
    // India is UTC+05:30: its days start on the half hour in UTC, inside an
    // hourly rollup bucket.
    let (status, body) = app
        .patch("/api/v1/settings", json!({"timezone": "Asia/Kolkata"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let user = app.create_user("alice").await["id"].as_i64().unwrap();
    let now = now_ms();
    let local = now + Duration::minutes(330);
    let day_start = utc_midnight(local) - Duration::minutes(330);
    if now - day_start < Duration::minutes(2) {
        // Too close to local midnight for a charge after it; the window
        // math has its own tests of these boundaries.
        return;
    }
    ingest(
        &app,
        &[
            charge("before", user, None, day_start - Duration::minutes(1), "1"),
            charge("after", user, None, day_start + Duration::minutes(1), "0.5"),
        ],
    )
    .await;
    let body = usage(&app, &format!("/api/v1/usage/users/{user}")).await;
    assert_eq!(body["timezone"], "Asia/Kolkata");
    let daily = window(&body, "daily_quota");
    assert_eq!(time(&daily["window_start"]), Some(day_start), "{daily}");
    assert_eq!(
        time(&daily["reset_at"]),
        Some(day_start + Duration::days(1))
    );
    assert_eq!(dec(&daily["spent_usd"]), Decimal::new(5, 1), "{daily}");
}

#[tokio::test]
async fn users_read_only_their_own_usage_with_a_web_ui_key() {
    let app = spawn().await;
    let alice = app.create_user("alice").await["id"].as_i64().unwrap();
    let bob = app.create_user("bob").await["id"].as_i64().unwrap();
    let (alice_key, alice_raw) = app
        .create_key(alice, json!({"name": "web", "can_login_web_ui": true}))
        .await;
    let alice_key = alice_key["id"].as_i64().unwrap();
    let (_, plain_raw) = app.create_key(alice, json!({"name": "cli"})).await;
    let (bob_key, _) = app.create_key(bob, json!({"name": "b"})).await;
    let bob_key = bob_key["id"].as_i64().unwrap();

    let get = |path: String, token: Option<String>| {
        let app = &app;
        async move { app.send(Method::GET, &path, token.as_deref(), None).await }
    };
    let mine = Some(alice_raw.clone());
    for path in [
        format!("/api/v1/usage/users/{alice}"),
        format!("/api/v1/usage/keys/{alice_key}"),
    ] {
        let (status, body) = get(path.clone(), mine.clone()).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    for path in [
        format!("/api/v1/usage/users/{bob}"),
        format!("/api/v1/usage/keys/{bob_key}"),
    ] {
        let (status, body) = get(path.clone(), mine.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert_error(&body, "forbidden", None);
    }
    // A key that may not log in to the web UI reads nothing.
    let (status, _) = get(
        format!("/api/v1/usage/users/{alice}"),
        Some(plain_raw.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = get(format!("/api/v1/usage/users/{alice}"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Resetting is for admins.
    let (status, _) = app
        .send(
            Method::POST,
            &format!("/api/v1/usage/users/{alice}/reset"),
            Some(&alice_raw),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Admins read anyone.
    let (status, _) = app.get(&format!("/api/v1/usage/users/{bob}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.get("/api/v1/usage/users/424242").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
