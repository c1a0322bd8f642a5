//! The policy and requests the benchmark configures and sends, shared by
//! `hubgate-bench` (through real Envoy) and `hubgate-chain-profile` (the
//! guard chain alone, natively, for profilers).

use anyhow::Result;
use serde_json::{json, Value};

use crate::claude_code::ClaudeCodeSession;

/// What a developer might ask; the 1 KB body is made of it.
pub const QUESTION: &str = "Please look at the failing test in src/parser.rs and explain why the tokenizer \
     skips the last line of the input when it does not end with a newline. ";

/// A small Claude Code-style request of about `size` bytes: one user turn
/// and `metadata.user_id`, what the `claude-cli` client preset needs.
pub fn small_body(model: &str, session: &ClaudeCodeSession, size: usize) -> Result<Vec<u8>> {
    let mut body = json!({
        "model": model,
        "max_tokens": 256,
        "stream": false,
        "messages": [{"role": "user", "content": ""}],
        "metadata": {"user_id": session.metadata_user_id()},
    });
    let base = serde_json::to_vec(&body)?.len();
    let text: String = QUESTION.chars().cycle().take(size.saturating_sub(base)).collect();
    body["messages"][0]["content"] = json!(text.trim_end());
    Ok(serde_json::to_vec(&body)?)
}

pub const CONTAINS_WORDS: usize = 1000;
pub const EXACT_WORDS: usize = 1000;

/// Deterministic lowercase letters, `len` of them.
pub fn token(seed: u64, len: usize) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect()
}

/// Regex sensitive words: secrets, credentials and personal data as an
/// admin would list them; most require a literal, a few do not. The last
/// one is what the readiness probe sends (see [`REGEX_PROBE`]).
pub const REGEXES: [&str; 50] = [
    r"AKIA[0-9A-Z]{16}",
    r"ASIA[0-9A-Z]{16}",
    r"(?i)aws_secret_access_key\s*=\s*[A-Za-z0-9/+=]{40}",
    r"ghp_[A-Za-z0-9]{36}",
    r"gho_[A-Za-z0-9]{36}",
    r"ghs_[A-Za-z0-9]{36}",
    r"github_pat_[A-Za-z0-9_]{40,}",
    r"glpat-[A-Za-z0-9_-]{20}",
    r"xox[baprs]-[A-Za-z0-9-]{10,}",
    r"sk-ant-api\d{2}-[A-Za-z0-9_-]{20,}",
    r"sk-proj-[A-Za-z0-9_-]{20,}",
    r"AIza[0-9A-Za-z_-]{35}",
    r"ya29\.[0-9A-Za-z_-]{20,}",
    r"-----BEGIN (RSA |EC |OPENSSH |DSA )?PRIVATE KEY-----",
    r"-----BEGIN PGP PRIVATE KEY BLOCK-----",
    r"sk_live_[0-9a-zA-Z]{24,}",
    r"rk_live_[0-9a-zA-Z]{24,}",
    r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}",
    r"hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+",
    r"discord(app)?\.com/api/webhooks/\d+/[A-Za-z0-9_-]+",
    r"npm_[A-Za-z0-9]{36}",
    r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}",
    r"dop_v1_[a-f0-9]{64}",
    r"shpat_[a-fA-F0-9]{32}",
    r"hf_[A-Za-z0-9]{34}",
    r"r8_[A-Za-z0-9]{37}",
    r"xai-[A-Za-z0-9]{32,}",
    r"gsk_[A-Za-z0-9]{48,}",
    r"AccountKey=[A-Za-z0-9+/=]{40,}",
    r"SharedAccessSignature=[^;\s]+",
    r"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",
    r"(?i)password\s*[:=]\s*\S{6,}",
    r"(?i)api[-_ ]?token\s*[:=]\s*[A-Za-z0-9]{16,}",
    r"(?i)client[-_]secret\s*[:=]\s*\S{8,}",
    r"(?i)bearer\s+[A-Za-z0-9._-]{30,}",
    r"mongodb(\+srv)?://[^:\s]+:[^@\s]+@",
    r"postgres(ql)?://[^:\s]+:[^@\s]+@",
    r"mysql://[^:\s]+:[^@\s]+@",
    r"redis://:[^@\s]+@",
    r"amqps?://[^:\s]+:[^@\s]+@",
    r"(?i)internal[-_ ]only[-_ ]\d+",
    r"(?i)codename[-_ ]?(falcon|osprey|kestrel)\d*",
    r"(?i)project[-_ ]nightjar[-_ ]v\d+",
    r"(?i)do[-_ ]not[-_ ]distribute[-_ ]\d{4}",
    r"(?i)employee[-_ ]id[:=]\s*E\d{6}",
    // No required literal: these run over every checked text.
    r"\b\d{3}-\d{2}-\d{4}\b",
    r"\b4\d{3}[ -]?\d{4}[ -]?\d{4}[ -]?\d{4}\b",
    r"\b5[1-5]\d{2}[ -]?\d{4}[ -]?\d{4}[ -]?\d{4}\b",
    r"\b(?:\d{1,3}\.){3}\d{1,3}:\d{2,5}\b",
    r"secret[-_ ]?key\d+",
];

/// Matches the last regex, so once it is refused the filter has every word.
pub const REGEX_PROBE: &str = "the deploy script still prints secret_key42 in its log";

/// Sensitive words: `contains` and `exact` ones generated (none occurring in
/// `bodies`), then [`REGEXES`].
pub fn sensitive_words(bodies: &[&[u8]]) -> Vec<(String, &'static str)> {
    let haystacks: Vec<String> = bodies.iter().map(|b| String::from_utf8_lossy(b).to_lowercase()).collect();
    let unseen = |w: &str| !haystacks.iter().any(|h| h.contains(w));
    let mut words = Vec::new();
    let mut seed = 0u64;
    while words.len() < CONTAINS_WORDS {
        seed += 1;
        let word = token(seed, 6 + (seed % 9) as usize);
        if unseen(&word) {
            words.push((word, "contains"));
        }
    }
    for i in 0..EXACT_WORDS as u64 {
        words.push((format!("{} {}", token(50_000 + i, 5), token(90_000 + i, 7)), "exact"));
    }
    words.extend(REGEXES.iter().map(|r| (r.to_string(), "regex")));
    words
}

/// Request filters as an admin might set them up, none of them editing the
/// bench's bodies (so only their scan is measured): header removes and sets
/// (these apply to every request), and body `text_replace` redactions of
/// internal host names, paths, tickets and addresses. Four are bound to
/// the provider, so both the global and the provider-bound pass run.
pub fn request_filters(provider_id: i64) -> Vec<Value> {
    let mut filters = vec![
        json!({"name": "drop-browser-access", "scope": "header", "action": "remove",
               "target": "anthropic-dangerous-direct-browser-access"}),
        json!({"name": "drop-stainless-timeout", "scope": "header", "action": "remove", "target": "x-stainless-timeout"}),
        json!({"name": "tag-gateway", "scope": "header", "action": "set", "target": "x-gateway", "replacement": "hubgate"}),
        json!({"name": "tag-org", "scope": "header", "action": "set", "target": "x-org-id", "replacement": "acme-eng",
               "binding": "providers", "provider_ids": [provider_id]}),
    ];
    let hosts = [
        "build01.corp.acme.internal",
        "ci-runner.corp.acme.internal",
        "vault.corp.acme.internal",
        "grafana.corp.acme.internal",
        "git.corp.acme.internal",
        "artifactory.corp.acme.internal",
        "db-primary.prod.acme.internal",
        "kafka-3.prod.acme.internal",
        "ldap.corp.acme.internal",
        "payroll.hr.acme.internal",
    ];
    for host in hosts {
        filters.push(json!({"name": format!("redact-{host}"), "scope": "body", "action": "text_replace",
                            "match_type": "contains", "target": host, "replacement": "[internal-host]"}));
    }
    let regexes = [
        (r"(?i)\b[a-z0-9-]+\.corp\.acme\.internal\b", "[internal-host]"),
        (r"/home/[a-z]+/\.ssh/id_[a-z0-9]+", "[ssh-key]"),
        (r"(?i)jira\.acme\.com/browse/[A-Z]+-\d+", "[ticket]"),
        (r"\b10\.20\.\d{1,3}\.\d{1,3}\b", "[internal-ip]"),
    ];
    for (pattern, replacement) in regexes {
        filters.push(json!({"name": format!("redact-{replacement}"), "scope": "body", "action": "text_replace",
                            "match_type": "regex", "target": pattern, "replacement": replacement}));
    }
    for text in ["print the production database password", "show me the payroll export"] {
        filters.push(json!({"name": format!("drop-{}", text.replace(' ', "-")), "scope": "body",
                            "action": "text_replace", "match_type": "exact", "target": text,
                            "replacement": "[removed by policy]"}));
    }
    // The last three body filters run after provider selection.
    let count = filters.len();
    for (i, f) in filters.iter_mut().enumerate() {
        f["priority"] = json!(i * 10);
        if i + 3 >= count {
            f["binding"] = json!("providers");
            f["provider_ids"] = json!([provider_id]);
        }
    }
    filters
}

