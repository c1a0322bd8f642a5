//! Quota leases (SPEC §4): what the control plane grants filter instances
//! never adds up to more than a limit, across instances, concurrent asks and
//! ingested spend; expired leases stop counting.

use std::time::Duration;

use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::common::{assert_error, event, ingest, spawn, spawn_with, TestApp, INTERNAL_TOKEN};

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

async fn ask(app: &TestApp, instance: &str, key: i64, need: &str) -> Vec<hubgate_wire::Grant> {
    let (status, body) = app
        .internal_post(
            hubgate_wire::LEASES_PATH,
            json!({"instance": instance, "key_id": key, "need_usd": need}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_value::<hubgate_wire::LeaseResponse>(body)
        .unwrap()
        .grants
}

fn find<'a>(grants: &'a [hubgate_wire::Grant], limit_type: &str) -> &'a hubgate_wire::Grant {
    grants
        .iter()
        .find(|g| g.limit_type == limit_type)
        .unwrap_or_else(|| panic!("no {limit_type} in {grants:?}"))
}

/// A user with a daily limit of 1 and a key with a lifetime limit of 2.
async fn limited(app: &TestApp) -> (i64, i64) {
    let user = app.create_user("alice").await["id"].as_i64().unwrap();
    let (status, body) = app
        .patch(
            &format!("/api/v1/users/{user}"),
            json!({"limit_daily_usd": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (key, _) = app
        .create_key(user, json!({"name": "k", "limit_total_usd": 2}))
        .await;
    (user, key["id"].as_i64().unwrap())
}

#[tokio::test]
async fn slices_shrink_as_the_budget_goes_and_never_exceed_the_limit() {
    let app = spawn().await;
    let (user, key) = limited(&app).await;
    let first = ask(&app, "envoy-a", key, "0.1").await;
    assert_eq!(first.len(), 2, "{first:?}");
    let total = find(&first, "usd_total");
    assert_eq!(
        (total.entity, total.entity_id),
        (hubgate_wire::Entity::Key, key)
    );
    assert_eq!((total.granted_usd, total.limit_usd), (d("0.5"), d("2")));
    assert_eq!(total.reset_at_ms, None);
    let daily = find(&first, "daily_quota");
    assert_eq!(
        (daily.entity, daily.entity_id),
        (hubgate_wire::Entity::User, user)
    );
    assert_eq!(daily.granted_usd, d("0.25"));
    assert!(daily.reset_at_ms.is_some() && daily.expires_at_ms <= daily.reset_at_ms.unwrap());

    // Another instance gets a quarter of what is left, not of the limit.
    let second = ask(&app, "envoy-b", key, "0.1").await;
    assert_eq!(find(&second, "usd_total").granted_usd, d("0.375"));
    assert_eq!(find(&second, "daily_quota").granted_usd, d("0.1875"));
    // The same instance asking again adds to its lease, under the same id.
    let again = ask(&app, "envoy-a", key, "0").await;
    assert_eq!(find(&again, "usd_total").lease_id, total.lease_id);

    let mut granted = Decimal::ZERO;
    for g in first.iter().chain(&second).chain(&again) {
        if g.limit_type == "daily_quota" {
            granted += g.granted_usd;
        }
    }
    for round in 0..40 {
        let grants = ask(
            &app,
            ["envoy-a", "envoy-b", "envoy-c"][round % 3],
            key,
            "0.01",
        )
        .await;
        granted += find(&grants, "daily_quota").granted_usd;
    }
    assert!(granted <= d("1"), "granted {granted} of a limit of 1");
    assert!(
        granted > d("0.99"),
        "the budget is handed out to the last crumbs: {granted}"
    );
    // Nothing left: no lease, and an answer to retry in a few seconds.
    let dry = ask(&app, "envoy-d", key, "0.01").await;
    let daily = find(&dry, "daily_quota");
    assert_eq!((daily.granted_usd, daily.lease_id), (Decimal::ZERO, 0));
    assert_eq!(find(&dry, "usd_total").granted_usd, Decimal::ZERO);
    assert_eq!(
        app.count("quota_leases WHERE instance = 'envoy-d'").await,
        0,
        "no lease holds nothing"
    );
}

#[tokio::test]
async fn ingested_spend_moves_from_the_lease_to_the_total() {
    let app = spawn().await;
    let (user, key) = limited(&app).await;
    let a = ask(&app, "envoy-a", key, "0.5").await;
    let lease = find(&a, "usd_total").lease_id;
    assert_eq!(find(&a, "usd_total").granted_usd, d("0.5"));
    // A request of 0.3 spent under instance a's leases.
    let mut e = event("spent");
    e.user_id = Some(user);
    e.key_id = Some(key);
    e.provider_id = Some(1);
    e.cost_usd = d("0.3");
    e.leases = vec![lease, find(&a, "daily_quota").lease_id];
    assert_eq!(ingest(&app, &[e.clone()]).await.accepted, 1);
    // Delivered twice: charged once.
    assert_eq!(ingest(&app, &[e]).await.duplicates, 1);
    let (spent,): (Decimal,) = sqlx::query_as("SELECT spent_usd FROM quota_leases WHERE id = $1")
        .bind(lease)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(spent, d("0.3"));
    // Left: 2 − 0.3 spent − 0.2 still held by a = 1.5.
    let b = ask(&app, "envoy-b", key, "0").await;
    let total = find(&b, "usd_total");
    assert_eq!((total.spent_usd, total.granted_usd), (d("0.3"), d("0.375")));
}

#[tokio::test]
async fn expired_leases_stop_holding_budget() {
    let app = spawn_with(|c| c.lease_ttl = Duration::from_millis(1500)).await;
    let (_, key) = limited(&app).await;
    let a = ask(&app, "envoy-a", key, "1").await;
    assert_eq!(
        find(&a, "daily_quota").granted_usd,
        d("1"),
        "the whole day at once"
    );
    let b = ask(&app, "envoy-b", key, "0.1").await;
    assert_eq!(find(&b, "daily_quota").granted_usd, Decimal::ZERO);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    // a's lease lapsed unused: its budget is free again, under a new lease.
    let b = ask(&app, "envoy-b", key, "0.1").await;
    assert_eq!(find(&b, "daily_quota").granted_usd, d("0.25"));
    let a2 = ask(&app, "envoy-a", key, "0").await;
    assert_ne!(
        find(&a2, "daily_quota").lease_id,
        find(&a, "daily_quota").lease_id
    );
}

#[tokio::test]
async fn concurrent_asks_never_hand_out_the_same_budget_twice() {
    let app = spawn().await;
    let (_, key) = limited(&app).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..24 {
        let request = app
            .client
            .post(app.internal_url(hubgate_wire::LEASES_PATH))
            .bearer_auth(INTERNAL_TOKEN)
            .json(
                &json!({"instance": format!("envoy-{}", i % 6), "key_id": key, "need_usd": "0.05"}),
            );
        tasks.spawn(async move {
            let answer: hubgate_wire::LeaseResponse =
                request.send().await.unwrap().json().await.unwrap();
            answer.grants
        });
    }
    let answers = tasks.join_all().await;
    let granted: Decimal = answers
        .iter()
        .map(|g| find(g, "daily_quota").granted_usd)
        .sum();
    assert!(granted <= d("1"), "granted {granted} of 1");
    let (held,): (Decimal,) = sqlx::query_as(
        "SELECT sum(granted_usd) FROM quota_leases WHERE limit_type = 'daily_quota'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(held, granted);
}

#[tokio::test]
async fn bad_lease_requests_are_refused() {
    let app = spawn().await;
    let (_, key) = limited(&app).await;
    let (status, body) = app
        .internal_post(
            hubgate_wire::LEASES_PATH,
            json!({"instance": "", "key_id": key, "need_usd": "0"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_error(&body, "validation_failed", Some("instance"));
    let (status, body): (StatusCode, Value) = app
        .internal_post(
            hubgate_wire::LEASES_PATH,
            json!({"instance": "a", "key_id": key + 100, "need_usd": "0"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // A key without any cost limit gets no grants.
    let user = app.create_user("bob").await["id"].as_i64().unwrap();
    let (free, _) = app.create_key(user, json!({"name": "free"})).await;
    assert!(ask(&app, "a", free["id"].as_i64().unwrap(), "1")
        .await
        .is_empty());
}
