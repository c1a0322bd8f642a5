//! Requests shaped like the ones Claude Code sends: the same headers, several
//! `system` text blocks with cache control, 24 tool schemas, `metadata.user_id`
//! as a JSON string, ~115 KB in all (SPEC §8).

use serde_json::{json, Value};

pub const USER_AGENT: &str = "claude-cli/2.1.197 (external, sdk-cli)";
pub const ANTHROPIC_BETA: &str =
    "claude-code-20250219,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14";
/// The size of a real Claude Code first turn.
pub const TARGET_BYTES: usize = 115 * 1024;

/// The identity fields Claude Code puts into `metadata.user_id`.
#[derive(Debug, Clone)]
pub struct ClaudeCodeSession {
    pub device_id: String,
    pub account_uuid: String,
    pub session_id: String,
}

impl ClaudeCodeSession {
    pub fn random() -> ClaudeCodeSession {
        ClaudeCodeSession {
            device_id: crate::random_hex(64),
            account_uuid: crate::uuid_v4(),
            session_id: crate::uuid_v4(),
        }
    }

    /// `metadata.user_id`: a JSON object serialised into a string (Claude Code ≥ 2.1.78).
    pub fn metadata_user_id(&self) -> String {
        json!({"device_id": self.device_id, "account_uuid": self.account_uuid, "session_id": self.session_id})
            .to_string()
    }
}

/// Request headers, except the credential.
pub fn headers(session: &ClaudeCodeSession) -> Vec<(&'static str, String)> {
    vec![
        ("user-agent", USER_AGENT.to_string()),
        ("anthropic-beta", ANTHROPIC_BETA.to_string()),
        ("anthropic-version", "2023-06-01".to_string()),
        ("anthropic-dangerous-direct-browser-access", "true".to_string()),
        ("x-app", "cli".to_string()),
        ("X-Claude-Code-Session-Id", session.session_id.clone()),
        ("content-type", "application/json".to_string()),
        ("accept", "application/json".to_string()),
        ("x-stainless-lang", "js".to_string()),
        ("x-stainless-package-version", "0.70.0".to_string()),
        ("x-stainless-os", "Linux".to_string()),
        ("x-stainless-arch", "x64".to_string()),
        ("x-stainless-runtime", "node".to_string()),
        ("x-stainless-runtime-version", "v22.19.0".to_string()),
        ("x-stainless-retry-count", "0".to_string()),
        ("x-stainless-timeout", "600".to_string()),
    ]
}

/// Parameter name, JSON type, required.
type Param = (&'static str, &'static str, bool);

const TOOLS: [(&str, &[Param]); 24] = [
    ("Task", &[("description", "string", true), ("prompt", "string", true), ("subagent_type", "string", true)]),
    ("Bash", &[("command", "string", true), ("timeout", "number", false), ("description", "string", false), ("run_in_background", "boolean", false)]),
    ("Glob", &[("pattern", "string", true), ("path", "string", false)]),
    ("Grep", &[("pattern", "string", true), ("path", "string", false), ("glob", "string", false), ("output_mode", "string", false), ("-i", "boolean", false), ("-n", "boolean", false), ("head_limit", "number", false), ("multiline", "boolean", false)]),
    ("ExitPlanMode", &[("plan", "string", true)]),
    ("Read", &[("file_path", "string", true), ("offset", "number", false), ("limit", "number", false)]),
    ("Edit", &[("file_path", "string", true), ("old_string", "string", true), ("new_string", "string", true), ("replace_all", "boolean", false)]),
    ("Write", &[("file_path", "string", true), ("content", "string", true)]),
    ("NotebookEdit", &[("notebook_path", "string", true), ("cell_id", "string", false), ("new_source", "string", true), ("cell_type", "string", false), ("edit_mode", "string", false)]),
    ("WebFetch", &[("url", "string", true), ("prompt", "string", true)]),
    ("TodoWrite", &[("todos", "array", true)]),
    ("WebSearch", &[("query", "string", true), ("allowed_domains", "array", false), ("blocked_domains", "array", false)]),
    ("BashOutput", &[("bash_id", "string", true), ("filter", "string", false)]),
    ("KillShell", &[("shell_id", "string", true)]),
    ("Skill", &[("command", "string", true)]),
    ("SlashCommand", &[("command", "string", true)]),
    ("AskUserQuestion", &[("questions", "array", true)]),
    ("EnterPlanMode", &[("reason", "string", false)]),
    ("LS", &[("path", "string", true), ("ignore", "array", false)]),
    ("MultiEdit", &[("file_path", "string", true), ("edits", "array", true)]),
    ("ListMcpResourcesTool", &[("server", "string", false)]),
    ("ReadMcpResourceTool", &[("server", "string", true), ("uri", "string", true)]),
    ("mcp__ide__getDiagnostics", &[("uri", "string", false)]),
    ("mcp__ide__executeCode", &[("code", "string", true)]),
];

const PROSE: [&str; 8] = [
    "Use this tool when the task at hand clearly calls for it, and prefer the specialised tools over shell commands for reading, searching and editing files.",
    "Always use absolute paths; relative paths are resolved against the working directory, which may change between calls.",
    "When several independent pieces of information are needed, batch the tool calls together so that they run in parallel.",
    "Never guess file contents: read the file first, then make the smallest edit that accomplishes the change the user asked for.",
    "Output longer than the limit is truncated; narrow the query with a pattern, an offset or a limit rather than reading everything.",
    "Respect the user's repository conventions: match the existing style, naming, imports and test layout of the surrounding code.",
    "If a command fails, read its error output carefully before retrying, and explain to the user what went wrong and what you changed.",
    "Keep the user informed with short status updates, and stop to ask when the request is ambiguous or the change is destructive.",
];

/// Deterministic instruction-like text of about `bytes` bytes.
fn prose(seed: usize, bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + 200);
    let mut i = seed;
    while out.len() < bytes {
        out.push_str(PROSE[i % PROSE.len()]);
        out.push(if i % 5 == 4 { '\n' } else { ' ' });
        i += 1;
    }
    out
}

fn tool_schema(index: usize, name: &str, params: &[Param]) -> Value {
    let mut properties = serde_json::Map::new();
    for (p, ty, _) in params {
        let mut schema = json!({"type": ty, "description": prose(index + p.len(), 160)});
        if *ty == "array" {
            schema["items"] = json!({"type": "object", "additionalProperties": true});
        }
        properties.insert(p.to_string(), schema);
    }
    let required: Vec<&str> = params.iter().filter(|(_, _, r)| *r).map(|(p, _, _)| *p).collect();
    json!({
        "name": name,
        "description": prose(index, 1800),
        "input_schema": {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
            "$schema": "http://json-schema.org/draft-07/schema#",
        },
    })
}

/// A Claude Code first turn for `model`, padded to about [`TARGET_BYTES`].
pub fn body(model: &str, session: &ClaudeCodeSession, stream: bool) -> Value {
    let tools: Vec<Value> =
        TOOLS.iter().enumerate().map(|(i, (name, params))| tool_schema(i, name, params)).collect();
    let reminder = format!(
        "<system-reminder>\nAs you answer the user's questions, you can use the following context:\n# claudeMd\n{}\n</system-reminder>",
        prose(3, 4000)
    );
    let mut request = json!({
        "model": model,
        "max_tokens": 32000,
        "stream": stream,
        "temperature": 1,
        "system": [
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.",
             "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": format!("Here is useful information about the environment you are running in:\n<env>\nWorking directory: /home/dev/project\nIs directory a git repo: Yes\nPlatform: linux\nToday's date: 2026-01-15\n</env>\n{}", prose(5, 2000))},
        ],
        "messages": [{
            "role": "user",
            "content": [
                {"type": "text", "text": reminder},
                {"type": "text", "text": "Explain what this repository does, in two sentences.",
                 "cache_control": {"type": "ephemeral"}},
            ],
        }],
        "tools": tools,
        "metadata": {"user_id": session.metadata_user_id()},
    });
    // The long instructions block takes whatever is left to reach the target.
    let size = serde_json::to_vec(&request).map(|v| v.len()).unwrap_or(0);
    let instructions = prose(1, TARGET_BYTES.saturating_sub(size));
    request["system"][1]["text"] = Value::String(instructions);
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_claude_code_sized_and_shaped() {
        let session = ClaudeCodeSession::random();
        let b = body("claude-sonnet-4-5", &session, true);
        let size = serde_json::to_vec(&b).unwrap().len();
        assert!((110 * 1024..=120 * 1024).contains(&size), "{size}");
        assert_eq!(b["tools"].as_array().unwrap().len(), 24);
        assert!(b["system"].as_array().unwrap().len() >= 3);
        let user_id: Value = serde_json::from_str(b["metadata"]["user_id"].as_str().unwrap()).unwrap();
        assert_eq!(user_id["session_id"], session.session_id.as_str());
        assert_eq!(b["stream"], true);
    }
}
