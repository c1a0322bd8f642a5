//! A client without a valid key cannot make Envoy hold memory or
//! connections: a missing or invalid key is answered before the body is
//! read; slow headers and slow bodies are cut by timeouts that never cut a
//! long response stream; connections and heap are bounded.

use std::time::{Duration, Instant};

use hubgate_e2e::raw::{head, RawConn};
use hubgate_e2e::{simple_body, Stack, StackOptions};
use serde_json::json;

const BODY_BYTES: usize = 9 * 1024 * 1024;

fn big_request_head(key: Option<&str>) -> Vec<u8> {
    let len = BODY_BYTES.to_string();
    let mut headers = vec![("content-type", "application/json"), ("content-length", len.as_str())];
    if let Some(key) = key {
        headers.push(("x-api-key", key));
    }
    head("POST", "/v1/messages", &headers)
}

fn made_up_key() -> String {
    format!("sk-{}", hubgate_e2e::random_token(48))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_key_is_answered_before_the_body_is_read() {
    let stack = Stack::start(StackOptions::new("slow_bad_key")).await.unwrap();
    for key in [None, Some(made_up_key())] {
        let mut conn = RawConn::connect(stack.envoy.listen_addr(), None).await.unwrap();
        conn.send(&big_request_head(key.as_deref())).await.unwrap();
        conn.send(&[b'{'; 64 * 1024]).await.unwrap();
        // The rest of the 9 MB never comes.
        let resp = conn.response(Duration::from_secs(20)).await.expect("no answer while the body was incomplete");
        assert_eq!(resp.status, 401, "{:?}", String::from_utf8_lossy(&resp.body));
        let code = if key.is_some() { "invalid_api_key" } else { "missing_api_key" };
        assert_eq!(resp.json()["error"]["code"], code);
        assert!(conn.closed_within(Duration::from_secs(10)).await, "the half-sent request's connection stays open");
    }
}

/// The attack from the review: 60 connections with made-up keys, each
/// sending a 9 MB body. All are answered 401 and Envoy's memory does not
/// grow by the bodies' size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_big_bodies_with_made_up_keys_hold_no_memory() {
    let stack = Stack::start(StackOptions::new("slow_big_bodies")).await.unwrap();
    let rss_before = stack.envoy.rss_bytes().unwrap();
    let addr = stack.envoy.listen_addr();
    let tasks: Vec<_> = (0..60)
        .map(|_| {
            tokio::spawn(async move {
                let mut conn = RawConn::connect(addr, None).await.unwrap();
                conn.send(&big_request_head(Some(&made_up_key()))).await.unwrap();
                let chunk = vec![b' '; 256 * 1024];
                // Send until Envoy answers and closes; a closed socket ends it.
                for _ in 0..(BODY_BYTES / chunk.len()) {
                    if conn.send(&chunk).await.is_err() {
                        break;
                    }
                }
                conn.response(Duration::from_secs(30)).await.map(|r| r.status)
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    // 401, or 429 for requests beyond the few per address that may wait
    // for their key (or once the lockout starts). A connection Envoy
    // closed while we still wrote may lose its answer in a reset; none may
    // get anything else.
    let answered = statuses.iter().filter(|s| matches!(s, Some(401 | 429))).count();
    assert!(answered >= 50, "only {answered} of 60 were answered: {statuses:?}");
    assert!(statuses.iter().all(|s| matches!(s, Some(401 | 429) | None)), "{statuses:?}");
    let rss_after = stack.envoy.rss_bytes().unwrap();
    let grown = rss_after.saturating_sub(rss_before);
    println!("envoy RSS {} MB -> {} MB", rss_before >> 20, rss_after >> 20);
    // 60 × 9 MB would be 540 MB (and before the fix it grew 350-500 MB).
    assert!(grown < 100 << 20, "Envoy grew by {} MB", grown >> 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_slow_bodies_are_cut_but_long_streams_are_not() {
    let stack = Stack::start(
        StackOptions::new("slow_timeouts")
            .envoy_var("REQUEST_HEADERS_TIMEOUT", "2s")
            .envoy_var("REQUEST_TIMEOUT", "3s"),
    )
    .await
    .unwrap();
    let (_u, key) = stack.user_with_key(json!({})).await.unwrap();
    let addr = stack.envoy.listen_addr();

    // Headers that never end.
    let mut conn = RawConn::connect(addr, None).await.unwrap();
    conn.send(b"POST /v1/messages HTTP/1.1\r\nhost: hubgate\r\nx-api-key: ").await.unwrap();
    assert!(conn.closed_within(Duration::from_secs(20)).await, "unfinished headers kept the connection open");

    // A valid key and a body that stops half way.
    let mut conn = RawConn::connect(addr, None).await.unwrap();
    conn.send(&head("POST", "/v1/messages", &[("x-api-key", &key.raw), ("content-length", "1000")])).await.unwrap();
    conn.send(b"{\"model\":").await.unwrap();
    let resp = conn.response(Duration::from_secs(20)).await.expect("a stalled body was held open");
    assert_eq!(resp.status, 408);
    // Envoy's own answer, in the client's dialect.
    assert_eq!(resp.json()["type"], "error", "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.json()["error"]["code"], "request_timeout");

    // A body trickled one byte at a time is cut at the request timeout.
    let mut conn = RawConn::connect(addr, None).await.unwrap();
    conn.send(&head("POST", "/v1/messages", &[("x-api-key", &key.raw), ("content-length", "1000")])).await.unwrap();
    let started = Instant::now();
    let mut cut = false;
    while started.elapsed() < Duration::from_secs(20) {
        if conn.send(b" ").await.is_err() {
            cut = true;
            break;
        }
        if let Some(resp) = conn.response(Duration::from_millis(500)).await {
            assert_eq!(resp.status, 408);
            cut = true;
            break;
        }
    }
    assert!(cut, "a trickled body was held for {:?}", started.elapsed());

    // A response stream longer than the request timeout is not cut: the
    // mock holds the stream for 5 s after its first event.
    let gate = stack.mock.arm_gate();
    let (req, _) = stack.messages(&key.raw);
    let resp = req.json(&simple_body("claude-sonnet-4-5", true, "long answer")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        gate.release();
    });
    let text = resp.text().await.expect("the stream was cut");
    release.await.unwrap();
    assert!(text.contains("message_stop"), "incomplete stream: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_refused() {
    let stack = Stack::start(StackOptions::new("slow_connection_limit").envoy_var("MAX_CONNECTIONS", "20"))
        .await
        .unwrap();
    let (_u, key) = stack.user_with_key(json!({})).await.unwrap();
    let addr = stack.envoy.listen_addr();
    // Envoy accepts a connection over the limit and closes it at once.
    let mut idle = Vec::new();
    let mut refused = 0;
    for _ in 0..30 {
        let mut conn = RawConn::connect(addr, None).await.unwrap();
        let _ = conn.send(b"POST /v1/messages HTTP/1.1\r\n").await;
        if conn.closed_within(Duration::from_millis(500)).await {
            refused += 1;
        } else {
            idle.push(conn);
        }
    }
    assert!(idle.len() <= 20, "{} connections held open past the limit of 20", idle.len());
    assert!(refused >= 9, "only {refused} of 30 connections refused");
    let (_, stats) = stack.envoy.admin_get("/stats?filter=downstream_global_cx_overflow").await.unwrap();
    let overflow: u64 = stats
        .lines()
        .filter(|l| l.starts_with("listener.127.0.0.1"))
        .filter_map(|l| l.rsplit(": ").next()?.trim().parse::<u64>().ok())
        .sum();
    assert!(overflow >= 1, "no connection refused for the global limit: {stats}");
    // Once the holders go, the gateway serves again.
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (req, _) = stack.messages(&key.raw);
        match req.json(&simple_body("claude-sonnet-4-5", false, "hi")).send().await {
            Ok(r) if r.status() == 200 => break,
            other if Instant::now() > deadline => panic!("not serving after the holders left: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Authenticated clients can still send big bodies and stall: once Envoy's
/// heap nears its budget, the overload manager cuts stalled streams within
/// seconds (and resets the biggest HTTP/2 streams), so they cannot exhaust
/// it either; the request timeout would only cut them after a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heap_budget_resets_the_biggest_streams() {
    let mut stack = Stack::start(
        StackOptions::new("slow_heap_budget")
            .envoy_var("MAX_HEAP_BYTES", (160u64 << 20).to_string())
            .plugin("max_body_bytes", json!(BODY_BYTES)),
    )
    .await
    .unwrap();
    let (_u, key) = stack.user_with_key(json!({})).await.unwrap();
    let addr = stack.envoy.listen_addr();
    // Each sends 8 of its 9 MB and stalls: the filter holds the body.
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let key = key.raw.clone();
            tokio::spawn(async move {
                let mut conn = RawConn::connect(addr, None).await.unwrap();
                conn.send(&big_request_head(Some(&key))).await.unwrap();
                let chunk = vec![b' '; 256 * 1024];
                for _ in 0..32 {
                    if conn.send(&chunk).await.is_err() {
                        return true;
                    }
                }
                conn.closed_within(Duration::from_secs(60)).await
            })
        })
        .collect();
    let mut reset = 0;
    for t in tasks {
        if t.await.unwrap() {
            reset += 1;
        }
    }
    let (_, stats) = stack.envoy.admin_get("/stats?filter=overload").await.unwrap();
    println!("{stats}");
    assert!(reset > 0, "no stream was reset though 240 MB were buffered against a 160 MB budget");
    assert!(stack.envoy_alive().await, "Envoy stopped");
    let (req, _) = stack.messages(&key.raw);
    let resp = req.json(&simple_body("claude-sonnet-4-5", false, "after")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "not serving after the overload");
}
