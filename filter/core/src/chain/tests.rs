//! Compiled only under #[cfg(test)] (declared in chain/mod.rs).
//! The chain with a fake host: pausing for the body and for callouts,
//! resuming where it stopped, fail-open and fail-closed.

use std::rc::Rc;

use hubgate_wire::{hash_key, CircuitSettings, KeyResolveResponse, Limits, PolicySnapshot, ProviderTimeouts, ResolvedKey};
use serde_json::json;

use super::*;
use crate::api::{Dialect, Endpoint};
use crate::config::PluginConfig;
use crate::headers::Headers;
use crate::snapshot::CompiledSnapshot;

const KEY: &str = "sk-test-key-0000000000000000";

fn resolved(enabled: bool) -> ResolvedKey {
    serde_json::from_value(json!({
        "id": 1, "name": "k", "masked": "sk-…0000", "enabled": enabled, "expires_at_ms": null,
        "can_login_web_ui": false, "limits": Limits::default(), "provider_group": null,
        "user": {"id": 1, "name": "u", "enabled": true, "expires_at_ms": null, "role": "user",
            "allowed_clients": [], "blocked_clients": [], "allowed_models": [], "rpm": null,
            "limits": Limits::default(), "daily_reset_mode": "fixed", "daily_reset_time": "00:00",
            "provider_group": null}
    }))
    .unwrap()
}

fn snapshot() -> Rc<CompiledSnapshot> {
    policy(1, json!([]), json!([]))
}

/// A policy of `version` with these sensitive words and request filters.
fn policy(version: u64, words: serde_json::Value, filters: serde_json::Value) -> Rc<CompiledSnapshot> {
    let snap: PolicySnapshot = serde_json::from_value(json!({
        "version": version, "key_epoch": 1,
        "settings": {"enable_client_version_check": false, "intercept_anthropic_warmup_requests": false,
            "timezone": "UTC", "unknown_path": "not_found"},
        "providers": [{"id": 5, "name": "p", "type": "claude", "base_url": "https://api.example.com/relay",
            "credential": "cred", "enabled": true, "weight": 1, "priority": 0, "cost_multiplier": "1",
            "group_tags": [], "allowed_models": [], "model_redirects": [], "limits": Limits::default(),
            "circuit": CircuitSettings::default(), "timeouts": ProviderTimeouts::default()}],
        "prices": [], "sensitive_words": words, "request_filters": filters, "client_versions": []
    }))
    .unwrap();
    let (compiled, warnings) = CompiledSnapshot::compile(snap);
    assert!(warnings.is_empty(), "{warnings:?}");
    Rc::new(compiled)
}

struct World {
    host: FakeHost,
    vm: VmState,
}

impl World {
    fn new() -> World {
        let host = FakeHost::default();
        host.now_ms.set(1_800_000_000_000);
        World { host, vm: VmState::new(PluginConfig::default(), "seed") }
    }

    fn request(&self, headers: &[(&str, &str)]) -> Exchange {
        let headers = Headers::new(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        Exchange {
            path: "/v1/messages".into(),
            endpoint: Endpoint::AnthropicMessages,
            dialect: Dialect::Anthropic,
            headers,
            client_ip: Some("192.0.2.1".into()),
            ..Exchange::default()
        }
    }

    fn run(&self, ex: &mut Exchange) -> Verdict {
        let mut cx = Cx { host: &self.host, vm: &self.vm, ex, background: Vec::new() };
        run(&mut cx)
    }

    /// A request with the valid key under `policy`, run to the end with
    /// `body`.
    fn send(&self, policy: &Rc<CompiledSnapshot>, body: &[u8]) -> (Verdict, Exchange) {
        let mut ex = self.request(&[("x-api-key", KEY)]);
        ex.snapshot = Some(policy.clone());
        ex.snapshot_fetched = true;
        let mut v = self.run(&mut ex);
        if matches!(v, Verdict::Call(Callout::ResolveKey { .. })) {
            self.answer_key(&mut ex, Some(resolved(true)));
            v = self.run(&mut ex);
        }
        assert!(matches!(v, Verdict::NeedBody), "{v:?}");
        ex.body = Some(body.to_vec());
        (self.run(&mut ex), ex)
    }

    fn answer_key(&self, ex: &mut Exchange, key: Option<ResolvedKey>) {
        let mut cx = Cx { host: &self.host, vm: &self.vm, ex, background: Vec::new() };
        guards::auth::on_key_resolved(&mut cx, Ok(KeyResolveResponse { key, key_epoch: 1 }), true);
    }
}

fn code(v: &Verdict) -> &'static str {
    match v {
        Verdict::Answer(r) => r.code,
        _ => "",
    }
}

#[test]
fn a_missing_key_is_answered_from_the_headers() {
    let w = World::new();
    let mut ex = w.request(&[]);
    assert_eq!(code(&w.run(&mut ex)), "missing_api_key");
}

#[test]
fn an_unknown_key_is_answered_once_resolved_without_the_body() {
    let w = World::new();
    let mut ex = w.request(&[("x-api-key", KEY)]);
    let v = w.run(&mut ex);
    assert!(matches!(&v, Verdict::Call(Callout::ResolveKey { hash }) if *hash == hash_key(KEY)), "{v:?}");
    assert_eq!(w.vm.pending_auth.borrow().clients(), 1);
    w.answer_key(&mut ex, None);
    assert_eq!(w.vm.pending_auth.borrow().clients(), 0, "the pending place is given back");
    assert_eq!(code(&w.run(&mut ex)), "invalid_api_key");
    // Remembered: the next request with it is answered without a call.
    let mut again = w.request(&[("x-api-key", KEY)]);
    assert_eq!(code(&w.run(&mut again)), "invalid_api_key");
}

#[test]
fn a_valid_key_waits_for_policy_and_body_then_forwards() {
    let w = World::new();
    let mut ex = w.request(&[("x-api-key", KEY)]);
    assert!(matches!(w.run(&mut ex), Verdict::Call(Callout::ResolveKey { .. })));
    w.answer_key(&mut ex, Some(resolved(true)));
    assert!(matches!(w.run(&mut ex), Verdict::Call(Callout::Snapshot)));
    ex.snapshot = Some(snapshot());
    ex.snapshot_fetched = true;
    assert!(matches!(w.run(&mut ex), Verdict::NeedBody));
    ex.body = Some(br#"{"model":"claude-sonnet-4-5","messages":[]}"#.to_vec());
    assert!(matches!(w.run(&mut ex), Verdict::Forward));
    let plan = ex.plan.as_ref().unwrap();
    assert_eq!((plan.provider_id, plan.authority.as_str(), plan.path.as_str()), (5, "api.example.com", "/relay/v1/messages"));
    assert_eq!(ex.info.model.as_deref(), Some("claude-sonnet-4-5"));
    // The second request finds the key cached and needs no call.
    let mut next = w.request(&[("x-api-key", KEY)]);
    next.snapshot = Some(snapshot());
    assert!(matches!(w.run(&mut next), Verdict::NeedBody));
}

#[test]
fn no_policy_after_the_fetch_failed_is_a_503() {
    let w = World::new();
    let mut ex = w.request(&[("x-api-key", KEY)]);
    w.run(&mut ex);
    w.answer_key(&mut ex, Some(resolved(true)));
    assert!(matches!(w.run(&mut ex), Verdict::Call(Callout::Snapshot)));
    ex.snapshot_fetched = true;
    assert_eq!(code(&w.run(&mut ex)), "policy_unavailable");
}

#[test]
fn a_disabled_key_is_not_a_failed_guess() {
    let w = World::new();
    for _ in 0..30 {
        let mut ex = w.request(&[("x-api-key", KEY)]);
        if matches!(w.run(&mut ex), Verdict::Call(_)) {
            w.answer_key(&mut ex, Some(resolved(false)));
        }
        assert_eq!(code(&w.run(&mut ex)), "key_disabled");
    }
}

#[test]
fn guesses_lock_the_address_out() {
    let w = World::new();
    for i in 0..20 {
        let key = format!("sk-guess-{i:030}");
        let mut ex = w.request(&[("x-api-key", &key)]);
        assert!(matches!(w.run(&mut ex), Verdict::Call(_)));
        w.answer_key(&mut ex, None);
        assert_eq!(code(&w.run(&mut ex)), "invalid_api_key");
    }
    let mut ex = w.request(&[("x-api-key", KEY)]);
    assert_eq!(code(&w.run(&mut ex)), "auth_locked_out");
}

#[test]
fn pending_key_checks_are_bounded_per_address() {
    let w = World::new();
    let max = w.vm.config.max_pending_auth_per_client as usize;
    let mut waiting: Vec<Exchange> = Vec::new();
    for i in 0..max {
        let mut ex = w.request(&[("x-api-key", &format!("sk-new-{i:030}"))]);
        assert!(matches!(w.run(&mut ex), Verdict::Call(_)));
        waiting.push(ex);
    }
    let mut over = w.request(&[("x-api-key", "sk-one-more-000000000000000000")]);
    assert_eq!(code(&w.run(&mut over)), "auth_pending_limit");
}

#[test]
fn a_too_large_declared_body_is_413_before_auth() {
    let w = World::new();
    let mut ex = w.request(&[]);
    ex.content_length = Some(u64::MAX);
    assert_eq!(code(&w.run(&mut ex)), "request_too_large");
}

struct Failing {
    open: bool,
}

impl Guard for Failing {
    fn name(&self) -> &'static str {
        "failing"
    }
    fn fails_open(&self) -> bool {
        self.open
    }
    fn check(&self, _: &mut Cx<'_>) -> Result<Step, String> {
        Err("broken".into())
    }
}

struct Counting;

impl Guard for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }
    fn check(&self, cx: &mut Cx<'_>) -> Result<Step, String> {
        cx.host.count("counting_ran");
        Ok(Step::Next)
    }
}

#[test]
fn fail_open_passes_and_fail_closed_answers() {
    let w = World::new();
    let mut ex = w.request(&[]);
    let mut cx = Cx { host: &w.host, vm: &w.vm, ex: &mut ex, background: Vec::new() };
    assert!(matches!(run_guards(&mut cx, &[&Failing { open: true }, &Counting]), Verdict::Forward));
    assert_eq!(w.host.counter("counting_ran"), 1);
    assert_eq!(w.host.counter("hubgate_guard_failing_errors_total"), 1);

    let mut ex = w.request(&[]);
    let mut cx = Cx { host: &w.host, vm: &w.vm, ex: &mut ex, background: Vec::new() };
    let v = run_guards(&mut cx, &[&Failing { open: false }, &Counting]);
    assert!(matches!(&v, Verdict::Answer(r) if r.status == 500 && r.code == "guard_failed"), "{v:?}");
    assert_eq!(w.host.counter("counting_ran"), 1, "the chain stopped at the failing guard");
}

/// How many of the request's texts came from seen parts found clean.
fn seen_texts(ex: &Exchange) -> usize {
    ex.parts.as_ref().map_or(0, |p| p.texts.iter().filter(|t| t.seen).count())
}

fn word(word: &str) -> serde_json::Value {
    json!([{"id": 1, "word": word, "match_type": "contains"}])
}

fn replace(target: &str, with: &str) -> serde_json::Value {
    json!([{"id": 1, "name": "f", "scope": "body", "action": "text_replace", "match_type": "contains",
        "target": target, "replacement": with, "priority": 0, "binding": "global", "provider_ids": [], "group_tags": []}])
}

/// In the 16 KB system prompt block of the sample, a seen part.
const IN_SYSTEM_PART: &str = "You are an interactive CLI tool.";

#[test]
fn a_word_in_a_seen_part_is_found_after_the_policy_changes() {
    let (body, _) = crate::body_text::samples::claude_code_body();
    let w = World::new();
    let v1 = policy(1, word("nowhere-in-the-body"), json!([]));
    let (v, ex) = w.send(&v1, &body);
    assert!(matches!(v, Verdict::Forward), "{v:?}");
    assert_eq!(seen_texts(&ex), 0);
    let (v, ex) = w.send(&v1, &body);
    assert!(matches!(v, Verdict::Forward), "{v:?}");
    assert!(seen_texts(&ex) >= 3, "the big texts were not scanned again");

    let v2 = policy(2, word("interactive cli"), json!([]));
    let (v, ex) = w.send(&v2, &body);
    assert_eq!(code(&v), "sensitive_word");
    assert_eq!(seen_texts(&ex), 0);
}

#[test]
fn a_needle_in_a_seen_part_is_found_after_the_policy_changes() {
    let (body, _) = crate::body_text::samples::claude_code_body();
    let w = World::new();
    let v1 = policy(1, json!([]), replace("nowhere-in-the-body", "x"));
    for _ in 0..2 {
        let (v, ex) = w.send(&v1, &body);
        assert!(matches!(v, Verdict::Forward), "{v:?}");
        assert!(!ex.body_changed);
    }
    let parts = w.send(&v1, &body).1.parts.unwrap();
    assert!(parts.uncovered.iter().map(|r| r.len()).sum::<usize>() < 2_000, "the seen parts are needle-free");

    let v2 = policy(2, json!([]), replace(IN_SYSTEM_PART, "You are a CLI."));
    let (v, ex) = w.send(&v2, &body);
    assert!(matches!(v, Verdict::Forward), "{v:?}");
    assert!(ex.body_changed);
    let sent = String::from_utf8(ex.body.unwrap()).unwrap();
    assert!(sent.contains("You are a CLI.") && !sent.contains(IN_SYSTEM_PART));
}

#[test]
fn parts_are_not_remembered_when_a_guard_answered_or_a_filter_edited() {
    let (body, _) = crate::body_text::samples::claude_code_body();
    let w = World::new();
    let words = policy(1, word("interactive cli"), json!([]));
    for _ in 0..2 {
        assert_eq!(code(&w.send(&words, &body).0), "sensitive_word");
        assert!(w.vm.seen_parts.borrow().is_empty());
    }

    let w = World::new();
    let filters = policy(1, word("nowhere-in-the-body"), replace(IN_SYSTEM_PART, "You are a CLI."));
    for _ in 0..2 {
        let (v, ex) = w.send(&filters, &body);
        assert!(matches!(v, Verdict::Forward) && ex.body_changed, "{v:?}");
        assert!(w.vm.seen_parts.borrow().is_empty());
        assert_eq!(seen_texts(&ex), 0);
    }
}

#[test]
fn a_needle_outside_the_parts_leaves_them_remembered_but_not_needle_free() {
    let (body, _) = crate::body_text::samples::claude_code_body();
    let w = World::new();
    // Only in the last, small user turn.
    let v1 = policy(1, word("nowhere-in-the-body"), replace("commit it please", "commit it"));
    let (v, ex) = w.send(&v1, &body);
    assert!(matches!(v, Verdict::Forward) && ex.body_changed, "{v:?}");
    assert!(w.vm.seen_parts.borrow().is_empty(), "the edited body is not remembered");

    // A body without it: remembered, then seen and needle-free.
    let plain = String::from_utf8(body).unwrap().replace("commit it please", "ship it");
    let (v, ex) = w.send(&v1, plain.as_bytes());
    assert!(matches!(v, Verdict::Forward) && !ex.body_changed, "{v:?}");
    assert!(!w.vm.seen_parts.borrow().is_empty());
    let (_, ex) = w.send(&v1, plain.as_bytes());
    assert!(seen_texts(&ex) >= 3);
    assert!(ex.parts.unwrap().uncovered.iter().map(|r| r.len()).sum::<usize>() < 2_000);
}

/// What the chain costs per request, natively, guard by guard, with a
/// policy like the bench's (tests/bench: 1,000 contains, 1,000 exact and 50
/// regex words, text-replace filters, version check and warmup on), for a
/// 1 KB request and a 115 KB Claude Code one seen before. V8 runs this code
/// several times slower. Run with `cargo test --release -p hubgate-core --
/// --ignored --nocapture chain_cost`.
#[test]
#[ignore]
fn chain_cost() {
    use std::time::Instant;
    use crate::body_text::samples::token;
    let mut words = Vec::new();
    for i in 0..1000u64 {
        words.push(json!({"id": i, "word": format!("{}q", token(i, 8)), "match_type": "contains", "enabled": true}));
        words.push(json!({"id": 1000 + i, "word": format!("{} {}", token(50_000 + i, 5), token(90_000 + i, 7)),
            "match_type": "exact", "enabled": true}));
    }
    for (i, re) in crate::guards::sensitive_words::tests::REGEXES.iter().enumerate() {
        words.push(json!({"id": 3000 + i, "word": re, "match_type": "regex", "enabled": true}));
    }
    let mut filters = Vec::new();
    for (i, host) in ["build01", "vault", "grafana", "git", "ldap"].iter().enumerate() {
        filters.push(json!({"id": i, "name": format!("f{i}"), "scope": "body", "action": "text_replace",
            "match_type": "contains", "target": format!("{host}.corp.acme.internal"), "replacement": "[host]",
            "priority": i, "enabled": true, "binding": "global", "provider_ids": [], "group_tags": []}));
    }
    filters.push(json!({"id": 10, "name": "re", "scope": "body", "action": "text_replace", "match_type": "regex",
        "target": r"(?i)jira\.acme\.com/browse/[A-Z]+-\d+", "replacement": "[ticket]", "priority": 10,
        "enabled": true, "binding": "global", "provider_ids": [], "group_tags": []}));
    let policy = policy(1, json!(words), json!(filters));

    let small = serde_json::to_vec(&json!({"model": "claude-sonnet-4-5", "max_tokens": 256, "stream": false,
        "messages": [{"role": "user", "content": "Please look at the failing test in src/parser.rs and explain why. ".repeat(13)}],
        "metadata": {"user_id": "{\"session_id\":\"0b1c2d3e-0000-4000-8000-000000000000\"}"}}))
    .unwrap();
    let (large, _) = crate::body_text::samples::claude_code_body();
    let w = World::new();
    for (label, body) in [("1 KB", &small), ("115 KB", &large)] {
        let (v, _) = w.send(&policy, body);
        assert!(matches!(v, Verdict::Forward), "{v:?}");
        let rounds = 2_000;
        let mut last = 0.0;
        println!("{label} ({} bytes): µs per request, cumulative by guard", body.len());
        for k in 1..=GUARDS.len() {
            let start = Instant::now();
            for _ in 0..rounds {
                let mut ex = w.request(&[("x-api-key", KEY), ("user-agent", "claude-cli/2.1.197 (external, cli)")]);
                ex.snapshot = Some(policy.clone());
                ex.snapshot_fetched = true;
                ex.body = Some(body.to_vec());
                let mut cx = Cx { host: &w.host, vm: &w.vm, ex: &mut ex, background: Vec::new() };
                let _ = run_guards(&mut cx, GUARDS.get(..k).unwrap());
            }
            let total = start.elapsed().as_secs_f64() * 1e6 / rounds as f64;
            println!("  {:<24} {:>8.1} (+{:.1})", GUARDS[k - 1].name(), total, total - last);
            last = total;
        }
    }
}

/// A key with a daily cost limit, its user with a lifetime one; the
/// policy prices `claude-sonnet-4-5` at $3 / $15 per million tokens.
fn limited_key() -> ResolvedKey {
    let mut key = resolved(true);
    key.limits.limit_daily_usd = Some(rust_decimal::Decimal::new(1, 0));
    key.user.limits.limit_total_usd = Some(rust_decimal::Decimal::new(10, 0));
    key
}

fn priced() -> Rc<CompiledSnapshot> {
    let mut snap: PolicySnapshot = serde_json::from_value(json!({
        "version": 1, "key_epoch": 1,
        "settings": {"enable_client_version_check": false, "intercept_anthropic_warmup_requests": false,
            "timezone": "UTC", "unknown_path": "not_found"},
        "providers": [{"id": 5, "name": "p", "type": "claude", "base_url": "https://api.example.com",
            "credential": "cred", "enabled": true, "weight": 1, "priority": 0, "cost_multiplier": "2",
            "group_tags": [], "allowed_models": [], "model_redirects": [], "limits": Limits::default(),
            "circuit": CircuitSettings::default(), "timeouts": ProviderTimeouts::default()}],
        "prices": [{"model": "claude-sonnet-4-5", "input_per_mtok": "3", "output_per_mtok": "15"}],
        "sensitive_words": [], "request_filters": [], "client_versions": []
    }))
    .unwrap();
    snap.version = 1;
    Rc::new(CompiledSnapshot::compile(snap).0)
}

fn grant(entity: hubgate_wire::Entity, id: i64, limit_type: &str, lease: i64, granted: &str, limit: &str, now: i64) -> hubgate_wire::Grant {
    hubgate_wire::Grant {
        entity,
        entity_id: id,
        limit_type: limit_type.into(),
        lease_id: lease,
        granted_usd: granted.parse().unwrap(),
        lease_granted_usd: granted.parse().unwrap(),
        limit_usd: limit.parse().unwrap(),
        spent_usd: rust_decimal::Decimal::ZERO,
        unallocated_usd: rust_decimal::Decimal::ZERO,
        expires_at_ms: now + 60_000,
        reset_at_ms: Some(now + 3_600_000),
        rolling_hours: None,
    }
}

#[test]
fn cost_limits_wait_for_a_lease_then_reserve_and_refuse_in_spec_order() {
    use hubgate_wire::Entity;
    let w = World::new();
    let now = w.host.now_ms.get();
    let body = br#"{"model":"claude-sonnet-4-5","max_tokens":1000,"messages":[]}"#;
    let start = |w: &World| {
        let mut ex = w.request(&[("x-api-key", KEY)]);
        ex.snapshot = Some(priced());
        ex.snapshot_fetched = true;
        let mut v = w.run(&mut ex);
        if matches!(v, Verdict::Call(Callout::ResolveKey { .. })) {
            w.answer_key(&mut ex, Some(limited_key()));
            v = w.run(&mut ex);
        }
        assert!(matches!(v, Verdict::NeedBody), "{v:?}");
        ex.body = Some(body.to_vec());
        (w.run(&mut ex), ex)
    };
    // Estimate: 62 bytes → 16 input tokens × $3 + 1000 output × $15, per
    // million, × the dearest multiplier 2 = $0.030096.
    let (v, mut ex) = start(&w);
    let Verdict::Call(Callout::Lease { key_id: 1, need_usd, wait: true }) = v else { panic!("{v:?}") };
    assert_eq!(need_usd.to_string(), "0.030096");
    // No answer: 503, never an unchecked pass.
    ex.lease_failed = true;
    assert_eq!(code(&w.run(&mut ex)), "quota_unavailable");

    let (_, mut ex) = start(&w);
    let answer = hubgate_wire::LeaseResponse {
        now_ms: 0,
        grants: vec![
            grant(Entity::User, 1, "usd_total", 8, "5", "10", now),
            grant(Entity::Key, 1, "daily_quota", 9, "0.05", "1", now),
        ],
    };
    guards::quota::apply(&w.host.shared, &answer, now);
    assert!(matches!(w.run(&mut ex), Verdict::Forward));
    let reservation = ex.reservation.clone().unwrap();
    assert_eq!(reservation.lease_ids(), vec![8, 9]);
    // The daily slice now holds 0.05 − 0.030096: too little for another,
    // and the control plane just said so (a short grant) → asks once more.
    let (v, mut ex2) = start(&w);
    assert!(matches!(v, Verdict::Call(Callout::Lease { wait: true, .. })), "{v:?}");
    guards::quota::apply(&w.host.shared, &hubgate_wire::LeaseResponse {
        now_ms: 0,
        grants: vec![
            grant(Entity::User, 1, "usd_total", 8, "0", "10", now),
            grant(Entity::Key, 1, "daily_quota", 9, "0", "1", now),
        ],
    }, now);
    let refused = w.run(&mut ex2);
    let Verdict::Answer(reply) = &refused else { panic!("{refused:?}") };
    assert_eq!((reply.status, reply.code), (402, "daily_quota_exceeded"));
    assert!(reply.message.starts_with("Key daily cost limit exceeded"), "{}", reply.message);
    assert!(reply.message.ends_with("Quota will reset at 2027-01-15T09:00:00Z."), "{}", reply.message);
    // A partial grant that still does not cover the estimate is a 402 too,
    // and the next requests are refused without asking for a while.
    let (v, mut ex3) = start(&w);
    assert!(matches!(v, Verdict::Answer(_)), "{v:?}");
    w.host.now_ms.set(now + 6_000);
    let (v, _) = start(&w);
    assert!(matches!(v, Verdict::Call(Callout::Lease { .. })), "asks again after a while: {v:?}");
    guards::quota::apply(&w.host.shared, &hubgate_wire::LeaseResponse {
        now_ms: 0,
        grants: vec![grant(Entity::Key, 1, "daily_quota", 9, "0.001", "1", now)],
    }, now + 6_000);
    ex3.lease_asked = true;
    ex3.cursor = 0;
    assert_eq!(code(&w.run(&mut ex3)), "daily_quota_exceeded");
    w.host.now_ms.set(now);
    // Settling the first request at its real cost gives the rest back.
    guards::quota::settle(&w.host.shared, &reservation, "0.001".parse().unwrap());
    let (v, _) = start(&w);
    assert!(matches!(v, Verdict::Forward), "{v:?}");
}

#[test]
fn rpm_and_sessions_wait_for_shares_then_count_locally() {
    use hubgate_wire::{Entity, Share, ShareAsk, ShareKind, ShareResponse};
    let w = World::new();
    let now = w.host.now_ms.get();
    let mut key = resolved(true);
    key.user.rpm = Some(2);
    key.user.limits.limit_concurrent_sessions = Some(1);
    let start = |w: &World, session: &str| {
        let mut ex = w.request(&[("x-api-key", KEY), ("x-claude-code-session-id", session)]);
        ex.snapshot = Some(priced());
        ex.snapshot_fetched = true;
        let mut v = w.run(&mut ex);
        if matches!(v, Verdict::Call(Callout::ResolveKey { .. })) {
            w.answer_key(&mut ex, Some(key.clone()));
            v = w.run(&mut ex);
        }
        assert!(matches!(v, Verdict::NeedBody), "{v:?}");
        ex.body = Some(br#"{"model":"claude-sonnet-4-5","max_tokens":10,"messages":[]}"#.to_vec());
        let mut cx = Cx { host: &w.host, vm: &w.vm, ex: &mut ex, background: Vec::new() };
        let v = run(&mut cx);
        let background = cx.background;
        (v, ex, background)
    };
    let share = |entity, kind, share, others, retry_after_ms| Share {
        entity,
        entity_id: 1,
        kind,
        limit: if kind == ShareKind::Rpm { 2 } else { 1 },
        share,
        others,
        usable_until_ms: now + 60_000,
        retry_at_ms: now + retry_after_ms,
        active_session: None,
    };
    let apply = |shares: Vec<Share>| guards::share::apply(&w.host.shared, &ShareResponse { shares, now_ms: now }, now);

    // Nothing held: one call asks for every share, the key inheriting its
    // user's session limit.
    let (v, mut ex, _) = start(&w, "s1");
    let Verdict::Call(Callout::Share { key_id: 1, asks, wait: true }) = v else { panic!("{v:?}") };
    let ask = |entity, kind, need, session: Option<&str>| ShareAsk { entity, kind, need, session: session.map(str::to_string) };
    assert_eq!(
        asks,
        vec![
            ask(Entity::Key, ShareKind::Sessions, 1, Some("s1")),
            ask(Entity::User, ShareKind::Sessions, 1, Some("s1")),
            ask(Entity::User, ShareKind::Rpm, 1, None)
        ]
    );
    // No answer: this process alone under the whole limit.
    ex.share_failed = true;
    assert!(matches!(w.run(&mut ex), Verdict::Forward));

    // The shares arrive: one session (held by s1 here), one request a
    // minute while the other instance holds the other.
    apply(vec![
        share(Entity::Key, ShareKind::Sessions, 1, 0, 0),
        share(Entity::User, ShareKind::Sessions, 1, 0, 0),
        share(Entity::User, ShareKind::Rpm, 1, 1, 0),
    ]);
    // s1 is active and passes; its minute already counts 1: more is asked for.
    let (v, mut ex, _) = start(&w, "s1");
    let Verdict::Call(Callout::Share { asks, wait: true, .. }) = v else { panic!("{v:?}") };
    assert_eq!(asks, vec![ask(Entity::User, ShareKind::Rpm, 2, None)]);
    apply(vec![share(Entity::User, ShareKind::Rpm, 1, 1, 5_000)]);
    let Verdict::Answer(reply) = w.run(&mut ex) else { panic!() };
    assert_eq!((reply.status, reply.code), (429, "rpm_exceeded"));
    assert_eq!(reply.details.get("current"), Some(&json!(2)), "one here, one held by the other instance");
    assert_eq!(reply.details.get("limit"), Some(&json!(2)));
    assert!(reply.headers.contains(&("retry-after".to_string(), "60".to_string())), "{:?}", reply.headers);
    // Until the retry time, a short share is refused without asking.
    let (v, _, _) = start(&w, "s1");
    assert_eq!(code(&v), "rpm_exceeded");

    // A second session does not fit: this process holds the whole limit.
    let (v, _, _) = start(&w, "s2");
    assert_eq!(code(&v), "concurrent_sessions_exceeded");
    // With a share of none, a session asks; one the control plane has seen
    // active through another instance passes without a share, and again
    // after that without asking.
    apply(vec![share(Entity::Key, ShareKind::Sessions, 0, 1, 0), share(Entity::User, ShareKind::Sessions, 0, 1, 0)]);
    let (v, mut ex, _) = start(&w, "s3");
    let Verdict::Call(Callout::Share { asks, .. }) = v else { panic!("{v:?}") };
    assert_eq!(asks, vec![ask(Entity::Key, ShareKind::Sessions, 2, Some("s3")), ask(Entity::User, ShareKind::Sessions, 2, Some("s3"))]);
    let elsewhere = |entity| Share { active_session: Some("s3".into()), ..share(entity, ShareKind::Sessions, 0, 1, 0) };
    apply(vec![elsewhere(Entity::Key), elsewhere(Entity::User)]);
    ex.cursor = 0;
    let Verdict::Answer(reply) = w.run(&mut ex) else { panic!() };
    assert_eq!(reply.code, "rpm_exceeded", "past the session limits, stopped by the minute's count");
    let (v, _, _) = start(&w, "s3");
    assert_eq!(code(&v), "rpm_exceeded", "no second ask");
    apply(vec![share(Entity::Key, ShareKind::Sessions, 1, 0, 0), share(Entity::User, ShareKind::Sessions, 1, 0, 0)]);

    // The other instance's request left: a share of 2; this process's shares
    // end within 20 s: the request passes and renewals go out in the background.
    w.host.now_ms.set(now + 45_000);
    apply(vec![share(Entity::User, ShareKind::Rpm, 2, 0, 0)]);
    let (v, _, background) = start(&w, "s1");
    assert!(matches!(v, Verdict::Forward), "{v:?}");
    assert_eq!(
        background,
        vec![Callout::Share {
            key_id: 1,
            asks: vec![
                ask(Entity::Key, ShareKind::Sessions, 1, None),
                ask(Entity::User, ShareKind::Sessions, 1, None),
                ask(Entity::User, ShareKind::Rpm, 2, None)
            ],
            wait: false
        }]
    );
}

/// Two claude providers: 5 first (priority 0), 6 next (priority 1), which
/// redirects `claude-3-opus` and has a filter bound to it.
fn failover_policy(attempts: u8) -> Rc<CompiledSnapshot> {
    let provider = |id: i64, priority: i32, redirects: serde_json::Value| {
        json!({"id": id, "name": format!("p{id}"), "type": "claude", "base_url": format!("http://127.0.0.1:{}/v{id}", 9000 + id),
            "credential": format!("cred-{id}"), "enabled": true, "weight": 1, "priority": priority, "cost_multiplier": "1",
            "group_tags": [], "allowed_models": [], "model_redirects": redirects, "limits": Limits::default(),
            "circuit": CircuitSettings::default(), "timeouts": {"first_byte_ms": 1500 + id, "idle_ms": null}})
    };
    let snap: PolicySnapshot = serde_json::from_value(json!({
        "version": 1, "key_epoch": 1,
        "settings": {"enable_client_version_check": false, "intercept_anthropic_warmup_requests": false,
            "timezone": "UTC", "unknown_path": "not_found", "max_provider_attempts": attempts},
        "providers": [provider(5, 0, json!([])),
            provider(6, 1, json!([{"match_type": "exact", "pattern": "claude-3-opus", "target": "claude-opus-4-1"}]))],
        "prices": [], "sensitive_words": [], "client_versions": [],
        "request_filters": [{"id": 1, "name": "f", "scope": "header", "action": "set", "match_type": "contains",
            "target": "x-for-six", "replacement": "yes", "priority": 0, "binding": "providers", "provider_ids": [6], "group_tags": []}]
    }))
    .unwrap();
    let (compiled, warnings) = CompiledSnapshot::compile(snap);
    assert!(warnings.is_empty(), "{warnings:?}");
    Rc::new(compiled)
}

const OPUS: &[u8] = br#"{"model":"claude-3-opus","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;

#[test]
fn with_failover_the_gateway_leaves_provider_edits_to_each_attempt() {
    let w = World::new();
    let policy = failover_policy(3);
    let (v, ex) = w.send(&policy, OPUS);
    assert!(matches!(v, Verdict::Forward), "{v:?}");
    assert_eq!(ex.failover, Some(vec![5, 6]), "every eligible provider, by priority");
    assert_eq!(ex.plan.as_ref().map(|p| p.provider_id), Some(5), "the first candidate until the answer says");
    assert!(!ex.body_changed && ex.header_edits.is_empty(), "no redirect, no provider-bound filter yet");

    // One attempt: failover off, the first provider's plan as before.
    let (v, ex) = w.send(&failover_policy(1), OPUS);
    assert!(matches!(v, Verdict::Forward), "{v:?}");
    assert_eq!(ex.failover, None);
    assert_eq!(ex.plan.as_ref().map(|p| (p.provider_id, p.first_byte_ms)), Some((5, Some(1505))));

    // Nor where Envoy has no attempt listener (plugin config `failover`).
    let mut w = World::new();
    w.vm = VmState::new(PluginConfig { failover: false, ..PluginConfig::default() }, "seed");
    let (_, ex) = w.send(&policy, OPUS);
    assert_eq!((ex.failover, ex.plan.map(|p| p.provider_id)), (None, Some(5)));
}

#[test]
fn an_attempt_applies_its_candidates_plan() {
    let w = World::new();
    let policy = failover_policy(3);
    let attempt = |provider: Option<i64>| {
        let mut ex = w.request(&[("content-type", "application/json")]);
        ex.snapshot = Some(policy.clone());
        ex.attempt_provider = provider;
        let mut cx = Cx { host: &w.host, vm: &w.vm, ex: &mut ex, background: Vec::new() };
        assert!(matches!(run_attempt(&mut cx), Verdict::NeedBody));
        ex.body = Some(OPUS.to_vec());
        let mut cx = Cx { host: &w.host, vm: &w.vm, ex: &mut ex, background: Vec::new() };
        (run_attempt(&mut cx), ex)
    };
    let (v, ex) = attempt(guards::failover::candidate("5,6", "2"));
    assert!(matches!(v, Verdict::Forward), "{v:?}");
    let plan = ex.plan.as_ref().unwrap();
    assert_eq!((plan.provider_id, plan.authority.as_str(), plan.path.as_str()), (6, "127.0.0.1:9006", "/v6/v1/messages"));
    assert_eq!(plan.set_headers, vec![("x-api-key", "cred-6".to_string())]);
    assert_eq!((plan.model.as_deref(), plan.first_byte_ms), (Some("claude-opus-4-1"), Some(1506)));
    assert!(String::from_utf8_lossy(ex.body.as_deref().unwrap()).contains(r#""model":"claude-opus-4-1""#));
    assert_eq!(ex.header_edits, vec![("x-for-six".to_string(), Some("yes".to_string()))], "6's bound filter");

    let (v, ex) = attempt(Some(5));
    assert!(matches!(v, Verdict::Forward), "{v:?}");
    assert_eq!(ex.plan.as_ref().map(|p| (p.provider_id, p.model.clone())), Some((5, None)));
    assert!(!ex.body_changed && ex.header_edits.is_empty());

    // A provider gone from the policy, or no candidate left: 503, which
    // Envoy retries with the next candidate (or gives the client).
    assert_eq!(code(&attempt(Some(99)).0), "no_provider_available");
    assert_eq!(code(&attempt(None).0), "no_provider_available");
}

#[test]
fn the_provider_that_served_is_billed_and_keeps_the_session() {
    use guards::failover::{on_served, Served};
    let w = World::new();
    let policy = failover_policy(3);
    let (_, mut ex) = w.send(&policy, OPUS);
    ex.session_id = Some("session-1".into());
    let served = Served { provider_id: 6, usage_added: false, model: Some("claude-opus-4-1".into()) };
    assert!(on_served(&mut ex, &w.host, Some(served), None), "6 is not the first candidate");
    let plan = ex.plan.as_ref().unwrap();
    assert_eq!((plan.provider_id, plan.model.as_deref()), (6, Some("claude-opus-4-1")));
    assert_eq!(guards::sticky::bound(&w.host.shared, 1, "session-1", w.host.now_ms()).map(|(p, _)| p), Some(6), "rebound");
    // The first candidate served, or the answer does not say: nothing moves.
    let (_, mut ex) = w.send(&policy, OPUS);
    assert!(!on_served(&mut ex, &w.host, Some(Served { provider_id: 5, usage_added: false, model: None }), None));
    assert!(!on_served(&mut ex, &w.host, None, None));
    assert_eq!(ex.plan.as_ref().map(|p| p.provider_id), Some(5));
}
