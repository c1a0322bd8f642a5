//! A key disabled through the admin API is refused within one snapshot poll
//! interval (plus slack for the callouts), and Envoy keeps running.

use std::time::{Duration, Instant};

use hubgate_e2e::{read_json, simple_body, Stack, StackOptions};
use serde_json::json;

/// Time for the snapshot callout, the key re-resolution and a loaded machine.
const SLACK: Duration = Duration::from_millis(1500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_key_is_refused_within_one_poll_interval() {
    let mut stack = Stack::start(StackOptions::new("key_disable").poll_interval_ms(300)).await.unwrap();
    let envoy_pid = stack.envoy.child.pid();
    let (_u, key) = stack.user_with_key(json!({})).await.unwrap();
    let (_u, other) = stack.user_with_key(json!({})).await.unwrap();
    let body = simple_body("claude-sonnet-4-5", false, "still here?");

    // Warm the key caches of both worker threads.
    for _ in 0..6 {
        for k in [&key.raw, &other.raw] {
            let (req, _) = stack.messages(k);
            assert_eq!(req.json(&body).send().await.unwrap().status(), 200);
        }
    }

    stack.admin.disable_key(key.id).await.unwrap();
    let disabled_at = Instant::now();
    let deadline = stack.poll_interval + SLACK;
    let reply = loop {
        let (req, _) = stack.messages(&key.raw);
        let (status, _, reply) = read_json(req.json(&body).send().await.unwrap()).await.unwrap();
        if status == 401 {
            break reply;
        }
        assert_eq!(status, 200, "{reply}");
        assert!(
            disabled_at.elapsed() <= deadline,
            "the disabled key still worked {:?} after the admin API disabled it (poll interval {:?})",
            disabled_at.elapsed(),
            stack.poll_interval
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    println!("disabled key refused after {:?}", disabled_at.elapsed());
    assert_eq!(reply["error"]["code"], "key_disabled", "{reply}");

    // Refused on every later request, on every worker.
    for _ in 0..6 {
        let (req, _) = stack.messages(&key.raw);
        assert_eq!(req.json(&body).send().await.unwrap().status(), 401);
    }
    // Other keys are unaffected, and Envoy was never restarted.
    let (req, _) = stack.messages(&other.raw);
    assert_eq!(req.json(&body).send().await.unwrap().status(), 200);
    assert!(stack.envoy_alive().await, "Envoy stopped");
    assert_eq!(stack.envoy.child.pid(), envoy_pid);
}
