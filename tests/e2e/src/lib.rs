//! hubgate's end-to-end harness: everything real except the LLM provider.
//!
//! [`Stack::start`] builds one isolated deployment per test — a fresh
//! PostgreSQL database, the control plane binary as a separate process
//! (`serve` + `bootstrap`), the in-process mock provider, and the real Envoy
//! loading the built `hubgate_filter.wasm` with `--concurrency 2` — and tears
//! it all down on drop. Logs go to `target/e2e-logs/<test>/`; their tails are
//! printed when a test panics.
//!
//! Prerequisites (a missing one fails the test with a message, never skips):
//! `target/hubgate/hubgate_filter.wasm` (`HUBGATE_WASM`), Envoy
//! (`HUBGATE_ENVOY_BIN`, else `.hubgate/bin/envoy`, else the project venv),
//! the control plane (`HUBGATE_CP_BIN`, else `target/hubgate/hubgate-cp`, else
//! `target/debug/hubgate-cp`), and PostgreSQL (`DATABASE_URL`, an admin
//! connection, default `postgres://postgres@127.0.0.1:5432/postgres`).

pub mod admin;
pub mod bench_policy;
pub mod browser;
pub mod claude_code;
pub mod clients;
pub mod control_plane;
pub mod db;
pub mod envoy;
pub mod paths;
pub mod postgres;
pub mod pricing;
pub mod process;
pub mod raw;
pub mod stack;

pub use admin::{AdminClient, CreatedKey};
pub use hubgate_mock_provider::{AnthropicUsage, Gate, MockHandle, RecordedRequest};
pub use pricing::{decimal, Price};
pub use stack::{Stack, StackOptions};

use rand::distr::{Alphanumeric, SampleString};
use rand::Rng;
use serde_json::{json, Value};

/// Debian's CA bundle, what the deployed gateway trusts for providers.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

pub fn random_token(len: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), len)
}

pub fn random_lower(len: usize) -> String {
    random_token(len).to_ascii_lowercase()
}

pub fn random_hex(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len).map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0')).collect()
}

/// A random (version 4) UUID in its usual text form.
pub fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::rng().random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// A minimal Anthropic Messages request body.
pub fn simple_body(model: &str, stream: bool, text: &str) -> Value {
    json!({
        "model": model,
        "max_tokens": 256,
        "stream": stream,
        "messages": [{"role": "user", "content": text}],
    })
}

/// Status, headers and JSON body of a response (the body as a JSON string
/// when it is not JSON).
pub async fn read_json(resp: reqwest::Response) -> anyhow::Result<(u16, reqwest::header::HeaderMap, Value)> {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, headers, body))
}

/// Asserts an Anthropic-dialect local reply (SPEC §3):
/// `{"type":"error","error":{"type","message","code"},"request_id"}`.
#[track_caller]
pub fn assert_anthropic_error(body: &Value, error_type: &str, code: &str, message: &str, request_id: &str) {
    assert_eq!(body["type"], "error", "error body: {body}");
    assert_eq!(body["error"]["type"], error_type, "error type in {body}");
    assert_eq!(body["error"]["code"], code, "error code in {body}");
    assert_eq!(body["error"]["message"], message, "error message in {body}");
    assert_eq!(body["request_id"], request_id, "request_id in {body}");
}

#[cfg(test)]
mod tests {
    #[test]
    fn uuid_shape() {
        let u = super::uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_eq!(u.matches('-').count(), 4);
    }
}
