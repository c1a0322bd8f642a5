//! The policy snapshot: everything the filter needs to decide without a
//! callout. Versioned; the filter polls it and keeps the newest.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct PolicySnapshot {
    /// Bumped on every policy change (any admin write).
    pub version: u64,
    /// Bumped on every user or key change; key cache entries read under an
    /// older epoch are stale.
    pub key_epoch: u64,
    pub settings: Settings,
    pub providers: Vec<Provider>,
    pub prices: Vec<ModelPrice>,
    /// Enabled words only.
    pub sensitive_words: Vec<SensitiveWord>,
    /// Enabled filters only.
    pub request_filters: Vec<RequestFilter>,
    pub client_versions: Vec<ClientGaVersion>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Settings {
    pub enable_client_version_check: bool,
    pub intercept_anthropic_warmup_requests: bool,
    /// IANA time zone for fixed daily windows, e.g. `UTC`, `Asia/Shanghai`.
    pub timezone: String,
    pub unknown_path: UnknownPathAction,
    /// Language of messages to clients: `en` or `zh-CN` (SPEC §3).
    #[serde(default = "default_locale")]
    pub locale: String,
    /// Providers tried for one request before its failure is the client's
    /// (SPEC §6 failover): 1 turns failover off.
    #[serde(default = "default_max_provider_attempts")]
    pub max_provider_attempts: u8,
}

fn default_locale() -> String {
    "en".to_string()
}

pub const DEFAULT_MAX_PROVIDER_ATTEMPTS: u8 = 3;
/// At most this many attempts (the Envoy route's `num_retries` is one less).
pub const MAX_PROVIDER_ATTEMPTS: u8 = 5;

fn default_max_provider_attempts() -> u8 {
    DEFAULT_MAX_PROVIDER_ATTEMPTS
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enable_client_version_check: false,
            intercept_anthropic_warmup_requests: false,
            timezone: "UTC".to_string(),
            unknown_path: UnknownPathAction::NotFound,
            locale: default_locale(),
            max_provider_attempts: DEFAULT_MAX_PROVIDER_ATTEMPTS,
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum UnknownPathAction {
    /// Forward to a provider chosen as for any request (auth still applies).
    Passthrough,
    /// Answer 404 locally.
    #[default]
    NotFound,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderType {
    /// Anthropic Messages API.
    Claude,
    /// OpenAI Responses API.
    Codex,
    /// OpenAI Chat Completions API.
    OpenaiCompatible,
    Gemini,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    #[default]
    User,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum DailyResetMode {
    /// Resets at `daily_reset_time` in the configured time zone.
    #[default]
    Fixed,
    /// Rolling 24 hours.
    Rolling,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum FiveHourMode {
    #[default]
    Rolling,
    /// A fixed 5 h window starting at the first charge.
    Fixed,
}

/// Cost and concurrency limits shared by keys, users and providers. `None`
/// means unlimited.
/// Unset limits are left out of the JSON (and read back as unset).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(default)]
pub struct Limits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_total_usd: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_5h_usd: Option<Decimal>,
    /// Always written: an older filter requires it in a snapshot.
    pub limit_5h_mode: FiveHourMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_daily_usd: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_weekly_usd: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_monthly_usd: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_concurrent_sessions: Option<u32>,
}

impl Limits {
    /// No limit set (and the default 5 h mode): the JSON leaves it out.
    pub fn is_unlimited(&self) -> bool {
        *self == Limits::default()
    }
}

#[derive(Serialize, Deserialize, Clone, PartialEq)]
pub struct Provider {
    pub id: i64,
    pub name: String,
    #[serde(rename = "type")]
    pub provider_type: ProviderType,
    /// e.g. `https://api.anthropic.com` or `http://127.0.0.1:8080/prefix`.
    pub base_url: String,
    /// The provider's API key. Travels only over the internal API.
    pub credential: String,
    pub enabled: bool,
    pub weight: u32,
    /// Lower wins.
    pub priority: i32,
    pub cost_multiplier: Decimal,
    pub group_tags: Vec<String>,
    pub allowed_models: Vec<String>,
    pub model_redirects: Vec<ModelRedirect>,
    pub limits: Limits,
    pub circuit: CircuitSettings,
    pub timeouts: ProviderTimeouts,
}

/// Debug output never shows the credential (snapshots get logged).
impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("provider_type", &self.provider_type)
            .field("base_url", &self.base_url)
            .field("credential", &"…")
            .field("enabled", &self.enabled)
            .field("weight", &self.weight)
            .field("priority", &self.priority)
            .field("cost_multiplier", &self.cost_multiplier)
            .field("group_tags", &self.group_tags)
            .field("allowed_models", &self.allowed_models)
            .field("model_redirects", &self.model_redirects)
            .field("limits", &self.limits)
            .field("circuit", &self.circuit)
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RedirectMatch {
    Exact,
    Prefix,
    Suffix,
    Contains,
    Regex,
}

/// Rewrites a requested model that matches `pattern` to `target`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ModelRedirect {
    pub match_type: RedirectMatch,
    /// Up to 128 characters; a regex up to 512.
    pub pattern: String,
    /// The model sent upstream.
    pub target: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitSettings {
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    pub open_seconds: u32,
    /// Successes in half-open state that close it again.
    pub half_open_successes: u32,
    /// Reset marker (control plane clock, unix ms; 0: never reset): a
    /// circuit state recorded under an older marker is cleared.
    #[serde(default)]
    pub reset_at_ms: i64,
}

impl Default for CircuitSettings {
    fn default() -> Self {
        CircuitSettings { failure_threshold: 5, open_seconds: 1800, half_open_successes: 2, reset_at_ms: 0 }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProviderTimeouts {
    pub first_byte_ms: Option<u32>,
    pub idle_ms: Option<u32>,
}

/// USD per million tokens. Missing cache prices fall back to 1.25× (5 m
/// write), 2× (1 h write) and 0.1× (read) the input price.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ModelPrice {
    pub model: String,
    pub input_per_mtok: Decimal,
    pub output_per_mtok: Decimal,
    pub cache_write_5m_per_mtok: Option<Decimal>,
    pub cache_write_1h_per_mtok: Option<Decimal>,
    pub cache_read_per_mtok: Option<Decimal>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WordMatch {
    Contains,
    Exact,
    Regex,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SensitiveWord {
    pub id: i64,
    pub word: String,
    pub match_type: WordMatch,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FilterScope {
    Header,
    Body,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FilterAction {
    Remove,
    Set,
    JsonPath,
    TextReplace,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TextMatch {
    Contains,
    Exact,
    Regex,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FilterBinding {
    Global,
    Providers,
    Groups,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RequestFilter {
    pub id: i64,
    pub name: String,
    pub scope: FilterScope,
    pub action: FilterAction,
    pub match_type: Option<TextMatch>,
    pub target: String,
    pub replacement: Option<serde_json::Value>,
    pub priority: i32,
    pub binding: FilterBinding,
    pub provider_ids: Vec<i64>,
    pub group_tags: Vec<String>,
}

/// The GA version of one client type, computed by the control plane.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ClientGaVersion {
    pub client_type: String,
    pub version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_round_trips_and_decimals_are_strings() {
        let snap = PolicySnapshot {
            version: 3,
            key_epoch: 2,
            prices: vec![ModelPrice {
                model: "claude-sonnet-4-5".into(),
                input_per_mtok: Decimal::new(3, 0),
                output_per_mtok: Decimal::new(15, 0),
                cache_write_5m_per_mtok: None,
                cache_write_1h_per_mtok: None,
                cache_read_per_mtok: Some(Decimal::new(30, 2)),
            }],
            ..Default::default()
        };
        let json = serde_json::to_string(&snap).unwrap();
        assert!(json.contains("\"cache_read_per_mtok\":\"0.30\""), "{json}");
        let back: PolicySnapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, snap);
    }

    #[test]
    fn provider_debug_hides_the_credential() {
        let p = Provider {
            id: 1,
            name: "p".into(),
            provider_type: ProviderType::Claude,
            base_url: "https://api.example.com".into(),
            credential: "sk-ant-secret-value".into(),
            enabled: true,
            weight: 1,
            priority: 0,
            cost_multiplier: Decimal::ONE,
            group_tags: vec![],
            allowed_models: vec![],
            model_redirects: vec![],
            limits: Limits::default(),
            circuit: CircuitSettings::default(),
            timeouts: ProviderTimeouts::default(),
        };
        let shown = format!("{:?}", PolicySnapshot { providers: vec![p], ..Default::default() });
        assert!(!shown.contains("sk-ant-secret-value"), "{shown}");
        assert!(shown.contains("api.example.com"), "{shown}");
    }

    #[test]
    fn provider_type_names() {
        let t: ProviderType = serde_json::from_str("\"openai-compatible\"").unwrap();
        assert_eq!(t, ProviderType::OpenaiCompatible);
        assert_eq!(serde_json::to_string(&ProviderType::Claude).unwrap(), "\"claude\"");
    }
}
