//! Nothing is lost when the control plane or PostgreSQL restarts under load
//! (issue 7): requests keep being served on the cached key, their events
//! wait in the filter's queue, and once everything is back every request
//! has exactly one audit row, and usage totals equal the sum of the rows.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hubgate_e2e::postgres::PrivatePostgres;
use hubgate_e2e::{decimal, simple_body, Stack, StackOptions};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sqlx::Connection;

const CLIENTS: usize = 4;

/// Load from a few clients on one key while the test disrupts the stack
/// and recovers it; returns how many requests were sent (all must succeed).
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(stack: &Stack, raw_key: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let clients = (0..CLIENTS)
            .map(|_| {
                let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
                let (url, raw) = (format!("{}/v1/messages", stack.gateway_url()), raw_key.to_string());
                tokio::spawn(async move {
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
                })
            })
            .collect();
        Load { stop, sent, failed, clients }
    }

    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients {
            client.await.unwrap();
        }
        assert_eq!(self.failed.load(Ordering::Relaxed), 0, "a known key is served throughout");
        self.sent.load(Ordering::Relaxed)
    }
}

/// A user and key whose key the filter has cached.
async fn warm_user(stack: &Stack) -> (i64, String) {
    let (user, key) = stack.user_with_key(json!({})).await.unwrap();
    let (req, _) = stack.messages(&key.raw);
    assert_eq!(req.json(&simple_body("claude-sonnet-4-5", false, "warm")).send().await.unwrap().status(), 200);
    (user["id"].as_i64().unwrap(), key.raw)
}

/// Every one of the user's `sent` requests has one audit row, no more
/// arrive later, and the usage total is the sum of the rows.
async fn assert_every_row(stack: &Stack, user_id: i64, sent: u64) {
    assert!(sent > 20, "the load ran: {sent} requests");
    assert_eq!(stack.filter_counter("hubgate_events_dropped_total").await.unwrap(), 0);
    let mut db = sqlx::PgConnection::connect(stack.database_url()).await.unwrap();
    let count = async |db: &mut sqlx::PgConnection| -> (u64, u64, Decimal) {
        let (rows, distinct, cost): (i64, i64, Option<Decimal>) = sqlx::query_as(
            "SELECT count(*), count(DISTINCT request_id), sum(cost_usd) FROM message_request WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_one(db)
        .await
        .unwrap();
        (rows as u64, distinct as u64, cost.unwrap_or_default())
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while count(&mut db).await.0 < sent && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Retried batches must not add anything later.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (rows, distinct, cost) = count(&mut db).await;
    assert_eq!((rows, distinct), (sent, sent), "one audit row per request, no duplicates");
    let usage: Value = stack.admin.get(&format!("/api/v1/usage/users/{user_id}")).await.unwrap();
    let total = usage["windows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["limit_type"] == "usd_total")
        .map(|w| decimal(&w["spent_usd"]).unwrap())
        .unwrap();
    assert_eq!(total.normalize(), cost.normalize(), "{usage}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_restart_under_load_loses_no_audit_row() {
    let mut stack = Stack::start(StackOptions::new("restart_cp").poll_interval_ms(300)).await.unwrap();
    let (user_id, raw) = warm_user(&stack).await;
    let load = Load::start(&stack, &raw);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Killed: a batch it stored may never have been acknowledged, and is
    // sent again.
    stack.stop_control_plane();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stack.restart_control_plane().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent = load.finish().await + 1;
    assert_every_row(&stack, user_id, sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_under_load_loses_no_audit_row() {
    let pg = PrivatePostgres::start().unwrap();
    let mut options = StackOptions::new("restart_pg").poll_interval_ms(300);
    options.database_admin_url = Some(pg.admin_url());
    let stack = Stack::start(options).await.unwrap();
    let (user_id, raw) = warm_user(&stack).await;
    let load = Load::start(&stack, &raw);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Every connection is cut; event deliveries wait or fail until it is back.
    tokio::task::block_in_place(|| pg.stop()).unwrap();
    let down_from = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let down_to = chrono::Utc::now();
    tokio::task::block_in_place(|| pg.start_again()).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent = load.finish().await + 1;
    assert_every_row(&stack, user_id, sent).await;
    // Requests made while the database was down are among them.
    let mut db = sqlx::PgConnection::connect(stack.database_url()).await.unwrap();
    let (during,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM message_request WHERE user_id = $1 AND started_at BETWEEN $2 AND $3")
            .bind(user_id)
            .bind(down_from)
            .bind(down_to)
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert!(during > 0, "no request was made while PostgreSQL was down");
    drop(stack);
}
