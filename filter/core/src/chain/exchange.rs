//! One request as the chain sees it: what the client sent (headers are
//! copied during the headers phase, they are gone after it) and what the
//! guards decided so far.

use crate::guards::request_filters::BodyScan;
use std::rc::Rc;

use crate::api::{Dialect, Endpoint};
use crate::guards::provider::UpstreamPlan;
use crate::headers::Headers;
use crate::keys::CachedKey;
use crate::reply::LocalReply;
use crate::request::{inspect, RequestInfo};
use crate::segments::{self, BodyParts};
use crate::snapshot::CompiledSnapshot;

use super::VmState;

#[derive(Default)]
pub struct Exchange {
    pub request_id: String,
    pub method: String,
    /// Path and query as the client sent them (after Envoy's normalization).
    pub path: String,
    pub endpoint: Endpoint,
    pub dialect: Dialect,
    pub headers: Headers,
    /// The client address Envoy computed (peer, or trusted X-Forwarded-For).
    pub client_ip: Option<String>,
    /// Declared with `content-length`, when it was.
    pub content_length: Option<u64>,
    /// The whole body, once it has arrived.
    pub body: Option<Vec<u8>>,
    /// The policy this request is decided with (pinned at first use).
    pub snapshot: Option<Rc<CompiledSnapshot>>,
    /// A snapshot fetch for this request was answered (or failed).
    pub snapshot_fetched: bool,

    /// SHA-256 of the client's key, and its masked form.
    pub key_hash: Option<String>,
    pub key_masked: Option<String>,
    /// The key as resolved (fresh, or stale when the control plane is down).
    pub key_entry: Option<Rc<CachedKey>>,
    /// A resolve of this request's key is in flight and the request waits.
    pub key_pending: bool,
    /// This request counts in `VmState::pending_auth` until its key is here.
    pub pending_auth: bool,
    /// Auth passed: the key is valid and may be used now.
    pub authenticated: bool,

    /// The body's fields the guards use, once parsed (`parse_body`).
    pub info: RequestInfo,
    pub body_parsed: bool,
    /// The body as read with the VM's seen parts, unless it was read in
    /// full; the body guards record their findings in it.
    pub parts: Option<BodyParts>,
    pub session_id: Option<String>,
    pub plan: Option<UpstreamPlan>,
    /// More than one provider may serve it: the ids in the order to try
    /// them, each attempt applying its own plan (guards/failover.rs).
    pub failover: Option<Vec<i64>>,
    /// In an attempt (the attempt listener's filter): the provider this
    /// attempt goes to.
    pub attempt_provider: Option<i64>,
    /// Header changes of the request filters, in order (`None`: remove).
    pub header_edits: Vec<(String, Option<String>)>,
    /// A request filter changed `body`: the upstream gets the new one.
    pub body_changed: bool,
    /// The request filters' needle search of `body`, shared by the global
    /// and the provider-bound pass; cleared when a filter changes `body`.
    pub filter_scan: Option<BodyScan>,
    /// This request asked the control plane for quota budget, and whether
    /// the answer failed.
    pub lease_asked: bool,
    pub lease_failed: bool,
    /// hubgate asked an OpenAI Chat stream for its usage: the usage chunk
    /// is taken out of the answer.
    pub usage_added: bool,
    /// This request asked the control plane for RPM or concurrency shares,
    /// and whether the answer failed.
    pub share_asked: bool,
    pub share_failed: bool,
    /// The cost quota budget it holds until it is settled.
    pub reservation: Option<crate::guards::quota::Reservation>,
    /// Index of the guard to run next.
    pub cursor: usize,
}

impl Exchange {
    /// Parses the body once, with the VM's seen parts where it can, else
    /// in full. `Ok(false)` while it has not arrived; a body that is not
    /// the JSON object of its API is a 400.
    pub fn parse_body(&mut self, vm: &VmState) -> Result<bool, LocalReply> {
        if self.body_parsed {
            return Ok(true);
        }
        let Some(body) = self.body.as_deref() else {
            return Ok(false);
        };
        if self.endpoint != Endpoint::Other {
            let parts = match (&self.snapshot, vm.seen_parts.try_borrow_mut()) {
                (Some(snapshot), Ok(mut seen)) => {
                    segments::read(&mut seen, snapshot.version, self.endpoint, &self.path, body)
                }
                _ => None,
            };
            match parts {
                Some(parts) => {
                    self.info = parts.info.clone();
                    self.parts = Some(parts);
                }
                None => self.info = inspect(self.endpoint, &self.path, body)?,
            }
        }
        self.body_parsed = true;
        Ok(true)
    }

    /// The resolved key, once auth has passed.
    pub fn key(&self) -> Option<&hubgate_wire::ResolvedKey> {
        self.key_entry.as_ref().and_then(|e| e.key.as_ref())
    }
}
