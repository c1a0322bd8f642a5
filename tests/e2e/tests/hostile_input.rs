//! Requests crafted to break the gateway don't: a header that is not UTF-8
//! cannot kill a worker's VM, an oversized session id cannot block event
//! delivery, and a key in the query string never reaches the audit log.

use std::time::Duration;

use hubgate_e2e::{Stack, StackOptions};
use reqwest::header::HeaderValue;
use serde_json::json;

async fn send(stack: &Stack, key: &str, extra: &[(&str, HeaderValue)]) -> (u16, String) {
    let (mut req, request_id) = stack.messages(key);
    for (name, value) in extra {
        req = req.header(*name, value.clone());
    }
    let resp = req.json(&hubgate_e2e::simple_body("claude-sonnet-4-5", false, "hi")).send().await.unwrap();
    (resp.status().as_u16(), request_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_do_not_break_the_gateway() {
    let stack = Stack::start(StackOptions::new("hostile_input")).await.unwrap();
    let (user, key) = stack.user_with_key(json!({})).await.unwrap();
    let user_id = user["id"].as_i64().unwrap();

    // Latin-1 bytes in a header value (valid HTTP, invalid UTF-8), several
    // times so that every worker sees one.
    let latin1 = HeaderValue::from_bytes(b"caf\xe9/1.0").unwrap();
    for _ in 0..8 {
        let (status, _) = send(&stack, &key.raw, &[("user-agent", latin1.clone())]).await;
        assert_eq!(status, 200);
    }
    for i in 0..20 {
        let (status, _) = send(&stack, &key.raw, &[]).await;
        assert_eq!(status, 200, "request {i} after the non-UTF-8 headers: {}", stack.log_tails(30));
    }

    // A 7 KB session id: ignored (the session is then the hash of the key
    // and the first turns), and the events around it are still stored.
    let huge = HeaderValue::from_str(&"s".repeat(7000)).unwrap();
    let (status, huge_id) = send(&stack, &key.raw, &[("x-claude-code-session-id", huge)]).await;
    assert_eq!(status, 200);
    let (_, after_id) = send(&stack, &key.raw, &[]).await;
    let row = stack.admin.wait_for_request(user_id, &huge_id, Duration::from_secs(10)).await.unwrap();
    let session = row["session_id"].as_str().unwrap_or_default();
    assert!(session.starts_with("h-") && session.len() < 64, "{row}");
    stack.admin.wait_for_request(user_id, &after_id, Duration::from_secs(10)).await.unwrap();

    // A key in the query of an unknown path: 404, and no trace of the key.
    let (req, request_id) = stack.request(reqwest::Method::GET, &format!("/v1/unknown?key={}", key.raw));
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let body = resp.text().await.unwrap();
    assert!(!body.contains(&key.raw), "{body}");
    let row = stack.admin.wait_for_request(user_id, &request_id, Duration::from_secs(10)).await.unwrap();
    assert!(!row.to_string().contains(&key.raw), "the raw key reached the audit log: {row}");
}
