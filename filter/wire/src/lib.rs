//! Wire types shared by the hubgate filter and the control plane.
//!
//! Everything that crosses the internal API (policy snapshot, key resolution,
//! usage events) is defined here once, so the two sides cannot drift apart.
//! Response types do not deny unknown fields: during a rolling upgrade a newer
//! control plane may add fields that an older filter must ignore.

pub mod circuits;
pub mod events;
pub mod keys;
pub mod leases;
pub mod pattern;
pub mod shares;
pub mod snapshot;

pub use circuits::{CircuitReport, CircuitState, ProviderCircuit, CIRCUIT_REPORT_EVERY_MS};
pub use events::{CostBreakdown, EventBatch, EventBatchAck, RequestEvent, Usage};
pub use leases::{Entity, Grant, LeaseRequest, LeaseResponse};
pub use shares::{Share, ShareAsk, ShareKind, ShareRequest, ShareResponse};
pub use keys::{hash_key, mask_key, KeyResolveRequest, KeyResolveResponse, ResolvedKey, ResolvedUser};
pub use snapshot::*;

/// Internal API paths, served by the control plane, called by the filter.
pub const SNAPSHOT_PATH: &str = "/internal/v1/snapshot";
pub const KEY_RESOLVE_PATH: &str = "/internal/v1/keys/resolve";
pub const EVENTS_PATH: &str = "/internal/v1/events";
pub const LEASES_PATH: &str = "/internal/v1/leases";
pub const SHARES_PATH: &str = "/internal/v1/shares";
pub const CIRCUITS_PATH: &str = "/internal/v1/circuits";

/// Header carrying the snapshot version the filter already holds; the control
/// plane answers 304 when it is still current.
pub const SNAPSHOT_VERSION_HEADER: &str = "x-hubgate-snapshot-version";
