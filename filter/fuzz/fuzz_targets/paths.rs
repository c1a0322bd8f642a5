//! Path and text helpers on client strings: `api::path_without_query`,
//! `Endpoint::from_path`, `Dialect::from_path`, `gemini_model_and_method`,
//! `path::check` (dot segments / escaped separators), and `clip::clip` (which bounds the User-Agent, path, model, request id and
//! error text copied into audit events; core parses no User-Agent itself).
//!
//! Input: one byte for clip's `max`, then the string (invalid UTF-8 is
//! replaced, as the host's header conversion would).
#![no_main]

use hubgate_core::api::{gemini_model_and_method, path_without_query, Dialect, Endpoint};
use hubgate_core::clip::{clip, MAX_ERROR, MAX_MODEL, MAX_PATH, MAX_REQUEST_ID, MAX_USER_AGENT};
use hubgate_fuzz::{check, lossy, Input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let max = usize::from(input.byte());
    let s = lossy(input.rest());

    let base = path_without_query(&s);
    check(!base.contains('?') && s.starts_with(base), "path_without_query", &(&s, base));

    let endpoint = Endpoint::from_path(&s);
    check(endpoint == Endpoint::from_path(base), "the query changed the endpoint", &(&s, endpoint));
    let dialect = Dialect::from_path(&s);
    check(dialect == Dialect::from_path(base), "the query changed the dialect", &(&s, dialect));
    let expected = match endpoint {
        Endpoint::AnthropicMessages | Endpoint::AnthropicCountTokens => Some(Dialect::Anthropic),
        Endpoint::OpenAiChat | Endpoint::OpenAiResponses => Some(Dialect::OpenAi),
        Endpoint::Gemini { .. } => Some(Dialect::Gemini),
        Endpoint::Other => None,
    };
    check(expected.is_none_or(|d| d == dialect), "dialect disagrees with the endpoint", &(&s, endpoint, dialect));
    if let Endpoint::Gemini { stream, conversation } = endpoint {
        check(!stream || conversation, "a stream that is no conversation", &(&s, endpoint));
    }

    match gemini_model_and_method(&s) {
        Some((model, method)) => {
            check(!model.is_empty() && !model.contains('/') && !model.contains('?'), "gemini model", &(&s, model));
            check(!method.contains('?'), "gemini method carries the query", &(&s, method));
        }
        None => check(!matches!(endpoint, Endpoint::Gemini { .. }), "gemini endpoint without a model", &(&s, endpoint)),
    }

    match hubgate_core::path::check(&s) {
        Ok(()) => {
            // Decoded once, as a provider would, no segment may be `.` or
            // `..` and no separator may appear that was not there.
            let decoded = percent_decode(base);
            let dots = decoded.split(|&b| b == b'/').any(|seg| seg == b"." || seg == b"..");
            check(!dots && !decoded.contains(&b'\\'), "path::check let a dot segment through", &(&s, lossy(&decoded)));
            check(decoded.iter().filter(|&&b| b == b'/').count() == base.matches('/').count(), "path::check let an escaped slash through", &s);
        }
        Err(reply) => {
            check((reply.status, reply.code) == (400, "invalid_path"), "path::check refusal", &reply);
            hubgate_fuzz::check_reply(&reply, "r");
        }
    }

    for limit in [max, MAX_USER_AGENT, MAX_PATH, MAX_MODEL, MAX_ERROR, MAX_REQUEST_ID, 0, 1] {
        let clipped = clip(&s, limit);
        let n = s.chars().count();
        check(s.starts_with(clipped.as_str()), "clip is not a prefix", &(&s, &clipped));
        check(clipped.chars().count() == n.min(limit), "clip length", &(&s, &clipped, limit));
    }
});

fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |at: usize| bytes.get(at).and_then(|&h| char::from(h).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}
