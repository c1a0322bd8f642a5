//! The real Gemini CLI (`gemini -p`) talks to the gateway as a developer
//! would: its requests reach the provider with the provider's key only, its
//! answer comes back, and the audit rows bill it exactly.

use hubgate_e2e::clients::{assert_billed_exactly, assert_succeeded, audit_rows, gemini_p, wait_until_routed};
use hubgate_e2e::{paths, AnthropicUsage, Stack, StackOptions};
use rust_decimal::Decimal;
use serde_json::json;

const MODEL: &str = "gemini-2.5-pro";
const PROMPT: &str = "Reply with the word pong.";

/// `-m` names a priced model and skips the CLI's routing call (SPEC §8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_cli_through_the_gateway() {
    let gemini = paths::gemini().unwrap();
    let stack = Stack::start(StackOptions::new("real_gemini")).await.unwrap();
    let multiplier = Decimal::new(8, 1);
    let provider = stack.mock_provider("mock-gemini", "gemini", multiplier).await.unwrap();
    let price = stack.price(MODEL).await.unwrap();
    let (_, probe_key) = stack.user_with_key(json!({})).await.unwrap();
    let probe = || {
        let (req, _) = stack.request(reqwest::Method::POST, &format!("/v1beta/models/{MODEL}:generateContent"));
        req.header("x-goog-api-key", &probe_key.raw)
            .json(&json!({"contents": [{"role": "user", "parts": [{"text": "probe"}]}]}))
    };
    wait_until_routed(&stack, probe).await.unwrap();

    let (user, key) = stack.user_with_key(json!({})).await.unwrap();
    let user_id = user["id"].as_i64().unwrap();
    // Gemini reports no cache writes; cached tokens are inside the prompt count.
    let usage = AnthropicUsage {
        input_tokens: 4321,
        output_tokens: 87,
        cache_creation_5m_input_tokens: 0,
        cache_creation_1h_input_tokens: 0,
        cache_read_input_tokens: 1024,
    };
    stack.mock.set_usage(usage);

    let out = gemini_p(&gemini, &stack, &key.raw, Some(MODEL), PROMPT).await.unwrap();
    assert_succeeded("gemini -p", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);

    let endpoint = format!("/v1beta/models/{MODEL}:streamGenerateContent");
    let upstream: Vec<_> = stack.mock.requests().into_iter().filter(|r| r.path == endpoint).collect();
    assert!(!upstream.is_empty(), "Gemini CLI's request never reached the provider: {:?}", stack.mock.requests());
    for r in &upstream {
        assert_eq!(r.header("x-goog-api-key"), Some(stack.mock.api_key()));
        assert_eq!(r.header("authorization"), None);
        assert_eq!(r.query.as_deref(), Some("alt=sse"));
        assert!(r.header("user-agent").unwrap_or_default().starts_with("GeminiCLI"), "{:?}", r.header("user-agent"));
        assert!(!String::from_utf8_lossy(&r.body).contains(&key.raw), "the client key leaked into the body");
        // The prompt is the last part of the last user turn, after the CLI's
        // session context; the mock echoes the turn's text.
        let body = r.json().unwrap();
        let turn = body["contents"].as_array().unwrap().last().unwrap().clone();
        let parts: Vec<&str> = turn["parts"].as_array().unwrap().iter().filter_map(|p| p["text"].as_str()).collect();
        assert_eq!(parts.last(), Some(&PROMPT), "{turn}");
        let answer: String = parts.join(" ").chars().take(60).collect();
        assert!(stdout.contains(&format!("You said: {answer}")), "unexpected answer: {stdout}");
    }

    let rows = audit_rows(&stack, user_id, &endpoint, upstream.len()).await.unwrap();
    assert_eq!(rows.len(), upstream.len(), "one audit row per request: {rows:?}");
    for row in &rows {
        println!("audit row: {row}");
        assert_billed_exactly(row, &usage, &price, multiplier);
        assert_eq!(row["provider_id"], provider["id"], "{row}");
        assert_eq!(row["original_model"], MODEL, "{row}");
        assert_eq!(row["upstream_model"], MODEL, "{row}");
        assert_eq!(row["stream"], true, "{row}");
        assert!(row["user_agent"].as_str().unwrap_or_default().starts_with("GeminiCLI"), "{row}");
    }
}

/// Without `-m` the CLI first asks a small model to rate the prompt (a JSON
/// answer of a schema), then asks the model it picked. Both calls go through
/// the gateway and are billed exactly once their models have prices. Which
/// models a CLI version picks is its own business: the first run finds out,
/// the second is checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_cli_routing_call_through_the_gateway() {
    let gemini = paths::gemini().unwrap();
    let stack = Stack::start(StackOptions::new("real_gemini_routing")).await.unwrap();
    let multiplier = Decimal::ONE;
    let provider = stack.mock_provider("mock-gemini", "gemini", multiplier).await.unwrap();
    let (_, probe_key) = stack.user_with_key(json!({})).await.unwrap();
    let probe = |model: &str| {
        let (req, request_id) =
            stack.request(reqwest::Method::POST, &format!("/v1beta/models/{model}:generateContent"));
        let req = req
            .header("x-goog-api-key", &probe_key.raw)
            .json(&json!({"contents": [{"role": "user", "parts": [{"text": "probe"}]}]}));
        (req, request_id)
    };
    wait_until_routed(&stack, || probe(MODEL).0).await.unwrap();
    let usage = AnthropicUsage {
        input_tokens: 999,
        output_tokens: 33,
        cache_creation_5m_input_tokens: 0,
        cache_creation_1h_input_tokens: 0,
        cache_read_input_tokens: 0,
    };
    stack.mock.set_usage(usage);

    let (_, first_key) = stack.user_with_key(json!({})).await.unwrap();
    let out = gemini_p(&gemini, &stack, &first_key.raw, None, PROMPT).await.unwrap();
    assert_succeeded("gemini -p", &out);
    let seen = stack.mock.requests();
    let is_routing = |r: &hubgate_e2e::RecordedRequest| {
        r.path.ends_with(":generateContent")
            && r.json().is_some_and(|b| b["generationConfig"]["responseMimeType"] == "application/json")
    };
    assert!(seen.iter().any(is_routing), "no routing call: {seen:?}");
    assert!(seen.iter().any(|r| r.path.ends_with(":streamGenerateContent")), "no main call: {seen:?}");
    let mut models: Vec<String> = seen
        .iter()
        .filter_map(|r| r.path.strip_prefix("/v1beta/models/")?.split_once(':').map(|(m, _)| m.to_string()))
        .collect();
    models.sort();
    models.dedup();

    // Price the models this CLI version uses, and wait until the filter
    // bills a probe of each without a flag.
    let priced: Vec<String> = stack
        .admin
        .model_prices()
        .await
        .unwrap()
        .iter()
        .filter_map(|p| p["model"].as_str().map(str::to_string))
        .collect();
    for model in models.iter().filter(|m| !priced.contains(m)) {
        let price =
            json!({"model": model, "input_per_mtok": "1.5", "output_per_mtok": "12", "cache_read_per_mtok": "0.15"});
        stack.admin.post("/api/v1/model-prices", &price).await.unwrap();
    }
    let probe_user =
        stack.admin.get(&format!("/api/v1/keys/{}", probe_key.id)).await.unwrap()["user_id"].as_i64().unwrap();
    for model in &models {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let (req, request_id) = probe(model);
            assert_eq!(req.send().await.unwrap().status(), 200);
            let row = stack
                .admin
                .wait_for_request(probe_user, &request_id, std::time::Duration::from_secs(15))
                .await
                .unwrap();
            if row["flags"] == json!([]) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{model} is still unpriced for the filter: {row}");
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    }

    let (user, key) = stack.user_with_key(json!({})).await.unwrap();
    let user_id = user["id"].as_i64().unwrap();
    stack.mock.clear_requests();
    let out = gemini_p(&gemini, &stack, &key.raw, None, PROMPT).await.unwrap();
    assert_succeeded("gemini -p", &out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("You said: "), "{out:?}");
    let upstream = stack.mock.requests();
    assert!(upstream.iter().any(is_routing), "no routing call: {upstream:?}");
    for r in &upstream {
        assert_eq!(r.header("x-goog-api-key"), Some(stack.mock.api_key()));
        assert!(!String::from_utf8_lossy(&r.body).contains(&key.raw), "the client key leaked into the body");
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    let rows = loop {
        let rows =
            stack.admin.requests(&[("user_id", user_id.to_string()), ("page_size", "100".into())]).await.unwrap();
        if rows.len() >= upstream.len() || tokio::time::Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(rows.len(), upstream.len(), "one audit row per request: {rows:?}");
    for row in &rows {
        println!("audit row: {row}");
        let model = row["original_model"].as_str().unwrap();
        assert!(models.iter().any(|m| m == model), "{row}");
        assert_billed_exactly(row, &usage, &stack.price(model).await.unwrap(), multiplier);
        assert_eq!(row["provider_id"], provider["id"], "{row}");
        assert_eq!(row["upstream_model"], model, "{row}");
    }
}
