//! The mock must speak OpenAI Chat Completions faithfully: bearer auth,
//! OpenAI's error shape, the `chat.completion` object and its usage, and SSE
//! chunks whose usage comes only when `stream_options.include_usage` asks.

use std::time::Duration;

use hubgate_mock_provider::sse::{parse_all, SseParser};
use hubgate_mock_provider::{AnthropicUsage, MockConfig, MockHandle, MockProvider};
use serde_json::{json, Value};

const KEY: &str = "sk-proj-mock-provider-key";

async fn start() -> MockHandle {
    MockProvider::start(MockConfig::new(KEY)).await.unwrap()
}

fn request(mock: &MockHandle) -> reqwest::RequestBuilder {
    reqwest::Client::new().post(format!("{}/v1/chat/completions", mock.base_url())).bearer_auth(KEY)
}

fn body(stream: bool) -> Value {
    json!({
        "model": "gpt-4o",
        "stream": stream,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "hello there"}]},
        ],
    })
}

fn usage() -> AnthropicUsage {
    AnthropicUsage {
        input_tokens: 476,
        output_tokens: 42,
        cache_creation_5m_input_tokens: 0,
        cache_creation_1h_input_tokens: 0,
        cache_read_input_tokens: 1024,
    }
}

fn expected_usage() -> Value {
    json!({
        "prompt_tokens": 1500,
        "completion_tokens": 42,
        "total_tokens": 1542,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 10,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    })
}

#[track_caller]
fn assert_openai_error(v: &Value, error_type: &str, code: Value) {
    let error = v["error"].as_object().unwrap_or_else(|| panic!("not an OpenAI error: {v}"));
    assert_eq!(error.len(), 4, "message, type, param, code: {v}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert_eq!(error["type"], error_type, "{v}");
    assert!(error.contains_key("param"), "{v}");
    assert_eq!(error["code"], code, "{v}");
}

#[tokio::test]
async fn missing_or_wrong_key_is_401_in_openai_shape() {
    let mock = start().await;
    let url = format!("{}/v1/chat/completions", mock.base_url());
    let client = reqwest::Client::new();

    let r = client.post(&url).json(&body(false)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["x-request-id"].to_str().unwrap().starts_with("req_"));
    let v: Value = r.json().await.unwrap();
    assert_openai_error(&v, "invalid_request_error", Value::Null);
    assert!(v["error"]["message"].as_str().unwrap().starts_with("You didn't provide an API key."), "{v}");

    let r = client.post(&url).bearer_auth("sk-proj-wrong-key-0123456789").json(&body(false)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_openai_error(&v, "invalid_request_error", json!("invalid_api_key"));
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("Incorrect API key provided: sk-"), "{v}");
    assert!(!message.contains("wrong-key"), "the key is masked: {v}");

    // Anthropic's and Gemini's headers are not OpenAI credentials.
    let r = client.post(&url).header("x-api-key", KEY).header("x-goog-api-key", KEY).json(&body(false)).send().await;
    assert_eq!(r.unwrap().status(), 401);
}

#[tokio::test]
async fn bad_requests_are_400() {
    let mock = start().await;
    let r = request(&mock).body("{\"model\": ").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_openai_error(&r.json().await.unwrap(), "invalid_request_error", Value::Null);

    let r = request(&mock).json(&json!({"messages": [{"role": "user", "content": "hi"}]})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_openai_error(&v, "invalid_request_error", json!("missing_required_parameter"));
    assert_eq!(v["error"]["param"], "model");

    let r = request(&mock).json(&json!({"model": "gpt-4o", "messages": []})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_openai_error(&v, "invalid_request_error", json!("empty_array"));
    assert_eq!(v["error"]["param"], "messages");
}

#[tokio::test]
async fn json_reply_is_a_chat_completion_with_the_configured_usage() {
    let mock = start().await;
    mock.set_usage(usage());
    mock.set_reasoning_tokens(10);
    let r = request(&mock).json(&body(false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    assert!(r.headers()["x-request-id"].to_str().unwrap().starts_with("req_"));
    let v: Value = r.json().await.unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"), "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(v["model"], "gpt-4o");
    assert_eq!(v["choices"].as_array().unwrap().len(), 1);
    assert_eq!(v["choices"][0]["index"], 0);
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], "You said: hello there");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"], expected_usage());

    let seen = mock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].header("authorization"), Some(format!("Bearer {KEY}").as_str()));
}

/// The chunks of a stream, `[DONE]` checked and removed.
async fn chunks(r: reqwest::Response) -> Vec<Value> {
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream; charset=utf-8");
    let raw = r.bytes().await.unwrap();
    assert!(std::str::from_utf8(&raw).unwrap().starts_with("data: {"));
    let events = parse_all(&raw);
    assert!(events.iter().all(|e| e.event.is_empty()), "chat chunks have no event names");
    let (last, rest) = events.split_last().unwrap();
    assert_eq!(last.data, "[DONE]");
    rest.iter().map(|e| e.json().unwrap()).collect()
}

#[tokio::test]
async fn stream_without_include_usage_has_no_usage_at_all() {
    let mock = start().await;
    mock.set_usage(usage());
    let chunks = chunks(request(&mock).json(&body(true)).send().await.unwrap()).await;
    assert!(chunks.len() >= 3);
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk", "{c}");
        assert_eq!(c["id"], id, "{c}");
        assert_eq!(c["model"], "gpt-4o", "{c}");
        assert!(c.get("usage").is_none(), "no usage field unless asked: {c}");
        assert_eq!(c["choices"].as_array().unwrap().len(), 1, "{c}");
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[0]["choices"][0]["delta"]["content"], "");
    let text: String =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect::<Vec<_>>().concat();
    assert_eq!(text, "You said: hello there");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert!(chunks[..chunks.len() - 1].iter().all(|c| c["choices"][0]["finish_reason"].is_null()));

    // include_usage: false is the same as leaving it out.
    let mut b = body(true);
    b["stream_options"] = json!({"include_usage": false});
    let chunks = self::chunks(request(&mock).json(&b).send().await.unwrap()).await;
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
}

#[tokio::test]
async fn stream_with_include_usage_ends_with_a_usage_chunk() {
    let mock = start().await;
    mock.set_usage(usage());
    mock.set_reasoning_tokens(10);
    let mut b = body(true);
    b["stream_options"] = json!({"include_usage": true});
    let r = request(&mock).json(&b).send().await.unwrap();
    let raw_chunks = chunks(r).await;
    let (usage_chunk, rest) = raw_chunks.split_last().unwrap();
    assert_eq!(usage_chunk["object"], "chat.completion.chunk");
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"], expected_usage());
    for c in rest {
        assert!(c.get("usage").is_some_and(Value::is_null), "every other chunk has \"usage\": null: {c}");
    }
    assert_eq!(rest.last().unwrap()["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn gate_holds_the_stream_after_the_first_delta() {
    let mock = start().await;
    let gate = mock.arm_gate();
    let mut r = request(&mock).json(&body(true)).send().await.unwrap();
    let mut parser = SseParser::new();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let chunk = tokio::time::timeout(Duration::from_secs(10), r.chunk()).await.unwrap().unwrap().unwrap();
        seen.extend(parser.push(&chunk));
    }
    gate.reached().await;
    assert!(!gate.is_finished());
    let more = tokio::time::timeout(Duration::from_millis(300), r.chunk()).await;
    assert!(more.is_err(), "stream must wait at the gate");
    gate.release();
    while let Some(chunk) = r.chunk().await.unwrap() {
        seen.extend(parser.push(&chunk));
    }
    assert!(gate.is_finished());
    assert_eq!(seen.last().unwrap().data, "[DONE]");
}
