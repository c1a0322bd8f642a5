//! Bad input never breaks the gateway (SPEC §3): malformed JSON → 400 with the
//! parse position, a body over `max_body_bytes` → 413, and the VM keeps
//! serving the next request.

use hubgate_e2e::{read_json, simple_body, Stack, StackOptions};
use serde_json::{json, Value};

const MAX_BODY: usize = 256 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_bodies_are_refused_and_the_next_request_works() {
    let mut stack =
        Stack::start(StackOptions::new("bad_input").plugin("max_body_bytes", json!(MAX_BODY))).await.unwrap();
    let (_u, key) = stack.user_with_key(json!({})).await.unwrap();
    let good = simple_body("claude-sonnet-4-5", false, "good one");

    for round in 0..2 {
        // Malformed JSON: the message names the position serde reports.
        let malformed = r#"{"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [}"#;
        let parse_error = serde_json::from_str::<Value>(malformed).unwrap_err();
        let (req, id) = stack.messages(&key.raw);
        let resp = req.header("content-type", "application/json").body(malformed).send().await.unwrap();
        let (status, _, reply) = read_json(resp).await.unwrap();
        assert_eq!(status, 400, "round {round}: {reply}");
        assert_eq!(reply["type"], "error", "{reply}");
        assert_eq!(reply["error"]["type"], "invalid_request_error", "{reply}");
        assert_eq!(reply["error"]["code"], "invalid_json", "{reply}");
        assert_eq!(reply["request_id"], id.as_str(), "{reply}");
        let message = reply["error"]["message"].as_str().unwrap();
        let position = format!("line {} column {}", parse_error.line(), parse_error.column());
        assert!(message.contains(&position), "message should give the position ({position}): {message}");

        let (req, _) = stack.messages(&key.raw);
        let (status, _, reply) = read_json(req.json(&good).send().await.unwrap()).await.unwrap();
        assert_eq!(status, 200, "good request after malformed JSON: {reply}");

        // Over the body limit.
        let big = json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "x".repeat(MAX_BODY + 1024)}],
        });
        let (req, id) = stack.messages(&key.raw);
        let (status, _, reply) = read_json(req.json(&big).send().await.unwrap()).await.unwrap();
        assert_eq!(status, 413, "round {round}: {reply}");
        assert_eq!(reply["type"], "error", "{reply}");
        assert_eq!(reply["error"]["type"], "request_too_large", "{reply}");
        assert_eq!(reply["error"]["code"], "request_too_large", "{reply}");
        let message = format!("Request body is larger than the {MAX_BODY} bytes allowed.");
        assert_eq!(reply["error"]["message"], message.as_str(), "{reply}");
        assert_eq!(reply["request_id"], id.as_str(), "{reply}");

        let (req, _) = stack.messages(&key.raw);
        let (status, _, reply) = read_json(req.json(&good).send().await.unwrap()).await.unwrap();
        assert_eq!(status, 200, "good request after an oversized body: {reply}");
    }
    // Only the good requests reached the provider.
    assert_eq!(stack.mock.requests().len(), 4);
    assert!(stack.envoy_alive().await, "Envoy stopped");
}

/// A declared length of 4 GiB or more (past a 32-bit usize on wasm32) is
/// refused at once from the headers, not held while the body trickles in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_content_length_is_refused_from_the_headers() {
    use hubgate_e2e::raw::{head, RawConn};
    let stack = Stack::start(StackOptions::new("bad_input_huge_length")).await.unwrap();
    let (_u, key) = stack.user_with_key(json!({})).await.unwrap();
    for length in ["4294967296", "5000000000", "18446744073709551615"] {
        let mut conn = RawConn::connect(stack.envoy.listen_addr(), None).await.unwrap();
        conn.send(&head("POST", "/v1/messages", &[("x-api-key", &key.raw), ("content-length", length)])).await.unwrap();
        conn.send(b"{\"model\":").await.unwrap();
        let resp = conn.response(std::time::Duration::from_secs(20)).await;
        let resp = resp.unwrap_or_else(|| panic!("content-length {length}: no answer"));
        assert!(resp.status == 413 || resp.status == 400, "content-length {length}: {}", resp.status);
        if resp.status == 413 {
            assert_eq!(resp.json()["error"]["code"], "request_too_large", "{length}");
        }
    }
    assert_eq!(stack.mock.requests().len(), 0);
}
