//! The mock must speak the OpenAI Responses API faithfully: bearer auth,
//! OpenAI's error shape, the `response` object with its usage, and the named
//! SSE events of a stream, numbered, ending in `response.completed`.

use std::time::Duration;

use hubgate_mock_provider::sse::{parse_all, SseParser};
use hubgate_mock_provider::{AnthropicUsage, MockConfig, MockHandle, MockProvider};
use serde_json::{json, Value};

const KEY: &str = "sk-proj-mock-provider-key";

async fn start() -> MockHandle {
    MockProvider::start(MockConfig::new(KEY)).await.unwrap()
}

fn request(mock: &MockHandle) -> reqwest::RequestBuilder {
    reqwest::Client::new().post(format!("{}/v1/responses", mock.base_url())).bearer_auth(KEY)
}

/// What Codex CLI sends, in short.
fn body(stream: bool) -> Value {
    json!({
        "model": "gpt-5-codex",
        "instructions": "You are Codex.",
        "stream": stream,
        "store": false,
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "fix the build"}]},
        ],
    })
}

fn usage() -> AnthropicUsage {
    AnthropicUsage {
        input_tokens: 952,
        output_tokens: 120,
        cache_creation_5m_input_tokens: 0,
        cache_creation_1h_input_tokens: 0,
        cache_read_input_tokens: 2048,
    }
}

fn expected_usage() -> Value {
    json!({
        "input_tokens": 3000,
        "input_tokens_details": {"cached_tokens": 2048},
        "output_tokens": 120,
        "output_tokens_details": {"reasoning_tokens": 64},
        "total_tokens": 3120,
    })
}

#[tokio::test]
async fn missing_or_wrong_key_is_401_in_openai_shape() {
    let mock = start().await;
    let url = format!("{}/v1/responses", mock.base_url());
    let client = reqwest::Client::new();
    let r = client.post(&url).json(&body(false)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    assert_eq!(v["error"]["code"], Value::Null, "{v}");
    assert!(v["error"].as_object().unwrap().contains_key("param"), "{v}");

    let r = client.post(&url).bearer_auth("sk-nope-0123456789").json(&body(false)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_api_key", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().starts_with("Incorrect API key provided"), "{v}");

    let r = request(&mock).json(&json!({"input": "hi"})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["param"], "model", "{v}");
    assert_eq!(v["error"]["message"], "Missing required parameter: 'model'.", "{v}");
}

#[tokio::test]
async fn json_reply_is_a_completed_response_with_the_configured_usage() {
    let mock = start().await;
    mock.set_usage(usage());
    mock.set_reasoning_tokens(64);
    let r = request(&mock).json(&body(false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["x-request-id"].to_str().unwrap().starts_with("req_"));
    let v: Value = r.json().await.unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("resp_"), "{v}");
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["model"], "gpt-5-codex");
    assert_eq!(v["instructions"], "You are Codex.");
    assert_eq!(v["store"], false);
    assert_eq!(v["error"], Value::Null);
    let output = v["output"].as_array().unwrap();
    assert_eq!(output.len(), 1);
    assert_eq!(output[0]["type"], "message");
    assert_eq!(output[0]["role"], "assistant");
    assert_eq!(output[0]["status"], "completed");
    assert!(output[0]["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(output[0]["content"][0]["type"], "output_text");
    assert_eq!(output[0]["content"][0]["text"], "You said: fix the build");
    assert_eq!(v["usage"], expected_usage());

    // A plain string input works too.
    let r = request(&mock).json(&json!({"model": "gpt-5", "input": "ping"})).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["output"][0]["content"][0]["text"], "You said: ping");
}

#[tokio::test]
async fn stream_has_the_real_event_sequence_and_usage() {
    let mock = start().await;
    mock.set_usage(usage());
    mock.set_reasoning_tokens(64);
    let r = request(&mock).json(&body(true)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream; charset=utf-8");
    let raw = r.bytes().await.unwrap();
    let text = std::str::from_utf8(&raw).unwrap();
    assert!(text.starts_with("event: response.created\ndata: {"), "{text}");
    assert!(!text.contains("[DONE]"), "the Responses API has no [DONE]");
    let events = parse_all(&raw);
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    let deltas = names.iter().filter(|n| **n == "response.output_text.delta").count();
    assert!(deltas >= 2, "{names:?}");
    let mut expected = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ];
    expected.extend(std::iter::repeat_n("response.output_text.delta", deltas));
    expected.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(names, expected);
    let data: Vec<Value> = events.iter().map(|e| e.json().unwrap()).collect();
    for (i, (e, d)) in events.iter().zip(&data).enumerate() {
        assert_eq!(d["type"], e.event.as_str(), "data type matches event name");
        assert_eq!(d["sequence_number"], i, "{d}");
    }
    let created = &data[0]["response"];
    assert_eq!(created["status"], "in_progress");
    assert_eq!(created["usage"], Value::Null);
    assert_eq!(created["model"], "gpt-5-codex");
    let item_id = data[2]["item"]["id"].as_str().unwrap();
    let text: String = data
        .iter()
        .filter(|d| d["type"] == "response.output_text.delta")
        .inspect(|d| assert_eq!(d["item_id"], item_id))
        .map(|d| d["delta"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(text, "You said: fix the build");
    assert_eq!(data[4 + deltas]["text"], text);
    let completed = &data.last().unwrap()["response"];
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["usage"], expected_usage());
    assert_eq!(completed["output"][0]["content"][0]["text"], text);
    assert_eq!(completed["id"], created["id"]);
}

#[tokio::test]
async fn gate_holds_the_stream_after_the_first_delta() {
    let mock = start().await;
    let gate = mock.arm_gate();
    let mut r = request(&mock).json(&body(true)).send().await.unwrap();
    let mut parser = SseParser::new();
    let mut seen = Vec::new();
    while !seen.iter().any(|e: &hubgate_mock_provider::sse::SseEvent| e.event == "response.output_text.delta") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), r.chunk()).await.unwrap().unwrap().unwrap();
        seen.extend(parser.push(&chunk));
    }
    gate.reached().await;
    let more = tokio::time::timeout(Duration::from_millis(300), r.chunk()).await;
    assert!(more.is_err(), "stream must wait at the gate");
    gate.release();
    while let Some(chunk) = r.chunk().await.unwrap() {
        seen.extend(parser.push(&chunk));
    }
    assert!(gate.is_finished());
    assert_eq!(seen.last().unwrap().event, "response.completed");
}
