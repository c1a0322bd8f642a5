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

/// A request's cost per token kind, in USD, the provider's multiplier
/// applied (see `RequestEvent::cost_breakdown`).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CostBreakdown {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub input_usd: Decimal,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub output_usd: Decimal,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub cache_creation_5m_usd: Decimal,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub cache_creation_1h_usd: Decimal,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub cache_read_usd: Decimal,
}

impl CostBreakdown {
    /// The parts' sum; `None` on overflow.
    pub fn total(&self) -> Option<Decimal> {
        self.input_usd
            .checked_add(self.output_usd)?
            .checked_add(self.cache_creation_5m_usd)?
            .checked_add(self.cache_creation_1h_usd)?
            .checked_add(self.cache_read_usd)
    }
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
    /// What `cost_usd` is made of, when it was computed from a price: each
    /// token kind's tokens × price × `cost_multiplier`; the parts add up to
    /// `cost_usd` exactly. Absent from filters older than this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_breakdown: Option<CostBreakdown>,
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
