//! The mock must speak the Gemini API faithfully: `x-goog-api-key` or
//! `?key=`, Google's error shape, `usageMetadata` (cumulative in streams),
//! SSE with `alt=sse` and a JSON array without, and countTokens.

use std::time::Duration;

use hubgate_mock_provider::sse::parse_all;
use hubgate_mock_provider::{AnthropicUsage, MockConfig, MockHandle, MockProvider};
use serde_json::{json, Value};

const KEY: &str = "AIzaSy-mock-provider-key";
const MODEL: &str = "gemini-2.5-pro";

async fn start() -> MockHandle {
    MockProvider::start(MockConfig::new(KEY)).await.unwrap()
}

fn url(mock: &MockHandle, method: &str) -> String {
    format!("{}/v1beta/models/{MODEL}:{method}", mock.base_url())
}

fn request(mock: &MockHandle, method: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new().post(url(mock, method)).header("x-goog-api-key", KEY)
}

fn body() -> Value {
    json!({
        "contents": [
            {"role": "user", "parts": [{"text": "first"}]},
            {"role": "model", "parts": [{"text": "ok"}]},
            {"role": "user", "parts": [{"text": "hello there"}]},
        ],
        "generationConfig": {"thinkingConfig": {"includeThoughts": false}},
    })
}

fn usage() -> AnthropicUsage {
    AnthropicUsage {
        input_tokens: 400,
        output_tokens: 50,
        cache_creation_5m_input_tokens: 0,
        cache_creation_1h_input_tokens: 0,
        cache_read_input_tokens: 500,
    }
}

#[track_caller]
fn assert_google_error(v: &Value, code: u16, status: &str, message_start: &str) {
    assert_eq!(v["error"]["code"], code, "{v}");
    assert_eq!(v["error"]["status"], status, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().starts_with(message_start), "{v}");
}

#[tokio::test]
async fn missing_or_wrong_key_in_google_shape() {
    let mock = start().await;
    let client = reqwest::Client::new();

    let r = client.post(url(&mock, "generateContent")).json(&body()).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_google_error(&v, 403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers");

    let r = client.post(url(&mock, "generateContent")).header("x-goog-api-key", "AIza-wrong").json(&body()).send();
    let r = r.await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_google_error(&v, 400, "INVALID_ARGUMENT", "API key not valid.");
    assert_eq!(v["error"]["details"][0]["reason"], "API_KEY_INVALID", "{v}");

    let r = client.post(format!("{}?key=AIza-wrong", url(&mock, "countTokens"))).json(&body()).send().await.unwrap();
    assert_eq!(r.status(), 400);

    // A bearer token would be an OAuth access token, not the API key.
    let r = client.post(url(&mock, "generateContent")).bearer_auth(KEY).json(&body()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_google_error(&r.json().await.unwrap(), 401, "UNAUTHENTICATED", "Request had invalid authentication");
}

#[tokio::test]
async fn bad_requests_are_400_and_unknown_methods_404() {
    let mock = start().await;
    let r = request(&mock, "generateContent").json(&json!({"contents": []})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_google_error(&r.json().await.unwrap(), 400, "INVALID_ARGUMENT", "* GenerateContentRequest.contents");

    let r = request(&mock, "generateContent").body("{\"contents\": ").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_google_error(&r.json().await.unwrap(), 400, "INVALID_ARGUMENT", "Invalid JSON payload received.");

    let r = request(&mock, "embedContent").json(&body()).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_google_error(&r.json().await.unwrap(), 404, "NOT_FOUND", "");
}

#[tokio::test]
async fn generate_content_reports_usage_metadata() {
    let mock = start().await;
    mock.set_usage(usage());
    mock.set_reasoning_tokens(20);
    let r = request(&mock, "generateContent").json(&body()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let v: Value = r.json().await.unwrap();
    let candidate = &v["candidates"][0];
    assert_eq!(candidate["content"]["role"], "model");
    assert_eq!(candidate["content"]["parts"][0]["text"], "You said: hello there");
    assert_eq!(candidate["finishReason"], "STOP");
    assert_eq!(candidate["index"], 0);
    assert_eq!(v["modelVersion"], MODEL);
    assert!(v["responseId"].as_str().is_some_and(|id| !id.is_empty()));
    let u = &v["usageMetadata"];
    assert_eq!(u["promptTokenCount"], 900, "cached tokens are inside the prompt count: {u}");
    assert_eq!(u["cachedContentTokenCount"], 500, "{u}");
    assert_eq!(u["candidatesTokenCount"], 30, "{u}");
    assert_eq!(u["thoughtsTokenCount"], 20, "{u}");
    assert_eq!(u["totalTokenCount"], 950, "{u}");

    // Zero counts are left out, as the API does; `?key=` works as well.
    mock.set_reasoning_tokens(0);
    mock.set_usage(AnthropicUsage { cache_read_input_tokens: 0, ..usage() });
    let r = reqwest::Client::new()
        .post(format!("{}?key={KEY}", url(&mock, "generateContent")))
        .json(&body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let u = r.json::<Value>().await.unwrap()["usageMetadata"].clone();
    assert!(u.get("cachedContentTokenCount").is_none() && u.get("thoughtsTokenCount").is_none(), "{u}");
    assert_eq!((u["promptTokenCount"].as_u64(), u["candidatesTokenCount"].as_u64()), (Some(400), Some(50)));
    assert_eq!(mock.requests().last().unwrap().query_param("key"), Some(KEY));
}

/// Checks a stream's chunks: text pieces, cumulative usage ending at the
/// configured counts, `finishReason` on the last only.
#[track_caller]
fn assert_stream_chunks(chunks: &[Value]) {
    assert!(chunks.len() >= 2, "{chunks:?}");
    let text: String =
        chunks.iter().map(|c| c["candidates"][0]["content"]["parts"][0]["text"].as_str().unwrap()).collect();
    assert_eq!(text, "You said: hello there");
    let mut previous = 0;
    for (i, c) in chunks.iter().enumerate() {
        let u = &c["usageMetadata"];
        assert_eq!(u["promptTokenCount"], 900, "{c}");
        assert_eq!(u["cachedContentTokenCount"], 500, "{c}");
        assert_eq!(u["thoughtsTokenCount"], 20, "{c}");
        let candidates = u["candidatesTokenCount"].as_u64().unwrap();
        assert!(candidates >= previous, "counts so far only grow: {c}");
        assert_eq!(u["totalTokenCount"], 900 + 20 + candidates, "{c}");
        previous = candidates;
        assert_eq!(c["modelVersion"], MODEL);
        let last = i == chunks.len() - 1;
        assert_eq!(c["candidates"][0]["finishReason"], if last { json!("STOP") } else { Value::Null }, "{c}");
    }
    assert_eq!(previous, 30);
}

#[tokio::test]
async fn stream_with_alt_sse_is_data_lines_with_cumulative_usage() {
    let mock = start().await;
    mock.set_usage(usage());
    mock.set_reasoning_tokens(20);
    let r = reqwest::Client::new()
        .post(format!("{}?alt=sse", url(&mock, "streamGenerateContent")))
        .header("x-goog-api-key", KEY)
        .json(&body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let raw = r.bytes().await.unwrap();
    let text = std::str::from_utf8(&raw).unwrap();
    assert!(text.starts_with("data: {") && text.ends_with("}\r\n\r\n"), "{text}");
    assert!(!text.contains("event:"), "{text}");
    let events = parse_all(&raw);
    let chunks: Vec<Value> = events.iter().map(|e| e.json().unwrap()).collect();
    assert_stream_chunks(&chunks);
}

#[tokio::test]
async fn stream_without_alt_is_one_json_array() {
    let mock = start().await;
    mock.set_usage(usage());
    mock.set_reasoning_tokens(20);
    let r = request(&mock, "streamGenerateContent").json(&body()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let chunks: Vec<Value> = r.json().await.unwrap();
    assert_stream_chunks(&chunks);
}

#[tokio::test]
async fn gate_holds_the_stream_after_the_first_chunk() {
    let mock = start().await;
    let gate = mock.arm_gate();
    let mut r = request(&mock, "streamGenerateContent?alt=sse").json(&body()).send().await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), r.chunk()).await.unwrap().unwrap().unwrap();
    assert!(first.starts_with(b"data: {"));
    gate.reached().await;
    let more = tokio::time::timeout(Duration::from_millis(300), r.chunk()).await;
    assert!(more.is_err(), "stream must wait at the gate");
    gate.release();
    let mut rest = Vec::new();
    while let Some(chunk) = r.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert!(gate.is_finished());
    assert!(std::str::from_utf8(&rest).unwrap().contains("\"finishReason\":\"STOP\""));
}

#[tokio::test]
async fn count_tokens_reports_the_prompt() {
    let mock = start().await;
    mock.set_usage(usage());
    let r = request(&mock, "countTokens").json(&body()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["totalTokens"], 900, "{v}");
    // The v1 path is served too.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/models/{MODEL}:countTokens", mock.base_url()))
        .header("x-goog-api-key", KEY)
        .json(&json!({"contents": [{"parts": [{"text": "x"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Gemini CLI's routing call asks for JSON of a schema (OpenAPI type names)
/// and retries until the answer parses: the mock answers with a value of it.
#[tokio::test]
async fn json_mode_answers_a_value_of_the_schema() {
    let mock = start().await;
    let mut b = body();
    b["generationConfig"] = json!({
        "responseMimeType": "application/json",
        "responseJsonSchema": {
            "type": "OBJECT",
            "properties": {
                "complexity_reasoning": {"type": "STRING"},
                "complexity_score": {"type": "INTEGER", "minimum": 1, "maximum": 100},
                "model_choice": {"type": "string", "enum": ["flash", "pro"]},
                "steps": {"type": "array", "items": {"type": "number"}, "minItems": 2},
            },
            "required": ["complexity_reasoning", "complexity_score"],
        },
    });
    let reply: Value = request(&mock, "generateContent").json(&b).send().await.unwrap().json().await.unwrap();
    let text = reply["candidates"][0]["content"]["parts"][0]["text"].as_str().unwrap();
    let answer: Value = serde_json::from_str(text).unwrap();
    assert!(answer["complexity_reasoning"].as_str().is_some_and(|s| !s.is_empty()), "{answer}");
    assert_eq!(answer["complexity_score"], 1, "{answer}");
    assert_eq!(answer["model_choice"], "flash", "{answer}");
    assert_eq!(answer["steps"], json!([1.0, 1.0]), "{answer}");
    assert_eq!(reply["candidates"][0]["finishReason"], "STOP", "{reply}");

    // Without JSON mode the answer is the usual echo.
    let reply: Value = request(&mock, "generateContent").json(&body()).send().await.unwrap().json().await.unwrap();
    assert_eq!(reply["candidates"][0]["content"]["parts"][0]["text"], "You said: hello there");
}
