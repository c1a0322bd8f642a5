//! Request path checks made before a path is joined to a provider's base
//! URL. Envoy normalizes paths first (`normalize_path`, `merge_slashes`,
//! escaped slashes rejected); this is the filter's own line of defence.

use crate::reply::LocalReply;

/// Refuses a path with a `.` or `..` segment, plain or percent-encoded, or
/// with a backslash: joined to a provider prefix it could leave that prefix.
pub fn check(path: &str) -> Result<(), LocalReply> {
    let path = crate::api::path_without_query(path);
    let bad_segment = path.split('/').any(|segment| {
        let lower = segment.to_ascii_lowercase();
        let dots = lower.replace("%2e", ".");
        dots == "." || dots == ".."
    });
    let lower = path.to_ascii_lowercase();
    if bad_segment || path.contains('\\') || lower.contains("%5c") || lower.contains("%2f") {
        return Err(LocalReply::new(
            400,
            "invalid_path",
            "The request path has dot segments or escaped separators, which are not allowed.",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_refused() {
        for path in [
            "/../../admin",
            "/v1/../admin",
            "/v1/./messages",
            "/v1/%2e%2e/admin",
            "/v1/%2E./admin",
            "/v1/.%2e",
            "/v1\\..\\admin",
            "/v1/%5c..%5cadmin",
            "/v1/a%2f..%2fb",
            "/..",
        ] {
            assert_eq!(check(path).map_err(|r| r.code), Err("invalid_path"), "{path}");
        }
    }

    #[test]
    fn ordinary_paths_pass() {
        for path in [
            "/v1/messages",
            "/v1/messages?beta=true",
            "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
            "/v1/models/claude-3.5...x",
            "/v1/files/a..b",
            "/v1/messages?next=../x",
            "/",
        ] {
            assert!(check(path).is_ok(), "{path}");
        }
    }
}
