//! A path cannot climb out of a provider's base path: Envoy normalizes it
//! (dot segments resolved, slashes merged, escaped slashes refused) and the
//! filter refuses any dot segment that is left, so with
//! `unknown_path=passthrough` the provider credential only ever goes to
//! paths under the provider's prefix.

use std::time::{Duration, Instant};

use hubgate_e2e::raw::{head, RawConn};
use hubgate_e2e::{Stack, StackOptions};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_never_leave_the_provider_prefix() {
    let stack = Stack::start(StackOptions::new("path_traversal")).await.unwrap();
    let (_u, key) = stack.user_with_key(json!({})).await.unwrap();
    let provider_id = stack.provider_id().unwrap();
    stack.admin.patch("/api/v1/settings", &json!({"unknown_path": "passthrough"})).await.unwrap();
    stack
        .admin
        .patch(&format!("/api/v1/providers/{provider_id}"), &json!({"base_url": format!("{}/relay", stack.mock.base_url())}))
        .await
        .unwrap();

    let send = |path: &'static str| {
        let addr = stack.envoy.listen_addr();
        let key = key.raw.clone();
        async move {
            let mut conn = RawConn::connect(addr, None).await.unwrap();
            conn.send(&head("GET", path, &[("x-api-key", &key)])).await.unwrap();
            conn.response(Duration::from_secs(20)).await.map(|r| r.status)
        }
    };

    // Wait until the new policy is in force: a probe reaches /relay/…
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stack.mock.requests().iter().any(|r| r.path == "/relay/v1/models") {
        assert!(Instant::now() < deadline, "passthrough to /relay never arrived: {:?}", stack.mock.requests());
        send("/v1/models").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stack.mock.clear_requests();

    let attacks = [
        "/../../admin",
        "/v1/../../admin",
        "/v1/./../admin",
        "/v1/%2e%2e/%2e%2e/admin",
        "/v1/%2E%2E/admin",
        "/v1/..%2f..%2fadmin",
        "/v1/..%5c..%5cadmin",
        "/v1\\..\\..\\admin",
        "//..//admin",
    ];
    let mut answers = Vec::new();
    for path in attacks {
        answers.push((path, send(path).await));
    }
    let seen: Vec<String> = stack.mock.requests().iter().map(|r| r.path.clone()).collect();
    for path in &seen {
        let lower = path.to_ascii_lowercase();
        assert!(path.starts_with("/relay/"), "{path} left the prefix; answers {answers:?}");
        assert!(
            !lower.split('/').any(|s| s == ".." || s == "." || s.contains("%2e") || s.contains('\\') || s.contains("%5c")),
            "{path} reached the provider with a dot segment; answers {answers:?}"
        );
    }
    // Each attack was refused (400) or normalized below the prefix.
    for (path, status) in &answers {
        assert!(matches!(status, Some(400) | Some(404)), "{path}: {status:?} (provider saw {seen:?})");
    }
    println!("answers: {answers:?}\nprovider saw: {seen:?}");
}
