//! Every auth failure of SPEC §2.1: status, Anthropic-dialect body with a
//! stable code, the request id; and nothing reaches the provider.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hubgate_e2e::{assert_anthropic_error, read_json, simple_body, Stack, StackOptions};
use serde_json::{json, Value};

const MISSING: (&str, &str) = (
    "missing_api_key",
    "No API key provided. Send it in the x-api-key header or as Authorization: Bearer <key>.",
);
const CONFLICTING: (&str, &str) = (
    "conflicting_credentials",
    "Conflicting credentials: the request carries different API keys in different headers.",
);
const INVALID: (&str, &str) = ("invalid_api_key", "Invalid API key.");
const KEY_DISABLED: (&str, &str) = ("key_disabled", "API key has been disabled.");
const USER_DISABLED: (&str, &str) =
    ("user_disabled", "User account has been disabled. Please contact the administrator.");

async fn refused(builder: reqwest::RequestBuilder, request_id: &str) -> Value {
    let resp = builder.json(&simple_body("claude-sonnet-4-5", false, "let me in")).send().await.unwrap();
    let (status, headers, body) = read_json(resp).await.unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(headers["content-type"].to_str().unwrap().starts_with("application/json"), "{headers:?}");
    assert_eq!(body["request_id"], request_id, "{body}");
    body
}

fn in_seconds(s: i64) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::seconds(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_auth_failure_has_its_status_and_body() {
    let stack = Stack::start(StackOptions::new("auth_failures")).await.unwrap();
    let auth_error = "authentication_error";

    // Accounts that expire in a moment; checked last.
    let expires = in_seconds(3);
    let (_u, expiring_key) = stack.user_with_key(json!({})).await.unwrap();
    stack.admin.patch_key(expiring_key.id, json!({"expires_at": expires.to_rfc3339()})).await.unwrap();
    let (_u, expiring_user_key) = stack.user_with_key(json!({"expires_at": expires.to_rfc3339()})).await.unwrap();

    // Missing key.
    let (b, id) = stack.request(reqwest::Method::POST, "/v1/messages");
    let body = refused(b.header("anthropic-version", "2023-06-01"), &id).await;
    assert_anthropic_error(&body, auth_error, MISSING.0, MISSING.1, &id);

    // Two different keys.
    let (_u, key_a) = stack.user_with_key(json!({})).await.unwrap();
    let (_u, key_b) = stack.user_with_key(json!({})).await.unwrap();
    let (b, id) = stack.messages(&key_a.raw);
    let body = refused(b.bearer_auth(&key_b.raw), &id).await;
    assert_anthropic_error(&body, auth_error, CONFLICTING.0, CONFLICTING.1, &id);
    let (b, id) = stack.request(reqwest::Method::POST, "/v1/messages");
    let body = refused(b.header("x-goog-api-key", &key_a.raw).header("x-api-key", &key_b.raw), &id).await;
    assert_eq!(body["error"]["code"], CONFLICTING.0, "{body}");

    // Unknown key.
    let unknown = format!("sk-{}", hubgate_e2e::random_token(48));
    let (b, id) = stack.messages(&unknown);
    let body = refused(b, &id).await;
    assert_anthropic_error(&body, auth_error, INVALID.0, INVALID.1, &id);

    // Disabled key.
    let (_u, key) = stack.user_with_key(json!({})).await.unwrap();
    stack.admin.disable_key(key.id).await.unwrap();
    let (b, id) = stack.messages(&key.raw);
    let body = refused(b, &id).await;
    assert_anthropic_error(&body, auth_error, KEY_DISABLED.0, KEY_DISABLED.1, &id);

    // Disabled user (their key is fine).
    let (user, key) = stack.user_with_key(json!({})).await.unwrap();
    stack.admin.patch_user(user["id"].as_i64().unwrap(), json!({"enabled": false})).await.unwrap();
    let (b, id) = stack.messages(&key.raw);
    let body = refused(b, &id).await;
    assert_anthropic_error(&body, auth_error, USER_DISABLED.0, USER_DISABLED.1, &id);

    // Expired key and expired user.
    let wait = (expires - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(500);
    tokio::time::sleep(wait).await;
    // The filter shows the expiry to the second, in UTC.
    let expiry = expires.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let (b, id) = stack.messages(&expiring_key.raw);
    let body = refused(b, &id).await;
    let message = format!("API key expired on {expiry}. Please create a new key.");
    assert_anthropic_error(&body, auth_error, "key_expired", &message, &id);

    let (b, id) = stack.messages(&expiring_user_key.raw);
    let body = refused(b, &id).await;
    let message = format!("User account expired on {expiry}. Please renew the subscription.");
    assert_anthropic_error(&body, auth_error, "user_expired", &message, &id);

    // None of it reached the provider.
    assert!(stack.mock.requests().is_empty(), "refused requests reached the provider: {:?}", stack.mock.requests());
}
