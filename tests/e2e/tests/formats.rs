//! Every client format end to end: OpenAI Chat Completions, the Responses
//! API and Gemini go through the real Envoy and filter to a provider of their
//! type, reach it with the provider's credential instead of the hubgate key,
//! and are billed from the usage the provider reported: exact token counts,
//! cost = price × tokens × the provider's multiplier. Refusals come in each
//! format's own error dialect.

use std::time::Duration;

use hubgate_e2e::{decimal, read_json, AnthropicUsage, Price, RecordedRequest, Stack, StackOptions};
use hubgate_mock_provider::sse::parse_all;
use rust_decimal::Decimal;
use serde_json::{json, Value};

/// Usage with only what OpenAI and Gemini report: input (uncached),
/// output and cache reads.
fn usage(input: u64, output: u64, cache_read: u64) -> AnthropicUsage {
    AnthropicUsage {
        input_tokens: input,
        output_tokens: output,
        cache_creation_5m_input_tokens: 0,
        cache_creation_1h_input_tokens: 0,
        cache_read_input_tokens: cache_read,
    }
}

/// A user and key of the stack, with the user's id.
async fn client(stack: &Stack) -> (i64, String) {
    let (user, key) = stack.user_with_key(json!({})).await.unwrap();
    (user["id"].as_i64().unwrap(), key.raw)
}

/// Sends `request()` until the gateway answers 200: the filter has the
/// policy with the new provider. The probes are then forgotten by the mock.
async fn wait_until_routed(stack: &Stack, request: impl Fn() -> reqwest::RequestBuilder) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let resp = request().send().await.unwrap();
        let status = resp.status();
        if status == 200 {
            resp.bytes().await.unwrap();
            stack.mock.clear_requests();
            return;
        }
        let body = resp.text().await.unwrap_or_default();
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gateway never routed to the new provider: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The one request the mock received since it was last cleared.
#[track_caller]
fn only_request(stack: &Stack) -> RecordedRequest {
    let seen = stack.mock.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    stack.mock.clear_requests();
    seen.into_iter().next().unwrap()
}

/// The provider's credential reached the mock, in the header `name` (with
/// `prefix`), and no client credential did.
#[track_caller]
fn assert_provider_credential(seen: &RecordedRequest, stack: &Stack, name: &str, prefix: &str, hubgate_key: &str) {
    assert_eq!(seen.header(name), Some(format!("{prefix}{}", stack.mock.api_key()).as_str()), "{seen:?}");
    for header in ["authorization", "x-api-key", "x-goog-api-key"] {
        for value in seen.header_values(header) {
            assert!(!value.contains(hubgate_key), "the hubgate key reached the provider in {header}: {seen:?}");
        }
        if header != name {
            assert!(seen.header(header).is_none(), "unexpected {header} at the provider: {seen:?}");
        }
    }
    assert!(!seen.query.as_deref().unwrap_or_default().contains(hubgate_key), "{seen:?}");
}

/// The audit row of `request_id`, billed exactly for `billed` at `price`
/// times `multiplier`, with no estimate.
async fn assert_billed(
    stack: &Stack,
    user_id: i64,
    request_id: &str,
    billed: &AnthropicUsage,
    price: &Price,
    multiplier: Decimal,
) -> Value {
    let row = stack.admin.wait_for_request(user_id, request_id, Duration::from_secs(15)).await.unwrap();
    println!("audit row: {row}");
    assert_eq!(row["status"], 200, "{row}");
    assert_eq!(row["flags"], json!([]), "exact usage, nothing estimated: {row}");
    assert_eq!(row["input_tokens"], billed.input_tokens, "{row}");
    assert_eq!(row["output_tokens"], billed.output_tokens, "{row}");
    assert_eq!(row["cache_read_tokens"], billed.cache_read_input_tokens, "{row}");
    assert_eq!(row["cache_creation_5m_tokens"], 0, "{row}");
    assert_eq!(row["cache_creation_1h_tokens"], 0, "{row}");
    let cost = decimal(&row["cost_usd"]).unwrap();
    let expected = price.cost(billed, multiplier);
    assert!(expected > Decimal::ZERO);
    assert_eq!(cost.normalize(), expected.normalize(), "cost of {row}");
    assert_eq!(decimal(&row["cost_multiplier"]).unwrap().normalize(), multiplier.normalize(), "{row}");
    assert!(row["blocked_by"].is_null(), "{row}");
    row
}

#[track_caller]
fn assert_openai_error(body: &Value, error_type: &str, code: &str, request_id: &str) {
    assert_eq!(body["error"]["type"], error_type, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["param"], Value::Null, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert_eq!(body["request_id"], request_id, "{body}");
    assert!(body.get("type").is_none(), "not the Anthropic shape: {body}");
}

fn chat_body(model: &str, stream: bool, text: &str) -> Value {
    json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completions_are_routed_and_billed_exactly() {
    let stack = Stack::start(StackOptions::new("formats_chat")).await.unwrap();
    let multiplier = Decimal::new(125, 2);
    let provider = stack.mock_provider("mock-openai", "openai-compatible", multiplier).await.unwrap();
    let (user_id, key) = client(&stack).await;
    let model = "gpt-4o";
    let price = stack.price(model).await.unwrap();
    let chat = |key: &str| {
        let (req, request_id) = stack.request(reqwest::Method::POST, "/v1/chat/completions");
        (req.bearer_auth(key), request_id)
    };
    wait_until_routed(&stack, || chat(&key).0.json(&chat_body(model, false, "probe"))).await;

    // --- JSON: prompt_tokens holds the cached tokens, billed as cache reads.
    let billed = usage(476, 42, 1024);
    stack.mock.set_usage(billed);
    let (req, request_id) = chat(&key);
    let resp = req.json(&chat_body(model, false, "bill me")).send().await.unwrap();
    let (status, _, reply) = read_json(resp).await.unwrap();
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["object"], "chat.completion", "{reply}");
    assert_eq!(reply["choices"][0]["message"]["content"], "You said: bill me", "{reply}");
    assert_eq!(reply["usage"]["prompt_tokens"], 1500, "usage reaches the client unchanged: {reply}");
    assert_eq!(reply["usage"]["prompt_tokens_details"]["cached_tokens"], 1024, "{reply}");
    let seen = only_request(&stack);
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_provider_credential(&seen, &stack, "authorization", "Bearer ", &key);
    assert_eq!(seen.json().unwrap()["messages"][1]["content"], "bill me");
    let row = assert_billed(&stack, user_id, &request_id, &billed, &price, multiplier).await;
    assert_eq!(row["provider_id"], provider["id"], "{row}");
    assert_eq!(row["endpoint"], "/v1/chat/completions", "{row}");
    assert_eq!(row["original_model"], model, "{row}");
    assert_eq!(row["upstream_model"], model, "the model the provider reported: {row}");
    assert_eq!(row["stream"], false, "{row}");

    // --- Stream with stream_options.include_usage: the last chunk's usage.
    let billed = usage(3001, 1999, 40960);
    stack.mock.set_usage(billed);
    let mut body = chat_body(model, true, "stream and bill me");
    body["stream_options"] = json!({"include_usage": true});
    let (req, request_id) = chat(&key);
    let resp = req.json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let events = parse_all(&resp.bytes().await.unwrap());
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let usage_chunk = events[events.len() - 2].json().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]), "{usage_chunk}");
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], 43961, "{usage_chunk}");
    let text: String = events
        .iter()
        .filter_map(|e| e.json())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect();
    assert_eq!(text, "You said: stream and bill me");
    assert_provider_credential(&only_request(&stack), &stack, "authorization", "Bearer ", &key);
    let row = assert_billed(&stack, user_id, &request_id, &billed, &price, multiplier).await;
    assert_eq!(row["stream"], true, "{row}");

    // --- Stream without include_usage: hubgate asks the provider for the
    // usage, bills it exactly, and the client gets the stream it asked for
    // (no usage chunk, the same text).
    let billed = usage(700, 33, 0);
    stack.mock.set_usage(billed);
    stack.mock.clear_requests();
    let body = chat_body(model, true, "no usage asked");
    let (req, request_id) = chat(&key);
    let resp = req.json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let events = parse_all(&resp.bytes().await.unwrap());
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let chunks: Vec<Value> = events.iter().filter_map(|e| e.json()).collect();
    assert!(chunks.iter().all(|c| c["choices"] != json!([])), "no usage chunk reaches the client: {chunks:?}");
    let text: String =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_string)).collect();
    assert_eq!(text, "You said: no usage asked");
    let sent = only_request(&stack).json().unwrap();
    assert_eq!(sent["stream_options"], json!({"include_usage": true}), "asked of the provider: {sent}");
    assert_eq!(sent["messages"], body["messages"], "the rest of the body as sent");
    let row = assert_billed(&stack, user_id, &request_id, &billed, &price, multiplier).await;
    assert_eq!(row["stream"], true, "{row}");

    // --- A wrong hubgate key: 401 in OpenAI's shape, nothing forwarded.
    let (req, request_id) = chat("hg-not-a-real-key-0123456789abcdef");
    let resp = req.json(&chat_body(model, false, "x")).send().await.unwrap();
    let (status, headers, reply) = read_json(resp).await.unwrap();
    assert_eq!(status, 401, "{reply}");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-hubgate-error-code"], "invalid_api_key");
    assert_openai_error(&reply, "authentication_error", "invalid_api_key", &request_id);
    assert!(stack.mock.requests().is_empty(), "a refused request must not reach the provider");
}

fn responses_body(model: &str, stream: bool, text: &str) -> Value {
    json!({
        "model": model,
        "instructions": "You are a coding agent.",
        "stream": stream,
        "store": false,
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_api_is_routed_and_billed_exactly() {
    let stack = Stack::start(StackOptions::new("formats_responses")).await.unwrap();
    let multiplier = Decimal::TWO;
    let provider = stack.mock_provider("mock-codex", "codex", multiplier).await.unwrap();
    let (user_id, key) = client(&stack).await;
    let model = "gpt-5-codex";
    let price = stack.price(model).await.unwrap();
    let responses = |key: &str| {
        let (req, request_id) = stack.request(reqwest::Method::POST, "/v1/responses");
        (req.bearer_auth(key), request_id)
    };
    wait_until_routed(&stack, || responses(&key).0.json(&responses_body(model, false, "probe"))).await;

    // --- JSON: input_tokens holds the cached tokens; reasoning is output.
    let billed = usage(952, 120, 2048);
    stack.mock.set_usage(billed);
    stack.mock.set_reasoning_tokens(64);
    let (req, request_id) = responses(&key);
    let resp = req.json(&responses_body(model, false, "fix it")).send().await.unwrap();
    let (status, _, reply) = read_json(resp).await.unwrap();
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["object"], "response", "{reply}");
    assert_eq!(reply["status"], "completed", "{reply}");
    assert_eq!(reply["output"][0]["content"][0]["text"], "You said: fix it", "{reply}");
    assert_eq!(reply["usage"]["input_tokens"], 3000, "{reply}");
    let seen = only_request(&stack);
    assert_eq!(seen.path, "/v1/responses");
    assert_provider_credential(&seen, &stack, "authorization", "Bearer ", &key);
    let row = assert_billed(&stack, user_id, &request_id, &billed, &price, multiplier).await;
    assert_eq!(row["provider_id"], provider["id"], "{row}");
    assert_eq!(row["endpoint"], "/v1/responses", "{row}");
    assert_eq!(row["upstream_model"], model, "{row}");

    // --- Stream: the usage of response.completed.
    let billed = usage(10_000, 777, 50_000);
    stack.mock.set_usage(billed);
    let (req, request_id) = responses(&key);
    let resp = req.json(&responses_body(model, true, "stream it")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let events = parse_all(&resp.bytes().await.unwrap());
    assert_eq!(events.first().unwrap().event, "response.created");
    let completed = events.last().unwrap();
    assert_eq!(completed.event, "response.completed");
    assert_eq!(completed.json().unwrap()["response"]["usage"]["input_tokens"], 60_000);
    let text: String = events
        .iter()
        .filter(|e| e.event == "response.output_text.delta")
        .map(|e| e.json().unwrap()["delta"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(text, "You said: stream it");
    assert_provider_credential(&only_request(&stack), &stack, "authorization", "Bearer ", &key);
    let row = assert_billed(&stack, user_id, &request_id, &billed, &price, multiplier).await;
    assert_eq!(row["stream"], true, "{row}");

    // --- No key at all: 401 in OpenAI's shape.
    let (req, request_id) = stack.request(reqwest::Method::POST, "/v1/responses");
    let resp = req.json(&responses_body(model, false, "x")).send().await.unwrap();
    let (status, _, reply) = read_json(resp).await.unwrap();
    assert_eq!(status, 401, "{reply}");
    assert_openai_error(&reply, "authentication_error", "missing_api_key", &request_id);
    assert!(stack.mock.requests().is_empty());
}

fn gemini_body(text: &str) -> Value {
    json!({
        "contents": [{"role": "user", "parts": [{"text": text}]}],
        "generationConfig": {"maxOutputTokens": 256},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_is_routed_and_billed_exactly() {
    let stack = Stack::start(StackOptions::new("formats_gemini")).await.unwrap();
    let multiplier = Decimal::new(8, 1);
    let provider = stack.mock_provider("mock-gemini", "gemini", multiplier).await.unwrap();
    let (user_id, key) = client(&stack).await;
    let model = "gemini-2.5-pro";
    let price = stack.price(model).await.unwrap();
    let gemini = |method: &str, query: &str| {
        stack.request(reqwest::Method::POST, &format!("/v1beta/models/{model}:{method}{query}"))
    };
    let probe = || gemini("generateContent", "").0.header("x-goog-api-key", &key).json(&gemini_body("probe"));
    wait_until_routed(&stack, probe).await;

    // --- generateContent, key in x-goog-api-key: cached tokens inside the
    // prompt count, thinking tokens beside the candidates, both billed.
    let billed = usage(400, 50, 500);
    stack.mock.set_usage(billed);
    stack.mock.set_reasoning_tokens(20);
    let (req, request_id) = gemini("generateContent", "");
    let resp = req.header("x-goog-api-key", &key).json(&gemini_body("bill me")).send().await.unwrap();
    let (status, _, reply) = read_json(resp).await.unwrap();
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["candidates"][0]["content"]["parts"][0]["text"], "You said: bill me", "{reply}");
    assert_eq!(reply["usageMetadata"]["promptTokenCount"], 900, "{reply}");
    assert_eq!(reply["usageMetadata"]["thoughtsTokenCount"], 20, "{reply}");
    let seen = only_request(&stack);
    assert_eq!(seen.path, format!("/v1beta/models/{model}:generateContent"));
    assert_provider_credential(&seen, &stack, "x-goog-api-key", "", &key);
    let row = assert_billed(&stack, user_id, &request_id, &billed, &price, multiplier).await;
    assert_eq!(row["provider_id"], provider["id"], "{row}");
    assert_eq!(row["original_model"], model, "{row}");
    assert_eq!(row["upstream_model"], model, "modelVersion: {row}");

    // --- streamGenerateContent?alt=sse, key in ?key=: the last event's
    // cumulative counts. The key is taken off the query before the provider.
    let billed = usage(12_345, 678, 4_096);
    stack.mock.set_usage(billed);
    stack.mock.set_reasoning_tokens(100);
    let (req, request_id) = gemini("streamGenerateContent", &format!("?alt=sse&key={key}"));
    let resp = req.json(&gemini_body("stream it")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let chunks: Vec<Value> = parse_all(&resp.bytes().await.unwrap()).iter().map(|e| e.json().unwrap()).collect();
    let text: String =
        chunks.iter().map(|c| c["candidates"][0]["content"]["parts"][0]["text"].as_str().unwrap()).collect();
    assert_eq!(text, "You said: stream it");
    assert_eq!(chunks.last().unwrap()["candidates"][0]["finishReason"], "STOP");
    let seen = only_request(&stack);
    assert_eq!(seen.path, format!("/v1beta/models/{model}:streamGenerateContent"));
    assert_eq!(seen.query.as_deref(), Some("alt=sse"), "only the key is taken off the query");
    assert_provider_credential(&seen, &stack, "x-goog-api-key", "", &key);
    let row = assert_billed(&stack, user_id, &request_id, &billed, &price, multiplier).await;
    assert_eq!(row["stream"], true, "{row}");

    // --- streamGenerateContent without alt=sse: one JSON array, the usage of
    // its last element.
    let billed = usage(2_000, 300, 0);
    stack.mock.set_usage(billed);
    stack.mock.set_reasoning_tokens(0);
    let (req, request_id) = gemini("streamGenerateContent", "");
    let resp = req.header("x-goog-api-key", &key).json(&gemini_body("array")).send().await.unwrap();
    let (status, _, reply) = read_json(resp).await.unwrap();
    assert_eq!(status, 200, "{reply}");
    assert!(reply.as_array().is_some_and(|a| a.len() >= 2), "{reply}");
    assert_provider_credential(&only_request(&stack), &stack, "x-goog-api-key", "", &key);
    assert_billed(&stack, user_id, &request_id, &billed, &price, multiplier).await;

    // --- countTokens passes through, unbilled.
    let (req, request_id) = gemini("countTokens", "");
    let resp = req.header("x-goog-api-key", &key).json(&gemini_body("count me")).send().await.unwrap();
    let (status, _, reply) = read_json(resp).await.unwrap();
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["totalTokens"], 2_000, "{reply}");
    let seen = only_request(&stack);
    assert_eq!(seen.path, format!("/v1beta/models/{model}:countTokens"));
    assert_provider_credential(&seen, &stack, "x-goog-api-key", "", &key);
    let row = stack.admin.wait_for_request(user_id, &request_id, Duration::from_secs(15)).await.unwrap();
    println!("count tokens row: {row}");
    assert_eq!(row["status"], 200, "{row}");
    assert_eq!(decimal(&row["cost_usd"]).unwrap(), Decimal::ZERO, "{row}");
    assert_eq!(row["endpoint"], format!("/v1beta/models/{model}:countTokens"), "{row}");

    // --- A wrong hubgate key in ?key=: 401 in Google's shape.
    let (req, request_id) = gemini("generateContent", "?key=hg-not-a-real-key-0123456789abcdef");
    let resp = req.json(&gemini_body("x")).send().await.unwrap();
    let (status, headers, reply) = read_json(resp).await.unwrap();
    assert_eq!(status, 401, "{reply}");
    assert_eq!(headers["x-hubgate-error-code"], "invalid_api_key");
    assert_eq!(reply["error"]["code"], 401, "{reply}");
    assert_eq!(reply["error"]["status"], "UNAUTHENTICATED", "{reply}");
    assert!(reply["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{reply}");
    assert_eq!(reply["error"]["details"][0]["reason"], "invalid_api_key", "{reply}");
    assert_eq!(reply["error"]["details"][0]["metadata"]["request_id"], request_id.as_str(), "{reply}");
    assert!(!reply.to_string().contains("hg-not-a-real-key"), "the key is never echoed: {reply}");
    assert!(stack.mock.requests().is_empty());
}
