//! Client key extraction: `hubgate_core::guards::auth::extract_key` on
//! headers and a path from the input, plus the query helpers used to strip
//! `?key=` before the request goes upstream, and the key hash and mask.
//!
//! Input: the first line is the `:path` (any bytes; `?key=` and %-escapes
//! welcome), every further line one header (see `hubgate_fuzz::headers_from`:
//! a control byte picks a well-known name; repeats are kept).
#![no_main]

use hubgate_core::api::path_without_query;
use hubgate_core::guards::auth::{extract_key, query_param, without_query_param};
use hubgate_fuzz::{check, check_reply, headers_from, lossy, Input};
use hubgate_wire::{hash_key, mask_key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let path = lossy(input.line());
    let mut lines = Vec::new();
    while !input.rest().is_empty() {
        lines.push(input.line());
    }
    let headers = headers_from(&lines);

    // What the headers offer, read independently of the code under test.
    let trimmed = |name: &str| -> Vec<String> {
        headers.all(name).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string).collect()
    };
    let mut offered = trimmed("x-api-key");
    for v in trimmed("authorization") {
        if let Some((scheme, token)) = v.split_once(' ') {
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() {
                offered.push(token.trim().to_string());
            }
        }
    }
    offered.extend(trimmed("x-goog-api-key"));

    match extract_key(&headers, &path) {
        Ok(key) => {
            check(!key.is_empty(), "empty key accepted", &(&path, &headers));
            match offered.first() {
                Some(first) => {
                    check(offered.iter().all(|k| k == first), "conflicting keys accepted", &(&offered, &key));
                    check(&key == first, "key is not the header's", &(&offered, &key));
                }
                None => check(query_param(&path, "key").as_deref() == Some(key.as_str()), "key is not the query's", &(&path, &key)),
            }
            let hash = hash_key(&key);
            check(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()), "hash is not hex sha-256", &hash);
            let masked = mask_key(&key);
            let count = key.chars().count();
            // The prefix (up to 7 bytes), `…`, the last four characters.
            check(masked.chars().count() <= 12, "mask shows too much", &(&key, &masked));
            if count >= 12 {
                let tail: String = key.chars().skip(count - 4).collect();
                check(masked.ends_with(&tail), "mask lost the tail", &(&key, &masked));
            } else {
                check(masked == "…", "short key not fully masked", &(&key, &masked));
            }
        }
        Err(reply) => {
            let conflict = offered.iter().any(|k| Some(k) != offered.first());
            let code = if conflict { "conflicting_credentials" } else { "missing_api_key" };
            check((reply.status, reply.code) == (401, code), "unexpected refusal", &(&offered, &path, &reply));
            check(offered.is_empty() || conflict, "a header key was refused", &(&offered, &reply));
            check_reply(&reply, "req-1");
        }
    }

    // The path sent upstream never carries `key=`, and keeps the rest.
    for name in ["key", "alt"] {
        let stripped = without_query_param(&path, name);
        check(query_param(&stripped, name).is_none(), "query parameter survived stripping", &(&path, &stripped, name));
        check(path_without_query(&stripped) == path_without_query(&path), "stripping changed the path", &(&path, &stripped));
        check(stripped.len() <= path.len(), "stripping grew the path", &(&path, &stripped));
    }
});
