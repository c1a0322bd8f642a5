//! A user's `rpm` (SPEC §4) through real Envoy: the requests of the last
//! minute are counted per Envoy process; one over the limit gets 429 with
//! the limit fields and headers and an audit row; passthrough endpoints
//! (count_tokens) never count.

use std::time::Duration;

use hubgate_e2e::{read_json, simple_body, Stack, StackOptions};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_a_users_rpm_are_refused_with_429() {
    let stack = Stack::start(StackOptions::new("rate_limits")).await.unwrap();
    let (user, key) = stack.user_with_key(json!({"rpm": 3})).await.unwrap();
    let user_id = user["id"].as_i64().unwrap();
    let (_, other) = stack.user_with_key(json!({"rpm": 3})).await.unwrap();

    let send = |raw: String| {
        let stack = &stack;
        async move {
            let (req, request_id) = stack.messages(&raw);
            let resp = req.json(&simple_body("claude-sonnet-4-5", false, "count me")).send().await.unwrap();
            let (status, headers, body) = read_json(resp).await.unwrap();
            (status, headers, body, request_id)
        }
    };
    let count_tokens = |raw: String| {
        let stack = &stack;
        async move {
            let (req, _) = stack.request(reqwest::Method::POST, "/v1/messages/count_tokens");
            let resp = req
                .header("x-api-key", raw)
                .header("anthropic-version", "2023-06-01")
                .json(&json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "x"}]}))
                .send()
                .await
                .unwrap();
            resp.status().as_u16()
        }
    };

    let before = stack.mock.request_count();
    for i in 0..3 {
        let (status, _, body, _) = send(key.raw.clone()).await;
        assert_eq!(status, 200, "request {i}: {body}");
        // Passthrough requests pass and are not counted.
        assert_eq!(count_tokens(key.raw.clone()).await, 200);
    }
    let (status, headers, body, request_id) = send(key.raw.clone()).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    assert_eq!(body["error"]["code"], "rpm_exceeded", "{body}");
    assert_eq!(body["error"]["limit_type"], "rpm", "{body}");
    assert_eq!(body["error"]["current"], 3, "{body}");
    assert_eq!(body["error"]["limit"], 3, "{body}");
    assert!(body["error"]["reset_time"].as_str().is_some_and(|t| t.ends_with('Z')), "{body}");
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert_eq!(header("x-ratelimit-limit"), "3");
    assert_eq!(header("x-ratelimit-remaining"), "0");
    let retry: u64 = header("retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    assert!(header("x-ratelimit-reset").parse::<u64>().is_ok());
    // Still passthrough: count_tokens is not limited.
    assert_eq!(count_tokens(key.raw.clone()).await, 200);

    // Another user has their own minute.
    let (status, _, body, _) = send(other.raw.clone()).await;
    assert_eq!(status, 200, "{body}");

    let row: Value = stack.admin.wait_for_request(user_id, &request_id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(row["status"], 429, "{row}");
    assert_eq!(row["blocked_by"], "rpm_exceeded", "{row}");
    assert_eq!(row["blocked_reason"]["limit_type"], "rpm", "{row}");
    assert!(row["provider_id"].is_null(), "{row}");
    // 3 messages and 4 count_tokens of the first user, 1 of the other.
    assert_eq!(stack.mock.request_count() - before, 3 + 4 + 1, "refused requests never reach the provider");
}

/// A key's `limit_concurrent_sessions` (here inherited from its user): a new
/// session over the limit gets 429; an active one keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_session_over_the_limit_is_refused_and_active_ones_pass() {
    let stack = Stack::start(StackOptions::new("session_limits")).await.unwrap();
    let (user, key) = stack.user_with_key(json!({"limit_concurrent_sessions": 1})).await.unwrap();
    let user_id = user["id"].as_i64().unwrap();
    let send = |session: &'static str| {
        let (stack, raw) = (&stack, key.raw.clone());
        async move {
            let user_field = json!({"device_id": "d".repeat(64), "account_uuid": "a", "session_id": session}).to_string();
            let (req, request_id) = stack.messages(&raw);
            let resp = req
                .json(&json!({"model": "claude-sonnet-4-5", "max_tokens": 16,
                              "messages": [{"role": "user", "content": "hi"}], "metadata": {"user_id": user_field}}))
                .send()
                .await
                .unwrap();
            let (status, headers, body) = read_json(resp).await.unwrap();
            (status, headers, body, request_id)
        }
    };
    let first = "0b1c2d3e-0000-4000-8000-000000000001";
    let second = "0b1c2d3e-0000-4000-8000-000000000002";
    assert_eq!(send(first).await.0, 200);
    let (status, headers, body, request_id) = send(second).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "concurrent_sessions_exceeded", "{body}");
    assert_eq!(body["error"]["limit_type"], "concurrent_sessions", "{body}");
    assert_eq!((body["error"]["current"].clone(), body["error"]["limit"].clone()), (json!(1), json!(1)), "{body}");
    assert!(headers.get("retry-after").is_some());
    assert_eq!(send(first).await.0, 200, "the active session keeps working");
    let row: Value = stack.admin.wait_for_request(user_id, &request_id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(row["blocked_by"], "concurrent_sessions_exceeded", "{row}");
}

/// A request with Claude Code's session id in `metadata.user_id`.
fn session_body(session: &str) -> Value {
    let user_field = json!({"device_id": "d".repeat(64), "account_uuid": "a", "session_id": session}).to_string();
    json!({"model": "claude-sonnet-4-5", "max_tokens": 16,
           "messages": [{"role": "user", "content": "hi"}], "metadata": {"user_id": user_field}})
}

/// README "RPM and concurrency across instances": two Envoy processes, each
/// with its own control-plane replica on one Postgres. Under parallel load
/// on both, a user's requests in the minute never exceed `rpm`; a session
/// limit holds across them, and a session active through one instance keeps
/// working through the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rpm_and_sessions_hold_across_two_envoys_and_two_control_planes() {
    let stack = Stack::start(StackOptions::new("rate_limits_two_instances")).await.unwrap();
    let replica = stack.replica_control_plane("control-plane-2").await.unwrap();
    let second = stack.extra_envoy("envoy-2", &replica).await.unwrap();
    let gateways = [stack.gateway_url(), second.url()];

    let (_, key) = stack.user_with_key(json!({"rpm": 10})).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..6 {
        let gateway = gateways[client % 2].clone();
        let (http, raw) = (stack.http.clone(), key.raw.clone());
        tasks.spawn(async move {
            let (mut ok, mut refused) = (0u32, 0u32);
            for _ in 0..8 {
                let resp = http
                    .post(format!("{gateway}/v1/messages"))
                    .header("x-api-key", &raw)
                    .header("anthropic-version", "2023-06-01")
                    .json(&simple_body("claude-sonnet-4-5", false, "count me"))
                    .send()
                    .await
                    .unwrap();
                let (status, _, body) = read_json(resp).await.unwrap();
                match status {
                    200 => ok += 1,
                    429 => {
                        assert_eq!(body["error"]["code"], "rpm_exceeded", "{body}");
                        refused += 1;
                    }
                    other => panic!("status {other}: {body}"),
                }
            }
            (gateway, ok, refused)
        });
    }
    let results = tasks.join_all().await;
    // Which instance gets how much depends on which asked first; what both
    // admit together never exceeds the limit.
    let passed: u32 = results.iter().map(|r| r.1).sum();
    println!("rpm 10 across two instances: {passed} of 48 passed within the minute: {results:?}");
    assert!(passed <= 10, "{passed} requests passed in the minute, over the rpm of 10: {results:?}");
    assert!(passed >= 9, "only {passed} of 10 passed: shares left unused: {results:?}");

    let (user, key) = stack.user_with_key(json!({"limit_concurrent_sessions": 1})).await.unwrap();
    let user_id = user["id"].as_i64().unwrap();
    let send = |gateway: &str, session: &str| {
        let (http, raw, url) = (stack.http.clone(), key.raw.clone(), format!("{gateway}/v1/messages"));
        let (body, request_id) = (session_body(session), hubgate_e2e::uuid_v4());
        async move {
            let resp = http
                .post(url)
                .header("x-api-key", raw)
                .header("anthropic-version", "2023-06-01")
                .header("x-request-id", &request_id)
                .json(&body)
                .send()
                .await
                .unwrap();
            let (status, _, body) = read_json(resp).await.unwrap();
            (status, body, request_id)
        }
    };
    let first = "0b1c2d3e-0000-4000-8000-000000000001";
    let second_session = "0b1c2d3e-0000-4000-8000-000000000002";
    let (status, body, request_id) = send(&gateways[0], first).await;
    assert_eq!(status, 200, "{body}");
    let (status, body, _) = send(&gateways[1], second_session).await;
    assert_eq!(status, 429, "the first instance holds the one slot: {body}");
    assert_eq!(body["error"]["code"], "concurrent_sessions_exceeded", "{body}");
    // Once the first request is recorded, its session is active for every
    // instance: it passes through the second too, and a new one still not.
    stack.admin.wait_for_request(user_id, &request_id, Duration::from_secs(10)).await.unwrap();
    let (status, body, _) = send(&gateways[1], first).await;
    assert_eq!(status, 200, "an active session passes on another instance: {body}");
    let (status, body, _) = send(&gateways[1], second_session).await;
    assert_eq!(status, 429, "{body}");
    let (status, body, _) = send(&gateways[0], second_session).await;
    assert_eq!(status, 429, "{body}");
    drop(second);
}
