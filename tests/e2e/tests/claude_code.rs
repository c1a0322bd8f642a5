//! A ~115 KB Claude Code-shaped request (SPEC §8) goes through the gateway
//! intact, streams back, and its audit row carries the session id.

use std::time::Duration;

use hubgate_e2e::claude_code::{self, ClaudeCodeSession};
use hubgate_e2e::{Stack, StackOptions};
use hubgate_mock_provider::sse::parse_all;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_request_goes_through() {
    let stack = Stack::start(StackOptions::new("claude_code")).await.unwrap();
    let (user, key) = stack.user_with_key(json!({})).await.unwrap();
    let model = stack.claude_model("claude-sonnet-4").await.unwrap();
    let session = ClaudeCodeSession::random();
    let body = claude_code::body(&model, &session, true);
    let bytes = serde_json::to_vec(&body).unwrap();
    assert!(bytes.len() > 110 * 1024, "{}", bytes.len());

    let (mut req, request_id) = stack.request(reqwest::Method::POST, "/v1/messages?beta=true");
    for (name, value) in claude_code::headers(&session) {
        req = req.header(name, value);
    }
    let resp = req.header("x-api-key", &key.raw).body(bytes.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let raw = resp.bytes().await.unwrap();
    let events = parse_all(&raw);
    assert_eq!(events.first().map(|e| e.event.as_str()), Some("message_start"));
    assert_eq!(events.last().map(|e| e.event.as_str()), Some("message_stop"));

    // The provider got the whole body and Claude Code's headers.
    let seen = stack.mock.requests();
    assert_eq!(seen.len(), 1);
    let upstream = &seen[0];
    assert_eq!(upstream.query_param("beta"), Some("true"));
    assert_eq!(upstream.json().unwrap(), body, "the body must reach the provider unchanged");
    assert_eq!(upstream.header("user-agent"), Some(claude_code::USER_AGENT));
    assert_eq!(upstream.header("anthropic-beta"), Some(claude_code::ANTHROPIC_BETA));
    assert_eq!(upstream.header("x-app"), Some("cli"));
    assert_eq!(upstream.header("x-claude-code-session-id"), Some(session.session_id.as_str()));
    assert_eq!(upstream.header("x-api-key"), Some(stack.mock.api_key()));

    let row = stack
        .admin
        .wait_for_request(user["id"].as_i64().unwrap(), &request_id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(row["status"], 200, "{row}");
    assert_eq!(row["session_id"], session.session_id.as_str(), "{row}");
    assert_eq!(row["user_agent"], claude_code::USER_AGENT, "{row}");
    assert_eq!(row["original_model"], Value::String(model), "{row}");
}
