//! A client for the control plane's admin API (`/api/v1`, SPEC §7).

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

#[derive(Clone)]
pub struct AdminClient {
    pub base_url: String,
    token: String,
    http: reqwest::Client,
}

/// A key as created: the raw value is only ever returned here.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub id: i64,
    pub raw: String,
    pub body: Value,
}

/// The answer to a request the caller expected could fail.
#[derive(Debug, Clone)]
pub struct AdminResponse {
    pub status: u16,
    pub body: Value,
}

impl AdminClient {
    pub fn new(base_url: &str, token: &str) -> AdminClient {
        AdminClient { base_url: base_url.to_string(), token: token.to_string(), http: reqwest::Client::new() }
    }

    /// Any method, any path under the control plane; the body is JSON (or
    /// `Value::String` of the raw text when it is not JSON).
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<AdminResponse> {
        let mut req = self.http.request(method.clone(), format!("{}{}", self.base_url, path)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.with_context(|| format!("{method} {path}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok(AdminResponse { status, body })
    }

    async fn expect_ok(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let r = self.call(method.clone(), path, body).await?;
        if !(200..300).contains(&r.status) {
            bail!("admin API {method} {path} answered {}: {}", r.status, r.body);
        }
        Ok(r.body)
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.expect_ok(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.expect_ok(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value> {
        self.expect_ok(reqwest::Method::PATCH, path, Some(body)).await
    }

    /// POST /api/v1/users. `fields` must hold at least `name`.
    pub async fn create_user(&self, fields: Value) -> Result<Value> {
        self.post("/api/v1/users", &fields).await
    }

    pub async fn patch_user(&self, id: i64, fields: Value) -> Result<Value> {
        self.patch(&format!("/api/v1/users/{id}"), &fields).await
    }

    /// POST /api/v1/users/{id}/keys; returns the raw key shown once.
    pub async fn create_key(&self, user_id: i64, fields: Value) -> Result<CreatedKey> {
        let body = self.post(&format!("/api/v1/users/{user_id}/keys"), &fields).await?;
        let raw = body
            .get("key")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("key creation answer has no raw `key`: {body}"))?
            .to_string();
        Ok(CreatedKey { id: id_of(&body)?, raw, body })
    }

    pub async fn patch_key(&self, id: i64, fields: Value) -> Result<Value> {
        self.patch(&format!("/api/v1/keys/{id}"), &fields).await
    }

    pub async fn disable_key(&self, id: i64) -> Result<Value> {
        self.patch_key(id, json!({"enabled": false})).await
    }

    /// POST /api/v1/providers.
    pub async fn create_provider(&self, fields: Value) -> Result<Value> {
        self.post("/api/v1/providers", &fields).await
    }

    /// GET /api/v1/model-prices.
    pub async fn model_prices(&self) -> Result<Vec<Value>> {
        let body = self.get("/api/v1/model-prices").await?;
        list_items(&body)
    }

    /// GET /api/v1/requests with query filters (e.g. `[("user_id", "3")]`).
    pub async fn requests(&self, query: &[(&str, String)]) -> Result<Vec<Value>> {
        let qs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let path = if qs.is_empty() { "/api/v1/requests".to_string() } else { format!("/api/v1/requests?{}", qs.join("&")) };
        list_items(&self.get(&path).await?)
    }

    /// Polls the audit log of `user_id` until the row of `request_id` appears
    /// (events are flushed asynchronously), for up to `timeout`.
    pub async fn wait_for_request(&self, user_id: i64, request_id: &str, timeout: Duration) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let rows = self.requests(&[("user_id", user_id.to_string()), ("page_size", "100".to_string())]).await?;
            if let Some(row) = rows.iter().find(|r| r.get("request_id").and_then(Value::as_str) == Some(request_id)) {
                return Ok(row.clone());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "no audit row for request {request_id} of user {user_id} after {}s; the user's rows: {}",
                    timeout.as_secs(),
                    Value::Array(rows)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// `id` of a created resource.
pub fn id_of(v: &Value) -> Result<i64> {
    v.get("id").and_then(Value::as_i64).ok_or_else(|| anyhow!("no integer `id` in {v}"))
}

/// The rows of a list answer: a bare array, or an object holding one under
/// `items` / `data`.
pub fn list_items(body: &Value) -> Result<Vec<Value>> {
    if let Some(a) = body.as_array() {
        return Ok(a.clone());
    }
    for field in ["items", "data"] {
        if let Some(a) = body.get(field).and_then(Value::as_array) {
            return Ok(a.clone());
        }
    }
    bail!("not a list answer: {body}")
}
