//! Guard 5: client version check (SPEC §2.5). Clients older than the GA
//! version of their type (computed by the control plane, shipped in the
//! snapshot) are asked to upgrade. Fails open: anything it cannot tell passes.

use std::collections::BTreeMap;

use hubgate_wire::ClientGaVersion;
use semver::Version;
use serde_json::json;

use crate::chain::{Cx, Guard, Step};
use crate::clip::clip;
use crate::locale::Locale;
use crate::reply::LocalReply;
use crate::user_agent;

/// GA version per client type, compiled once per snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GaVersions(BTreeMap<String, Version>);

impl GaVersions {
    /// Entries whose version does not parse are skipped and described in the
    /// returned warnings. Should a type appear twice, the higher version counts.
    pub fn compile(list: &[ClientGaVersion]) -> (GaVersions, Vec<String>) {
        let mut versions: BTreeMap<String, Version> = BTreeMap::new();
        let mut warnings = Vec::new();
        for entry in list {
            let client_type = entry.client_type.trim().to_ascii_lowercase();
            let Some(version) = user_agent::parse_version(&entry.version) else {
                warnings.push(format!(
                    "client GA version for {:?} skipped: {:?} is not a version",
                    clip(&client_type, 64),
                    clip(&entry.version, 64)
                ));
                continue;
            };
            let ga = versions.entry(client_type).or_insert_with(|| version.clone());
            if version > *ga {
                *ga = version;
            }
        }
        (GaVersions(versions), warnings)
    }

    /// 400 `client_upgrade_required` when the User-Agent names a known client
    /// older than its GA version; otherwise (no or unknown User-Agent, no GA
    /// version for that type, same or newer) the request passes.
    pub fn check(&self, user_agent: Option<&str>, locale: Locale) -> Result<(), LocalReply> {
        let Some(client) = user_agent.and_then(user_agent::parse) else {
            return Ok(());
        };
        let Some(required) = self.0.get(&client.client_type) else {
            return Ok(());
        };
        if client.version >= *required {
            return Ok(());
        }
        let (name, current) = (client.display_name, &client.version);
        let message = match locale {
            Locale::En => format!(
                "Your {name} (v{current}) is outdated. Please upgrade to v{required} or later to continue using this service."
            ),
            Locale::ZhCn => format!("您的 {name}（v{current}）版本过旧，请升级到 v{required} 或更高版本后继续使用本服务。"),
        };
        Err(LocalReply::new(400, "client_upgrade_required", message)
            .with_type("client_upgrade_required")
            .with_detail("current_version", json!(current.to_string()))
            .with_detail("required_version", json!(required.to_string()))
            .with_detail("client_type", json!(client.client_type))
            .with_detail("client_display_name", json!(name)))
    }
}

/// Guard 5: only when `enable_client_version_check` is on; fails open.
pub struct ClientVersion;

impl Guard for ClientVersion {
    fn name(&self) -> &'static str {
        "client_version"
    }

    fn fails_open(&self) -> bool {
        true
    }

    fn check(&self, cx: &mut Cx<'_>) -> Result<Step, String> {
        let Some(snapshot) = cx.ex.snapshot.as_ref() else {
            return Err("no policy".to_string());
        };
        if !snapshot.settings.enable_client_version_check {
            return Ok(Step::Next);
        }
        match snapshot.ga_versions.check(cx.ex.headers.get("user-agent"), snapshot.locale) {
            Ok(()) => Ok(Step::Next),
            Err(reply) => Ok(Step::Answer(reply)),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::api::Dialect;

    fn ga(list: &[(&str, &str)]) -> GaVersions {
        let list: Vec<ClientGaVersion> = list
            .iter()
            .map(|(t, v)| ClientGaVersion { client_type: t.to_string(), version: v.to_string() })
            .collect();
        let (versions, warnings) = GaVersions::compile(&list);
        assert!(warnings.is_empty(), "{warnings:?}");
        versions
    }

    #[test]
    fn older_clients_must_upgrade() {
        let versions = ga(&[
            ("claude-cli", "2.0.0"),
            ("claude-vscode", "2.1.0"),
            ("codex-cli", "0.169.0"),
            ("gemini-cli", "0.22.5"),
            ("factory-cli", "0.19.0"),
        ]);
        // current version, required version, client type, display name
        type Refused = (&'static str, &'static str, &'static str, &'static str);
        let cases: &[(Option<&str>, Option<Refused>)] = &[
            (Some("claude-cli/1.0.0 (external, cli)"), Some(("1.0.0", "2.0.0", "claude-cli", "Claude Code CLI"))),
            (Some("claude-cli/2.0.0 (external, cli)"), None),
            (Some("claude-cli/2.0.1 (external, sdk-cli)"), None),
            (Some("claude-cli/3.0.0"), None),
            // Pre-releases sort before their release, after the one before.
            (Some("claude-cli/2.0.0-beta.1 (external, cli)"), Some(("2.0.0-beta.1", "2.0.0", "claude-cli", "Claude Code CLI"))),
            (Some("claude-cli/2.1.0-beta.1 (external, cli)"), None),
            // Build metadata is ignored.
            (Some("claude-cli/2.0.0+abc (external, cli)"), None),
            // The VS Code extension has its own GA version.
            (
                Some("claude-cli/2.0.5 (external, claude-vscode)"),
                Some(("2.0.5", "2.1.0", "claude-vscode", "Claude Code VSCode Extension")),
            ),
            (Some("claude-cli/2.1.0 (external, claude-vscode)"), None),
            (Some("codex_exec/0.168.9 (Linux; x86_64)"), Some(("0.168.9", "0.169.0", "codex-cli", "Codex CLI"))),
            (Some("codex_cli_rs/0.169.0 (Mac OS 15.0.0; arm64)"), None),
            (
                Some("GeminiCLI/0.22.4/gemini-3-pro-preview (darwin; arm64)"),
                Some(("0.22.4", "0.22.5", "gemini-cli", "Gemini CLI")),
            ),
            (Some("GeminiCLI-tui/0.61.0/gemini-3-pro-preview (linux; x64; terminal)"), None),
            (Some("factory-cli/0.18"), Some(("0.18.0", "0.19.0", "factory-cli", "Droid CLI"))),
            // Fail open: nothing to compare.
            (None, None),
            (Some(""), None),
            (Some("curl/8.0.1"), None),
            (Some("Codex Desktop/0.1.0 (Mac OS 15.0.0; arm64)"), None),
            (Some("claude-cli/garbage"), None),
            (Some("claude-cli"), None),
            (Some("\u{0}\u{1}//(("), None),
        ];
        for (ua, want) in cases {
            let got = versions.check(*ua, Locale::En);
            match want {
                None => assert_eq!(got, Ok(()), "{ua:?}"),
                Some((current, required, client_type, display)) => {
                    let reply = got.unwrap_err();
                    assert_eq!((reply.status, reply.code), (400, "client_upgrade_required"), "{ua:?}");
                    assert_eq!(
                        reply.message,
                        format!(
                            "Your {display} (v{current}) is outdated. Please upgrade to v{required} or later to continue using this service."
                        )
                    );
                    assert_eq!(reply.details["current_version"], *current);
                    assert_eq!(reply.details["required_version"], *required);
                    assert_eq!(reply.details["client_type"], *client_type);
                    assert_eq!(reply.details["client_display_name"], *display);
                }
            }
        }
    }

    #[test]
    fn no_ga_data_passes() {
        let versions = ga(&[("codex-cli", "0.169.0")]);
        assert_eq!(versions.check(Some("claude-cli/0.0.1 (external, cli)"), Locale::En), Ok(()));
        assert_eq!(GaVersions::default().check(Some("codex_exec/0.0.1"), Locale::En), Ok(()));
    }

    #[test]
    fn spec_body() {
        let reply = ga(&[("claude-cli", "2.0.0")]).check(Some("claude-cli/1.0.0 (external, cli)"), Locale::En).unwrap_err();
        let body: Value = serde_json::from_slice(&reply.body(Dialect::Anthropic, "req")).unwrap();
        assert_eq!(
            body["error"],
            json!({
                "type": "client_upgrade_required",
                "code": "client_upgrade_required",
                "message": "Your Claude Code CLI (v1.0.0) is outdated. Please upgrade to v2.0.0 or later to continue using this service.",
                "current_version": "1.0.0",
                "required_version": "2.0.0",
                "client_type": "claude-cli",
                "client_display_name": "Claude Code CLI",
            })
        );
    }

    #[test]
    fn message_in_chinese() {
        let reply = ga(&[("gemini-cli", "0.22.5")]).check(Some("GeminiCLI/0.22.0/m"), Locale::ZhCn).unwrap_err();
        assert_eq!(reply.message, "您的 Gemini CLI（v0.22.0）版本过旧，请升级到 v0.22.5 或更高版本后继续使用本服务。");
        assert_eq!(reply.code, "client_upgrade_required");
        assert_eq!(reply.details["client_display_name"], "Gemini CLI");
    }

    #[test]
    fn compile_skips_bad_versions_and_keeps_the_highest() {
        let list: Vec<ClientGaVersion> = [("claude-cli", "nope"), ("codex-cli", "0.1.0"), ("Codex-CLI ", "0.2.0"), ("gemini-cli", "")]
            .iter()
            .map(|(t, v)| ClientGaVersion { client_type: t.to_string(), version: v.to_string() })
            .collect();
        let (versions, warnings) = GaVersions::compile(&list);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("claude-cli") && warnings[0].contains("nope"), "{warnings:?}");
        assert_eq!(versions.check(Some("claude-cli/0.0.1"), Locale::En), Ok(()));
        assert!(versions.check(Some("codex_exec/0.1.5"), Locale::En).is_err());
        assert_eq!(versions.check(Some("codex_exec/0.2.0"), Locale::En), Ok(()));
    }
}
