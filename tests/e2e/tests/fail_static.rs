//! Fail-static (SPEC §1): with the control plane down, known keys keep
//! working on cached policy, unknown keys get a clear 503, and usage events
//! wait in a bounded queue. Once it is back, every queued event is stored;
//! events beyond the bound are dropped and counted, never silently lost.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hubgate_e2e::{decimal, Stack, StackOptions};
use rust_decimal::Decimal;
use serde_json::{json, Value};

const QUEUE_MAX: u64 = 10;

async fn total_rows(stack: &Stack) -> u64 {
    let page = stack.admin.get("/api/v1/requests?page_size=1").await.unwrap();
    page["total"].as_u64().unwrap()
}

async fn wait_for_total(stack: &Stack, want: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let total = total_rows(stack).await;
        if total >= want || tokio::time::Instant::now() > deadline {
            return total;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_for_dropped(stack: &Stack, want: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let dropped = stack.filter_counter("hubgate_events_dropped_total").await.unwrap();
        if dropped >= want || tokio::time::Instant::now() > deadline {
            return dropped;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn send(stack: &Stack, key: &str) -> (u16, Value) {
    let (req, _) = stack.messages(key);
    let resp = req
        .json(&hubgate_e2e::simple_body("claude-sonnet-4-5", false, "offline"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_outage_loses_nothing_within_the_bound() {
    let mut stack = Stack::start(
        StackOptions::new("fail_static").poll_interval_ms(300).plugin("event_queue_max", json!(QUEUE_MAX)),
    )
    .await
    .unwrap();
    let (_user, key) = stack.user_with_key(json!({})).await.unwrap();

    // Warm the key cache, and let every event so far be delivered.
    assert_eq!(send(&stack, &key.raw).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let before = total_rows(&stack).await;
    assert_eq!(wait_for_total(&stack, before).await, before);

    stack.stop_control_plane();
    tokio::time::sleep(stack.poll_interval * 2).await;

    // Known key: served from cache. 12 requests + 1 refused = 13 events for
    // a queue of 10: 3 must be dropped and counted.
    for _ in 0..12 {
        let (status, body) = send(&stack, &key.raw).await;
        assert_eq!(status, 200, "a known key must keep working while the control plane is down: {body}");
    }
    let (status, body) = send(&stack, "sk-never-issued-0123456789abcdef").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "auth_unavailable", "{body}");
    // Each worker puts its batch on the queue on its tick: the drops are
    // counted then.
    assert_eq!(wait_for_dropped(&stack, 3).await, 3);
    tokio::time::sleep(stack.poll_interval * 2).await;
    assert_eq!(stack.filter_counter("hubgate_events_dropped_total").await.unwrap(), 3);

    stack.restart_control_plane().await.unwrap();
    let after = wait_for_total(&stack, before + QUEUE_MAX).await;
    // Nothing more arrives later (no duplicates from retried batches).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(total_rows(&stack).await, before + QUEUE_MAX, "first seen {after}");
    assert_eq!(stack.filter_counter("hubgate_events_dropped_total").await.unwrap(), 3);

    // And the gateway is fully back: new requests are served and recorded.
    assert_eq!(send(&stack, &key.raw).await.0, 200);
    assert_eq!(wait_for_total(&stack, before + QUEUE_MAX + 1).await, before + QUEUE_MAX + 1);
}

/// How long the control plane stays down under load (SPEC §1, issue 8).
const OUTAGE: Duration = Duration::from_secs(30);
const LOAD_KEYS: usize = 4;

/// One request a load task sent: its id, and the answer when it was not 200.
struct Sent {
    request_id: String,
    failure: Option<String>,
}

/// Sends requests with `key` one after another until `stop`, pausing
/// `pace` between them.
async fn load(http: reqwest::Client, gateway: String, key: String, stop: Arc<AtomicBool>, pace: Duration) -> Vec<Sent> {
    let mut sent = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let request_id = hubgate_e2e::uuid_v4();
        let result = http
            .post(format!("{gateway}/v1/messages"))
            .header("x-request-id", &request_id)
            .header("x-api-key", &key)
            .header("anthropic-version", "2023-06-01")
            .json(&hubgate_e2e::simple_body("claude-sonnet-4-5", false, "under load"))
            .send()
            .await;
        let failure = match result {
            Ok(r) if r.status() == 200 => r.bytes().await.err().map(|e| format!("body: {e}")),
            Ok(r) => Some(format!("{} {}", r.status(), r.text().await.unwrap_or_default())),
            Err(e) => Some(format!("{e:#}")),
        };
        sent.push(Sent { request_id, failure });
        tokio::time::sleep(pace).await;
    }
    sent
}

/// How many audit rows the users of `keys` have (the API counts up to
/// 10,000: beyond, `total_capped` is set and the rows are paged through).
async fn user_rows(stack: &Stack, keys: &[(i64, hubgate_e2e::CreatedKey)]) -> usize {
    let mut n = 0;
    for (user_id, _) in keys {
        let page = stack.admin.get(&format!("/api/v1/requests?user_id={user_id}&page_size=1")).await.unwrap();
        n += match page["total_capped"].as_bool() {
            Some(true) => all_rows(stack, *user_id).await.len(),
            _ => page["total"].as_u64().unwrap() as usize,
        };
    }
    n
}

/// Every audit row of `user_id`, page by page.
async fn all_rows(stack: &Stack, user_id: i64) -> Vec<Value> {
    let mut rows = Vec::new();
    for page in 1.. {
        let query = format!("/api/v1/requests?user_id={user_id}&page_size=500&page={page}");
        let body = stack.admin.get(&query).await.unwrap();
        let items = body["items"].as_array().unwrap().clone();
        let last = items.len() < 500;
        rows.extend(items);
        if last {
            break;
        }
    }
    rows
}

/// Several known keys under continuous load while the control plane is
/// down for 30 s: every request with a known key is served, unknown keys get
/// 503 `auth_unavailable`, and once it is back every request is in the audit
/// log exactly once and the spend totals equal the sum of the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_down_30s_under_load_loses_nothing() {
    // This load is some 400-500 requests a second here: 30 s of it fits the
    // default queue (100,000 events).
    let mut stack = Stack::start(StackOptions::new("fail_static_load").poll_interval_ms(300))
    .await
    .unwrap();
    let mut keys = Vec::new();
    for _ in 0..LOAD_KEYS {
        let (user, key) = stack.user_with_key(json!({})).await.unwrap();
        keys.push((user["id"].as_i64().unwrap(), key));
    }
    // Warm every key into the filter's cache; the warm-up is billed too.
    let mut warmup: HashMap<i64, String> = HashMap::new();
    for (user_id, key) in &keys {
        let (req, request_id) = stack.messages(&key.raw);
        let resp = req.json(&hubgate_e2e::simple_body("claude-sonnet-4-5", false, "warm")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap_or_default());
        warmup.insert(*user_id, request_id);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = keys
        .iter()
        .map(|(user_id, key)| {
            let task =
                load(stack.http.clone(), stack.gateway_url(), key.raw.clone(), stop.clone(), Duration::from_millis(5));
            (*user_id, tokio::spawn(task))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;

    stack.stop_control_plane();
    let down_at = tokio::time::Instant::now();
    let mut unknown_sent = 0u64;
    while down_at.elapsed() < OUTAGE {
        let unknown = format!("sk-never-issued-{}", hubgate_e2e::random_token(32));
        let (status, body) = send(&stack, &unknown).await;
        unknown_sent += 1;
        assert_eq!(status, 503, "an unknown key while the control plane is down: {body}");
        assert_eq!(body["error"]["code"], "auth_unavailable", "{body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stack.restart_control_plane().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);

    let mut sent: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for (user_id, task) in tasks {
        let requests = task.await.unwrap();
        let failures: Vec<&String> = requests.iter().filter_map(|s| s.failure.as_ref()).collect();
        assert!(
            failures.is_empty(),
            "user {user_id}: {} of {} requests failed: {failures:?}",
            failures.len(),
            requests.len()
        );
        let mut ids: Vec<String> = requests.into_iter().map(|s| s.request_id).collect();
        ids.push(warmup[&user_id].clone());
        sent.insert(user_id, ids);
    }
    let known_sent: usize = sent.values().map(|ids| ids.len() - 1).sum();
    println!(
        "load: {known_sent} requests with known keys in {}s, {unknown_sent} with unknown keys",
        OUTAGE.as_secs() + 5
    );

    // Every event of a known key arrives, once. (Refusals of unknown keys
    // get rows only for the first few per client address and minute.)
    let want: usize = sent.values().map(Vec::len).sum();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut stored = user_rows(&stack, &keys).await;
    while stored < want && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stored = user_rows(&stack, &keys).await;
    }
    assert_eq!(stored, want, "audit rows of the known keys after recovery");
    assert_eq!(stack.filter_counter("hubgate_events_dropped_total").await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(user_rows(&stack, &keys).await, want, "no event is stored twice");

    for (user_id, key) in &keys {
        let rows = all_rows(&stack, *user_id).await;
        let mut seen: Vec<String> = rows.iter().map(|r| r["request_id"].as_str().unwrap().to_string()).collect();
        let mut expected = sent[user_id].clone();
        seen.sort();
        expected.sort();
        assert_eq!(seen.len(), expected.len(), "user {user_id}: rows vs requests sent");
        assert!(seen == expected, "user {user_id}: every request exactly once, by request id");
        let mut sum = Decimal::ZERO;
        for row in &rows {
            assert_eq!(row["status"], 200, "{row}");
            assert_eq!(row["flags"], json!([]), "{row}");
            sum += decimal(&row["cost_usd"]).unwrap();
        }
        assert!(sum > Decimal::ZERO);
        for (entity, id) in [("users", *user_id), ("keys", key.id)] {
            let usage = stack.admin.get(&format!("/api/v1/usage/{entity}/{id}")).await.unwrap();
            let total = usage["windows"]
                .as_array()
                .unwrap()
                .iter()
                .find(|w| w["limit_type"] == "usd_total")
                .unwrap_or_else(|| panic!("no usd_total window: {usage}"));
            assert_eq!(decimal(&total["spent_usd"]).unwrap().normalize(), sum.normalize(), "{entity}/{id}: {usage}");
        }
    }
}
