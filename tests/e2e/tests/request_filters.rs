//! Request filters (SPEC §2.8) through real Envoy: global filters before
//! provider selection, provider-bound ones after it, in priority order;
//! header set/remove, body JSON path and text replace reach the provider
//! with a correct content-length; an untouched body is forwarded byte for
//! byte.

use std::time::Duration;

use hubgate_e2e::claude_code::{self, ClaudeCodeSession};
use hubgate_e2e::{Stack, StackOptions};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_rewrite_what_reaches_the_provider() {
    let stack = Stack::start(StackOptions::new("request_filters")).await.unwrap();
    let provider_id = stack.provider_id().unwrap();
    let (_u, key) = stack.user_with_key(json!({})).await.unwrap();
    let session = ClaudeCodeSession::random();
    let send = |body: Value| {
        let (mut req, _) = stack.request(reqwest::Method::POST, "/v1/messages?beta=true");
        for (name, value) in claude_code::headers(&session) {
            req = req.header(name, value);
        }
        req.header("x-api-key", &key.raw).json(&body).send()
    };
    let mut body = claude_code::body("claude-sonnet-4-5", &session, false);
    body["messages"][0]["content"][1]["text"] = json!("deploy with token secret-token-123, please");

    // Before any filter: forwarded byte for byte.
    let sent = serde_json::to_vec(&body).unwrap();
    assert_eq!(send(body.clone()).await.unwrap().status(), 200);
    assert_eq!(stack.mock.requests().last().unwrap().body.as_ref(), sent.as_slice(), "an untouched body changed");

    for filter in [
        json!({"name": "team", "scope": "header", "action": "set", "target": "x-team", "replacement": "first", "priority": 1}),
        json!({"name": "team-later", "scope": "header", "action": "set", "target": "X-Team", "replacement": "platform", "priority": 2}),
        json!({"name": "no-os", "scope": "header", "action": "remove", "target": "x-stainless-os"}),
        json!({"name": "max", "scope": "body", "action": "json_path", "target": "max_tokens", "replacement": 77}),
        json!({"name": "redact", "scope": "body", "action": "text_replace", "match_type": "contains",
               "target": "secret-token-123", "replacement": "[REDACTED]"}),
        json!({"name": "bound", "scope": "header", "action": "set", "target": "x-provider-filter", "replacement": "yes",
               "binding": "providers", "provider_ids": [provider_id]}),
        json!({"name": "elsewhere", "scope": "header", "action": "set", "target": "x-other-provider", "replacement": "no",
               "binding": "providers", "provider_ids": [provider_id + 1000]}),
    ] {
        stack.admin.post("/api/v1/request-filters", &filter).await.unwrap();
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let seen = loop {
        stack.mock.clear_requests();
        assert_eq!(send(body.clone()).await.unwrap().status(), 200);
        let seen = stack.mock.requests().pop().unwrap();
        // The filters are created one by one, so a poll can catch only the
        // first ones: wait for the last one with a visible effect.
        if seen.header("x-provider-filter").is_some() {
            break seen;
        }
        assert!(tokio::time::Instant::now() < deadline, "the filters never took effect");
        tokio::time::sleep(stack.poll_interval).await;
    };
    assert_eq!(seen.header("x-team"), Some("platform"), "priority order");
    assert_eq!(seen.header("x-stainless-os"), None);
    assert_eq!(seen.header("x-provider-filter"), Some("yes"));
    assert_eq!(seen.header("x-other-provider"), None);
    assert_eq!(seen.header("content-length"), Some(seen.body.len().to_string().as_str()));
    let upstream: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(upstream["max_tokens"], 77);
    let text = upstream["messages"][0]["content"][1]["text"].as_str().unwrap();
    assert_eq!(text, "deploy with token [REDACTED], please");
    assert!(!String::from_utf8_lossy(&seen.body).contains("secret-token-123"));
    // The provider's credential still replaced the client's.
    assert_eq!(seen.header("x-api-key"), Some(stack.mock.api_key()));

    // A first-seen key: the body is complete before the key is resolved,
    // so the filters apply when the control plane's answer arrives.
    let (_u, fresh) = stack.user_with_key(json!({})).await.unwrap();
    stack.mock.clear_requests();
    let (req, _) = stack.messages(&fresh.raw);
    let resp = req.json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen = stack.mock.requests().pop().unwrap();
    assert_eq!(seen.header("content-length"), Some(seen.body.len().to_string().as_str()));
    let upstream: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(upstream["max_tokens"], 77);
    assert!(!String::from_utf8_lossy(&seen.body).contains("secret-token-123"));
}
