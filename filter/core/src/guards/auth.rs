//! Guard 1: authentication (SPEC §2.1). Finds the client's key, and once the
//! key is resolved, checks that key and user may be used now.

use hubgate_wire::ResolvedKey;

use crate::headers::Headers;
use crate::reply::LocalReply;
use crate::time::rfc3339;

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

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (b, hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
        ));
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
        ));
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
