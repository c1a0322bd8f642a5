//! User-Agent handling: `user_agent::parse`, `client_type`, `normalize`,
//! `parse_version`, the client version guard (`GaVersions::check`) and the
//! client allow/block lists (`ClientRule::check`) on an arbitrary
//! User-Agent (and, for the Claude Code preset, a body's metadata).
//!
//! Input: selector byte (bit 0: zh-CN locale, bits 1-2: which rule), the
//! User-Agent line, then a request body (for `metadata.user_id`).
#![no_main]

use hubgate_core::api::Endpoint;
use hubgate_core::guards::client::ClientRule;
use hubgate_core::guards::client_version::GaVersions;
use hubgate_core::headers::Headers;
use hubgate_core::locale::Locale;
use hubgate_core::request::{inspect, RequestInfo};
use hubgate_core::user_agent::{client_type, normalize, parse, parse_version};
use hubgate_fuzz::{check, check_reply, lossy, Input};
use hubgate_wire::ClientGaVersion;
use libfuzzer_sys::fuzz_target;

const TYPES: [&str; 5] = ["claude-cli", "claude-vscode", "codex-cli", "gemini-cli", "factory-cli"];

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let selector = input.byte();
    let locale = if selector & 1 == 1 { Locale::ZhCn } else { Locale::En };
    let ua = lossy(input.line());
    let body = input.rest();

    let kind = client_type(&ua);
    check(kind.is_none_or(|k| TYPES.contains(&k)), "unknown client type", &(&ua, kind));
    let normalized = normalize(&ua);
    check(!normalized.contains(['-', '_']), "normalize left a separator", &(&ua, &normalized));
    check(normalize(&normalized) == normalized, "normalize is not idempotent", &(&ua, &normalized));
    if let Some(info) = parse(&ua) {
        check(Some(info.client_type.as_str()) == kind, "parse and client_type disagree", &(&ua, &info));
        check(info.version.build.is_empty(), "build metadata kept", &(&ua, &info));
        check(parse_version(&info.version.to_string()).as_ref() == Some(&info.version), "version does not round-trip", &(&ua, &info));
    }
    let _ = parse_version(&ua);

    let ga = |v: &str| TYPES.iter().map(|t| ClientGaVersion { client_type: t.to_string(), version: v.to_string() }).collect::<Vec<_>>();
    for list in [ga("2.0.14"), ga("0.0.0"), ga("999.0.0")] {
        let (versions, _) = GaVersions::compile(&list);
        match versions.check(Some(&ua), locale) {
            Ok(()) => {}
            Err(reply) => {
                check(parse(&ua).is_some(), "an unknown client was refused", &(&ua, &reply));
                check_reply(&reply, "r");
            }
        }
    }

    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let rules = [
        ClientRule::compile(&s(&["claude-cli"]), &[]),
        ClientRule::compile(&[], &s(&["codex-cli", "gemini_cli", "curl"])),
        ClientRule::compile(&s(&["claude-code", "factory-cli", "my-tool/1"]), &s(&["claude-vscode"])),
        ClientRule::compile(&s(&["-"]), &[]),
    ];
    let rule = rules.get(usize::from((selector >> 1) & 3)).cloned().unwrap_or_else(|| ClientRule::compile(&[], &[]));
    let headers = Headers::new(vec![("user-agent".to_string(), ua.clone())]);
    let info = inspect(Endpoint::AnthropicMessages, "/v1/messages", body).unwrap_or_else(|_| RequestInfo {
        metadata_user_id: Some(lossy(body)),
        ..RequestInfo::default()
    });
    for endpoint in [Endpoint::AnthropicMessages, Endpoint::OpenAiResponses] {
        if let Err(reply) = rule.check(&headers, endpoint, &info, locale) {
            check(reply.status == 403 || reply.status == 400, "client refusal status", &reply);
            check_reply(&reply, "r");
        }
    }
});
