//! One complete, isolated hubgate deployment per test: a fresh database, the
//! control plane process, the mock provider, and a real Envoy loading the
//! built filter. Everything is torn down on drop.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use hubgate_mock_provider::{AnthropicUsage, MockConfig, MockHandle, MockProvider};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use crate::admin::{id_of, AdminClient, CreatedKey};
use crate::control_plane::{self, ControlPlane};
use crate::db::TestDb;
use crate::envoy::{self, Envoy};
use crate::paths;
use crate::pricing::{decimal, Price};
use crate::process::tail_section;

#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Names the log folder `target/e2e-logs/<name>/`; use the test's name.
    pub name: String,
    pub poll_interval_ms: u64,
    /// Extra or overriding fields of the filter's plugin configuration.
    pub plugin_config: Map<String, Value>,
    /// Create a `claude` provider pointing at the mock and wait until the
    /// gateway routes to it.
    pub create_provider: bool,
    pub cost_multiplier: Decimal,
    /// Keep every request the mock receives (off for the benchmark).
    pub record_requests: bool,
    pub envoy_log_level: String,
    pub mock_usage: AnthropicUsage,
    /// CA bundle provider certificates must chain to.
    pub upstream_ca: String,
    /// Values for the Envoy template's placeholders with defaults (e.g.
    /// `REQUEST_TIMEOUT`, `XFF_TRUSTED_HOPS`).
    pub envoy_vars: Vec<(&'static str, String)>,
    /// Environment settings of the control plane process.
    pub control_plane_env: Vec<(&'static str, String)>,
    /// The PostgreSQL server to create the stack's database on (an admin
    /// connection URL); `None`: `DATABASE_URL` or the default.
    pub database_admin_url: Option<String>,
}

impl StackOptions {
    pub fn new(name: &str) -> StackOptions {
        StackOptions {
            name: name.to_string(),
            poll_interval_ms: 300,
            plugin_config: Map::new(),
            create_provider: true,
            cost_multiplier: Decimal::new(15, 1),
            record_requests: true,
            envoy_log_level: "info".to_string(),
            mock_usage: AnthropicUsage::default(),
            upstream_ca: crate::SYSTEM_CA_BUNDLE.to_string(),
            envoy_vars: Vec::new(),
            control_plane_env: Vec::new(),
            database_admin_url: None,
        }
    }

    pub fn envoy_log_level(mut self, level: &str) -> Self {
        self.envoy_log_level = level.to_string();
        self
    }

    /// Fills one of the Envoy template's placeholders that have defaults.
    pub fn envoy_var(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.envoy_vars.push((name, value.into()));
        self
    }

    /// Sets one of the control plane's environment settings.
    pub fn control_plane_env(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.control_plane_env.push((name, value.into()));
        self
    }

    pub fn poll_interval_ms(mut self, ms: u64) -> Self {
        self.poll_interval_ms = ms;
        self
    }

    /// Sets one field of the plugin configuration (e.g. `max_body_bytes`).
    pub fn plugin(mut self, field: &str, value: Value) -> Self {
        self.plugin_config.insert(field.to_string(), value);
        self
    }

    /// Trust only this CA (PEM file) for provider certificates.
    pub fn upstream_ca(mut self, pem_file: &str) -> Self {
        self.upstream_ca = pem_file.to_string();
        self
    }

    pub fn without_provider(mut self) -> Self {
        self.create_provider = false;
        self
    }
}

pub struct Stack {
    pub name: String,
    pub log_dir: PathBuf,
    pub admin: AdminClient,
    pub admin_token: String,
    pub internal_token: String,
    pub poll_interval: Duration,
    /// The provider created at start (`None` with `without_provider`).
    pub provider: Option<Value>,
    pub cost_multiplier: Decimal,
    /// Client for the gateway (no proxy, no pooling surprises).
    pub http: reqwest::Client,
    pub mock: MockHandle,
    pub envoy: Envoy,
    pub control_plane: ControlPlane,
    control_plane_env: Vec<(&'static str, String)>,
    /// What Envoy was started with, for more instances of it.
    envoy_vars: Vec<(&'static str, String)>,
    envoy_log_level: String,
    // Dropped last, after the processes using it are gone.
    db: TestDb,
}

impl Stack {
    /// Starts everything; fails (never skips) when a prerequisite is missing.
    pub async fn start(options: StackOptions) -> Result<Stack> {
        let log_dir = paths::fresh_log_dir(&options.name)?;
        Self::start_in(options, log_dir.clone())
            .await
            .with_context(|| format!("starting the e2e stack (logs in {})", log_dir.display()))
    }

    async fn start_in(options: StackOptions, log_dir: PathBuf) -> Result<Stack> {
        let wasm = paths::wasm()?;
        let envoy_bin = paths::envoy()?;
        let cp_bin = paths::control_plane()?;

        let admin_url = options.database_admin_url.clone().unwrap_or_else(paths::database_admin_url);
        let db = TestDb::create(&admin_url).await?;
        let internal_token = crate::random_token(32);
        let admin_token = crate::random_token(32);
        let control_plane =
            control_plane::start(
            &cp_bin,
            &db.url,
            &internal_token,
            &log_dir.join("control-plane.log"),
            &options.control_plane_env,
        )
        .await?;
        control_plane::bootstrap(&cp_bin, &db.url, &admin_token, &log_dir.join("bootstrap.log")).await?;
        let admin = AdminClient::new(&control_plane.url(), &admin_token);

        let mut mock_config = MockConfig::new(format!("sk-ant-mock-{}", crate::random_token(24)));
        mock_config.record_requests = options.record_requests;
        mock_config.usage = options.mock_usage;
        let mock = MockProvider::start(mock_config).await.context("starting the mock provider")?;

        let mut plugin = Map::new();
        plugin.insert("poll_interval_ms".into(), json!(options.poll_interval_ms));
        plugin.extend(options.plugin_config.clone());
        let mut vars = vec![
            ("LISTEN_ADDRESS", "127.0.0.1".to_string()),
            ("CP_HOST", control_plane.internal_addr.ip().to_string()),
            ("CP_PORT", control_plane.internal_addr.port().to_string()),
            ("WASM_PATH", wasm.display().to_string()),
            ("UPSTREAM_CA", options.upstream_ca.clone()),
            ("PLUGIN_CONFIG", Value::Object(plugin).to_string()),
        ];
        vars.extend(options.envoy_vars.iter().cloned());
        let envoy_vars = vars.clone();
        let envoy = envoy::start(
            &envoy_bin,
            &paths::envoy_template("hubgate.yaml.tmpl"),
            &vars,
            &[("HUBGATE_INTERNAL_TOKEN", internal_token.clone())],
            &log_dir,
            "envoy",
            &options.envoy_log_level,
        )
        .await?;

        let http = reqwest::Client::builder().no_proxy().build()?;
        let mut stack = Stack {
            name: options.name.clone(),
            log_dir,
            admin,
            admin_token,
            internal_token,
            poll_interval: Duration::from_millis(options.poll_interval_ms),
            provider: None,
            cost_multiplier: options.cost_multiplier,
            http,
            mock,
            envoy,
            control_plane,
            control_plane_env: options.control_plane_env.clone(),
            envoy_vars,
            envoy_log_level: options.envoy_log_level.clone(),
            db,
        };
        if options.create_provider {
            let provider = stack
                .admin
                .create_provider(json!({
                    "name": "mock-anthropic",
                    "type": "claude",
                    "base_url": stack.mock.base_url(),
                    "api_key": stack.mock.api_key(),
                    "cost_multiplier": options.cost_multiplier.to_string().parse::<f64>()?,
                }))
                .await?;
            let stored = provider.get("cost_multiplier").map(decimal).transpose()?;
            if stored.map(|d| d.normalize()) != Some(options.cost_multiplier.normalize()) {
                bail!("provider created with cost_multiplier {} came back as {provider}", options.cost_multiplier);
            }
            stack.provider = Some(provider);
            stack.wait_until_routing().await.map_err(|e| anyhow!("{e:#}\n{}", stack.log_tails(60)))?;
        }
        Ok(stack)
    }

    /// Another provider served by the mock: `provider_type` is `claude`,
    /// `codex`, `openai-compatible` or `gemini`. The gateway routes to it once
    /// its next policy poll has it.
    pub async fn mock_provider(&self, name: &str, provider_type: &str, cost_multiplier: Decimal) -> Result<Value> {
        self.admin
            .create_provider(json!({
                "name": name,
                "type": provider_type,
                "base_url": self.mock.base_url(),
                "api_key": self.mock.api_key(),
                "cost_multiplier": cost_multiplier.to_string().parse::<f64>()?,
            }))
            .await
    }

    /// Stops the control plane (Envoy keeps running on what it cached).
    pub fn stop_control_plane(&mut self) {
        self.control_plane.child.kill();
    }

    /// Starts the control plane again on the address Envoy knows.
    pub async fn restart_control_plane(&mut self) -> Result<()> {
        let log = self.log_dir.join("control-plane-restarted.log");
        let listen = self.control_plane.addr.to_string();
        let internal = self.control_plane.internal_addr.to_string();
        self.control_plane = control_plane::start_on(
            &paths::control_plane()?,
            &self.db.url,
            &self.internal_token,
            &log,
            &listen,
            &internal,
            &self.control_plane_env,
        )
        .await?;
        Ok(())
    }

    /// Another control-plane replica on this stack's database.
    pub async fn replica_control_plane(&self, name: &str) -> Result<ControlPlane> {
        control_plane::start(
            &paths::control_plane()?,
            &self.db.url,
            &self.internal_token,
            &self.log_dir.join(format!("{name}.log")),
            &self.control_plane_env,
        )
        .await
    }

    /// Another Envoy process with the same filter and configuration, whose
    /// filter calls `control_plane`.
    pub async fn extra_envoy(&self, name: &str, control_plane: &ControlPlane) -> Result<Envoy> {
        let mut vars = self.envoy_vars.clone();
        for (var, value) in vars.iter_mut() {
            match *var {
                "CP_HOST" => *value = control_plane.internal_addr.ip().to_string(),
                "CP_PORT" => *value = control_plane.internal_addr.port().to_string(),
                _ => {}
            }
        }
        envoy::start(
            &paths::envoy()?,
            &paths::envoy_template("hubgate.yaml.tmpl"),
            &vars,
            &[("HUBGATE_INTERNAL_TOKEN", self.internal_token.clone())],
            &self.log_dir,
            name,
            &self.envoy_log_level,
        )
        .await
    }

    /// One of the filter's counters from Envoy's admin stats (0 when unset).
    pub async fn filter_counter(&self, name: &str) -> Result<u64> {
        let (_, text) = self.envoy.admin_get(&format!("/stats?filter=^wasmcustom\\.{name}$")).await?;
        Ok(text
            .lines()
            .find_map(|l| l.split_once(": ").and_then(|(_, v)| v.trim().parse().ok()))
            .unwrap_or(0))
    }

    /// The connection URL of this stack's own database.
    pub fn database_url(&self) -> &str {
        &self.db.url
    }

    /// `http://127.0.0.1:<listener>`
    pub fn gateway_url(&self) -> String {
        self.envoy.url()
    }

    pub fn provider_id(&self) -> Result<i64> {
        id_of(self.provider.as_ref().ok_or_else(|| anyhow!("stack has no provider"))?)
    }

    /// A request to the gateway with a fresh `x-request-id` (returned too),
    /// so the test can find its audit row.
    pub fn request(&self, method: reqwest::Method, path_and_query: &str) -> (reqwest::RequestBuilder, String) {
        let request_id = crate::uuid_v4();
        let builder = self
            .http
            .request(method, format!("{}{}", self.gateway_url(), path_and_query))
            .header("x-request-id", &request_id);
        (builder, request_id)
    }

    /// `POST /v1/messages` with `x-api-key` and `anthropic-version`.
    pub fn messages(&self, key: &str) -> (reqwest::RequestBuilder, String) {
        let (b, id) = self.request(reqwest::Method::POST, "/v1/messages");
        (b.header("x-api-key", key).header("anthropic-version", "2023-06-01"), id)
    }

    /// A user (unique name, plus `fields`) and one key for them.
    pub async fn user_with_key(&self, fields: Value) -> Result<(Value, CreatedKey)> {
        let user = self.user(fields).await?;
        let key = self.admin.create_key(id_of(&user)?, json!({"name": "e2e"})).await?;
        Ok((user, key))
    }

    /// A user with a unique name plus `fields`.
    pub async fn user(&self, fields: Value) -> Result<Value> {
        let mut body = json!({"name": format!("e2e-{}", crate::random_lower(10))});
        if let (Some(b), Some(f)) = (body.as_object_mut(), fields.as_object()) {
            b.extend(f.clone());
        }
        self.admin.create_user(body).await
    }

    /// The seeded price of `model` from `GET /api/v1/model-prices`.
    pub async fn price(&self, model: &str) -> Result<Price> {
        let rows = self.admin.model_prices().await?;
        let row = rows
            .iter()
            .find(|r| r.get("model").and_then(Value::as_str) == Some(model))
            .ok_or_else(|| anyhow!("no price for {model} among {} seeded prices", rows.len()))?;
        Price::from_row(row)
    }

    /// The first seeded Claude model whose name starts with `prefix`.
    pub async fn claude_model(&self, prefix: &str) -> Result<String> {
        let rows = self.admin.model_prices().await?;
        let mut models: Vec<String> = rows
            .iter()
            .filter_map(|r| r.get("model").and_then(Value::as_str))
            .filter(|m| m.starts_with(prefix))
            .map(str::to_string)
            .collect();
        models.sort();
        models.into_iter().next().ok_or_else(|| anyhow!("no seeded model starts with {prefix}"))
    }

    /// Sends a request with a fresh user's key until the gateway answers 200:
    /// the filter has the snapshot with our provider and reaches the mock.
    async fn wait_until_routing(&self) -> Result<()> {
        let (_, key) = self.user_with_key(json!({})).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (req, _) = self.messages(&key.raw);
            let result = req.json(&crate::simple_body("claude-sonnet-4-5", false, "probe")).send().await;
            let last = match result {
                Ok(r) if r.status() == 200 => {
                    self.mock.clear_requests();
                    return Ok(());
                }
                Ok(r) => format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
                Err(e) => format!("{e:#}"),
            };
            if tokio::time::Instant::now() > deadline {
                bail!("the gateway did not route to the new provider within 30s; last answer: {last}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// True while the same Envoy process runs and reports ready.
    pub async fn envoy_alive(&mut self) -> bool {
        self.envoy.is_ready().await
    }

    /// Tails of every log of this stack.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(&self.log_dir) {
            let mut logs: Vec<PathBuf> =
                entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "log")).collect();
            logs.sort();
            for log in logs {
                out.push_str(&tail_section(&log, lines));
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("\n===== e2e stack `{}` failed; logs in {} =====", self.name, self.log_dir.display());
            eprintln!("{}", self.log_tails(80));
        }
        // Fields drop in order: mock, envoy, control plane, then the database.
    }
}
