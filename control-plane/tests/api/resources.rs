use reqwest::StatusCode;
use serde_json::json;

use crate::common::{assert_error, spawn};

#[tokio::test]
async fn settings_get_and_patch() {
    let app = spawn().await;
    let (status, settings) = app.get("/api/v1/settings").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(settings["enable_client_version_check"], false);
    assert_eq!(settings["intercept_anthropic_warmup_requests"], false);
    assert_eq!(settings["timezone"], "UTC");
    assert_eq!(settings["unknown_path"], "not_found");
    assert_eq!(settings["ga_threshold"], 2);

    let (status, settings) = app
        .patch("/api/v1/settings", json!({ "timezone": "Asia/Shanghai", "unknown_path": "passthrough", "enable_client_version_check": true }))
        .await;
    assert_eq!(status, StatusCode::OK, "{settings}");
    assert_eq!(settings["timezone"], "Asia/Shanghai");
    assert_eq!(settings["ga_threshold"], 2);
    let (_, snap) = app.snapshot(None).await;
    assert_eq!(snap["settings"]["timezone"], "Asia/Shanghai");
    assert_eq!(snap["settings"]["unknown_path"], "passthrough");
    assert_eq!(snap["settings"]["enable_client_version_check"], true);
}

/// Failover's attempt count: 3 by default, shipped to the filter.
#[tokio::test]
async fn settings_max_provider_attempts() {
    let app = spawn().await;
    assert_eq!(app.get("/api/v1/settings").await.1["max_provider_attempts"], 3);
    assert_eq!(app.snapshot(None).await.1["settings"]["max_provider_attempts"], 3);
    let (status, settings) = app
        .patch("/api/v1/settings", json!({ "max_provider_attempts": 1 }))
        .await;
    assert_eq!(status, StatusCode::OK, "{settings}");
    assert_eq!(settings["max_provider_attempts"], 1);
    assert_eq!(app.snapshot(None).await.1["settings"]["max_provider_attempts"], 1);
}

#[tokio::test]
async fn settings_locale() {
    let app = spawn().await;
    // Default: English, in the API and in the filter's snapshot.
    let (status, settings) = app.get("/api/v1/settings").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(settings["locale"], "en");
    let (status, snap) = app.snapshot(None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(snap["settings"]["locale"], "en");
    let version = snap["version"].as_u64().unwrap();

    // Switching to Simplified Chinese is returned, stored, and moves the
    // snapshot version so filters holding the old one fetch the change.
    let (status, settings) = app
        .patch("/api/v1/settings", json!({ "locale": "zh-CN" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{settings}");
    assert_eq!(settings["locale"], "zh-CN");
    assert_eq!(settings["timezone"], "UTC", "other settings untouched");
    assert_eq!(app.get("/api/v1/settings").await.1["locale"], "zh-CN");
    let (status, snap) = app.snapshot(Some(version)).await;
    assert_eq!(status, StatusCode::OK, "a held old version is not current");
    let typed: hubgate_wire::PolicySnapshot = serde_json::from_value(snap.clone()).unwrap();
    assert_eq!(typed.settings.locale, "zh-CN");
    assert!(typed.version > version);

    // Anything else is a 422 naming `locale`; nothing is written and the
    // snapshot version stays put.
    let before = app.policy().await;
    for bad in [
        json!("zh"),
        json!("zh-cn"),
        json!("EN"),
        json!(""),
        json!("fr"),
        json!(null),
        json!(1),
    ] {
        let (status, body) = app
            .patch(
                "/api/v1/settings",
                json!({ "locale": bad, "timezone": "Asia/Shanghai" }),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_error(&body, "validation_failed", Some("locale"));
    }
    assert_eq!(
        app.policy().await,
        before,
        "a rejected write bumped the version"
    );
    let (_, settings) = app.get("/api/v1/settings").await;
    assert_eq!(settings["locale"], "zh-CN");
    assert_eq!(settings["timezone"], "UTC");
    let (status, _) = app.snapshot(Some(typed.version)).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);

    // Back to English.
    let (status, settings) = app
        .patch("/api/v1/settings", json!({ "locale": "en" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{settings}");
    assert_eq!(app.snapshot(None).await.1["settings"]["locale"], "en");

    // The database refuses an unknown locale too, whoever writes it.
    let raw = sqlx::query("UPDATE settings SET locale = 'fr'")
        .execute(&app.pool)
        .await;
    assert!(raw.is_err(), "CHECK constraint on settings.locale");
}

#[tokio::test]
async fn sensitive_words_crud() {
    let app = spawn().await;
    let (status, word) = app
        .post(
            "/api/v1/sensitive-words",
            json!({ "word": "secret project", "description": "d" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{word}");
    assert_eq!(word["match_type"], "contains");
    let id = word["id"].as_i64().unwrap();
    let (status, regex) = app
        .post(
            "/api/v1/sensitive-words",
            json!({ "word": "^api[_-]?key", "match_type": "regex" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = app
        .post(
            "/api/v1/sensitive-words",
            json!({ "word": "(bad", "match_type": "regex" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&body, "validation_failed", Some("word"));
    let (status, body) = app
        .post(
            "/api/v1/sensitive-words",
            json!({ "word": "x*", "match_type": "regex" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&body, "validation_failed", Some("word"));
    assert!(body.to_string().contains("matches empty text"), "{body}");
    let (status, _) = app
        .post(
            "/api/v1/sensitive-words",
            json!({ "word": "secret project" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    let (status, patched) = app
        .patch(
            &format!("/api/v1/sensitive-words/{id}"),
            json!({ "match_type": "exact" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(patched["match_type"], "exact");
    let (_, list) = app.get("/api/v1/sensitive-words").await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    let (_, snap) = app.snapshot(None).await;
    assert_eq!(snap["sensitive_words"].as_array().unwrap().len(), 2);
    assert_eq!(snap["sensitive_words"][1]["match_type"], "regex");

    let (status, _) = app
        .delete(&format!("/api/v1/sensitive-words/{}", regex["id"]))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app
        .get(&format!("/api/v1/sensitive-words/{}", regex["id"]))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn request_filters_crud() {
    let app = spawn().await;
    let (status, filter) = app
        .post(
            "/api/v1/request-filters",
            json!({ "name": "drop-beta", "scope": "header", "action": "remove", "target": "anthropic-beta", "priority": 5 }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{filter}");
    assert_eq!(filter["binding"], "global");
    let (status, replace) = app
        .post(
            "/api/v1/request-filters",
            json!({ "name": "rename", "scope": "body", "action": "text_replace", "match_type": "regex",
                    "target": "Acme\\s+Corp", "replacement": "the company", "priority": 1 }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{replace}");

    for (body, field) in [
        (
            json!({ "name": "x", "scope": "body", "action": "text_replace", "target": "a", "replacement": "b" }),
            "match_type",
        ),
        (
            json!({ "name": "x", "scope": "header", "action": "set", "target": "bad header", "replacement": "v" }),
            "target",
        ),
        (
            json!({ "name": "x", "scope": "header", "action": "set", "target": "x-a" }),
            "replacement",
        ),
        (
            json!({ "name": "x", "scope": "body", "action": "json_path", "target": "$.a", "replacement": 1, "binding": "providers" }),
            "provider_ids",
        ),
        (
            json!({ "name": "x", "scope": "cookie", "action": "remove", "target": "a" }),
            "scope",
        ),
    ] {
        let (status, answer) = app.post("/api/v1/request-filters", body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_error(&answer, "validation_failed", Some(field));
    }

    let (_, snap) = app.snapshot(None).await;
    let filters = snap["request_filters"].as_array().unwrap();
    assert_eq!(filters.len(), 2);
    assert_eq!(filters[0]["name"], "rename", "ordered by priority");
    assert_eq!(filters[0]["replacement"], "the company");

    let (status, patched) = app
        .patch(
            &format!("/api/v1/request-filters/{}", filter["id"]),
            json!({ "enabled": false }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    let (_, snap) = app.snapshot(None).await;
    assert_eq!(snap["request_filters"].as_array().unwrap().len(), 1);
    let (status, _) = app
        .delete(&format!("/api/v1/request-filters/{}", replace["id"]))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, list) = app.get("/api/v1/request-filters").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
}
