//! Guard 4: model restriction (SPEC §2.4).

use crate::chain::{Cx, Guard, Step};
use crate::clip::clip;
use crate::locale::Locale;
use crate::reply::LocalReply;

/// Longest model name echoed in an error message. Allowed names are at most
/// 64 characters, so anything longer is shown only in part.
const MAX_MODEL_IN_MESSAGE: usize = 100;

/// Passes when `allowed` is empty or holds `model` (exact match, ASCII case
/// ignored). The model is the body `model`, or the Gemini path segment.
pub fn check(allowed: &[String], model: Option<&str>, locale: Locale) -> Result<(), LocalReply> {
    if allowed.is_empty() {
        return Ok(());
    }
    let Some(model) = model.filter(|m| !m.trim().is_empty()) else {
        return Err(LocalReply::new(
            400,
            "model_not_allowed",
            locale.pick(
                "Model not allowed. Model specification is required when model restrictions are configured.",
                "模型不允许。已配置模型限制时必须指定模型。",
            ),
        ));
    };
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(model)) {
        return Ok(());
    }
    let mut shown = clip(model, MAX_MODEL_IN_MESSAGE);
    if shown.len() < model.len() {
        shown.push('…');
    }
    let message = match locale {
        Locale::En => format!("Model not allowed. The requested model '{shown}' is not in the allowed list."),
        Locale::ZhCn => format!("模型不允许。请求的模型 '{shown}' 不在允许列表中。"),
    };
    Err(LocalReply::new(400, "model_not_allowed", message))
}

/// Guard 4: the user's `allowed_models` against the requested model.
pub struct Model;

impl Guard for Model {
    fn name(&self) -> &'static str {
        "model"
    }

    fn check(&self, cx: &mut Cx<'_>) -> Result<Step, String> {
        let Some(key) = cx.ex.key() else {
            return Err("model check before auth".to_string());
        };
        let locale = cx.ex.snapshot.as_ref().map_or(Locale::En, |s| s.locale);
        match check(&key.user.allowed_models, cx.ex.info.model.as_deref(), locale) {
            Ok(()) => Ok(Step::Next),
            Err(reply) => Ok(Step::Answer(reply)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Endpoint;
    use crate::request::inspect;

    const MISSING: &str = "Model not allowed. Model specification is required when model restrictions are configured.";

    fn list(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn decisions() {
        let opus = list(&["claude-3-opus-20240229", "gemini-2.5-pro"]);
        let cases: &[(&[String], Option<&str>, Option<&str>)] = &[
            // (allowed, model, expected error message or None for pass)
            (&[], None, None),
            (&[], Some("anything"), None),
            (&opus, Some("claude-3-opus-20240229"), None),
            (&opus, Some("CLAUDE-3-Opus-20240229"), None),
            (&opus, Some("gemini-2.5-pro"), None),
            (&opus, None, Some(MISSING)),
            (&opus, Some(""), Some(MISSING)),
            (&opus, Some("  \t"), Some(MISSING)),
            (
                &list(&["claude-3"]),
                Some("claude-3-opus-20240229"),
                Some("Model not allowed. The requested model 'claude-3-opus-20240229' is not in the allowed list."),
            ),
            (
                &opus,
                Some("claude-3"),
                Some("Model not allowed. The requested model 'claude-3' is not in the allowed list."),
            ),
            (
                &opus,
                Some(" claude-3-opus-20240229"),
                Some("Model not allowed. The requested model ' claude-3-opus-20240229' is not in the allowed list."),
            ),
        ];
        for (allowed, model, expected) in cases {
            let got = check(allowed, *model, Locale::En);
            match expected {
                None => assert_eq!(got, Ok(()), "{allowed:?} {model:?}"),
                Some(message) => {
                    let reply = got.unwrap_err();
                    assert_eq!(reply.status, 400);
                    assert_eq!(reply.code, "model_not_allowed");
                    assert_eq!(&reply.message, message, "{allowed:?} {model:?}");
                }
            }
        }
    }

    #[test]
    fn gemini_path_model_is_checked() {
        let allowed = list(&["gemini-2.5-pro"]);
        let cases = [
            ("/v1beta/models/gemini-2.5-pro:generateContent", true),
            ("/v1beta/models/Gemini-2.5-Pro:streamGenerateContent?alt=sse", true),
            ("/v1beta/models/gemini-2.5-flash:generateContent", false),
            ("/v1beta/models/gemini-2.5:generateContent", false),
        ];
        for (path, pass) in cases {
            let endpoint = Endpoint::from_path(path);
            let info = inspect(endpoint, path, b"").unwrap();
            assert_eq!(check(&allowed, info.model.as_deref(), Locale::En).is_ok(), pass, "{path}");
        }
    }

    #[test]
    fn body_model_cannot_override_gemini_path_model() {
        let path = "/v1beta/models/gemini-2.5-flash:generateContent";
        let info = inspect(Endpoint::from_path(path), path, br#"{"model":"gemini-2.5-pro"}"#).unwrap();
        assert!(check(&list(&["gemini-2.5-pro"]), info.model.as_deref(), Locale::En).is_err());
    }

    #[test]
    fn long_model_is_clipped_in_the_message() {
        let model = "x".repeat(10_000);
        let reply = check(&list(&["a"]), Some(&model), Locale::En).unwrap_err();
        let shown = format!("'{}…'", "x".repeat(MAX_MODEL_IN_MESSAGE));
        assert!(reply.message.contains(&shown), "{}", reply.message);
        assert!(reply.message.len() < 200);
    }

    #[test]
    fn chinese_messages() {
        let allowed = list(&["a"]);
        let missing = check(&allowed, None, Locale::ZhCn).unwrap_err();
        assert_eq!(missing.message, "模型不允许。已配置模型限制时必须指定模型。");
        assert_eq!(missing.code, "model_not_allowed");
        let other = check(&allowed, Some("b"), Locale::ZhCn).unwrap_err();
        assert_eq!(other.message, "模型不允许。请求的模型 'b' 不在允许列表中。");
    }
}
