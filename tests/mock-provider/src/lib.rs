//! A local stand-in for the paid LLM provider APIs hubgate forwards to.
//!
//! It speaks each API faithfully enough that a gateway cannot tell it from the
//! real service: same paths, auth headers, error shapes, JSON and SSE bodies.
//! Tests start it in-process with [`MockProvider::start`], read back every
//! request it received, choose the usage it reports, and can hold a stream
//! half-sent behind a [`Gate`] to prove the gateway does not buffer SSE.
//!
//! One module per API, each with a line in [`dispatch`]: the Anthropic
//! Messages API, OpenAI Chat Completions, the OpenAI Responses API and the
//! Gemini API. Every API reports the same configured usage
//! ([`AnthropicUsage`]) in its own fields.

pub mod anthropic;
pub mod gemini;
pub mod openai;
pub mod openai_chat;
pub mod responses;
pub mod sse;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

pub use anthropic::AnthropicUsage;

/// Request bodies above this are refused (413), well above any real request.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The credential clients must present: `x-api-key` (Anthropic),
    /// `Authorization: Bearer` (OpenAI), `x-goog-api-key` or `?key=` (Gemini).
    pub api_key: String,
    /// Keep every request (headers and body) for [`MockHandle::requests`].
    /// Off for long runs (demo, benchmark), where it would only grow.
    pub record_requests: bool,
    /// Print one line per request on stderr.
    pub log_requests: bool,
    /// Usage reported by every reply until changed with [`MockHandle::set_usage`].
    pub usage: AnthropicUsage,
    /// How many of the output tokens were reasoning: OpenAI reports them
    /// inside the output count (`reasoning_tokens`), Gemini beside it
    /// (`thoughtsTokenCount`), Anthropic not at all. Capped at the output.
    pub reasoning_tokens: u64,
    /// Pause between SSE events, to pace a stream like a real model does.
    pub event_delay: Option<Duration>,
}

impl MockConfig {
    pub fn new(api_key: impl Into<String>) -> MockConfig {
        MockConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_key: api_key.into(),
            record_requests: true,
            log_requests: false,
            usage: AnthropicUsage::default(),
            reasoning_tokens: 0,
            event_delay: None,
        }
    }
}

/// A failure the mock answers every request with, until cleared (see
/// [`MockHandle::set_fault`]): for testing a gateway's failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answers this status (e.g. 503, 429) with an error body of the API.
    Status(u16),
    /// Waits this long before answering (normally): no response header
    /// before then.
    StallBeforeHeaders(Duration),
}

/// One request as the mock received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    /// Header names are lowercase, in arrival order, repeated names kept.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl RecordedRequest {
    /// First value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// Every value of a header (name case-insensitive).
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().filter(|(n, _)| *n == name).map(|(_, v)| v.as_str()).collect()
    }

    /// Value of a query parameter (not percent-decoded).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.as_deref()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then_some(v)
        })
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// State shared by the server and the test's handle.
struct Shared {
    api_key: String,
    record_requests: bool,
    log_requests: bool,
    requests: Mutex<Vec<RecordedRequest>>,
    request_count: AtomicU64,
    usage: Mutex<AnthropicUsage>,
    reasoning_tokens: Mutex<u64>,
    event_delay: Mutex<Option<Duration>>,
    /// Taken by the next streaming reply.
    gate: Mutex<Option<Arc<GateState>>>,
    fault: Mutex<Option<Fault>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not take the mock down with it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn usage(&self) -> AnthropicUsage {
        *lock(&self.usage)
    }

    /// Reasoning tokens among `usage.output_tokens`.
    fn reasoning_tokens(&self, usage: &AnthropicUsage) -> u64 {
        (*lock(&self.reasoning_tokens)).min(usage.output_tokens)
    }

    fn event_delay(&self) -> Option<Duration> {
        *lock(&self.event_delay)
    }

    fn take_gate(&self) -> Option<Arc<GateState>> {
        lock(&self.gate).take()
    }
}

pub struct MockProvider;

impl MockProvider {
    /// Binds and starts serving on the current tokio runtime.
    pub async fn start(config: MockConfig) -> std::io::Result<MockHandle> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            api_key: config.api_key,
            record_requests: config.record_requests,
            log_requests: config.log_requests,
            requests: Mutex::new(Vec::new()),
            request_count: AtomicU64::new(0),
            usage: Mutex::new(config.usage),
            reasoning_tokens: Mutex::new(config.reasoning_tokens),
            event_delay: Mutex::new(config.event_delay),
            gate: Mutex::new(None),
            fault: Mutex::new(None),
        });
        let app = Router::new().fallback(receive).with_state(shared.clone());
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = shutdown_rx.await;
            });
            if let Err(e) = server.await {
                eprintln!("mock provider: server error: {e}");
            }
        });
        Ok(MockHandle { addr, shared, shutdown: Some(shutdown_tx) })
    }
}

/// Controls a running mock; dropping it stops the server.
pub struct MockHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl MockHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn api_key(&self) -> &str {
        &self.shared.api_key
    }

    /// Every request received so far (when recording is on).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Requests received so far, counted even when recording is off.
    pub fn request_count(&self) -> u64 {
        self.shared.request_count.load(Ordering::Relaxed)
    }

    pub fn set_usage(&self, usage: AnthropicUsage) {
        *lock(&self.shared.usage) = usage;
    }

    pub fn usage(&self) -> AnthropicUsage {
        self.shared.usage()
    }

    /// See [`MockConfig::reasoning_tokens`].
    pub fn set_reasoning_tokens(&self, tokens: u64) {
        *lock(&self.shared.reasoning_tokens) = tokens;
    }

    pub fn set_event_delay(&self, delay: Option<Duration>) {
        *lock(&self.shared.event_delay) = delay;
    }

    /// Every request from now on fails this way (`None`: answers again).
    /// Requests are still recorded and counted.
    pub fn set_fault(&self, fault: Option<Fault>) {
        *lock(&self.shared.fault) = fault;
    }

    /// Holds the next streaming reply after its first events until
    /// [`Gate::release`] (or until the returned gate is dropped).
    pub fn arm_gate(&self) -> Gate {
        let state = Arc::new(GateState::new());
        *lock(&self.shared.gate) = Some(state.clone());
        Gate { state }
    }
}

impl Drop for MockHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The stream side of a gate.
pub(crate) struct GateState {
    reached: watch::Sender<bool>,
    released: watch::Sender<bool>,
    finished: watch::Sender<bool>,
}

impl GateState {
    fn new() -> GateState {
        GateState {
            reached: watch::Sender::new(false),
            released: watch::Sender::new(false),
            finished: watch::Sender::new(false),
        }
    }

    /// Called by the stream once its first events are written: waits for release.
    pub(crate) async fn hold(&self) {
        self.reached.send_replace(true);
        let mut released = self.released.subscribe();
        let _ = released.wait_for(|r| *r).await;
    }

    pub(crate) fn mark_finished(&self) {
        self.finished.send_replace(true);
    }
}

/// The test's side of a gate: see [`MockHandle::arm_gate`].
pub struct Gate {
    state: Arc<GateState>,
}

impl Gate {
    /// Resolves once a stream has sent its first events and stopped at the gate.
    pub async fn reached(&self) {
        let mut rx = self.state.reached.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    pub fn is_reached(&self) -> bool {
        *self.state.reached.borrow()
    }

    /// Lets the held stream send the rest.
    pub fn release(&self) {
        self.state.released.send_replace(true);
    }

    pub fn is_released(&self) -> bool {
        *self.state.released.borrow()
    }

    /// True once the stream has written its last event (e.g. `message_stop`).
    pub fn is_finished(&self) -> bool {
        *self.state.finished.borrow()
    }

    /// Resolves once the stream has written its last event.
    pub async fn finished(&self) {
        let mut rx = self.state.finished.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        // Never leave a stream hanging because a test gave up early.
        self.release();
    }
}

/// The request as the API modules see it.
pub(crate) struct Incoming {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Incoming {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Value of a query parameter (not percent-decoded).
    pub(crate) fn query_param(&self, name: &str) -> Option<&str> {
        self.query.as_deref()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then_some(v)
        })
    }
}

async fn receive(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            return (StatusCode::PAYLOAD_TOO_LARGE, format!("request body unreadable: {e}")).into_response()
        }
    };
    shared.request_count.fetch_add(1, Ordering::Relaxed);
    let path = parts.uri.path().to_string();
    if shared.record_requests {
        let headers = parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        lock(&shared.requests).push(RecordedRequest {
            method: parts.method.to_string(),
            path: path.clone(),
            query: parts.uri.query().map(str::to_string),
            headers,
            body: body.clone(),
        });
    }
    let query = parts.uri.query().map(str::to_string);
    let fault = *lock(&shared.fault);
    let response = match fault {
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            anthropic::error(status, "overloaded_error", "The mock provider is failing on purpose.")
        }
        stall => {
            if let Some(Fault::StallBeforeHeaders(wait)) = stall {
                tokio::time::sleep(wait).await;
            }
            let incoming = Incoming { method: parts.method, path, query, headers: parts.headers, body };
            dispatch(&shared, incoming).await
        }
    };
    if shared.log_requests {
        eprintln!("mock provider: {} {} -> {}", parts.uri.path(), parts.uri.query().unwrap_or(""), response.status());
    }
    response
}

/// Routes a request to the API module that owns its path.
async fn dispatch(shared: &Arc<Shared>, req: Incoming) -> Response {
    if req.path == "/healthz" {
        return (StatusCode::OK, "ok").into_response();
    }
    if let Some(route) = anthropic::route(&req.path) {
        return anthropic::handle(shared, route, req).await;
    }
    if req.path == openai_chat::PATH {
        return openai_chat::handle(shared, req).await;
    }
    if req.path == responses::PATH {
        return responses::handle(shared, req).await;
    }
    if let Some((model, method)) = gemini::route(&req.path) {
        let (model, method) = (model.to_string(), method.to_string());
        return gemini::handle(shared, &model, &method, req).await;
    }
    if req.path.starts_with("/v1beta/") {
        return gemini::error(StatusCode::NOT_FOUND, "NOT_FOUND", "Not found");
    }
    anthropic::error(StatusCode::NOT_FOUND, "not_found_error", "Not found")
}

/// A streaming body fed by a task through a channel; each `Bytes` sent is
/// written and flushed as its own chunk.
pub(crate) fn channel_body() -> (tokio::sync::mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok::<Bytes, std::convert::Infallible>(chunk), rx))
    });
    (tx, Body::from_stream(stream))
}

/// A body that writes `events` one chunk each, paced by the event delay. A
/// gate armed by the test holds it before `events[gate_at]`.
pub(crate) fn event_stream(shared: &Shared, events: Vec<Bytes>, gate_at: usize) -> Body {
    let delay = shared.event_delay();
    let gate = shared.take_gate();
    let (tx, body) = channel_body();
    tokio::spawn(async move {
        let last = events.len().saturating_sub(1);
        for (i, event) in events.into_iter().enumerate() {
            if i > 0 {
                if let Some(d) = delay {
                    tokio::time::sleep(d).await;
                }
            }
            if i == gate_at {
                if let Some(g) = &gate {
                    g.hold().await;
                }
            }
            if tx.send(event).await.is_err() {
                return; // client went away
            }
            if i == last {
                if let Some(g) = &gate {
                    g.mark_finished();
                }
            }
        }
    });
    body
}

/// The reply to a prompt: it echoes the prompt's start, so a reply shows
/// what arrived.
pub(crate) fn echo(prompt: &str) -> String {
    let text: String = prompt.chars().take(200).collect();
    if text.trim().is_empty() {
        "Hello from the hubgate mock provider.".to_string()
    } else {
        format!("You said: {text}")
    }
}

/// The text split into a few deltas, on character boundaries.
pub(crate) fn text_chunks(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len().div_ceil(3).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// The text of `{"type": "text", "text": …}` parts (Anthropic, Chat) or
/// `{"type": "input_text", …}` parts (Responses), or the string itself.
pub(crate) fn content_text(content: Option<&serde_json::Value>) -> String {
    use serde_json::Value;
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|p| matches!(p.get("type").and_then(Value::as_str), Some("text" | "input_text")))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// Seconds since the epoch, for `created` fields.
pub(crate) fn unix_time() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Random alphanumeric id of `len` characters.
pub(crate) fn random_id(len: usize) -> String {
    use rand::Rng;
    rand::rng().sample_iter(rand::distr::Alphanumeric).take(len).map(char::from).collect()
}
