//! Usage / audit events: one per client request, sent by the filter in
//! batches. `event_id` is unique, so ingestion is idempotent.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Cache writes with the 5-minute TTL (Anthropic's default).
    pub cache_creation_5m_tokens: u64,
    pub cache_creation_1h_tokens: u64,
    pub cache_read_tokens: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RequestEvent {
    /// Unique per request across all Envoy instances; the idempotency key.
    pub event_id: String,
    /// Envoy's `x-request-id`, also shown in error bodies.
    pub request_id: String,
    /// Unix milliseconds when the request reached the filter.
    pub started_at_ms: i64,
    pub user_id: Option<i64>,
    pub key_id: Option<i64>,
    pub key_masked: Option<String>,
    pub provider_id: Option<i64>,
    pub method: String,
    /// Request path without the query string.
    pub endpoint: String,
    pub original_model: Option<String>,
    pub upstream_model: Option<String>,
    pub status: u16,
    pub duration_ms: u64,
    /// Time to the first response byte (response headers).
    pub ttfb_ms: Option<u64>,
    pub usage: Usage,
    pub cost_usd: Decimal,
    pub cost_multiplier: Decimal,
    pub session_id: Option<String>,
    pub user_agent: Option<String>,
    pub client_ip: Option<String>,
    pub stream: bool,
    /// Stable machine code of the guard that answered, e.g. `invalid_api_key`.
    pub blocked_by: Option<String>,
    pub blocked_reason: Option<serde_json::Value>,
    pub error: Option<String>,
    /// Notes on how the numbers were obtained, e.g. `usage_estimated`,
    /// `price_missing`, `stream_incomplete`, `output_estimated` (a cut stream:
    /// output tokens from the output text seen, four characters a token).
    pub flags: Vec<String>,
    /// The quota leases (`Grant::lease_id`) the request spent under.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leases: Vec<i64>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct EventBatch {
    pub events: Vec<RequestEvent>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventBatchAck {
    /// Newly stored events.
    pub accepted: u32,
    /// Events already stored by an earlier delivery of the same batch.
    pub duplicates: u32,
}
