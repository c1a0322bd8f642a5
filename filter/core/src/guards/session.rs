//! Guard 7 (part): finding the session id of a request (SPEC §2.7).

use std::borrow::Cow;
use std::fmt;

use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::api::Endpoint;
use crate::chain::{Cx, Guard, Step};
use crate::headers::Headers;
use crate::request::{Object, RequestInfo};

pub struct Session;

impl Guard for Session {
    fn name(&self) -> &'static str {
        "session"
    }

    fn check(&self, cx: &mut Cx<'_>) -> Result<Step, String> {
        let ex = &mut *cx.ex;
        ex.session_id = session_id(&ex.headers, &ex.info).or_else(|| {
            let key = ex.key()?;
            let body = ex.body.as_deref()?;
            if !ex.endpoint.is_conversation() {
                return None;
            }
            // Read with seen parts: only the first turns are parsed.
            match ex.parts.as_ref().filter(|_| !ex.body_changed).and_then(|p| p.first_turns(body)) {
                Some(turns) => fallback_session_id_of_turns(key.id, &turns?),
                None => fallback_session_id(ex.endpoint, key.id, body),
            }
        });
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

/// Without an id from the client: a hash of the key and the text of the
/// first three turns, which stay the same as a conversation grows.
pub fn fallback_session_id(endpoint: Endpoint, key_id: i64, body: &[u8]) -> Option<String> {
    // An object only: derived `Deserialize` would also take `[messages, …]`.
    let Object(turns) = serde_json::from_slice::<Object<FirstTurns>>(body).ok()?;
    let texts = match endpoint {
        Endpoint::Gemini { .. } => turns.contents,
        Endpoint::OpenAiResponses => turns.input,
        _ => turns.messages,
    }?;
    fallback_of_texts(key_id, &texts.0)
}

/// `fallback_session_id` of a body whose conversation array starts with
/// `turns` (its first three elements, or fewer if it has fewer).
pub fn fallback_session_id_of_turns(key_id: i64, turns: &[&[u8]]) -> Option<String> {
    let mut texts = Vec::new();
    for turn in turns.iter().take(TURNS) {
        texts.extend(serde_json::from_slice::<Turn>(turn).ok()?.texts());
    }
    fallback_of_texts(key_id, &texts)
}

fn fallback_of_texts(key_id: i64, texts: &[Cow<str>]) -> Option<String> {
    if texts.is_empty() {
        return None;
    }
    let mut material = key_id.to_string();
    for text in texts {
        material.push('\u{1f}');
        material.push_str(text);
    }
    let hash = hubgate_wire::hash_key(&material);
    Some(format!("h-{}", hash.get(..32).unwrap_or(&hash)))
}

#[derive(Deserialize)]
struct FirstTurns<'a> {
    #[serde(borrow)]
    messages: Option<TurnTexts<'a>>,
    #[serde(borrow)]
    contents: Option<TurnTexts<'a>>,
    #[serde(borrow)]
    input: Option<TurnTexts<'a>>,
}

/// The text of the first three turns of a conversation array (or the
/// whole input when it is a string).
struct TurnTexts<'a>(Vec<Cow<'a, str>>);

const TURNS: usize = 3;

impl<'de: 'a, 'a> Deserialize<'de> for TurnTexts<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = TurnTexts<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of turns or a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(TurnTexts(vec![Cow::Borrowed(v)]))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(TurnTexts(vec![Cow::Owned(v.to_string())]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut texts = Vec::new();
                for _ in 0..TURNS {
                    match seq.next_element::<Turn<'a>>()? {
                        Some(turn) => texts.extend(turn.texts()),
                        None => return Ok(TurnTexts(texts)),
                    }
                }
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(TurnTexts(texts))
            }
        }
        deserializer.deserialize_any(V(std::marker::PhantomData))
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Turn<'a> {
    #[serde(borrow)]
    content: Option<Content<'a>>,
    #[serde(borrow)]
    parts: Option<Vec<Block<'a>>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content<'a> {
    #[serde(borrow)]
    Text(Cow<'a, str>),
    #[serde(borrow)]
    Blocks(Vec<Block<'a>>),
    Other(IgnoredAny),
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Block<'a> {
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
}

impl<'a> Turn<'a> {
    fn texts(self) -> Vec<Cow<'a, str>> {
        let blocks = match self.content {
            Some(Content::Text(t)) => return vec![t],
            Some(Content::Blocks(b)) => b,
            _ => self.parts.unwrap_or_default(),
        };
        blocks.into_iter().filter_map(|b| b.text).collect()
    }
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
    fn fallback_is_stable_as_the_conversation_grows() {
        let first = br#"{"model":"m","messages":[{"role":"user","content":"hello"}]}"#;
        let later = br#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hello"}]},
            {"role":"assistant","content":"hi"},{"role":"user","content":"more"},{"role":"assistant","content":"x"},
            {"role":"user","content":"and more"}]}"#;
        let third = br#"{"messages":[{"role":"user","content":"hello"},{"role":"assistant","content":"hi"},
            {"role":"user","content":"more"}]}"#;
        let a = fallback_session_id(Endpoint::AnthropicMessages, 7, third).unwrap();
        assert_eq!(fallback_session_id(Endpoint::AnthropicMessages, 7, later), Some(a.clone()));
        assert!(a.starts_with("h-") && is_valid_id(&a), "{a}");
        assert_ne!(fallback_session_id(Endpoint::AnthropicMessages, 7, first), Some(a.clone()), "fewer turns differ");
        assert_ne!(fallback_session_id(Endpoint::AnthropicMessages, 8, third), Some(a), "another key differs");
    }

    #[test]
    fn fallback_per_dialect() {
        let gemini = br#"{"contents":[{"role":"user","parts":[{"text":"hello"}]}]}"#;
        let endpoint = Endpoint::Gemini { stream: false, conversation: true };
        assert!(fallback_session_id(endpoint, 1, gemini).is_some());
        let responses = br#"{"input":"hello"}"#;
        assert!(fallback_session_id(Endpoint::OpenAiResponses, 1, responses).is_some());
        assert_eq!(fallback_session_id(Endpoint::AnthropicMessages, 1, br#"{"messages":[]}"#), None);
        assert_eq!(fallback_session_id(Endpoint::AnthropicMessages, 1, b"[1,2]"), None);
    }

    /// Same class as the request inspection bug the fuzz oracle caught (now
    /// checked by filter/fuzz `body_guards`, input
    /// corpus/body_guards/regress-array-body): a JSON array of the fields in
    /// order, `[[turns], null, null]`, got the session id of
    /// `{"messages": [turns]}`, though no API takes an array body.
    #[test]
    fn fuzz_array_body_has_no_fallback_id() {
        let turns = r#"[{"role":"user","content":"hi"}]"#;
        let object = format!(r#"{{"messages":{turns}}}"#);
        assert!(fallback_session_id(Endpoint::AnthropicMessages, 1, object.as_bytes()).is_some());
        let array = format!("[{turns},null,null]");
        assert_eq!(fallback_session_id(Endpoint::AnthropicMessages, 1, array.as_bytes()), None);
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
