//! SSE passes through unbuffered: the client holds the first event while the
//! provider is still holding back the rest of the stream (SPEC §6).

use std::time::Duration;

use hubgate_e2e::{simple_body, Stack, StackOptions};
use hubgate_mock_provider::sse::{SseEvent, SseParser};
use serde_json::json;

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
