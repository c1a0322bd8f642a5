//! Session id discovery: `hubgate_core::guards::session::session_id` with
//! headers and a body from the input. The `RequestInfo` comes from
//! `request::inspect` when the body is valid; otherwise the body's lines are
//! used as the raw `metadata.user_id`, `prompt_cache_key`,
//! `metadata.session_id` and `previous_response_id` (so odd strings reach
//! the Claude `user_id` parser even when they are not inside valid JSON).
//!
//! Input: selector byte (endpoint, see `hubgate_fuzz::ENDPOINTS`), header
//! lines up to an empty line (see `hubgate_fuzz::headers_from`), the body.
#![no_main]

use hubgate_core::guards::session::session_id;
use hubgate_core::request::{inspect, RequestInfo};
use hubgate_fuzz::{check, endpoint, headers_from, is_clean_id, lossy, Input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let (ep, path) = endpoint(input.byte());
    let headers = headers_from(&input.block());
    let body = input.rest();
    let info = inspect(ep, path, body).unwrap_or_else(|_| {
        let mut fields = Input::new(body);
        let mut next = || Some(lossy(fields.line()));
        RequestInfo {
            metadata_user_id: next(),
            prompt_cache_key: next(),
            metadata_session_id: next(),
            previous_response_id: next(),
            ..RequestInfo::default()
        }
    });
    let id = session_id(&headers, &info);
    if let Some(id) = &id {
        check(is_clean_id(id), "session id outside [A-Za-z0-9_.:-]{1,256}", &(id, &headers, &info));
    }
    // A valid Claude Code header is always found when the body has no
    // usable metadata.user_id.
    if info.metadata_user_id.is_none() {
        if let Some(h) = headers.non_empty("x-claude-code-session-id").filter(|h| is_clean_id(h)) {
            check(id.as_deref() == Some(h), "x-claude-code-session-id ignored", &(&headers, &info, &id));
        }
    }
});
