//! The language of human-readable messages (SPEC §3): English by default,
//! Simplified Chinese when the `locale` setting says `zh-CN`. Codes, types
//! and field names never change with it.

use crate::reply::LocalReply;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Locale {
    #[default]
    En,
    ZhCn,
}

impl Locale {
    /// `zh-CN` (any case, `_` or `-`) is Chinese; anything else English.
    pub fn parse(setting: &str) -> Locale {
        if setting.replace('_', "-").eq_ignore_ascii_case("zh-cn") {
            Locale::ZhCn
        } else {
            Locale::En
        }
    }

    /// The message in this locale.
    pub fn pick<'a>(self, en: &'a str, zh: &'a str) -> &'a str {
        match self {
            Locale::En => en,
            Locale::ZhCn => zh,
        }
    }
}

/// The reply in `locale`. Guards that word their own messages per locale
/// (client, model, version, sensitive words) are left as they are; the
/// other stable codes get their Simplified Chinese text here.
pub fn localize(mut reply: LocalReply, locale: Locale) -> LocalReply {
    if locale == Locale::En {
        return reply;
    }
    let detail = |name: &str| reply.details.get(name).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string));
    let header = |name: &str| reply.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let zh = match reply.code {
        "missing_api_key" => "未提供 API 密钥。请通过 x-api-key 请求头或 Authorization: Bearer <key> 发送。".to_string(),
        "conflicting_credentials" => "凭据冲突：请求的不同请求头中携带了不同的 API 密钥。".to_string(),
        "invalid_api_key" => "API 密钥无效。".to_string(),
        "key_disabled" => "API 密钥已被禁用。".to_string(),
        "user_disabled" => "用户账户已被禁用，请联系管理员。".to_string(),
        "user_expired" => format!("用户账户已于 {} 过期，请续订。", detail("expired_at").unwrap_or_default()),
        "key_expired" => format!("API 密钥已于 {} 过期，请创建新的密钥。", detail("expired_at").unwrap_or_default()),
        "auth_locked_out" => {
            format!("认证失败次数过多，请在 {} 秒后重试。", header("retry-after").unwrap_or_default())
        }
        "auth_pending_limit" => "来自此地址的待校验请求过多，请稍后重试。".to_string(),
        "auth_unavailable" => "暂时无法校验 API 密钥，请稍后重试。".to_string(),
        "policy_unavailable" => "网关尚未从控制面收到策略，请稍后重试。".to_string(),
        "request_too_large" => match detail("max_bytes") {
            Some(max) => format!("请求体超过允许的 {max} 字节。"),
            None => "请求体超过网关的缓冲上限。".to_string(),
        },
        "invalid_path" => "请求路径包含点段或转义的分隔符，不被允许。".to_string(),
        "not_found" => format!("未知路径 `{}`。", detail("path").unwrap_or_default()),
        "invalid_json" => format!("请求体不是有效的 JSON（{}）。", reply.message),
        "no_provider_available" => "当前没有可用的供应商处理此请求。".to_string(),
        "upstream_unavailable" | "upstream_timeout" => format!("无法连接到供应商（{}）。", reply.message),
        "request_timeout" => "未在规定时间内收到完整请求。".to_string(),
        "guard_failed" => "网关无法检查此请求。".to_string(),
        _ => return reply,
    };
    reply.message = zh;
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_setting() {
        assert_eq!(Locale::parse("zh-CN"), Locale::ZhCn);
        assert_eq!(Locale::parse("zh_cn"), Locale::ZhCn);
        assert_eq!(Locale::parse("en"), Locale::En);
        assert_eq!(Locale::parse(""), Locale::En);
        assert_eq!(Locale::ZhCn.pick("a", "b"), "b");
    }

    #[test]
    fn localizes_by_code_and_keeps_the_code() {
        let r = LocalReply::new(429, "auth_locked_out", "Too many failed attempts.").with_header("retry-after", "42");
        let zh = localize(r.clone(), Locale::ZhCn);
        assert_eq!((zh.code, zh.status), ("auth_locked_out", 429));
        assert!(zh.message.contains("42") && zh.message.contains("认证"), "{}", zh.message);
        assert_eq!(localize(r.clone(), Locale::En), r);
        let own = LocalReply::new(400, "model_not_allowed", "模型不允许");
        assert_eq!(localize(own.clone(), Locale::ZhCn), own, "guards that word their own messages are left alone");
        let expired = crate::guards::auth::check_key(&expired_key(), 2_000_000_000_000).unwrap_err();
        assert!(localize(expired, Locale::ZhCn).message.contains("2033-05-18T03:33:20Z"));
    }

    fn expired_key() -> hubgate_wire::ResolvedKey {
        serde_json::from_value(serde_json::json!({
            "id": 1, "name": "k", "masked": "sk-…x", "enabled": true, "expires_at_ms": 2_000_000_000_000i64,
            "can_login_web_ui": false, "limits": hubgate_wire::Limits::default(), "provider_group": null,
            "user": {"id": 1, "name": "u", "enabled": true, "expires_at_ms": null, "role": "user",
                "allowed_clients": [], "blocked_clients": [], "allowed_models": [], "rpm": null,
                "limits": hubgate_wire::Limits::default(), "daily_reset_mode": "fixed", "daily_reset_time": "00:00",
                "provider_group": null}
        }))
        .unwrap()
    }
}
