//! The real Codex CLI (`codex exec`, Responses API) talks to the gateway as
//! a developer would: its requests reach the provider with the provider's
//! key only, its answer comes back, and the audit rows bill it exactly.

use hubgate_e2e::clients::{assert_billed_exactly, assert_succeeded, audit_rows, codex_exec, wait_until_routed};
use hubgate_e2e::{paths, AnthropicUsage, Stack, StackOptions};
use rust_decimal::Decimal;
use serde_json::json;

const MODEL: &str = "gpt-5-codex";
const PROMPT: &str = "Reply with the word pong.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_cli_through_the_gateway() {
    let codex = paths::codex().unwrap();
    let stack = Stack::start(StackOptions::new("real_codex")).await.unwrap();
    let multiplier = Decimal::new(125, 2);
    let provider = stack.mock_provider("mock-codex", "codex", multiplier).await.unwrap();
    let price = stack.price(MODEL).await.unwrap();
    let (_, probe_key) = stack.user_with_key(json!({})).await.unwrap();
    let probe = || {
        let (req, _) = stack.request(reqwest::Method::POST, "/v1/responses");
        req.bearer_auth(&probe_key.raw).json(&json!({"model": MODEL, "input": "probe"}))
    };
    wait_until_routed(&stack, probe).await.unwrap();

    let (user, key) = stack.user_with_key(json!({})).await.unwrap();
    let user_id = user["id"].as_i64().unwrap();
    // OpenAI reports no cache writes; cached input is inside input_tokens.
    let usage = AnthropicUsage {
        input_tokens: 1234,
        output_tokens: 56,
        cache_creation_5m_input_tokens: 0,
        cache_creation_1h_input_tokens: 0,
        cache_read_input_tokens: 2048,
    };
    stack.mock.set_usage(usage);

    let out = codex_exec(&codex, &stack, &key.raw, MODEL, PROMPT).await.unwrap();
    assert_succeeded("codex exec", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The mock answers "You said: <last user text>".
    assert!(stdout.contains(&format!("You said: {PROMPT}")), "unexpected answer: {stdout}");

    let upstream: Vec<_> = stack.mock.requests().into_iter().filter(|r| r.path == "/v1/responses").collect();
    assert!(!upstream.is_empty(), "Codex's request never reached the provider");
    let mut sessions = Vec::new();
    for r in &upstream {
        assert_eq!(r.header("authorization"), Some(format!("Bearer {}", stack.mock.api_key()).as_str()));
        assert_eq!(r.header_values("authorization").len(), 1);
        assert!(r.header("user-agent").unwrap_or_default().starts_with("codex_exec/"), "{:?}", r.header("user-agent"));
        assert!(!String::from_utf8_lossy(&r.body).contains(&key.raw), "the client key leaked into the body");
        let body = r.json().unwrap();
        assert_eq!(body["model"], MODEL);
        assert_eq!(body["stream"], true, "Codex streams");
        sessions.push(r.header("session-id").or(r.header("session_id")).map(str::to_string));
    }

    let rows = audit_rows(&stack, user_id, "/v1/responses", upstream.len()).await.unwrap();
    assert_eq!(rows.len(), upstream.len(), "one audit row per request: {rows:?}");
    for row in &rows {
        println!("audit row: {row}");
        assert_billed_exactly(row, &usage, &price, multiplier);
        assert_eq!(row["provider_id"], provider["id"], "{row}");
        assert_eq!(row["original_model"], MODEL, "{row}");
        assert_eq!(row["upstream_model"], MODEL, "{row}");
        assert_eq!(row["stream"], true, "{row}");
        assert!(row["user_agent"].as_str().unwrap_or_default().starts_with("codex_exec/"), "{row}");
        let session = row["session_id"].as_str().map(str::to_string);
        assert!(session.as_deref().is_some_and(|s| !s.is_empty()), "Codex sends a session id: {row}");
        assert!(sessions.contains(&session), "the session Codex sent ({sessions:?}): {row}");
    }
}
