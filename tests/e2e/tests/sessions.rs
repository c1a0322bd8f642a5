//! Sessions (SPEC §2.7) seen by the control plane: Claude Code's requests
//! of one session, through the gateway, show as one active session with its
//! key, user, client, provider and request count; a refused request does not.

use std::time::Duration;

use hubgate_e2e::claude_code::{self, ClaudeCodeSession};
use hubgate_e2e::{admin::list_items, Stack, StackOptions};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_code_session_is_listed_as_active() {
    let stack = Stack::start(StackOptions::new("sessions")).await.unwrap();
    let (user, key) = stack.user_with_key(json!({"allowed_models": ["claude-sonnet-4-5"]})).await.unwrap();
    let session = ClaudeCodeSession::random();
    let send = |model: &'static str| {
        let (mut req, _) = stack.request(reqwest::Method::POST, "/v1/messages?beta=true");
        for (name, value) in claude_code::headers(&session) {
            req = req.header(name, value);
        }
        req.header("x-api-key", &key.raw).json(&claude_code::body(model, &session, false)).send()
    };
    for _ in 0..3 {
        assert_eq!(send("claude-sonnet-4-5").await.unwrap().status(), 200);
    }
    // Refused by the model guard: not session activity.
    assert_eq!(send("claude-opus-4-1").await.unwrap().status(), 400);

    let key_id = key.id;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let row: Value = loop {
        let page = stack.admin.get(&format!("/api/v1/sessions?key_id={key_id}")).await.unwrap();
        let items = list_items(&page).unwrap();
        if let Some(row) = items.iter().find(|s| s["request_count"].as_i64() == Some(3)) {
            break row.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "session not listed with 3 requests: {page}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(row["session_id"], session.session_id.as_str(), "{row}");
    assert_eq!(row["user_id"], user["id"], "{row}");
    assert_eq!(row["provider_id"], stack.provider_id().unwrap(), "{row}");
    assert_eq!(row["client"], claude_code::USER_AGENT, "{row}");
    assert_eq!(row["active"], true, "{row}");
}

/// Sticky sessions (SPEC §6): with two equal providers, a session past its
/// first message keeps the provider its first request went to; sessions
/// with one message each are spread over both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_keeps_its_provider() {
    let stack = Stack::start(StackOptions::new("sticky_sessions")).await.unwrap();
    stack
        .admin
        .create_provider(json!({"name": "mock-anthropic-2", "type": "claude", "base_url": stack.mock.base_url(),
                                "api_key": stack.mock.api_key()}))
        .await
        .unwrap();
    let (user, key) = stack.user_with_key(json!({})).await.unwrap();
    let user_id = user["id"].as_i64().unwrap();
    let send = |session: String, turns: usize| {
        let (req, request_id) = stack.messages(&key.raw);
        let mut messages = Vec::new();
        for i in 0..turns {
            messages.push(json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": format!("turn {i}")}));
        }
        let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": messages});
        async move {
            let resp = req.header("x-claude-code-session-id", session).json(&body).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            request_id
        }
    };
    let provider_of = |request_id: String| {
        let stack = &stack;
        async move {
            let row = stack.admin.wait_for_request(user_id, &request_id, Duration::from_secs(15)).await.unwrap();
            row["provider_id"].as_i64().unwrap()
        }
    };
    // Both providers are in use once the second one's policy arrived.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut seen = std::collections::HashSet::new();
    let mut i = 0;
    while seen.len() < 2 && tokio::time::Instant::now() < deadline {
        seen.insert(provider_of(send(format!("single-{i}"), 1).await).await);
        i += 1;
    }
    assert_eq!(seen.len(), 2, "single-message sessions are spread over both providers");
    let session = "0b1c2d3e-0000-4000-8000-00000000cafe".to_string();
    let first = provider_of(send(session.clone(), 1).await).await;
    for turns in [3, 5, 7, 9, 11, 13, 15, 17] {
        assert_eq!(provider_of(send(session.clone(), turns).await).await, first, "turn {turns} went elsewhere");
    }
}
