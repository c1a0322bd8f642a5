//! Guard 1: authentication (SPEC §2.1). Finds the client's key, refuses
//! locked-out clients and keys, resolves the key (cache, else the control
//! plane while the request waits), and checks that key and user may be used
//! now. Needs no body: a bad key is answered before the body is read.

use std::rc::Rc;

use hubgate_wire::{hash_key, mask_key, KeyResolveResponse, ResolvedKey};

use crate::chain::{Callout, Cx, Guard, Step};
use crate::guards::lockout::Subject;
use crate::headers::Headers;
use crate::keys::{CachedKey, Lookup};
use crate::reply::LocalReply;
use crate::time::rfc3339;

pub struct Auth;

impl Guard for Auth {
    fn name(&self) -> &'static str {
        "auth"
    }

    fn check(&self, cx: &mut Cx<'_>) -> Result<Step, String> {
        if cx.ex.key_hash.is_none() {
            if let Some(step) = find_key(cx) {
                return Ok(step);
            }
        }
        Ok(authenticate(cx))
    }
}

/// Extracts and looks up the key. `Some` when the request is answered or
/// must wait for the control plane.
fn find_key(cx: &mut Cx<'_>) -> Option<Step> {
    let (vm, host) = (cx.vm, cx.host);
    let c = &vm.config;
    let now = host.now_ms();
    let raw = match extract_key(&cx.ex.headers, &cx.ex.path) {
        Ok(raw) => raw,
        Err(reply) => return Some(Step::Answer(reply)),
    };
    let hash = hash_key(&raw);
    cx.ex.key_masked = Some(mask_key(&raw));
    cx.ex.key_hash = Some(hash.clone());
    if let Some(ip) = cx.ex.client_ip.as_deref() {
        if let Some(reply) = locked_out(cx, Subject::Client(ip), now) {
            return Some(Step::Answer(reply));
        }
    }
    let epoch = cx.ex.snapshot.as_ref().map(|s| s.key_epoch);
    let lookup = vm.keys.lookup(host.shared(), &hash, now, epoch, c.key_cache_ttl_ms, c.negative_key_cache_ttl_ms);
    // Only keys that failed have failure counts: a valid cached key skips
    // the lookup.
    let known_valid = matches!(&lookup, Lookup::Fresh(e) | Lookup::Expired(e) if e.key.is_some());
    if !known_valid {
        if let Some(reply) = locked_out(cx, Subject::Key(&hash), now) {
            return Some(Step::Answer(reply));
        }
    }
    match lookup {
        Lookup::Fresh(entry) => cx.ex.key_entry = Some(entry),
        Lookup::Expired(entry) => {
            // One refresh per key and VM at a time: the next requests use
            // the entry as fresh for a few seconds.
            vm.keys.hold(&hash, &entry, now, epoch, c.key_cache_ttl_ms, c.negative_key_cache_ttl_ms);
            cx.ex.key_entry = Some(entry);
            cx.background.push(Callout::RefreshKey { hash });
        }
        Lookup::Outdated(entry) => {
            cx.ex.key_entry = Some(entry);
            return Some(wait_for_key(cx, hash));
        }
        Lookup::Missing => return Some(wait_for_key(cx, hash)),
    }
    None
}

/// Resolves the key while the request waits, within the client address's
/// allowance of such requests (their bodies are buffered meanwhile).
fn wait_for_key(cx: &mut Cx<'_>, hash: String) -> Step {
    if let Some(ip) = &cx.ex.client_ip {
        let max_keys = cx.vm.config.max_pending_auth_per_client;
        if let Err(reply) = cx.vm.pending_auth.borrow_mut().acquire(ip, &hash, max_keys) {
            return Step::Answer(reply);
        }
        cx.ex.pending_auth = true;
    }
    cx.ex.key_pending = true;
    Step::Wait(Callout::ResolveKey { hash })
}

fn locked_out(cx: &Cx<'_>, subject: Subject<'_>, now: i64) -> Option<LocalReply> {
    let secs = cx.vm.clients.locked_for_secs(cx.host.shared(), subject, now)?;
    Some(
        LocalReply::new(
            429,
            "auth_locked_out",
            format!("Too many failed authentication attempts. Try again in {secs} seconds."),
        )
        .with_header("retry-after", secs.to_string()),
    )
}

/// The resolved key (or its absence) decides; a wrong key counts as a
/// failed credential for the client address and the key.
fn authenticate(cx: &mut Cx<'_>) -> Step {
    let now = cx.host.now_ms();
    let Some(entry) = cx.ex.key_entry.clone() else {
        return Step::Answer(control_plane_unavailable());
    };
    let Some(key) = entry.key.as_ref() else {
        let policy = cx.vm.config.lockout_policy();
        let ex = &cx.ex;
        let subjects = ex.client_ip.as_deref().map(Subject::Client).into_iter().chain(ex.key_hash.as_deref().map(Subject::Key));
        for subject in subjects {
            if !cx.vm.clients.record_failure(cx.host.shared(), subject, now, &policy) {
                log::warn!("could not record a failed credential (shared data contended)");
            }
        }
        return Step::Answer(invalid_key());
    };
    match check_key(key, now) {
        Ok(()) => {
            cx.ex.authenticated = true;
            Step::Next
        }
        Err(reply) => Step::Answer(reply),
    }
}

/// Stores the control plane's answer about this request's key (`Err`: it
/// could not answer). `waiting`: the request waits for it (else it was a
/// background refresh).
pub fn on_key_resolved(cx: &mut Cx<'_>, answer: Result<KeyResolveResponse, String>, waiting: bool) {
    let (vm, host) = (cx.vm, cx.host);
    if waiting {
        cx.ex.key_pending = false;
        release_pending_auth(cx);
    }
    let Some(hash) = cx.ex.key_hash.clone() else { return };
    let now = host.now_ms();
    match answer {
        Ok(resp) => {
            let entry = Rc::new(CachedKey::new(now, resp.key_epoch, resp.key));
            if let Err(e) = vm.keys.store(host.shared(), &hash, entry.clone()) {
                log::warn!("{e}");
            }
            if !cx.ex.authenticated {
                cx.ex.key_entry = Some(entry);
            }
        }
        Err(e) => {
            host.count("hubgate_callout_failures_total");
            match &cx.ex.key_entry {
                Some(entry) => {
                    host.count("hubgate_fail_static_total");
                    log::warn!("key resolve failed ({e}); serving the cached entry");
                    // Don't ask again on every request while it is down.
                    let c = &vm.config;
                    let epoch = cx.ex.snapshot.as_ref().map(|s| s.key_epoch);
                    vm.keys.hold(&hash, entry, now, epoch, c.key_cache_ttl_ms, c.negative_key_cache_ttl_ms);
                }
                None => log::warn!("key resolve failed: {e}"),
            }
        }
    }
}

/// Gives back this request's place among the client's pending key checks.
pub fn release_pending_auth(cx: &mut Cx<'_>) {
    if std::mem::take(&mut cx.ex.pending_auth) {
        if let (Some(ip), Some(hash)) = (&cx.ex.client_ip, &cx.ex.key_hash) {
            cx.vm.pending_auth.borrow_mut().release(ip, hash);
        }
    }
}

/// Request headers that carry client credentials; all are removed before the
/// request goes upstream.
pub const CREDENTIAL_HEADERS: [&str; 3] = ["x-api-key", "authorization", "x-goog-api-key"];

/// Finds the client's key. Headers win over the `?key=` query parameter;
/// headers carrying different keys are refused.
pub fn extract_key(headers: &Headers, path: &str) -> Result<String, LocalReply> {
    let values = |name: &'static str| headers.all(name).map(str::trim).filter(|v| !v.is_empty());
    let from_headers = values("x-api-key")
        .chain(values("authorization").filter_map(bearer_token))
        .chain(values("x-goog-api-key"));
    let mut found: Option<&str> = None;
    for key in from_headers {
        match found {
            Some(existing) if existing != key => return Err(conflicting()),
            _ => found = Some(key),
        }
    }
    if let Some(key) = found {
        return Ok(key.to_string());
    }
    match query_param(path, "key") {
        Some(key) if !key.is_empty() => Ok(key),
        _ => Err(LocalReply::new(
            401,
            "missing_api_key",
            "No API key provided. Send it in the x-api-key header or as Authorization: Bearer <key>.",
        )),
    }
}

fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(token.trim()).filter(|t| !t.is_empty())
}

fn conflicting() -> LocalReply {
    LocalReply::new(
        401,
        "conflicting_credentials",
        "Conflicting credentials: the request carries different API keys in different headers.",
    )
}

/// Percent-decoded value of a query parameter.
pub fn query_param(path: &str, name: &str) -> Option<String> {
    let (_, query) = path.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

/// The path with one query parameter removed (used to strip `?key=`).
pub fn without_query_param(path: &str, name: &str) -> String {
    let Some((base, query)) = path.split_once('?') else {
        return path.to_string();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty() && pair.split_once('=').map_or(*pair, |(k, _)| k) != name)
        .collect();
    if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

/// `application/x-www-form-urlencoded` value: `+` is a space; a `%` not
/// followed by two hex digits stays as it is.
fn percent_decode(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

pub fn invalid_key() -> LocalReply {
    LocalReply::new(401, "invalid_api_key", "Invalid API key.")
}

pub fn control_plane_unavailable() -> LocalReply {
    LocalReply::new(
        503,
        "auth_unavailable",
        "Unable to verify the API key right now. Please retry shortly.",
    )
    .with_header("retry-after", "5")
}

/// Whether a resolved key and its user may be used at `now_ms`. Expiry is
/// checked before the enabled flag: the control plane disables expired
/// accounts lazily, and the expiry is the more useful answer.
pub fn check_key(key: &ResolvedKey, now_ms: i64) -> Result<(), LocalReply> {
    let user = &key.user;
    if let Some(at) = user.expires_at_ms.filter(|at| *at <= now_ms) {
        return Err(LocalReply::new(
            401,
            "user_expired",
            format!("User account expired on {}. Please renew the subscription.", rfc3339(at)),
        )
        .with_detail("expired_at", rfc3339(at).into()));
    }
    if !user.enabled {
        return Err(LocalReply::new(
            401,
            "user_disabled",
            "User account has been disabled. Please contact the administrator.",
        ));
    }
    if let Some(at) = key.expires_at_ms.filter(|at| *at <= now_ms) {
        return Err(LocalReply::new(
            401,
            "key_expired",
            format!("API key expired on {}. Please create a new key.", rfc3339(at)),
        )
        .with_detail("expired_at", rfc3339(at).into()));
    }
    if !key.enabled {
        return Err(LocalReply::new(401, "key_disabled", "API key has been disabled."));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hubgate_wire::{DailyResetMode, Limits, ResolvedUser, Role};

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        Headers::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn every_key_source() {
        assert_eq!(extract_key(&headers(&[("x-api-key", "k1")]), "/v1/messages").unwrap(), "k1");
        assert_eq!(extract_key(&headers(&[("authorization", "Bearer k2")]), "/").unwrap(), "k2");
        assert_eq!(extract_key(&headers(&[("authorization", "bEaReR  k2 ")]), "/").unwrap(), "k2");
        assert_eq!(extract_key(&headers(&[("x-goog-api-key", "k3")]), "/").unwrap(), "k3");
        assert_eq!(extract_key(&headers(&[]), "/v1beta/models/m:generateContent?key=k%2B4&alt=sse").unwrap(), "k+4");
    }

    #[test]
    fn headers_win_over_query() {
        let h = headers(&[("x-api-key", "k1")]);
        assert_eq!(extract_key(&h, "/x?key=other").unwrap(), "k1");
    }

    #[test]
    fn same_key_twice_is_fine_different_keys_conflict() {
        let same = headers(&[("x-api-key", "k1"), ("authorization", "Bearer k1")]);
        assert_eq!(extract_key(&same, "/").unwrap(), "k1");
        let diff = headers(&[("x-api-key", "k1"), ("x-goog-api-key", "k2")]);
        assert_eq!(extract_key(&diff, "/").unwrap_err().code, "conflicting_credentials");
    }

    #[test]
    fn a_repeated_header_with_another_key_conflicts() {
        let h = headers(&[("x-api-key", "k1"), ("x-api-key", "k2")]);
        assert_eq!(extract_key(&h, "/").unwrap_err().code, "conflicting_credentials");
    }

    #[test]
    fn a_percent_sign_needs_two_hex_digits() {
        assert_eq!(query_param("/x?key=%+1", "key").as_deref(), Some("% 1"));
        assert_eq!(query_param("/x?key=a%2Bb", "key").as_deref(), Some("a+b"));
    }

    #[test]
    fn missing_key() {
        let r = extract_key(&headers(&[("authorization", "Basic abc"), ("x-api-key", " ")]), "/x?key=").unwrap_err();
        assert_eq!((r.status, r.code), (401, "missing_api_key"));
    }

    #[test]
    fn strips_key_query_param() {
        assert_eq!(without_query_param("/a?key=1&alt=sse", "key"), "/a?alt=sse");
        assert_eq!(without_query_param("/a?key=1", "key"), "/a");
        assert_eq!(without_query_param("/a?alt=sse&key=1&x", "key"), "/a?alt=sse&x");
        assert_eq!(without_query_param("/a", "key"), "/a");
    }

    fn key() -> ResolvedKey {
        ResolvedKey {
            id: 1,
            name: "k".into(),
            masked: "sk-…abcd".into(),
            enabled: true,
            expires_at_ms: None,
            can_login_web_ui: false,
            limits: Limits::default(),
            provider_group: None,
            user: ResolvedUser {
                id: 2,
                name: "u".into(),
                enabled: true,
                expires_at_ms: None,
                role: Role::User,
                allowed_clients: vec![],
                blocked_clients: vec![],
                allowed_models: vec![],
                rpm: None,
                limits: Limits::default(),
                daily_reset_mode: DailyResetMode::Fixed,
                daily_reset_time: "00:00".into(),
                provider_group: None,
            },
        }
    }

    #[test]
    fn account_states() {
        let now = 1_705_276_800_000;
        assert!(check_key(&key(), now).is_ok());

        let mut k = key();
        k.user.enabled = false;
        let r = check_key(&k, now).unwrap_err();
        assert_eq!(r.message, "User account has been disabled. Please contact the administrator.");

        let mut k = key();
        k.user.expires_at_ms = Some(now - 1000);
        k.user.enabled = false;
        let r = check_key(&k, now).unwrap_err();
        assert_eq!(r.code, "user_expired");
        assert_eq!(r.message, "User account expired on 2024-01-14T23:59:59Z. Please renew the subscription.");

        let mut k = key();
        k.enabled = false;
        assert_eq!(check_key(&k, now).unwrap_err().code, "key_disabled");

        let mut k = key();
        k.expires_at_ms = Some(now);
        assert_eq!(check_key(&k, now).unwrap_err().code, "key_expired");

        let mut k = key();
        k.expires_at_ms = Some(now + 1);
        assert!(check_key(&k, now).is_ok());
    }
}
