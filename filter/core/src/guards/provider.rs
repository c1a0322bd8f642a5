//! Guard 10: provider selection (SPEC §6), and the upstream plan that the
//! glue applies: authority, path, TLS, credential.

use hubgate_wire::{ProviderType, ResolvedKey};
use rust_decimal::Decimal;

use crate::api::{Dialect, Endpoint};
use crate::chain::{Cx, Guard, Step};
use crate::guards::auth::{self, CREDENTIAL_HEADERS};
use crate::guards::{circuit, sticky};
use crate::reply::LocalReply;
use crate::snapshot::{CompiledProvider, CompiledSnapshot};

/// Header the route table matches to send a request to the TLS cluster.
pub const UPSTREAM_TLS_HEADER: &str = "x-hubgate-upstream-tls";

#[derive(Clone, PartialEq)]
pub struct UpstreamPlan {
    pub provider_id: i64,
    pub provider_type: ProviderType,
    pub cost_multiplier: Decimal,
    pub authority: String,
    pub path: String,
    pub tls: bool,
    /// Headers to remove from the client request (client credentials).
    pub remove_headers: Vec<&'static str>,
    /// Headers to set (provider credential).
    pub set_headers: Vec<(&'static str, String)>,
    /// The model sent upstream when a redirect replaced the requested one.
    pub model: Option<String>,
    /// The provider's first-byte and idle timeouts (SPEC §6).
    pub first_byte_ms: Option<u32>,
    pub idle_ms: Option<u32>,
}

/// Debug output names the credential headers but never shows their values.
impl std::fmt::Debug for UpstreamPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set: Vec<&str> = self.set_headers.iter().map(|(name, _)| *name).collect();
        f.debug_struct("UpstreamPlan")
            .field("provider_id", &self.provider_id)
            .field("provider_type", &self.provider_type)
            .field("cost_multiplier", &self.cost_multiplier)
            .field("authority", &self.authority)
            .field("path", &self.path)
            .field("tls", &self.tls)
            .field("remove_headers", &self.remove_headers)
            .field("set_headers", &set)
            .field("model", &self.model)
            .field("first_byte_ms", &self.first_byte_ms)
            .field("idle_ms", &self.idle_ms)
            .finish()
    }
}

pub struct Provider;

impl Guard for Provider {
    fn name(&self) -> &'static str {
        "provider"
    }

    fn check(&self, cx: &mut Cx<'_>) -> Result<Step, String> {
        let ex = &mut *cx.ex;
        let (Some(snapshot), Some(key)) = (ex.snapshot.clone(), ex.key()) else {
            return Err("provider selection before auth and policy".to_string());
        };
        let seed = crate::hash::mix(crate::hash::fnv1a(ex.request_id.as_bytes()) ^ cx.host.seed());
        let now = cx.host.now_ms();
        let store = cx.host.shared();
        // A session past its first message keeps its provider.
        let session = ex.session_id.as_deref().filter(|_| ex.endpoint.is_conversation());
        let binding = session.and_then(|s| sticky::bound(store, key.id, s, now));
        let continues = ex.info.message_count > 1 || ex.info.previous_response_id.is_some();
        let prefer = binding.filter(|_| continues).map(|(provider, _)| provider);
        let circuit_open = |p: &CompiledProvider| circuit::read(store, p.provider.id).is_open(now);
        let attempts = match cx.vm.config.failover {
            true => usize::from(snapshot.settings.max_provider_attempts.max(1)),
            false => 1,
        };
        let model = ex.info.model.as_deref();
        let list = match candidates(&snapshot, key, ex.endpoint, ex.dialect, model, prefer, circuit_open, seed, attempts) {
            Ok(list) => list,
            Err(reply) => return Ok(Step::Answer(reply)),
        };
        let Some(chosen) = list.first().copied() else {
            return Ok(Step::Answer(LocalReply::new(503, "no_provider_available", "No provider is available.")));
        };
        if let Some(session) = session {
            if sticky::bind(store, key.id, session, chosen.provider.id, binding, now).is_none() {
                log::warn!("cannot store a session's provider in shared data");
            }
        }
        let path = auth::without_query_param(&ex.path, "key");
        if list.len() > 1 {
            // Each attempt applies its provider's plan (failover.rs); this
            // one stands until the response names who served.
            ex.failover = Some(list.iter().map(|p| p.provider.id).collect());
            ex.plan = Some(plan(chosen, &path));
            return Ok(Step::Next);
        }
        let mut plan = plan(chosen, &path);
        let redirect = ex.info.model.as_deref().and_then(|m| chosen.redirects.apply(m)).map(str::to_string);
        if let Some(target) = redirect {
            redirect_model(ex, &mut plan, &target)?;
        }
        ex.plan = Some(plan);
        Ok(Step::Next)
    }
}

/// Sends `target` upstream as the model: in the path for Gemini, else in
/// the body's `model`. The audit row keeps the requested model as the
/// original one.
pub(crate) fn redirect_model(ex: &mut crate::chain::Exchange, plan: &mut UpstreamPlan, target: &str) -> Result<(), String> {
    if let Endpoint::Gemini { .. } = ex.endpoint {
        let (model, _) = crate::api::gemini_model_and_method(&plan.path).ok_or("no model in the Gemini path")?;
        let at = plan.path.find(&format!("/models/{model}:")).ok_or("no model in the Gemini path")? + "/models/".len();
        plan.path.replace_range(at..at + model.len(), target);
    } else {
        let body = ex.body.as_deref().ok_or("no body to redirect the model in")?;
        if let Some(edited) = crate::guards::request_filters::set_top_level_string(body, "model", target)? {
            ex.body = Some(edited);
            ex.body_changed = true;
            ex.filter_scan = None;
        }
    }
    plan.model = Some(target.to_string());
    Ok(())
}

/// The API format a provider must speak for this endpoint; an unknown path
/// goes to a provider of the client's dialect.
pub fn provider_type_for(endpoint: Endpoint, dialect: Dialect) -> ProviderType {
    match endpoint {
        Endpoint::AnthropicMessages | Endpoint::AnthropicCountTokens => ProviderType::Claude,
        Endpoint::OpenAiChat => ProviderType::OpenaiCompatible,
        Endpoint::OpenAiResponses => ProviderType::Codex,
        Endpoint::Gemini { .. } => ProviderType::Gemini,
        Endpoint::Other => match dialect {
            Dialect::Anthropic => ProviderType::Claude,
            Dialect::OpenAi => ProviderType::OpenaiCompatible,
            Dialect::Gemini => ProviderType::Gemini,
        },
    }
}

/// The key's provider group, else the user's, else `default`.
pub fn provider_group(key: &ResolvedKey) -> &str {
    key.provider_group
        .as_deref()
        .or(key.user.provider_group.as_deref())
        .filter(|g| !g.is_empty())
        .unwrap_or("default")
}

pub fn in_group(p: &CompiledProvider, group: &str) -> bool {
    group == "*"
        || p.provider.group_tags.iter().any(|t| t == group)
        || (p.provider.group_tags.is_empty() && group == "default")
}

pub fn allows_model(p: &CompiledProvider, model: Option<&str>) -> bool {
    let allowed = &p.provider.allowed_models;
    allowed.is_empty() || model.is_some_and(|m| allowed.iter().any(|a| a.eq_ignore_ascii_case(m)))
}

/// Picks a provider: group → format → model → enabled → circuit not open
/// → the session's provider (`prefer`) if still eligible → lowest priority
/// → weighted random (by `seed`).
#[allow(clippy::too_many_arguments)]
pub fn select<'a>(
    snapshot: &'a CompiledSnapshot,
    key: &ResolvedKey,
    endpoint: Endpoint,
    dialect: Dialect,
    model: Option<&str>,
    prefer: Option<i64>,
    circuit_open: impl Fn(&CompiledProvider) -> bool,
    seed: u64,
) -> Result<&'a CompiledProvider, LocalReply> {
    let list = candidates(snapshot, key, endpoint, dialect, model, prefer, circuit_open, seed, 1)?;
    list.first().copied().ok_or_else(|| LocalReply::new(503, "no_provider_available", "No provider is available."))
}

/// The providers to try for one request, in order, at most `max` (at least
/// one): the one [`select`] picks, then the other eligible ones by priority,
/// each tier in weighted random order. Failover (SPEC §6) walks this list.
#[allow(clippy::too_many_arguments)]
pub fn candidates<'a>(
    snapshot: &'a CompiledSnapshot,
    key: &ResolvedKey,
    endpoint: Endpoint,
    dialect: Dialect,
    model: Option<&str>,
    prefer: Option<i64>,
    circuit_open: impl Fn(&CompiledProvider) -> bool,
    seed: u64,
    max: usize,
) -> Result<Vec<&'a CompiledProvider>, LocalReply> {
    let wanted = provider_type_for(endpoint, dialect);
    let group = provider_group(key);
    let none = |why: String| LocalReply::new(503, "no_provider_available", format!("No provider is available: {why}."));
    let mut eligible: Vec<&CompiledProvider> =
        snapshot.providers.iter().filter(|p| p.provider.enabled && p.provider.provider_type == wanted).collect();
    let format = serde_json::to_value(wanted).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    if eligible.is_empty() {
        return Err(none(format!("no enabled provider of type `{format}` serves this API")));
    }
    eligible.retain(|p| in_group(p, group));
    if eligible.is_empty() {
        return Err(none(format!("no enabled `{format}` provider is in the group `{group}`")));
    }
    eligible.retain(|p| allows_model(p, model));
    if eligible.is_empty() {
        let model = model.unwrap_or("(none)");
        return Err(none(format!("no enabled `{format}` provider in the group `{group}` serves the model `{model}`")));
    }
    eligible.retain(|p| !circuit_open(p));
    if eligible.is_empty() {
        return Err(none("every provider that could serve it failed repeatedly and is paused (circuit open)".to_string()));
    }
    let mut order = Vec::with_capacity(eligible.len().min(max.max(1)));
    if let Some(at) = eligible.iter().position(|p| Some(p.provider.id) == prefer) {
        order.push(eligible.remove(at));
    }
    let mut point_seed = seed;
    while order.len() < max.max(1) {
        let Some(best) = eligible.iter().map(|p| p.provider.priority).min() else { break };
        let at = weighted_pick(&eligible, best, point_seed);
        order.push(eligible.remove(at));
        // Later picks need their own draw; any fixed mix of the seed will do.
        point_seed = point_seed.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15;
    }
    Ok(order)
}

/// Index in `eligible` of a provider of priority `tier`, drawn by weight.
fn weighted_pick(eligible: &[&CompiledProvider], tier: i32, seed: u64) -> usize {
    let top = || eligible.iter().enumerate().filter(|(_, p)| p.provider.priority == tier);
    let total: u64 = top().map(|(_, p)| u64::from(p.provider.weight.max(1))).sum();
    let mut point = seed % total.max(1);
    for (at, p) in top() {
        let w = u64::from(p.provider.weight.max(1));
        if point < w {
            return at;
        }
        point -= w;
    }
    top().next().map_or(0, |(at, _)| at)
}

/// Replaces a reply Envoy made itself when the provider could not be
/// reached (connect failure, reset, timeout), so the client still gets its
/// own dialect and a stable code. `details` is Envoy's response code detail.
pub fn upstream_failed(status: u16, details: &str) -> LocalReply {
    let code = if status == 504 { "upstream_timeout" } else { "upstream_unavailable" };
    LocalReply::new(status, code, format!("The provider could not be reached ({details})."))
}

/// How to send the request to `provider`. `path` is the client's path with
/// any `?key=` already removed.
pub fn plan(provider: &CompiledProvider, path: &str) -> UpstreamPlan {
    let p = &provider.provider;
    let credential = match p.provider_type {
        ProviderType::Claude => ("x-api-key", p.credential.clone()),
        ProviderType::Codex | ProviderType::OpenaiCompatible => ("authorization", format!("Bearer {}", p.credential)),
        ProviderType::Gemini => ("x-goog-api-key", p.credential.clone()),
    };
    let set_headers = vec![credential];
    UpstreamPlan {
        provider_id: p.id,
        provider_type: p.provider_type,
        cost_multiplier: p.cost_multiplier,
        authority: provider.target.authority.clone(),
        path: format!("{}{}", provider.target.path_prefix, path),
        tls: provider.target.tls,
        remove_headers: CREDENTIAL_HEADERS.to_vec(),
        set_headers,
        model: None,
        first_byte_ms: p.timeouts.first_byte_ms,
        idle_ms: p.timeouts.idle_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::UpstreamTarget;
    use hubgate_wire::{CircuitSettings, Limits, PolicySnapshot, Provider, ProviderTimeouts};

    fn provider(id: i64, t: ProviderType, priority: i32, weight: u32, tags: &[&str]) -> Provider {
        Provider {
            id,
            name: format!("p{id}"),
            provider_type: t,
            base_url: format!("http://127.0.0.1:{}", 9000 + id),
            credential: format!("cred-{id}"),
            enabled: true,
            weight,
            priority,
            cost_multiplier: Decimal::ONE,
            group_tags: tags.iter().map(|s| s.to_string()).collect(),
            allowed_models: vec![],
            model_redirects: vec![],
            limits: Limits::default(),
            circuit: CircuitSettings::default(),
            timeouts: ProviderTimeouts::default(),
        }
    }

    fn snapshot(providers: Vec<Provider>) -> CompiledSnapshot {
        CompiledSnapshot::compile(PolicySnapshot { providers, ..Default::default() }).0
    }

    fn key(group: Option<&str>) -> ResolvedKey {
        serde_json::from_value(serde_json::json!({
            "id": 1, "name": "k", "masked": "sk-…x", "enabled": true, "expires_at_ms": null,
            "can_login_web_ui": false, "limits": Limits::default(), "provider_group": group,
            "user": {"id": 1, "name": "u", "enabled": true, "expires_at_ms": null, "role": "user",
                "allowed_clients": [], "blocked_clients": [], "allowed_models": [], "rpm": null,
                "limits": Limits::default(), "daily_reset_mode": "fixed", "daily_reset_time": "00:00",
                "provider_group": null}
        }))
        .unwrap()
    }

    #[test]
    fn picks_matching_format_and_lowest_priority() {
        let mut disabled = provider(1, ProviderType::Claude, 0, 1, &[]);
        disabled.enabled = false;
        let snap = snapshot(vec![
            disabled,
            provider(2, ProviderType::Gemini, 0, 1, &[]),
            provider(3, ProviderType::Claude, 5, 1, &[]),
            provider(4, ProviderType::Claude, 1, 1, &[]),
        ]);
        let p = select(&snap, &key(None), Endpoint::AnthropicMessages, Dialect::Anthropic, Some("m"), None, |_| false, 7).unwrap();
        assert_eq!(p.provider.id, 4);
    }

    #[test]
    fn groups_and_none_available() {
        let snap = snapshot(vec![provider(1, ProviderType::Claude, 0, 1, &["team-a"])]);
        let r = select(&snap, &key(None), Endpoint::AnthropicMessages, Dialect::Anthropic, None, None, |_| false, 0).unwrap_err();
        assert_eq!((r.status, r.code), (503, "no_provider_available"));
        assert_eq!(r.message, "No provider is available: no enabled `claude` provider is in the group `default`.");
        assert!(select(&snap, &key(Some("team-a")), Endpoint::AnthropicMessages, Dialect::Anthropic, None, None, |_| false, 0).is_ok());
        assert!(select(&snap, &key(Some("*")), Endpoint::AnthropicMessages, Dialect::Anthropic, None, None, |_| false, 0).is_ok());
        // The reply names what ruled the providers out: format, then model.
        let r = select(&snap, &key(Some("*")), Endpoint::OpenAiResponses, Dialect::OpenAi, None, None, |_| false, 0).unwrap_err();
        assert_eq!(r.message, "No provider is available: no enabled provider of type `codex` serves this API.");
        let mut only_sonnet = provider(2, ProviderType::Claude, 0, 1, &[]);
        only_sonnet.allowed_models = vec!["claude-sonnet-4-5".into()];
        let snap = snapshot(vec![only_sonnet]);
        let r = select(&snap, &key(None), Endpoint::AnthropicMessages, Dialect::Anthropic, Some("claude-opus-4"), None, |_| false, 0).unwrap_err();
        assert_eq!(
            r.message,
            "No provider is available: no enabled `claude` provider in the group `default` serves the model `claude-opus-4`."
        );
    }

    #[test]
    fn unknown_paths_go_to_a_provider_of_the_client_dialect() {
        let snap = snapshot(vec![provider(1, ProviderType::Claude, 0, 1, &[]), provider(2, ProviderType::Gemini, 0, 1, &[])]);
        let pick = |d| select(&snap, &key(None), Endpoint::Other, d, None, None, |_| false, 0).map(|p| p.provider.id).ok();
        assert_eq!(pick(Dialect::Gemini), Some(2));
        assert_eq!(pick(Dialect::Anthropic), Some(1));
        assert_eq!(pick(Dialect::OpenAi), None);
    }

    #[test]
    fn weights_split_by_seed() {
        let snap = snapshot(vec![
            provider(1, ProviderType::Claude, 0, 1, &[]),
            provider(2, ProviderType::Claude, 0, 3, &[]),
        ]);
        let ids: Vec<i64> = (0..4)
            .map(|seed| select(&snap, &key(None), Endpoint::AnthropicMessages, Dialect::Anthropic, None, None, |_| false, seed).unwrap().provider.id)
            .collect();
        assert_eq!(ids, vec![1, 2, 2, 2]);
    }

    #[test]
    fn upstream_failures_have_stable_codes() {
        let r = upstream_failed(503, "upstream_reset_before_response_started{connection_failure}");
        assert_eq!((r.status, r.code), (503, "upstream_unavailable"));
        assert!(r.message.contains("connection_failure"));
        assert_eq!(upstream_failed(504, "response_timeout").code, "upstream_timeout");
    }

    #[test]
    fn plan_swaps_credentials_and_prefixes_path() {
        let mut p = provider(1, ProviderType::Claude, 0, 1, &[]);
        p.base_url = "https://api.example.com/relay".into();
        let compiled = CompiledProvider { target: UpstreamTarget::parse(&p.base_url).unwrap(), provider: p, redirects: Default::default() };
        let claude_plan = plan(&compiled, "/v1/messages?beta=true");
        assert_eq!(claude_plan.authority, "api.example.com");
        assert_eq!(claude_plan.path, "/relay/v1/messages?beta=true");
        assert!(claude_plan.tls);
        assert_eq!(claude_plan.set_headers, vec![("x-api-key", "cred-1".to_string())]);
        assert!(claude_plan.remove_headers.contains(&"authorization"));
        assert!(!format!("{claude_plan:?}").contains("cred-1"), "Debug must not show the credential");

        let mut g = provider(2, ProviderType::OpenaiCompatible, 0, 1, &[]);
        g.credential = "sk-up".into();
        let compiled = CompiledProvider { target: UpstreamTarget::parse(&g.base_url).unwrap(), provider: g, redirects: Default::default() };
        assert_eq!(plan(&compiled, "/v1/chat/completions").set_headers, vec![("authorization", "Bearer sk-up".to_string())]);
    }

    #[test]
    fn a_redirect_rewrites_the_body_model_or_the_gemini_path() {
        use crate::chain::Exchange;
        use hubgate_wire::{ModelRedirect, RedirectMatch};
        let mut p = provider(1, ProviderType::Claude, 0, 1, &[]);
        p.model_redirects = vec![ModelRedirect { match_type: RedirectMatch::Prefix, pattern: "claude-3".into(), target: "claude-sonnet-4-5".into() }];
        let snap = snapshot(vec![p]);
        let chosen = &snap.providers[0];
        let mut ex = Exchange {
            endpoint: Endpoint::AnthropicMessages,
            body: Some(br#"{"model": "claude-3-opus","max_tokens":5,"messages":[{"role":"user","content":"claude-3-opus"}]}"#.to_vec()),
            ..Exchange::default()
        };
        let mut planned = plan(chosen, "/v1/messages");
        let target = chosen.redirects.apply("claude-3-opus").unwrap();
        redirect_model(&mut ex, &mut planned, target).unwrap();
        assert_eq!(
            ex.body.as_deref().unwrap(),
            br#"{"model": "claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"claude-3-opus"}]}"#
        );
        assert!(ex.body_changed);
        assert_eq!(planned.model.as_deref(), Some("claude-sonnet-4-5"));

        let gemini = snapshot(vec![provider(2, ProviderType::Gemini, 0, 1, &[])]);
        let mut ex = Exchange { endpoint: Endpoint::Gemini { stream: true, conversation: true }, ..Exchange::default() };
        let mut planned = plan(&gemini.providers[0], "/v1beta/models/gemini-1.5-pro:streamGenerateContent?alt=sse");
        redirect_model(&mut ex, &mut planned, "gemini-2.5-pro").unwrap();
        assert_eq!(planned.path, "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse");
        assert!(!ex.body_changed);
    }

    #[test]
    fn a_session_keeps_its_provider_while_it_is_eligible() {
        let mut low = provider(2, ProviderType::Claude, 5, 1, &[]);
        low.allowed_models = vec!["m".into()];
        let snap = snapshot(vec![provider(1, ProviderType::Claude, 0, 1, &[]), low]);
        let pick = |model, prefer| {
            select(&snap, &key(None), Endpoint::AnthropicMessages, Dialect::Anthropic, Some(model), prefer, |_| false, 0).unwrap().provider.id
        };
        assert_eq!(pick("m", None), 1, "lowest priority first");
        assert_eq!(pick("m", Some(2)), 2, "the session's provider, though of a later tier");
        assert_eq!(pick("other", Some(2)), 1, "no longer eligible for this model: rebound");
        assert_eq!(pick("m", Some(99)), 1, "a provider gone from the policy");
    }

    #[test]
    fn open_circuits_are_passed_over() {
        let snap = snapshot(vec![provider(1, ProviderType::Claude, 0, 1, &[]), provider(2, ProviderType::Claude, 5, 1, &[])]);
        let pick = |open: &[i64]| {
            select(&snap, &key(None), Endpoint::AnthropicMessages, Dialect::Anthropic, None, Some(1), |p| open.contains(&p.provider.id), 0)
                .map(|p| p.provider.id)
                .map_err(|r| r.message)
        };
        assert_eq!(pick(&[]), Ok(1));
        assert_eq!(pick(&[1]), Ok(2), "the next tier, even for a session bound to 1");
        assert_eq!(
            pick(&[1, 2]),
            Err("No provider is available: every provider that could serve it failed repeatedly and is paused (circuit open).".to_string())
        );
    }

    #[test]
    fn candidates_follow_priority_then_weight_and_skip_open_circuits() {
        let mut big = provider(3, ProviderType::Claude, 0, 3, &[]);
        big.weight = 3;
        let snap = snapshot(vec![
            provider(1, ProviderType::Claude, 0, 1, &[]),
            provider(2, ProviderType::Claude, 5, 1, &[]),
            big,
            provider(4, ProviderType::Claude, 9, 1, &[]),
            provider(5, ProviderType::Gemini, 0, 1, &[]),
        ]);
        let list = |prefer, open: &[i64], seed, max| {
            candidates(&snap, &key(None), Endpoint::AnthropicMessages, Dialect::Anthropic, None, prefer, |p| open.contains(&p.provider.id), seed, max)
                .unwrap()
                .iter()
                .map(|p| p.provider.id)
                .collect::<Vec<_>>()
        };
        // Tier 0 (1 and 3) in weighted order, then 2, then 4; never the Gemini one.
        assert_eq!(list(None, &[], 0, 9), vec![1, 3, 2, 4]);
        assert_eq!(list(None, &[], 1, 9), vec![3, 1, 2, 4]);
        assert_eq!(list(None, &[], 1, 2), vec![3, 1], "at most max");
        assert_eq!(list(None, &[], 1, 0), vec![3], "at least one");
        // The first is always what select() picks.
        for seed in 0..8 {
            let picked = select(&snap, &key(None), Endpoint::AnthropicMessages, Dialect::Anthropic, None, None, |_| false, seed).unwrap();
            assert_eq!(list(None, &[], seed, 3).first(), Some(&picked.provider.id));
        }
        assert_eq!(list(Some(2), &[], 0, 9), vec![2, 1, 3, 4], "the session's provider first");
        assert_eq!(list(Some(2), &[2, 3], 0, 9), vec![1, 4], "open circuits are left out");
    }
}
