//! Anthropic Messages API: `POST /v1/messages` (JSON or SSE) and
//! `POST /v1/messages/count_tokens`, with Anthropic's auth and error shapes.

use std::sync::Arc;

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Value};

use crate::{content_text, echo, event_stream, random_id, text_chunks, Incoming, Shared};

/// Token counts a reply reports. `cache_creation_input_tokens` on the wire is
/// the sum of the 5-minute and 1-hour cache writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnthropicUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_5m_input_tokens: u64,
    pub cache_creation_1h_input_tokens: u64,
    pub cache_read_input_tokens: u64,
}

impl Default for AnthropicUsage {
    fn default() -> Self {
        AnthropicUsage {
            input_tokens: 25,
            output_tokens: 12,
            cache_creation_5m_input_tokens: 0,
            cache_creation_1h_input_tokens: 0,
            cache_read_input_tokens: 0,
        }
    }
}

impl AnthropicUsage {
    /// The `usage` object as the API sends it, with the given `output_tokens`
    /// (a stream's `message_start` reports 1, the final count comes later).
    pub fn to_json(&self, output_tokens: u64) -> Value {
        json!({
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_5m_input_tokens + self.cache_creation_1h_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_creation_5m_input_tokens,
                "ephemeral_1h_input_tokens": self.cache_creation_1h_input_tokens,
            },
            "output_tokens": output_tokens,
            "service_tier": "standard",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Messages,
    CountTokens,
}

pub(crate) fn route(path: &str) -> Option<Route> {
    match path {
        "/v1/messages" => Some(Route::Messages),
        "/v1/messages/count_tokens" => Some(Route::CountTokens),
        _ => None,
    }
}

/// An Anthropic error reply: `{"type":"error","error":{"type","message"},"request_id"}`.
pub fn error(status: StatusCode, error_type: &str, message: &str) -> Response {
    let request_id = format!("req_{}", random_id(24));
    let body = json!({
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": request_id,
    });
    let mut response = (status, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("request-id", v);
    }
    response
}

pub(crate) async fn handle(shared: &Arc<Shared>, route: Route, req: Incoming) -> Response {
    if req.method != Method::POST {
        return error(StatusCode::METHOD_NOT_ALLOWED, "invalid_request_error", "Method not allowed");
    }
    match req.header("x-api-key") {
        None => {
            return error(StatusCode::UNAUTHORIZED, "authentication_error", "x-api-key header is required")
        }
        Some(k) if k != shared.api_key => {
            return error(StatusCode::UNAUTHORIZED, "authentication_error", "invalid x-api-key")
        }
        Some(_) => {}
    }
    if req.header("anthropic-version").is_none() {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "anthropic-version: header is required");
    }
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("There was an error parsing the body of your request: {e}"),
            )
        }
    };
    if !body.is_object() {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "Request body must be a JSON object");
    }
    let Some(model) = body.get("model").and_then(Value::as_str).map(str::to_string) else {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "model: Field required");
    };
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "messages: Field required");
    };
    if messages.is_empty() {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "messages: at least one message is required");
    }
    let usage = shared.usage();
    if route == Route::CountTokens {
        return (StatusCode::OK, axum::Json(json!({"input_tokens": usage.input_tokens}))).into_response();
    }
    if body.get("max_tokens").and_then(Value::as_u64).is_none() {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "max_tokens: Field required");
    }
    let text = reply_text(messages);
    let message_id = format!("msg_{}", random_id(24));
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        return stream_reply(shared, message_id, model, text, usage);
    }
    let message = json!({
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": usage.to_json(usage.output_tokens),
    });
    with_request_id((StatusCode::OK, axum::Json(message)).into_response())
}

fn with_request_id(mut response: Response) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("req_{}", random_id(24))) {
        response.headers_mut().insert("request-id", v);
    }
    response
}

/// Echoes the start of the last user message (Anthropic and Chat Completions
/// messages have the same shape).
pub(crate) fn reply_text(messages: &[Value]) -> String {
    let last_user = messages.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user"));
    echo(&content_text(last_user.and_then(|m| m.get("content"))))
}

/// One SSE event as the API frames it.
pub fn sse_event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

fn stream_reply(
    shared: &Arc<Shared>,
    message_id: String,
    model: String,
    text: String,
    usage: crate::AnthropicUsage,
) -> Response {
    let mut events = vec![
        sse_event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": usage.to_json(1),
            }}),
        ),
        sse_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        sse_event("ping", &json!({"type": "ping"})),
    ];
    for chunk in text_chunks(&text) {
        events.push(sse_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": chunk}}),
        ));
    }
    events.push(sse_event("content_block_stop", &json!({"type": "content_block_stop", "index": 0})));
    events.push(sse_event(
        "message_delta",
        &json!({"type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                "usage": {"output_tokens": usage.output_tokens}}),
    ));
    events.push(sse_event("message_stop", &json!({"type": "message_stop"})));

    // The gate holds the stream after message_start, content_block_start,
    // ping and the first delta.
    let body = event_stream(shared, events, 4);
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    with_request_id(response)
}
