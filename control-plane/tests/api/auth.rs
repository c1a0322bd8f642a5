use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{
    assert_error, client_from, send_with, spawn, spawn_with, ADMIN_TOKEN, INTERNAL_TOKEN,
};

#[tokio::test]
async fn admin_api_needs_an_admin_credential() {
    let app = spawn().await;
    let admin_user = app
        .post("/api/v1/users", json!({ "name": "root", "role": "admin" }))
        .await
        .1;
    let (_, admin_key) = app
        .create_key(admin_user["id"].as_i64().unwrap(), json!({ "name": "a" }))
        .await;
    let plain_user = app.create_user("plain").await;
    let (plain_meta, plain_key) = app
        .create_key(plain_user["id"].as_i64().unwrap(), json!({ "name": "p" }))
        .await;

    // No or bad credentials → 401 in the standard error shape.
    for token in [None, Some("wrong-token"), Some(INTERNAL_TOKEN)] {
        let (status, body) = app.send(Method::GET, "/api/v1/users", token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_error(&body, "unauthorized", None);
    }
    let resp = app
        .client
        .get(app.url("/api/v1/users"))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // Admin token and an admin user's key work; a plain user's key is 403.
    let (status, _) = app
        .send(Method::GET, "/api/v1/users", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let resp = app
        .client
        .get(app.url("/api/v1/users"))
        .header("authorization", format!("bearer {ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "scheme is case-insensitive");
    let (status, _) = app
        .send(Method::GET, "/api/v1/users", Some(&admin_key), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .send(
            Method::POST,
            "/api/v1/users",
            Some(&admin_key),
            Some(&json!({ "name": "by-key" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = app
        .send(Method::GET, "/api/v1/users", Some(&plain_key), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&body, "forbidden", None);
    let (status, _) = app
        .send(
            Method::PATCH,
            &format!("/api/v1/keys/{}", plain_meta["id"]),
            Some(&plain_key),
            Some(&json!({ "limit_daily_usd": 1000 })),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a user cannot change their own limits"
    );

    // A disabled admin user's key no longer works.
    app.patch(
        &format!("/api/v1/users/{}", admin_user["id"]),
        json!({ "enabled": false }),
    )
    .await;
    let (status, _) = app
        .send(Method::GET, "/api/v1/users", Some(&admin_key), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Public endpoints need nothing.
    for path in ["/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"] {
        let (status, _) = app.send(Method::GET, path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn internal_api_needs_the_internal_token() {
    let app = spawn().await;
    let resolve = json!({ "key_hash": hubgate_wire::hash_key("sk-nothing") });
    let events = json!({ "events": [] });
    for token in [None, Some(ADMIN_TOKEN), Some("nope")] {
        let (status, body) = app
            .send_internal(Method::GET, hubgate_wire::SNAPSHOT_PATH, token, None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_error(&body, "unauthorized", None);
        let (status, _) = app
            .send_internal(
                Method::POST,
                hubgate_wire::KEY_RESOLVE_PATH,
                token,
                Some(&resolve),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = app
            .send_internal(
                Method::POST,
                hubgate_wire::EVENTS_PATH,
                token,
                Some(&events),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = app
        .send_internal(
            Method::GET,
            hubgate_wire::SNAPSHOT_PATH,
            Some(INTERNAL_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .send_internal(
            Method::POST,
            hubgate_wire::KEY_RESOLVE_PATH,
            Some(INTERNAL_TOKEN),
            Some(&resolve),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn each_listener_serves_only_its_own_api() {
    let app = spawn().await;
    let resolve = json!({ "key_hash": hubgate_wire::hash_key("sk-nothing") });
    // The admin listener does not know the internal API, right token or not.
    for (method, path, body) in [
        (Method::GET, hubgate_wire::SNAPSHOT_PATH, None),
        (Method::POST, hubgate_wire::KEY_RESOLVE_PATH, Some(&resolve)),
        (
            Method::POST,
            hubgate_wire::EVENTS_PATH,
            Some(&json!({ "events": [] })),
        ),
    ] {
        let (status, answer) = app
            .send(method.clone(), path, Some(INTERNAL_TOKEN), body)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
        assert_error(&answer, "not_found", None);
    }
    // The internal listener does not serve the admin API or the public
    // routes, only /healthz.
    for path in [
        "/api/v1/users",
        "/metrics",
        "/readyz",
        "/api/v1/openapi.json",
    ] {
        let (status, answer) = app
            .send_internal(Method::GET, path, Some(ADMIN_TOKEN), None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {answer}");
    }
    let (status, answer) = app.send_internal(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, json!("ok\n"));
    let (status, _) = app.send(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn internal_listener_refuses_peers_outside_the_allow_list() {
    let app = spawn_with(|config| {
        config.internal_allow = vec!["127.0.0.2/32".parse().unwrap()];
    })
    .await;
    // From 127.0.0.1: 403 before the token is looked at, on every path.
    for (token, path) in [
        (Some(INTERNAL_TOKEN), hubgate_wire::SNAPSHOT_PATH),
        (None, hubgate_wire::SNAPSHOT_PATH),
        (Some(INTERNAL_TOKEN), "/healthz"),
        (Some(INTERNAL_TOKEN), "/no/such/path"),
    ] {
        let (status, body) = app.send_internal(Method::GET, path, token, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path} {token:?}");
        assert_error(&body, "forbidden_source", None);
    }
    let (status, _) = app
        .send_internal(
            Method::POST,
            hubgate_wire::EVENTS_PATH,
            Some(INTERNAL_TOKEN),
            Some(&json!({ "events": [crate::common::event("e-1")] })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(app.count("message_request").await, 0, "nothing ingested");

    // From 127.0.0.2, the allowed address, the same calls work.
    let allowed = client_from(Some("127.0.0.2".parse().unwrap()));
    let url = app.internal_url(hubgate_wire::SNAPSHOT_PATH);
    let (status, _) = send_with(&allowed, Method::GET, &url, Some(INTERNAL_TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send_with(&allowed, Method::GET, &url, Some("nope"), None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the token is still needed"
    );

    // The admin listener is not restricted by the internal allow-list.
    let (status, _) = app.get("/api/v1/users").await;
    assert_eq!(status, StatusCode::OK);
    let (_, metrics) = app.send(Method::GET, "/metrics", None, None).await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("hubgate_cp_internal_forbidden_source_total 5"),
        "{metrics}"
    );
}
