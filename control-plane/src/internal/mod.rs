//! Internal API for the filter (bearer internal token): policy snapshot,
//! key resolution, usage events, leases, shares and circuit reports. Types come from `hubgate_wire`.

use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use serde::de::DeserializeOwned;

use crate::app::Routes;

pub mod circuits;
pub mod events;
pub mod keys;
pub mod leases;
pub mod shares;
pub mod snapshot;

/// Event batches can be large (1000 events with blocked reasons).
const EVENTS_BODY_LIMIT: usize = 64 * 1024 * 1024;

pub fn routes() -> Routes {
    Routes::new()
        .get(hubgate_wire::SNAPSHOT_PATH, snapshot::get)
        .post(hubgate_wire::KEY_RESOLVE_PATH, keys::resolve)
        .post(hubgate_wire::LEASES_PATH, leases::grant)
        .post(hubgate_wire::SHARES_PATH, shares::grant)
        .post(hubgate_wire::CIRCUITS_PATH, circuits::report)
        .post(
            hubgate_wire::EVENTS_PATH,
            events::ingest.layer(DefaultBodyLimit::max(EVENTS_BODY_LIMIT)),
        )
}

/// Parses a stored enum text (e.g. `daily_reset_mode`) into its wire enum.
pub(crate) fn wire_enum<T: DeserializeOwned>(column: &str, value: &str) -> anyhow::Result<T> {
    serde_json::from_value(serde_json::Value::String(value.to_string()))
        .map_err(|e| anyhow::anyhow!("stored {column} {value:?} is not valid: {e}"))
}
