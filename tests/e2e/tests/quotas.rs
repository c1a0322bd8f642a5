//! Cost limits (SPEC §4) through real Envoy, the real control plane and
//! Postgres: each limit type refuses the request that would cross it with
//! 402 and the spec's fields, headers and reset message; a reset lets
//! traffic through again; and two Envoy processes with two control-plane
//! replicas together stay within the limit (the README's bound).

use std::time::{Duration, Instant};

use anyhow::Result;
use hubgate_e2e::{read_json, simple_body, Stack, StackOptions};
use rust_decimal::Decimal;
use serde_json::{json, Value};

const MODEL: &str = "claude-sonnet-4-5";

/// What one request of `simple_body(MODEL, false, text)` costs at the
/// mock's usage, and the filter's estimate of it (body bytes / 4 input
/// tokens, `max_tokens` 256 output tokens).
async fn cost_and_estimate(stack: &Stack, text: &str) -> Result<(Decimal, Decimal)> {
    let price = stack.price(MODEL).await?;
    let cost = price.cost(&stack.mock.usage(), stack.cost_multiplier);
    let bytes = serde_json::to_vec(&simple_body(MODEL, false, text))?.len() as u64;
    let per_million = Decimal::from(bytes.div_ceil(4)) * price.input + Decimal::from(256) * price.output;
    Ok((cost, per_million / Decimal::from(1_000_000) * stack.cost_multiplier))
}

async fn send(stack: &Stack, gateway: &str, key: &str, text: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = stack
        .http
        .post(format!("{gateway}/v1/messages"))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .json(&simple_body(MODEL, false, text))
        .send()
        .await
        .unwrap();
    read_json(resp).await.unwrap()
}

fn dec(v: &Value) -> Decimal {
    v.as_str().map_or_else(|| v.to_string(), str::to_string).parse().unwrap()
}

/// The spend of one window in a usage answer.
fn window_spent(usage: &Value, limit_type: &str) -> Decimal {
    let window = usage["windows"].as_array().unwrap().iter().find(|w| w["limit_type"] == limit_type);
    dec(&window.unwrap_or_else(|| panic!("no {limit_type} in {usage}"))["spent_usd"])
}

/// The spend of one window from the usage API at `path`.
async fn spent(stack: &Stack, path: &str, limit_type: &str) -> Decimal {
    window_spent(&stack.admin.get(path).await.unwrap(), limit_type)
}

async fn wait_for_rows(stack: &Stack, user: i64, rows: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = stack
            .admin
            .requests(&[("user_id", user.to_string()), ("page_size", "500".to_string())])
            .await
            .unwrap();
        if found.len() >= rows || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cost_limit_refuses_the_request_that_would_cross_it() {
    let stack = Stack::start(StackOptions::new("quotas")).await.unwrap();
    let (cost, estimate) = cost_and_estimate(&stack, "spend").await.unwrap();
    assert!(estimate > cost * Decimal::TWO, "the estimate {estimate} bounds the cost {cost} from above");
    // Room for three requests: the fourth finds less than its estimate left.
    let limit = (estimate + cost * Decimal::new(25, 1)).round_dp(6);
    let cases = [
        ("key", "limit_total_usd", "usd_total", "usd_total_exceeded", "Key total cost limit exceeded"),
        ("user", "limit_5h_usd", "usd_5h", "usd_5h_exceeded", "User 5-hour cost limit exceeded"),
        ("key", "limit_daily_usd", "daily_quota", "daily_quota_exceeded", "Key daily cost limit exceeded"),
        ("user", "limit_weekly_usd", "usd_weekly", "usd_weekly_exceeded", "User weekly cost limit exceeded"),
        ("key", "limit_monthly_usd", "usd_monthly", "usd_monthly_exceeded", "Key monthly cost limit exceeded"),
    ];
    for (level, field, limit_type, code, message) in cases {
        let limits = json!({ field: limit.to_string() });
        let user = stack.user(if level == "user" { limits.clone() } else { json!({}) }).await.unwrap();
        let user_id = user["id"].as_i64().unwrap();
        let mut key_fields = json!({"name": "e2e"});
        if level == "key" {
            key_fields[field] = limits[field].clone();
        }
        let key = stack.admin.create_key(user_id, key_fields).await.unwrap();
        let gateway = stack.gateway_url();
        let mut passed = 0;
        let refusal = loop {
            let (status, headers, body) = send(&stack, &gateway, &key.raw, "spend").await;
            match status {
                200 => passed += 1,
                402 => break (headers, body),
                other => panic!("{limit_type}: status {other}: {body}"),
            }
            assert!(passed <= 3, "{limit_type}: more requests passed than the limit holds");
        };
        assert_eq!(passed, 3, "{limit_type}: the budget for three requests was used: limit {limit}, cost {cost}, estimate {estimate}: {refusal:?}");
        let (headers, body) = refusal;
        let error = &body["error"];
        assert_eq!(body["type"], "error", "{body}");
        assert_eq!(error["type"], "payment_required_error", "{body}");
        assert_eq!(error["code"], code, "{body}");
        assert_eq!(error["limit_type"], limit_type, "{body}");
        assert_eq!(dec(&error["limit"]), limit.normalize(), "{body}");
        let text = error["message"].as_str().unwrap();
        assert!(text.starts_with(message), "{body}");
        assert!(text.contains(&format!(" of ${} used.", limit.normalize())), "{body}");
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        assert_eq!(header("x-ratelimit-limit").as_deref(), Some(limit.normalize().to_string().as_str()));
        assert_eq!(header("x-ratelimit-remaining").as_deref(), Some("0"));
        match limit_type {
            "usd_total" => {
                assert!(text.ends_with("Ask an admin to raise or reset it."), "{body}");
                assert_eq!(error["reset_time"], Value::Null, "{body}");
                assert_eq!(header("retry-after"), None, "a lifetime total never resets by itself");
            }
            "usd_5h" => {
                assert!(text.ends_with("Quota will reset in 5 hours."), "{body}");
                assert!(header("retry-after").is_some());
            }
            _ => {
                let reset = error["reset_time"].as_str().unwrap();
                assert!(text.ends_with(&format!("Quota will reset at {reset}.")), "{body}");
                let retry: i64 = header("retry-after").unwrap().parse().unwrap();
                assert!(retry > 0 && retry <= 31 * 86_400, "retry-after {retry}");
            }
        }
        // Billed: exactly the three requests, never more than the limit.
        let rows = wait_for_rows(&stack, user_id, 4).await;
        let billed: Decimal = rows.iter().map(|r| dec(&r["cost_usd"])).sum();
        assert_eq!(billed, cost * Decimal::from(3), "{limit_type}: {rows:?}");
        assert!(billed <= limit);
        let refused = rows.iter().find(|r| r["status"] == 402).expect("the refusal is audited");
        assert_eq!(refused["blocked_by"], code, "{refused}");
        let entity_path = if level == "key" { format!("/api/v1/usage/keys/{}", key.id) } else { format!("/api/v1/usage/users/{user_id}") };
        assert_eq!(spent(&stack, &entity_path, limit_type).await, billed, "the usage API shows what the limit counted");
        // The window passes (the clock, as the recorded spend sees it, moves
        // past the window's length) and the same key gets through again. The
        // lifetime total is reset by an admin and the daily window's reset
        // time is passed for real in the tests below.
        let window = match limit_type {
            "usd_5h" => Some("5 hours 1 minute"),
            "usd_weekly" => Some("8 days"),
            "usd_monthly" => Some("32 days"),
            _ => None,
        };
        if let Some(window) = window {
            move_spend_back(&stack, user_id, key.id, window).await;
            assert_eq!(spent(&stack, &entity_path, limit_type).await, Decimal::ZERO, "{limit_type}: a new window");
            assert!(passes_within(&stack, &key.raw, Duration::from_secs(20)).await, "{limit_type}: the new window has its budget");
        }
    }
}

/// Moves everything recorded of a user and key back by `interval`, as if
/// that much time had passed.
async fn move_spend_back(stack: &Stack, user_id: i64, key_id: i64, interval: &str) {
    use sqlx::Connection;
    let mut db = sqlx::PgConnection::connect(stack.database_url()).await.unwrap();
    sqlx::query(
        "UPDATE usage_rollup SET bucket_start = bucket_start - $3::interval \
         WHERE (entity_type = 'user' AND entity_id = $1) OR (entity_type = 'key' AND entity_id = $2)",
    )
    .bind(user_id)
    .bind(key_id)
    .bind(interval)
    .execute(&mut db)
    .await
    .unwrap();
    for statement in [
        "UPDATE message_request SET started_at = started_at - $2::interval WHERE user_id = $1",
        "UPDATE users SET five_hour_opened_at = five_hour_opened_at - $2::interval WHERE id = $1",
        "UPDATE keys SET five_hour_opened_at = five_hour_opened_at - $2::interval WHERE user_id = $1",
    ] {
        sqlx::query(statement).bind(user_id).bind(interval).execute(&mut db).await.unwrap();
    }
}

/// Sends until a request passes again (a refused budget is asked for again
/// after a few seconds), up to `timeout`.
async fn passes_within(stack: &Stack, key: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let (status, _, body) = send(stack, &stack.gateway_url(), key, "spend").await;
        match status {
            200 => return true,
            402 => tokio::time::sleep(Duration::from_millis(500)).await,
            other => panic!("status {other}: {body}"),
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_or_a_raised_limit_lets_traffic_through_again() {
    let stack = Stack::start(StackOptions::new("quota_reset")).await.unwrap();
    let (cost, estimate) = cost_and_estimate(&stack, "spend").await.unwrap();
    let (user, key) = stack.user_with_key(json!({})).await.unwrap();
    let user_id = user["id"].as_i64().unwrap();
    // Room for one request: the second finds less than its estimate left.
    let limit = (estimate + cost / Decimal::TWO).round_dp(6);
    stack.admin.patch_key(key.id, json!({"limit_total_usd": limit.to_string()})).await.unwrap();
    let gateway = stack.gateway_url();
    let (status, _, body) = send(&stack, &gateway, &key.raw, "spend").await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = send(&stack, &gateway, &key.raw, "spend").await;
    assert_eq!((status, body["error"]["code"].as_str()), (402, Some("usd_total_exceeded")), "{body}");
    wait_for_rows(&stack, user_id, 2).await;

    // The admin resets the lifetime total: the budget is whole again.
    let usage = stack.admin.post(&format!("/api/v1/usage/keys/{}/reset", key.id), &json!({})).await.unwrap();
    assert_eq!(window_spent(&usage, "usd_total"), Decimal::ZERO, "{usage}");
    assert!(passes_within(&stack, &key.raw, Duration::from_secs(15)).await, "traffic passes after the reset");
    let (status, _, _) = send(&stack, &gateway, &key.raw, "spend").await;
    assert_eq!(status, 402, "and the limit holds again after one more request");

    // Raising the limit takes effect without waiting for the old lease.
    stack.admin.patch_key(key.id, json!({"limit_total_usd": "100"})).await.unwrap();
    assert!(passes_within(&stack, &key.raw, Duration::from_secs(15)).await, "traffic passes under the raised limit");
}

/// README "Cost limits across instances": two Envoy processes, each with
/// its own control-plane replica on one Postgres, share a user's limit under
/// parallel load. The total billed stays within the limit plus the
/// documented bound, which is zero here: every request costs less than its
/// estimate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_envoys_and_two_control_planes_share_one_limit() {
    let stack = Stack::start(StackOptions::new("quota_two_instances")).await.unwrap();
    let replica = stack.replica_control_plane("control-plane-2").await.unwrap();
    let second = stack.extra_envoy("envoy-2", &replica).await.unwrap();
    let (cost, estimate) = cost_and_estimate(&stack, "spend").await.unwrap();
    // About a dozen estimates, two hundred requests' worth, shared by both
    // instances.
    let limit = (cost * Decimal::from(200)).round_dp(6);
    assert!(limit > estimate * Decimal::from(8), "a limit of {limit} holds a few slices of {estimate}");
    let (user, key) = stack.user_with_key(json!({"limit_daily_usd": limit.to_string()})).await.unwrap();
    let user_id = user["id"].as_i64().unwrap();

    let gateways = [stack.gateway_url(), second.url()];
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..8 {
        let gateway = gateways[client % 2].clone();
        let http = stack.http.clone();
        let raw = key.raw.clone();
        tasks.spawn(async move {
            let (mut ok, mut refused) = (0u32, 0u32);
            // Keep going past the first refusals: budget held by the other
            // instance may come free when its lease is settled.
            while refused < 4 && ok + refused < 200 {
                let resp = http
                    .post(format!("{gateway}/v1/messages"))
                    .header("x-api-key", &raw)
                    .header("anthropic-version", "2023-06-01")
                    .json(&simple_body(MODEL, false, "spend"))
                    .send()
                    .await
                    .unwrap();
                match resp.status().as_u16() {
                    200 => ok += 1,
                    402 => refused += 1,
                    other => panic!("status {other}: {}", resp.text().await.unwrap_or_default()),
                }
            }
            (gateway, ok, refused)
        });
    }
    let results = tasks.join_all().await;
    let passed: u32 = results.iter().map(|r| r.1).sum();
    let refused: u32 = results.iter().map(|r| r.2).sum();
    for gateway in &gateways {
        let served: u32 = results.iter().filter(|r| &r.0 == gateway).map(|r| r.1).sum();
        assert!(served > 0, "both instances served requests: {results:?}");
    }
    let rows = wait_for_rows(&stack, user_id, (passed + refused) as usize).await;
    let billed: Decimal = rows.iter().map(|r| dec(&r["cost_usd"])).sum();
    assert_eq!(billed, cost * Decimal::from(passed), "every forwarded request was billed once");
    println!(
        "two instances: limit {limit}, billed {billed} in {passed} requests, {refused} refused; \
         request cost {cost}, estimate {estimate}, overshoot {}",
        (billed - limit).max(Decimal::ZERO)
    );
    assert!(billed <= limit, "billed {billed} over the limit {limit}");
    // Budget left unused: what each instance holds but cannot give to a
    // request (under one estimate each) and what the control plane could not
    // hand out in full (under one more).
    assert!(billed >= limit - estimate * Decimal::from(3), "billed {billed} of {limit}: refused too early");
    let daily = spent(&stack, &format!("/api/v1/usage/users/{user_id}"), "daily_quota").await;
    assert_eq!(daily, billed);
    drop(second);
}

/// A fixed daily window resets at the user's `daily_reset_time`: set to the
/// next minute, the refused key gets through again once it has passed,
/// without any admin action (the leases of the old day end with it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_daily_window_lets_traffic_through_after_its_reset_time() {
    let stack = Stack::start(StackOptions::new("quota_daily_reset")).await.unwrap();
    let (cost, estimate) = cost_and_estimate(&stack, "spend").await.unwrap();
    // The next minute at least 15 s away, in UTC (the settings' time zone).
    let now = chrono::Utc::now();
    let mut reset = now + chrono::Duration::seconds(75);
    reset = reset - chrono::Duration::seconds(i64::from(chrono::Timelike::second(&reset)));
    let reset = reset - chrono::Duration::nanoseconds(i64::from(chrono::Timelike::nanosecond(&reset)));
    let limit = (estimate + cost / Decimal::TWO).round_dp(6);
    let (_, key) = stack
        .user_with_key(json!({
            "limit_daily_usd": limit.to_string(),
            "daily_reset_mode": "fixed",
            "daily_reset_time": reset.format("%H:%M").to_string(),
        }))
        .await
        .unwrap();
    let gateway = stack.gateway_url();
    let (status, _, body) = send(&stack, &gateway, &key.raw, "spend").await;
    assert_eq!(status, 200, "{body}");
    let (status, headers, body) = send(&stack, &gateway, &key.raw, "spend").await;
    assert_eq!((status, body["error"]["code"].as_str()), (402, Some("daily_quota_exceeded")), "{body}");
    let reset_text = reset.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    assert_eq!(body["error"]["reset_time"], reset_text.as_str(), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().ends_with(&format!("Quota will reset at {reset_text}.")), "{body}");
    let retry: i64 = headers.get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    let until = (reset - chrono::Utc::now()).num_seconds();
    assert!((until - 2..=until + 2).contains(&retry), "retry-after {retry}, reset in {until} s");
    // Still refused just before the reset, through after it.
    let wait = (reset - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait.saturating_sub(Duration::from_secs(3))).await;
    let (status, _, _) = send(&stack, &gateway, &key.raw, "spend").await;
    assert_eq!(status, 402, "the old day is still spent");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(passes_within(&stack, &key.raw, Duration::from_secs(10)).await, "the new day has its budget");
}
