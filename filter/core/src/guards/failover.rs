//! Failover inside one client request (SPEC §6 **beyond**). When more than
//! one provider may serve a request, the gateway's filter does not send it
//! to a provider: it sends it, with the candidate ids, to Envoy's attempt
//! listener (an internal listener), and the route's retry policy sends it
//! there again, up to once per candidate, while an attempt fails before its
//! response started (connect failure, reset, 5xx, 429, first-byte
//! timeout). Every attempt runs this filter again, in attempt mode: it
//! reads the attempt number Envoy counted, and applies candidate n's plan
//! (authority, path, credential, model redirect, provider-bound filters,
//! first-byte timeout). Its answer names the provider that served, so the
//! gateway bills and audits that one.
//!
//! Headers between the two filters (never from or to the client):
//! [`ATTEMPT_HEADER`] on the request, [`SERVED_HEADER`] on the response.

use crate::chain::{Cx, Exchange, Guard, Host, Step};
use crate::guards::provider::{plan, redirect_model};
use crate::guards::{auth, sticky};
use crate::reply::LocalReply;
use crate::snapshot::CompiledSnapshot;

/// Request: the candidate provider ids, in order (`3,7,9`).
pub const ATTEMPT_HEADER: &str = "x-hubgate-attempt";
/// Request: how many times Envoy's router sent it, this one included
/// (virtual host `include_request_attempt_count`).
pub const ATTEMPT_COUNT_HEADER: &str = "x-envoy-attempt-count";
/// Request: the retries Envoy may make (candidates − 1).
pub const MAX_RETRIES_HEADER: &str = "x-envoy-max-retries";
/// Request: Envoy's per-try timeout, which Envoy applies only until the
/// response starts: the provider's first-byte timeout.
pub const FIRST_BYTE_TIMEOUT_HEADER: &str = "x-envoy-upstream-rq-per-try-timeout-ms";
/// `:authority` that the route table sends to the attempt listener.
pub const ATTEMPT_AUTHORITY: &str = "hubgate-attempt";
/// Response: who served (see [`Served`]).
pub const SERVED_HEADER: &str = "x-hubgate-served";

pub fn encode_candidates(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

/// The provider of attempt `count` (1-based), from the candidate list.
pub fn candidate(header: &str, count: &str) -> Option<i64> {
    let n: usize = count.trim().parse().ok()?;
    header.split(',').nth(n.checked_sub(1)?)?.trim().parse().ok()
}

/// What the attempt that answered tells the gateway's filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub provider_id: i64,
    /// The attempt asked an OpenAI Chat stream for usage (`stream_usage`):
    /// the usage chunk is taken out of the answer.
    pub usage_added: bool,
    /// The model sent upstream, when a redirect replaced the requested one.
    pub model: Option<String>,
}

impl Served {
    pub fn encode(&self) -> String {
        format!("{},{},{}", self.provider_id, u8::from(self.usage_added), self.model.as_deref().unwrap_or(""))
    }

    pub fn decode(value: &str) -> Option<Served> {
        let mut parts = value.splitn(3, ',');
        let provider_id = parts.next()?.parse().ok()?;
        let usage_added = match parts.next()? {
            "1" => true,
            "0" => false,
            _ => return None,
        };
        let model = parts.next().filter(|m| !m.is_empty()).map(str::to_string);
        Some(Served { provider_id, usage_added, model })
    }
}

/// The gateway's filter learns who served (`served` from [`SERVED_HEADER`],
/// `None` when the answer does not say: the attempt listener itself failed):
/// the request is billed and audited as that provider's, and a session is
/// rebound to it. `newest` is the VM's current policy, for a provider the
/// request's pinned one does not know yet. Whether another provider than
/// the first candidate served.
pub fn on_served(ex: &mut Exchange, host: &dyn Host, served: Option<Served>, newest: Option<&CompiledSnapshot>) -> bool {
    let Some(served) = served else { return false };
    let first = ex.failover.as_ref().and_then(|ids| ids.first().copied());
    let pinned = ex.snapshot.as_deref();
    let provider = [pinned, newest].into_iter().flatten().find_map(|s| s.providers.iter().find(|p| p.provider.id == served.provider_id));
    if let Some(provider) = provider {
        let mut planned = plan(provider, &auth::without_query_param(&ex.path, "key"));
        planned.model = served.model.clone();
        ex.plan = Some(planned);
    }
    ex.usage_added = served.usage_added;
    let moved = first != Some(served.provider_id);
    let session = ex.session_id.as_deref().filter(|_| ex.endpoint.is_conversation());
    if let (true, Some(session), Some(key)) = (moved, session, ex.key()) {
        let now = host.now_ms();
        let before = sticky::bound(host.shared(), key.id, session, now);
        if sticky::bind(host.shared(), key.id, session, served.provider_id, before, now).is_none() {
            log::warn!("cannot store a session's provider in shared data");
        }
    }
    moved
}

/// In attempt mode, after the body: the plan of this attempt's provider.
/// An attempt that cannot be planned answers 503, which the gateway's
/// router retries with the next candidate.
pub struct AttemptProvider;

impl Guard for AttemptProvider {
    fn name(&self) -> &'static str {
        "attempt_provider"
    }

    fn check(&self, cx: &mut Cx<'_>) -> Result<Step, String> {
        let ex = &mut *cx.ex;
        let unavailable = |why: &str| {
            Ok(Step::Answer(LocalReply::new(503, "no_provider_available", format!("No provider is available: {why}."))))
        };
        let Some(snapshot) = ex.snapshot.clone() else { return unavailable("no policy yet") };
        let Some(id) = ex.attempt_provider else { return unavailable("no candidate for this attempt") };
        let Some(provider) = snapshot.providers.iter().find(|p| p.provider.id == id && p.provider.enabled) else {
            return unavailable("the provider is no longer enabled");
        };
        let mut planned = plan(provider, &auth::without_query_param(&ex.path, "key"));
        let redirect = ex.info.model.as_deref().and_then(|m| provider.redirects.apply(m)).map(str::to_string);
        if let Some(target) = redirect {
            redirect_model(ex, &mut planned, &target)?;
        }
        ex.plan = Some(planned);
        Ok(Step::Next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_n_goes_to_the_nth_candidate() {
        let header = encode_candidates(&[3, 7, 9]);
        assert_eq!(header, "3,7,9");
        assert_eq!(candidate(&header, "1"), Some(3));
        assert_eq!(candidate(&header, "3"), Some(9));
        assert_eq!(candidate(&header, "4"), None, "more attempts than candidates");
        assert_eq!(candidate(&header, "0"), None);
        assert_eq!(candidate(&header, "x"), None);
        assert_eq!(candidate("", "1"), None);
    }

    #[test]
    fn served_round_trips() {
        for served in [
            Served { provider_id: 7, usage_added: true, model: Some("claude-sonnet-4-5".into()) },
            Served { provider_id: 1, usage_added: false, model: None },
            Served { provider_id: 2, usage_added: false, model: Some("a,b".into()) },
        ] {
            assert_eq!(Served::decode(&served.encode()), Some(served));
        }
        assert_eq!(Served::decode("7"), None);
        assert_eq!(Served::decode("x,1,"), None);
        assert_eq!(Served::decode("7,2,"), None);
    }
}
