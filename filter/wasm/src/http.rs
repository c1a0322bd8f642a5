//! One client request. Headers are copied during the headers phase; the
//! request is held until the key is resolved and the body is complete, then
//! the guard chain decides: a local reply, or an upstream plan.

use std::collections::HashMap;
use std::rc::Rc;

use hubgate_core::api::{Dialect, Endpoint};
use hubgate_core::billing::settle;
use hubgate_core::clip::{clip, MAX_ERROR, MAX_MODEL, MAX_PATH, MAX_REQUEST_ID, MAX_USER_AGENT};
use hubgate_core::guards::auth::{self, check_key, control_plane_unavailable, extract_key, invalid_key};
use hubgate_core::guards::lockout::{take_global_audit_row, Subject};
use hubgate_core::guards::provider::{self, UpstreamPlan, UPSTREAM_TLS_HEADER};
use hubgate_core::guards::session::session_id;
use hubgate_core::headers::Headers;
use hubgate_core::keys::{CachedKey, Lookup};
use hubgate_core::reply::LocalReply;
use hubgate_core::request::{inspect, RequestInfo};
use hubgate_core::snapshot::CompiledSnapshot;
use hubgate_core::usage::{Metered, ResponseMeter};
use hubgate_wire::{hash_key, mask_key, KeyResolveRequest, KeyResolveResponse, RequestEvent, UnknownPathAction};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType};
use rust_decimal::Decimal;

use crate::events;
use crate::host;
use crate::vm::Vm;

enum Call {
    /// The request waits for this answer.
    Key,
    /// Refreshes a key already in use; the request does not wait.
    KeyRefresh,
    Snapshot,
}

#[derive(Default)]
pub struct Http {
    vm: Option<Rc<Vm>>,
    started_ms: i64,
    request_id: String,
    method: String,
    path: String,
    endpoint: Endpoint,
    dialect: Dialect,
    headers: Headers,
    client_ip: Option<String>,
    key_hash: Option<String>,
    key_masked: Option<String>,
    /// The key as resolved (fresh, or stale when the control plane is down).
    key_entry: Option<Rc<CachedKey>>,
    snapshot: Option<Rc<CompiledSnapshot>>,
    calls: HashMap<u32, Call>,
    body: Vec<u8>,
    /// Size of the buffered body at its last callback.
    body_size: usize,
    body_done: bool,
    /// The request was held (Pause) and must be resumed once decided.
    held: bool,
    /// The key was checked and may be used (guard 1 passed).
    authenticated: bool,
    /// This request counts in `Vm::pending_auth` until its key is resolved.
    pending_auth: bool,
    decided: bool,
    info: RequestInfo,
    session_id: Option<String>,
    plan: Option<UpstreamPlan>,
    reply: Option<LocalReply>,
    /// Envoy answered for an unreachable provider; the client gets this
    /// instead, in its dialect.
    upstream_error: Option<LocalReply>,
    status: Option<u16>,
    ttfb_ms: Option<u64>,
    meter: Option<ResponseMeter>,
}

impl Http {
    pub fn new(vm: Option<Rc<Vm>>) -> Http {
        Http { vm, ..Http::default() }
    }

    fn send(&mut self, reply: LocalReply) -> Action {
        if let Some(vm) = &self.vm {
            vm.metrics.inc(&format!("hubgate_local_reply_{}_total", reply.code));
        }
        let body = reply.body(self.dialect, &self.request_id);
        host::send_reply(reply.status, &reply.response_headers(&self.request_id), &body);
        self.decided = true;
        self.reply = Some(reply);
        Action::Pause
    }

    fn locked_out(&self, vm: &Vm, subject: Subject<'_>, now: i64) -> Option<LocalReply> {
        let secs = vm.clients.locked_for_secs(&host::Shared, subject, now)?;
        Some(
            LocalReply::new(
                429,
                "auth_locked_out",
                format!("Too many failed authentication attempts. Try again in {secs} seconds."),
            )
            .with_header("retry-after", secs.to_string()),
        )
    }

    fn start_key_resolve(&mut self, vm: &Vm, hash: &str, call: Call) {
        let Ok(body) = serde_json::to_vec(&KeyResolveRequest { key_hash: hash.to_string() }) else { return };
        if let Some(token) = vm.call_control_plane("POST", hubgate_wire::KEY_RESOLVE_PATH, None, Some(&body)) {
            self.calls.insert(token, call);
        }
    }

    /// Resolves the key while the request waits, within the client's
    /// allowance of such requests.
    fn wait_for_key(&mut self, vm: &Vm, hash: &str) -> Result<(), LocalReply> {
        if let Some(ip) = &self.client_ip {
            vm.pending_auth.borrow_mut().acquire(ip, vm.config.max_pending_auth_per_client)?;
            self.pending_auth = true;
        }
        self.start_key_resolve(vm, hash, Call::Key);
        Ok(())
    }

    fn release_pending_auth(&mut self, vm: &Vm) {
        if std::mem::take(&mut self.pending_auth) {
            if let Some(ip) = &self.client_ip {
                vm.pending_auth.borrow_mut().release(ip);
            }
        }
    }

    fn start_snapshot_fetch(&mut self, vm: &Vm) {
        if let Some(token) = vm.call_control_plane("GET", hubgate_wire::SNAPSHOT_PATH, None, None) {
            self.calls.insert(token, Call::Snapshot);
        }
    }

    /// Holds the request until everything needed has arrived, then decides.
    /// Auth needs no body: a bad key is answered as soon as it is known,
    /// without waiting for (or buffering) the rest of the body.
    fn advance(&mut self) -> Action {
        if self.decided {
            return Action::Continue;
        }
        if !self.authenticated && !self.calls.values().any(|c| matches!(c, Call::Key)) {
            match self.authenticate() {
                Ok(()) => self.authenticated = true,
                Err(reply) => return self.send(reply),
            }
        }
        let waiting = self.calls.values().any(|c| !matches!(c, Call::KeyRefresh));
        if waiting || !self.body_done {
            self.held = true;
            return Action::Pause;
        }
        match self.decide() {
            Ok(plan) => {
                apply(&plan, &self.headers);
                self.plan = Some(plan);
                self.decided = true;
                Action::Continue
            }
            Err(reply) => self.send(reply),
        }
    }

    /// Guard 1: the resolved key (or its absence) decides.
    fn authenticate(&self) -> Result<(), LocalReply> {
        let vm = self.vm.as_ref().ok_or_else(not_configured)?;
        let now = host::now_ms();
        let entry = self.key_entry.as_ref().ok_or_else(control_plane_unavailable)?;
        let Some(key) = entry.key.as_ref() else {
            let policy = vm.config.lockout_policy();
            let subjects = self.client_ip.as_deref().map(Subject::Client).into_iter().chain(self.key_hash.as_deref().map(Subject::Key));
            for subject in subjects {
                if !vm.clients.record_failure(&host::Shared, subject, now, &policy) {
                    log::warn!("could not record a failed credential (shared data contended)");
                }
            }
            return Err(invalid_key());
        };
        check_key(key, now)
    }

    /// The rest of the guard chain, once key, snapshot and body are all here.
    fn decide(&mut self) -> Result<UpstreamPlan, LocalReply> {
        let vm = self.vm.clone().ok_or_else(not_configured)?;
        let snapshot = match self.snapshot.clone().or_else(|| vm.snapshot()) {
            Some(s) => s,
            None => {
                return Err(LocalReply::new(
                    503,
                    "policy_unavailable",
                    "The gateway has not received its policy from the control plane yet. Please retry shortly.",
                )
                .with_header("retry-after", "5"))
            }
        };
        self.snapshot = Some(snapshot.clone());

        let entry = self.key_entry.clone().ok_or_else(control_plane_unavailable)?;
        let key = entry.key.as_ref().ok_or_else(invalid_key)?;

        hubgate_core::path::check(&self.path)?;
        if self.endpoint == Endpoint::Other && snapshot.settings.unknown_path == UnknownPathAction::NotFound {
            // Never echo the query: it may carry `?key=`.
            let path = hubgate_core::api::path_without_query(&self.path);
            return Err(LocalReply::new(404, "not_found", format!("Unknown path `{}`.", clip(path, MAX_PATH))));
        }
        if self.endpoint != Endpoint::Other {
            self.info = inspect(self.endpoint, &self.path, &self.body)?;
        }
        self.session_id = session_id(&self.headers, &self.info);

        // Guard 10: provider selection.
        let seed = fnv(self.request_id.as_bytes()) ^ (host::now_ns() as u64);
        let chosen = provider::select(&snapshot, key, self.endpoint, self.dialect, self.info.model.as_deref(), seed)?;
        let path = auth::without_query_param(&self.path, "key");
        Ok(provider::plan(chosen, &path))
    }

    fn on_key_resolved(&mut self, vm: &Vm, status: Option<u16>, body: &[u8]) {
        let answer = match status {
            Some(200) => serde_json::from_slice::<KeyResolveResponse>(body).map_err(|e| e.to_string()),
            other => Err(format!("status {other:?}")),
        };
        let Some(hash) = self.key_hash.clone() else { return };
        match answer {
            Ok(resp) => {
                let entry = Rc::new(CachedKey { fetched_ms: host::now_ms(), epoch: resp.key_epoch, key: resp.key });
                if let Err(e) = vm.keys.store(&host::Shared, &hash, entry.clone()) {
                    log::warn!("{e}");
                }
                if !self.decided {
                    self.key_entry = Some(entry);
                }
            }
            Err(e) => {
                vm.metrics.inc("hubgate_callout_failures_total");
                match &self.key_entry {
                    Some(entry) => {
                        vm.metrics.inc("hubgate_fail_static_total");
                        log::warn!("key resolve failed ({e}); serving the cached entry");
                        // Don't ask again on every request while it is down.
                        let c = &vm.config;
                        let epoch = self.snapshot.as_ref().map(|s| s.key_epoch);
                        vm.keys.hold(&hash, entry, host::now_ms(), epoch, c.key_cache_ttl_ms, c.negative_key_cache_ttl_ms);
                    }
                    None => log::warn!("key resolve failed: {e}"),
                }
            }
        }
    }

    fn event(&mut self, vm: &Vm) -> RequestEvent {
        let now = host::now_ms();
        let reply_status = self.reply.as_ref().map(|r| r.status);
        let status = reply_status
            .or(self.status)
            .or_else(|| host::property(&["response", "code"]).and_then(|s| s.parse().ok()))
            .unwrap_or(0);
        let multiplier = self.plan.as_ref().map_or(Decimal::ONE, |p| p.cost_multiplier);
        let metered = self.meter.take().map(ResponseMeter::finish).unwrap_or_default();
        let upstream_model = metered.model.clone().or_else(|| self.info.model.clone());
        let settlement = match &self.plan {
            Some(_) => {
                let price = self
                    .snapshot
                    .as_ref()
                    .and_then(|s| upstream_model.as_deref().and_then(|m| s.prices.lookup(m)).copied());
                settle(status, self.endpoint.is_conversation(), &metered, self.body.len() as u64, price.as_ref(), multiplier)
            }
            None => settle(status, false, &Metered::default(), 0, None, multiplier),
        };
        let key = self.key_entry.as_ref().and_then(|e| e.key.as_ref());
        RequestEvent {
            event_id: vm.next_event_id(),
            request_id: clip(&self.request_id, MAX_REQUEST_ID),
            started_at_ms: self.started_ms,
            user_id: key.map(|k| k.user.id),
            key_id: key.map(|k| k.id),
            key_masked: key.map(|k| k.masked.clone()).or_else(|| self.key_masked.clone()),
            provider_id: self.plan.as_ref().map(|p| p.provider_id),
            method: clip(&self.method, 16),
            endpoint: clip(hubgate_core::api::path_without_query(&self.path), MAX_PATH),
            original_model: self.info.model.as_deref().map(|m| clip(m, MAX_MODEL)),
            upstream_model: self.plan.as_ref().and(upstream_model).map(|m| clip(&m, MAX_MODEL)),
            status,
            duration_ms: (now - self.started_ms).max(0) as u64,
            ttfb_ms: self.ttfb_ms,
            usage: settlement.usage,
            cost_usd: settlement.cost_usd,
            cost_multiplier: multiplier,
            session_id: self.session_id.clone(),
            user_agent: self.headers.get("user-agent").map(|ua| clip(ua, MAX_USER_AGENT)),
            client_ip: self.client_ip.clone(),
            stream: self.info.stream || self.endpoint == Endpoint::Gemini { stream: true, conversation: true },
            blocked_by: self.reply.as_ref().map(|r| r.code.to_string()),
            blocked_reason: None,
            error: match (self.reply.as_ref().or(self.upstream_error.as_ref()), status) {
                (Some(r), _) => Some(clip(&r.message, MAX_ERROR)),
                (None, 0) => Some("no response (client disconnected)".to_string()),
                (None, s) if !(200..300).contains(&s) => Some(format!("upstream status {s}")),
                _ => None,
            },
            flags: settlement.flags,
        }
    }
}

/// Sends the request to the chosen provider: its authority and path, its
/// credential instead of the client's. Only headers the client actually sent
/// are removed (each hostcall costs).
fn apply(plan: &UpstreamPlan, client_headers: &Headers) {
    let replaced = |name: &str| plan.set_headers.iter().any(|(set, _)| set.eq_ignore_ascii_case(name));
    for name in plan.remove_headers.iter().chain([&UPSTREAM_TLS_HEADER]) {
        if client_headers.get(name).is_some() && !replaced(name) {
            host::set_request_header(name, None);
        }
    }
    for (name, value) in &plan.set_headers {
        host::set_request_header(name, Some(value));
    }
    // Usage is read from the response body: it must come uncompressed.
    if client_headers.get("accept-encoding").is_some_and(|v| !v.eq_ignore_ascii_case("identity")) {
        host::set_request_header("accept-encoding", Some("identity"));
    }
    host::set_request_header(":authority", Some(&plan.authority));
    host::set_request_header(":path", Some(&plan.path));
    if plan.tls {
        host::set_request_header(UPSTREAM_TLS_HEADER, Some("1"));
    }
}

fn not_configured() -> LocalReply {
    LocalReply::new(503, "filter_not_configured", "The gateway filter is not configured.")
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
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
        match self.calls.remove(&token) {
            Some(Call::Key) => {
                self.release_pending_auth(&vm);
                self.on_key_resolved(&vm, status, &body);
            }
            Some(Call::KeyRefresh) => self.on_key_resolved(&vm, status, &body),
            Some(Call::Snapshot) => {
                if status == Some(200) {
                    if let Err(e) = vm.store_snapshot(&body) {
                        log::error!("{e}");
                    }
                } else {
                    vm.metrics.inc("hubgate_callout_failures_total");
                    log::warn!("snapshot fetch failed: status {status:?}");
                }
                self.snapshot = vm.snapshot();
            }
            None => return,
        }
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
        self.started_ms = host::now_ms();
        self.headers = Headers::new(host::request_headers());
        self.path = self.headers.get(":path").unwrap_or("/").to_string();
        self.method = self.headers.get(":method").unwrap_or("").to_string();
        self.request_id = self.headers.get("x-request-id").unwrap_or("").to_string();
        self.endpoint = Endpoint::from_path(&self.path);
        self.dialect = Dialect::from_path(&self.path);
        self.client_ip = host::property(&["source", "address"]).map(|a| client_ip(&a));
        let Some(vm) = self.vm.clone() else {
            return self.send(not_configured());
        };
        vm.metrics.inc("hubgate_requests_total");
        if self.request_id.is_empty() {
            self.request_id = vm.next_event_id();
        }
        let now = self.started_ms;
        let raw = match extract_key(&self.headers, &self.path) {
            Ok(raw) => raw,
            Err(reply) => return self.send(reply),
        };
        let hash = hash_key(&raw);
        self.key_masked = Some(mask_key(&raw));
        self.key_hash = Some(hash.clone());
        if let Some(reply) = self.client_ip.clone().and_then(|ip| self.locked_out(&vm, Subject::Client(&ip), now)) {
            return self.send(reply);
        }
        // u64: on wasm32 a usize cannot hold a length of 4 GiB or more.
        let too_big = self
            .headers
            .get("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > vm.config.max_body_bytes as u64);
        if too_big {
            return self.send(body_too_large(vm.config.max_body_bytes));
        }

        self.snapshot = vm.snapshot();
        let epoch = self.snapshot.as_ref().map(|s| s.key_epoch);
        let c = &vm.config;
        let lookup = vm.keys.lookup(&host::Shared, &hash, now, epoch, c.key_cache_ttl_ms, c.negative_key_cache_ttl_ms);
        // Only keys that failed have failure counts: a valid cached key
        // skips the lookup.
        let known_valid = matches!(&lookup, Lookup::Fresh(e) | Lookup::Expired(e) if e.key.is_some());
        if !known_valid {
            if let Some(reply) = self.locked_out(&vm, Subject::Key(&hash), now) {
                return self.send(reply);
            }
        }
        if self.snapshot.is_none() {
            self.start_snapshot_fetch(&vm);
        }
        match lookup {
            Lookup::Fresh(entry) => self.key_entry = Some(entry),
            Lookup::Expired(entry) => {
                // One refresh per key and VM at a time: the next requests use
                // the entry as fresh for a few seconds. (A refresh is dropped
                // if this request ends first; another starts after that.)
                let c = &vm.config;
                vm.keys.hold(&hash, &entry, now, epoch, c.key_cache_ttl_ms, c.negative_key_cache_ttl_ms);
                self.key_entry = Some(entry);
                self.start_key_resolve(&vm, &hash, Call::KeyRefresh);
            }
            Lookup::Outdated(entry) => {
                self.key_entry = Some(entry);
                if let Err(reply) = self.wait_for_key(&vm, &hash) {
                    return self.send(reply);
                }
            }
            Lookup::Missing => {
                if let Err(reply) = self.wait_for_key(&vm, &hash) {
                    return self.send(reply);
                }
            }
        }
        self.body_done = end_of_stream;
        self.advance()
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.decided {
            return Action::Continue;
        }
        let max = self.vm.as_ref().map_or(usize::MAX, |vm| vm.config.max_body_bytes);
        if body_size > max {
            return self.send(body_too_large(max));
        }
        self.body_size = body_size;
        if !end_of_stream {
            // Envoy keeps buffering the body until end of stream.
            self.held = true;
            return Action::Pause;
        }
        self.body = host::buffer(BufferType::HttpRequestBody, body_size);
        self.body_done = true;
        self.advance()
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        if self.decided {
            return Action::Continue;
        }
        // The body ended without end_of_stream; it is still buffered.
        if !self.body_done {
            self.body = host::buffer(BufferType::HttpRequestBody, self.body_size);
            self.body_done = true;
        }
        self.advance()
    }

    fn on_http_response_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        if self.reply.is_some() {
            return Action::Continue;
        }
        self.status = host::response_header(":status").and_then(|s| s.parse().ok());
        let status = self.status.unwrap_or(0);
        if status >= 400 && !end_of_stream {
            let details = host::property(&["response", "code_details"]).unwrap_or_default();
            if !details.is_empty() && details != "via_upstream" {
                // Envoy answered by itself: in the client's dialect instead.
                let reply = match self.plan {
                    Some(_) => provider::upstream_failed(status, &details),
                    None => envoy_reply(status, &details),
                };
                for (name, value) in reply.response_headers(&self.request_id) {
                    host::set_response_header(&name, Some(&value));
                }
                host::set_response_header("content-length", None);
                self.upstream_error = Some(reply);
                return Action::Continue;
            }
        }
        if self.plan.is_none() {
            return Action::Continue;
        }
        self.ttfb_ms = Some((host::now_ms() - self.started_ms).max(0) as u64);
        let content_type = host::response_header("content-type").unwrap_or_default();
        self.meter = Some(ResponseMeter::new(self.endpoint, &content_type));
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if let Some(reply) = &self.upstream_error {
            if !end_of_stream {
                return Action::Pause;
            }
            host::replace_response_body(body_size, &reply.body(self.dialect, &self.request_id));
            return Action::Continue;
        }
        if let Some(meter) = &mut self.meter {
            // Each call sees only the new chunk: nothing is held back.
            let chunk = host::buffer(BufferType::HttpResponseBody, body_size);
            meter.feed(&chunk);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let Some(vm) = self.vm.clone() else { return };
        self.release_pending_auth(&vm);
        if self.started_ms == 0 {
            return;
        }
        if !self.audit_wanted(&vm) {
            vm.metrics.inc("hubgate_unauthenticated_unaudited_total");
            return;
        }
        let event = self.event(&vm);
        events::enqueue(&vm, &event);
    }
}

impl Http {
    /// Requests refused without a valid key get audit rows only for the
    /// first few per client address and minute, and a bounded number in
    /// all: a guessing attack must not fill the audit log. The rest are
    /// counted.
    fn audit_wanted(&self, vm: &Vm) -> bool {
        let valid_key = self.key_entry.as_ref().is_some_and(|e| e.key.is_some());
        if self.reply.is_none() || valid_key {
            return true;
        }
        let c = &vm.config;
        let now = host::now_ms();
        let per_client = self.client_ip.as_deref().is_none_or(|ip| {
            vm.clients.take_audit_row(&host::Shared, ip, now, c.unauthenticated_audit_per_client_per_minute)
        });
        per_client
            && take_global_audit_row(&host::Shared, UNAUTHENTICATED_AUDIT_KEY, now, c.unauthenticated_audit_per_minute)
    }
}

const UNAUTHENTICATED_AUDIT_KEY: &str = "hubgate.audit.unauthenticated";

/// Envoy's own answer to a request the guard chain had not decided yet
/// (request timeout, body over Envoy's buffer limit, …).
fn envoy_reply(status: u16, details: &str) -> LocalReply {
    match status {
        408 => LocalReply::new(408, "request_timeout", "The request was not received in time."),
        413 => LocalReply::new(413, "request_too_large", "The request body is larger than the gateway buffers."),
        _ => LocalReply::new(status, "gateway_error", format!("The gateway could not handle the request ({details}).")),
    }
}

fn body_too_large(max: usize) -> LocalReply {
    LocalReply::new(413, "request_too_large", format!("Request body is larger than the {max} bytes allowed."))
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
