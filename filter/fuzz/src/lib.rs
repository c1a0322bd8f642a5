//! Helpers shared by the fuzz targets in `fuzz_targets/`: a byte cursor that
//! turns the fuzzer's input into structured arguments, header building, and
//! checks that abort (so libFuzzer records the input) instead of panicking.
//!
//! Every target documents its input layout at the top; the seed files under
//! `corpus/<target>/` follow it.

use std::fmt::Debug;

use hubgate_core::api::{Dialect, Endpoint};
use hubgate_core::headers::Headers;
use hubgate_core::reply::LocalReply;

/// Reads structured values off the front of the input. Reading past the end
/// yields zeros / empty slices, so every input is usable.
pub struct Input<'a> {
    rest: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { rest: data }
    }

    pub fn byte(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((b, rest)) => {
                self.rest = rest;
                *b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    pub fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.byte();
        }
        u64::from_le_bytes(b)
    }

    /// Bytes up to the next `\n` (which is consumed, not returned).
    pub fn line(&mut self) -> &'a [u8] {
        match self.rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let (line, rest) = self.rest.split_at(i);
                self.rest = rest.get(1..).unwrap_or_default();
                line
            }
            None => std::mem::take(&mut self.rest),
        }
    }

    /// Lines up to the first empty line (consumed) or the end.
    pub fn block(&mut self) -> Vec<&'a [u8]> {
        let mut lines = Vec::new();
        while !self.rest.is_empty() {
            let line = self.line();
            if line.is_empty() {
                break;
            }
            lines.push(line);
        }
        lines
    }

    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }
}

/// Invalid UTF-8 becomes U+FFFD, as odd header bytes would.
pub fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A broken invariant: says what, then aborts so libFuzzer saves the input.
pub fn fail(what: &str, detail: &dyn Debug) -> ! {
    eprintln!("\n==== fuzz invariant broken: {what}\n{detail:#?}\n");
    std::process::abort()
}

pub fn check(ok: bool, what: &str, detail: &dyn Debug) {
    if !ok {
        fail(what, detail);
    }
}

/// Parses `bytes` as JSON or aborts.
pub fn check_json(bytes: &[u8], what: &str) -> serde_json::Value {
    match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => fail(what, &(e.to_string(), String::from_utf8_lossy(bytes))),
    }
}

/// The value at a JSON pointer, `null` when absent.
pub fn at<'v>(v: &'v serde_json::Value, pointer: &str) -> &'v serde_json::Value {
    v.pointer(pointer).unwrap_or(&serde_json::Value::Null)
}

pub const DIALECTS: [Dialect; 3] = [Dialect::Anthropic, Dialect::OpenAi, Dialect::Gemini];

/// Renders a local reply in every dialect and checks the body is JSON that
/// carries the message and status/code, and the headers carry the code.
pub fn check_reply(reply: &LocalReply, request_id: &str) {
    let overridden = |k: &str| reply.details.contains_key(k);
    for dialect in DIALECTS {
        let body = reply.body(dialect, request_id);
        let v = check_json(&body, "local reply body is not JSON");
        let (message, rid) = match dialect {
            Dialect::Anthropic | Dialect::OpenAi => (at(&v, "/error/message"), at(&v, "/request_id")),
            Dialect::Gemini => (at(&v, "/error/message"), at(&v, "/error/details/0/metadata/request_id")),
        };
        let message_kept = overridden("message") && dialect != Dialect::Gemini;
        check(
            message_kept || message.as_str() == Some(reply.message.as_str()),
            "reply body lost the message",
            &(dialect, &reply.message, String::from_utf8_lossy(&body)),
        );
        let rid_kept = overridden("request_id") && dialect == Dialect::Gemini;
        check(
            rid_kept || rid.as_str() == Some(request_id),
            "reply body lost the request id",
            &(dialect, request_id, String::from_utf8_lossy(&body)),
        );
        if dialect == Dialect::Gemini {
            check(at(&v, "/error/code").as_u64() == Some(u64::from(reply.status)), "gemini code", &v);
        }
    }
    let headers = reply.response_headers(request_id);
    check(
        headers.iter().any(|(k, v)| k == "x-hubgate-error-code" && v == reply.code),
        "reply headers lack the error code",
        &headers,
    );
}

/// Header names the filter looks at, reachable with one control byte.
pub const HEADER_NAMES: [&str; 16] = [
    "x-api-key",
    "authorization",
    "x-goog-api-key",
    "X-Api-Key",
    "AUTHORIZATION",
    "X-Goog-Api-Key",
    "x-claude-code-session-id",
    "session_id",
    "session-id",
    "x-session-id",
    "X-Claude-Code-Session-Id",
    "user-agent",
    "content-type",
    ":path",
    "x-request-id",
    "Session_ID",
];

/// Headers from lines. A line starting with a control byte (below 0x20, not
/// TAB) is `HEADER_NAMES[byte % 16]` with the rest as value; any other line
/// is `name:value` split at the first `:` after the first byte (so `:path`
/// style names work), or a name with an empty value. Values are not trimmed.
pub fn headers_from(lines: &[&[u8]]) -> Headers {
    let mut pairs = Vec::with_capacity(lines.len());
    for line in lines {
        let Some((&first, rest)) = line.split_first() else { continue };
        if first < 0x20 && first != b'\t' {
            let name = HEADER_NAMES.get(usize::from(first) % HEADER_NAMES.len()).copied().unwrap_or("x-api-key");
            pairs.push((name.to_string(), lossy(rest)));
            continue;
        }
        match rest.iter().position(|&b| b == b':') {
            Some(i) => {
                let split = i + 1;
                let name = line.get(..split).unwrap_or_default();
                let value = line.get(split + 1..).unwrap_or_default();
                pairs.push((lossy(name), lossy(value)));
            }
            None => pairs.push((lossy(line), String::new())),
        }
    }
    Headers::new(pairs)
}

/// The endpoints, with a realistic path for each.
pub const ENDPOINTS: [(Endpoint, &str); 8] = [
    (Endpoint::AnthropicMessages, "/v1/messages"),
    (Endpoint::AnthropicCountTokens, "/v1/messages/count_tokens"),
    (Endpoint::OpenAiChat, "/v1/chat/completions"),
    (Endpoint::OpenAiResponses, "/v1/responses"),
    (Endpoint::Gemini { stream: false, conversation: true }, "/v1beta/models/gemini-2.5-pro:generateContent"),
    (
        Endpoint::Gemini { stream: true, conversation: true },
        "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
    ),
    (Endpoint::Gemini { stream: false, conversation: false }, "/v1beta/models/gemini-2.5-pro:countTokens"),
    (Endpoint::Other, "/v1/models"),
];

pub fn endpoint(selector: u8) -> (Endpoint, &'static str) {
    ENDPOINTS.get(usize::from(selector) % ENDPOINTS.len()).copied().unwrap_or((Endpoint::Other, "/"))
}

/// `[A-Za-z0-9_.:-]{1,256}`: what a session id may be.
pub fn is_clean_id(id: &str) -> bool {
    (1..=256).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// Chunk boundaries: up to 15 cut points (u16 each, modulo len + 1) read from
/// the input, sorted; duplicates give empty chunks.
pub fn read_cuts(input: &mut Input<'_>) -> Vec<u16> {
    let n = input.byte() & 15;
    (0..n).map(|_| input.u16()).collect()
}

pub fn chunks<'b>(body: &'b [u8], cuts: &[u16]) -> Vec<&'b [u8]> {
    let len = body.len();
    let mut at: Vec<usize> = cuts.iter().map(|&c| usize::from(c) % (len + 1)).collect();
    at.sort_unstable();
    let mut out = Vec::with_capacity(at.len() + 1);
    let mut start = 0;
    for end in at {
        out.push(body.get(start..end).unwrap_or_default());
        start = end;
    }
    out.push(body.get(start..).unwrap_or_default());
    out
}
