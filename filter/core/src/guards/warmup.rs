//! Guard 6: the Claude Code warmup intercept (SPEC §2.6). A warmup request
//! is answered locally with a minimal valid Anthropic message, so it never
//! reaches (or is billed by) a provider.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{path_without_query, Endpoint};
use crate::chain::{Cx, Guard, Step, Synthetic};
use crate::clip::{clip, MAX_MODEL};
use crate::request::Object;

/// Added by the caller to the synthetic reply.
pub const INTERCEPT_HEADER: (&str, &str) = ("x-cch-intercepted", "warmup");

/// What CCH answers a warmup with.
const REPLY_TEXT: &str = "I'm ready to help you.";

#[derive(Deserialize)]
struct BodyJson<'a> {
    #[serde(borrow, default)]
    messages: Only<MessageJson<'a>>,
}

#[derive(Deserialize)]
struct MessageJson<'a> {
    #[serde(borrow)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Only<BlockJson<'a>>,
}

#[derive(Deserialize)]
struct BlockJson<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<Cow<'a, str>>,
    text: Option<WarmupText>,
    #[serde(borrow)]
    cache_control: Option<Object<CacheControlJson<'a>>>,
}

#[derive(Deserialize)]
struct CacheControlJson<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<Cow<'a, str>>,
}

/// The object in a JSON array that holds exactly one; `None` for any other
/// length. Elements after the first are skipped unread.
struct Only<T>(Option<T>);

impl<T> Default for Only<T> {
    fn default() -> Self {
        Only(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Only<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OnlyVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for OnlyVisitor<T> {
            type Value = Only<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Only<T>, A::Error> {
                let Some(Object(first)) = seq.next_element::<Object<T>>()? else {
                    return Ok(Only(None));
                };
                let mut more = false;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    more = true;
                }
                Ok(Only((!more).then_some(first)))
            }
        }
        deserializer.deserialize_seq(OnlyVisitor(PhantomData))
    }
}

/// Whether a JSON string is the warmup text, decided without keeping it.
struct WarmupText(bool);

impl<'de> Deserialize<'de> for WarmupText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl Visitor<'_> for TextVisitor {
            type Value = WarmupText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<WarmupText, E> {
                // CCH trims with JavaScript's trim, which also drops U+FEFF.
                let trimmed = text.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
                Ok(WarmupText(trimmed.eq_ignore_ascii_case("warmup")))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// Whether `body` could hold the word: `warmup` in any case, or a JSON
/// escape (`\u0057armup` is the word too). A scan, no parse: most bodies
/// are ruled out here.
fn may_mention_warmup(body: &[u8]) -> bool {
    memchr::memchr3_iter(b'\\', b'w', b'W', body).any(|i| match body.get(i) {
        Some(b'\\') => body.get(i + 1) == Some(&b'u'),
        _ => body.get(i..i + 6).is_some_and(|w| w.eq_ignore_ascii_case(b"warmup")),
    })
}

/// A Claude Code warmup: `POST /v1/messages` with one user message holding
/// one `text` block, `warmup` in any case, marked `cache_control` ephemeral.
pub fn is_warmup(endpoint: Endpoint, path: &str, body: &[u8]) -> bool {
    is_warmup_in(endpoint, path, body, body)
}

/// `is_warmup`, where `message` is the part of `body` that holds its one
/// message (all of it, when that is not known).
fn is_warmup_in(endpoint: Endpoint, path: &str, body: &[u8], message: &[u8]) -> bool {
    // CCH compares the exact pathname, so `/v1/messages/` is not a warmup.
    if endpoint != Endpoint::AnthropicMessages || path_without_query(path) != "/v1/messages" {
        return false;
    }
    if !may_mention_warmup(message) {
        return false;
    }
    let Ok(Object(body)) = serde_json::from_slice::<Object<BodyJson>>(body) else {
        return false;
    };
    let Some(message) = body.messages.0 else {
        return false;
    };
    let Some(block) = message.content.0 else {
        return false;
    };
    message.role.as_deref() == Some("user")
        && block.kind.as_deref() == Some("text")
        && block.text.is_some_and(|t| t.0)
        && block.cache_control.is_some_and(|Object(c)| c.kind.as_deref() == Some("ephemeral"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmupReply {
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// The synthetic answer: an Anthropic message (or, when `stream`, its full
/// SSE stream) saying "I'm ready to help you." with zero usage.
pub fn reply(model: Option<&str>, stream: bool, request_id: &str) -> WarmupReply {
    let id = message_id(request_id);
    let model = clip(model.filter(|m| !m.trim().is_empty()).unwrap_or("unknown"), MAX_MODEL);
    let usage = json!({
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    });
    if !stream {
        let message = json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": REPLY_TEXT}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": usage,
        });
        return WarmupReply {
            content_type: "application/json",
            body: serde_json::to_vec(&message).unwrap_or_default(),
        };
    }
    let events: [(&str, Value); 6] = [
        (
            "message_start",
            json!({"type": "message_start", "message": {
                "id": id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": usage,
            }}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": REPLY_TEXT}}),
        ),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": usage}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ];
    let mut body = String::new();
    for (name, data) in events {
        body.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    }
    WarmupReply { content_type: "text/event-stream", body: body.into_bytes() }
}

/// `msg_cch_` and the request id's letters and digits (at most 32), like
/// CCH's `msg_cch_<hex>`; the core has no random source of its own.
fn message_id(request_id: &str) -> String {
    let suffix: String = request_id.chars().filter(char::is_ascii_alphanumeric).take(32).collect();
    if suffix.is_empty() {
        "msg_cch_warmup".to_string()
    } else {
        format!("msg_cch_{suffix}")
    }
}

/// Guard 6: with `intercept_anthropic_warmup_requests` on, answers Claude
/// Code's warmup request itself: 200, never billed, never counted.
pub struct Warmup;

impl Guard for Warmup {
    fn name(&self) -> &'static str {
        "warmup"
    }

    fn check(&self, cx: &mut Cx<'_>) -> Result<Step, String> {
        let ex = &*cx.ex;
        let on = ex.snapshot.as_ref().is_some_and(|s| s.settings.intercept_anthropic_warmup_requests);
        let Some(body) = ex.body.as_deref() else {
            return Ok(Step::Next);
        };
        // A warmup has one message: a parsed body with another count is
        // not one, and is not parsed again.
        let one_message = !ex.body_parsed || ex.info.message_count == 1;
        if !on || !one_message {
            return Ok(Step::Next);
        }
        // Read in parts (segments.rs), the one message's bytes are known:
        // only they can spell the word.
        let message = ex.parts.as_ref().and_then(|p| p.first_turn(body)).unwrap_or(body);
        if !is_warmup_in(ex.endpoint, &ex.path, body, message) {
            return Ok(Step::Next);
        }
        let reply = reply(ex.info.model.as_deref(), ex.info.stream, &ex.request_id);
        let (name, value) = INTERCEPT_HEADER;
        Ok(Step::Respond(Synthetic {
            code: "warmup",
            status: 200,
            headers: vec![
                ("content-type".to_string(), reply.content_type.to_string()),
                (name.to_string(), value.to_string()),
            ],
            body: reply.body,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::sse::SseScanner;
    use crate::usage::ResponseMeter;
    use hubgate_wire::Usage;

    const PATH: &str = "/v1/messages";

    /// A Claude Code warmup body with the message replaced.
    fn body(messages: &str) -> String {
        format!(
            r#"{{"model":"claude-haiku-4-5-20251001","max_tokens":32000,"stream":true,"system":[{{"type":"text","text":"You are Claude Code."}}],"messages":{messages},"tools":[],"metadata":{{"user_id":"u"}}}}"#
        )
    }

    fn one_block(block: &str) -> String {
        body(&format!(r#"[{{"role":"user","content":[{block}]}}]"#))
    }

    #[test]
    fn warmup_requests_match() {
        let cases = [
            one_block(r#"{"type":"text","text":"Warmup","cache_control":{"type":"ephemeral"}}"#),
            one_block(r#"{"type":"text","text":"warmup","cache_control":{"type":"ephemeral"}}"#),
            one_block(r#"{"type":"text","text":"WARMUP","cache_control":{"type":"ephemeral","ttl":"1h"}}"#),
            one_block(r#"{"type":"text","text":" Warmup\n","cache_control":{"type":"ephemeral"}}"#),
            one_block(r#"{"type":"text","text":"\ufeffWarmup","cache_control":{"type":"ephemeral"}}"#),
            one_block(r#"{"cache_control":{"type":"ephemeral"},"text":"Warmup","type":"text"}"#),
            one_block(r#"{"type":"text","text":"\u0057armup","cache_control":{"type":"\u0065phemeral"}}"#),
            body(r#"[{"content":[{"type":"text","text":"Warmup","cache_control":{"type":"ephemeral"}}],"role":"\u0075ser"}]"#),
        ];
        for body in &cases {
            assert!(is_warmup(Endpoint::AnthropicMessages, PATH, body.as_bytes()), "{body}");
        }
        let good = &cases[0];
        assert!(is_warmup(Endpoint::AnthropicMessages, "/v1/messages?beta=true", good.as_bytes()));
        let minimal = r#"{"messages":[{"role":"user","content":[{"type":"text","text":"Warmup","cache_control":{"type":"ephemeral"}}]}]}"#;
        assert!(is_warmup(Endpoint::AnthropicMessages, PATH, minimal.as_bytes()));
    }

    #[test]
    fn look_alikes_do_not_match() {
        let block = r#"{"type":"text","text":"Warmup","cache_control":{"type":"ephemeral"}}"#;
        let bodies = [
            // two blocks
            one_block(&format!("{block},{block}")),
            one_block(&format!(r#"{block},{{"type":"text","text":"and more"}}"#)),
            // cache_control missing, null, of another type, not an object
            one_block(r#"{"type":"text","text":"Warmup"}"#),
            one_block(r#"{"type":"text","text":"Warmup","cache_control":null}"#),
            one_block(r#"{"type":"text","text":"Warmup","cache_control":{"type":"persistent"}}"#),
            one_block(r#"{"type":"text","text":"Warmup","cache_control":{}}"#),
            one_block(r#"{"type":"text","text":"Warmup","cache_control":["ephemeral"]}"#),
            one_block(r#"{"type":"text","text":"Warmup","cache_control":"ephemeral"}"#),
            // other text
            one_block(r#"{"type":"text","text":"Warmup!","cache_control":{"type":"ephemeral"}}"#),
            one_block(r#"{"type":"text","text":"Warm up","cache_control":{"type":"ephemeral"}}"#),
            one_block(r#"{"type":"text","text":"Warmup please","cache_control":{"type":"ephemeral"}}"#),
            one_block(r#"{"type":"text","text":"","cache_control":{"type":"ephemeral"}}"#),
            one_block(r#"{"type":"text","text":null,"cache_control":{"type":"ephemeral"}}"#),
            one_block(r#"{"type":"text","text":["Warmup"],"cache_control":{"type":"ephemeral"}}"#),
            one_block(r#"{"type":"text","cache_control":{"type":"ephemeral"}}"#),
            // other block types, or no block object
            one_block(r#"{"type":"Text","text":"Warmup","cache_control":{"type":"ephemeral"}}"#),
            one_block(r#"{"type":"document","text":"Warmup","cache_control":{"type":"ephemeral"}}"#),
            one_block(r#"{"text":"Warmup","cache_control":{"type":"ephemeral"}}"#),
            one_block(r#"["text","Warmup",{"type":"ephemeral"}]"#),
            one_block(""),
            // string content instead of blocks
            body(r#"[{"role":"user","content":"Warmup"}]"#),
            body(r#"[{"role":"user"}]"#),
            // two messages, none, another role, no message object
            body(&format!(r#"[{{"role":"user","content":[{block}]}},{{"role":"user","content":[{block}]}}]"#)),
            body(&format!(r#"[{{"role":"user","content":[{block}]}},{{"role":"assistant","content":"hi"}}]"#)),
            body("[]"),
            body("null"),
            body(&format!(r#"[{{"role":"assistant","content":[{block}]}}]"#)),
            body(&format!(r#"[{{"role":"User","content":[{block}]}}]"#)),
            body(&format!(r#"[{{"content":[{block}]}}]"#)),
            body(&format!(r#"[["user",[{block}]]]"#)),
            body(&format!(r#"{{"role":"user","content":[{block}]}}"#)),
            // not a usable body
            format!(r#"[{{"messages":[{{"role":"user","content":[{block}]}}]}}]"#),
            format!(r#"{{"messages":[{{"role":"user","content":[{block}]}}],"messages":[]}}"#),
            r#"{"messages":[{"role":"user","content":[{"type":"text","text":"Warmup""#.to_string(),
            String::new(),
        ];
        for body in &bodies {
            assert!(!is_warmup(Endpoint::AnthropicMessages, PATH, body.as_bytes()), "{body}");
        }
    }

    #[test]
    fn the_byte_check_rules_out_only_bodies_without_the_word() {
        for body in [&br#"{"text":"Warmup"}"#[..], b"WARMUP", b"xwArMuP", br#""\u0057armup""#, br#""w\u0061rmup""#] {
            assert!(may_mention_warmup(body), "{}", String::from_utf8_lossy(body));
        }
        for body in [&br#"{"text":"Warm up"}"#[..], b"", b"warmu", b"w", b"\\", br#"{"messages":[{"role":"user","content":"hi"}]}"#] {
            assert!(!may_mention_warmup(body), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn only_the_messages_endpoint() {
        let good = one_block(r#"{"type":"text","text":"Warmup","cache_control":{"type":"ephemeral"}}"#);
        for path in ["/v1/messages/count_tokens", "/v1/chat/completions", "/v1/messages/", "/v2/messages"] {
            assert!(!is_warmup(Endpoint::from_path(path), path, good.as_bytes()), "{path}");
        }
        // The endpoint and the path must agree.
        assert!(!is_warmup(Endpoint::AnthropicCountTokens, PATH, good.as_bytes()));
        assert!(!is_warmup(Endpoint::OpenAiChat, PATH, good.as_bytes()));
    }

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    fn meter(reply: &WarmupReply) -> crate::usage::Metered {
        let mut m = ResponseMeter::new(Endpoint::AnthropicMessages, reply.content_type);
        m.feed(&reply.body);
        m.finish()
    }

    #[test]
    fn json_reply() {
        let r = reply(Some("claude-haiku-4-5-20251001"), false, "9f1c2b7e-0d4a-4c55-8e21-6b3f0a9d7c11");
        assert_eq!(r.content_type, "application/json");
        let v = parse(&r.body);
        assert_eq!(
            v,
            json!({
                "id": "msg_cch_9f1c2b7e0d4a4c558e216b3f0a9d7c11",
                "type": "message",
                "role": "assistant",
                "model": "claude-haiku-4-5-20251001",
                "content": [{"type": "text", "text": "I'm ready to help you."}],
                "stop_reason": "end_turn",
                "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
            })
        );
        let metered = meter(&r);
        assert_eq!(metered.usage, Some(Usage::default()));
        assert_eq!(metered.model.as_deref(), Some("claude-haiku-4-5-20251001"));
        assert!(!metered.incomplete);
    }

    #[test]
    fn sse_reply() {
        let r = reply(Some("claude-haiku-4-5-20251001"), true, "req-1");
        assert_eq!(r.content_type, "text/event-stream");
        let text = String::from_utf8(r.body.clone()).unwrap();
        assert!(text.starts_with("event: message_start\ndata: {"));
        assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));

        let mut events: Vec<(String, Value)> = Vec::new();
        let mut scanner = SseScanner::default();
        scanner.feed(&r.body, |event, data| events.push((event.to_string(), parse(data))));
        scanner.finish(|event, data| events.push((event.to_string(), parse(data))));
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        for (name, data) in &events {
            assert_eq!(data["type"], name.as_str());
        }
        let start = &events[0].1["message"];
        assert_eq!(start["id"], "msg_cch_req1");
        assert_eq!(start["model"], "claude-haiku-4-5-20251001");
        assert_eq!(start["content"], json!([]));
        assert_eq!(events[2].1["delta"], json!({"type": "text_delta", "text": "I'm ready to help you."}));
        assert_eq!(events[4].1["delta"], json!({"stop_reason": "end_turn", "stop_sequence": null}));
        assert_eq!(events[4].1["usage"]["output_tokens"], 0);

        let metered = meter(&r);
        assert_eq!(metered.usage, Some(Usage::default()));
        assert_eq!(metered.model.as_deref(), Some("claude-haiku-4-5-20251001"));
        assert!(!metered.incomplete);
    }

    #[test]
    fn stream_flag_picks_the_form() {
        for (stream, content_type, first) in
            [(false, "application/json", b'{'), (true, "text/event-stream", b'e')]
        {
            let r = reply(Some("m"), stream, "r");
            assert_eq!(r.content_type, content_type);
            assert_eq!(r.body.first(), Some(&first));
        }
    }

    #[test]
    fn odd_models_and_request_ids() {
        let cases = [
            (None, "", "unknown", "msg_cch_warmup"),
            (Some("  "), "---", "unknown", "msg_cch_warmup"),
            (Some("m\"\n"), "a\"b\nc", "m\"\n", "msg_cch_abc"),
        ];
        for (model, request_id, want_model, want_id) in cases {
            let v = parse(&reply(model, false, request_id).body);
            assert_eq!(v["model"], want_model);
            assert_eq!(v["id"], want_id);
        }
        let long = "x".repeat(100_000);
        let v = parse(&reply(Some(&long), false, &long).body);
        assert_eq!(v["model"].as_str().map(str::len), Some(MAX_MODEL));
        assert_eq!(v["id"].as_str().map(str::len), Some("msg_cch_".len() + 32));
    }
}
