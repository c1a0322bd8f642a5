//! Brute-force throttle (SPEC §2.1): 20 failed credentials from one client IP
//! within 300 s lock that IP out with 429 + Retry-After, valid keys included.
//! Refusals of disabled accounts do not count.

use hubgate_e2e::{read_json, simple_body, Stack, StackOptions};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_bad_keys_lock_the_client_ip_out() {
    let stack = Stack::start(StackOptions::new("auth_lockout")).await.unwrap();
    let body = simple_body("claude-sonnet-4-5", false, "knock knock");
    let (_u, good) = stack.user_with_key(json!({})).await.unwrap();
    let (_u, disabled) = stack.user_with_key(json!({})).await.unwrap();
    stack.admin.disable_key(disabled.id).await.unwrap();

    // A disabled key is a known account: refusing it is not a failed guess.
    for i in 0..25 {
        let (req, _) = stack.messages(&disabled.raw);
        let (status, _, reply) = read_json(req.json(&body).send().await.unwrap()).await.unwrap();
        assert_eq!(status, 401, "disabled key, attempt {i}: {reply}");
    }
    let (req, _) = stack.messages(&good.raw);
    assert_eq!(req.json(&body).send().await.unwrap().status(), 200, "disabled-key refusals must not lock out");

    for i in 1..=20 {
        let (req, _) = stack.messages(&format!("sk-{}", hubgate_e2e::random_token(48)));
        let (status, _, reply) = read_json(req.json(&body).send().await.unwrap()).await.unwrap();
        assert_eq!(status, 401, "bad key {i} of 20: {reply}");
        assert_eq!(reply["error"]["code"], "invalid_api_key", "{reply}");
    }

    for (what, key) in [("another bad key", format!("sk-{}", hubgate_e2e::random_token(48))), ("a valid key", good.raw.clone())] {
        let (req, id) = stack.messages(&key);
        let (status, headers, reply) = read_json(req.json(&body).send().await.unwrap()).await.unwrap();
        assert_eq!(status, 429, "{what} after 20 failures: {reply}");
        let retry_after: u64 = headers
            .get("retry-after")
            .unwrap_or_else(|| panic!("no Retry-After on the lockout reply: {headers:?}"))
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=600).contains(&retry_after), "Retry-After {retry_after}");
        assert_eq!(reply["type"], "error", "{reply}");
        assert_eq!(reply["error"]["type"], "rate_limit_error", "{reply}");
        assert_eq!(reply["error"]["code"], "auth_locked_out", "{reply}");
        assert_eq!(reply["request_id"], id.as_str(), "{reply}");
    }
    // Only the one good request reached the provider.
    assert_eq!(stack.mock.requests().len(), 1);
}
