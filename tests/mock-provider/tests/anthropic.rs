//! The mock must speak the Anthropic Messages API faithfully: these tests pin
//! its auth, error shapes, usage fields and SSE event sequence.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use hubgate_mock_provider::sse::{parse_all, SseParser};
use hubgate_mock_provider::{AnthropicUsage, MockConfig, MockHandle, MockProvider};
use serde_json::{json, Value};

const KEY: &str = "sk-ant-mock-provider-key";

async fn start() -> MockHandle {
    MockProvider::start(MockConfig::new(KEY)).await.unwrap()
}

fn request(mock: &MockHandle, path: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(format!("{}{}", mock.base_url(), path))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
}

fn body(stream: bool) -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "stream": stream,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}],
    })
}

fn usage() -> AnthropicUsage {
    AnthropicUsage {
        input_tokens: 1234,
        output_tokens: 321,
        cache_creation_5m_input_tokens: 2000,
        cache_creation_1h_input_tokens: 500,
        cache_read_input_tokens: 4096,
    }
}

fn assert_anthropic_error(v: &Value, error_type: &str, message: &str) {
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], error_type, "{v}");
    assert_eq!(v["error"]["message"], message, "{v}");
    assert!(v["request_id"].as_str().unwrap().starts_with("req_"), "{v}");
}

#[tokio::test]
async fn missing_or_wrong_key_is_401_in_anthropic_shape() {
    let mock = start().await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/messages", mock.base_url());

    let r = client.post(&url).header("anthropic-version", "2023-06-01").json(&body(false)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_anthropic_error(&r.json().await.unwrap(), "authentication_error", "x-api-key header is required");

    let r = client
        .post(&url)
        .header("x-api-key", "sk-wrong")
        .header("anthropic-version", "2023-06-01")
        .json(&body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_anthropic_error(&r.json().await.unwrap(), "authentication_error", "invalid x-api-key");

    // A bearer token is not the API key.
    let r = client
        .post(&url)
        .bearer_auth(KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn bad_requests_are_400() {
    let mock = start().await;
    let r = request(&mock, "/v1/messages").body("{\"model\": ").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("column"), "{v}");

    let r = reqwest::Client::new()
        .post(format!("{}/v1/messages", mock.base_url()))
        .header("x-api-key", KEY)
        .json(&body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_anthropic_error(
        &r.json().await.unwrap(),
        "invalid_request_error",
        "anthropic-version: header is required",
    );

    let mut no_max = body(false);
    no_max.as_object_mut().unwrap().remove("max_tokens");
    let r = request(&mock, "/v1/messages").json(&no_max).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_anthropic_error(&r.json().await.unwrap(), "invalid_request_error", "max_tokens: Field required");

    let r = request(&mock, "/v1/nope").json(&body(false)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["type"], "not_found_error");
}

#[tokio::test]
async fn json_reply_is_a_message_with_the_configured_usage() {
    let mock = start().await;
    mock.set_usage(usage());
    let r = request(&mock, "/v1/messages?beta=true").json(&body(false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    assert!(r.headers()["request-id"].to_str().unwrap().starts_with("req_"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-sonnet-4-5");
    assert!(v["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["content"][0]["type"], "text");
    assert_eq!(v["content"][0]["text"], "You said: hello there");
    assert_eq!(
        v["usage"],
        json!({
            "input_tokens": 1234,
            "cache_creation_input_tokens": 2500,
            "cache_read_input_tokens": 4096,
            "cache_creation": {"ephemeral_5m_input_tokens": 2000, "ephemeral_1h_input_tokens": 500},
            "output_tokens": 321,
            "service_tier": "standard",
        })
    );

    let seen = mock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/v1/messages");
    assert_eq!(seen[0].query.as_deref(), Some("beta=true"));
    assert_eq!(seen[0].query_param("beta"), Some("true"));
    assert_eq!(seen[0].header("X-Api-Key"), Some(KEY));
    assert_eq!(seen[0].json().unwrap()["max_tokens"], 1024);
}

#[tokio::test]
async fn stream_has_the_real_event_sequence_and_usage() {
    let mock = start().await;
    mock.set_usage(usage());
    let r = request(&mock, "/v1/messages").json(&body(true)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream; charset=utf-8");
    let raw = r.bytes().await.unwrap();
    let text = std::str::from_utf8(&raw).unwrap();
    assert!(text.starts_with("event: message_start\ndata: {"), "{text}");
    let events = parse_all(&raw);
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    let deltas = names.iter().filter(|n| **n == "content_block_delta").count();
    assert!(deltas >= 1);
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(std::iter::repeat_n("content_block_delta", deltas));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);
    for e in &events {
        assert_eq!(e.json().unwrap()["type"], e.event.as_str(), "data type matches event name");
    }
    let start = events[0].json().unwrap();
    assert_eq!(start["message"]["usage"], usage().to_json(1));
    assert_eq!(start["message"]["usage"]["cache_creation_input_tokens"], 2500);
    assert_eq!(start["message"]["content"], json!([]));
    let text: String = events
        .iter()
        .filter(|e| e.event == "content_block_delta")
        .map(|e| e.json().unwrap()["delta"]["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(text, "You said: hello there");
    let delta = events[events.len() - 2].json().unwrap();
    assert_eq!(delta["usage"], json!({"output_tokens": 321}));
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
}

#[tokio::test]
async fn gate_holds_the_stream_after_its_first_events() {
    let mock = start().await;
    let gate = mock.arm_gate();
    let mut r = request(&mock, "/v1/messages").json(&body(true)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut parser = SseParser::new();
    let mut seen = Vec::new();
    while !seen.iter().any(|e: &hubgate_mock_provider::sse::SseEvent| e.event == "content_block_delta") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), r.chunk()).await.unwrap().unwrap().unwrap();
        seen.extend(parser.push(&chunk));
    }
    assert_eq!(seen[0].event, "message_start");
    gate.reached().await;
    assert!(!gate.is_finished());
    // Nothing more arrives while the gate is closed.
    let more = tokio::time::timeout(Duration::from_millis(300), r.chunk()).await;
    assert!(more.is_err(), "stream must wait at the gate");
    gate.release();
    while let Some(chunk) = r.chunk().await.unwrap() {
        seen.extend(parser.push(&chunk));
    }
    assert!(gate.is_finished());
    assert_eq!(seen.last().unwrap().event, "message_stop");
    // The gate applies to one stream only.
    let r = request(&mock, "/v1/messages").json(&body(true)).send().await.unwrap();
    assert!(std::str::from_utf8(&r.bytes().await.unwrap()).unwrap().contains("message_stop"));
}

#[tokio::test]
async fn count_tokens_reports_input_tokens() {
    let mock = start().await;
    mock.set_usage(usage());
    let mut b = body(false);
    b.as_object_mut().unwrap().remove("max_tokens");
    let r = request(&mock, "/v1/messages/count_tokens").json(&b).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"input_tokens": 1234}));
}

#[test]
fn binary_prints_its_address_and_serves() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hubgate-mock-provider"))
        .args(["--listen", "127.0.0.1:0", "--api-key", KEY, "--quiet"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("MOCK_LISTENING=").unwrap_or_else(|| panic!("got {line:?}")).to_string();
    assert!(addr.starts_with("127.0.0.1:"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("http://{addr}/v1/messages"))
            .header("x-api-key", KEY)
            .header("anthropic-version", "2023-06-01")
            .json(&body(false))
            .send()
            .await
            .unwrap()
            .status()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status, 200);
}
