//! The admin API refuses what could confuse an admin or be guessed: names
//! that differ only in case or Unicode form, invisible and bidi characters,
//! repeated JSON keys, non-JSON bodies; and failed admin logins from one
//! address lock that address out. Against the real control plane process.

use std::net::IpAddr;

use hubgate_e2e::{Stack, StackOptions};
use serde_json::Value;

async fn post_raw(stack: &Stack, path: &str, content_type: &str, body: &str) -> (u16, Value) {
    let resp = stack
        .http
        .post(format!("{}{path}", stack.control_plane.url()))
        .bearer_auth(&stack.admin_token)
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confusable_names_and_odd_bodies_are_refused() {
    let stack = Stack::start(StackOptions::new("admin_api_input").without_provider()).await.unwrap();
    let json = "application/json";
    assert_eq!(post_raw(&stack, "/api/v1/users", json, r#"{"name":"probe-dup"}"#).await.0, 201);
    assert_eq!(post_raw(&stack, "/api/v1/users", json, r#"{"name":"PROBE-DUP"}"#).await.0, 409);
    assert_eq!(post_raw(&stack, "/api/v1/users", json, "{\"name\":\"probe-\u{e9}\"}").await.0, 201);
    assert_eq!(post_raw(&stack, "/api/v1/users", json, "{\"name\":\"probe-e\u{301}\"}").await.0, 409, "NFD twin");
    let (status, body) = post_raw(&stack, "/api/v1/users", json, "{\"name\":\"admin\u{202e}txt\"}").await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = post_raw(&stack, "/api/v1/users", json, r#"{"name":"a-1","name":"b-1"}"#).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = post_raw(&stack, "/api/v1/users", "text/plain", r#"{"name":"plain"}"#).await;
    assert_eq!(status, 415, "{body}");
    // Nothing of the refused ones was written.
    let users = hubgate_e2e::admin::list_items(&stack.admin.get("/api/v1/users").await.unwrap()).unwrap();
    let names: Vec<&str> = users.iter().filter_map(|u| u["name"].as_str()).collect();
    for refused in ["PROBE-DUP", "probe-e\u{301}", "a-1", "b-1", "plain"] {
        assert!(!names.contains(&refused), "{refused} was written: {names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_admin_logins_lock_out_their_address_only() {
    let stack = Stack::start(StackOptions::new("admin_api_throttle").without_provider()).await.unwrap();
    let from = |ip: &str| {
        reqwest::Client::builder().no_proxy().local_address(ip.parse::<IpAddr>().unwrap()).build().unwrap()
    };
    let guesser = from("127.0.0.9");
    let url = format!("{}/api/v1/users", stack.control_plane.url());
    let mut statuses = Vec::new();
    for i in 0..25 {
        let resp = guesser.get(&url).bearer_auth(format!("hgadm-guess-{i}")).send().await.unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(&statuses[..20], &[401; 20], "{statuses:?}");
    assert!(statuses[20..].iter().all(|s| *s == 429), "{statuses:?}");
    // Even the right token from that address waits out the lockout …
    let resp = guesser.get(&url).bearer_auth(&stack.admin_token).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_some());
    // … while the admin elsewhere is not affected.
    let resp = from("127.0.0.10").get(&url).bearer_auth(&stack.admin_token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}
