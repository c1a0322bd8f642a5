//! RPM and concurrency shares (SPEC §4): what the control plane hands filter
//! instances never adds up to more than the limit, a lowered share stays
//! reserved until the old one would have expired, and expired shares stop
//! counting.

use hubgate_wire::{Entity, Share, ShareKind};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{assert_error, event, ingest, spawn, TestApp, INTERNAL_TOKEN};

async fn ask_raw(app: &TestApp, body: Value) -> (StatusCode, Value) {
    app.internal_post(hubgate_wire::SHARES_PATH, body).await
}

async fn ask(app: &TestApp, instance: &str, key: i64, asks: Value) -> Vec<Share> {
    let (status, body) = ask_raw(
        app,
        json!({"instance": instance, "key_id": key, "asks": asks}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_value::<hubgate_wire::ShareResponse>(body)
        .unwrap()
        .shares
}

async fn rpm(app: &TestApp, instance: &str, key: i64, need: u32) -> Share {
    let shares = ask(
        app,
        instance,
        key,
        json!([{"entity": "user", "kind": "rpm", "need": need}]),
    )
    .await;
    assert_eq!(shares.len(), 1, "{shares:?}");
    shares[0].clone()
}

/// A user with `user_limits` and one key with `key_limits`.
async fn user_with_key(app: &TestApp, user_limits: Value, key_limits: Value) -> (i64, i64) {
    let user = app.create_user("alice").await["id"].as_i64().unwrap();
    let (status, body) = app
        .patch(&format!("/api/v1/users/{user}"), user_limits)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut key_body = key_limits;
    key_body["name"] = json!("k");
    let (key, _) = app.create_key(user, key_body).await;
    (user, key["id"].as_i64().unwrap())
}

#[tokio::test]
async fn rpm_shares_never_add_up_past_the_limit_and_lowered_ones_stay_held() {
    let app = spawn().await;
    let (user, key) = user_with_key(&app, json!({"rpm": 10}), json!({})).await;
    let a = rpm(&app, "envoy-a", key, 1).await;
    assert_eq!(
        (a.entity, a.entity_id, a.kind),
        (Entity::User, user, ShareKind::Rpm)
    );
    assert_eq!((a.limit, a.share, a.others), (10, 6, 0));
    assert!(a.usable_until_ms > a.retry_at_ms);
    let b = rpm(&app, "envoy-b", key, 1).await;
    assert_eq!((b.share, b.others), (3, 6));
    // Too little left for c: nothing, and a time to ask again.
    let c = rpm(&app, "envoy-c", key, 2).await;
    assert_eq!((c.share, c.others), (0, 9));
    assert!(c.retry_at_ms >= c.usable_until_ms + 4_000, "{c:?}");
    // a renews with less in use: its share drops to 5, but the 6 it had
    // stay reserved (it may have admitted that many before hearing).
    let renewed = rpm(&app, "envoy-a", key, 2).await;
    assert_eq!((renewed.share, renewed.others), (5, 3));
    let c = rpm(&app, "envoy-c", key, 1).await;
    assert_eq!((c.share, c.others), (1, 9));

    // Expired shares hold nothing.
    sqlx::query("UPDATE rate_shares SET expires_at = now() - interval '1 second' WHERE instance <> 'envoy-c'")
        .execute(&app.pool)
        .await
        .unwrap();
    let b = rpm(&app, "envoy-b", key, 1).await;
    assert_eq!((b.share, b.others), (5, 1));
}

#[tokio::test]
async fn concurrent_asks_never_hand_out_more_than_the_limit() {
    let app = spawn().await;
    let (_, key) = user_with_key(&app, json!({"rpm": 10}), json!({})).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let request = app
            .client
            .post(app.internal_url(hubgate_wire::SHARES_PATH))
            .bearer_auth(INTERNAL_TOKEN)
            .json(&json!({"instance": format!("envoy-{i}"), "key_id": key,
                          "asks": [{"entity": "user", "kind": "rpm", "need": 1}]}));
        tasks.spawn(async move {
            let answer: hubgate_wire::ShareResponse =
                request.send().await.unwrap().json().await.unwrap();
            answer.shares[0].share
        });
    }
    let total: u32 = tasks.join_all().await.into_iter().sum();
    assert_eq!(total, 10);
    let (held,): (i64,) = sqlx::query_as("SELECT sum(share) FROM rate_shares")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(held, 10);
}

#[tokio::test]
async fn session_shares_are_exact_and_a_key_inherits_its_users_limit() {
    let app = spawn().await;
    let (user, key) = user_with_key(&app, json!({"limit_concurrent_sessions": 2}), json!({})).await;
    let both = json!([
        {"entity": "key", "kind": "sessions", "need": 1},
        {"entity": "user", "kind": "sessions", "need": 1}
    ]);
    let a = ask(&app, "envoy-a", key, both.clone()).await;
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(
        (a[0].entity, a[0].entity_id, a[0].limit, a[0].share),
        (Entity::Key, key, 2, 1)
    );
    assert_eq!(
        (a[1].entity, a[1].entity_id, a[1].limit, a[1].share),
        (Entity::User, user, 2, 1)
    );
    let b = ask(
        &app,
        "envoy-b",
        key,
        json!([{"entity": "user", "kind": "sessions", "need": 2}]),
    )
    .await;
    assert_eq!((b[0].share, b[0].others), (0, 1), "only one slot left");
    let b = ask(
        &app,
        "envoy-b",
        key,
        json!([{"entity": "user", "kind": "sessions", "need": 1}]),
    )
    .await;
    assert_eq!((b[0].share, b[0].others), (1, 1));
    let c = ask(
        &app,
        "envoy-c",
        key,
        json!([{"entity": "user", "kind": "sessions", "need": 1}]),
    )
    .await;
    assert_eq!((c[0].share, c[0].others), (0, 2));

    // A key limit of its own wins over the user's.
    let (status, body) = app
        .patch(
            &format!("/api/v1/keys/{key}"),
            json!({"limit_concurrent_sessions": 5}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let k = ask(
        &app,
        "envoy-c",
        key,
        json!([{"entity": "key", "kind": "sessions", "need": 3}]),
    )
    .await;
    assert_eq!((k[0].limit, k[0].share, k[0].others), (5, 3, 1));
}

#[tokio::test]
async fn limits_that_are_not_set_get_no_share_and_bad_asks_are_refused() {
    let app = spawn().await;
    let (_, key) = user_with_key(&app, json!({}), json!({})).await;
    let none = ask(
        &app,
        "envoy-a",
        key,
        json!([{"entity": "user", "kind": "rpm", "need": 1}, {"entity": "key", "kind": "sessions", "need": 1}]),
    )
    .await;
    assert!(none.is_empty(), "{none:?}");
    let (status, _) = ask_raw(
        &app,
        json!({"instance": "a", "key_id": 999_999, "asks": []}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = ask_raw(&app, json!({"instance": "", "key_id": key, "asks": []})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&body, "validation_failed", Some("instance"));
    let (status, body) = ask_raw(
        &app,
        json!({"instance": "a", "key_id": key, "asks": [], "extra": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test]
async fn a_session_active_through_another_instance_passes_and_recorded_sessions_count() {
    let app = spawn().await;
    let (user, key) = user_with_key(&app, json!({"limit_concurrent_sessions": 2}), json!({})).await;
    // Two sessions recorded (ingested) for the key: one admitted by envoy-a
    // with a share, one admitted somewhere as already active (no share).
    let mut events = Vec::new();
    for (i, session) in ["s1", "s2"].iter().enumerate() {
        let mut e = event(&format!("e{i}"));
        (e.user_id, e.key_id, e.session_id) = (Some(user), Some(key), Some(session.to_string()));
        events.push(e);
    }
    ingest(&app, &events).await;
    let session_ask = |session: &str| json!([{"entity": "user", "kind": "sessions", "need": 1, "session": session}]);
    let a = ask(&app, "envoy-a", key, session_ask("s1")).await;
    assert_eq!(a[0].active_session.as_deref(), Some("s1"));
    assert_eq!(a[0].share, 0, "no share taken for an active session");
    // A new session: shares leave room (none held), but two sessions are
    // active by the records: refused.
    let b = ask(&app, "envoy-b", key, session_ask("s3")).await;
    assert_eq!((b[0].share, b[0].active_session.as_deref()), (0, None));
    assert!(b[0].retry_at_ms > b[0].usable_until_ms);
    // Once the records show one of them gone quiet, s3 gets its slot.
    sqlx::query(
        "UPDATE sessions SET last_seen_at = now() - interval '301 seconds' WHERE session_id = 's2'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let b = ask(&app, "envoy-b", key, session_ask("s3")).await;
    assert_eq!(b[0].share, 1);
}
