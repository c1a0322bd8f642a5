//! Which coding client sent a request, read from its User-Agent
//! (`name/version …`). Type names follow Claude Code Hub and the control
//! plane's GA computation, so they line up with the snapshot's GA versions.

use semver::{BuildMetadata, Version};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// `claude-cli`, `claude-vscode`, `codex-cli`, `gemini-cli` or `factory-cli`.
    pub client_type: String,
    /// e.g. `Claude Code CLI`.
    pub display_name: &'static str,
    pub version: Version,
}

/// Client type and version of a User-Agent; `None` for unknown clients and
/// unparsable versions.
pub fn parse(user_agent: &str) -> Option<ClientInfo> {
    let client_type = client_type(user_agent)?;
    let (_, rest) = user_agent.trim().split_once('/')?;
    // `GeminiCLI/0.22.5/gemini-3-pro-preview (…)`: the version ends at the next `/` too.
    let version = rest.split(|c: char| c == '/' || c == '(' || c == ';' || c.is_whitespace()).next()?;
    Some(ClientInfo {
        client_type: client_type.to_string(),
        display_name: display_name(client_type),
        version: parse_version(version)?,
    })
}

/// The client type of a User-Agent, from its first `name/version` product.
///
/// `claude-cli/… (external, claude-vscode)` is the VS Code extension;
/// `codex_exec`, `codex_cli_rs`, `codex_tui`, `codex_vscode` are all Codex;
/// `GeminiCLI` and `GeminiCLI-tui` are Gemini CLI; `factory-cli` and `droid`
/// are Factory's Droid. `Codex Desktop/…` is not: it numbers its versions
/// apart from the CLI (the control plane's GA computation skips it too).
pub fn client_type(user_agent: &str) -> Option<&'static str> {
    let user_agent = user_agent.trim();
    let (name, _) = user_agent.split_whitespace().next()?.split_once('/')?;
    let name = normalize(name);
    if name == "claudecli" {
        if user_agent.to_ascii_lowercase().contains("claude-vscode") {
            Some("claude-vscode")
        } else {
            Some("claude-cli")
        }
    } else if name.starts_with("codex") {
        Some("codex-cli")
    } else if name.starts_with("geminicli") {
        Some("gemini-cli")
    } else if name == "factorycli" || name == "droid" {
        Some("factory-cli")
    } else {
        None
    }
}

/// Human name of a client type, as shown in upgrade messages.
pub fn display_name(client_type: &str) -> &'static str {
    match client_type {
        "claude-cli" => "Claude Code CLI",
        "claude-vscode" => "Claude Code VSCode Extension",
        "codex-cli" => "Codex CLI",
        "gemini-cli" => "Gemini CLI",
        "factory-cli" => "Droid CLI",
        _ => "client",
    }
}

/// Lowercase with `-` and `_` removed: `Gemini_CLI` and `gemini-cli` are the same.
pub fn normalize(s: &str) -> String {
    s.chars().filter(|c| *c != '-' && *c != '_').flat_map(char::to_lowercase).collect()
}

/// Semver, also `1.2` as `1.2.0` and `1` as `1.0.0`; build metadata dropped
/// so it never affects comparisons.
pub fn parse_version(text: &str) -> Option<Version> {
    let text = text.trim();
    let mut version = match Version::parse(text) {
        Ok(v) => v,
        Err(_) => {
            let parts: Vec<&str> = text.split('.').collect();
            if parts.len() > 2 || !parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) {
                return None;
            }
            let number = |i: usize| parts.get(i).map_or(Some(0), |p| p.parse::<u64>().ok());
            Version::new(number(0)?, number(1)?, number(2)?)
        }
    };
    version.build = BuildMetadata::EMPTY;
    Some(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_user_agents() {
        let cases = [
            ("claude-cli/2.1.197 (external, sdk-cli)", "claude-cli", "Claude Code CLI", "2.1.197"),
            ("claude-cli/2.0.32 (external, cli)", "claude-cli", "Claude Code CLI", "2.0.32"),
            ("claude-cli/2.0.20", "claude-cli", "Claude Code CLI", "2.0.20"),
            ("claude-cli/2.0.1 (external, claude-vscode)", "claude-vscode", "Claude Code VSCode Extension", "2.0.1"),
            (
                "claude-cli/2.0.31 (external, claude-vscode, agent-sdk/0.1.30)",
                "claude-vscode",
                "Claude Code VSCode Extension",
                "2.0.31",
            ),
            ("codex_exec/0.169.0 (Ubuntu 24.4.0; x86_64) unknown", "codex-cli", "Codex CLI", "0.169.0"),
            ("codex_cli_rs/0.50.0 (Mac OS 15.0.0; arm64) iTerm.app/3.5.0", "codex-cli", "Codex CLI", "0.50.0"),
            ("codex_vscode/0.60.1 (Windows 10.0.26100; x86_64) vscode/1.105.1", "codex-cli", "Codex CLI", "0.60.1"),
            ("GeminiCLI-tui/0.61.0/gemini-3-pro-preview (linux; x64; terminal)", "gemini-cli", "Gemini CLI", "0.61.0"),
            ("GeminiCLI/0.22.5/gemini-3-pro-preview (darwin; arm64)", "gemini-cli", "Gemini CLI", "0.22.5"),
            ("factory-cli/0.19.3", "factory-cli", "Droid CLI", "0.19.3"),
            ("FactoryCLI/1.0", "factory-cli", "Droid CLI", "1.0.0"),
            ("  claude-cli/2.1.0-beta.1 (external, cli)", "claude-cli", "Claude Code CLI", "2.1.0-beta.1"),
            ("claude-cli/2.1.0+build.7 (external, cli)", "claude-cli", "Claude Code CLI", "2.1.0"),
            ("claude-cli/2.1", "claude-cli", "Claude Code CLI", "2.1.0"),
        ];
        for (ua, client_type, display, version) in cases {
            let info = parse(ua).unwrap_or_else(|| panic!("{ua} should parse"));
            assert_eq!(info.client_type, client_type, "{ua}");
            assert_eq!(info.display_name, display, "{ua}");
            assert_eq!(info.version, Version::parse(version).unwrap(), "{ua}");
        }
    }

    #[test]
    fn unknown_or_unparsable_is_none() {
        let cases = [
            "",
            "   ",
            "claude-cli",
            "claude-cli/",
            "claude-cli/latest",
            "claude-cli/1.2.3.4",
            "claude-cli/v1.2.3",
            "claude-cli/1..2",
            "claude-cli/99999999999999999999999.0.0",
            "curl/8.0.1",
            "Mozilla/5.0 (X11; Linux x86_64)",
            "anthropic-sdk-typescript/1.0.0",
            "android/1.0.0",
            "/1.0.0",
            "claude-cli/é",
            "Codex Desktop/1.2.3 (Mac OS 15.0.0; arm64)",
        ];
        for ua in cases {
            assert_eq!(parse(ua), None, "{ua:?}");
        }
    }

    #[test]
    fn client_type_needs_no_version() {
        assert_eq!(client_type("codex_exec/dev"), Some("codex-cli"));
        assert_eq!(client_type("droid/x"), Some("factory-cli"));
        assert_eq!(client_type("codex_exec"), None);
    }

    #[test]
    fn normalizes_case_dashes_and_underscores() {
        assert_eq!(normalize("My_Special-CLI"), "myspecialcli");
        assert_eq!(normalize("-_-"), "");
    }
}
