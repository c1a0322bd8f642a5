//! The filter's plugin configuration (Envoy `PluginConfig.configuration`).

use serde::Deserialize;

#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PluginConfig {
    /// Envoy cluster that reaches the control plane.
    pub control_plane_cluster: String,
    /// `:authority` sent on callouts to the control plane.
    pub control_plane_authority: String,
    /// Environment variable of the Envoy process (made visible to the VM
    /// through `vm_config.environment_variables.host_env_keys`) that holds
    /// the bearer token for the control plane's internal API. The token is
    /// never in this configuration: Envoy's `config_dump` would show it.
    pub internal_token_env: String,
    pub callout_timeout_ms: u64,
    /// How often the snapshot is polled and events are flushed.
    pub poll_interval_ms: u64,
    pub key_cache_ttl_ms: u64,
    /// How long an unknown key is remembered as unknown.
    pub negative_key_cache_ttl_ms: u64,
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: usize,
    pub event_batch_max: usize,
    /// Events waiting for delivery beyond this are dropped and counted.
    pub event_queue_max: u64,
    pub lockout_max_failures: u32,
    pub lockout_window_secs: u64,
    pub lockout_secs: u64,
    /// Distinct keys per client address and worker whose requests may wait
    /// for the key to be resolved (their bodies are buffered meanwhile);
    /// requests for more keys get 429.
    pub max_pending_auth_per_client: u32,
    /// Shared-data buckets (of 4 records) per kind (client address, key)
    /// for lockout counting: memory is fixed however many clients guess.
    pub lockout_buckets: u32,
    /// Rejected unauthenticated requests get an audit row only for the
    /// first few per client address per minute …
    pub unauthenticated_audit_per_client_per_minute: u32,
    /// … and at most this many per minute in all (per Envoy process); the
    /// rest are only counted (`hubgate_unauthenticated_unaudited_total`).
    pub unauthenticated_audit_per_minute: u32,
    /// Requests with several eligible providers go through Envoy's failover
    /// attempt listener (`hubgate_attempt`, see envoy/hubgate.yaml.tmpl).
    /// Off where Envoy has no such listener: one provider per request.
    pub failover: bool,
}

impl Default for PluginConfig {
    fn default() -> Self {
        PluginConfig {
            control_plane_cluster: "hubgate_control_plane".into(),
            control_plane_authority: "hubgate-control-plane".into(),
            internal_token_env: "HUBGATE_INTERNAL_TOKEN".into(),
            callout_timeout_ms: 2000,
            poll_interval_ms: 1000,
            key_cache_ttl_ms: 60_000,
            negative_key_cache_ttl_ms: 5_000,
            max_body_bytes: 10 * 1024 * 1024,
            event_batch_max: 200,
            event_queue_max: 100_000,
            lockout_max_failures: 20,
            lockout_window_secs: 300,
            lockout_secs: 600,
            max_pending_auth_per_client: 4,
            lockout_buckets: 4096,
            unauthenticated_audit_per_client_per_minute: 5,
            unauthenticated_audit_per_minute: 600,
            failover: true,
        }
    }
}

impl PluginConfig {
    pub fn lockout_policy(&self) -> crate::guards::lockout::LockoutPolicy {
        crate::guards::lockout::LockoutPolicy {
            max_failures: self.lockout_max_failures,
            window_ms: i64::try_from(self.lockout_window_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            lockout_ms: i64::try_from(self.lockout_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
        }
    }

    /// Parses and validates; the error names the offending field.
    pub fn parse(bytes: &[u8]) -> Result<PluginConfig, String> {
        // `from_slice` also refuses trailing bytes after the object.
        let config: PluginConfig =
            serde_json::from_slice(bytes).map_err(|e| format!("invalid plugin configuration: {e}"))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let checks: [(&str, bool); 11] = [
            ("internal_token_env", !self.internal_token_env.is_empty()),
            ("control_plane_cluster", !self.control_plane_cluster.is_empty()),
            ("callout_timeout_ms", self.callout_timeout_ms > 0),
            ("poll_interval_ms", self.poll_interval_ms >= 50),
            ("max_body_bytes", self.max_body_bytes > 0),
            ("event_batch_max", self.event_batch_max > 0 && self.event_batch_max <= 1000),
            ("event_queue_max", self.event_queue_max > 0),
            ("lockout_max_failures", self.lockout_max_failures > 0),
            ("lockout_window_secs", self.lockout_window_secs > 0),
            ("lockout_buckets", (1..=1 << 20).contains(&self.lockout_buckets)),
            ("max_pending_auth_per_client", self.max_pending_auth_per_client > 0),
        ];
        match checks.iter().find(|(_, ok)| !ok) {
            Some((field, _)) => Err(format!("invalid plugin configuration: field `{field}` is missing or out of range")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_everything() {
        let c = PluginConfig::parse(b"{}").unwrap();
        assert_eq!(c.internal_token_env, "HUBGATE_INTERNAL_TOKEN");
        assert_eq!(c.poll_interval_ms, 1000);
        assert_eq!(c.max_body_bytes, 10 * 1024 * 1024);
        assert_eq!(c.lockout_max_failures, 20);
    }

    #[test]
    fn unknown_field_is_named() {
        let e = PluginConfig::parse(br#"{"pol_interval_ms":5}"#).unwrap_err();
        assert!(e.contains("pol_interval_ms"), "{e}");
    }

    #[test]
    fn the_token_itself_is_refused() {
        let e = PluginConfig::parse(br#"{"internal_token":"secret"}"#).unwrap_err();
        assert!(e.contains("unknown field `internal_token`"), "{e}");
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn out_of_range_is_named() {
        let e = PluginConfig::parse(br#"{"lockout_buckets":0}"#).unwrap_err();
        assert!(e.contains("lockout_buckets"), "{e}");
    }

    #[test]
    fn trailing_bytes_are_refused() {
        assert!(PluginConfig::parse(br#"{"poll_interval_ms":100} x"#).is_err());
    }

    #[test]
    fn wrong_type_is_named() {
        let e = PluginConfig::parse(br#"{"max_body_bytes":"big"}"#).unwrap_err();
        assert!(e.contains("invalid type"), "{e}");
    }
}
