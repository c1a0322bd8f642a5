//! Key resolution: the filter sends the SHA-256 of a client key, the control
//! plane answers with the key, its user and their limits.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::snapshot::{DailyResetMode, Limits, Role};
#[cfg(test)]
use crate::snapshot::FiveHourMode;

/// Hex SHA-256 of a raw key. Keys are stored and looked up only in this form.
pub fn hash_key(raw: &str) -> String {
    let digest = Sha256::digest(raw.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(hex_digit(b >> 4));
        out.push(hex_digit(b & 0x0f));
    }
    out
}

fn hex_digit(n: u8) -> char {
    char::from(if n < 10 { b'0' + n } else { b'a' + n - 10 })
}

/// Display form of a key: `sk-…abcd`. Never reveals more than the prefix
/// before the first `-` and the last four characters.
pub fn mask_key(raw: &str) -> String {
    let count = raw.chars().count();
    if count < 12 {
        return "…".to_string();
    }
    let prefix = match raw.find('-') {
        Some(i) if i <= 6 => raw.get(..=i).unwrap_or_default(),
        _ => "",
    };
    let tail: String = raw.chars().skip(count - 4).collect();
    format!("{prefix}…{tail}")
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct KeyResolveRequest {
    /// `hash_key` of the raw key.
    pub key_hash: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct KeyResolveResponse {
    /// The key epoch this answer was read under (see `PolicySnapshot::key_epoch`).
    pub key_epoch: u64,
    /// `None` when no key has that hash (deleted keys included).
    pub key: Option<ResolvedKey>,
}

/// A resolved key as the control plane sends it and the filter caches it in
/// shared data (one entry per active key, in every Envoy process). Unset and
/// default fields are left out of the JSON and read back as their defaults:
/// a plain key is ~150 bytes instead of ~750. `enabled` is always written.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ResolvedKey {
    pub id: i64,
    pub name: String,
    /// Masked display form, e.g. `sk-…abcd`.
    pub masked: String,
    pub enabled: bool,
    /// Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub can_login_web_ui: bool,
    #[serde(default, skip_serializing_if = "Limits::is_unlimited")]
    pub limits: Limits,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_group: Option<String>,
    pub user: ResolvedUser,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ResolvedUser {
    pub id: i64,
    pub name: String,
    pub enabled: bool,
    /// Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    /// Left out for `user` (the default, and the least privilege).
    #[serde(default, skip_serializing_if = "is_default")]
    pub role: Role,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_clients: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_clients: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_models: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    #[serde(default, skip_serializing_if = "Limits::is_unlimited")]
    pub limits: Limits,
    #[serde(default, skip_serializing_if = "is_default")]
    pub daily_reset_mode: DailyResetMode,
    /// `HH:MM` in the snapshot's time zone.
    #[serde(default = "midnight", skip_serializing_if = "is_midnight")]
    pub daily_reset_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_group: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

const MIDNIGHT: &str = "00:00";

fn midnight() -> String {
    MIDNIGHT.to_string()
}

fn is_midnight(s: &str) -> bool {
    s == MIDNIGHT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_hex_sha256() {
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn mask_shows_prefix_and_last_four_only() {
        assert_eq!(mask_key("sk-0123456789abcdefWXYZ"), "sk-…WXYZ");
        assert_eq!(mask_key("0123456789abcdefWXYZ"), "…WXYZ");
        assert_eq!(mask_key("short"), "…");
        // Multi-byte characters never split (no panic) and never show more.
        assert_eq!(mask_key("ключ-0123456789abcdéß"), "…cdéß");
    }

    fn plain_key() -> ResolvedKey {
        ResolvedKey {
            id: 123_456,
            name: "laptop".into(),
            masked: "sk-…abcd".into(),
            enabled: true,
            expires_at_ms: None,
            can_login_web_ui: false,
            limits: Limits::default(),
            provider_group: None,
            user: ResolvedUser {
                id: 4_321,
                name: "alice".into(),
                enabled: true,
                expires_at_ms: None,
                role: Role::User,
                allowed_clients: vec![],
                blocked_clients: vec![],
                allowed_models: vec![],
                rpm: None,
                limits: Limits::default(),
                daily_reset_mode: DailyResetMode::Fixed,
                daily_reset_time: "00:00".into(),
                provider_group: None,
            },
        }
    }

    #[test]
    fn a_plain_key_is_small_json() {
        let json = serde_json::to_string(&plain_key()).unwrap();
        assert!(json.len() <= 200, "{} bytes: {json}", json.len());
        // Never left out: a missing flag must not read as enabled.
        assert!(json.contains(r#""enabled":true"#), "{json}");
        assert_eq!(serde_json::from_str::<ResolvedKey>(&json).unwrap(), plain_key());
    }

    #[test]
    fn every_field_round_trips() {
        let limits = Limits {
            limit_total_usd: Some("100".parse().unwrap()),
            limit_5h_usd: Some("1.5".parse().unwrap()),
            limit_5h_mode: FiveHourMode::Fixed,
            limit_daily_usd: Some("10".parse().unwrap()),
            limit_weekly_usd: Some("50".parse().unwrap()),
            limit_monthly_usd: Some("0".parse().unwrap()),
            limit_concurrent_sessions: Some(0),
        };
        let mut full = plain_key();
        full.enabled = false;
        full.expires_at_ms = Some(1_700_000_000_000);
        full.can_login_web_ui = true;
        full.limits = limits.clone();
        full.provider_group = Some("team-a".into());
        full.user = ResolvedUser {
            enabled: false,
            expires_at_ms: Some(1_800_000_000_000),
            role: Role::Admin,
            allowed_clients: vec!["claude-code".into()],
            blocked_clients: vec!["curl".into()],
            allowed_models: vec!["claude-sonnet-4-5".into()],
            rpm: Some(0),
            limits,
            daily_reset_mode: DailyResetMode::Rolling,
            daily_reset_time: "18:30".into(),
            provider_group: Some("".into()),
            ..full.user
        };
        for key in [plain_key(), full] {
            let json = serde_json::to_vec(&key).unwrap();
            assert_eq!(serde_json::from_slice::<ResolvedKey>(&json).unwrap(), key);
        }
        // The complete form (an older control plane's answer) still reads.
        let old = r#"{"id":1,"name":"k","masked":"sk-…abcd","enabled":true,"expires_at_ms":null,
            "can_login_web_ui":false,"limits":{"limit_total_usd":null,"limit_5h_usd":null,"limit_5h_mode":"rolling",
            "limit_daily_usd":null,"limit_weekly_usd":null,"limit_monthly_usd":null,"limit_concurrent_sessions":null},
            "provider_group":null,"user":{"id":2,"name":"u","enabled":true,"expires_at_ms":null,"role":"user",
            "allowed_clients":[],"blocked_clients":[],"allowed_models":[],"rpm":null,"limits":{"limit_5h_mode":"rolling"},
            "daily_reset_mode":"fixed","daily_reset_time":"00:00","provider_group":null}}"#;
        let read: ResolvedKey = serde_json::from_str(old).unwrap();
        assert_eq!((read.id, read.user.id, read.user.daily_reset_time.as_str()), (1, 2, "00:00"));
        assert_eq!(read.limits, Limits::default());
        // `enabled` stays required.
        assert!(serde_json::from_str::<ResolvedKey>(r#"{"id":1,"name":"k","masked":"m","user":{"id":2,"name":"u","enabled":true}}"#).is_err());
    }
}
