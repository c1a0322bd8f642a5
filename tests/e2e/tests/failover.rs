//! Failover inside one client request (SPEC §6, README "Failover"): when
//! the first provider fails before its answer started (5xx, refused
//! connection, first-byte timeout), the same request goes to the next
//! eligible provider, with that provider's credential and model redirect,
//! and the client gets its answer, streamed. The audit row and the bill are
//! the provider's that served. Each failed attempt counts on the failing
//! provider's circuit breaker. A stream that stalls past its provider's
//! idle timeout is cut, never retried.

use std::time::Duration;

use hubgate_e2e::envoy::free_port;
use hubgate_e2e::{decimal, read_json, simple_body, MockHandle, Stack, StackOptions};
use hubgate_mock_provider::sse::SseParser;
use hubgate_mock_provider::{Fault, MockConfig, MockProvider};
use serde_json::{json, Value};

const REQUESTED: &str = "claude-sonnet-4-5";

struct Setup {
    stack: Stack,
    key: String,
    user_id: i64,
    a_id: i64,
    b_id: i64,
    /// The model B's redirect sends instead of `REQUESTED`.
    b_model: String,
}

/// Provider A (priority 0) at `a_url` with `a_fields`, then provider B
/// (priority 1, the stack's mock, cost multiplier 2, redirecting
/// `REQUESTED` to another model). Waits until the gateway has both.
async fn setup(name: &str, a_url: &str, a_key: &str, a_fields: Value) -> Setup {
    let stack = Stack::start(StackOptions::new(name).without_provider()).await.unwrap();
    let b_model = stack.claude_model("claude-3-5-haiku").await.unwrap();
    let mut a = json!({"name": "a", "type": "claude", "base_url": a_url, "api_key": a_key, "priority": 0});
    a.as_object_mut().unwrap().extend(a_fields.as_object().unwrap().clone());
    let a = stack.admin.create_provider(a).await.unwrap();
    let b = stack
        .admin
        .create_provider(json!({"name": "b", "type": "claude", "base_url": stack.mock.base_url(),
            "api_key": stack.mock.api_key(), "priority": 1, "cost_multiplier": 2,
            "model_redirects": [{"match_type": "exact", "pattern": REQUESTED, "target": b_model}]}))
        .await
        .unwrap();
    let (user, key) = stack.user_with_key(json!({})).await.unwrap();
    let setup = Setup {
        user_id: user["id"].as_i64().unwrap(),
        key: key.raw,
        a_id: a["id"].as_i64().unwrap(),
        b_id: b["id"].as_i64().unwrap(),
        b_model,
        stack,
    };
    // The policy with both providers reaches Envoy within a poll.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _, body) = setup.send(false).await;
        if status == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the gateway never routed: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    setup.stack.mock.clear_requests();
    setup
}

impl Setup {
    async fn send(&self, stream: bool) -> (u16, String, Value) {
        let (req, request_id) = self.stack.messages(&self.key);
        let resp = req.json(&simple_body(REQUESTED, stream, "fail over")).send().await.unwrap();
        let (status, _, body) = read_json(resp).await.unwrap();
        (status, request_id, body)
    }

    async fn row(&self, request_id: &str) -> Value {
        self.stack.admin.wait_for_request(self.user_id, request_id, Duration::from_secs(10)).await.unwrap()
    }

    /// The row names B, its upstream model, and B's price times B's
    /// multiplier.
    async fn assert_billed_to_b(&self, row: &Value) {
        assert_eq!(row["provider_id"], self.b_id, "{row}");
        assert_eq!(row["status"], 200, "{row}");
        assert_eq!(row["original_model"], REQUESTED, "{row}");
        assert_eq!(row["upstream_model"], self.b_model.as_str(), "{row}");
        let flags: Vec<&str> = row["flags"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert!(flags.contains(&"failover"), "{row}");
        let price = self.stack.price(&self.b_model).await.unwrap();
        let expected = price.cost(&self.stack.mock.usage(), rust_decimal::Decimal::from(2));
        assert_eq!(decimal(&row["cost_usd"]).unwrap(), expected, "{row}");
    }

    /// What B received: its own credential and the redirected model.
    fn assert_b_got_its_plan(&self) {
        let seen = self.stack.mock.requests();
        let last = seen.last().expect("B received nothing");
        assert_eq!(last.header("x-api-key"), Some(self.stack.mock.api_key()));
        assert_eq!(last.json().unwrap()["model"], self.b_model.as_str());
        assert_eq!(last.header("x-hubgate-attempt"), None, "internal headers stay inside the gateway");
        assert_eq!(last.header("x-envoy-attempt-count"), None);
    }
}

async fn mock(key: &str) -> MockHandle {
    MockProvider::start(MockConfig::new(key)).await.unwrap()
}

/// A answers 503 (or 429): the client gets B's answer in the same request,
/// plain and streamed; the row and the bill are B's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_goes_to_the_next_provider_streaming_included() {
    let a = mock("sk-ant-a-0123456789").await;
    a.set_fault(Some(Fault::Status(503)));
    let s = setup("failover_503", &a.base_url(), a.api_key(), json!({"circuit_failure_threshold": 100})).await;

    let before = a.request_count();
    let (status, request_id, body) = s.send(false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], s.b_model.as_str(), "B answered: {body}");
    assert_eq!(a.request_count(), before + 1, "A was tried first");
    let tried = a.requests();
    let to_a = tried.last().unwrap();
    assert_eq!(to_a.header("x-api-key"), Some(a.api_key()), "A got its own credential");
    assert_eq!(to_a.json().unwrap()["model"], REQUESTED, "and no redirect of B's");
    s.assert_b_got_its_plan();
    s.assert_billed_to_b(&s.row(&request_id).await).await;

    // A 429 is retried the same way.
    a.set_fault(Some(Fault::Status(429)));
    let before = a.request_count();
    let (status, request_id, body) = s.send(false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(a.request_count(), before + 1, "A was tried first");
    s.assert_billed_to_b(&s.row(&request_id).await).await;
    a.set_fault(Some(Fault::Status(503)));

    // Streaming: the client holds B's first event while B holds the rest.
    let gate = s.stack.mock.arm_gate();
    let (req, request_id) = s.stack.messages(&s.key);
    let mut resp = req.json(&simple_body(REQUESTED, true, "fail over")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    while events.is_empty() {
        let chunk = tokio::time::timeout(Duration::from_secs(15), resp.chunk())
            .await
            .expect("no event while B holds its stream: the failover path buffers")
            .unwrap()
            .expect("stream ended before its first event");
        events.extend(parser.push(&chunk));
    }
    assert!(!gate.is_finished(), "B had already sent its last event");
    gate.release();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(15), resp.chunk()).await.unwrap().unwrap() {
        events.extend(parser.push(&chunk));
    }
    assert_eq!(events.last().map(|e| e.event.as_str()), Some("message_stop"));
    assert_eq!(events[0].json().unwrap()["message"]["model"], s.b_model.as_str());
    s.assert_b_got_its_plan();
    let row = s.row(&request_id).await;
    assert_eq!(row["stream"], true, "{row}");
    s.assert_billed_to_b(&row).await;
}

/// Nothing listens at A's address; then at B's either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_goes_to_the_next_provider() {
    let closed = format!("http://127.0.0.1:{}", free_port().unwrap());
    let s = setup("failover_refused", &closed, "sk-ant-a-0123456789", json!({"circuit_failure_threshold": 100})).await;
    let (status, request_id, body) = s.send(false).await;
    assert_eq!(status, 200, "{body}");
    s.assert_b_got_its_plan();
    s.assert_billed_to_b(&s.row(&request_id).await).await;

    // Every candidate unreachable: the client gets the last failure, in its
    // dialect; the row names the last provider tried, unbilled.
    let closed_too = format!("http://127.0.0.1:{}", free_port().unwrap());
    s.stack.admin.patch(&format!("/api/v1/providers/{}", s.b_id), &json!({"base_url": closed_too})).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let (status, request_id, body) = loop {
        let sent = s.send(false).await;
        if sent.0 != 200 || tokio::time::Instant::now() > deadline {
            break sent;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["code"], "upstream_unavailable", "{body}");
    assert_eq!(body["request_id"], request_id.as_str(), "{body}");
    let row = s.row(&request_id).await;
    assert_eq!((row["provider_id"].as_i64(), row["status"].as_i64()), (Some(s.b_id), Some(503)), "{row}");
    assert_eq!(decimal(&row["cost_usd"]).unwrap(), rust_decimal::Decimal::ZERO, "{row}");
}

/// A sends no header within its first-byte timeout: B answers. With
/// failover off the client gets the timeout, in its dialect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_past_its_first_byte_timeout_is_left_for_the_next() {
    let a = mock("sk-ant-a-0123456789").await;
    a.set_fault(Some(Fault::StallBeforeHeaders(Duration::from_secs(5))));
    let s = setup(
        "failover_first_byte",
        &a.base_url(),
        a.api_key(),
        json!({"circuit_failure_threshold": 100, "first_byte_timeout_ms": 300}),
    )
    .await;
    let before = a.request_count();
    let (status, request_id, body) = s.send(false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(a.request_count(), before + 1, "A was tried first");
    s.assert_b_got_its_plan();
    s.assert_billed_to_b(&s.row(&request_id).await).await;

    // One attempt only: A alone, its timeout is the client's answer.
    s.stack.admin.patch("/api/v1/settings", &json!({"max_provider_attempts": 1})).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let (status, request_id, body) = loop {
        let sent = s.send(false).await;
        if sent.0 != 200 || tokio::time::Instant::now() > deadline {
            break sent;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["code"], "upstream_timeout", "{body}");
    let row = s.row(&request_id).await;
    assert_eq!(row["provider_id"], s.a_id, "{row}");
    assert_eq!(row["status"], 504, "{row}");
}

/// Every failed attempt counts on A's circuit: after two, A is paused and
/// requests go straight to B; after the open time A is tried again and,
/// healthy, serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_open_the_circuit_and_recovery_closes_it() {
    let a = mock("sk-ant-a-0123456789").await;
    a.set_fault(Some(Fault::Status(503)));
    let circuit = json!({"circuit_failure_threshold": 2, "circuit_open_seconds": 2, "circuit_half_open_successes": 1});
    let s = setup("failover_circuit", &a.base_url(), a.api_key(), circuit).await;
    // setup's probe may already have failed on A once: reach two failures.
    while a.request_count() < 2 {
        assert_eq!(s.send(false).await.0, 200);
    }
    let tried = a.request_count();
    for _ in 0..3 {
        let (status, request_id, body) = s.send(false).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(s.row(&request_id).await["provider_id"], s.b_id);
    }
    assert_eq!(a.request_count(), tried, "A's circuit is open: not tried");

    a.set_fault(None);
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    for _ in 0..2 {
        let (status, request_id, body) = s.send(false).await;
        assert_eq!(status, 200, "{body}");
        let row = s.row(&request_id).await;
        assert_eq!(row["provider_id"], s.a_id, "A is back (half-open, then closed): {row}");
        let flags = row["flags"].as_array().unwrap();
        assert!(!flags.contains(&json!("failover")), "{row}");
    }
    assert_eq!(a.request_count(), tried + 2);
}

/// A stream that moves nothing for longer than its provider's idle timeout
/// is cut; the request is not tried again elsewhere once the answer
/// started. The row says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_idle_past_its_timeout_is_cut_and_not_retried() {
    let a = mock("sk-ant-a-0123456789").await;
    let s = setup("failover_idle", &a.base_url(), a.api_key(), json!({"idle_timeout_ms": 500})).await;
    let gate = a.arm_gate();
    let b_before = s.stack.mock.request_count();
    let (req, request_id) = s.stack.messages(&s.key);
    let mut resp = req.json(&simple_body(REQUESTED, true, "stall")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(15), resp.chunk()).await.expect("the stalled stream was never cut") {
            Ok(Some(chunk)) => events.extend(parser.push(&chunk)),
            Ok(None) => break "end",
            Err(_) => break "reset",
        }
    };
    assert!(gate.is_reached() && !gate.is_released(), "A stalled mid-stream");
    assert!(!events.is_empty(), "the first events arrived");
    assert!(events.iter().all(|e| e.event != "message_stop"), "cut before the end ({ended})");
    assert_eq!(s.stack.mock.request_count(), b_before, "no retry once the answer started");
    let row = s.row(&request_id).await;
    assert_eq!(row["provider_id"], s.a_id, "{row}");
    let flags: Vec<&str> = row["flags"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(flags.contains(&"idle_timeout") && flags.contains(&"stream_incomplete"), "{row}");
    assert!(row["error"].as_str().unwrap().contains("500 ms"), "{row}");
    drop(gate);
}
