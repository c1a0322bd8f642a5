//! Why a key's request would go to which provider: what the control
//! plane's `GET /api/v1/providers/eligibility` answers. It applies the
//! selection's own checks (`provider::select`: format, group, model,
//! circuit) one by one per provider, to name the first that rules each out;
//! a test holds the tier and weights against `select` itself.
//! A session's provider (sticky sessions) is not considered.

use hubgate_wire::{ProviderType, ResolvedKey};

use crate::api::{Dialect, Endpoint};
use crate::guards::{model, provider};
use crate::locale::Locale;
use crate::snapshot::{CompiledProvider, CompiledSnapshot};

/// The client APIs a question may name, as the endpoint and dialect the
/// filter would see.
pub const APIS: &[&str] = &["anthropic_messages", "openai_chat", "openai_responses", "gemini"];

pub fn api(name: &str) -> Option<(Endpoint, Dialect)> {
    match name {
        "anthropic_messages" => Some((Endpoint::AnthropicMessages, Dialect::Anthropic)),
        "openai_chat" => Some((Endpoint::OpenAiChat, Dialect::OpenAi)),
        "openai_responses" => Some((Endpoint::OpenAiResponses, Dialect::OpenAi)),
        "gemini" => Some((Endpoint::Gemini { stream: false, conversation: true }, Dialect::Gemini)),
        _ => None,
    }
}

/// The first of the selection's checks a provider fails, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ineligible {
    NotEnabled,
    WrongFormat,
    NotInGroup,
    ModelNotAllowed,
    CircuitOpen,
}

impl Ineligible {
    pub fn as_str(self) -> &'static str {
        match self {
            Ineligible::NotEnabled => "not_enabled",
            Ineligible::WrongFormat => "wrong_format",
            Ineligible::NotInGroup => "not_in_group",
            Ineligible::ModelNotAllowed => "model_not_allowed",
            Ineligible::CircuitOpen => "circuit_open",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub provider_id: i64,
    pub reason: Option<Ineligible>,
    /// The model sent upstream if it served the request: the requested one
    /// after the provider's redirects.
    pub upstream_model: Option<String>,
    /// In the tier a request would be sent to (the eligible providers of
    /// the lowest priority).
    pub in_tier: bool,
    /// The chance a request goes to it (its weight over the tier's).
    pub probability: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Eligibility {
    /// The provider type the API needs.
    pub format: ProviderType,
    /// The group the key resolves to (its own, else its user's, else `default`).
    pub group: String,
    /// The user's `allowed_models` refuse the model (guard 4): the request
    /// is answered 400 before any provider is chosen.
    pub model_refused: Option<String>,
    /// The priority of the tier a request goes to; `None`: none eligible.
    pub tier: Option<i32>,
    /// The 503 message a request gets when no provider is eligible, as the
    /// selection words it.
    pub unavailable: Option<String>,
    /// One per provider of the snapshot, in its order.
    pub verdicts: Vec<Verdict>,
}

/// Explains the selection for `key`'s request on `endpoint` for `model`,
/// with `circuit_open` telling which circuits to count as open.
pub fn explain(
    snapshot: &CompiledSnapshot,
    key: &ResolvedKey,
    endpoint: Endpoint,
    dialect: Dialect,
    model: Option<&str>,
    circuit_open: impl Fn(&CompiledProvider) -> bool,
) -> Eligibility {
    let format = provider::provider_type_for(endpoint, dialect);
    let group = provider::provider_group(key);
    let reason = |p: &CompiledProvider| {
        if !p.provider.enabled {
            Some(Ineligible::NotEnabled)
        } else if p.provider.provider_type != format {
            Some(Ineligible::WrongFormat)
        } else if !provider::in_group(p, group) {
            Some(Ineligible::NotInGroup)
        } else if !provider::allows_model(p, model) {
            Some(Ineligible::ModelNotAllowed)
        } else if circuit_open(p) {
            Some(Ineligible::CircuitOpen)
        } else {
            None
        }
    };
    let mut verdicts: Vec<Verdict> = snapshot
        .providers
        .iter()
        .map(|p| Verdict {
            provider_id: p.provider.id,
            reason: reason(p),
            upstream_model: model.map(|m| p.redirects.apply(m).unwrap_or(m).to_string()),
            in_tier: false,
            probability: 0.0,
        })
        .collect();
    let eligible = || snapshot.providers.iter().zip(verdicts.iter()).filter(|(_, v)| v.reason.is_none()).map(|(p, _)| p);
    let tier = eligible().map(|p| p.provider.priority).min();
    let total: u64 = eligible().filter(|p| Some(p.provider.priority) == tier).map(weight).sum();
    let weights: Vec<Option<u64>> =
        snapshot.providers.iter().zip(verdicts.iter()).map(|(p, v)| (v.reason.is_none() && Some(p.provider.priority) == tier).then(|| weight(p))).collect();
    for (v, w) in verdicts.iter_mut().zip(weights) {
        if let Some(w) = w {
            v.in_tier = true;
            v.probability = w as f64 / total.max(1) as f64;
        }
    }
    let unavailable = provider::select(snapshot, key, endpoint, dialect, model, None, &circuit_open, 0).err().map(|r| r.message);
    Eligibility {
        format,
        group: group.to_string(),
        model_refused: model::check(&key.user.allowed_models, model, Locale::En).err().map(|r| r.message),
        tier,
        unavailable,
        verdicts,
    }
}

/// A provider's share of its tier, as the selection counts it.
fn weight(p: &CompiledProvider) -> u64 {
    u64::from(p.provider.weight.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hubgate_wire::{CircuitSettings, Limits, ModelRedirect, PolicySnapshot, Provider, ProviderTimeouts, RedirectMatch};
    use rust_decimal::Decimal;

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

    fn key(key_group: Option<&str>, user_group: Option<&str>, user_models: &[&str]) -> ResolvedKey {
        serde_json::from_value(serde_json::json!({
            "id": 1, "name": "k", "masked": "sk-…x", "enabled": true, "expires_at_ms": null,
            "can_login_web_ui": false, "limits": Limits::default(), "provider_group": key_group,
            "user": {"id": 1, "name": "u", "enabled": true, "expires_at_ms": null, "role": "user",
                "allowed_clients": [], "blocked_clients": [], "allowed_models": user_models, "rpm": null,
                "limits": Limits::default(), "daily_reset_mode": "fixed", "daily_reset_time": "00:00",
                "provider_group": user_group}
        }))
        .unwrap()
    }

    fn reasons(e: &Eligibility) -> Vec<(i64, Option<&'static str>)> {
        e.verdicts.iter().map(|v| (v.provider_id, v.reason.map(Ineligible::as_str))).collect()
    }

    #[test]
    fn names_the_first_check_each_provider_fails() {
        let mut disabled = provider(1, ProviderType::Claude, 0, 1, &["team"]);
        disabled.enabled = false;
        let mut sonnet_only = provider(4, ProviderType::Claude, 0, 1, &["team"]);
        sonnet_only.allowed_models = vec!["claude-sonnet-4-5".into()];
        let mut redirected = provider(6, ProviderType::Claude, 1, 1, &["team"]);
        redirected.model_redirects = vec![ModelRedirect { match_type: RedirectMatch::Prefix, pattern: "claude-opus".into(), target: "claude-opus-4-1".into() }];
        let snap = snapshot(vec![
            disabled,
            provider(2, ProviderType::Gemini, 0, 1, &["team"]),
            provider(3, ProviderType::Claude, 0, 1, &["other"]),
            sonnet_only,
            provider(5, ProviderType::Claude, 0, 1, &["team"]),
            redirected,
        ]);
        let e = explain(&snap, &key(None, Some("team"), &[]), Endpoint::AnthropicMessages, Dialect::Anthropic, Some("claude-opus-4"), |p| p.provider.id == 5);
        assert_eq!(e.group, "team", "the user's group when the key has none");
        assert_eq!(e.format, ProviderType::Claude);
        assert_eq!(
            reasons(&e),
            vec![(1, Some("not_enabled")), (2, Some("wrong_format")), (3, Some("not_in_group")), (4, Some("model_not_allowed")), (5, Some("circuit_open")), (6, None)]
        );
        // Only the priority-1 provider is left: it is the tier.
        assert_eq!(e.tier, Some(1));
        let six = &e.verdicts[5];
        assert!(six.in_tier && six.probability == 1.0);
        assert_eq!(six.upstream_model.as_deref(), Some("claude-opus-4-1"), "after the redirect");
        assert_eq!(e.verdicts[4].upstream_model.as_deref(), Some("claude-opus-4"));
        assert_eq!(e.unavailable, None);
        assert_eq!(e.model_refused, None);

        // The key's own group wins; nothing is left and the 503 is the selection's.
        let e = explain(&snap, &key(Some("nobody"), Some("team"), &[]), Endpoint::AnthropicMessages, Dialect::Anthropic, Some("m"), |_| false);
        assert_eq!(e.group, "nobody");
        assert_eq!(e.tier, None);
        assert_eq!(e.unavailable.as_deref(), Some("No provider is available: no enabled `claude` provider is in the group `nobody`."));
        assert!(e.verdicts.iter().all(|v| !v.in_tier && v.probability == 0.0));
    }

    #[test]
    fn a_model_the_user_may_not_use_is_refused_before_selection() {
        let snap = snapshot(vec![provider(1, ProviderType::Gemini, 0, 1, &[])]);
        let e = explain(&snap, &key(None, None, &["gemini-2.5-pro"]), Endpoint::Gemini { stream: false, conversation: true }, Dialect::Gemini, Some("gemini-1.5"), |_| false);
        assert_eq!(e.model_refused.as_deref(), Some("Model not allowed. The requested model 'gemini-1.5' is not in the allowed list."));
        assert_eq!(e.group, "default");
    }

    #[test]
    fn apis_map_to_the_formats_the_filter_routes_them_to() {
        let snap = snapshot(vec![]);
        let k = key(None, None, &[]);
        let formats: Vec<ProviderType> = APIS
            .iter()
            .map(|name| {
                let (endpoint, dialect) = api(name).unwrap();
                explain(&snap, &k, endpoint, dialect, None, |_| false).format
            })
            .collect();
        assert_eq!(formats, vec![ProviderType::Claude, ProviderType::OpenaiCompatible, ProviderType::Codex, ProviderType::Gemini]);
        assert_eq!(api("claude"), None);
    }

    /// The tier and the probabilities are what `select` does over every seed.
    #[test]
    fn tier_and_probabilities_match_the_selection() {
        let cases = vec![
            vec![provider(1, ProviderType::Claude, 0, 1, &[]), provider(2, ProviderType::Claude, 0, 3, &[]), provider(3, ProviderType::Claude, 1, 5, &[])],
            vec![provider(1, ProviderType::Claude, 2, 7, &[]), provider(2, ProviderType::Claude, -1, 2, &[]), provider(3, ProviderType::Claude, -1, 0, &[])],
            vec![provider(1, ProviderType::Claude, 0, 4, &[]), provider(2, ProviderType::Claude, 3, 6, &[]), provider(3, ProviderType::Claude, 3, 2, &[])],
        ];
        for (i, providers) in cases.into_iter().enumerate() {
            let snap = snapshot(providers);
            let k = key(None, None, &[]);
            let open = |p: &CompiledProvider| i == 2 && p.provider.id == 1;
            let e = explain(&snap, &k, Endpoint::AnthropicMessages, Dialect::Anthropic, Some("m"), open);
            // Seeds cycle over the tier's weights: over a multiple of every
            // tier total (all ≤ 12 here) each provider gets exactly its share.
            let runs: u64 = 27_720;
            let mut picks = vec![0u64; snap.providers.len()];
            for seed in 0..runs {
                let chosen = provider::select(&snap, &k, Endpoint::AnthropicMessages, Dialect::Anthropic, Some("m"), None, open, seed).unwrap();
                picks[snap.providers.iter().position(|p| p.provider.id == chosen.provider.id).unwrap()] += 1;
            }
            for (v, n) in e.verdicts.iter().zip(&picks) {
                let seen = *n as f64 / runs as f64;
                assert!((seen - v.probability).abs() < 1e-9, "case {i}: provider {} picked {seen}, explained {}", v.provider_id, v.probability);
                assert_eq!(v.in_tier, *n > 0, "case {i}: provider {}", v.provider_id);
            }
        }
    }
}
