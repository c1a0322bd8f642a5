use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{assert_error, spawn, TestApp, ADMIN_TOKEN};

/// Everything an admin write could have touched.
async fn state(app: &TestApp) -> Value {
    let (version, epoch) = app.policy().await;
    let (_, users) = app.get("/api/v1/users").await;
    let (_, providers) = app.get("/api/v1/providers").await;
    let (_, prices) = app.get("/api/v1/model-prices").await;
    let (_, settings) = app.get("/api/v1/settings").await;
    let keys = app.count("keys").await;
    let words = app.count("sensitive_words").await;
    let filters = app.count("request_filters").await;
    json!({ "version": version, "epoch": epoch, "users": users, "providers": providers,
            "prices": prices, "settings": settings, "keys": keys, "words": words, "filters": filters })
}

fn many(n: usize, item: &str) -> Vec<String> {
    (0..n).map(|i| format!("{item}{i}")).collect()
}

/// A write the API must refuse with a 422 naming the field: method, path, body, field.
type Case = (Method, String, Value, &'static str);

fn post(path: &str, body: Value, field: &'static str) -> Case {
    (Method::POST, path.to_string(), body, field)
}

fn patch(path: &str, body: Value, field: &'static str) -> Case {
    (Method::PATCH, path.to_string(), body, field)
}

#[tokio::test]
async fn invalid_input_is_422_naming_the_field_and_writes_nothing() {
    let app = spawn().await;
    let user = app.create_user("valid").await;
    let uid = user["id"].as_i64().unwrap();
    let (key, _) = app.create_key(uid, json!({ "name": "k" })).await;
    let kid = key["id"].as_i64().unwrap();
    let provider = app.create_provider("p1", "provider-credential-1234").await;
    let pid = provider["id"].as_i64().unwrap();
    let users = "/api/v1/users";
    let user_path = &format!("/api/v1/users/{uid}");
    let keys = &format!("/api/v1/users/{uid}/keys");
    let key_path = &format!("/api/v1/keys/{kid}");
    let providers = "/api/v1/providers";
    let provider_path = &format!("/api/v1/providers/{pid}");
    let prices = "/api/v1/model-prices";
    let settings = "/api/v1/settings";
    let good_provider = json!({ "name": "p2", "type": "claude", "base_url": "https://api.anthropic.com", "api_key": "secret-1234567890" });
    let provider_with = |key: &str, value: Value| {
        let mut b = good_provider.clone();
        b[key] = value;
        b
    };
    let redirect = |r: Value| provider_with("model_redirects", json!([r]));
    let long = "x".repeat(65);
    let words = "/api/v1/sensitive-words";
    let filters = "/api/v1/request-filters";
    let good_filter = json!({ "name": "f", "scope": "body", "action": "json_path", "target": "$.metadata", "replacement": {} });
    let filter_with = |key: &str, value: Value| {
        let mut b = good_filter.clone();
        b[key] = value;
        b
    };
    let text_replace = |match_type: &str, target: &str| {
        json!({ "name": "f", "scope": "body", "action": "text_replace", "match_type": match_type,
                "target": target, "replacement": "x" })
    };

    // One rejected write a line.
    #[rustfmt::skip]
    let cases = [
        // names
        post(users, json!({ "name": "" }), "name"),
        post(users, json!({ "name": long }), "name"),
        post(users, json!({}), "name"),
        patch(user_path, json!({ "name": "  " }), "name"),
        // names are trimmed: " u3 " and "u3" would be two users
        post(users, json!({ "name": " u3 " }), "name"),
        post(users, json!({ "name": "u3\t" }), "name"),
        patch(user_path, json!({ "name": "valid " }), "name"),
        post(users, json!({ "name": "u", "provider_group": " g" }), "provider_group"),
        post(keys, json!({ "name": " k2" }), "name"),
        patch(key_path, json!({ "provider_group": "g " }), "provider_group"),
        post(providers, provider_with("name", json!("p2 ")), "name"),
        post(providers, provider_with("group_tags", json!(["ok", " a"])), "group_tags[1]"),
        post(users, json!({ "name": "u", "allowed_clients": ["claude-cli "] }), "allowed_clients[0]"),
        post(prices, json!({ "model": " m1", "input_per_mtok": 1, "output_per_mtok": 1 }), "model"),
        post(filters, filter_with("name", json!(" f")), "name"),
        // NUL (Postgres cannot store it) and, outside free text, control characters
        post(users, json!({ "name": "u", "description": "a\u{0}b" }), "description"),
        patch(user_path, json!({ "description": "\u{0}" }), "description"),
        post(users, json!({ "name": "u\u{0}" }), "name"),
        post(words, json!({ "word": "bad\u{0}" }), "word"),
        post(words, json!({ "word": "bad\u{0}", "match_type": "regex" }), "word"),
        post(words, json!({ "word": "a\tb", "match_type": "regex" }), "word"),
        // a regex word that matches empty text would block every request
        post(words, json!({ "word": "a*|b", "match_type": "regex" }), "word"),
        post(words, json!({ "word": "(?i)(secret)?", "match_type": "regex" }), "word"),
        post(words, json!({ "word": "fine", "description": "\u{0}" }), "description"),
        post(filters, filter_with("description", json!("x\u{0}")), "description"),
        post(filters, filter_with("replacement", json!({ "a": ["ok", "b\u{0}"] })), "replacement"),
        post(filters, filter_with("replacement", json!({ "k\u{0}": 1 })), "replacement"),
        post(filters, text_replace("regex", "a\u{0}"), "target"),
        post(filters, text_replace("contains", "a\u{0}"), "target"),
        post(providers, redirect(json!({ "match_type": "regex", "pattern": "^a\u{0}", "target": "m" })), "model_redirects[0].pattern"),
        post(providers, redirect(json!({ "match_type": "prefix", "pattern": "a\u{0}", "target": "m" })), "model_redirects[0].pattern"),
        // client lists
        post(users, json!({ "name": "u", "allowed_clients": many(51, "c") }), "allowed_clients"),
        post(users, json!({ "name": "u", "blocked_clients": ["ok", long] }), "blocked_clients[1]"),
        // model lists
        post(users, json!({ "name": "u", "allowed_models": ["a", "b", "c", "bad model"] }), "allowed_models[3]"),
        post(users, json!({ "name": "u", "allowed_models": many(51, "m") }), "allowed_models"),
        patch(user_path, json!({ "allowed_models": ["x".repeat(65)] }), "allowed_models[0]"),
        // limits and rpm
        post(users, json!({ "name": "u", "limit_daily_usd": -1 }), "limit_daily_usd"),
        post(users, json!({ "name": "u", "limit_total_usd": "-0.01" }), "limit_total_usd"),
        post(users, json!({ "name": "u", "limit_monthly_usd": "lots" }), "limit_monthly_usd"),
        post(users, json!({ "name": "u", "limit_concurrent_sessions": -2 }), "limit_concurrent_sessions"),
        post(users, json!({ "name": "u", "rpm": 0 }), "rpm"),
        patch(key_path, json!({ "limit_weekly_usd": -5 }), "limit_weekly_usd"),
        post(keys, json!({ "name": "k2", "limit_5h_usd": -1 }), "limit_5h_usd"),
        post(keys, json!({ "name": "k2", "limit_5h_mode": "sliding" }), "limit_5h_mode"),
        // daily reset
        post(users, json!({ "name": "u", "daily_reset_time": "24:00" }), "daily_reset_time"),
        post(users, json!({ "name": "u", "daily_reset_time": "9:00" }), "daily_reset_time"),
        post(users, json!({ "name": "u", "daily_reset_mode": "weekly" }), "daily_reset_mode"),
        // roles, expiry, types, unknown fields
        post(users, json!({ "name": "u", "role": "root" }), "role"),
        post(users, json!({ "name": "u", "expires_at": "tomorrow" }), "expires_at"),
        patch(key_path, json!({ "expires_at": "2030-01-01" }), "expires_at"),
        post(users, json!({ "name": "u", "enabled": "yes" }), "enabled"),
        post(users, json!({ "name": "u", "favourite_colour": "blue" }), "favourite_colour"),
        patch(user_path, json!({ "id": 5 }), "id"),
        patch(key_path, json!({ "key_hash": "abc" }), "key_hash"),
        // providers
        post(providers, provider_with("type", json!("openai")), "type"),
        post(providers, provider_with("base_url", json!("ftp://example.com")), "base_url"),
        post(providers, provider_with("base_url", json!("https://")), "base_url"),
        post(providers, provider_with("base_url", json!("api.anthropic.com")), "base_url"),
        post(providers, provider_with("weight", json!(0)), "weight"),
        post(providers, provider_with("weight", json!(10_001)), "weight"),
        patch(provider_path, json!({ "weight": 2_000_000_000 }), "weight"),
        post(providers, provider_with("priority", json!(1001)), "priority"),
        patch(provider_path, json!({ "priority": -1001 }), "priority"),
        post(providers, provider_with("cost_multiplier", json!(-0.5)), "cost_multiplier"),
        post(providers, provider_with("api_key", json!("")), "api_key"),
        post(providers, json!({ "name": "p3", "type": "claude", "base_url": "https://a.example" }), "api_key"),
        post(providers, provider_with("group_tags", json!(["ok", ""])), "group_tags[1]"),
        post(providers, redirect(json!({ "match_type": "regex", "pattern": "(unclosed", "target": "m" })), "model_redirects[0].pattern"),
        post(providers, redirect(json!({ "match_type": "regex", "pattern": "\\w{500}{500}", "target": "m" })), "model_redirects[0].pattern"),
        post(providers, redirect(json!({ "match_type": "glob", "pattern": "a", "target": "m" })), "model_redirects[0].match_type"),
        patch(provider_path, json!({ "model_redirects": [{ "match_type": "exact", "pattern": "a", "target": "bad target" }] }), "model_redirects[0].target"),
        patch(provider_path, json!({ "circuit_failure_threshold": 0 }), "circuit_failure_threshold"),
        patch(provider_path, json!({ "api_key_masked": "x" }), "api_key_masked"),
        // prices and settings
        post(prices, json!({ "model": "m1", "input_per_mtok": -1, "output_per_mtok": 1 }), "input_per_mtok"),
        post(prices, json!({ "model": "bad model", "input_per_mtok": 1, "output_per_mtok": 1 }), "model"),
        patch(settings, json!({ "timezone": "Mars/Olympus" }), "timezone"),
        patch(settings, json!({ "unknown_path": "teapot" }), "unknown_path"),
        patch(settings, json!({ "ga_threshold": 0 }), "ga_threshold"),
        patch(settings, json!({ "locale": "zh" }), "locale"),
        patch(settings, json!({ "max_provider_attempts": 0 }), "max_provider_attempts"),
        patch(settings, json!({ "max_provider_attempts": 6 }), "max_provider_attempts"),
    ];

    let before = state(&app).await;
    for (method, path, body, field) in cases {
        let (status, answer) = app
            .send(method.clone(), &path, Some(ADMIN_TOKEN), Some(&body))
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{method} {path} {body} → {answer}"
        );
        assert_error(&answer, "validation_failed", Some(field));
    }
    assert_eq!(
        state(&app).await,
        before,
        "a rejected write changed something"
    );
}

#[tokio::test]
async fn edge_values_are_accepted() {
    let app = spawn().await;
    let provider = json!({ "name": "p", "type": "claude", "base_url": "https://api.anthropic.com",
                           "api_key": "secret-1234567890", "weight": 10_000, "priority": -1000 });
    let (status, body) = app.post("/api/v1/providers", provider).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app
        .patch(
            &format!("/api/v1/providers/{}", body["id"]),
            json!({ "priority": 1000 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Free text may hold line breaks and tabs; names may hold inner spaces.
    let (status, body) = app
        .post(
            "/api/v1/users",
            json!({ "name": "Ann Lee", "description": "line 1\n\tline 2" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let filter = json!({ "name": "f", "scope": "body", "action": "text_replace", "match_type": "regex",
                         "target": "a\\nb", "replacement": "two\nlines" });
    let (status, body) = app.post("/api/v1/request-filters", filter).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn nul_in_an_audit_log_query_is_422() {
    let app = spawn().await;
    for (query, field) in [
        ("session_id=a%00b", "session_id"),
        ("blocked_by=%00", "blocked_by"),
    ] {
        let (status, body) = app.get(&format!("/api/v1/requests?{query}")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert_error(&body, "validation_failed", Some(field));
    }
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn().await;
    let resp = app
        .client
        .post(app.url("/api/v1/users"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.unwrap();
    assert_error(&body, "invalid_json", None);
    let (status, body) = app
        .send(
            Method::PATCH,
            "/api/v1/settings",
            Some(ADMIN_TOKEN),
            Some(&json!([1, 2])),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&body, "validation_failed", Some(""));
    // Oversized admin bodies are refused; unsupported methods answer JSON.
    let huge = json!({ "name": "big", "description": "x".repeat(3 * 1024 * 1024) });
    let (status, body) = app.post("/api/v1/users", huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&body, "payload_too_large", None);
    let (status, body) = app
        .send(
            Method::PUT,
            "/api/v1/users",
            Some(ADMIN_TOKEN),
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&body, "method_not_allowed", None);
    assert_eq!(app.count("users").await, 0);
}
