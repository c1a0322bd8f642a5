use reqwest::StatusCode;
use serde_json::json;

use crate::common::spawn;

const SECRET: &str = "sk-ant-provider-secret-credential-XYZW";

#[tokio::test]
async fn provider_crud_never_returns_the_credential() {
    let app = spawn().await;
    let (status, created) = app
        .post(
            "/api/v1/providers",
            json!({
                "name": "anthropic",
                "type": "claude",
                "base_url": "https://api.anthropic.com",
                "api_key": SECRET,
                "weight": 3,
                "priority": 1,
                "cost_multiplier": 1.5,
                "group_tags": ["default"],
                "allowed_models": ["claude-sonnet-4-5"],
                "model_redirects": [{ "match_type": "prefix", "pattern": "claude-3", "target": "claude-sonnet-4-5" }],
                "limit_daily_usd": "50",
                "first_byte_timeout_ms": 30000
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["type"], "claude");
    assert_eq!(created["weight"], 3);
    assert_eq!(created["cost_multiplier"], "1.5");
    assert_eq!(created["api_key_masked"], hubgate_wire::mask_key(SECRET));
    assert_eq!(created["circuit_failure_threshold"], 5);
    assert_eq!(created["model_redirects"][0]["target"], "claude-sonnet-4-5");
    assert!(created.get("api_key").is_none());
    assert!(created.get("credential").is_none());

    let (_, list) = app.get("/api/v1/providers").await;
    let (_, one) = app.get(&format!("/api/v1/providers/{id}")).await;
    let (status, patched) = app
        .patch(
            &format!("/api/v1/providers/{id}"),
            json!({ "priority": 0, "weight": 2 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["weight"], 2);
    for body in [&created, &list, &one, &patched] {
        assert!(
            !body.to_string().contains(SECRET),
            "credential leaked: {body}"
        );
    }
    assert_eq!(list.as_array().unwrap().len(), 1);

    // PATCH without api_key keeps the credential; with one rotates it.
    let (credential,): (String,) = sqlx::query_as("SELECT credential FROM providers WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(credential, SECRET);
    let rotated = "sk-ant-rotated-credential-0000ABCD";
    let (status, patched) = app
        .patch(
            &format!("/api/v1/providers/{id}"),
            json!({ "api_key": rotated }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(patched["api_key_masked"], hubgate_wire::mask_key(rotated));
    assert!(!patched.to_string().contains(rotated));

    // The filter gets the credential over the internal API.
    let (_, snap) = app.snapshot(None).await;
    assert_eq!(snap["providers"][0]["credential"], rotated);
    assert_eq!(
        snap["providers"][0]["model_redirects"][0]["match_type"],
        "prefix"
    );
    assert_eq!(snap["providers"][0]["timeouts"]["first_byte_ms"], 30000);

    // Disabled providers leave the snapshot; deleted ones leave the API.
    app.patch(
        &format!("/api/v1/providers/{id}"),
        json!({ "enabled": false }),
    )
    .await;
    let (_, snap) = app.snapshot(None).await;
    assert!(snap["providers"].as_array().unwrap().is_empty());
    let (status, _) = app.delete(&format!("/api/v1/providers/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.get(&format!("/api/v1/providers/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The name is free again; duplicates of live ones conflict.
    app.create_provider("anthropic", SECRET).await;
    let (status, _) = app
        .post("/api/v1/providers", json!({ "name": "anthropic", "type": "gemini", "base_url": "https://x.example", "api_key": "k-123456789012" }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}
