//! Rate shares (SPEC §4): RPM and concurrency limits across instances. The
//! control plane hands each Envoy process a share of a user's requests per
//! minute or of a key's or user's active sessions; shares of all instances
//! together never exceed the limit, so each process enforces its share
//! locally without a call per request.

use serde::{Deserialize, Serialize};

use crate::leases::Entity;

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ShareKind {
    /// A user's requests in a rolling minute (`rpm`).
    Rpm,
    /// Active sessions of a key or user (`limit_concurrent_sessions`).
    Sessions,
}

impl ShareKind {
    /// The name on the wire and in the control plane's tables.
    pub fn as_str(self) -> &'static str {
        match self {
            ShareKind::Rpm => "rpm",
            ShareKind::Sessions => "sessions",
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ShareRequest {
    /// The Envoy process asking (its share is shared by its workers).
    pub instance: String,
    pub key_id: i64,
    pub asks: Vec<ShareAsk>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ShareAsk {
    /// The key of the request, or its user.
    pub entity: Entity,
    pub kind: ShareKind,
    /// The share this process needs: what it already counts, plus one for
    /// the request waiting (a renewal asks for what it counts).
    pub need: u32,
    /// For sessions: the new session waiting. One the control plane has
    /// seen active under this key or user (through another instance)
    /// passes without a share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ShareResponse {
    /// One per ask whose limit is set; an ask for a limit that is not set
    /// (any more) has no share.
    pub shares: Vec<Share>,
    /// The control plane's clock (unix milliseconds) when it answered.
    pub now_ms: i64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub entity: Entity,
    pub entity_id: i64,
    pub kind: ShareKind,
    pub limit: u32,
    /// How many requests a minute, or active sessions, this process may
    /// count. Below the need when the others hold the rest.
    pub share: u32,
    /// Held by the other instances.
    pub others: u32,
    /// Unix milliseconds (control plane clock): the share may not admit
    /// anything after it.
    pub usable_until_ms: i64,
    /// When a share that fell short may be asked for again.
    pub retry_at_ms: i64,
    /// The asked session, active through another instance: it passes here
    /// without a share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_session: Option<String>,
}
