//! Quota leases (SPEC §4): the filter asks the control plane for budget per
//! (key or user, cost window) and spends it locally; the control plane grants
//! slices out of the authoritative totals so that all instances together
//! never hold more than what is left under a limit.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    /// The Envoy process asking (its budget is shared by its workers).
    pub instance: String,
    pub key_id: i64,
    /// The estimate of the request waiting for this answer (0: a refill).
    pub need_usd: Decimal,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LeaseResponse {
    /// One per cost limit set on the key (first) or on its user.
    pub grants: Vec<Grant>,
    /// The control plane's clock (unix milliseconds) when it answered: the
    /// filter reads `expires_at_ms` against it, not against its own clock.
    #[serde(default)]
    pub now_ms: i64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    Key,
    User,
}

impl Entity {
    /// The name on the wire and in the control plane's tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Key => "key",
            Entity::User => "user",
        }
    }
}

/// Budget for one (entity, window) held by one instance.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Grant {
    pub entity: Entity,
    pub entity_id: i64,
    /// `usd_total`, `usd_5h`, `daily_quota`, `usd_weekly` or `usd_monthly`.
    pub limit_type: String,
    /// The lease this budget belongs to. A new id means the previous lease
    /// of this instance ended (window change, expiry): its budget is gone.
    pub lease_id: i64,
    /// Added by this answer (0 when nothing is left to hand out).
    pub granted_usd: Decimal,
    /// Everything the lease has granted so far. An answer that never
    /// arrived (its request ended first) is made up by the next one.
    #[serde(default)]
    pub lease_granted_usd: Decimal,
    pub limit_usd: Decimal,
    /// Spent in the window as the control plane has recorded it.
    pub spent_usd: Decimal,
    /// Left for any instance after this grant: the limit minus what was
    /// spent and what every live lease still holds.
    #[serde(default)]
    pub unallocated_usd: Decimal,
    /// Unix milliseconds; the budget may not be used after it.
    pub expires_at_ms: i64,
    /// A fixed window's end (unix milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_at_ms: Option<i64>,
    /// A rolling window's length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_hours: Option<i64>,
}
