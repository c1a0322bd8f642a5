//! The client address that the lockout and the audit log use is the one
//! Envoy computes (`use_remote_address`), never what the client writes into
//! X-Forwarded-For; behind a load balancer, `XFF_TRUSTED_HOPS` trusts the
//! entries the balancer adds.

use std::net::IpAddr;

use hubgate_e2e::raw::{head, RawConn};
use hubgate_e2e::{simple_body, Stack, StackOptions};
use serde_json::{json, Value};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// POSTs a small /v1/messages from `from` with `key` and `forwarded_for`;
/// the status and the request id.
async fn post(stack: &Stack, from: &str, key: &str, forwarded_for: Option<&str>) -> (u16, String) {
    let body = serde_json::to_vec(&simple_body("claude-sonnet-4-5", false, "knock")).unwrap();
    let request_id = hubgate_e2e::uuid_v4();
    let len = body.len().to_string();
    let mut headers = vec![
        ("x-api-key", key),
        ("x-request-id", request_id.as_str()),
        ("content-type", "application/json"),
        ("anthropic-version", "2023-06-01"),
        ("content-length", len.as_str()),
    ];
    if let Some(xff) = forwarded_for {
        headers.push(("x-forwarded-for", xff));
    }
    let mut conn = RawConn::connect(stack.envoy.listen_addr(), Some(ip(from))).await.unwrap();
    conn.send(&head("POST", "/v1/messages", &headers)).await.unwrap();
    conn.send(&body).await.unwrap();
    let resp = conn.response(std::time::Duration::from_secs(30)).await.expect("no response");
    (resp.status, request_id)
}

fn bad_key() -> String {
    format!("sk-{}", hubgate_e2e::random_token(48))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_forwarded_for_neither_evades_nor_weaponizes_the_lockout() {
    let stack = Stack::start(StackOptions::new("client_address_forged")).await.unwrap();
    let (user, good) = stack.user_with_key(json!({})).await.unwrap();
    let user_id = user["id"].as_i64().unwrap();

    // An attacker on 127.0.0.2 rotates X-Forwarded-For on every guess: the
    // 21st guess is still locked out.
    let mut statuses = Vec::new();
    for i in 0..30 {
        let (status, _) = post(&stack, "127.0.0.2", &bad_key(), Some(&format!("198.51.100.{i}"))).await;
        statuses.push(status);
    }
    assert!(statuses[..20].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[20..].iter().all(|s| *s == 429), "forged addresses evaded the lockout: {statuses:?}");

    // The attacker named the victim (127.0.0.3) in X-Forwarded-For while
    // guessing: the victim is not locked out.
    let victim_before = post(&stack, "127.0.0.3", &good.raw, None).await.0;
    assert_eq!(victim_before, 200);
    for _ in 0..20 {
        post(&stack, "127.0.0.4", &bad_key(), Some("127.0.0.3")).await;
    }
    let (status, request_id) = post(&stack, "127.0.0.3", &good.raw, Some("203.0.113.50")).await;
    assert_eq!(status, 200, "the victim was locked out through a forged header");
    assert_eq!(post(&stack, "127.0.0.4", &good.raw, None).await.0, 429, "the guesser itself is locked out");

    // The audit log has the real address, not the forged one.
    let row = stack
        .admin
        .wait_for_request(user_id, &request_id, std::time::Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(row["client_ip"], "127.0.0.3", "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_forwarded_address_counts() {
    let stack = Stack::start(StackOptions::new("client_address_trusted_hop").envoy_var("XFF_TRUSTED_HOPS", "1"))
        .await
        .unwrap();
    let (user, good) = stack.user_with_key(json!({})).await.unwrap();
    let user_id = user["id"].as_i64().unwrap();

    // The load balancer (our one peer address) appends the real client.
    for _ in 0..20 {
        assert_eq!(post(&stack, "127.0.0.2", &bad_key(), Some("198.51.100.7")).await.0, 401);
    }
    assert_eq!(post(&stack, "127.0.0.2", &good.raw, Some("198.51.100.7")).await.0, 429);
    // Another client behind the same balancer is not affected; a client
    // prepending its own forged entry is still placed by the balancer's.
    let (status, request_id) = post(&stack, "127.0.0.2", &good.raw, Some("198.51.100.7, 198.51.100.8")).await;
    assert_eq!(status, 200);
    let row: Value = stack
        .admin
        .wait_for_request(user_id, &request_id, std::time::Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(row["client_ip"], "198.51.100.8", "{row}");
}

/// The same wrong key from 45 addresses, each on a new connection (so both
/// workers see it): the key is locked from the 21st attempt on, exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_is_counted_across_workers() {
    let stack = Stack::start(StackOptions::new("client_address_key_lockout")).await.unwrap();
    let key = bad_key();
    let mut statuses = Vec::new();
    for i in 0..45 {
        statuses.push(post(&stack, &format!("127.0.2.{}", i + 1), &key, None).await.0);
    }
    assert_eq!(&statuses[..20], &[401; 20], "{statuses:?}");
    assert_eq!(&statuses[20..], &[429; 25], "{statuses:?}");
}
