//! The content guards of SPEC §2 through real Envoy, with Claude Code-shaped
//! requests: client and model restrictions, the warmup intercept, the order
//! of the chain, and changes through the admin API taking effect while Envoy
//! keeps running.

use std::time::Duration;

use hubgate_e2e::claude_code::{self, ClaudeCodeSession};
use hubgate_e2e::{assert_anthropic_error, read_json, Stack, StackOptions};
use serde_json::{json, Value};

const MODEL: &str = "claude-sonnet-4-5";

/// A Claude Code-shaped `POST /v1/messages` with `key`; status, body and
/// the request id.
async fn claude_code_request(stack: &Stack, key: &str, body: &Value, user_agent: Option<&str>) -> (u16, Value, String) {
    let session = ClaudeCodeSession::random();
    let (mut req, id) = stack.request(reqwest::Method::POST, "/v1/messages?beta=true");
    for (name, value) in claude_code::headers(&session) {
        if name == "user-agent" {
            if let Some(ua) = user_agent {
                req = req.header(name, ua);
            }
            continue;
        }
        req = req.header(name, value);
    }
    let resp = req.header("x-api-key", key).json(body).send().await.unwrap();
    let (status, _, body) = read_json(resp).await.unwrap();
    (status, body, id)
}

fn cc_body(model: &str) -> Value {
    claude_code::body(model, &ClaudeCodeSession::random(), false)
}

async fn audit_row(stack: &Stack, user: &Value, request_id: &str) -> Value {
    let user_id = user["id"].as_i64().unwrap();
    stack.admin.wait_for_request(user_id, request_id, Duration::from_secs(20)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_restrictions() {
    let stack = Stack::start(StackOptions::new("guards_client")).await.unwrap();
    let ua = claude_code::USER_AGENT;

    // Only Codex allowed: Claude Code is refused with the spec's message.
    let (user, key) = stack.user_with_key(json!({"allowed_clients": ["codex-cli"]})).await.unwrap();
    let (status, body, id) = claude_code_request(&stack, &key.raw, &cc_body(MODEL), Some(ua)).await;
    assert_eq!(status, 400, "{body}");
    let message = "Client not allowed. Your client is not in the allowed list.";
    assert_eq!(body["error"]["message"], message, "{body}");
    let row = audit_row(&stack, &user, &id).await;
    assert_eq!(row["status"], 400);
    assert!(row["blocked_by"].as_str().unwrap().starts_with("client_"), "{row}");
    assert!(row["blocked_reason"].is_object(), "{row}");
    assert_eq!(row["provider_id"], Value::Null);

    // Without a User-Agent while restricted.
    let (status, body, _) = claude_code_request(&stack, &key.raw, &cc_body(MODEL), None).await;
    assert_eq!(status, 400, "{body}");
    let message = "Client not allowed. User-Agent header is required when client restrictions are configured.";
    assert_eq!(body["error"]["message"], message, "{body}");

    // Claude Code allowed: the real signals pass; the UA alone does not.
    let (_u, cc_key) = stack.user_with_key(json!({"allowed_clients": ["claude-cli"]})).await.unwrap();
    let (status, body, _) = claude_code_request(&stack, &cc_key.raw, &cc_body(MODEL), Some(ua)).await;
    assert_eq!(status, 200, "{body}");
    let (req, _) = stack.messages(&cc_key.raw);
    let resp = req.header("user-agent", ua).json(&hubgate_e2e::simple_body(MODEL, false, "hi")).send().await.unwrap();
    assert_eq!(resp.status(), 400, "a bare claude-cli User-Agent is not Claude Code");

    // Blocked wins.
    let (_u, blocked) =
        stack.user_with_key(json!({"allowed_clients": ["claude-cli"], "blocked_clients": ["claude-cli"]})).await.unwrap();
    let (status, body, _) = claude_code_request(&stack, &blocked.raw, &cc_body(MODEL), Some(ua)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().starts_with("Client blocked (detected: "), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_restrictions_and_runtime_changes() {
    let stack = Stack::start(StackOptions::new("guards_model")).await.unwrap();
    let (user, key) = stack.user_with_key(json!({"allowed_models": ["CLAUDE-SONNET-4-5"]})).await.unwrap();
    let ua = Some(claude_code::USER_AGENT);

    let (status, body, _) = claude_code_request(&stack, &key.raw, &cc_body(MODEL), ua).await;
    assert_eq!(status, 200, "case-insensitive exact match: {body}");
    let (status, body, id) = claude_code_request(&stack, &key.raw, &cc_body("claude-sonnet-4"), ua).await;
    assert_eq!(status, 400, "{body}");
    assert_anthropic_error(
        &body,
        "invalid_request_error",
        "model_not_allowed",
        "Model not allowed. The requested model 'claude-sonnet-4' is not in the allowed list.",
        &id,
    );
    let mut no_model = cc_body(MODEL);
    no_model.as_object_mut().unwrap().remove("model");
    let (status, body, _) = claude_code_request(&stack, &key.raw, &no_model, ua).await;
    assert_eq!(status, 400, "{body}");
    let message = "Model not allowed. Model specification is required when model restrictions are configured.";
    assert_eq!(body["error"]["message"], message);
    let row = audit_row(&stack, &user, &id).await;
    assert_eq!(row["blocked_by"], "model_not_allowed", "{row}");
    // One counter per outcome, with the stable code, in Envoy's Prometheus stats.
    let (_, prometheus) = stack.envoy.admin_get("/stats/prometheus").await.unwrap();
    let counter = prometheus
        .lines()
        .find(|l| l.contains("hubgate_local_reply_model_not_allowed_total") && !l.starts_with('#'))
        .unwrap_or_else(|| panic!("no model_not_allowed counter in /stats/prometheus"));
    assert!(counter.trim().ends_with(" 2"), "{counter}");

    // The admin widens the list; the running gateway follows within a poll.
    let user_id = user["id"].as_i64().unwrap();
    stack.admin.patch_user(user_id, json!({"allowed_models": []})).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _, _) = claude_code_request(&stack, &key.raw, &cc_body("claude-sonnet-4"), ua).await;
        if status == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the change did not take effect");
        tokio::time::sleep(stack.poll_interval).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warmup_is_answered_by_the_gateway() {
    let stack = Stack::start(StackOptions::new("guards_warmup")).await.unwrap();
    let (user, key) = stack.user_with_key(json!({})).await.unwrap();
    let warmup = |stream: bool| {
        json!({
            "model": MODEL, "max_tokens": 1, "stream": stream,
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Warmup", "cache_control": {"type": "ephemeral"}}
            ]}]
        })
    };
    // Off (the default): it goes to the provider.
    let (status, _, _) = claude_code_request(&stack, &key.raw, &warmup(false), Some(claude_code::USER_AGENT)).await;
    assert_eq!(status, 200);
    assert_eq!(stack.mock.requests().len(), 1);
    stack.mock.clear_requests();

    stack.admin.patch("/api/v1/settings", &json!({"intercept_anthropic_warmup_requests": true})).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let (resp_headers, body, id) = loop {
        let (req, id) = stack.messages(&key.raw);
        let resp = req.json(&warmup(false)).send().await.unwrap();
        let (status, headers, body) = read_json(resp).await.unwrap();
        assert_eq!(status, 200, "{body}");
        if headers.get("x-cch-intercepted").is_some() {
            break (headers, body, id);
        }
        assert!(tokio::time::Instant::now() < deadline, "the setting did not take effect");
        stack.mock.clear_requests();
        tokio::time::sleep(stack.poll_interval).await;
    };
    assert_eq!(resp_headers["x-cch-intercepted"], "warmup");
    assert_eq!(body["type"], "message", "{body}");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["content"][0]["type"], "text");
    assert!(stack.mock.requests().is_empty(), "the warmup reached the provider");
    let row = audit_row(&stack, &user, &id).await;
    assert_eq!(row["blocked_by"], "warmup", "{row}");
    assert_eq!(row["status"], 200);
    assert_eq!(row["error"], Value::Null);
    assert_eq!(row["provider_id"], Value::Null);
    assert_eq!(hubgate_e2e::decimal(&row["cost_usd"]).unwrap(), rust_decimal::Decimal::ZERO);

    // Streaming: a complete SSE message.
    let (req, _) = stack.messages(&key.raw);
    let resp = req.json(&warmup(true)).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    let events: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(events.first(), Some(&"message_start"), "{text}");
    assert_eq!(events.last(), Some(&"message_stop"), "{text}");

    // As Claude Code sends it: with its system prompt and tools (~115 KB,
    // read in parts), twice, the second time with every part seen.
    let mut full = cc_body(MODEL);
    full["messages"] = warmup(false)["messages"].clone();
    for _ in 0..2 {
        let (status, body, _) = claude_code_request(&stack, &key.raw, &full, Some(claude_code::USER_AGENT)).await;
        assert_eq!((status, &body["type"]), (200, &json!("message")), "{body}");
        assert!(stack.mock.requests().is_empty(), "a Claude Code warmup reached the provider");
    }
    // The same body with a real first message goes through.
    let (status, _, _) = claude_code_request(&stack, &key.raw, &cc_body(MODEL), Some(claude_code::USER_AGENT)).await;
    assert_eq!(status, 200);
    assert_eq!(stack.mock.requests().len(), 1);
    stack.mock.clear_requests();

    // Look-alikes still go to the provider.
    let mut two_blocks = warmup(false);
    two_blocks["messages"][0]["content"].as_array_mut().unwrap().push(json!({"type": "text", "text": "more"}));
    let (req, _) = stack.messages(&key.raw);
    let resp = req.json(&two_blocks).send().await.unwrap();
    assert!(resp.headers().get("x-cch-intercepted").is_none());
    assert_eq!(stack.mock.requests().len(), 1);
}

/// The real Claude Code CLI with its user restricted to `claude-cli` gets
/// through; restricted to `codex-cli` it is refused with the spec's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_claude_code_and_client_lists() {
    let claude = hubgate_e2e::paths::claude().unwrap();
    let stack = Stack::start(StackOptions::new("guards_real_claude")).await.unwrap();
    for (allowed, ok) in [("claude-cli", true), ("codex-cli", false)] {
        let (_u, key) = stack.user_with_key(json!({"allowed_clients": [allowed]})).await.unwrap();
        let home = stack.log_dir.join(format!("home-{allowed}"));
        std::fs::create_dir_all(&home).unwrap();
        let run = tokio::process::Command::new(&claude)
            .args(["-p", "Reply with the word pong."])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("ANTHROPIC_BASE_URL", stack.gateway_url())
            .env("ANTHROPIC_API_KEY", &key.raw)
            .env("DISABLE_AUTOUPDATER", "1")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .current_dir(&home)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(120), run).await.expect("claude -p timed out").unwrap();
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if ok {
            assert!(out.status.success(), "claude-cli allowed but refused: {all}");
            assert!(all.contains("You said:"), "{all}");
        } else {
            assert!(!out.status.success(), "codex-cli only, but Claude Code got through: {all}");
            assert!(all.contains("Client not allowed. Your client is not in the allowed list."), "{all}");
        }
    }
}

/// A Claude Code-shaped body whose last user text is `text`, with `extra`
/// turns before it.
fn cc_body_saying(model: &str, text: &str, extra: Vec<Value>) -> Value {
    let mut body = cc_body(model);
    let messages = body["messages"].as_array_mut().unwrap();
    messages.extend(extra);
    messages.push(json!({"role": "user", "content": [{"type": "text", "text": text}]}));
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensitive_words_order_and_locale() {
    let stack = Stack::start(StackOptions::new("guards_sensitive_words")).await.unwrap();
    let (user, key) = stack.user_with_key(json!({"allowed_models": [MODEL]})).await.unwrap();
    let ua = Some(claude_code::USER_AGENT);
    let word = stack
        .admin
        .post("/api/v1/sensitive-words", &json!({"word": "Project Nightfall", "match_type": "contains"}))
        .await
        .unwrap();
    // Wait for the new policy: the word blocks.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let (body, id) = loop {
        let (status, body, id) =
            claude_code_request(&stack, &key.raw, &cc_body_saying(MODEL, "tell me about project NIGHTFALL", vec![]), ua).await;
        if status == 400 {
            break (body, id);
        }
        assert_eq!(status, 200, "{body}");
        assert!(tokio::time::Instant::now() < deadline, "the word never took effect");
        tokio::time::sleep(stack.poll_interval).await;
    };
    assert_eq!(body["error"]["code"], "sensitive_word", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("Project Nightfall") && message.contains("NIGHTFALL"), "{message}");
    let row = audit_row(&stack, &user, &id).await;
    assert_eq!(row["blocked_by"], "sensitive_word", "{row}");
    assert_eq!(row["blocked_reason"]["word"], "Project Nightfall", "{row}");
    assert_eq!(row["blocked_reason"]["match_type"], "contains", "{row}");
    assert!(row["blocked_reason"]["matched_text"].as_str().unwrap().contains("project NIGHTFALL"), "{row}");
    assert_eq!(row["provider_id"], Value::Null);
    assert_eq!(hubgate_e2e::decimal(&row["cost_usd"]).unwrap(), rust_decimal::Decimal::ZERO);

    // A JSON escape does not hide it.
    let raw = serde_json::to_string(&cc_body_saying(MODEL, "about PLACEHOLDER", vec![]))
        .unwrap()
        .replace("PLACEHOLDER", "\\u0050roject Nightfall");
    let (req, _) = stack.request(reqwest::Method::POST, "/v1/messages");
    let resp = req
        .header("x-api-key", &key.raw)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "an escaped word passed");

    // Only in an assistant turn or a tool schema: not blocked.
    let assistant = vec![
        json!({"role": "user", "content": "hi"}),
        json!({"role": "assistant", "content": [{"type": "text", "text": "Project Nightfall is secret"}]}),
    ];
    let (status, body, _) = claude_code_request(&stack, &key.raw, &cc_body_saying(MODEL, "ok", assistant), ua).await;
    assert_eq!(status, 200, "an assistant turn was checked: {body}");
    let mut tool = cc_body_saying(MODEL, "ok", vec![]);
    tool["tools"][0]["description"] = json!("Works on Project Nightfall");
    let (status, body, _) = claude_code_request(&stack, &key.raw, &tool, ua).await;
    assert_eq!(status, 200, "a tool schema was checked: {body}");

    // Breaking the sensitive-word and the model rule: the word answers.
    let both = cc_body_saying("claude-opus-4-1", "Project Nightfall", vec![]);
    let (status, body, _) = claude_code_request(&stack, &key.raw, &both, ua).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("sensitive_word")), "{body}");

    // In Simplified Chinese when the locale says so.
    stack.admin.patch("/api/v1/settings", &json!({"locale": "zh-CN"})).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, body, _) =
            claude_code_request(&stack, &key.raw, &cc_body_saying(MODEL, "project nightfall", vec![]), ua).await;
        let message = body["error"]["message"].as_str().unwrap_or_default().to_string();
        if message.contains("敏感词") {
            assert_eq!(body["error"]["code"], "sensitive_word", "codes never change");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the locale never took effect: {message}");
        tokio::time::sleep(stack.poll_interval).await;
    }

    // Every other reply too, e.g. a wrong key.
    let (req, _) = stack.messages("sk-wrong-wrong-wrong-wrong");
    let (status, _, body) = read_json(req.json(&hubgate_e2e::simple_body(MODEL, false, "x")).send().await.unwrap()).await.unwrap();
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(body["error"]["message"], "API 密钥无效。", "{body}");

    // Deleted: the same request goes through within a poll interval.
    let word_id = word["id"].as_i64().unwrap();
    stack.admin.call(reqwest::Method::DELETE, &format!("/api/v1/sensitive-words/{word_id}"), None).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _, _) =
            claude_code_request(&stack, &key.raw, &cc_body_saying(MODEL, "project nightfall", vec![]), ua).await;
        if status == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the deleted word still blocks");
        tokio::time::sleep(stack.poll_interval).await;
    }
}

/// Guard 5 (SPEC §2.5): the control plane computes the GA version from the
/// audit log (two distinct users on a version make it GA), ships it in the
/// snapshot, and older clients are asked to upgrade; the check fails open
/// for clients it has no GA data for, and is off unless enabled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_version_check_uses_the_ga_version_from_the_audit_log() {
    let options =
        StackOptions::new("guards_client_version").control_plane_env("HUBGATE_CLIENT_VERSION_INTERVAL_SECS", "1");
    let stack = Stack::start(options).await.unwrap();
    let current = claude_code::USER_AGENT; // claude-cli/2.1.197
    let old = "claude-cli/2.0.5 (external, cli)";

    // Two users on the current version: that makes it GA.
    for _ in 0..2 {
        let (user, key) = stack.user_with_key(json!({})).await.unwrap();
        let (status, body, id) = claude_code_request(&stack, &key.raw, &cc_body(MODEL), Some(current)).await;
        assert_eq!(status, 200, "{body}");
        audit_row(&stack, &user, &id).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let versions = stack.admin.get("/api/v1/client-versions").await.unwrap();
        let claude = versions.as_array().unwrap().iter().find(|v| v["client_type"] == "claude-cli");
        if let Some(claude) = claude {
            assert_eq!(claude["version"], "2.1.197", "{versions}");
            assert_eq!(claude["users"], 2, "{versions}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the control plane computed no GA version: {versions}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (user, key) = stack.user_with_key(json!({})).await.unwrap();

    // Off by default: the old client passes.
    let (status, body, _) = claude_code_request(&stack, &key.raw, &cc_body(MODEL), Some(old)).await;
    assert_eq!(status, 200, "{body}");

    stack.admin.patch("/api/v1/settings", &json!({"enable_client_version_check": true})).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (body, id) = loop {
        let (status, body, id) = claude_code_request(&stack, &key.raw, &cc_body(MODEL), Some(old)).await;
        if status == 400 {
            break (body, id);
        }
        assert_eq!(status, 200, "{body}");
        assert!(tokio::time::Instant::now() < deadline, "no GA version reached the filter");
        tokio::time::sleep(stack.poll_interval).await;
    };
    assert_eq!(body["type"], "error", "{body}");
    let error = &body["error"];
    assert_eq!(error["type"], "client_upgrade_required", "{body}");
    assert_eq!(
        error["message"],
        "Your Claude Code CLI (v2.0.5) is outdated. Please upgrade to v2.1.197 or later to continue using this service.",
        "{body}"
    );
    assert_eq!(error["current_version"], "2.0.5", "{body}");
    assert_eq!(error["required_version"], "2.1.197", "{body}");
    assert_eq!(error["client_type"], "claude-cli", "{body}");
    assert_eq!(error["client_display_name"], "Claude Code CLI", "{body}");
    let row = audit_row(&stack, &user, &id).await;
    assert_eq!(row["status"], 400, "{row}");
    assert_eq!(row["blocked_by"], "client_upgrade_required", "{row}");
    assert_eq!(row["provider_id"], Value::Null, "{row}");

    // The GA version itself and newer ones pass; so does a client type
    // without GA data (fail-open), and a User-Agent that names no version.
    for ua in [current, "claude-cli/2.3.0 (external, cli)", "codex_cli_rs/0.1.0 (Debian 12; x86_64)", "curl/8.5.0"] {
        let (status, body, _) = claude_code_request(&stack, &key.raw, &cc_body(MODEL), Some(ua)).await;
        assert_eq!(status, 200, "{ua}: {body}");
    }

    // Switched off again at runtime: the old client passes within a poll.
    stack.admin.patch("/api/v1/settings", &json!({"enable_client_version_check": false})).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _, _) = claude_code_request(&stack, &key.raw, &cc_body(MODEL), Some(old)).await;
        if status == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "switching the check off did not take effect");
        tokio::time::sleep(stack.poll_interval).await;
    }
}
