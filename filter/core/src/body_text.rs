//! The request texts the sensitive-word guard checks (SPEC §2.2): system
//! prompts and the user's turns, JSON escapes decoded. Never assistant turns,
//! tool schemas, tool calls or tool results, never `metadata`.
//!
//! One pass over the body: strings without escapes are borrowed from it,
//! everything not read is skipped unparsed. A value of an unexpected shape
//! carries no text; only invalid JSON is an error.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::api::Endpoint;

/// The texts of `body` in document order, empty ones left out.
///
/// All dialects are read alike, by field name: Anthropic and OpenAI
/// `system`, `messages`, legacy `prompt`, Responses `instructions` and
/// `input`, Gemini `contents` and `systemInstruction`.
pub fn user_texts(endpoint: Endpoint, body: &[u8]) -> Result<Vec<Cow<'_, str>>, serde_json::Error> {
    let mut texts = Vec::new();
    if endpoint == Endpoint::Other {
        return Ok(texts);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    Walk { shape: Shape::Body, out: &mut texts }.deserialize(&mut de)?;
    de.end()?;
    Ok(texts)
}

/// The texts of the one JSON value at the start of `s`, read as `shape`
/// (as `user_texts` reads that value inside a body), and the length of
/// the value. `None` if it is not a valid value. The seen-parts walk
/// (`segments`) reads a body this way, one value at a time.
pub(crate) fn value_texts(shape: Shape, s: &[u8]) -> Option<(Vec<Cow<'_, str>>, usize)> {
    fn first<'a, const S: u8>(s: &'a [u8]) -> Option<(Vec<Cow<'a, str>>, usize)> {
        let mut values = serde_json::Deserializer::from_slice(s).into_iter::<ValueTexts<'a, S>>();
        let texts = values.next()?.ok()?.0;
        Some((texts, values.byte_offset()))
    }
    match shape {
        Shape::Texts => first::<0>(s),
        Shape::Block => first::<1>(s),
        Shape::Turns => first::<2>(s),
        Shape::Turn => first::<3>(s),
        Shape::Body => None,
    }
}

/// The texts of one value of shape number `S` (see `value_texts`).
struct ValueTexts<'a, const S: u8>(Vec<Cow<'a, str>>);

impl<'a, const S: u8> serde::Deserialize<'a> for ValueTexts<'a, S> {
    fn deserialize<D: Deserializer<'a>>(deserializer: D) -> Result<Self, D::Error> {
        let shape = match S {
            0 => Shape::Texts,
            1 => Shape::Block,
            2 => Shape::Turns,
            _ => Shape::Turn,
        };
        let mut out = Vec::new();
        let text = Walk { shape, out: &mut out }.deserialize(deserializer)?;
        push(&mut out, text);
        Ok(ValueTexts(out))
    }
}

/// What a JSON value is expected to be, and so what is taken from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// The request object.
    Body,
    /// `system`, `content`, `parts`, `prompt`, `instructions`: a string or
    /// a list of blocks.
    Texts,
    /// A content block or Gemini part: its `text`, if it is a text block.
    Block,
    /// `messages`, `input`, `contents`, `systemInstruction`: a string, a
    /// turn or a list of turns.
    Turns,
    /// One turn: its content, if the role is the user's or the system's.
    Turn,
}

/// Walks one value of the given shape, pushing the texts found inside it
/// onto `out`. A value that is itself a string is returned to the caller,
/// which knows whether it is a text.
struct Walk<'o, 'a> {
    shape: Shape,
    out: &'o mut Vec<Cow<'a, str>>,
}

/// A value only read if it is a string: keys, `role`, `type`, `text`.
struct Str;

fn push<'a>(out: &mut Vec<Cow<'a, str>>, text: Option<Cow<'a, str>>) {
    if let Some(text) = text.filter(|t| !t.is_empty()) {
        out.push(text);
    }
}

/// Strings are returned (borrowed unless they had escapes); other scalars
/// carry no text.
macro_rules! strings_and_scalars {
    () => {
        fn visit_borrowed_str<E>(self, v: &'a str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v)))
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    };
}

impl<'a> DeserializeSeed<'a> for Str {
    type Value = Option<Cow<'a, str>>;

    fn deserialize<D: Deserializer<'a>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'a> Visitor<'a> for Str {
    type Value = Option<Cow<'a, str>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    strings_and_scalars!();

    fn visit_seq<A: SeqAccess<'a>>(self, seq: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_seq(seq)?;
        Ok(None)
    }

    fn visit_map<A: MapAccess<'a>>(self, map: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_map(map)?;
        Ok(None)
    }
}

impl<'a> DeserializeSeed<'a> for Walk<'_, 'a> {
    type Value = Option<Cow<'a, str>>;

    fn deserialize<D: Deserializer<'a>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'a> Visitor<'a> for Walk<'_, 'a> {
    type Value = Option<Cow<'a, str>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    strings_and_scalars!();

    fn visit_seq<A: SeqAccess<'a>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let item = match self.shape {
            Shape::Texts => Shape::Block,
            Shape::Turns => Shape::Turn,
            Shape::Body | Shape::Block | Shape::Turn => {
                IgnoredAny.visit_seq(seq)?;
                return Ok(None);
            }
        };
        while let Some(text) = seq.next_element_seed(Walk { shape: item, out: &mut *self.out })? {
            push(self.out, text);
        }
        Ok(None)
    }

    fn visit_map<A: MapAccess<'a>>(self, map: A) -> Result<Self::Value, A::Error> {
        match self.shape {
            Shape::Body => body(map, self.out)?,
            Shape::Texts | Shape::Block => block(map, self.out)?,
            Shape::Turns | Shape::Turn => turn(map, self.out)?,
        }
        Ok(None)
    }
}

fn body<'a, A: MapAccess<'a>>(mut map: A, out: &mut Vec<Cow<'a, str>>) -> Result<(), A::Error> {
    while let Some(key) = map.next_key_seed(Str)? {
        let shape = match key.as_deref() {
            Some("system" | "prompt" | "instructions") => Shape::Texts,
            Some("messages" | "input" | "contents" | "systemInstruction" | "system_instruction") => Shape::Turns,
            _ => {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
        };
        let text = map.next_value_seed(Walk { shape, out: &mut *out })?;
        push(out, text);
    }
    Ok(())
}

/// Anthropic `{type:"text"}`, OpenAI `{type:"text"|"input_text"}` and Gemini
/// parts (no type). The type may come after the text.
fn block<'a, A: MapAccess<'a>>(mut map: A, out: &mut Vec<Cow<'a, str>>) -> Result<(), A::Error> {
    let mut kind = None;
    let mut text = None;
    while let Some(key) = map.next_key_seed(Str)? {
        match key.as_deref() {
            Some("type") => kind = map.next_value_seed(Str)?,
            Some("text") => text = map.next_value_seed(Str)?,
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    if matches!(kind.as_deref(), None | Some("text" | "input_text")) {
        push(out, text);
    }
    Ok(())
}

/// A turn's texts count unless its role is another party's (assistant,
/// model, tool, function). The role may come after the content, so the
/// texts are pushed first and taken back.
fn turn<'a, A: MapAccess<'a>>(mut map: A, out: &mut Vec<Cow<'a, str>>) -> Result<(), A::Error> {
    let start = out.len();
    let mut role = None;
    while let Some(key) = map.next_key_seed(Str)? {
        match key.as_deref() {
            Some("role") => role = map.next_value_seed(Str)?,
            Some("content" | "parts") => {
                let text = map.next_value_seed(Walk { shape: Shape::Texts, out: &mut *out })?;
                push(out, text);
            }
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    if !matches!(role.as_deref(), None | Some("user" | "system" | "developer")) {
        out.truncate(start);
    }
    Ok(())
}

/// Request bodies shaped like real clients' ones, shared with the guard's
/// tests.
#[cfg(test)]
pub(crate) mod samples {
    use serde_json::{json, Value};

    /// A small deterministic generator (xorshift) for generated test cases.
    pub struct XorShift(pub u64);

    impl XorShift {
        /// The next number below `n`.
        pub fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// Deterministic lowercase letters, `len` of them (the bench's word
    /// generator, tests/e2e/src/bin/hubgate-bench.rs).
    pub fn token(seed: u64, len: usize) -> String {
        let mut x = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        (0..len).map(|_| char::from(b'a' + x.below(26) as u8)).collect()
    }

    /// Prints the time of one `f()`, µs: the best of 30 batches of 10 (the
    /// machine is shared; the best batch is the least noisy).
    pub fn time(what: &str, f: &dyn Fn()) {
        let best = (0..30)
            .map(|_| {
                let started = std::time::Instant::now();
                for _ in 0..10 {
                    f();
                }
                started.elapsed().as_secs_f64() * 1e6 / 10.0
            })
            .fold(f64::INFINITY, f64::min);
        println!("{what}: {best:.1} µs");
    }

    /// Deterministic prose with the newlines, quotes and backticks real
    /// prompts have (so most strings carry JSON escapes).
    pub fn prose(seed: usize, len: usize) -> String {
        const WORDS: &[&str] = &[
            "the", "file", "function", "returns", "`Result`", "when", "user", "asks", "read", "tool", "must",
            "before", "edit", "path", "absolute", "\"quoted\"", "output", "lines", "code", "review", "tests",
            "commit", "never", "always", "prefer", "existing", "directory", "search", "pattern", "task.",
        ];
        let mut out = String::with_capacity(len + 16);
        let mut i = seed as u64;
        while out.len() < len {
            i = i.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let word = WORDS.get((i >> 33) as usize % WORDS.len()).copied().unwrap_or("x");
            out.push_str(word);
            out.push(if (i >> 20).is_multiple_of(11) { '\n' } else { ' ' });
        }
        out
    }

    /// A Claude Code `/v1/messages` body of about 115 KB and the texts the
    /// guard must see in it, in order. Markers that must never be seen sit
    /// in the assistant turns, tool schemas, tool calls and results, and
    /// metadata: `ASSISTANT_ONLY`, `SCHEMA_ONLY`, `TOOL_CALL_ONLY`,
    /// `TOOL_RESULT_ONLY`, `METADATA_ONLY`.
    pub fn claude_code_body() -> (Vec<u8>, Vec<String>) {
        let system = vec![
            "x-anthropic-billing-header: cc_version=2.1.197.a1b; cc_entrypoint=cli;".to_string(),
            "You are Claude Code, Anthropic's official CLI for Claude.".to_string(),
            format!("You are an interactive CLI tool.\n\n# Tone and style\n{}", prose(1, 16_000)),
        ];
        let tools: Vec<Value> = (0..24)
            .map(|i| {
                json!({
                    "name": format!("Tool{i}"),
                    "description": format!("SCHEMA_ONLY {}", prose(100 + i, 2_600)),
                    "input_schema": {
                        "type": "object",
                        "$schema": "http://json-schema.org/draft-07/schema#",
                        "additionalProperties": false,
                        "required": ["path"],
                        "properties": {
                            "path": {"type": "string", "description": prose(200 + i, 300)},
                            "pattern": {"type": "string", "description": prose(300 + i, 250)},
                            "limit": {"type": "number", "description": "SCHEMA_ONLY how many"},
                            "mode": {"type": "string", "enum": ["content", "files_with_matches", "count"]},
                        },
                    },
                })
            })
            .collect();
        let user = [
            format!("<system-reminder>\nAs you answer the user's questions, you can use this context:\n{}\n</system-reminder>", prose(400, 3_000)),
            "Please fix the failing test in src/parser.rs and explain the cause.".to_string(),
            "Thanks. Now also add a regression test for the empty input case.".to_string(),
            "<system-reminder>The user opened src/parser.rs in the IDE.</system-reminder>".to_string(),
            "Looks good, commit it please.".to_string(),
        ];
        let [u0, u1, u2, u3, u4] = &user;
        let messages = json!([
            {"role": "user", "content": [
                {"type": "text", "text": u0},
                {"type": "text", "text": u1, "cache_control": {"type": "ephemeral"}},
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "ASSISTANT_ONLY let me look", "signature": "sig"},
                {"type": "text", "text": "ASSISTANT_ONLY I'll read the file first."},
                {"type": "tool_use", "id": "toolu_01", "name": "Tool1", "input": {"path": "/repo/src/parser.rs", "pattern": "TOOL_CALL_ONLY"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": format!("TOOL_RESULT_ONLY {}", prose(500, 9_000))},
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "ASSISTANT_ONLY Found it; editing."},
                {"type": "tool_use", "id": "toolu_02", "name": "Tool2", "input": {"path": "/repo/src/parser.rs", "old": "TOOL_CALL_ONLY", "new": "x"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_02", "content": [{"type": "text", "text": format!("TOOL_RESULT_ONLY {}", prose(600, 4_000))}]},
                {"type": "text", "text": u2},
            ]},
            {"role": "assistant", "content": "ASSISTANT_ONLY Added the test."},
            {"role": "user", "content": [
                {"type": "text", "text": u3},
                {"type": "text", "text": u4, "cache_control": {"type": "ephemeral"}},
            ]},
        ]);
        let body = json!({
            "model": "claude-sonnet-4-5-20250929",
            "messages": messages,
            "system": system.iter().map(|t| json!({"type": "text", "text": t, "cache_control": {"type": "ephemeral"}})).collect::<Vec<_>>(),
            "tools": tools,
            "metadata": {"user_id": "METADATA_ONLY user_abc_account__session_123"},
            "max_tokens": 32000,
            "thinking": {"type": "enabled", "budget_tokens": 31999},
            "stream": true,
        });
        let mut expected = user.to_vec();
        expected.extend(system);
        (serde_json::to_vec(&body).unwrap(), expected)
    }

    pub const MARKERS: &[&str] = &["ASSISTANT_ONLY", "SCHEMA_ONLY", "TOOL_CALL_ONLY", "TOOL_RESULT_ONLY", "METADATA_ONLY"];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(endpoint: Endpoint, body: &str) -> Vec<String> {
        user_texts(endpoint, body.as_bytes()).unwrap().into_iter().map(Cow::into_owned).collect()
    }

    #[test]
    fn each_dialect() {
        let gemini = Endpoint::Gemini { stream: false, conversation: true };
        let cases: &[(Endpoint, &str, &[&str])] = &[
            (Endpoint::AnthropicMessages, r#"{"system":"sys","messages":[{"role":"user","content":"hi"}]}"#, &["sys", "hi"]),
            (
                Endpoint::AnthropicMessages,
                r#"{"system":[{"type":"text","text":"s1"},{"type":"text","text":"s2"}],
                   "messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image","source":{}},{"type":"text","text":"b"}]}]}"#,
                &["s1", "s2", "a", "b"],
            ),
            (Endpoint::AnthropicCountTokens, r#"{"messages":[{"role":"user","content":"count me"}]}"#, &["count me"]),
            (
                Endpoint::OpenAiChat,
                r#"{"messages":[{"role":"system","content":"sys"},{"role":"developer","content":[{"type":"text","text":"dev"}]},
                   {"role":"user","content":[{"type":"text","text":"q"},{"type":"image_url","image_url":{"url":"x"}}]},
                   {"role":"assistant","content":"no"},{"role":"tool","content":"no","tool_call_id":"1"}]}"#,
                &["sys", "dev", "q"],
            ),
            (Endpoint::OpenAiChat, r#"{"prompt":"legacy"}"#, &["legacy"]),
            (Endpoint::OpenAiChat, r#"{"prompt":["p1",7,"p2"]}"#, &["p1", "p2"]),
            (Endpoint::OpenAiResponses, r#"{"instructions":"be brief","input":"hello"}"#, &["be brief", "hello"]),
            (
                Endpoint::OpenAiResponses,
                r#"{"input":[{"role":"developer","content":"dev"},
                   {"type":"message","role":"user","content":[{"type":"input_text","text":"q"},{"type":"input_image","image_url":"x"}]},
                   {"type":"message","role":"assistant","content":[{"type":"output_text","text":"no"}]},
                   {"type":"function_call_output","call_id":"c","output":"no"}]}"#,
                &["dev", "q"],
            ),
            (
                gemini,
                r#"{"systemInstruction":{"parts":[{"text":"sys"}]},
                   "contents":[{"role":"user","parts":[{"text":"q1"},{"inlineData":{"data":"AAAA"}}]},{"role":"model","parts":[{"text":"no"}]},{"parts":[{"text":"q2"}]}]}"#,
                &["sys", "q1", "q2"],
            ),
            (gemini, r#"{"system_instruction":{"parts":[{"text":"snake"}]}}"#, &["snake"]),
            (Endpoint::Gemini { stream: false, conversation: false }, r#"{"contents":[{"parts":[{"text":"count"}]}]}"#, &["count"]),
            (Endpoint::Other, r#"{"messages":[{"role":"user","content":"ignored"}]}"#, &[]),
            (Endpoint::Other, "not json", &[]),
        ];
        for (endpoint, body, want) in cases {
            assert_eq!(texts(*endpoint, body), *want, "{body}");
        }
    }

    #[test]
    fn escapes_are_decoded_and_plain_strings_borrowed() {
        let body = br#"{"messages":[{"role":"user","content":"a \u0066orbidden word"},{"role":"user","content":"plain"}]}"#;
        let got = user_texts(Endpoint::AnthropicMessages, body).unwrap();
        assert_eq!(got, ["a forbidden word", "plain"]);
        assert!(matches!(got.first(), Some(Cow::Owned(_))));
        assert!(matches!(got.get(1), Some(Cow::Borrowed(_))));
        // An escaped key or role is the same key or role to the provider.
        let body = r#"{"\u0073ystem":"sys","messages":[{"r\u006fle":"assistant","content":"no"},{"role":"\u0075ser","content":"yes"}]}"#;
        assert_eq!(texts(Endpoint::AnthropicMessages, body), ["sys", "yes"]);
    }

    #[test]
    fn other_parties_and_tools_are_not_read() {
        let body = r#"{
            "tools":[{"name":"t","description":"schema text","input_schema":{"type":"object"}}],
            "metadata":{"user_id":"meta"},
            "messages":[
              {"role":"assistant","content":[{"type":"text","text":"assistant text"}]},
              {"content":[{"type":"text","text":"late role"}],"role":"assistant"},
              {"role":"user","content":[
                {"type":"tool_use","id":"1","name":"t","input":{"text":"tool input"}},
                {"type":"tool_result","tool_use_id":"1","content":[{"type":"text","text":"tool output"}]},
                {"type":"tool_result","tool_use_id":"2","content":"tool output 2"},
                {"type":"thinking","thinking":"thoughts"},
                {"text":"typed late","type":"text"},
                {"text":"not a text block","type":"document"}]}]}"#;
        assert_eq!(texts(Endpoint::AnthropicMessages, body), ["typed late"]);
    }

    #[test]
    fn odd_shapes_are_skipped_not_errors() {
        let cases: &[(&str, &[&str])] = &[
            (r#"{"system":42,"messages":[{"role":"user","content":7},{"role":"user","content":null}]}"#, &[]),
            (r#"{"messages":{"role":"user","content":"one turn"}}"#, &["one turn"]),
            (r#"{"messages":[1,"bare",[["x"]],{"role":5,"content":"numeric role"}]}"#, &["bare", "numeric role"]),
            // An unreadable type is no type: the text is checked.
            (r#"{"system":[{"type":"text","text":3},{"type":["text"],"text":"t"},"s",null]}"#, &["t", "s"]),
            (r#"{"messages":[{"role":"user","content":[{"type":"text","text":""}]}],"prompt":{"a":1}}"#, &[]),
            (r#"[{"role":"user","content":"top-level array"}]"#, &[]),
            (r#""a string""#, &[]),
            ("null", &[]),
        ];
        for (body, want) in cases {
            assert_eq!(texts(Endpoint::AnthropicMessages, body), *want, "{body}");
        }
    }

    #[test]
    fn invalid_json_is_an_error() {
        for body in ["", "{", r#"{"system":"a"} trailing"#, r#"{"system":"\ud800"}"#, r#"{"messages":[{"role":"user","content":"x"]}"#] {
            assert!(user_texts(Endpoint::AnthropicMessages, body.as_bytes()).is_err(), "{body}");
        }
        assert!(user_texts(Endpoint::AnthropicMessages, b"{\"system\":\"\xff\"}").is_err());
    }

    #[test]
    fn claude_code_body_gives_system_and_user_texts_only() {
        let (body, expected) = samples::claude_code_body();
        assert!((100_000..130_000).contains(&body.len()), "{}", body.len());
        let got = user_texts(Endpoint::AnthropicMessages, &body).unwrap();
        assert_eq!(got, expected);
        for marker in samples::MARKERS {
            assert!(got.iter().all(|t| !t.contains(marker)), "{marker}");
        }
    }
}
