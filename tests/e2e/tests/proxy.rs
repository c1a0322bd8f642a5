//! A valid key gets through; the provider sees its own credential and none
//! of the client's, whichever source the client used (SPEC §2.1, §6).

use hubgate_e2e::{read_json, simple_body, RecordedRequest, Stack, StackOptions};
use serde_json::{json, Value};

/// The one request the mock saw, checked for leaked client credentials.
#[track_caller]
fn assert_provider_credentials_only(seen: &[RecordedRequest], client_key: &str, provider_key: &str, case: &str) {
    assert_eq!(seen.len(), 1, "{case}: the mock should see exactly one request, saw {seen:?}");
    let r = &seen[0];
    assert_eq!(r.header_values("x-api-key"), vec![provider_key], "{case}: provider key in x-api-key");
    assert!(r.header("authorization").is_none(), "{case}: authorization reached the provider: {:?}", r.header("authorization"));
    assert!(r.header("x-goog-api-key").is_none(), "{case}: x-goog-api-key reached the provider");
    assert!(r.query_param("key").is_none(), "{case}: ?key= reached the provider: {:?}", r.query);
    for (name, value) in &r.headers {
        assert!(!value.contains(client_key), "{case}: client key reached the provider in header {name}");
    }
    assert!(!r.query.as_deref().unwrap_or("").contains(client_key), "{case}: client key in the upstream query");
    assert_eq!(r.path, "/v1/messages", "{case}: upstream path");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_key_reaches_the_provider_with_the_provider_key_only() {
    let stack = Stack::start(StackOptions::new("proxy_valid_key")).await.unwrap();
    let (_user, key) = stack.user_with_key(json!({})).await.unwrap();
    let provider_key = stack.mock.api_key().to_string();
    let body = simple_body("claude-sonnet-4-5", false, "hello gateway");

    let gateway = stack.gateway_url();
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("x-api-key", stack.http.post(format!("{gateway}/v1/messages")).header("x-api-key", &key.raw)),
        ("authorization bearer", stack.http.post(format!("{gateway}/v1/messages")).bearer_auth(&key.raw)),
        (
            "authorization with lowercase scheme",
            stack.http.post(format!("{gateway}/v1/messages")).header("authorization", format!("bearer {}", key.raw)),
        ),
        ("x-goog-api-key", stack.http.post(format!("{gateway}/v1/messages")).header("x-goog-api-key", &key.raw)),
        ("query key", stack.http.post(format!("{gateway}/v1/messages?key={}", key.raw))),
        (
            "same key in two sources",
            stack.http.post(format!("{gateway}/v1/messages?key={}", key.raw)).header("x-api-key", &key.raw).bearer_auth(&key.raw),
        ),
    ];
    for (case, builder) in cases {
        stack.mock.clear_requests();
        let resp = builder
            .header("anthropic-version", "2023-06-01")
            .header("x-request-id", hubgate_e2e::uuid_v4())
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, _, reply) = read_json(resp).await.unwrap();
        assert_eq!(status, 200, "{case}: {reply}");
        assert_eq!(reply["type"], "message", "{case}: {reply}");
        assert_eq!(reply["content"][0]["text"], "You said: hello gateway", "{case}");
        let seen = stack.mock.requests();
        assert_provider_credentials_only(&seen, &key.raw, &provider_key, case);
        // The body reaches the provider intact.
        assert_eq!(seen[0].json(), Some(body.clone()), "{case}: upstream body");
        assert_eq!(seen[0].header("anthropic-version"), Some("2023-06-01"), "{case}");
    }

    // `?beta=true` (Claude Code) survives; only the credential is removed.
    stack.mock.clear_requests();
    let resp = stack
        .http
        .post(format!("{gateway}/v1/messages?beta=true&key={}", key.raw))
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = stack.mock.requests();
    assert_provider_credentials_only(&seen, &key.raw, &provider_key, "beta query");
    assert_eq!(seen[0].query_param("beta"), Some("true"));
    let _: Value = resp.json().await.unwrap();

    // count_tokens is a passthrough endpoint: same credential swap.
    stack.mock.clear_requests();
    let (req, _) = stack.request(reqwest::Method::POST, "/v1/messages/count_tokens");
    let resp = req
        .header("x-api-key", &key.raw)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "count me"}]}))
        .send()
        .await
        .unwrap();
    let (status, _, reply) = read_json(resp).await.unwrap();
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply, json!({"input_tokens": stack.mock.usage().input_tokens}));
    let seen = stack.mock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/messages/count_tokens");
    assert_eq!(seen[0].header_values("x-api-key"), vec![provider_key.as_str()]);
}

/// A provider's model redirect (SPEC §6): the provider gets the target
/// model, the audit row keeps the requested one as original, and the
/// request is billed at the target's price.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_redirect_sends_the_target_and_bills_it() {
    let stack = Stack::start(StackOptions::new("proxy_model_redirect")).await.unwrap();
    let (user, key) = stack.user_with_key(json!({})).await.unwrap();
    let user_id = user["id"].as_i64().unwrap();
    let provider_id = stack.provider_id().unwrap();
    stack
        .admin
        .patch(
            &format!("/api/v1/providers/{provider_id}"),
            &json!({"model_redirects": [{"match_type": "prefix", "pattern": "claude-3-", "target": "claude-sonnet-4-5"}]}),
        )
        .await
        .unwrap();
    // The policy reaches Envoy within a poll interval.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let (reply, request_id) = loop {
        stack.mock.clear_requests();
        let (req, request_id) = stack.messages(&key.raw);
        let resp = req.json(&simple_body("claude-3-opus-20240229", false, "redirect me")).send().await.unwrap();
        let (status, _, reply) = read_json(resp).await.unwrap();
        assert_eq!(status, 200, "{reply}");
        if reply["model"] == "claude-sonnet-4-5" || std::time::Instant::now() > deadline {
            break (reply, request_id);
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    assert_eq!(reply["model"], "claude-sonnet-4-5", "the provider answered as the target: {reply}");
    let seen = stack.mock.requests();
    let sent: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(sent["model"], "claude-sonnet-4-5");
    assert_eq!(sent["messages"][0]["content"], "redirect me", "the rest of the body is unchanged");
    let row = stack.admin.wait_for_request(user_id, &request_id, std::time::Duration::from_secs(10)).await.unwrap();
    assert_eq!(row["original_model"], "claude-3-opus-20240229", "{row}");
    assert_eq!(row["upstream_model"], "claude-sonnet-4-5", "{row}");
    let price = stack.price("claude-sonnet-4-5").await.unwrap();
    let cost = price.cost(&stack.mock.usage(), stack.cost_multiplier);
    let billed: rust_decimal::Decimal =
        row["cost_usd"].as_str().map_or_else(|| row["cost_usd"].to_string(), str::to_string).parse().unwrap();
    assert_eq!(billed, cost, "{row}");
}

/// The circuit breaker (SPEC §6): a provider Envoy cannot reach fails the
/// requests sent to it until `circuit_failure_threshold` failures in a row
/// open its circuit; then requests go to the next provider, and once the
/// open time has passed it is tried again (half-open) and, still failing,
/// opened again. Failover is off here, so each failure reaches the client
/// (failover.rs has the circuit with failover on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_provider_is_paused_by_its_circuit() {
    let stack = Stack::start(StackOptions::new("proxy_circuit")).await.unwrap();
    stack.admin.patch("/api/v1/settings", &json!({"max_provider_attempts": 1})).await.unwrap();
    let (_user, key) = stack.user_with_key(json!({})).await.unwrap();
    // A closed port: every connection is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let provider_id = stack.provider_id().unwrap();
    stack.admin.patch(&format!("/api/v1/providers/{provider_id}"), &json!({"priority": 5})).await.unwrap();
    stack
        .admin
        .create_provider(json!({"name": "dead", "type": "claude", "base_url": dead_url, "api_key": "sk-dead",
            "priority": 0, "circuit_failure_threshold": 2, "circuit_open_seconds": 3, "circuit_half_open_successes": 1}))
        .await
        .unwrap();
    let send = || async {
        let (req, _) = stack.messages(&key.raw);
        let resp = req.json(&simple_body("claude-sonnet-4-5", false, "hello")).send().await.unwrap();
        read_json(resp).await.unwrap()
    };
    // Wait until the dead provider's policy is in Envoy: its first failure.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (status, _, body) = send().await;
        if status == 503 {
            assert_eq!(body["error"]["code"], "upstream_unavailable", "{body}");
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(std::time::Instant::now() < deadline, "the dead provider never got a request");
    }
    // The second failure in a row opens the circuit...
    assert_eq!(send().await.0, 503);
    // ...and the next requests go to the mock.
    for _ in 0..3 {
        let (status, _, body) = send().await;
        assert_eq!(status, 200, "{body}");
    }
    // After the open time the dead one is tried again, fails, and is paused again.
    tokio::time::sleep(std::time::Duration::from_millis(3_200)).await;
    assert_eq!(send().await.0, 503, "half-open: tried again");
    assert_eq!(send().await.0, 200, "opened again at once");
}
