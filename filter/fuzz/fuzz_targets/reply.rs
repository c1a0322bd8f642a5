//! Local error replies with arbitrary text: `LocalReply::body` in every
//! dialect must be JSON carrying the message and request id, and the
//! response headers must carry the error code.
//!
//! Input: status (u16 LE), a byte picking the code, a message line, a
//! request id line, then details: a JSON object (its members become
//! details), else the rest as one string detail; a header value line from
//! the message when the code byte's top bit is set.
#![no_main]

use hubgate_core::reply::LocalReply;
use hubgate_fuzz::{check_reply, lossy, Input};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const CODES: [&str; 8] = [
    "invalid_json",
    "invalid_api_key",
    "rate_limited",
    "not_found",
    "upstream_timeout",
    "no_provider_available",
    "request_too_large",
    "",
];

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let status = input.u16();
    let selector = input.byte();
    let code = CODES.get(usize::from(selector & 7)).copied().unwrap_or_default();
    let message = lossy(input.line());
    let request_id = lossy(input.line());
    let rest = input.rest();
    let mut reply = LocalReply::new(status, code, message.clone());
    match serde_json::from_slice::<Value>(rest) {
        Ok(Value::Object(map)) => {
            for (k, v) in map {
                reply = reply.with_detail(&k, v);
            }
        }
        Ok(other) => reply = reply.with_detail("detail", other),
        Err(_) if !rest.is_empty() => reply = reply.with_detail("detail", Value::String(lossy(rest))),
        Err(_) => {}
    }
    if selector & 0x80 != 0 {
        reply = reply.with_header("retry-after", message);
    }
    check_reply(&reply, &request_id);
});
