//! Key resolution: the filter sends the SHA-256 of a client key, the control
//! plane answers with the key, its user and their limits.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::snapshot::{DailyResetMode, Limits, Role};

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

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ResolvedKey {
    pub id: i64,
    pub name: String,
    /// Masked display form, e.g. `sk-…abcd`.
    pub masked: String,
    pub enabled: bool,
    /// Unix milliseconds.
    pub expires_at_ms: Option<i64>,
    pub can_login_web_ui: bool,
    pub limits: Limits,
    pub provider_group: Option<String>,
    pub user: ResolvedUser,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ResolvedUser {
    pub id: i64,
    pub name: String,
    pub enabled: bool,
    /// Unix milliseconds.
    pub expires_at_ms: Option<i64>,
    pub role: Role,
    pub allowed_clients: Vec<String>,
    pub blocked_clients: Vec<String>,
    pub allowed_models: Vec<String>,
    pub rpm: Option<u32>,
    pub limits: Limits,
    pub daily_reset_mode: DailyResetMode,
    /// `HH:MM` in the snapshot's time zone.
    pub daily_reset_time: String,
    pub provider_group: Option<String>,
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
}
