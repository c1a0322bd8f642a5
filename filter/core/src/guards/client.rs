//! Guard 3: client restriction (SPEC §2.3). A user's `allowed_clients` /
//! `blocked_clients` patterns, compiled once per user, checked against the
//! User-Agent (and, for the Claude Code preset, its other signals).

use crate::api::Endpoint;
use crate::chain::{Cx, Guard, Step};
use crate::clip::clip;
use crate::headers::Headers;
use crate::locale::Locale;
use crate::reply::LocalReply;
use crate::request::RequestInfo;
use crate::user_agent::{self, normalize};

/// Longest configured pattern echoed back in a message.
const MAX_ECHOED_PATTERN: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Preset {
    ClaudeCode,
    Codex,
    Gemini,
    Factory,
}

impl Preset {
    /// The preset a normalized pattern names, if any. `claude-code` is Claude
    /// Code Hub's name for the same preset as `claude-cli`.
    fn from_normalized(pattern: &str) -> Option<Preset> {
        match pattern {
            "claudecli" | "claudecode" => Some(Preset::ClaudeCode),
            "codexcli" => Some(Preset::Codex),
            "geminicli" => Some(Preset::Gemini),
            "factorycli" => Some(Preset::Factory),
            _ => None,
        }
    }

    fn normalized(self) -> &'static str {
        match self {
            Preset::ClaudeCode => "claudecli",
            Preset::Codex => "codexcli",
            Preset::Gemini => "geminicli",
            Preset::Factory => "factorycli",
        }
    }

    fn client_type(self) -> &'static str {
        match self {
            Preset::ClaudeCode => "claude-cli",
            Preset::Codex => "codex-cli",
            Preset::Gemini => "gemini-cli",
            Preset::Factory => "factory-cli",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Matcher {
    Preset(Preset),
    /// Normalized text the normalized User-Agent must contain.
    Contains(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    /// As configured (trimmed), for messages.
    text: String,
    matcher: Matcher,
}

/// What one request shows of its client, worked out once per check.
struct Seen {
    normalized: String,
    client_type: Option<&'static str>,
    claude_code: bool,
}

impl Pattern {
    fn matches(&self, seen: &Seen) -> bool {
        match &self.matcher {
            Matcher::Contains(text) => seen.normalized.contains(text.as_str()),
            Matcher::Preset(Preset::ClaudeCode) => seen.claude_code,
            // Codex Desktop is Codex to the preset, though not to the version check.
            Matcher::Preset(Preset::Codex) if seen.normalized.starts_with("codex desktop/") => true,
            Matcher::Preset(preset) => {
                seen.normalized.contains(preset.normalized()) || seen.client_type == Some(preset.client_type())
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientRule {
    allowed: Vec<Pattern>,
    blocked: Vec<Pattern>,
    /// An allow-list was configured, even if none of its patterns can match:
    /// `["-"]` refuses every client rather than allowing all.
    allow_list: bool,
}

impl ClientRule {
    /// Patterns are compared normalized (lowercase, no `-` or `_`); those
    /// that normalize to empty never match.
    pub fn compile(allowed: &[String], blocked: &[String]) -> ClientRule {
        ClientRule { allowed: compile_list(allowed), blocked: compile_list(blocked), allow_list: !allowed.is_empty() }
    }

    /// No restriction at all: the guard can be skipped.
    pub fn is_empty(&self) -> bool {
        !self.allow_list && self.blocked.is_empty()
    }

    /// The Claude Code preset looks at `metadata.user_id`, which is in the body.
    pub fn needs_body(&self) -> bool {
        self.allowed.iter().chain(&self.blocked).any(|p| p.matcher == Matcher::Preset(Preset::ClaudeCode))
    }

    /// Blocked patterns first, then the allow-list.
    pub fn check(
        &self,
        headers: &Headers,
        endpoint: Endpoint,
        info: &RequestInfo,
        locale: Locale,
    ) -> Result<(), LocalReply> {
        if self.is_empty() {
            return Ok(());
        }
        let user_agent = headers.non_empty("user-agent");
        let ua = user_agent.unwrap_or("");
        let seen = Seen {
            normalized: normalize(ua),
            client_type: user_agent::client_type(ua),
            claude_code: is_claude_code(ua, headers, endpoint, info),
        };

        if let Some(pattern) = self.blocked.iter().find(|p| p.matches(&seen)) {
            let detected = match seen.client_type {
                Some(client_type) => client_type.to_string(),
                None => clip(&pattern.text, MAX_ECHOED_PATTERN),
            };
            let message = match locale {
                Locale::En => format!("Client blocked (detected: {detected})"),
                Locale::ZhCn => format!("客户端已被禁止（检测到：{detected}）"),
            };
            return Err(LocalReply::new(400, "client_blocked", message));
        }

        if !self.allow_list {
            return Ok(());
        }
        if user_agent.is_none() {
            return Err(not_allowed(locale.pick(
                "Client not allowed. User-Agent header is required when client restrictions are configured.",
                "客户端不被允许：已配置客户端限制时必须提供 User-Agent 请求头。",
            )));
        }
        if self.allowed.iter().any(|p| p.matches(&seen)) {
            return Ok(());
        }
        Err(not_allowed(locale.pick(
            "Client not allowed. Your client is not in the allowed list.",
            "客户端不被允许：您的客户端不在允许列表中。",
        )))
    }
}

fn compile_list(patterns: &[String]) -> Vec<Pattern> {
    patterns
        .iter()
        .filter_map(|raw| {
            let text = raw.trim();
            let normalized = normalize(text);
            if normalized.is_empty() {
                return None;
            }
            let matcher = match Preset::from_normalized(&normalized) {
                Some(preset) => Matcher::Preset(preset),
                None => Matcher::Contains(normalized),
            };
            Some(Pattern { text: text.to_string(), matcher })
        })
        .collect()
}

/// Claude Code is confirmed only by all of its signals together: the
/// `claude-cli/` User-Agent, `x-app: cli`, an `anthropic-beta` header and a
/// `metadata.user_id` — which count_tokens bodies never carry.
fn is_claude_code(user_agent: &str, headers: &Headers, endpoint: Endpoint, info: &RequestInfo) -> bool {
    let ua_prefix = user_agent.get(..11).is_some_and(|p| p.eq_ignore_ascii_case("claude-cli/"));
    let x_app = headers.get("x-app").is_some_and(|v| v.trim().eq_ignore_ascii_case("cli"));
    let beta = headers.get("anthropic-beta").is_some();
    let metadata = endpoint == Endpoint::AnthropicCountTokens || info.metadata_user_id.is_some();
    ua_prefix && x_app && beta && metadata
}

fn not_allowed(message: &str) -> LocalReply {
    LocalReply::new(400, "client_not_allowed", message)
}

/// Guard 3: needs no body unless a Claude Code preset asks for its
/// `metadata.user_id`.
pub struct Client;

impl Guard for Client {
    fn name(&self) -> &'static str {
        "client"
    }

    fn check(&self, cx: &mut Cx<'_>) -> Result<Step, String> {
        let Some(entry) = cx.ex.key_entry.clone() else {
            return Err("client check before auth".to_string());
        };
        let rule = entry.client_rule();
        if rule.is_empty() {
            return Ok(Step::Next);
        }
        if rule.needs_body() {
            match cx.ex.parse_body(cx.vm) {
                Ok(true) => {}
                Ok(false) => return Ok(Step::NeedBody),
                Err(reply) => return Ok(Step::Answer(reply)),
            }
        }
        let locale = cx.ex.snapshot.as_ref().map_or(Locale::En, |s| s.locale);
        match rule.check(&cx.ex.headers, cx.ex.endpoint, &cx.ex.info, locale) {
            Ok(()) => Ok(Step::Next),
            Err(reply) => Ok(Step::Answer(reply)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOT_IN_LIST: &str = "Client not allowed. Your client is not in the allowed list.";
    const UA_REQUIRED: &str =
        "Client not allowed. User-Agent header is required when client restrictions are configured.";
    const CLAUDE_UA: &str = "claude-cli/2.1.197 (external, sdk-cli)";
    const CLAUDE_HEADERS: &[(&str, &str)] = &[("x-app", "cli"), ("anthropic-beta", "claude-code-20250219")];

    /// `Ok(())` or `Err((code, message))`.
    type Outcome = Result<(), (&'static str, String)>;
    type HeaderList = &'static [(&'static str, &'static str)];
    type Patterns = &'static [&'static str];

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn run(
        allowed: &[&str],
        blocked: &[&str],
        user_agent: Option<&str>,
        extra: &[(&str, &str)],
        endpoint: Endpoint,
        user_id: Option<&str>,
    ) -> Outcome {
        let rule = ClientRule::compile(&strings(allowed), &strings(blocked));
        let mut pairs: Vec<(String, String)> = extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        if let Some(ua) = user_agent {
            pairs.push(("User-Agent".into(), ua.into()));
        }
        let info = RequestInfo { metadata_user_id: user_id.map(str::to_string), ..RequestInfo::default() };
        rule.check(&Headers::new(pairs), endpoint, &info, Locale::En).map_err(|r| {
            assert_eq!(r.status, 400);
            (r.code, r.message)
        })
    }

    fn simple(allowed: &[&str], blocked: &[&str], ua: Option<&str>) -> Outcome {
        run(allowed, blocked, ua, &[], Endpoint::AnthropicMessages, None)
    }

    fn not_in_list() -> Outcome {
        Err(("client_not_allowed", NOT_IN_LIST.to_string()))
    }

    fn blocked(detected: &str) -> Outcome {
        Err(("client_blocked", format!("Client blocked (detected: {detected})")))
    }

    #[test]
    fn user_agent_patterns() {
        let cases: &[(Patterns, Patterns, Option<&str>, Outcome)] = &[
            // No restriction.
            (&[], &[], None, Ok(())),
            (&[], &[], Some("AnyClient/1.0"), Ok(())),
            // Patterns that normalize to empty never match, and never lift the restriction.
            (&["-"], &[], Some("AnyClient/1.0"), not_in_list()),
            (&["___"], &[], Some("AnyClient/1.0"), not_in_list()),
            (&["-_-_-"], &[], Some("AnyClient/1.0"), not_in_list()),
            (&["-", "_", "--", "", "  "], &[], Some("AnyClient/1.0"), not_in_list()),
            (&["-", "valid", "_"], &[], Some("ValidClient/1.0"), Ok(())),
            (&[], &["-", "___"], Some("AnyClient/1.0"), Ok(())),
            // Case, `-` and `_` are ignored on both sides; the pattern may be anywhere in the UA.
            (&["my-special-cli"], &[], Some("my_special-cli/1.0"), Ok(())),
            (&["My_Special_CLI"], &[], Some("myspecialcli/1.0"), Ok(())),
            (&["gemini-cli"], &[], Some("Mozilla/5.0 gemini-cli/1.0 Compatible"), Ok(())),
            (&["claude-cli", "gemini-cli"], &[], Some("UnknownClient/1.0"), not_in_list()),
            // Presets match every User-Agent their clients send.
            (&["gemini-cli"], &[], Some("GeminiCLI/0.22.5/gemini-3-pro-preview (darwin; arm64)"), Ok(())),
            (&["gemini-cli"], &[], Some("GeminiCLI-tui/0.61.0/gemini-3-pro-preview (linux; x64; terminal)"), Ok(())),
            (&["gemini-cli"], &[], Some("GEMINICLI/1.0"), Ok(())),
            (&["codex-cli"], &[], Some("codex_exec/0.169.0 (Ubuntu 24.4.0; x86_64) unknown"), Ok(())),
            (&["codex-cli"], &[], Some("codex_cli_rs/0.50.0 (Mac OS 15.0.0; arm64) iTerm.app/3.5.0"), Ok(())),
            (&["codex-cli"], &[], Some("codex_vscode/0.60.1 (Windows 10.0.26100; x86_64)"), Ok(())),
            (&["codex-cli"], &[], Some("Codex Desktop/1.2.3 (Mac OS 15.0.0; arm64)"), Ok(())),
            (&["gemini-cli"], &[], Some("Codex Desktop/1.2.3 (Mac OS 15.0.0; arm64)"), not_in_list()),
            (&["Codex_CLI"], &[], Some("codex_tui/0.1.0"), Ok(())),
            (&["codex-cli"], &[], Some("GeminiCLI/0.22.5"), not_in_list()),
            (&["factory-cli"], &[], Some("factory-cli/0.19.3"), Ok(())),
            (&["factory-cli"], &[], Some("FactoryCLI/1.0"), Ok(())),
            (&["factory-cli"], &[], Some("droid/1.0.0"), Ok(())),
            (&["factory-cli"], &[], Some("android/1.0.0"), not_in_list()),
            // A custom pattern is plain text, not a preset.
            (&["codex_exec"], &[], Some("codex_exec/0.169.0"), Ok(())),
            (&["codex_exec"], &[], Some("codex_cli_rs/0.50.0"), not_in_list()),
            // Blocked wins over allowed; the message names the detected client.
            (&["gemini-cli"], &["gemini-cli"], Some("GeminiCLI/0.22.5/gemini-3-pro-preview"), blocked("gemini-cli")),
            (&[], &["codex-cli"], Some("codex_exec/0.169.0"), blocked("codex-cli")),
            (&[], &["codex-cli"], Some("GeminiCLI/0.22.5"), Ok(())),
            (&["my-tool"], &[" My_Tool "], Some("my-tool/1.0"), blocked("My_Tool")),
            // The User-Agent is required only when there is an allow-list.
            (&["claude-cli"], &[], None, Err(("client_not_allowed", UA_REQUIRED.to_string()))),
            (&["-"], &[], Some("   "), Err(("client_not_allowed", UA_REQUIRED.to_string()))),
            (&[], &["gemini-cli"], None, Ok(())),
        ];
        for (allowed, blocked, ua, want) in cases {
            let got = simple(allowed, blocked, *ua);
            assert_eq!(&got, want, "allowed {allowed:?} blocked {blocked:?} ua {ua:?}");
        }
    }

    #[test]
    fn claude_code_preset_needs_all_signals() {
        let vscode_ua = "claude-cli/2.0.1 (external, claude-vscode)";
        let count_tokens = Endpoint::AnthropicCountTokens;
        let messages = Endpoint::AnthropicMessages;
        let cases: &[(&str, HeaderList, Endpoint, Option<&str>, bool)] = &[
            (CLAUDE_UA, CLAUDE_HEADERS, messages, Some("user_abc_session_x"), true),
            (vscode_ua, CLAUDE_HEADERS, messages, Some(r#"{"session_id":"s"}"#), true),
            (CLAUDE_UA, &[("X-App", "CLI"), ("anthropic-beta", "x")], messages, Some("u"), true),
            // count_tokens bodies carry no metadata.
            (CLAUDE_UA, CLAUDE_HEADERS, count_tokens, None, true),
            (CLAUDE_UA, CLAUDE_HEADERS, messages, None, false),
            (CLAUDE_UA, &[("anthropic-beta", "x")], messages, Some("u"), false),
            (CLAUDE_UA, &[("x-app", "cli")], messages, Some("u"), false),
            (CLAUDE_UA, &[("x-app", "web"), ("anthropic-beta", "x")], messages, Some("u"), false),
            (CLAUDE_UA, &[("anthropic-beta", "x")], count_tokens, None, false),
            // The User-Agent alone does not make Claude Code, nor do the signals without it.
            (CLAUDE_UA, &[], messages, None, false),
            ("claude_cli/1.0", CLAUDE_HEADERS, messages, Some("u"), false),
            ("Mozilla/5.0 claude-cli/1.0", CLAUDE_HEADERS, messages, Some("u"), false),
        ];
        for (ua, headers, endpoint, user_id, is_claude) in cases {
            for preset in ["claude-cli", "Claude_CLI", "claude-code"] {
                let allowed = run(&[preset], &[], Some(ua), headers, *endpoint, *user_id);
                assert_eq!(allowed.is_ok(), *is_claude, "allow {preset} {ua} {headers:?} {endpoint:?} {user_id:?}");
                let blocked = run(&[], &[preset], Some(ua), headers, *endpoint, *user_id);
                assert_eq!(blocked.is_err(), *is_claude, "block {preset} {ua} {headers:?} {endpoint:?} {user_id:?}");
            }
        }
        assert_eq!(
            run(&[], &["claude-cli"], Some(vscode_ua), CLAUDE_HEADERS, messages, Some("u")),
            blocked("claude-vscode")
        );
    }

    #[test]
    fn needs_body_only_for_the_claude_code_preset() {
        let cases: &[(Patterns, Patterns, bool)] = &[
            (&[], &[], false),
            (&["gemini-cli", "codex-cli", "my-claude-cli-fork"], &[], false),
            (&["claude-cli"], &[], true),
            (&[], &["Claude_CLI"], true),
            (&["claude-code"], &[], true),
        ];
        for (allowed, blocked, want) in cases {
            let rule = ClientRule::compile(&strings(allowed), &strings(blocked));
            assert_eq!(rule.needs_body(), *want, "{allowed:?} {blocked:?}");
        }
    }

    #[test]
    fn is_empty_only_without_effective_restrictions() {
        assert!(ClientRule::compile(&[], &[]).is_empty());
        assert!(ClientRule::compile(&[], &strings(&["-", "__"])).is_empty());
        assert!(!ClientRule::compile(&strings(&["-"]), &[]).is_empty());
        assert!(!ClientRule::compile(&[], &strings(&["x"])).is_empty());
    }

    #[test]
    fn messages_in_chinese() {
        let check = |allowed: &[&str], blocked: &[&str], ua: Option<&str>| {
            let rule = ClientRule::compile(&strings(allowed), &strings(blocked));
            let headers = Headers::new(ua.map(|u| ("user-agent".to_string(), u.to_string())).into_iter().collect());
            let reply = rule.check(&headers, Endpoint::OpenAiChat, &RequestInfo::default(), Locale::ZhCn).unwrap_err();
            (reply.code, reply.message)
        };
        assert_eq!(
            check(&["codex-cli"], &[], None),
            ("client_not_allowed", "客户端不被允许：已配置客户端限制时必须提供 User-Agent 请求头。".to_string())
        );
        assert_eq!(
            check(&["codex-cli"], &[], Some("curl/8.0")),
            ("client_not_allowed", "客户端不被允许：您的客户端不在允许列表中。".to_string())
        );
        assert_eq!(
            check(&[], &["gemini-cli"], Some("GeminiCLI/0.22.5")),
            ("client_blocked", "客户端已被禁止（检测到：gemini-cli）".to_string())
        );
    }
}
