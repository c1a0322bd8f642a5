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
