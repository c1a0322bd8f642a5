//! What the guard chain needs from a request body, parsed once. Only the
//! fields used are deserialized; the rest is skipped without allocating.

use std::marker::PhantomData;

use serde::de::{value::MapAccessDeserializer, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::api::{gemini_model_and_method, Endpoint};
use crate::reply::LocalReply;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub model: Option<String>,
    pub stream: bool,
    pub max_tokens: Option<u64>,
    /// `metadata.user_id` (Claude Code) — raw string.
    pub metadata_user_id: Option<String>,
    /// `metadata.session_id`.
    pub metadata_session_id: Option<String>,
    /// OpenAI Responses `prompt_cache_key`.
    pub prompt_cache_key: Option<String>,
    /// OpenAI Responses `previous_response_id`.
    pub previous_response_id: Option<String>,
    pub message_count: usize,
    /// OpenAI Chat `stream_options`: absent, or whether it asks for
    /// `include_usage`.
    pub include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct StreamOptionsJson {
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct BodyJson {
    model: Option<String>,
    stream: Option<bool>,
    max_tokens: Option<u64>,
    max_output_tokens: Option<u64>,
    metadata: Option<Object<MetadataJson>>,
    prompt_cache_key: Option<String>,
    previous_response_id: Option<String>,
    messages: Option<Vec<serde::de::IgnoredAny>>,
    stream_options: Option<Object<StreamOptionsJson>>,
    /// Responses `input` (a string or a list of items), Gemini `contents`.
    input: Option<Turns>,
    contents: Option<Turns>,
}

/// How many elements a JSON value has if it is an array (1 if it is
/// anything else), read without keeping them.
struct Turns(usize);

impl<'de> Deserialize<'de> for Turns {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TurnsVisitor;
        impl<'de> Visitor<'de> for TurnsVisitor {
            type Value = Turns;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Turns, A::Error> {
                let mut n = 0;
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Turns(n))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Turns, A::Error> {
                while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
                Ok(Turns(1))
            }
            fn visit_str<E>(self, _: &str) -> Result<Turns, E> {
                Ok(Turns(1))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Turns, E> {
                Ok(Turns(1))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Turns, E> {
                Ok(Turns(1))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Turns, E> {
                Ok(Turns(1))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Turns, E> {
                Ok(Turns(1))
            }
            fn visit_unit<E>(self) -> Result<Turns, E> {
                Ok(Turns(0))
            }
        }
        deserializer.deserialize_any(TurnsVisitor)
    }
}

#[derive(Deserialize)]
struct MetadataJson {
    user_id: Option<serde_json::Value>,
    session_id: Option<serde_json::Value>,
}

/// A struct read from a JSON object only. Derived `Deserialize` also takes
/// a JSON array of the field values in order (`["model", true, …]`), which
/// no API accepts: the guards would read fields the provider never sees.
pub(crate) struct Object<T>(pub(crate) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        deserializer.deserialize_map(ObjectVisitor(PhantomData)).map(Object)
    }
}

/// JSON's whitespace (RFC 8259): not form feed, unlike `is_ascii_whitespace`.
fn is_json_whitespace(b: &u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Parses a request body. An empty body is fine (no fields); malformed JSON
/// or a non-object is a 400 that names the position.
pub fn inspect(endpoint: Endpoint, path: &str, body: &[u8]) -> Result<RequestInfo, LocalReply> {
    let mut info = RequestInfo::default();
    if let Endpoint::Gemini { stream, .. } = endpoint {
        info.model = gemini_model_and_method(path).map(|(m, _)| m.to_string());
        info.stream = stream;
    }
    if body.iter().all(is_json_whitespace) {
        return Ok(info);
    }
    let parsed: BodyJson = match serde_json::from_slice(body) {
        Ok(Object(parsed)) => parsed,
        Err(e) => {
            let what = if e.is_data() { "has an unexpected shape" } else { "is not valid JSON" };
            return Err(LocalReply::new(
                400,
                "invalid_json",
                format!("Request body {what}: {e}"),
            ));
        }
    };
    if info.model.is_none() {
        info.model = parsed.model.filter(|m| !m.is_empty());
    }
    info.stream = info.stream || parsed.stream.unwrap_or(false);
    info.include_usage = parsed.stream_options.map(|Object(o)| o.include_usage.unwrap_or(false));
    info.max_tokens = parsed.max_tokens.or(parsed.max_output_tokens);
    if let Some(Object(meta)) = parsed.metadata {
        info.metadata_user_id = meta.user_id.and_then(string_value);
        info.metadata_session_id = meta.session_id.and_then(string_value);
    }
    info.prompt_cache_key = parsed.prompt_cache_key;
    info.previous_response_id = parsed.previous_response_id;
    info.message_count =
        parsed.messages.map(|m| m.len()).or(parsed.input.map(|t| t.0)).or(parsed.contents.map(|t| t.0)).unwrap_or(0);
    Ok(info)
}

fn string_value(v: serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_it_needs() {
        let body = br#"{"model":"claude-sonnet-4-5","max_tokens":1024,"stream":true,"system":[{"type":"text","text":"x"}],
            "messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}],
            "metadata":{"user_id":"{\"device_id\":\"d\",\"session_id\":\"s\"}"},"tools":[{"name":"t","input_schema":{"type":"object"}}]}"#;
        let info = inspect(Endpoint::AnthropicMessages, "/v1/messages", body).unwrap();
        assert_eq!(info.model.as_deref(), Some("claude-sonnet-4-5"));
        assert!(info.stream);
        assert_eq!(info.max_tokens, Some(1024));
        assert_eq!(info.message_count, 2);
        assert_eq!(info.metadata_user_id.as_deref(), Some(r#"{"device_id":"d","session_id":"s"}"#));
    }

    #[test]
    fn malformed_json_names_the_position() {
        let r = inspect(Endpoint::AnthropicMessages, "/v1/messages", b"{\"model\": \"x\",\n  oops}").unwrap_err();
        assert_eq!((r.status, r.code), (400, "invalid_json"));
        assert!(r.message.contains("line 2 column 3"), "{}", r.message);
    }

    #[test]
    fn wrong_shapes_are_400_not_crashes() {
        for body in [&b"[1,2]"[..], b"\"str\"", br#"{"model":5}"#, br#"{"stream":"yes"}"#, b"{\"model\":\"\xff\"}"] {
            let r = inspect(Endpoint::AnthropicMessages, "/v1/messages", body).unwrap_err();
            assert_eq!(r.code, "invalid_json");
        }
    }

    /// Caught by the filter/fuzz `request` oracle (reproducers in
    /// filter/fuzz/corpus/request/regress-*): derived `Deserialize` took a
    /// JSON array of the field values in order, so `["claude-…", true, 5,
    /// …]` passed as a body with a model (and an array as `metadata`),
    /// though the contract is a 400 for anything but an object.
    #[test]
    fn fuzz_arrays_in_place_of_objects_are_400() {
        for body in [
            &br#"[null,null,null,null,null,null,null,null]"#[..],
            br#"["claude-sonnet-4-5",true,5,null,null,null,null,null]"#,
            br#"{"model":"m","metadata":["{\"session_id\":\"s\"}",null]}"#,
        ] {
            let r = inspect(Endpoint::AnthropicMessages, "/v1/messages", body).unwrap_err();
            assert_eq!((r.status, r.code), (400, "invalid_json"), "{}", String::from_utf8_lossy(body));
            assert!(r.message.contains("expected a JSON object"), "{}", r.message);
        }
        let info = inspect(Endpoint::AnthropicMessages, "/v1/messages", br#"{"metadata":{"user_id":"u"}}"#).unwrap();
        assert_eq!(info.metadata_user_id.as_deref(), Some("u"));
        assert!(inspect(Endpoint::AnthropicMessages, "/v1/messages", br#"{"metadata":null}"#).is_ok());
    }

    /// Caught by the filter/fuzz `request` oracle: a body of form feeds
    /// counted as blank (`is_ascii_whitespace` includes U+000C, JSON does
    /// not) and passed as an empty body.
    #[test]
    fn fuzz_form_feed_is_not_json_whitespace() {
        let r = inspect(Endpoint::AnthropicMessages, "/v1/messages", b"\x0c").unwrap_err();
        assert_eq!((r.status, r.code), (400, "invalid_json"));
        assert_eq!(inspect(Endpoint::AnthropicMessages, "/v1/messages", b" \t\r\n"), Ok(RequestInfo::default()));
    }

    #[test]
    fn empty_body_and_gemini_path_model() {
        let info = inspect(
            Endpoint::Gemini { stream: true, conversation: true },
            "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
            b"",
        )
        .unwrap();
        assert_eq!(info.model.as_deref(), Some("gemini-2.5-pro"));
        assert!(info.stream);
    }

    #[test]
    fn turns_are_counted_in_every_format() {
        let count = |endpoint, path, body: &str| inspect(endpoint, path, body.as_bytes()).unwrap().message_count;
        let responses = Endpoint::OpenAiResponses;
        assert_eq!(count(responses, "/v1/responses", r#"{"model":"m","input":"hi"}"#), 1);
        assert_eq!(count(responses, "/v1/responses", r#"{"model":"m","input":[{"role":"user","content":"a"},{"type":"function_call_output"},{}]}"#), 3);
        let path = "/v1beta/models/gemini-2.5-pro:generateContent";
        let gemini = Endpoint::from_path(path);
        assert_eq!(count(gemini, path, r#"{"contents":[{"role":"user","parts":[{"text":"a"}]},{"role":"model","parts":[]}]}"#), 2);
        assert_eq!(count(Endpoint::AnthropicMessages, "/v1/messages", r#"{"model":"m","messages":[]}"#), 0);
    }
}
