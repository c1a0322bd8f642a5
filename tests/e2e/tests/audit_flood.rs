//! A guessing attack cannot fill the audit log: requests refused without a
//! valid key get rows only for the first few per client address per minute
//! (and a bounded number in all); the rest are counted in Envoy's stats.

use std::time::Duration;

use hubgate_e2e::raw::{head, RawConn};
use hubgate_e2e::{Stack, StackOptions};
use serde_json::{json, Value};

async fn unauthenticated(stack: &Stack, from: &str, key: Option<&str>) -> u16 {
    let mut conn = RawConn::connect(stack.envoy.listen_addr(), Some(from.parse().unwrap())).await.unwrap();
    let mut headers = vec![("content-length", "2")];
    if let Some(key) = key {
        headers.push(("x-api-key", key));
    }
    conn.send(&head("POST", "/v1/messages", &headers)).await.unwrap();
    conn.send(b"{}").await.unwrap();
    conn.response(Duration::from_secs(20)).await.map_or(0, |r| r.status)
}

/// Rows of requests that had no valid key.
async fn unauthenticated_rows(stack: &Stack) -> Vec<Value> {
    let all = stack.admin.requests(&[("page_size", "500".to_string())]).await.unwrap();
    all.into_iter().filter(|r| r["user_id"].is_null()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_guesses_get_a_bounded_number_of_audit_rows() {
    let stack = Stack::start(
        StackOptions::new("audit_flood")
            .plugin("unauthenticated_audit_per_client_per_minute", json!(5))
            .plugin("unauthenticated_audit_per_minute", json!(12)),
    )
    .await
    .unwrap();
    let (user, good) = stack.user_with_key(json!({})).await.unwrap();

    // 40 guesses (then lockouts) and 10 keyless requests from one address,
    // 20 each from three more.
    let mut sent = 0u64;
    for i in 0..50 {
        let key = (i % 5 != 0).then(|| format!("sk-{}", hubgate_e2e::random_token(40)));
        let status = unauthenticated(&stack, "127.0.0.2", key.as_deref()).await;
        assert!(status == 401 || status == 429, "{status}");
        sent += 1;
    }
    for from in ["127.0.0.3", "127.0.0.4", "127.0.0.5"] {
        for _ in 0..20 {
            unauthenticated(&stack, from, Some("sk-wrong-wrong-wrong")).await;
            sent += 1;
        }
    }
    // A real request is always recorded, however many refusals came before.
    let (req, request_id) = stack.messages(&good.raw);
    assert_eq!(req.json(&hubgate_e2e::simple_body("claude-sonnet-4-5", false, "hi")).send().await.unwrap().status(), 200);
    let user_id = user["id"].as_i64().unwrap();
    stack.admin.wait_for_request(user_id, &request_id, Duration::from_secs(20)).await.unwrap();

    let unaudited = stack.filter_counter("hubgate_unauthenticated_unaudited_total").await.unwrap();
    let rows = unauthenticated_rows(&stack).await;
    let per_address = rows.iter().filter(|r| r["client_ip"] == "127.0.0.2").count();
    let rows = rows.len() as u64;
    println!("{sent} refused requests: {rows} audit rows, {unaudited} only counted");
    assert_eq!(rows + unaudited, sent, "every refused request is either a row or counted");
    // 5 per address (4 addresses) capped at 12 per minute; a minute
    // boundary during the test can at most double that.
    assert!((12..=24).contains(&rows), "{rows} rows");
    assert!((5..=10).contains(&per_address), "{per_address} rows for 127.0.0.2");
}
