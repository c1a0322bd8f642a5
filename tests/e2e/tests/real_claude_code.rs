//! The real Claude Code CLI (`claude -p`) talks to the gateway as a
//! developer would: its request reaches the provider with the provider's
//! key only, its answer comes back, and the audit row bills it exactly.

use std::process::Stdio;
use std::time::Duration;

use hubgate_e2e::{paths, Stack, StackOptions};
use serde_json::json;
use tokio::process::Command;

/// `claude -p` asking for a pong through the gateway with `key`, in a
/// fresh HOME so no settings or login of this machine's user apply.
async fn claude_p(claude: &std::path::Path, stack: &Stack, key: &str) -> std::process::Output {
    let home = stack.log_dir.join("claude-home");
    std::fs::create_dir_all(&home).unwrap();
    let run = Command::new(claude)
        .args(["-p", "Reply with the word pong."])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("ANTHROPIC_BASE_URL", stack.gateway_url())
        .env("ANTHROPIC_API_KEY", key)
        .env("DISABLE_AUTOUPDATER", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .current_dir(&home)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(120), run).await.expect("claude -p timed out").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_cli_through_the_gateway() {
    let claude = paths::claude().unwrap();
    let stack = Stack::start(StackOptions::new("real_claude_code")).await.unwrap();
    let (user, key) = stack.user_with_key(json!({})).await.unwrap();
    let user_id = user["id"].as_i64().unwrap();
    stack.mock.clear_requests();

    let out = claude_p(&claude, &stack, &key.raw).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "claude failed: {}\nstdout: {stdout}\nstderr: {stderr}", out.status);
    // The mock answers "You said: <last user text>".
    assert!(stdout.contains("You said:"), "unexpected answer: {stdout}\nstderr: {stderr}");

    let upstream: Vec<_> = stack.mock.requests().into_iter().filter(|r| r.path == "/v1/messages").collect();
    assert!(!upstream.is_empty(), "Claude Code's request never reached the provider");
    for r in &upstream {
        assert_eq!(r.header("x-api-key"), Some(stack.mock.api_key()));
        assert_eq!(r.header("authorization"), None);
        assert!(r.header("user-agent").unwrap_or_default().starts_with("claude-cli/"), "{:?}", r.header("user-agent"));
        assert!(!String::from_utf8_lossy(&r.body).contains(&key.raw), "the client key leaked into the body");
    }

    // Every conversation request is audited and billed exactly.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let rows: Vec<_> = stack
            .admin
            .requests(&[("user_id", user_id.to_string())])
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r["endpoint"] == "/v1/messages" && r["method"] == "POST")
            .collect();
        if rows.len() >= upstream.len() || tokio::time::Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(rows.len(), upstream.len(), "{rows:?}");
    let usage = stack.mock.usage();
    for row in &rows {
        assert_eq!(row["status"], 200, "{row}");
        assert!(row["user_agent"].as_str().unwrap_or_default().starts_with("claude-cli/"), "{row}");
        assert!(row["session_id"].as_str().is_some_and(|s| !s.is_empty()), "Claude Code always sends a session: {row}");
        assert_eq!(row["flags"], json!([]), "usage and price must both be known: {row}");
        let model = row["upstream_model"].as_str().unwrap();
        let price = stack.price(model).await.unwrap();
        let expected = price.cost(&usage, stack.cost_multiplier);
        let billed = hubgate_e2e::pricing::decimal(&row["cost_usd"]).unwrap();
        assert_eq!(billed, expected, "cost of {model}: {row}");
        assert_eq!(row["input_tokens"], usage.input_tokens, "{row}");
        assert_eq!(row["output_tokens"], usage.output_tokens, "{row}");
    }
}

/// A key whose cost limit is reached: Claude Code shows the gateway's 402
/// message to its user instead of an answer, and nothing reaches the provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_shows_the_quota_message() {
    let claude = paths::claude().unwrap();
    let stack = Stack::start(StackOptions::new("real_claude_code_quota")).await.unwrap();
    let (_, key) = stack.user_with_key(json!({})).await.unwrap();
    stack.admin.patch_key(key.id, json!({"limit_total_usd": "0.000001"})).await.unwrap();
    stack.mock.clear_requests();

    let out = claude_p(&claude, &stack, &key.raw).await;
    let shown = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "claude reported success over a spent quota: {shown}");
    assert!(shown.contains("402"), "the status is shown: {shown}");
    assert!(shown.contains("Key total cost limit exceeded"), "the gateway's message is shown: {shown}");
    let upstream = stack.mock.requests().into_iter().filter(|r| r.path == "/v1/messages").count();
    assert_eq!(upstream, 0, "nothing reached the provider");
}
