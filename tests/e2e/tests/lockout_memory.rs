//! Lockout counting uses a fixed amount of Envoy's memory however many
//! client addresses guess: 100,000 distinct addresses (through a trusted
//! proxy's X-Forwarded-For) leave Envoy's resident memory where 10,000 left
//! it.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use hubgate_e2e::{simple_body, Stack, StackOptions};
use serde_json::json;

const CONCURRENCY: u32 = 32;

/// Sends requests `from..to` (address = 10.0.0.0 + i) with a wrong key.
async fn guess(stack: &Stack, from: u32, to: u32) {
    let next = Arc::new(AtomicU32::new(from));
    let body = serde_json::to_vec(&simple_body("claude-sonnet-4-5", false, "x")).unwrap();
    let url = format!("{}/v1/messages", stack.gateway_url());
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (next, body, url, http) = (next.clone(), body.clone(), url.clone(), stack.http.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= to {
                        break;
                    }
                    let ip = Ipv4Addr::from(0x0a00_0000 + i).to_string();
                    let resp = http
                        .post(&url)
                        .header("x-api-key", "sk-not-a-key-not-a-key-not-a-key")
                        .header("x-forwarded-for", ip)
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(resp.status(), 401);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_addresses_take_no_more_memory() {
    let mut stack = Stack::start(
        StackOptions::new("lockout_memory")
            .envoy_var("XFF_TRUSTED_HOPS", "1")
            .envoy_log_level("warning")
            // Every guess is counted, none locks: the worst case for memory.
            .plugin("lockout_max_failures", json!(1_000_000_000))
            .plugin("unauthenticated_audit_per_minute", json!(100)),
    )
    .await
    .unwrap();
    let start = stack.envoy.rss_bytes().unwrap();
    guess(&stack, 0, 10_000).await;
    let at_10k = stack.envoy.rss_bytes().unwrap();
    guess(&stack, 10_000, 100_000).await;
    let at_100k = stack.envoy.rss_bytes().unwrap();
    println!("envoy RSS: start {} KiB, 10k addresses {} KiB, 100k addresses {} KiB", start >> 10, at_10k >> 10, at_100k >> 10);
    assert!(stack.envoy_alive().await);
    let grown = at_100k.saturating_sub(at_10k);
    // Unbounded, this grew ~0.7 KB per address (25,000 → +17 MB).
    assert!(grown < 16 << 20, "Envoy grew {} KiB between 10k and 100k addresses", grown >> 10);
    let unaudited = stack.filter_counter("hubgate_unauthenticated_unaudited_total").await.unwrap();
    assert!(unaudited > 90_000, "{unaudited}");
}
