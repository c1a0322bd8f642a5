use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::spawn;

#[tokio::test]
async fn raw_key_is_returned_once_and_stored_hashed() {
    let app = spawn().await;
    let user = app.create_user("carol").await;
    let uid = user["id"].as_i64().unwrap();
    let (created, raw) = app
        .create_key(uid, json!({ "name": "laptop", "limit_5h_usd": "2.5", "expires_at": "2999-01-01T00:00:00Z" }))
        .await;

    assert!(raw.starts_with("sk-"), "{raw}");
    assert_eq!(raw.len(), 3 + 48);
    assert!(raw[3..].chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(created["key_masked"], hubgate_wire::mask_key(&raw));
    assert_eq!(created["user_id"], uid);
    assert_eq!(created["name"], "laptop");
    assert_eq!(created["enabled"], true);
    assert_eq!(created["limit_5h_usd"], "2.5");
    let id = created["id"].as_i64().unwrap();

    // Never again: not in the list, not in GET, not after PATCH.
    let (status, list) = app.get(&format!("/api/v1/users/{uid}/keys")).await;
    assert_eq!(status, StatusCode::OK);
    let items = list.as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert!(items[0].get("key").is_none());
    assert_eq!(items[0]["key_masked"], hubgate_wire::mask_key(&raw));
    let (_, one) = app.get(&format!("/api/v1/keys/{id}")).await;
    let (_, patched) = app
        .patch(&format!("/api/v1/keys/{id}"), json!({ "name": "desk" }))
        .await;
    for body in [&list, &one, &patched] {
        let text = body.to_string();
        assert!(!text.contains(&raw), "raw key leaked: {text}");
        assert!(
            !text.contains(&hubgate_wire::hash_key(&raw)),
            "hash leaked: {text}"
        );
    }
    assert_eq!(patched["name"], "desk");

    // Only the hash is stored.
    let (hash, masked): (String, String) =
        sqlx::query_as("SELECT key_hash, key_masked FROM keys WHERE id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(hash, hubgate_wire::hash_key(&raw));
    assert_eq!(masked, hubgate_wire::mask_key(&raw));
    let (hits,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM keys WHERE name = $1 OR key_hash = $1 OR key_masked = $1 OR provider_group = $1",
    )
    .bind(&raw)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(hits, 0);

    // Two keys never share a value.
    let (_, raw2) = app.create_key(uid, json!({ "name": "second" })).await;
    assert_ne!(raw, raw2);
}

#[tokio::test]
async fn disable_expire_and_delete_keys() {
    let app = spawn().await;
    let user = app.create_user("dave").await;
    let uid = user["id"].as_i64().unwrap();
    let (created, _) = app.create_key(uid, json!({ "name": "k1" })).await;
    let id = created["id"].as_i64().unwrap();

    let (_, epoch0) = app.policy().await;
    let (status, key) = app
        .patch(&format!("/api/v1/keys/{id}"), json!({ "enabled": false }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(key["enabled"], false);
    let (_, epoch1) = app.policy().await;
    assert_eq!(epoch1, epoch0 + 1, "disabling a key bumps the key epoch");

    let (status, key) = app
        .patch(
            &format!("/api/v1/keys/{id}"),
            json!({ "expires_at": "2030-05-06T07:08:09Z", "enabled": true }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(key["expires_at"], "2030-05-06T07:08:09Z");

    let (status, _) = app.delete(&format!("/api/v1/keys/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.get(&format!("/api/v1/keys/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = app.get(&format!("/api/v1/users/{uid}/keys")).await;
    assert!(list.as_array().unwrap().is_empty());
    let (_, epoch2) = app.policy().await;
    assert!(epoch2 > epoch1);

    // Deleting a user removes their keys too.
    let (created, _) = app.create_key(uid, json!({ "name": "k2" })).await;
    app.delete(&format!("/api/v1/users/{uid}")).await;
    let (status, _) = app.get(&format!("/api/v1/keys/{}", created["id"])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn users_list_and_rotate_their_own_keys() {
    let app = spawn().await;
    let alice = app.create_user("alice").await["id"].as_i64().unwrap();
    let bob = app.create_user("bob").await["id"].as_i64().unwrap();
    let (web, web_raw) = app
        .create_key(alice, json!({"name": "web", "can_login_web_ui": true}))
        .await;
    let (cli, cli_raw) = app.create_key(alice, json!({"name": "cli"})).await;
    let (bobs, _) = app.create_key(bob, json!({"name": "b"})).await;
    let as_alice = |method: Method, path: String| {
        let (app, raw) = (&app, web_raw.clone());
        async move { app.send(method, &path, Some(&raw), None).await }
    };

    let (status, listed) = as_alice(Method::GET, format!("/api/v1/users/{alice}/keys")).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(
        listed.to_string().find(&cli_raw).is_none(),
        "raw keys are never listed"
    );
    let (status, body) = as_alice(Method::GET, format!("/api/v1/users/{bob}/keys")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // Rotating: a new secret for the same key; the old one stops working.
    let (_, epoch_before) = app.policy().await;
    let (status, rotated) =
        as_alice(Method::POST, format!("/api/v1/keys/{}/rotate", cli["id"])).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_raw = rotated["key"].as_str().unwrap();
    assert_ne!(new_raw, cli_raw);
    assert_eq!(rotated["id"], cli["id"]);
    assert_eq!(rotated["name"], "cli");
    assert_ne!(rotated["key_masked"], cli["key_masked"]);
    let (_, epoch_after) = app.policy().await;
    assert!(
        epoch_after > epoch_before,
        "the filter must drop the old key"
    );
    let resolve = |raw: &str| json!({"key_hash": hubgate_wire::hash_key(raw)});
    let (_, gone) = app
        .internal_post(hubgate_wire::KEY_RESOLVE_PATH, resolve(&cli_raw))
        .await;
    assert!(gone["key"].is_null(), "{gone}");
    let (_, found) = app
        .internal_post(hubgate_wire::KEY_RESOLVE_PATH, resolve(new_raw))
        .await;
    assert_eq!(found["key"]["id"], cli["id"], "{found}");

    // The web key rotates itself: its old secret no longer signs in.
    let (status, rotated) =
        as_alice(Method::POST, format!("/api/v1/keys/{}/rotate", web["id"])).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let (status, _) = as_alice(Method::GET, format!("/api/v1/users/{alice}/keys")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let fresh = rotated["key"].as_str().unwrap();
    let (status, _) = app
        .send(
            Method::GET,
            &format!("/api/v1/users/{alice}/keys"),
            Some(fresh),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Another user's key: refused; a key without web UI access: refused;
    // admins rotate any key; an unknown key is a 404.
    let (status, _) = app
        .send(
            Method::POST,
            &format!("/api/v1/keys/{}/rotate", bobs["id"]),
            Some(fresh),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .send(
            Method::POST,
            &format!("/api/v1/keys/{}/rotate", cli["id"]),
            Some(new_raw),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .post(&format!("/api/v1/keys/{}/rotate", bobs["id"]), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.post("/api/v1/keys/999999/rotate", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A user signed in with their web-UI key changes nothing an admin owns,
/// not even on their own user or keys (SPEC §7), through the raw API.
#[tokio::test]
async fn users_cannot_write_admin_fields_on_themselves() {
    let app = spawn().await;
    let alice = app.create_user("alice").await["id"].as_i64().unwrap();
    let (web, raw) = app
        .create_key(alice, json!({"name": "web", "can_login_web_ui": true}))
        .await;
    let writes = [
        (
            Method::PATCH,
            format!("/api/v1/users/{alice}"),
            json!({"rpm": 100000}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/users/{alice}"),
            json!({"allowed_models": []}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/keys/{}", web["id"]),
            json!({"limit_total_usd": 1000}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/keys/{}", web["id"]),
            json!({"expires_at": null}),
        ),
        (
            Method::POST,
            format!("/api/v1/users/{alice}/keys"),
            json!({"name": "more"}),
        ),
        (
            Method::DELETE,
            format!("/api/v1/keys/{}", web["id"]),
            json!({}),
        ),
        (
            Method::POST,
            format!("/api/v1/usage/users/{alice}/reset"),
            json!({}),
        ),
        (
            Method::PATCH,
            "/api/v1/settings".to_string(),
            json!({"audit_retention_days": 1}),
        ),
    ];
    for (method, path, body) in writes {
        let (status, answer) = app
            .send(method.clone(), &path, Some(&raw), Some(&body))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
    }
    let (_, user) = app.get(&format!("/api/v1/users/{alice}")).await;
    assert!(user["rpm"].is_null(), "{user}");
    let (_, key) = app.get(&format!("/api/v1/keys/{}", web["id"])).await;
    assert!(key["limit_total_usd"].is_null(), "{key}");
}
