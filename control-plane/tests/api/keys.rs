use reqwest::StatusCode;
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
