//! The guard chain (SPEC §2): one ordered registration list of guards and
//! the executor that runs a request through it. A guard returns a [`Step`];
//! the executor applies fail-open or fail-closed once, per guard; the glue
//! only carries out the resulting [`Verdict`] (pause, call the control
//! plane, answer, forward).
//!
//! Adding a guard: one file under `guards/`, one line in [`GUARDS`].

mod exchange;
mod host;

pub use exchange::Exchange;
pub use host::{FakeHost, Host, VmState};

use crate::guards;
use crate::reply::LocalReply;

/// What one guard decided for the request.
#[derive(Debug)]
pub enum Step {
    /// Passes: on to the next guard.
    Next,
    /// Needs the whole body: run this guard again once it is there.
    NeedBody,
    /// Waits for the control plane: run this guard again once the answer
    /// has been stored (see [`Callout`]).
    Wait(Callout),
    /// Answers the request here.
    Answer(LocalReply),
    /// Answers with a made-up success (warmup); not billed.
    Respond(Synthetic),
}

/// A successful local answer, logged with `code` as its `blocked_by`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synthetic {
    pub code: &'static str,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A call to the control plane's internal API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callout {
    /// Resolve a key (the request waits for it).
    ResolveKey { hash: String },
    /// Resolve a key in use again after its TTL (nobody waits).
    RefreshKey { hash: String },
    /// The policy snapshot (the request waits for it).
    Snapshot,
    /// Quota budget for a key and its user (SPEC §4); `wait`: the request
    /// waits for it, else a refill in the background.
    Lease { key_id: i64, need_usd: rust_decimal::Decimal, wait: bool },
    /// RPM or concurrency shares for a key and its user; `wait` as above.
    Share { key_id: i64, asks: Vec<hubgate_wire::ShareAsk>, wait: bool },
}

pub trait Guard: Sync {
    /// Stable name: log field and metric tag.
    fn name(&self) -> &'static str;
    /// An internal error lets the request pass (logged and counted) instead
    /// of answering 500 (SPEC §2: version, sensitive words, request filter).
    fn fails_open(&self) -> bool {
        false
    }
    fn check(&self, cx: &mut Cx<'_>) -> Result<Step, String>;
}

/// Everything a guard may look at or change for one request.
pub struct Cx<'a> {
    pub host: &'a dyn Host,
    pub vm: &'a VmState,
    pub ex: &'a mut Exchange,
    /// Calls to start without waiting (a key refresh in the background).
    pub background: Vec<Callout>,
}

/// In SPEC §2 order.
/// In SPEC §2 order, except that guards needing no body (auth, client
/// unless its Claude Code preset needs `metadata.user_id`, version) run
/// before those that do, so they answer before the body is buffered.
pub static GUARDS: &[&dyn Guard] = &[
    &guards::body_size::BodySize,
    &guards::auth::Auth,
    &guards::route::Route,
    &guards::client::Client,
    &guards::client_version::ClientVersion,
    &guards::body::Body,
    &guards::sensitive_words::SensitiveWordsGuard,
    &guards::model::Model,
    &guards::warmup::Warmup,
    &guards::session::Session,
    &guards::request_filters::GlobalFilters,
    &guards::seen_parts::RememberParts,
    &guards::rate_limit::RateLimit,
    &guards::provider::Provider,
    &guards::request_filters::ProviderFilters,
    &guards::stream_usage::StreamUsage,
];

/// The chain of one failover attempt (guards/failover.rs): the request
/// passed the gateway's guards already; this attempt's provider is applied.
pub static ATTEMPT_GUARDS: &[&dyn Guard] = &[
    &guards::body::Body,
    &guards::failover::AttemptProvider,
    &guards::request_filters::ProviderFilters,
    &guards::stream_usage::StreamUsage,
];

/// What the glue does next.
#[derive(Debug)]
pub enum Verdict {
    /// Hold the request until its body is complete, then run again.
    NeedBody,
    /// Make this call, hold the request, run again with the answer stored.
    Call(Callout),
    /// Send this local reply.
    Answer(LocalReply),
    /// Send this made-up success.
    Respond(Synthetic),
    /// Every guard passed: forward upstream per `Exchange::plan`.
    Forward,
}

/// Runs the guards from where the request stopped last time.
pub fn run(cx: &mut Cx<'_>) -> Verdict {
    run_guards(cx, GUARDS)
}

/// Runs the attempt chain from where the request stopped last time.
pub fn run_attempt(cx: &mut Cx<'_>) -> Verdict {
    run_guards(cx, ATTEMPT_GUARDS)
}

fn run_guards(cx: &mut Cx<'_>, guards: &[&dyn Guard]) -> Verdict {
    while let Some(guard) = guards.get(cx.ex.cursor) {
        #[cfg(feature = "profile")]
        let started = cx.host.now_ns();
        let checked = guard.check(cx);
        #[cfg(feature = "profile")]
        cx.host.guard_spent(guard.name(), cx.host.now_ns().saturating_sub(started));
        let step = match checked {
            Ok(step) => step,
            Err(e) if guard.fails_open() => {
                log::warn!("guard {} failed, request let through: {e}", guard.name());
                cx.host.count(&format!("hubgate_guard_{}_errors_total", guard.name()));
                Step::Next
            }
            Err(e) => {
                log::error!("guard {} failed, request refused: {e}", guard.name());
                cx.host.count(&format!("hubgate_guard_{}_errors_total", guard.name()));
                Step::Answer(LocalReply::new(500, "guard_failed", "The gateway could not check this request."))
            }
        };
        match step {
            Step::Next => cx.ex.cursor += 1,
            Step::NeedBody => return Verdict::NeedBody,
            Step::Wait(callout) => return Verdict::Call(callout),
            Step::Answer(reply) => return Verdict::Answer(reply),
            Step::Respond(synthetic) => return Verdict::Respond(synthetic),
        }
    }
    Verdict::Forward
}

#[cfg(test)]
mod tests;
