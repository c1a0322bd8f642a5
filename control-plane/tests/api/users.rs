use reqwest::StatusCode;
use serde_json::json;

use crate::common::{assert_error, spawn};

#[tokio::test]
async fn user_crud() {
    let app = spawn().await;
    let (status, user) = app
        .post(
            "/api/v1/users",
            json!({
                "name": "alice",
                "allowed_models": ["claude-sonnet-4-5"],
                "allowed_clients": ["claude-cli"],
                "rpm": 60,
                "limit_daily_usd": 12.5,
                "limit_weekly_usd": "100",
                "daily_reset_time": "08:30",
                "expires_at": "2999-01-01T00:00:00+02:00"
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let id = user["id"].as_i64().unwrap();
    assert_eq!(user["name"], "alice");
    assert_eq!(user["role"], "user");
    assert_eq!(user["enabled"], true);
    assert_eq!(user["limit_daily_usd"], "12.5");
    assert_eq!(user["limit_weekly_usd"], "100");
    assert_eq!(user["limit_total_usd"], serde_json::Value::Null);
    assert_eq!(user["daily_reset_mode"], "fixed");
    assert_eq!(user["expires_at"], "2998-12-31T22:00:00Z");

    let (status, fetched) = app.get(&format!("/api/v1/users/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, user);

    let (status, list) = app.get("/api/v1/users").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);

    // PATCH changes only the given fields; null clears a nullable one.
    let (status, patched) = app
        .patch(
            &format!("/api/v1/users/{id}"),
            json!({ "enabled": false, "expires_at": null, "rpm": 10 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["enabled"], false);
    assert_eq!(patched["expires_at"], serde_json::Value::Null);
    assert_eq!(patched["rpm"], 10);
    assert_eq!(patched["limit_daily_usd"], "12.5");
    assert_eq!(patched["allowed_models"], json!(["claude-sonnet-4-5"]));

    // Duplicate name → 409.
    let (status, body) = app.post("/api/v1/users", json!({ "name": "alice" })).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "conflict", Some("name"));

    // Soft delete: gone from the API, row kept, name free again.
    let (status, _) = app.delete(&format!("/api/v1/users/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app.get(&format!("/api/v1/users/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found", None);
    let (status, _) = app.delete(&format!("/api/v1/users/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(app.count("users WHERE deleted_at IS NOT NULL").await, 1);
    let (_, list) = app.get("/api/v1/users").await;
    assert!(list.as_array().unwrap().is_empty());
    app.create_user("alice").await;
}

#[tokio::test]
async fn unknown_ids_are_404() {
    let app = spawn().await;
    for path in [
        "/api/v1/users/999",
        "/api/v1/users/abc",
        "/api/v1/keys/999",
        "/api/v1/providers/7",
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_error(&body, "not_found", None);
    }
    let (status, _) = app
        .patch("/api/v1/users/999", json!({ "enabled": false }))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .post("/api/v1/users/999/keys", json!({ "name": "k" }))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get("/api/v1/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_admin_write_bumps_the_version_and_user_writes_the_key_epoch() {
    let app = spawn().await;
    let (v0, e0) = app.policy().await;
    let user = app.create_user("bob").await;
    let (v1, e1) = app.policy().await;
    assert_eq!((v1, e1), (v0 + 1, e0 + 1));
    app.patch(
        &format!("/api/v1/users/{}", user["id"]),
        json!({ "rpm": 5 }),
    )
    .await;
    let (v2, e2) = app.policy().await;
    assert_eq!((v2, e2), (v1 + 1, e1 + 1));
    app.patch(
        "/api/v1/settings",
        json!({ "intercept_anthropic_warmup_requests": true }),
    )
    .await;
    let (v3, e3) = app.policy().await;
    assert_eq!(
        (v3, e3),
        (v2 + 1, e2),
        "settings do not touch the key epoch"
    );
}

#[tokio::test]
async fn moving_expiry_into_the_future_re_enables_what_the_sweep_disabled() {
    // The sweep is driven by hand here; the background one would race it.
    let app = crate::common::spawn_with(|c| c.background_jobs = false).await;
    let past = (chrono::Utc::now() - chrono::TimeDelta::hours(1)).to_rfc3339();
    let future = "2999-01-01T00:00:00Z";
    let create =
        |name: &str, enabled: bool| json!({ "name": name, "enabled": enabled, "expires_at": past });
    let mut ids = std::collections::HashMap::new();
    for (name, enabled) in [
        ("swept", true),
        ("admin-off", false),
        ("swept-then-admin", true),
        ("swept-still-past", true),
    ] {
        let (status, user) = app.post("/api/v1/users", create(name, enabled)).await;
        assert_eq!(status, StatusCode::CREATED, "{user}");
        ids.insert(name, user["id"].as_i64().unwrap());
    }
    let owner = ids["admin-off"];
    let (key, _) = app
        .create_key(owner, json!({ "name": "k", "expires_at": past }))
        .await;
    let key_path = format!("/api/v1/keys/{}", key["id"]);

    let disabled = hubgate_control_plane::background::disable_expired(&app.pool)
        .await
        .unwrap();
    assert_eq!(disabled, 4, "three users and the key");

    let patch = async |name: &str, body: serde_json::Value| {
        let (status, user) = app
            .patch(&format!("/api/v1/users/{}", ids[name]), body)
            .await;
        assert_eq!(status, StatusCode::OK, "{user}");
        user["enabled"].as_bool().unwrap()
    };
    // Disabled by the sweep: a new expiry in the future enables again.
    assert!(patch("swept", json!({ "expires_at": future })).await);
    let (_, epoch_before) = app.policy().await;
    let (status, key) = app.patch(&key_path, json!({ "expires_at": null })).await;
    assert_eq!(status, StatusCode::OK, "{key}");
    assert_eq!(
        key["enabled"], true,
        "a cleared expiry enables the key again"
    );
    assert!(app.policy().await.1 > epoch_before);
    // Disabled by an admin: stays disabled.
    assert!(!patch("admin-off", json!({ "expires_at": future })).await);
    // The admin decides in the same PATCH, and that decision stands later.
    assert!(
        !patch(
            "swept-then-admin",
            json!({ "expires_at": future, "enabled": false })
        )
        .await
    );
    assert!(!patch("swept-then-admin", json!({ "expires_at": null })).await);
    // Still expired: stays disabled until the expiry moves ahead.
    assert!(!patch("swept-still-past", json!({ "rpm": 5 })).await);
    assert!(!patch("swept-still-past", json!({ "expires_at": past })).await);
    assert!(patch("swept-still-past", json!({ "expires_at": future })).await);

    // The sweep finds nothing more to do.
    assert_eq!(
        hubgate_control_plane::background::disable_expired(&app.pool)
            .await
            .unwrap(),
        0
    );
}
