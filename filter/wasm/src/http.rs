//! One client request. Headers are copied into the core's `Exchange` during
//! the headers phase; the guard chain (in core) decides; this glue only
//! carries out its verdicts: hold the request, call the control plane,
//! answer locally, or forward with the chosen provider. Then it meters the
//! response and queues the audit event.

use std::collections::HashMap;
use std::rc::Rc;

use hubgate_core::api::{Dialect, Endpoint};
use hubgate_core::billing::{settle, Settlement};
use hubgate_core::chain::{self, Callout, Cx, Exchange, Verdict};
use hubgate_core::clip::{clip, MAX_ERROR, MAX_MODEL, MAX_PATH, MAX_REQUEST_ID, MAX_USER_AGENT};
use hubgate_core::guards::auth;
use hubgate_core::guards::body_size::too_large;
use hubgate_core::guards::lockout::take_global_audit_row;
use hubgate_core::guards::failover::{self, Served};
use hubgate_core::guards::provider::{self, UpstreamPlan, UPSTREAM_TLS_HEADER};
use hubgate_core::headers::Headers;
use hubgate_core::locale::{localize, Locale};
use hubgate_core::reply::LocalReply;
use hubgate_core::usage::strip::UsageChunkFilter;
use hubgate_core::usage::{Metered, ResponseMeter};
use hubgate_core::guards::{circuit, quota, share};
use hubgate_wire::{
    KeyResolveRequest, KeyResolveResponse, LeaseRequest, LeaseResponse, RequestEvent, ShareAsk, ShareRequest, ShareResponse,
};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType};
use rust_decimal::Decimal;

use crate::events;
use crate::host;
use crate::profile::{self, Phase};
use crate::vm::Vm;

enum Call {
    /// The request waits for this answer.
    Key,
    /// Refreshes a key already in use; the request does not wait.
    KeyRefresh,
    Snapshot,
    /// Quota budget; `wait`: the request waits for it.
    Lease { wait: bool },
    Share { wait: bool },
}

#[derive(Default)]
pub struct Http {
    vm: Option<Rc<Vm>>,
    /// Envoy's id of this context (the idle watch cuts streams by it).
    context_id: u32,
    started_ms: i64,
    ex: Exchange,
    calls: HashMap<u32, Call>,
    /// Size of the buffered body at its last callback.
    body_size: usize,
    /// Length of the body, kept after the body itself is dropped.
    body_len: usize,
    /// The request was held (Pause) and must be resumed once decided.
    held: bool,
    decided: bool,
    reply: Option<LocalReply>,
    /// A made-up success answered the request (its `blocked_by` code).
    synthetic: Option<&'static str>,
    /// Envoy answered by itself (provider unreachable, request timeout);
    /// the client gets this instead, in its dialect.
    envoy_error: Option<LocalReply>,
    status: Option<u16>,
    ttfb_ms: Option<u64>,
    meter: Option<ResponseMeter>,
    /// Takes out the usage chunk hubgate asked for (`stream_usage`).
    usage_strip: Option<UsageChunkFilter>,
    /// The cost, once known (settled at the response's end).
    settled: Option<(Settlement, Option<String>)>,
    /// The quota leases the request spent under.
    leases: Vec<i64>,
    /// With failover: another provider than the first candidate served.
    failed_over: bool,
    /// The provider's idle timeout cut the response stream.
    idle_cut: bool,
}

impl Http {
    pub fn new(vm: Option<Rc<Vm>>, context_id: u32) -> Http {
        Http { vm, context_id, ..Http::default() }
    }

    fn send(&mut self, reply: LocalReply) -> Action {
        if let Some(vm) = &self.vm {
            vm.metrics.inc(&format!("hubgate_local_reply_{}_total", reply.code));
        }
        let snapshot = self.ex.snapshot.clone().or_else(|| self.vm.as_ref().and_then(|vm| vm.snapshot()));
        let reply = localize(reply, snapshot.map_or(Locale::En, |s| s.locale));
        let body = reply.body(self.ex.dialect, &self.ex.request_id);
        host::send_reply(reply.status, &reply.response_headers(&self.ex.request_id), &body);
        self.decided = true;
        self.reply = Some(reply);
        Action::Pause
    }

    fn waiting(&self) -> bool {
        self.calls.values().any(|c| !matches!(c, Call::KeyRefresh | Call::Lease { wait: false } | Call::Share { wait: false }))
    }

    /// Runs the chain from where it stopped and carries out its verdict.
    fn advance(&mut self) -> Action {
        let Some(vm) = self.vm.clone() else { return self.send(not_configured()) };
        loop {
            if self.decided {
                return Action::Continue;
            }
            if self.waiting() {
                self.held = true;
                return Action::Pause;
            }
            let mut cx = Cx { host: vm.as_ref(), vm: &vm.state, ex: &mut self.ex, background: Vec::new() };
            let verdict = profile::time(Phase::Chain, || chain::run(&mut cx));
            for callout in std::mem::take(&mut cx.background) {
                // A refresh that cannot start is retried by a later request.
                let _ = self.start_call(&vm, callout);
            }
            match verdict {
                Verdict::NeedBody => {
                    self.held = true;
                    return Action::Pause;
                }
                Verdict::Call(callout) => {
                    if let Err(call) = self.start_call(&vm, callout) {
                        // Could not even start: the guard sees a failed answer.
                        self.on_answer(&vm, call, None, &[]);
                    }
                }
                Verdict::Answer(reply) => return self.send(reply),
                Verdict::Respond(synthetic) => {
                    vm.metrics.inc(&format!("hubgate_local_reply_{}_total", synthetic.code));
                    host::send_reply(synthetic.status, &synthetic.headers, &synthetic.body);
                    self.synthetic = Some(synthetic.code);
                    self.status = Some(synthetic.status);
                    self.decided = true;
                    return Action::Pause;
                }
                Verdict::Forward => {
                    profile::time(Phase::Forward, || {
                        apply_filter_edits(&self.ex, self.body_size);
                        match (&self.ex.failover, &self.ex.plan) {
                            (Some(candidates), _) => to_attempts(candidates, &self.ex),
                            (None, Some(plan)) => apply(plan, &self.ex.headers),
                            (None, None) => {}
                        }
                    });
                    // Only its length is needed from here on.
                    self.body_len = self.ex.body.take().map_or(0, |b| b.len());
                    self.decided = true;
                    return Action::Continue;
                }
            }
        }
    }

    /// Starts a call to the control plane; the call's kind back if it
    /// could not start.
    fn start_call(&mut self, vm: &Vm, callout: Callout) -> Result<(), Call> {
        let (call, token) = match callout {
            Callout::ResolveKey { hash } => (Call::Key, resolve_key(vm, &hash)),
            Callout::RefreshKey { hash } => (Call::KeyRefresh, resolve_key(vm, &hash)),
            Callout::Snapshot => (Call::Snapshot, vm.call_control_plane("GET", hubgate_wire::SNAPSHOT_PATH, None, None)),
            Callout::Lease { key_id, need_usd, wait } => (Call::Lease { wait }, ask_lease(vm, key_id, need_usd)),
            Callout::Share { key_id, asks, wait } => (Call::Share { wait }, ask_share(vm, key_id, asks)),
        };
        match token {
            Some(token) => {
                self.calls.insert(token, call);
                Ok(())
            }
            None => Err(call),
        }
    }

    /// Stores a control-plane answer (`status` `None`: no answer).
    fn on_answer(&mut self, vm: &Vm, call: Call, status: Option<u16>, body: &[u8]) {
        let mut cx = Cx { host: vm, vm: &vm.state, ex: &mut self.ex, background: Vec::new() };
        match call {
            Call::Key | Call::KeyRefresh => {
                let answer = match status {
                    Some(200) => serde_json::from_slice::<KeyResolveResponse>(body).map_err(|e| e.to_string()),
                    other => Err(format!("status {other:?}")),
                };
                auth::on_key_resolved(&mut cx, answer, matches!(call, Call::Key));
            }
            Call::Snapshot => {
                if status == Some(200) {
                    if let Err(e) = vm.store_snapshot(body) {
                        log::error!("{e}");
                    }
                } else {
                    vm.metrics.inc("hubgate_callout_failures_total");
                    log::warn!("snapshot fetch failed: status {status:?}");
                }
                self.ex.snapshot = vm.snapshot();
                self.ex.snapshot_fetched = true;
            }
            Call::Lease { wait } => {
                let answer = match status {
                    Some(200) => serde_json::from_slice::<LeaseResponse>(body).map_err(|e| e.to_string()),
                    other => Err(format!("status {other:?}")),
                };
                match answer {
                    Ok(answer) => quota::apply(&host::Shared, &answer, host::now_ms()),
                    Err(e) => {
                        vm.metrics.inc("hubgate_callout_failures_total");
                        log::warn!("quota lease request failed: {e}");
                        self.ex.lease_failed |= wait;
                    }
                }
            }
            Call::Share { wait } => {
                let answer = match status {
                    Some(200) => serde_json::from_slice::<ShareResponse>(body).map_err(|e| e.to_string()),
                    other => Err(format!("status {other:?}")),
                };
                match answer {
                    Ok(answer) => share::apply(&host::Shared, &answer, host::now_ms()),
                    Err(e) => {
                        vm.metrics.inc("hubgate_callout_failures_total");
                        log::warn!("rate share request failed: {e}");
                        self.ex.share_failed |= wait;
                    }
                }
            }
        }
    }

    fn event(&mut self, vm: &Vm) -> RequestEvent {
        let now = host::now_ms();
        let status = self.final_status();
        let (settlement, upstream_model) = self.settled.take().unwrap_or_else(|| self.settlement(status));
        let leases = std::mem::take(&mut self.leases);
        let ex = &self.ex;
        let multiplier = ex.plan.as_ref().map_or(Decimal::ONE, |p| p.cost_multiplier);
        let key = ex.key();
        RequestEvent {
            event_id: vm.next_event_id(),
            request_id: clip(&ex.request_id, MAX_REQUEST_ID),
            started_at_ms: self.started_ms,
            user_id: key.map(|k| k.user.id),
            key_id: key.map(|k| k.id),
            key_masked: key.map(|k| k.masked.clone()).or_else(|| ex.key_masked.clone()),
            provider_id: ex.plan.as_ref().map(|p| p.provider_id),
            method: clip(&ex.method, 16),
            endpoint: clip(hubgate_core::api::path_without_query(&ex.path), MAX_PATH),
            original_model: ex.info.model.as_deref().map(|m| clip(m, MAX_MODEL)),
            upstream_model: ex.plan.as_ref().and(upstream_model).map(|m| clip(&m, MAX_MODEL)),
            status,
            duration_ms: (now - self.started_ms).max(0) as u64,
            ttfb_ms: self.ttfb_ms,
            usage: settlement.usage,
            cost_usd: settlement.cost_usd,
            cost_multiplier: multiplier,
            cost_breakdown: settlement.breakdown,
            session_id: ex.session_id.clone(),
            user_agent: ex.headers.get("user-agent").map(|ua| clip(ua, MAX_USER_AGENT)),
            client_ip: ex.client_ip.clone(),
            stream: ex.info.stream || ex.endpoint == Endpoint::Gemini { stream: true, conversation: true },
            blocked_by: self.reply.as_ref().map(|r| r.code).or(self.synthetic).map(str::to_string),
            blocked_reason: self.reply.as_ref().map(blocked_reason),
            error: match (self.reply.as_ref().or(self.envoy_error.as_ref()), status) {
                (Some(r), _) => Some(clip(&r.message, MAX_ERROR)),
                (None, _) if self.idle_cut => Some(format!(
                    "the provider sent nothing for {} ms: stream cut",
                    ex.plan.as_ref().and_then(|p| p.idle_ms).unwrap_or(0)
                )),
                (None, 0) => Some("no response (client disconnected)".to_string()),
                (None, s) if !(200..300).contains(&s) => Some(format!("upstream status {s}")),
                _ => None,
            },
            flags: settlement
                .flags
                .into_iter()
                .chain(self.failed_over.then(|| "failover".to_string()))
                .chain(self.idle_cut.then(|| "idle_timeout".to_string()))
                .collect(),
            leases,
        }
    }

    /// The status the client got.
    fn final_status(&self) -> u16 {
        self.reply
            .as_ref()
            .map(|r| r.status)
            .or(self.status)
            .or_else(|| host::property(&["response", "code"]).and_then(|s| s.parse().ok()))
            .unwrap_or(0)
    }

    /// What the request costs, from the response as metered, and the model
    /// that answered.
    fn settlement(&mut self, status: u16) -> (Settlement, Option<String>) {
        let ex = &self.ex;
        let multiplier = ex.plan.as_ref().map_or(Decimal::ONE, |p| p.cost_multiplier);
        let metered = self.meter.take().map(ResponseMeter::finish).unwrap_or_default();
        let redirected = ex.plan.as_ref().and_then(|p| p.model.clone());
        let upstream_model = metered.model.clone().or(redirected).or_else(|| ex.info.model.clone());
        let settlement = match &ex.plan {
            Some(_) => {
                let price = ex
                    .snapshot
                    .as_ref()
                    .and_then(|s| upstream_model.as_deref().and_then(|m| s.prices.lookup(m)).copied());
                let conversation = ex.endpoint.is_conversation();
                settle(status, conversation, &metered, self.body_len as u64, price.as_ref(), multiplier)
            }
            None => settle(status, false, &Metered::default(), 0, None, multiplier),
        };
        (settlement, upstream_model)
    }

    /// Gives the quota reservation back, charged at the real cost. Done as
    /// soon as the response is complete, before the client sees its end, so
    /// the client's next request finds the budget already settled.
    fn settle_quota(&mut self) {
        let Some(reservation) = self.ex.reservation.take() else { return };
        let settled = self.settled.take().unwrap_or_else(|| self.settlement(self.final_status()));
        quota::settle(&host::Shared, &reservation, settled.0.cost_usd);
        self.settled = Some(settled);
        self.leases = reservation.lease_ids();
    }

    /// Requests refused without a valid key get audit rows only for the
    /// first few per client address and minute, and a bounded number in
    /// all: a guessing attack must not fill the audit log. The rest are
    /// counted.
    fn audit_wanted(&self, vm: &Vm) -> bool {
        if self.reply.is_none() || self.ex.key().is_some() {
            return true;
        }
        let c = vm.config();
        let now = host::now_ms();
        let per_client = self.ex.client_ip.as_deref().is_none_or(|ip| {
            vm.state.clients.take_audit_row(&host::Shared, ip, now, c.unauthenticated_audit_per_client_per_minute)
        });
        per_client
            && take_global_audit_row(&host::Shared, UNAUTHENTICATED_AUDIT_KEY, now, c.unauthenticated_audit_per_minute)
    }
}

const UNAUTHENTICATED_AUDIT_KEY: &str = "hubgate.audit.unauthenticated";

fn ask_lease(vm: &Vm, key_id: i64, need_usd: Decimal) -> Option<u32> {
    let request = LeaseRequest { instance: vm.instance.clone(), key_id, need_usd };
    let body = serde_json::to_vec(&request).ok()?;
    vm.call_control_plane("POST", hubgate_wire::LEASES_PATH, None, Some(&body))
}

fn ask_share(vm: &Vm, key_id: i64, asks: Vec<ShareAsk>) -> Option<u32> {
    let request = ShareRequest { instance: vm.instance.clone(), key_id, asks };
    let body = serde_json::to_vec(&request).ok()?;
    vm.call_control_plane("POST", hubgate_wire::SHARES_PATH, None, Some(&body))
}

fn resolve_key(vm: &Vm, hash: &str) -> Option<u32> {
    let body = serde_json::to_vec(&KeyResolveRequest { key_hash: hash.to_string() }).ok()?;
    vm.call_control_plane("POST", hubgate_wire::KEY_RESOLVE_PATH, None, Some(&body))
}

/// Sends the request to the chosen provider: its authority and path, its
/// credential instead of the client's. Only headers the client actually sent
/// are removed (each hostcall costs).
pub(crate) fn apply(plan: &UpstreamPlan, client_headers: &Headers) {
    let replaced = |name: &str| plan.set_headers.iter().any(|(set, _)| set.eq_ignore_ascii_case(name));
    for name in plan.remove_headers.iter().chain([&UPSTREAM_TLS_HEADER, &failover::ATTEMPT_HEADER]) {
        if client_headers.get(name).is_some() && !replaced(name) {
            host::set_request_header(name, None);
        }
    }
    for (name, value) in &plan.set_headers {
        host::set_request_header(name, Some(value));
    }
    identity_encoding(client_headers);
    host::set_request_header(":authority", Some(&plan.authority));
    host::set_request_header(":path", Some(&plan.path));
    if plan.tls {
        host::set_request_header(UPSTREAM_TLS_HEADER, Some("1"));
    }
    // Envoy stops its per-try timer once the response has started: it
    // bounds the wait for the first byte only.
    if let Some(ms) = plan.first_byte_ms {
        host::set_request_header(failover::FIRST_BYTE_TIMEOUT_HEADER, Some(&ms.to_string()));
    }
}

/// Usage is read from the response body: it must come uncompressed.
fn identity_encoding(client_headers: &Headers) {
    if client_headers.get("accept-encoding").is_some_and(|v| !v.eq_ignore_ascii_case("identity")) {
        host::set_request_header("accept-encoding", Some("identity"));
    }
}

/// With failover: to the attempt listener, which applies each candidate's
/// plan in turn (guards/failover.rs); Envoy retries up to once per
/// candidate. No credential is set here.
fn to_attempts(candidates: &[i64], ex: &Exchange) {
    for name in auth::CREDENTIAL_HEADERS.iter().chain([&UPSTREAM_TLS_HEADER]) {
        if ex.headers.get(name).is_some() {
            host::set_request_header(name, None);
        }
    }
    identity_encoding(&ex.headers);
    host::set_request_header(":authority", Some(failover::ATTEMPT_AUTHORITY));
    host::set_request_header(":path", Some(&auth::without_query_param(&ex.path, "key")));
    host::set_request_header(failover::ATTEMPT_HEADER, Some(&failover::encode_candidates(candidates)));
    let retries = candidates.len().saturating_sub(1).to_string();
    host::set_request_header(failover::MAX_RETRIES_HEADER, Some(&retries));
}

/// What the request filters changed goes upstream: headers in their
/// order, and a new body with its length (`body_size`: the buffered body's).
pub(crate) fn apply_filter_edits(ex: &Exchange, body_size: usize) {
    for (name, value) in &ex.header_edits {
        host::set_request_header(name, value.as_deref());
    }
    if ex.body_changed {
        if let Some(body) = &ex.body {
            host::replace_request_body(body_size, body);
            if ex.headers.get("content-length").is_some() {
                host::set_request_header("content-length", Some(&body.len().to_string()));
            }
        }
    }
}

/// What the audit row says about a refusal: its code and details.
fn blocked_reason(reply: &LocalReply) -> serde_json::Value {
    let mut reason = serde_json::Map::new();
    reason.insert("code".into(), reply.code.into());
    reason.extend(reply.details.clone());
    serde_json::Value::Object(reason)
}

fn not_configured() -> LocalReply {
    LocalReply::new(503, "filter_not_configured", "The gateway filter is not configured.")
}

/// Envoy's own answer to a request the guard chain had not decided yet
/// (request timeout, body over Envoy's buffer limit, …).
fn envoy_reply(status: u16, details: &str) -> LocalReply {
    match status {
        408 => LocalReply::new(408, "request_timeout", "The request was not received in time."),
        413 => LocalReply::new(413, "request_too_large", "The request body is larger than the gateway buffers."),
        _ => LocalReply::new(status, "gateway_error", format!("The gateway could not handle the request ({details}).")),
    }
}

fn client_ip(address: &str) -> String {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest).to_string();
    }
    match address.rsplit_once(':') {
        Some((ip, port)) if !ip.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => ip.to_string(),
        _ => address.to_string(),
    }
}

impl Context for Http {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        let Some(vm) = self.vm.clone() else { return };
        let status = host::call_response_status();
        let body = host::buffer(BufferType::HttpCallResponseBody, body_size);
        let Some(call) = self.calls.remove(&token) else { return };
        self.on_answer(&vm, call, status, &body);
        // Already answered (e.g. 413 while the key was being resolved).
        if self.decided {
            return;
        }
        let was_held = self.held;
        if self.advance() == Action::Continue && was_held {
            host::resume_request();
        }
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        profile::time(Phase::RequestHeaders, || self.request_headers(end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        profile::time(Phase::RequestBody, || self.request_body(body_size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        if self.decided {
            return Action::Continue;
        }
        // The body ended without end_of_stream; it is still buffered.
        if self.ex.body.is_none() {
            self.ex.body = Some(host::buffer(BufferType::HttpRequestBody, self.body_size));
        }
        self.advance()
    }

    fn on_http_response_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        profile::time(Phase::ResponseHeaders, || self.response_headers(end_of_stream))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        profile::time(Phase::ResponseBody, || self.response_body(body_size, end_of_stream))
    }

    fn on_log(&mut self) {
        profile::time(Phase::Log, || self.log());
        profile::request_done();
    }
}

/// The callbacks' work (the `HttpContext` impl above only times it).
impl Http {
    fn request_headers(&mut self, end_of_stream: bool) -> Action {
        self.started_ms = host::now_ms();
        let headers = Headers::new(profile::time(Phase::HeaderCopy, host::request_headers));
        let path = headers.get(":path").unwrap_or("/").to_string();
        self.ex = Exchange {
            request_id: headers.get("x-request-id").unwrap_or("").to_string(),
            method: headers.get(":method").unwrap_or("").to_string(),
            endpoint: Endpoint::from_path(&path),
            dialect: Dialect::from_path(&path),
            client_ip: host::property(&["source", "address"]).map(|a| client_ip(&a)),
            // u64: on wasm32 a usize cannot hold a length of 4 GiB or more.
            content_length: headers.get("content-length").and_then(|v| v.trim().parse::<u64>().ok()),
            body: end_of_stream.then(Vec::new),
            path,
            headers,
            ..Exchange::default()
        };
        let Some(vm) = self.vm.clone() else {
            return self.send(not_configured());
        };
        vm.metrics.inc("hubgate_requests_total");
        if self.ex.request_id.is_empty() {
            self.ex.request_id = vm.next_event_id();
        }
        self.ex.snapshot = vm.snapshot();
        self.advance()
    }

    fn request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.decided {
            return Action::Continue;
        }
        let max = self.vm.as_ref().map_or(usize::MAX, |vm| vm.config().max_body_bytes);
        if body_size > max {
            return self.send(too_large(max));
        }
        self.body_size = body_size;
        if !end_of_stream {
            // Envoy keeps buffering the body until end of stream.
            self.held = true;
            return Action::Pause;
        }
        self.ex.body = Some(profile::time(Phase::BodyRead, || host::buffer(BufferType::HttpRequestBody, body_size)));
        self.advance()
    }

    fn response_headers(&mut self, end_of_stream: bool) -> Action {
        if self.reply.is_some() || self.synthetic.is_some() {
            return Action::Continue;
        }
        self.status = host::response_header(":status").and_then(|s| s.parse().ok());
        let status = self.status.unwrap_or(0);
        if status >= 400 && !end_of_stream {
            let details = host::property(&["response", "code_details"]).unwrap_or_default();
            if !details.is_empty() && details != "via_upstream" {
                // Envoy answered by itself: in the client's dialect instead.
                let reply = match self.ex.plan {
                    Some(_) => provider::upstream_failed(status, &details),
                    None => envoy_reply(status, &details),
                };
                let reply = localize(reply, self.ex.snapshot.as_ref().map_or(Locale::En, |s| s.locale));
                for (name, value) in reply.response_headers(&self.ex.request_id) {
                    host::set_response_header(&name, Some(&value));
                }
                host::set_response_header("content-length", None);
                self.envoy_error = Some(reply);
                return Action::Continue;
            }
        }
        if self.ex.plan.is_none() {
            return Action::Continue;
        }
        if let (Some(_), Some(vm)) = (&self.ex.failover, self.vm.clone()) {
            let served = host::response_header(failover::SERVED_HEADER);
            if served.is_some() {
                host::set_response_header(failover::SERVED_HEADER, None);
            }
            let served = served.as_deref().and_then(Served::decode);
            self.failed_over = failover::on_served(&mut self.ex, vm.as_ref(), served, vm.snapshot().as_deref());
            if self.failed_over {
                vm.metrics.inc("hubgate_failovers_total");
            }
        }
        if let (Some(idle_ms), Some(vm), false) = (self.ex.plan.as_ref().and_then(|p| p.idle_ms), &self.vm, end_of_stream) {
            vm.state.idle.borrow_mut().watch(self.context_id, idle_ms, host::now_ms());
        }
        self.ttfb_ms = Some((host::now_ms() - self.started_ms).max(0) as u64);
        let content_type = host::response_header("content-type").unwrap_or_default();
        self.meter = Some(ResponseMeter::new(self.ex.endpoint, &content_type));
        if self.ex.usage_added && hubgate_core::usage::is_event_stream(&content_type) {
            self.usage_strip = Some(UsageChunkFilter::default());
            host::set_response_header("content-length", None);
        }
        Action::Continue
    }

    fn response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if let Some(vm) = &self.vm {
            let mut idle = vm.state.idle.borrow_mut();
            match end_of_stream {
                true => self.idle_cut |= idle.forget(self.context_id),
                false => idle.touch(self.context_id, host::now_ms()),
            }
        }
        if let Some(reply) = &self.envoy_error {
            if !end_of_stream {
                return Action::Pause;
            }
            host::replace_response_body(body_size, &reply.body(self.ex.dialect, &self.ex.request_id));
            return Action::Continue;
        }
        if let Some(meter) = &mut self.meter {
            // Each call sees only the new chunk: nothing is held back.
            if meter.reads_body() {
                let chunk = host::buffer(BufferType::HttpResponseBody, body_size);
                meter.feed(&chunk);
                if let Some(strip) = &mut self.usage_strip {
                    let passed = strip.filter(&chunk, end_of_stream);
                    if passed != chunk {
                        host::replace_response_body(body_size, &passed);
                    }
                }
            } else {
                meter.skip(body_size);
            }
        }
        if end_of_stream {
            self.settle_quota();
        }
        Action::Continue
    }

    /// Counts the provider's answer (or Envoy failing to reach it) for its
    /// circuit breaker; a local reply or a client gone before any answer
    /// says nothing about the provider.
    fn record_circuit(&self) {
        // With failover every attempt counted for its own provider.
        if self.reply.is_some() || self.synthetic.is_some() || self.ex.failover.is_some() {
            return;
        }
        record_circuit(&self.ex, self.status);
    }

    fn log(&mut self) {
        let Some(vm) = self.vm.clone() else { return };
        let mut cx = Cx { host: vm.as_ref(), vm: &vm.state, ex: &mut self.ex, background: Vec::new() };
        auth::release_pending_auth(&mut cx);
        self.idle_cut |= vm.state.idle.borrow_mut().forget(self.context_id);
        // Budget is given back whether or not the request gets an audit row.
        self.settle_quota();
        self.record_circuit();
        if self.started_ms == 0 {
            return;
        }
        if !self.audit_wanted(&vm) {
            vm.metrics.inc("hubgate_unauthenticated_unaudited_total");
            return;
        }
        let event = profile::time(Phase::EventBuild, || self.event(&vm));
        profile::time(Phase::EventRecord, || events::record(&vm, &event));
    }
}

/// Counts the answer `status` of the exchange's provider for its circuit
/// breaker, in shared data, and logs when that opens the circuit.
pub(crate) fn record_circuit(ex: &Exchange, status: Option<u16>) {
    let (Some(plan), Some(snapshot), Some(status)) = (&ex.plan, &ex.snapshot, status) else { return };
    let Some(p) = snapshot.providers.iter().find(|p| p.provider.id == plan.provider_id) else { return };
    let before = circuit::read(&host::Shared, plan.provider_id);
    match circuit::record(&host::Shared, plan.provider_id, &p.provider.circuit, status, host::now_ms()) {
        Some(after) if after.open_until_ms != before.open_until_ms && after.open_until_ms != 0 => {
            log::warn!("provider {} failed repeatedly (last status {status}): circuit open", plan.provider_id);
        }
        Some(_) => {}
        None => log::warn!("cannot update provider {}'s circuit in shared data", plan.provider_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ip_strips_port() {
        assert_eq!(client_ip("127.0.0.1:5555"), "127.0.0.1");
        assert_eq!(client_ip("[::1]:5555"), "::1");
        assert_eq!(client_ip("10.0.0.1"), "10.0.0.1");
    }
}

