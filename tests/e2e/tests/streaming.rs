//! SSE passes through unbuffered: the client holds the first event while the
//! provider is still holding back the rest of the stream (SPEC §6).

use std::time::Duration;

use hubgate_e2e::{decimal, simple_body, AnthropicUsage, Stack, StackOptions};
use hubgate_mock_provider::sse::{SseEvent, SseParser};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_event_arrives_before_the_provider_sends_the_last() {
    let stack = Stack::start(StackOptions::new("streaming")).await.unwrap();
    let (_user, key) = stack.user_with_key(json!({})).await.unwrap();
    let gate = stack.mock.arm_gate();

    let (req, _) = stack.messages(&key.raw);
    let mut resp = req.json(&simple_body("claude-sonnet-4-5", true, "stream please")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"),
        "{:?}",
        resp.headers()
    );

    let mut parser = SseParser::new();
    let mut events: Vec<SseEvent> = Vec::new();
    while events.is_empty() {
        let chunk = tokio::time::timeout(Duration::from_secs(15), resp.chunk())
            .await
            .expect("no SSE event reached the client while the provider holds the stream: the gateway buffers")
            .unwrap()
            .expect("stream ended before its first event");
        events.extend(parser.push(&chunk));
    }
    // The provider is still holding the rest back.
    assert!(!gate.is_released());
    assert!(!gate.is_finished(), "the provider had already sent its last event");
    assert_eq!(events[0].event, "message_start");
    assert_eq!(events[0].json().unwrap()["type"], "message_start");
    gate.reached().await;

    gate.release();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(15), resp.chunk()).await.unwrap().unwrap() {
        events.extend(parser.push(&chunk));
    }
    assert!(gate.is_finished());
    assert_eq!(parser.pending(), 0, "stream ended mid-event");
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(
        &names[names.len() - 3..],
        &["content_block_stop", "message_delta", "message_stop"],
        "{names:?}"
    );
    let text: String = events
        .iter()
        .filter(|e| e.event == "content_block_delta")
        .map(|e| e.json().unwrap()["delta"]["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(text, "You said: stream please");
}

/// A client that goes away mid-stream is billed for the output it was sent,
/// estimated from the text deltas seen (four characters a token), not for
/// `message_start`'s placeholder of 1 output token; the row says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_the_client_drops_is_billed_for_the_output_it_saw() {
    let stack = Stack::start(StackOptions::new("streaming_cut")).await.unwrap();
    let (user, key) = stack.user_with_key(json!({})).await.unwrap();
    let user_id = user["id"].as_i64().unwrap();
    let model = stack.claude_model("claude-sonnet-4").await.unwrap();
    let price = stack.price(&model).await.unwrap();
    let usage = AnthropicUsage {
        input_tokens: 2500,
        output_tokens: 999,
        cache_creation_5m_input_tokens: 0,
        cache_creation_1h_input_tokens: 0,
        cache_read_input_tokens: 1200,
    };
    stack.mock.set_usage(usage);
    let gate = stack.mock.arm_gate();

    // The mock answers "You said: " and the prompt's first 200 characters,
    // in three deltas; the gate holds the stream after the first (70 chars).
    let prompt = "abcdefghij".repeat(25);
    let (req, request_id) = stack.messages(&key.raw);
    let mut resp = req.json(&simple_body(&model, true, &prompt)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut parser = SseParser::new();
    let mut seen = String::new();
    while seen.is_empty() {
        let chunk = tokio::time::timeout(Duration::from_secs(15), resp.chunk())
            .await
            .expect("the first delta never arrived")
            .unwrap()
            .expect("stream ended before its first delta");
        for e in parser.push(&chunk) {
            if e.event == "content_block_delta" {
                seen += e.json().unwrap()["delta"]["text"].as_str().unwrap();
            }
        }
    }
    assert_eq!(seen.len(), 70, "{seen}");
    gate.reached().await;
    // The client goes away while the provider still holds the rest: Envoy
    // resets the stream (the gate is released only when the test ends).
    drop(resp);

    let row = stack.admin.wait_for_request(user_id, &request_id, Duration::from_secs(15)).await.unwrap();
    let flags: Vec<&str> = row["flags"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(flags.contains(&"stream_incomplete") && flags.contains(&"output_estimated"), "{row}");
    assert_eq!(row["input_tokens"], 2500, "{row}");
    assert_eq!(row["cache_read_tokens"], 1200, "{row}");
    assert_eq!(row["output_tokens"], 18, "70 characters seen: {row}");
    let billed = AnthropicUsage { output_tokens: 18, ..usage };
    let cost = decimal(&row["cost_usd"]).unwrap();
    assert_eq!(cost.normalize(), price.cost(&billed, stack.cost_multiplier).normalize(), "{row}");
}
