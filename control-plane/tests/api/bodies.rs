//! Request bodies must be declared as JSON and may not repeat a key.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{assert_error, spawn, TestApp, ADMIN_TOKEN, INTERNAL_TOKEN};

/// Sends `body` as is, with `content_type` unless `None`.
async fn raw(
    app: &TestApp,
    method: Method,
    url: &str,
    token: &str,
    content_type: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let mut req = app
        .client
        .request(method, url)
        .bearer_auth(token)
        .body(body.to_string());
    if let Some(content_type) = content_type {
        req = req.header("content-type", content_type);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn repeated_keys_are_422_and_write_nothing() {
    let app = spawn().await;
    let user = app.create_user("kept").await;
    let provider = app.create_provider("p", "provider-credential-1234").await;
    let json = Some("application/json");
    let cases = [
        (
            Method::POST,
            "/api/v1/users".to_string(),
            r#"{"name":"a","name":"b"}"#,
            "name",
        ),
        (
            Method::POST,
            "/api/v1/users".to_string(),
            r#"{"name":"a","role":"user","enabled":true,"role":"admin"}"#,
            "role",
        ),
        (
            Method::PATCH,
            format!("/api/v1/users/{}", user["id"]),
            r#"{"name":"x","name":"kept"}"#,
            "name",
        ),
        (
            Method::PATCH,
            format!("/api/v1/providers/{}", provider["id"]),
            r#"{"model_redirects":[{"match_type":"exact","pattern":"a","target":"b"},
               {"match_type":"exact","pattern":"c","target":"d","target":"e"}]}"#,
            "model_redirects[1].target",
        ),
        (
            Method::POST,
            "/api/v1/request-filters".to_string(),
            r#"{"name":"f","scope":"body","action":"json_path","target":"$.m",
               "replacement":{"a":{"b":1,"b":2}}}"#,
            "replacement.a.b",
        ),
        (
            Method::PATCH,
            "/api/v1/settings".to_string(),
            r#"{"timezone":"UTC","timezone":"Asia/Tokyo"}"#,
            "timezone",
        ),
    ];
    let before = (
        app.policy().await,
        app.get("/api/v1/users").await.1,
        app.get("/api/v1/settings").await.1,
    );
    for (method, path, body, field) in cases {
        let (status, answer) = raw(
            &app,
            method.clone(),
            &app.url(&path),
            ADMIN_TOKEN,
            json,
            body,
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{method} {path} {body}: {answer}"
        );
        assert_error(&answer, "validation_failed", Some(field));
    }
    let after = (
        app.policy().await,
        app.get("/api/v1/users").await.1,
        app.get("/api/v1/settings").await.1,
    );
    assert_eq!(after, before, "a refused write changed something");

    // The same key in different objects is fine.
    let body = r#"{"name":"f","scope":"body","action":"json_path","target":"$.m","replacement":{"name":{"name":1}}}"#;
    let (status, answer) = raw(
        &app,
        Method::POST,
        &app.url("/api/v1/request-filters"),
        ADMIN_TOKEN,
        json,
        body,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");

    // The internal API is just as strict.
    let body = r#"{"key_hash":"aa","key_hash":"bb"}"#;
    let url = app.internal_url(hubgate_wire::KEY_RESOLVE_PATH);
    let (status, answer) = raw(&app, Method::POST, &url, INTERNAL_TOKEN, json, body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_error(&answer, "validation_failed", Some("key_hash"));
}

#[tokio::test]
async fn bodies_not_declared_as_json_are_415() {
    let app = spawn().await;
    let users = app.url("/api/v1/users");
    let body = r#"{"name":"typed"}"#;
    for content_type in [
        Some("text/plain"),
        None,
        Some("application/x-www-form-urlencoded"),
        Some("text/json"),
        Some("application/jsonp"),
    ] {
        let (status, answer) =
            raw(&app, Method::POST, &users, ADMIN_TOKEN, content_type, body).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}: {answer}"
        );
        assert_error(&answer, "unsupported_media_type", None);
    }
    let settings = app.url("/api/v1/settings");
    let (status, answer) = raw(
        &app,
        Method::PATCH,
        &settings,
        ADMIN_TOKEN,
        Some("text/plain"),
        r#"{"timezone":"Asia/Tokyo"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{answer}");
    assert_eq!(app.count("users").await, 0);
    assert_eq!(app.get("/api/v1/settings").await.1["timezone"], "UTC");

    let events = app.internal_url(hubgate_wire::EVENTS_PATH);
    let (status, _) = raw(
        &app,
        Method::POST,
        &events,
        INTERNAL_TOKEN,
        Some("text/plain"),
        r#"{"events":[]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // JSON media types, with parameters, are accepted.
    for (name, content_type) in [
        ("a", "application/json; charset=utf-8"),
        ("b", "Application/JSON"),
        ("c", "application/vnd.hubgate+json"),
    ] {
        let body = json!({ "name": name }).to_string();
        let (status, answer) = raw(
            &app,
            Method::POST,
            &users,
            ADMIN_TOKEN,
            Some(content_type),
            &body,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{content_type}: {answer}");
    }
    let (status, answer) = raw(
        &app,
        Method::PATCH,
        &settings,
        ADMIN_TOKEN,
        Some("application/merge-patch+json"),
        r#"{"timezone":"Asia/Tokyo"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["timezone"], "Asia/Tokyo");

    // Requests without a body need no content type.
    let (status, list) = app.get("/api/v1/users").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .delete(&format!("/api/v1/users/{}", list[0]["id"]))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}
