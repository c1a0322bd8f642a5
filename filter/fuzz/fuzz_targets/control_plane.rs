//! What the filter reads from the control plane and what the request's own
//! model name reaches there: the policy snapshot (parse, compile, price
//! lookup, provider selection and upstream plan), the key resolve answer
//! (parse, `check_key` at any clock), and price lookup, cost and settlement
//! for an arbitrary model name and token counts.
//!
//! Input: selector byte (mod 3): 0 = policy snapshot JSON follows; 1 = key
//! resolve JSON follows; 2 = a model line, five u64 LE token counts, status
//! (u16 LE), multiplier (i64 LE mantissa and a scale byte), then the
//! request/response byte counts (u64 LE each).
#![no_main]

use hubgate_core::api::{Dialect, Endpoint};
use hubgate_core::billing::settle;
use hubgate_core::cost::{cost, PriceTable};
use hubgate_core::guards::auth::check_key;
use hubgate_core::guards::provider::{plan, select};
use hubgate_core::snapshot::CompiledSnapshot;
use hubgate_core::usage::Metered;
use hubgate_fuzz::{check, check_reply, lossy, Input, ENDPOINTS};
use hubgate_wire::{KeyResolveResponse, ModelPrice, PolicySnapshot, ResolvedKey, Usage};
use libfuzzer_sys::fuzz_target;
use rust_decimal::Decimal;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    match input.byte() % 3 {
        0 => snapshot(input.rest()),
        1 => key_answer(input.rest()),
        _ => pricing(&mut input),
    }
});

fn snapshot(bytes: &[u8]) {
    let Ok(parsed) = serde_json::from_slice::<PolicySnapshot>(bytes) else { return };
    let (compiled, warnings) = CompiledSnapshot::compile(parsed.clone());
    let provider_warnings = warnings.iter().filter(|w| w.starts_with("provider ")).count();
    check(compiled.providers.len() + provider_warnings == parsed.providers.len(), "providers lost in compile", &warnings);
    for p in &parsed.prices {
        check(compiled.prices.lookup(&p.model).is_some(), "a priced model is not found", &p.model);
        let big = Usage { input_tokens: u64::MAX, output_tokens: u64::MAX, cache_creation_5m_tokens: u64::MAX, cache_creation_1h_tokens: u64::MAX, cache_read_tokens: u64::MAX };
        if let Some(price) = compiled.prices.lookup(&p.model) {
            let _ = cost(&big, price, Decimal::MAX);
            let _ = cost(&Usage { input_tokens: 1, ..Usage::default() }, price, Decimal::MIN);
        }
        let _ = compiled.prices.lookup(&format!("{}-20250929", p.model));
    }
    for provider in &compiled.providers {
        let upstream = plan(provider, "/v1/messages?beta=true");
        check(upstream.path == format!("{}/v1/messages?beta=true", provider.target.path_prefix), "plan path", &upstream);
        check(!upstream.authority.is_empty(), "plan without authority", &upstream);
    }
    let key = resolved_key(parsed.providers.first().and_then(|p| p.group_tags.first()).cloned());
    for (endpoint, path) in ENDPOINTS {
        for seed in [0, 1, u64::MAX] {
            match select(&compiled, &key, endpoint, Dialect::from_path(path), Some("claude-sonnet-4-5"), None, |_| false, seed) {
                Ok(p) => check(p.provider.enabled, "a disabled provider was selected", &p.provider),
                Err(reply) => check_reply(&reply, "r"),
            }
        }
    }
}

fn resolved_key(group: Option<String>) -> ResolvedKey {
    let v = serde_json::json!({
        "id": 1, "name": "k", "masked": "sk-…x", "enabled": true, "expires_at_ms": null,
        "can_login_web_ui": false, "limits": {"limit_total_usd": null, "limit_5h_usd": null, "limit_5h_mode": "rolling",
            "limit_daily_usd": null, "limit_weekly_usd": null, "limit_monthly_usd": null, "limit_concurrent_sessions": null},
        "provider_group": group,
        "user": {"id": 1, "name": "u", "enabled": true, "expires_at_ms": null, "role": "user",
            "allowed_clients": [], "blocked_clients": [], "allowed_models": [], "rpm": null,
            "limits": {"limit_total_usd": null, "limit_5h_usd": null, "limit_5h_mode": "rolling",
                "limit_daily_usd": null, "limit_weekly_usd": null, "limit_monthly_usd": null, "limit_concurrent_sessions": null},
            "daily_reset_mode": "fixed", "daily_reset_time": "00:00", "provider_group": null}
    });
    match serde_json::from_value(v) {
        Ok(k) => k,
        Err(e) => hubgate_fuzz::fail("fixed key does not parse", &e.to_string()),
    }
}

fn key_answer(bytes: &[u8]) {
    let Ok(answer) = serde_json::from_slice::<KeyResolveResponse>(bytes) else { return };
    let Some(key) = answer.key else { return };
    for now in [0, 1_764_000_000_000, i64::MAX, i64::MIN, key.expires_at_ms.unwrap_or(0), key.user.expires_at_ms.unwrap_or(0)] {
        match check_key(&key, now) {
            Ok(()) => check(key.enabled && key.user.enabled, "a disabled key passed", &key),
            Err(reply) => {
                check(reply.status == 401, "check_key status", &reply);
                check_reply(&reply, "r");
            }
        }
    }
}

fn prices() -> Vec<ModelPrice> {
    let p = |model: &str, input: i64, output: i64| ModelPrice {
        model: model.to_string(),
        input_per_mtok: Decimal::new(input, 2),
        output_per_mtok: Decimal::new(output, 2),
        cache_write_5m_per_mtok: None,
        cache_write_1h_per_mtok: None,
        cache_read_per_mtok: None,
    };
    vec![
        p("claude-sonnet-4-5", 300, 1500),
        p("claude-sonnet-4", 300, 1500),
        p("claude-opus-4-1", 1500, 7500),
        p("gpt-4o", 250, 1000),
        p("gpt-4o-mini", 15, 60),
        p("gemini-2.5-pro", 125, 1000),
        p("", 1, 1),
    ]
}

fn pricing(input: &mut Input<'_>) {
    let model = lossy(input.line());
    let usage = Usage {
        input_tokens: input.u64(),
        output_tokens: input.u64(),
        cache_creation_5m_tokens: input.u64(),
        cache_creation_1h_tokens: input.u64(),
        cache_read_tokens: input.u64(),
    };
    let status = input.u16();
    let mantissa = input.u64() as i64;
    let multiplier = Decimal::try_new(mantissa, u32::from(input.byte() % 40)).unwrap_or(Decimal::ONE);
    let request_bytes = input.u64();
    let response_bytes = input.u64();

    let table = PriceTable::compile(&prices());
    let price = table.lookup(&model).copied();
    if price.is_some() {
        let lower = model.to_ascii_lowercase();
        check(prices().iter().any(|p| lower.starts_with(&p.model)), "a price for an unknown model", &model);
    }
    if let Some(p) = &price {
        if let Some(c) = cost(&usage, p, multiplier) {
            check(multiplier.is_sign_negative() || !c.is_sign_negative() || c.is_zero(), "negative cost", &(c, &usage, multiplier));
        }
    }
    for (usage, incomplete, unsupported) in [(Some(usage.clone()), false, false), (None, true, false), (None, false, true)] {
        let metered = Metered { usage, model: Some(model.clone()), incomplete, response_bytes, unsupported, output_estimated: incomplete, output_chars: None };
        for billable in [true, false] {
            let s = settle(status, billable, &metered, request_bytes, price.as_ref(), multiplier);
            if !billable || !(200..300).contains(&status) {
                check(s.cost_usd.is_zero(), "an unbilled request cost money", &s);
            }
            if let Some(parts) = &s.breakdown {
                check(parts.total() == Some(s.cost_usd), "the cost breakdown does not add up to the cost", &s);
            }
        }
    }
    let _ = Endpoint::from_path(&model);
}
