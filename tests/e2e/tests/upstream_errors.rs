//! When the provider cannot be reached, Envoy answers by itself; the client
//! still gets JSON in its own dialect with a stable code, and the audit row
//! records the failure, unbilled.

use std::time::Duration;

use hubgate_e2e::envoy::free_port;
use hubgate_e2e::{Stack, StackOptions};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_provider_answers_in_the_client_dialect() {
    let stack = Stack::start(StackOptions::new("upstream_errors").without_provider()).await.unwrap();
    let closed = format!("http://127.0.0.1:{}", free_port().unwrap());
    for (name, kind) in [("down-claude", "claude"), ("down-openai", "openai-compatible")] {
        stack
            .admin
            .create_provider(json!({"name": name, "type": kind, "base_url": closed, "api_key": "sk-up-0123456789"}))
            .await
            .unwrap();
    }
    let (user, key) = stack.user_with_key(json!({})).await.unwrap();
    let user_id = user["id"].as_i64().unwrap();

    // Anthropic dialect (wait for the providers to arrive with the snapshot).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (status, headers, body, request_id) = loop {
        let (req, request_id) = stack.messages(&key.raw);
        let resp = req.json(&hubgate_e2e::simple_body("claude-sonnet-4-5", false, "hi")).send().await.unwrap();
        let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if body["error"]["code"] != "no_provider_available" || tokio::time::Instant::now() > deadline {
            break (status, headers, body, request_id);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers.get("content-type").unwrap(), "application/json");
    assert_eq!(headers.get("x-hubgate-error-code").unwrap(), "upstream_unavailable");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "overloaded_error", "{body}");
    assert_eq!(body["error"]["code"], "upstream_unavailable", "{body}");
    assert_eq!(body["request_id"], request_id.as_str(), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().starts_with("The provider could not be reached"), "{body}");

    let row = stack.admin.wait_for_request(user_id, &request_id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(row["status"], 503, "{row}");
    assert_eq!(row["cost_usd"], "0", "{row}");
    assert!(row["error"].as_str().unwrap().starts_with("The provider could not be reached"), "{row}");
    assert_eq!(row["blocked_by"], Value::Null, "{row}");

    // OpenAI dialect for an OpenAI path.
    let (req, _) = stack.request(reqwest::Method::POST, "/v1/chat/completions");
    let resp = req
        .header("authorization", format!("Bearer {}", key.raw))
        .json(&json!({"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_unavailable", "{body}");
    assert_eq!(body["error"]["param"], Value::Null, "{body}");
    assert_eq!(body["error"]["type"], "overloaded_error", "{body}");
}
