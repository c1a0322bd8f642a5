//! Circuit states (SPEC §6) reported to the control plane. Each Envoy
//! process keeps a circuit per provider in its shared data; one of its VMs
//! sends them all on its tick when one changed, and at least every
//! [`CIRCUIT_REPORT_EVERY_MS`], so the control plane can tell a silent
//! instance from one whose circuits are all closed. Never on a request.
//!
//! A reset (admin API) moves the provider's `circuit.reset_at_ms` in the
//! snapshot; a circuit whose state was recorded under an older marker is
//! cleared by the filter, and the control plane ignores reported states
//! older than the provider's marker.

use serde::{Deserialize, Serialize};

/// An instance reports at least this often (its heartbeat).
pub const CIRCUIT_REPORT_EVERY_MS: i64 = 30_000;

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Requests go to the provider.
    Closed,
    /// Requests do not go to the provider until `open_until`.
    Open,
    /// The open time has passed: requests go to the provider again, and
    /// its next answers close or reopen the circuit.
    HalfOpen,
}

impl CircuitState {
    /// The name on the wire and in the control plane's tables.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CircuitReport {
    /// The Envoy process (as in leases and shares).
    pub instance: String,
    /// The instance's clock (unix ms) when it made the report; `open_until_ms`
    /// is read against it, so clock skew does not move an open time.
    pub now_ms: i64,
    /// One per provider of the instance's snapshot.
    pub circuits: Vec<ProviderCircuit>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct ProviderCircuit {
    pub provider_id: i64,
    pub state: CircuitState,
    /// Consecutive failures while closed.
    pub failures: u32,
    /// Successes in a row while half-open.
    pub successes: u32,
    /// When an open circuit half-opens (the instance's clock, unix ms).
    pub open_until_ms: Option<i64>,
    /// The provider's reset marker this state was recorded under.
    pub reset_at_ms: i64,
}
