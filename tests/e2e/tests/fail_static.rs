//! Fail-static (SPEC §1): with the control plane down, known keys keep
//! working on cached policy, unknown keys get a clear 503, and usage events
//! wait in a bounded queue. Once it is back, every queued event is stored;
//! events beyond the bound are dropped and counted, never silently lost.

use std::time::Duration;

use hubgate_e2e::{Stack, StackOptions};
use serde_json::{json, Value};

const QUEUE_MAX: u64 = 10;

async fn total_rows(stack: &Stack) -> u64 {
    let page = stack.admin.get("/api/v1/requests?page_size=1").await.unwrap();
    page["total"].as_u64().unwrap()
}

async fn wait_for_total(stack: &Stack, want: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let total = total_rows(stack).await;
        if total >= want || tokio::time::Instant::now() > deadline {
            return total;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_for_dropped(stack: &Stack, want: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let dropped = stack.filter_counter("hubgate_events_dropped_total").await.unwrap();
        if dropped >= want || tokio::time::Instant::now() > deadline {
            return dropped;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn send(stack: &Stack, key: &str) -> (u16, Value) {
    let (req, _) = stack.messages(key);
    let resp = req
        .json(&hubgate_e2e::simple_body("claude-sonnet-4-5", false, "offline"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_outage_loses_nothing_within_the_bound() {
    let mut stack = Stack::start(
        StackOptions::new("fail_static").poll_interval_ms(300).plugin("event_queue_max", json!(QUEUE_MAX)),
    )
    .await
    .unwrap();
    let (_user, key) = stack.user_with_key(json!({})).await.unwrap();

    // Warm the key cache, and let every event so far be delivered.
    assert_eq!(send(&stack, &key.raw).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let before = total_rows(&stack).await;
    assert_eq!(wait_for_total(&stack, before).await, before);

    stack.stop_control_plane();
    tokio::time::sleep(stack.poll_interval * 2).await;

    // Known key: served from cache. 12 requests + 1 refused = 13 events for
    // a queue of 10: 3 must be dropped and counted.
    for _ in 0..12 {
        let (status, body) = send(&stack, &key.raw).await;
        assert_eq!(status, 200, "a known key must keep working while the control plane is down: {body}");
    }
    let (status, body) = send(&stack, "sk-never-issued-0123456789abcdef").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "auth_unavailable", "{body}");
    // Each worker puts its batch on the queue on its tick: the drops are
    // counted then.
    assert_eq!(wait_for_dropped(&stack, 3).await, 3);
    tokio::time::sleep(stack.poll_interval * 2).await;
    assert_eq!(stack.filter_counter("hubgate_events_dropped_total").await.unwrap(), 3);

    stack.restart_control_plane().await.unwrap();
    let after = wait_for_total(&stack, before + QUEUE_MAX).await;
    // Nothing more arrives later (no duplicates from retried batches).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(total_rows(&stack).await, before + QUEUE_MAX, "first seen {after}");
    assert_eq!(stack.filter_counter("hubgate_events_dropped_total").await.unwrap(), 3);

    // And the gateway is fully back: new requests are served and recorded.
    assert_eq!(send(&stack, &key.raw).await.0, 200);
    assert_eq!(wait_for_total(&stack, before + QUEUE_MAX + 1).await, before + QUEUE_MAX + 1);
}
