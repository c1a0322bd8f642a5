//! Circuit state through the admin API (SPEC §6, issue 8): the Envoy
//! process reports its circuits to the control plane, an admin sees a
//! provider's circuit open on that instance, resets it, and requests go to
//! the provider again.

use std::time::{Duration, Instant};

use hubgate_e2e::{read_json, simple_body, Stack, StackOptions};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_circuit_is_shown_per_instance_and_reset_through_the_api() {
    let stack = Stack::start(StackOptions::new("circuits_reset")).await.unwrap();
    // Each failure must reach the client here; failover would hide it
    // behind the next provider's answer.
    stack.admin.patch("/api/v1/settings", &json!({"max_provider_attempts": 1})).await.unwrap();
    let (user, key) = stack.user_with_key(json!({})).await.unwrap();
    let user_id = user["id"].as_i64().unwrap();
    let mock_id = stack.provider_id().unwrap();
    stack.admin.patch(&format!("/api/v1/providers/{mock_id}"), &json!({"priority": 5})).await.unwrap();
    // A closed port: every connection is refused. Open for an hour: only a
    // reset closes it within the test.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let flaky = stack
        .admin
        .create_provider(json!({"name": "flaky", "type": "claude", "base_url": dead_url, "api_key": "sk-dead",
            "priority": 0, "circuit_failure_threshold": 2, "circuit_open_seconds": 3600, "circuit_half_open_successes": 1}))
        .await
        .unwrap();
    let flaky_id = flaky["id"].as_i64().unwrap();
    // Sends one request; answers its status and the provider it went to
    // (from its audit row).
    let send = || async {
        let (req, request_id) = stack.messages(&key.raw);
        let resp = req.json(&simple_body("claude-sonnet-4-5", false, "hello")).send().await.unwrap();
        let (status, _, body) = read_json(resp).await.unwrap();
        let row = stack.admin.wait_for_request(user_id, &request_id, Duration::from_secs(15)).await.unwrap();
        (status, row["provider_id"].as_i64(), body)
    };

    // The flaky provider's policy reaches Envoy: its first failure, then the
    // second in a row opens its circuit.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, provider, body) = send().await;
        if status == 503 {
            assert_eq!((body["error"]["code"].clone(), provider), (json!("upstream_unavailable"), Some(flaky_id)), "{body}");
            break;
        }
        assert_eq!((status, provider), (200, Some(mock_id)), "{body}");
        assert!(Instant::now() < deadline, "the flaky provider never got a request");
    }
    assert_eq!(send().await.0, 503);
    let (status, provider, _) = send().await;
    assert_eq!((status, provider), (200, Some(mock_id)), "the open circuit sends requests to the next tier");

    // The instance reports it: the admin API shows it open there.
    let circuit_path = format!("/api/v1/providers/{flaky_id}/circuit");
    let deadline = Instant::now() + Duration::from_secs(15);
    let circuit = loop {
        let circuit = stack.admin.get(&circuit_path).await.unwrap();
        if circuit["state"] == "open" {
            break circuit;
        }
        assert!(Instant::now() < deadline, "the open circuit was never reported: {circuit}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let instances = circuit["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 1, "one Envoy process: {circuit}");
    let instance = instances[0]["instance"].as_str().unwrap().to_string();
    assert_eq!(circuit["open_on"], json!([instance]));
    assert_eq!((instances[0]["state"].clone(), instances[0]["stale"].clone()), (json!("open"), json!(false)));
    let until = chrono::DateTime::parse_from_rfc3339(instances[0]["open_until"].as_str().unwrap()).unwrap();
    assert!(until > chrono::Utc::now() + chrono::TimeDelta::minutes(50), "open for the hour: {circuit}");
    // The mock provider's circuit is reported too, closed.
    let mock_circuit = stack.admin.get(&format!("/api/v1/providers/{mock_id}/circuit")).await.unwrap();
    assert_eq!((mock_circuit["state"].clone(), mock_circuit["instances"][0]["instance"].clone()), (json!("closed"), json!(instance)));
    // Eligibility names the open circuit and the instance.
    let eligibility = stack
        .admin
        .get(&format!("/api/v1/providers/eligibility?key_id={}&model=claude-sonnet-4-5&api=anthropic_messages", key.id))
        .await
        .unwrap();
    let verdict = eligibility["providers"].as_array().unwrap().iter().find(|p| p["provider_id"] == flaky_id).unwrap().clone();
    assert_eq!((verdict["reason"].clone(), verdict["circuit_open_on"].clone()), (json!("circuit_open"), json!([instance])), "{eligibility}");
    assert_eq!(eligibility["tier"], 5, "{eligibility}");

    // The provider is repaired (now served by the mock), but its circuit
    // stays open: requests keep going to the other one until the reset.
    let mock_url = stack.mock.base_url();
    stack.admin.patch(&format!("/api/v1/providers/{flaky_id}"), &json!({"base_url": mock_url, "api_key": stack.mock.api_key()})).await.unwrap();
    for _ in 0..5 {
        let (status, provider, body) = send().await;
        assert_eq!((status, provider), (200, Some(mock_id)), "{body}");
    }

    // Reset through the API: the next snapshot clears it and requests go
    // to the flaky provider again.
    let reset = stack.admin.call(reqwest::Method::POST, &format!("{circuit_path}/reset"), None).await.unwrap();
    assert_eq!(reset.status, 200, "{}", reset.body);
    assert!(reset.body["reset_at"].is_string(), "{}", reset.body);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, provider, body) = send().await;
        assert_eq!(status, 200, "{body}");
        if provider == Some(flaky_id) {
            break;
        }
        assert!(Instant::now() < deadline, "requests never went back to the reset provider");
    }
    // The instance reports the cleared circuit under the new marker.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let circuit: Value = stack.admin.get(&circuit_path).await.unwrap();
        if circuit["state"] == "closed" {
            assert_eq!(circuit["instances"][0]["instance"], json!(instance), "{circuit}");
            assert_eq!(circuit["open_on"], json!([]));
            break;
        }
        assert!(Instant::now() < deadline, "the closed circuit was never reported: {circuit}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
