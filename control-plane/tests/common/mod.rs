//! Test helpers: a fresh database per test and a running control plane.

#![allow(dead_code)]

use std::time::Duration;

use hubgate_control_plane::bootstrap::{self, BootstrapArgs};
use hubgate_control_plane::{Application, Config};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::{Connection, PgConnection, PgPool};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const INTERNAL_TOKEN: &str = "test-internal-token-0123456789";

pub fn admin_database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// `url` with its database name replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let host_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[host_start..].find('/') {
        Some(i) => &base[..host_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// A fresh database, dropped (best effort) when this value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let name = format!("hubgate_test_{}", random_suffix());
        let admin = admin_database_url();
        let mut conn = PgConnection::connect(&admin)
            .await
            .expect("connect to the admin database (DATABASE_URL)");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        conn.close().await.ok();
        TestDb {
            url: with_database(&admin, &name),
            name,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = admin_database_url();
        // Drop runs inside the test's runtime; use a separate thread and runtime.
        let dropper = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        });
        let _ = dropper.join();
    }
}

fn random_suffix() -> String {
    use rand::Rng;
    rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(12)
        .map(|c| (c as char).to_ascii_lowercase())
        .collect()
}

pub struct TestApp {
    /// The admin listener.
    pub base: String,
    /// The internal listener (the filter's API).
    pub internal_base: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
    // Last: dropped after everything that uses the database.
    pub db: TestDb,
}

pub async fn spawn() -> TestApp {
    spawn_with(|_| {}).await
}

pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDb::create().await;
    let mut config = Config::new(
        db.url.clone(),
        INTERNAL_TOKEN.to_string(),
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    );
    config.db_max_connections = 5;
    adjust(&mut config);
    let app = Application::build(config).await.expect("build application");
    let port = app.port();
    let internal_port = app.internal_port();
    let pool = app.pool();
    tokio::spawn(app.run_until_stopped());
    let args = BootstrapArgs {
        admin_token: ADMIN_TOKEN.to_string(),
        demo_user: "demo".to_string(),
        demo_key: None,
        demo_provider: None,
    };
    bootstrap::run(&pool, &args)
        .await
        .expect("bootstrap admin token");
    TestApp {
        base: format!("http://127.0.0.1:{port}"),
        internal_base: format!("http://127.0.0.1:{internal_port}"),
        client: client_from(None),
        pool,
        db,
    }
}

/// A client whose connections leave from `local` (any 127.0.0.0/8 address
/// reaches the loopback listeners), or from the default address.
pub fn client_from(local: Option<std::net::IpAddr>) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .local_address(local)
        .build()
        .unwrap()
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn internal_url(&self, path: &str) -> String {
        format!("{}{path}", self.internal_base)
    }

    /// Sends a request to the admin listener with an optional bearer token
    /// and JSON body; returns the status and the body as JSON (`Value::Null`
    /// when empty, a string when not JSON).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        send_with(&self.client, method, &self.url(path), token, body).await
    }

    /// [`TestApp::send`] to the internal listener.
    pub async fn send_internal(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        send_with(&self.client, method, &self.internal_url(path), token, body).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, Some(ADMIN_TOKEN), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::POST, path, Some(ADMIN_TOKEN), Some(&body))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::PATCH, path, Some(ADMIN_TOKEN), Some(&body))
            .await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::DELETE, path, Some(ADMIN_TOKEN), None)
            .await
    }

    pub async fn internal_post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send_internal(Method::POST, path, Some(INTERNAL_TOKEN), Some(&body))
            .await
    }

    /// GET the snapshot, optionally with the version already held.
    pub async fn snapshot(&self, held: Option<u64>) -> (StatusCode, Value) {
        let mut req = self
            .client
            .get(self.internal_url(hubgate_wire::SNAPSHOT_PATH))
            .bearer_auth(INTERNAL_TOKEN);
        if let Some(v) = held {
            req = req.header(hubgate_wire::SNAPSHOT_VERSION_HEADER, v.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap()
            },
        )
    }

    pub async fn policy(&self) -> (i64, i64) {
        sqlx::query_as("SELECT version, key_epoch FROM policy_state")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    pub async fn count(&self, table: &str) -> i64 {
        let (n,): (i64,) = sqlx::query_as(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&self.pool)
            .await
            .unwrap();
        n
    }

    pub async fn create_user(&self, name: &str) -> Value {
        let (status, body) = self
            .post("/api/v1/users", serde_json::json!({ "name": name }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    /// Creates a key for `user_id`; returns (key JSON, raw key).
    pub async fn create_key(&self, user_id: i64, body: Value) -> (Value, String) {
        let (status, created) = self
            .post(&format!("/api/v1/users/{user_id}/keys"), body)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let raw = created["key"].as_str().unwrap().to_string();
        (created, raw)
    }

    pub async fn create_provider(&self, name: &str, api_key: &str) -> Value {
        let body = serde_json::json!({
            "name": name, "type": "claude", "base_url": "http://127.0.0.1:9/anthropic", "api_key": api_key
        });
        let (status, created) = self.post("/api/v1/providers", body).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        created
    }
}

/// Sends a request with an optional bearer token and JSON body; returns the
/// status and the body as JSON (`Value::Null` when empty, a string when not
/// JSON).
pub async fn send_with(
    client: &reqwest::Client,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut req = client.request(method, url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(body);
    }
    let resp = req.send().await.expect("send request");
    let status = resp.status();
    let text = resp.text().await.expect("read body");
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, value)
}

/// Asserts a JSON error body `{"error":{"code", "message", "field"?}}`.
pub fn assert_error(body: &Value, code: &str, field: Option<&str>) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    match field {
        Some(f) => assert_eq!(body["error"]["field"], f, "{body}"),
        None => assert!(body["error"].get("field").is_none(), "{body}"),
    }
}

/// A usage event with sensible defaults.
/// The `event_id`s of a page of `GET /api/v1/requests`, in order.
pub fn event_ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["event_id"].as_str().unwrap().to_string())
        .collect()
}

pub fn event(id: &str) -> hubgate_wire::RequestEvent {
    hubgate_wire::RequestEvent {
        event_id: id.to_string(),
        request_id: format!("req-{id}"),
        started_at_ms: chrono::Utc::now().timestamp_millis(),
        user_id: None,
        key_id: None,
        key_masked: None,
        provider_id: None,
        method: "POST".to_string(),
        endpoint: "/v1/messages".to_string(),
        original_model: Some("claude-sonnet-4-5".to_string()),
        upstream_model: Some("claude-sonnet-4-5".to_string()),
        status: 200,
        duration_ms: 1200,
        ttfb_ms: Some(300),
        usage: hubgate_wire::Usage {
            input_tokens: 1000,
            output_tokens: 200,
            cache_creation_5m_tokens: 0,
            cache_creation_1h_tokens: 0,
            cache_read_tokens: 0,
        },
        cost_usd: rust_decimal::Decimal::new(6, 3),
        cost_multiplier: rust_decimal::Decimal::ONE,
        cost_breakdown: None,
        session_id: None,
        user_agent: Some("claude-cli/2.1.197 (external, sdk-cli)".to_string()),
        client_ip: Some("127.0.0.1".to_string()),
        stream: false,
        blocked_by: None,
        blocked_reason: None,
        error: None,
        flags: Vec::new(),
        leases: Vec::new(),
    }
}

pub async fn ingest(
    app: &TestApp,
    events: &[hubgate_wire::RequestEvent],
) -> hubgate_wire::EventBatchAck {
    let batch = hubgate_wire::EventBatch {
        events: events.to_vec(),
    };
    let (status, body) = app
        .internal_post(
            hubgate_wire::EVENTS_PATH,
            serde_json::to_value(&batch).unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_value(body).unwrap()
}
