//! The guard chain alone, natively, with the benchmark's policy (every
//! guard on, see `tests/bench/run`) and its 1 KB Claude Code request: where
//! the filter's time goes without Envoy or V8 around it. Runs the request
//! `--requests N` times (default 20,000) with a warm key cache and prints
//! the mean time per request; made for profilers, e.g.
//!
//!   cargo build --release -p hubgate-e2e --bin hubgate-chain-profile
//!   valgrind --tool=callgrind target/release/hubgate-chain-profile --requests 2000
//!   callgrind_annotate --inclusive=yes callgrind.out.* | head -60
//!
//! Instruction counts are repeatable whatever else loads the machine.

use std::rc::Rc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use hubgate_core::api::{Dialect, Endpoint};
use hubgate_core::chain::{self, Cx, Exchange, FakeHost, Verdict, VmState};
use hubgate_core::config::PluginConfig;
use hubgate_core::guards::auth;
use hubgate_core::headers::Headers;
use hubgate_core::snapshot::CompiledSnapshot;
use hubgate_e2e::bench_policy::{request_filters, sensitive_words, small_body};
use hubgate_e2e::claude_code::{self, ClaudeCodeSession};
use hubgate_wire::{KeyResolveResponse, PolicySnapshot, ResolvedKey};
use serde_json::{json, Value};

const MODEL: &str = "claude-sonnet-4-5";
const KEY: &str = "sk-hubgate-chain-profile-0000000000000000";
const PROVIDER_ID: i64 = 1;

fn policy(body: &[u8]) -> Result<CompiledSnapshot> {
    let words: Vec<Value> = sensitive_words(&[body])
        .into_iter()
        .enumerate()
        .map(|(i, (word, kind))| json!({"id": i + 1, "word": word, "match_type": kind}))
        .collect();
    let filters: Vec<Value> = request_filters(PROVIDER_ID)
        .into_iter()
        .enumerate()
        .map(|(i, mut f)| {
            f["id"] = json!(i + 1);
            for (field, default) in [("match_type", Value::Null), ("replacement", Value::Null), ("binding", json!("global"))] {
                if f.get(field).is_none() {
                    f[field] = default;
                }
            }
            for field in ["provider_ids", "group_tags"] {
                if f.get(field).is_none() {
                    f[field] = json!([]);
                }
            }
            f
        })
        .collect();
    let snapshot: PolicySnapshot = serde_json::from_value(json!({
        "version": 1, "key_epoch": 1,
        "settings": {"enable_client_version_check": true, "intercept_anthropic_warmup_requests": true,
            "timezone": "UTC", "unknown_path": "not_found"},
        "providers": [{"id": PROVIDER_ID, "name": "mock", "type": "claude", "base_url": "http://127.0.0.1:9/",
            "credential": "mock-credential", "enabled": true, "weight": 1, "priority": 0, "cost_multiplier": "1",
            "group_tags": [], "allowed_models": [], "model_redirects": [], "limits": {},
            "circuit": {"failure_threshold": 5, "open_seconds": 1800, "half_open_successes": 2},
            "timeouts": {}}],
        "prices": [{"model": MODEL, "input_per_mtok": "3", "output_per_mtok": "15", "cache_write_5m_per_mtok": null,
            "cache_write_1h_per_mtok": null, "cache_read_per_mtok": null}],
        "sensitive_words": words, "request_filters": filters,
        "client_versions": [{"client_type": "claude-cli", "version": "2.0.0"}]
    }))
    .context("the profile's policy does not fit the snapshot type")?;
    let (compiled, warnings) = CompiledSnapshot::compile(snapshot);
    if !warnings.is_empty() {
        bail!("policy warnings: {warnings:?}");
    }
    Ok(compiled)
}

fn resolved_key() -> Result<ResolvedKey> {
    Ok(serde_json::from_value(json!({
        "id": 1, "name": "k", "masked": "sk-…0000", "enabled": true,
        "user": {"id": 1, "name": "u", "enabled": true, "role": "user",
            "allowed_clients": ["claude-cli"], "blocked_clients": [], "allowed_models": [MODEL, "claude-haiku-4-5"],
            "rpm": null, "limits": {}, "daily_reset_mode": "fixed", "daily_reset_time": "00:00", "provider_group": null}
    }))?)
}

fn exchange(headers: &[(String, String)], body: &[u8], snapshot: &Rc<CompiledSnapshot>) -> Exchange {
    Exchange {
        method: "POST".into(),
        path: "/v1/messages?beta=true".into(),
        endpoint: Endpoint::AnthropicMessages,
        dialect: Dialect::Anthropic,
        headers: Headers::new(headers.to_vec()),
        client_ip: Some("127.0.0.1".into()),
        content_length: Some(body.len() as u64),
        snapshot: Some(snapshot.clone()),
        snapshot_fetched: true,
        ..Exchange::default()
    }
}

/// Runs one request through the chain, answering callouts, with the body
/// arriving when the chain asks for it.
fn run_once(host: &FakeHost, vm: &VmState, mut ex: Exchange, body: &[u8], key: &ResolvedKey) -> Result<()> {
    for _ in 0..8 {
        let mut cx = Cx { host, vm, ex: &mut ex, background: Vec::new() };
        match chain::run(&mut cx) {
            Verdict::Forward => return Ok(()),
            Verdict::NeedBody => ex.body = Some(body.to_vec()),
            Verdict::Call(chain::Callout::ResolveKey { .. }) => {
                auth::on_key_resolved(&mut cx, Ok(KeyResolveResponse { key: Some(key.clone()), key_epoch: 1 }), true)
            }
            other => bail!("the request did not pass every guard: {other:?}"),
        }
    }
    bail!("the chain did not finish")
}

fn main() -> Result<()> {
    let mut requests = 20_000u32;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--requests" => requests = args.next().context("--requests needs a number")?.parse()?,
            _ => bail!("usage: hubgate-chain-profile [--requests N]"),
        }
    }
    let session = ClaudeCodeSession::random();
    let body = small_body(MODEL, &session, 1024)?;
    let snapshot = Rc::new(policy(&body)?);
    let mut headers: Vec<(String, String)> = claude_code::headers(&session)
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    headers.extend([
        ("x-api-key".to_string(), KEY.to_string()),
        (":method".to_string(), "POST".to_string()),
        (":path".to_string(), "/v1/messages?beta=true".to_string()),
        ("content-type".to_string(), "application/json".to_string()),
    ]);
    let host = FakeHost::default();
    host.now_ms.set(1_800_000_000_000);
    let vm = VmState::new(PluginConfig::default(), "profile");
    let key = resolved_key()?;
    // Warm: the key is resolved once, as in a running gateway.
    run_once(&host, &vm, exchange(&headers, &body, &snapshot), &body, &key)?;
    let started = Instant::now();
    for i in 0..requests {
        host.now_ms.set(1_800_000_000_000 + i64::from(i));
        run_once(&host, &vm, exchange(&headers, &body, &snapshot), &body, &key)?;
    }
    let per_request = started.elapsed().as_secs_f64() * 1e6 / f64::from(requests);
    println!("{requests} requests of {} bytes through every guard: {per_request:.1} µs per request (native)", body.len());
    Ok(())
}
