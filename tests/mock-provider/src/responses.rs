//! The OpenAI Responses API (what Codex CLI speaks): `POST /v1/responses`, a
//! JSON `response` object or, with `"stream": true`, named SSE events from
//! `response.created` to `response.completed`, whose response carries the
//! usage. Every event's data has its `type` and a `sequence_number`.

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Value};

use crate::anthropic::sse_event;
use crate::openai::{self, with_request_id};
use crate::{content_text, echo, event_stream, random_id, text_chunks, unix_time, AnthropicUsage, Incoming, Shared};

pub(crate) const PATH: &str = "/v1/responses";

/// The `usage` object: cached tokens are part of the input, reasoning tokens
/// part of the output.
pub fn usage_json(usage: &AnthropicUsage, reasoning_tokens: u64) -> Value {
    let input = usage.input_tokens + usage.cache_read_input_tokens;
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": usage.cache_read_input_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": input + usage.output_tokens,
    })
}

pub(crate) async fn handle(shared: &Arc<Shared>, req: Incoming) -> Response {
    let body = match openai::accept(shared, &req) {
        Ok(b) => b,
        Err(reply) => return *reply,
    };
    let model = match openai::model(&body) {
        Ok(m) => m,
        Err(reply) => return *reply,
    };
    let usage = shared.usage();
    let usage = usage_json(&usage, shared.reasoning_tokens(&usage));
    let reply = Reply {
        id: format!("resp_{}", random_id(48).to_ascii_lowercase()),
        item_id: format!("msg_{}", random_id(48).to_ascii_lowercase()),
        created_at: unix_time(),
        model,
        text: echo(&input_text(body.get("input"))),
        request: body,
    };
    if reply.request.get("stream").and_then(Value::as_bool) == Some(true) {
        return stream_reply(shared, &reply, usage);
    }
    let response = reply.response("completed", vec![reply.message("completed", &reply.text)], usage);
    with_request_id((StatusCode::OK, axum::Json(response)).into_response())
}

/// The text of the last user message: `input` as a string, or the last
/// message item with role `user` (content a string or `input_text` parts).
fn input_text(input: Option<&Value>) -> String {
    match input {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => {
            let last_user = items.iter().rev().find(|i| i.get("role").and_then(Value::as_str) == Some("user"));
            content_text(last_user.and_then(|i| i.get("content")))
        }
        _ => String::new(),
    }
}

struct Reply {
    id: String,
    item_id: String,
    created_at: u64,
    model: String,
    text: String,
    request: Value,
}

impl Reply {
    /// The response object with this `status`, `output` and `usage`.
    fn response(&self, status: &str, output: Vec<Value>, usage: Value) -> Value {
        let echoed = |name: &str, default: Value| self.request.get(name).cloned().unwrap_or(default);
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": false,
            "error": null,
            "incomplete_details": null,
            "instructions": echoed("instructions", Value::Null),
            "max_output_tokens": echoed("max_output_tokens", Value::Null),
            "model": self.model,
            "output": output,
            "parallel_tool_calls": echoed("parallel_tool_calls", json!(true)),
            "previous_response_id": echoed("previous_response_id", Value::Null),
            "reasoning": {"effort": null, "summary": null},
            "service_tier": "default",
            "store": echoed("store", json!(true)),
            "temperature": echoed("temperature", json!(1.0)),
            "text": {"format": {"type": "text"}},
            "tool_choice": echoed("tool_choice", json!("auto")),
            "tools": echoed("tools", json!([])),
            "top_p": echoed("top_p", json!(1.0)),
            "truncation": "disabled",
            "usage": usage,
            "user": null,
            "metadata": echoed("metadata", json!({})),
        })
    }

    fn message(&self, status: &str, text: &str) -> Value {
        let content = if status == "completed" { json!([output_text(text)]) } else { json!([]) };
        json!({"id": self.item_id, "type": "message", "status": status, "content": content, "role": "assistant"})
    }
}

fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "annotations": [], "logprobs": [], "text": text})
}

fn stream_reply(shared: &Shared, reply: &Reply, usage: Value) -> Response {
    let mut data = vec![
        json!({"type": "response.created", "response": reply.response("in_progress", vec![], Value::Null)}),
        json!({"type": "response.in_progress", "response": reply.response("in_progress", vec![], Value::Null)}),
        json!({"type": "response.output_item.added", "output_index": 0, "item": reply.message("in_progress", "")}),
        json!({"type": "response.content_part.added", "item_id": reply.item_id, "output_index": 0,
               "content_index": 0, "part": output_text("")}),
    ];
    for piece in text_chunks(&reply.text) {
        data.push(json!({"type": "response.output_text.delta", "item_id": reply.item_id, "output_index": 0,
                         "content_index": 0, "delta": piece, "logprobs": []}));
    }
    let done = reply.message("completed", &reply.text);
    data.extend([
        json!({"type": "response.output_text.done", "item_id": reply.item_id, "output_index": 0,
               "content_index": 0, "text": reply.text, "logprobs": []}),
        json!({"type": "response.content_part.done", "item_id": reply.item_id, "output_index": 0,
               "content_index": 0, "part": output_text(&reply.text)}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": done}),
        json!({"type": "response.completed", "response": reply.response("completed", vec![done.clone()], usage)}),
    ]);
    let events: Vec<Bytes> = data
        .into_iter()
        .enumerate()
        .map(|(i, mut event)| {
            let name = event.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
            if let Some(fields) = event.as_object_mut() {
                fields.insert("sequence_number".into(), json!(i));
            }
            sse_event(&name, &event)
        })
        .collect();

    // The gate holds the stream after the first delta.
    let mut response = event_stream(shared, events, 5).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    with_request_id(response)
}
