//! The real Codex CLI and Gemini CLI, driven offline against a stack: each
//! runs in its own HOME under the test's log folder (never the user's), with
//! the configuration SPEC §8 describes pointing it at the gateway, and the
//! hubgate key as its API key.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use hubgate_mock_provider::AnthropicUsage;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tokio::process::Command;

use crate::pricing::{decimal, Price};
use crate::Stack;

/// How long one CLI run may take before the test fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// A fresh HOME (plus a working directory in it) for one client.
fn fresh_home(stack: &Stack, name: &str) -> Result<PathBuf> {
    let home = stack.log_dir.join(format!("{name}-home"));
    if home.exists() {
        std::fs::remove_dir_all(&home)?;
    }
    std::fs::create_dir_all(home.join("work"))?;
    Ok(home)
}

/// `program args…` with only PATH, HOME and `env` set, in `home/work`,
/// stdin closed; its output once it exits.
async fn run(program: &Path, args: &[&str], home: &Path, env: &[(&str, String)]) -> Result<Output> {
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("NO_COLOR", "1")
        .current_dir(home.join("work"))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let out = tokio::time::timeout(RUN_TIMEOUT, command.output())
        .await
        .map_err(|_| anyhow!("{} did not finish within {}s", program.display(), RUN_TIMEOUT.as_secs()))?
        .with_context(|| format!("running {}", program.display()))?;
    std::fs::write(home.join("stdout.txt"), &out.stdout)?;
    std::fs::write(home.join("stderr.txt"), &out.stderr)?;
    Ok(out)
}

/// `codex exec --skip-git-repo-check <prompt>` with a `~/.codex/config.toml`
/// whose model provider is the gateway (Responses API, key in
/// `HUBGATE_API_KEY`); Codex ignores `OPENAI_BASE_URL`.
pub async fn codex_exec(codex: &Path, stack: &Stack, key: &str, model: &str, prompt: &str) -> Result<Output> {
    let home = fresh_home(stack, "codex")?;
    std::fs::create_dir_all(home.join(".codex"))?;
    let config = format!(
        "model = \"{model}\"\nmodel_provider = \"hubgate\"\n\n[model_providers.hubgate]\nname = \"hubgate\"\n\
         base_url = \"{}/v1\"\nenv_key = \"HUBGATE_API_KEY\"\nwire_api = \"responses\"\n",
        stack.gateway_url()
    );
    std::fs::write(home.join(".codex/config.toml"), config)?;
    run(codex, &["exec", "--skip-git-repo-check", prompt], &home, &[("HUBGATE_API_KEY", key.to_string())]).await
}

/// `gemini --skip-trust [-m <model>] -p <prompt>` with API-key auth chosen
/// in `~/.gemini/settings.json`, the gateway as `GOOGLE_GEMINI_BASE_URL` and
/// usage statistics off (they would go to Google).
pub async fn gemini_p(gemini: &Path, stack: &Stack, key: &str, model: Option<&str>, prompt: &str) -> Result<Output> {
    let home = fresh_home(stack, "gemini")?;
    std::fs::create_dir_all(home.join(".gemini"))?;
    let settings = json!({
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "privacy": {"usageStatisticsEnabled": false},
    });
    std::fs::write(home.join(".gemini/settings.json"), settings.to_string())?;
    let mut args = vec!["--skip-trust"];
    if let Some(m) = model {
        args.extend(["-m", m]);
    }
    args.extend(["-p", prompt]);
    let env = [("GEMINI_API_KEY", key.to_string()), ("GOOGLE_GEMINI_BASE_URL", stack.gateway_url())];
    run(gemini, &args, &home, &env).await
}

/// Panics with the client's output unless it exited 0.
#[track_caller]
pub fn assert_succeeded(name: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{name} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends `request()` until the gateway answers 200: the filter has the
/// policy with the provider just created. The mock then forgets the probes.
pub async fn wait_until_routed(stack: &Stack, request: impl Fn() -> reqwest::RequestBuilder) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let resp = request().send().await?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if status == 200 {
            stack.mock.clear_requests();
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the gateway never routed to the new provider: {status} {body}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The audit rows of `user_id` on `endpoint`, once there are `count` of them
/// (events are flushed asynchronously), or what there is after 15 s.
pub async fn audit_rows(stack: &Stack, user_id: i64, endpoint: &str, count: usize) -> Result<Vec<Value>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let rows: Vec<Value> = stack
            .admin
            .requests(&[("user_id", user_id.to_string()), ("page_size", "100".to_string())])
            .await?
            .into_iter()
            .filter(|r| r["endpoint"] == endpoint)
            .collect();
        if rows.len() >= count || tokio::time::Instant::now() > deadline {
            return Ok(rows);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An audit row billed exactly: status 200, the mock's token counts, cost
/// = tokens × `price` × `multiplier` to the last decimal, nothing flagged.
#[track_caller]
pub fn assert_billed_exactly(row: &Value, usage: &AnthropicUsage, price: &Price, multiplier: Decimal) {
    assert_eq!(row["status"], 200, "{row}");
    assert_eq!(row["flags"], json!([]), "usage and price both known, nothing estimated: {row}");
    assert_eq!(row["input_tokens"], usage.input_tokens, "{row}");
    assert_eq!(row["output_tokens"], usage.output_tokens, "{row}");
    assert_eq!(row["cache_read_tokens"], usage.cache_read_input_tokens, "{row}");
    assert_eq!(row["cache_creation_5m_tokens"], usage.cache_creation_5m_input_tokens, "{row}");
    assert_eq!(row["cache_creation_1h_tokens"], usage.cache_creation_1h_input_tokens, "{row}");
    let expected = price.cost(usage, multiplier);
    assert!(expected > Decimal::ZERO, "a price of zero proves nothing: {price:?}");
    let billed = decimal(&row["cost_usd"]).unwrap_or_else(|e| panic!("{e}: {row}"));
    assert_eq!(billed.normalize(), expected, "cost: {row}");
    let stored = decimal(&row["cost_multiplier"]).unwrap_or_else(|e| panic!("{e}: {row}"));
    assert_eq!(stored.normalize(), multiplier.normalize(), "{row}");
    assert!(row["blocked_by"].is_null(), "{row}");
}
