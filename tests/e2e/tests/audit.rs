//! The audit row of a proxied request holds the exact token counts and the
//! exact cost: seeded model price × provider cost multiplier (SPEC §4, §5),
//! for JSON and SSE replies alike.

use std::time::Duration;

use hubgate_e2e::{decimal, read_json, uuid_v4, AnthropicUsage, Stack, StackOptions};
use rust_decimal::Decimal;
use serde_json::{json, Value};

#[track_caller]
fn assert_tokens(row: &Value, usage: &AnthropicUsage) {
    let n = |field: &str| row[field].as_u64().unwrap_or_else(|| panic!("`{field}` missing in audit row {row}"));
    assert_eq!(n("input_tokens"), usage.input_tokens, "{row}");
    assert_eq!(n("output_tokens"), usage.output_tokens, "{row}");
    assert_eq!(n("cache_creation_5m_tokens"), usage.cache_creation_5m_input_tokens, "{row}");
    assert_eq!(n("cache_creation_1h_tokens"), usage.cache_creation_1h_input_tokens, "{row}");
    assert_eq!(n("cache_read_tokens"), usage.cache_read_input_tokens, "{row}");
}

#[track_caller]
fn assert_cost(row: &Value, expected: Decimal, multiplier: Decimal) {
    let cost = decimal(&row["cost_usd"]).unwrap_or_else(|e| panic!("cost_usd in {row}: {e}"));
    assert_eq!(cost.normalize(), expected.normalize(), "cost_usd of {row}");
    let m = decimal(&row["cost_multiplier"]).unwrap_or_else(|e| panic!("cost_multiplier in {row}: {e}"));
    assert_eq!(m.normalize(), multiplier.normalize(), "{row}");
}

#[track_caller]
fn assert_timing(row: &Value) {
    let ttfb = row["ttfb_ms"].as_u64().unwrap_or_else(|| panic!("ttfb_ms missing in {row}"));
    let duration = row["duration_ms"].as_u64().unwrap_or_else(|| panic!("duration_ms missing in {row}"));
    assert!(ttfb <= duration, "ttfb {ttfb} > duration {duration}: {row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_rows_hold_exact_tokens_and_cost_for_json_and_sse() {
    let stack = Stack::start(StackOptions::new("audit_cost")).await.unwrap();
    let multiplier = stack.cost_multiplier;
    assert_ne!(multiplier, Decimal::ONE, "use a multiplier that shows whether it is applied");
    let (user, key) = stack.user_with_key(json!({})).await.unwrap();
    let user_id = user["id"].as_i64().unwrap();
    let model = stack.claude_model("claude-sonnet-4").await.unwrap();
    let price = stack.price(&model).await.unwrap();
    // An admin price without cache prices, for the fallback case at the end;
    // created now so the filter's snapshot has it long before it is used.
    let fallback_model = "e2e-fallback-model";
    stack
        .admin
        .post(
            "/api/v1/model-prices",
            &json!({"model": fallback_model, "input_per_mtok": "2", "output_per_mtok": "8"}),
        )
        .await
        .unwrap();

    // --- JSON reply; session id from Claude Code's JSON `metadata.user_id`.
    let usage = AnthropicUsage {
        input_tokens: 1234,
        output_tokens: 567,
        cache_creation_5m_input_tokens: 2048,
        cache_creation_1h_input_tokens: 512,
        cache_read_input_tokens: 8192,
    };
    stack.mock.set_usage(usage);
    let session_id = uuid_v4();
    let user_id_field =
        json!({"device_id": "d".repeat(64), "account_uuid": uuid_v4(), "session_id": session_id}).to_string();
    let (req, request_id) = stack.messages(&key.raw);
    let resp = req
        .header("user-agent", "e2e-audit-json/1.0")
        .json(&json!({
            "model": model,
            "max_tokens": 512,
            "messages": [{"role": "user", "content": "bill me"}],
            "metadata": {"user_id": user_id_field},
        }))
        .send()
        .await
        .unwrap();
    let (status, _, reply) = read_json(resp).await.unwrap();
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["usage"]["input_tokens"], 1234, "usage reaches the client unchanged");

    let row = stack.admin.wait_for_request(user_id, &request_id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(row["status"], 200, "{row}");
    assert_tokens(&row, &usage);
    assert_cost(&row, price.cost(&usage, multiplier), multiplier);
    assert_timing(&row);
    assert_eq!(row["user_agent"], "e2e-audit-json/1.0", "{row}");
    assert_eq!(row["session_id"], session_id.as_str(), "{row}");
    assert_eq!(row["key_id"], key.id, "{row}");
    assert_eq!(row["provider_id"], stack.provider_id().unwrap(), "{row}");
    assert_eq!(row["original_model"], model.as_str(), "{row}");
    assert_eq!(row["endpoint"], "/v1/messages", "{row}");
    assert!(row["blocked_by"].is_null(), "{row}");
    println!("json row: {row}");

    // --- SSE reply: input and cache counts from message_start, output from
    // message_delta; session id from the legacy `user_…_session_…` form.
    let usage = AnthropicUsage {
        input_tokens: 3001,
        output_tokens: 1999,
        cache_creation_5m_input_tokens: 700,
        cache_creation_1h_input_tokens: 1300,
        cache_read_input_tokens: 40960,
    };
    stack.mock.set_usage(usage);
    let session_id = uuid_v4();
    let legacy = format!("user_{}_account_{}_session_{}", "ab".repeat(32), uuid_v4(), session_id);
    let (req, request_id) = stack.messages(&key.raw);
    let resp = req
        .header("user-agent", "e2e-audit-sse/2.0")
        .json(&json!({
            "model": model,
            "max_tokens": 512,
            "stream": true,
            "messages": [{"role": "user", "content": "stream and bill me"}],
            "metadata": {"user_id": legacy},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("event: message_stop"), "{text}");

    let row = stack.admin.wait_for_request(user_id, &request_id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(row["status"], 200, "{row}");
    assert_tokens(&row, &usage);
    assert_cost(&row, price.cost(&usage, multiplier), multiplier);
    assert_timing(&row);
    assert_eq!(row["user_agent"], "e2e-audit-sse/2.0", "{row}");
    assert_eq!(row["session_id"], session_id.as_str(), "{row}");
    assert_eq!(row["stream"], true, "{row}");
    println!("sse row: {row}");

    // --- Missing cache prices fall back to 1.25× / 2× / 0.1× the input price.
    let usage = AnthropicUsage {
        input_tokens: 10_000,
        output_tokens: 1_000,
        cache_creation_5m_input_tokens: 4_000,
        cache_creation_1h_input_tokens: 2_000,
        cache_read_input_tokens: 50_000,
    };
    stack.mock.set_usage(usage);
    let fallback_price = stack.price(fallback_model).await.unwrap();
    assert_eq!(fallback_price.cache_read, Decimal::new(2, 1));
    let (req, request_id) = stack.messages(&key.raw);
    let resp = req.json(&hubgate_e2e::simple_body(fallback_model, false, "fallback prices")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let row = stack.admin.wait_for_request(user_id, &request_id, Duration::from_secs(10)).await.unwrap();
    assert_tokens(&row, &usage);
    // (10000×2 + 1000×8 + 4000×2.5 + 2000×4 + 50000×0.2) / 1e6 × 1.5 = 0.084
    let expected = fallback_price.cost(&usage, multiplier);
    assert_eq!(expected, Decimal::new(84, 3));
    assert_cost(&row, expected, multiplier);

    // --- A provider error is passed through and not billed.
    let (req, request_id) = stack.messages(&key.raw);
    let resp = req
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "no max_tokens"}]}))
        .send()
        .await
        .unwrap();
    let (status, _, reply) = read_json(resp).await.unwrap();
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["error"]["message"], "max_tokens: Field required", "the provider's own error: {reply}");
    let row = stack.admin.wait_for_request(user_id, &request_id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(row["status"], 400, "{row}");
    assert_eq!(decimal(&row["cost_usd"]).unwrap(), Decimal::ZERO, "non-2xx is not billed: {row}");
}
