//! Request body inspection: `hubgate_core::request::inspect` for every
//! endpoint, then session id discovery with no headers, and the 400 reply
//! rendered in every dialect.
//!
//! Input: one selector byte, then (if selector bit 3) a path line, then the
//! body. Selector bits 0-2 pick the endpoint and its usual path; bit 4 takes
//! the endpoint from the (custom) path with `Endpoint::from_path` instead.
#![no_main]

use hubgate_core::api::Endpoint;
use hubgate_core::headers::Headers;
use hubgate_core::request::{inspect, RequestInfo};
use hubgate_fuzz::{at, check, check_reply, endpoint, is_clean_id, lossy, Input};
use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let selector = input.byte();
    let (mut ep, usual_path) = endpoint(selector);
    let path = if selector & 0x08 != 0 { lossy(input.line()) } else { usual_path.to_string() };
    if selector & 0x10 != 0 {
        ep = Endpoint::from_path(&path);
    }
    let body = input.rest();
    match inspect(ep, &path, body) {
        Ok(info) => check_info(ep, &path, body, &info),
        Err(reply) => {
            check(!json_blank(body), "blank body refused", &reply);
            check((reply.status, reply.code) == (400, "invalid_json"), "unexpected refusal", &reply);
            check_reply(&reply, "req-1");
        }
    }
});

fn check_info(ep: Endpoint, path: &str, body: &[u8], info: &RequestInfo) {
    check(info.model.as_deref() != Some(""), "empty model", info);
    if let Some(id) = hubgate_core::guards::session::session_id(&Headers::default(), info) {
        check(is_clean_id(&id), "session id outside [A-Za-z0-9_.:-]{1,256}", &(id, info));
    }
    if let Endpoint::Gemini { stream, .. } = ep {
        check(!stream || info.stream, "gemini stream flag lost", info);
        let from_path = hubgate_core::api::gemini_model_and_method(path).map(|(m, _)| m.to_string());
        if from_path.is_some() {
            check(info.model == from_path, "gemini model is not the path's", &(path, info));
        }
    }
    // JSON's own whitespace (no form feed): a blank body has no fields.
    if json_blank(body) {
        check(*info == blank(ep, path), "a blank body produced fields", &(lossy(body), info));
        return;
    }
    // Anything else that was accepted must be JSON (checked without a depth
    // limit, as `inspect` skips unused fields without one) …
    check(serde_json::from_slice::<IgnoredAny>(body).is_ok(), "a body that is not JSON was accepted", &(lossy(body), info));
    // … and, read as a generic JSON value (when that parses: it has a depth
    // limit), an object that agrees on every field.
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else { return };
    check(v.is_object(), "a body that is not a JSON object was accepted", &(lossy(body), info));
    let s = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let from_path = match ep {
        Endpoint::Gemini { .. } => hubgate_core::api::gemini_model_and_method(path).map(|(m, _)| m.to_string()),
        _ => None,
    };
    let model = from_path.or(s(at(&v, "/model")).filter(|m| !m.is_empty()));
    check(info.model == model, "model differs from the path's or body's", &(path, lossy(body), info));
    let stream = at(&v, "/stream").as_bool().unwrap_or(false) || matches!(ep, Endpoint::Gemini { stream: true, .. });
    check(info.stream == stream, "stream differs from the body's", &(lossy(body), info));
    let max_tokens = at(&v, "/max_tokens").as_u64().or(at(&v, "/max_output_tokens").as_u64());
    check(info.max_tokens == max_tokens, "max_tokens differs from the body's", &(lossy(body), info));
    check(info.metadata_user_id == s(at(&v, "/metadata/user_id")), "metadata.user_id differs", &(lossy(body), info));
    check(info.metadata_session_id == s(at(&v, "/metadata/session_id")), "metadata.session_id differs", &(lossy(body), info));
    check(info.prompt_cache_key == s(at(&v, "/prompt_cache_key")), "prompt_cache_key differs", &(lossy(body), info));
    check(info.previous_response_id == s(at(&v, "/previous_response_id")), "previous_response_id differs", &(lossy(body), info));
    // The turns: `messages`, else Responses `input` (a string is one),
    // else Gemini `contents`.
    let turns = |value: &Value| match value {
        Value::Null => None,
        Value::Array(items) => Some(items.len()),
        _ => Some(1),
    };
    let count = at(&v, "/messages")
        .as_array()
        .map(Vec::len)
        .or_else(|| turns(at(&v, "/input")))
        .or_else(|| turns(at(&v, "/contents")))
        .unwrap_or(0);
    let include_usage =
        v.get("stream_options").filter(|o| !o.is_null()).map(|o| o.get("include_usage").and_then(Value::as_bool).unwrap_or(false));
    check(info.include_usage == include_usage, "stream_options.include_usage differs", &(lossy(body), info.clone()));
    check(info.message_count == count, "message count differs", &(lossy(body), info));
}

/// What `inspect` gives for an empty body.
fn blank(ep: Endpoint, path: &str) -> RequestInfo {
    match ep {
        Endpoint::Gemini { stream, .. } => RequestInfo {
            model: hubgate_core::api::gemini_model_and_method(path).map(|(m, _)| m.to_string()),
            stream,
            ..RequestInfo::default()
        },
        _ => RequestInfo::default(),
    }
}

fn json_blank(body: &[u8]) -> bool {
    body.iter().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}
