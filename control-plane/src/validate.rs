//! Validation rules shared by the admin resources (SPEC §2 and §7). Each
//! check returns a 422 naming the field, e.g. `allowed_models[3]`.

use hubgate_wire::pattern::PatternUse;
use rust_decimal::Decimal;
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use crate::errors::ApiError;

pub type Check = Result<(), ApiError>;

pub const MAX_NAME_CHARS: usize = 64;
pub const MAX_LIST_ITEMS: usize = 50;
pub const MAX_PATTERN_CHARS: usize = 64;
pub const MAX_REGEX_CHARS: usize = 512;
/// Upper bound for any USD amount or price, to keep NUMERIC values sane.
pub const MAX_USD: i64 = 1_000_000_000;

fn fail(field: &str, message: impl Into<String>) -> Check {
    Err(ApiError::validation(field, message))
}

/// 1..=64 characters, not blank, no control characters, no invisible or
/// bidi format characters, no leading or trailing whitespace (`" u3 "` and
/// `"u3"` would be two different names).
pub fn name(field: &str, value: &str) -> Check {
    text(field, value, MAX_NAME_CHARS)?;
    trimmed(field, value)?;
    visible(field, value)
}

/// No Unicode format characters (category Cf): zero-width spaces and
/// joiners, bidi overrides and isolates (U+202A–U+202E, U+2066–U+2069),
/// U+061C, U+2060–U+2064, U+FEFF and the like make two names that look the
/// same differ, or make a name display as something else.
fn visible(field: &str, value: &str) -> Check {
    match value
        .chars()
        .find(|c| c.general_category() == GeneralCategory::Format)
    {
        Some(c) => fail(
            field,
            format!(
                "must not contain invisible or bidi format characters (found U+{:04X})",
                u32::from(c)
            ),
        ),
        None => Ok(()),
    }
}

/// The form a name is unique in: compatibility-normalized (NFKC) and
/// lowercased, so `PROBE-DUP` and `probe-dup`, or `é` composed and
/// decomposed, are the same name. Stored beside the name as typed, under a
/// unique index.
pub fn fold(name: &str) -> String {
    let lower = name.nfkc().collect::<String>().to_lowercase();
    lower.nfkc().collect()
}

fn trimmed(field: &str, value: &str) -> Check {
    if value.trim() != value {
        return fail(field, "must not start or end with whitespace");
    }
    Ok(())
}

/// Non-blank text of at most `max` characters without control characters.
pub fn text(field: &str, value: &str, max: usize) -> Check {
    let len = value.chars().count();
    if value.trim().is_empty() {
        return fail(field, "must not be empty");
    }
    if len > max {
        return fail(
            field,
            format!("must be at most {max} characters (got {len})"),
        );
    }
    if value.chars().any(char::is_control) {
        return fail(field, "must not contain control characters");
    }
    Ok(())
}

/// Free text (descriptions): may be empty, may hold line breaks and tabs,
/// but not NUL (Postgres text cannot store it).
pub fn optional_text(field: &str, value: &str, max: usize) -> Check {
    if value.chars().count() > max {
        return fail(field, format!("must be at most {max} characters"));
    }
    no_nul(field, value)
}

pub fn no_nul(field: &str, value: &str) -> Check {
    if value.contains('\0') {
        return fail(field, "must not contain NUL characters");
    }
    Ok(())
}

/// Every string (object keys included) in a JSON value is free of NUL,
/// which Postgres jsonb cannot store.
pub fn json_without_nul(field: &str, value: &serde_json::Value) -> Check {
    use serde_json::Value;
    match value {
        Value::String(s) => no_nul(field, s),
        Value::Array(items) => items.iter().try_for_each(|v| json_without_nul(field, v)),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            no_nul(field, k)?;
            json_without_nul(field, v)
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

pub fn one_of(field: &str, value: &str, allowed: &[&str]) -> Check {
    if allowed.contains(&value) {
        Ok(())
    } else {
        fail(field, format!("must be one of: {}", allowed.join(", ")))
    }
}

fn list_len(field: &str, items: &[impl AsRef<str>]) -> Check {
    if items.len() > MAX_LIST_ITEMS {
        return fail(
            field,
            format!("at most {MAX_LIST_ITEMS} items (got {})", items.len()),
        );
    }
    Ok(())
}

/// Client patterns (`allowed_clients`, `blocked_clients`) and group tags:
/// ≤ 50 items, each 1..=64 characters, trimmed, no format characters.
pub fn patterns(field: &str, items: &[String]) -> Check {
    list_len(field, items)?;
    for (i, item) in items.iter().enumerate() {
        let field = format!("{field}[{i}]");
        text(&field, item, MAX_PATTERN_CHARS)?;
        trimmed(&field, item)?;
        visible(&field, item)?;
    }
    Ok(())
}

pub fn between(field: &str, value: i32, min: i32, max: i32) -> Check {
    if !(min..=max).contains(&value) {
        return fail(field, format!("must be between {min} and {max}"));
    }
    Ok(())
}

/// A model name: 1..=64 characters of `[A-Za-z0-9._:/-]`.
pub fn model_name(field: &str, value: &str) -> Check {
    if value.is_empty() {
        return fail(field, "must not be empty");
    }
    if value.chars().count() > MAX_PATTERN_CHARS {
        return fail(
            field,
            format!("must be at most {MAX_PATTERN_CHARS} characters"),
        );
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._:/-".contains(*c)))
    {
        return fail(
            field,
            format!("invalid character {bad:?}; allowed: A-Z a-z 0-9 . _ : / -"),
        );
    }
    Ok(())
}

/// `allowed_models`: ≤ 50 model names.
pub fn models(field: &str, items: &[String]) -> Check {
    list_len(field, items)?;
    for (i, item) in items.iter().enumerate() {
        model_name(&format!("{field}[{i}]"), item)?;
    }
    Ok(())
}

/// A USD amount or price: ≥ 0 and below a sanity bound.
pub fn usd(field: &str, value: Option<Decimal>) -> Check {
    match value {
        Some(v) if v.is_sign_negative() && !v.is_zero() => fail(field, "must be ≥ 0"),
        Some(v) if v > Decimal::from(MAX_USD) => fail(field, format!("must be ≤ {MAX_USD}")),
        _ => Ok(()),
    }
}

pub fn at_least(field: &str, value: Option<i32>, min: i32) -> Check {
    match value {
        Some(v) if v < min => fail(field, format!("must be ≥ {min}")),
        _ => Ok(()),
    }
}

/// `HH:MM`, 24-hour clock.
pub fn hh_mm(field: &str, value: &str) -> Check {
    let b = value.as_bytes();
    let digits = |i: usize, j: usize| b[i].is_ascii_digit() && b[j].is_ascii_digit();
    let num = |i: usize, j: usize| (b[i] - b'0') * 10 + (b[j] - b'0');
    let ok = b.len() == 5
        && b[2] == b':'
        && digits(0, 1)
        && digits(3, 4)
        && num(0, 1) < 24
        && num(3, 4) < 60;
    if ok {
        Ok(())
    } else {
        fail(field, "must be a time of day as HH:MM (00:00 to 23:59)")
    }
}

/// An absolute http(s) URL with a host, no query or fragment.
pub fn base_url(field: &str, value: &str) -> Check {
    if value.len() > 2048 {
        return fail(field, "must be at most 2048 characters");
    }
    let uri: http::Uri = match value.parse() {
        Ok(uri) => uri,
        Err(e) => return fail(field, format!("not a valid URL: {e}")),
    };
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return fail(field, "scheme must be http or https"),
    }
    match uri.host() {
        Some(host) if !host.is_empty() => {}
        _ => return fail(field, "must include a host"),
    }
    if uri.query().is_some() || value.contains('#') {
        return fail(field, "must not have a query or fragment");
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return fail(field, "must not contain credentials");
    }
    Ok(())
}

/// A regex the filter can compile for `kind`, with its size limits (the
/// same compile: `hubgate_wire::pattern`). A sensitive word that matches
/// empty text would block every request: refused too.
pub fn regex(field: &str, pattern: &str, kind: PatternUse) -> Check {
    if pattern.is_empty() {
        return fail(field, "must not be empty");
    }
    if pattern.chars().count() > MAX_REGEX_CHARS {
        return fail(
            field,
            format!("must be at most {MAX_REGEX_CHARS} characters"),
        );
    }
    if pattern.chars().any(char::is_control) {
        return fail(
            field,
            "must not contain control characters (write them as escapes, e.g. \\n)",
        );
    }
    match hubgate_wire::pattern::compile(pattern, kind) {
        Ok(_) => Ok(()),
        Err(e) => fail(field, e),
    }
}

/// An IANA time zone name such as `UTC` or `Asia/Shanghai`.
pub fn timezone(field: &str, value: &str) -> Check {
    match value.parse::<chrono_tz::Tz>() {
        Ok(_) => Ok(()),
        Err(_) => fail(
            field,
            "must be an IANA time zone name, e.g. UTC or Europe/Berlin",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_format_characters() {
        for bad in [
            "a\u{061C}b",
            "a\u{200B}b",
            "a\u{200D}b",
            "a\u{200F}",
            "\u{202A}a",
            "a\u{202E}b",
            "a\u{2060}b",
            "a\u{2064}b",
            "a\u{2066}b",
            "a\u{2069}b",
            "\u{FEFF}a",
            "a\u{00AD}b",
            "a\u{E0041}b",
        ] {
            assert!(name("n", bad).is_err(), "{bad:?}");
            assert!(patterns("p", &[bad.to_string()]).is_err(), "{bad:?}");
        }
        assert!(name("n", "Zoë Ødegård 李").is_ok());
    }

    #[test]
    fn fold_ignores_case_and_normalization_form() {
        assert_eq!(fold("PROBE-DUP"), fold("probe-dup"));
        assert_eq!(fold("probe-\u{e9}"), fold("probe-e\u{301}"));
        assert_eq!(fold("ＡＢＣ"), "abc");
        assert_ne!(fold("probe-e"), fold("probe-\u{e9}"));
    }

    #[test]
    fn hh_mm_rules() {
        for ok in ["00:00", "23:59", "09:30"] {
            assert!(hh_mm("t", ok).is_ok(), "{ok}");
        }
        for bad in [
            "24:00", "12:60", "1:00", "12:5", "ab:cd", "+1:00", "12-00", "12:000",
        ] {
            assert!(hh_mm("t", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn base_url_rules() {
        for ok in ["https://api.anthropic.com", "http://127.0.0.1:8080/prefix"] {
            assert!(base_url("u", ok).is_ok(), "{ok}");
        }
        for bad in [
            "ftp://x",
            "api.anthropic.com",
            "https://",
            "https://a/b?x=1",
            "http://u:p@h/",
            "/relative",
        ] {
            assert!(base_url("u", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn model_charset() {
        assert!(model_name("m", "gemini-2.5-pro").is_ok());
        assert!(model_name("m", "openai/gpt-5:latest_x").is_ok());
        assert!(model_name("m", "claude opus").is_err());
        assert!(model_name("m", &"a".repeat(65)).is_err());
    }

    #[test]
    fn regex_rules() {
        let redirect = PatternUse::ModelRedirect;
        assert!(regex("r", "^claude-.*$", redirect).is_ok());
        assert!(regex("r", "(unclosed", redirect).is_err());
        assert!(regex("r", r"\w{1000}{1000}", redirect).is_err());
        assert!(regex("r", "x*", PatternUse::RequestFilter).is_ok());
        assert!(regex("r", "x*", PatternUse::SensitiveWord).is_err());
    }

    #[test]
    fn usd_rules() {
        assert!(usd("l", Some(Decimal::ZERO)).is_ok());
        assert!(usd("l", Some(Decimal::new(-1, 2))).is_err());
        assert!(usd("l", None).is_ok());
    }
}
