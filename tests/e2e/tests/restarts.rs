//! Nothing is lost when the control plane restarts under load (issue 7):
//! requests keep being served on the cached key, their events wait in the
//! filter's queue, and once the control plane is back every request has
//! exactly one audit row, and usage totals equal the sum of the rows.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hubgate_e2e::{decimal, simple_body, Stack, StackOptions};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sqlx::Connection;

const CLIENTS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_restart_under_load_loses_no_audit_row() {
    let mut stack = Stack::start(StackOptions::new("restarts").poll_interval_ms(300)).await.unwrap();
    let (user, key) = stack.user_with_key(json!({})).await.unwrap();
    let user_id = user["id"].as_i64().unwrap();
    let (req, _) = stack.messages(&key.raw);
    assert_eq!(req.json(&simple_body("claude-sonnet-4-5", false, "warm")).send().await.unwrap().status(), 200);

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(1));
    let failed = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
        let (url, raw) = (format!("{}/v1/messages", stack.gateway_url()), key.raw.clone());
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::builder().no_proxy().build().unwrap();
            while !stop.load(Ordering::Relaxed) {
                let resp = http
                    .post(&url)
                    .header("x-api-key", &raw)
                    .header("anthropic-version", "2023-06-01")
                    .json(&simple_body("claude-sonnet-4-5", false, "under load"))
                    .send()
                    .await;
                sent.fetch_add(1, Ordering::Relaxed);
                if !resp.is_ok_and(|r| r.status() == 200) {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stack.stop_control_plane();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stack.restart_control_plane().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let sent = sent.load(Ordering::Relaxed);
    assert_eq!(failed.load(Ordering::Relaxed), 0, "a known key is served throughout");
    assert_eq!(stack.filter_counter("hubgate_events_dropped_total").await.unwrap(), 0);

    // Every request has its row (the stack's readiness probe had one too).
    let mut db = sqlx::PgConnection::connect(stack.database_url()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let rows = loop {
        let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM message_request WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&mut db)
            .await
            .unwrap();
        if rows as u64 >= sent || tokio::time::Instant::now() > deadline {
            break rows as u64;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(sent > 20, "the load ran: {sent} requests");
    assert_eq!(rows, sent, "one audit row per request");
    // Retried batches must not add anything later.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (rows, distinct, cost): (i64, i64, Option<Decimal>) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT request_id), sum(cost_usd) FROM message_request WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!((rows as u64, distinct as u64), (sent, sent), "no duplicates");

    // The usage the limits read is the sum of the rows.
    let usage: Value = stack.admin.get(&format!("/api/v1/usage/users/{user_id}")).await.unwrap();
    let total = usage["windows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["limit_type"] == "usd_total")
        .map(|w| decimal(&w["spent_usd"]).unwrap())
        .unwrap();
    assert_eq!(total.normalize(), cost.unwrap_or_default().normalize(), "{usage}");
}
