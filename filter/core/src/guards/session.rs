//! Guard 7 (part): finding the session id of a request (SPEC §2.7).

use serde::Deserialize;

use crate::chain::{Cx, Guard, Step};
use crate::headers::Headers;
use crate::request::RequestInfo;

pub struct Session;

impl Guard for Session {
    fn name(&self) -> &'static str {
        "session"
    }

    fn check(&self, cx: &mut Cx<'_>) -> Result<Step, String> {
        cx.ex.session_id = session_id(&cx.ex.headers, &cx.ex.info);
        Ok(Step::Next)
    }
}

#[derive(Deserialize)]
struct ClaudeUserId {
    session_id: Option<String>,
}

/// The first session id found, in the SPEC's order. Ids are client input
/// that ends up in storage and indexes: anything outside
/// `[A-Za-z0-9_.:-]{1,256}` is ignored.
pub fn session_id(headers: &Headers, info: &RequestInfo) -> Option<String> {
    if let Some(id) = info.metadata_user_id.as_deref().and_then(from_claude_user_id).filter(|id| is_valid_id(id)) {
        return Some(id);
    }
    if let Some(id) = headers.non_empty("x-claude-code-session-id").filter(|id| is_valid_id(id)) {
        return Some(id.to_string());
    }
    ["session_id", "session-id", "x-session-id"]
        .iter()
        .filter_map(|h| headers.non_empty(h))
        .chain(info.prompt_cache_key.as_deref())
        .chain(info.metadata_session_id.as_deref())
        .chain(info.previous_response_id.as_deref())
        .find(|id| is_valid_codex_id(id))
        .map(str::to_string)
}

/// `metadata.user_id`: a JSON string (Claude Code ≥ 2.1.78) or the legacy
/// `user_<hex>_account_<uuid?>_session_<uuid>`.
fn from_claude_user_id(user_id: &str) -> Option<String> {
    if user_id.trim_start().starts_with('{') {
        let parsed: ClaudeUserId = serde_json::from_str(user_id).ok()?;
        return parsed.session_id.filter(|s| !s.is_empty());
    }
    let (_, session) = user_id.rsplit_once("_session_")?;
    (!session.is_empty()).then(|| session.to_string())
}

fn is_valid_id(id: &str) -> bool {
    (1..=256).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

fn is_valid_codex_id(id: &str) -> bool {
    id.len() >= 21 && is_valid_id(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        Headers::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn claude_json_user_id_first() {
        let info = RequestInfo {
            metadata_user_id: Some(r#"{"device_id":"d","account_uuid":"a","session_id":"5e6f-1"}"#.into()),
            ..Default::default()
        };
        assert_eq!(session_id(&h(&[("x-claude-code-session-id", "other")]), &info).as_deref(), Some("5e6f-1"));
    }

    #[test]
    fn oversized_or_odd_ids_are_ignored() {
        let long = "a".repeat(7000);
        let info = RequestInfo { metadata_user_id: Some(format!(r#"{{"session_id":"{long}"}}"#)), ..Default::default() };
        assert_eq!(session_id(&h(&[("x-claude-code-session-id", "ok-1")]), &info).as_deref(), Some("ok-1"));
        assert_eq!(session_id(&h(&[("x-claude-code-session-id", "has space")]), &RequestInfo::default()), None);
    }

    #[test]
    fn legacy_user_id() {
        let info = RequestInfo {
            metadata_user_id: Some("user_abc123_account__session_0f1e2d3c-aaaa".into()),
            ..Default::default()
        };
        assert_eq!(session_id(&h(&[]), &info).as_deref(), Some("0f1e2d3c-aaaa"));
    }

    #[test]
    fn header_then_codex_sources() {
        let info = RequestInfo::default();
        assert_eq!(session_id(&h(&[("X-Claude-Code-Session-Id", "abc")]), &info).as_deref(), Some("abc"));
        let codex = "019a1b2c-3d4e-5f60-7182-93a4b5c6d7e8";
        assert_eq!(session_id(&h(&[("session_id", codex)]), &info).as_deref(), Some(codex));
        let info = RequestInfo { prompt_cache_key: Some(codex.into()), ..Default::default() };
        assert_eq!(session_id(&h(&[("session_id", "too-short")]), &info).as_deref(), Some(codex));
        let info = RequestInfo { previous_response_id: Some("resp with spaces and long enough".into()), ..Default::default() };
        assert_eq!(session_id(&h(&[]), &info), None);
    }
}
