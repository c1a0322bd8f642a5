//! OpenAI Chat Completions: `POST /v1/chat/completions`, a JSON
//! `chat.completion` or, with `"stream": true`, SSE `chat.completion.chunk`
//! lines ended by `data: [DONE]`. As in the real API, a stream reports usage
//! only when asked (`stream_options.include_usage`), in one last chunk with
//! no choices; every other chunk then carries `"usage": null`.

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Value};

use crate::anthropic::reply_text;
use crate::openai::{self, with_request_id};
use crate::{event_stream, random_id, text_chunks, unix_time, AnthropicUsage, Incoming, Shared};

pub(crate) const PATH: &str = "/v1/chat/completions";

/// The `usage` object: cached tokens are part of the prompt, reasoning
/// tokens part of the completion.
pub fn usage_json(usage: &AnthropicUsage, reasoning_tokens: u64) -> Value {
    let prompt = usage.input_tokens + usage.cache_read_input_tokens;
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": usage.output_tokens,
        "total_tokens": prompt + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_input_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
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
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return openai::missing_parameter("messages");
    };
    if messages.is_empty() {
        return openai::error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            Some("messages"),
            Some("empty_array"),
        );
    }
    let usage = shared.usage();
    let reasoning = shared.reasoning_tokens(&usage);
    let text = reply_text(messages);
    let completion = Completion {
        id: format!("chatcmpl-{}", random_id(29)),
        created: unix_time(),
        model,
        fingerprint: format!("fp_{}", random_id(10).to_ascii_lowercase()),
    };
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage = body.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true);
        let usage = include_usage.then(|| usage_json(&usage, reasoning));
        return stream_reply(shared, &completion, &text, usage);
    }
    let reply = json!({
        "id": completion.id,
        "object": "chat.completion",
        "created": completion.created,
        "model": completion.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": usage_json(&usage, reasoning),
        "service_tier": "default",
        "system_fingerprint": completion.fingerprint,
    });
    with_request_id((StatusCode::OK, axum::Json(reply)).into_response())
}

struct Completion {
    id: String,
    created: u64,
    model: String,
    fingerprint: String,
}

impl Completion {
    /// One `chat.completion.chunk`; `usage`: `None` leaves the field out.
    fn chunk(&self, choices: Value, usage: Option<Value>) -> Bytes {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "service_tier": "default",
            "system_fingerprint": self.fingerprint,
            "choices": choices,
        });
        if let (Some(u), Some(fields)) = (usage, chunk.as_object_mut()) {
            fields.insert("usage".into(), u);
        }
        Bytes::from(format!("data: {chunk}\n\n"))
    }
}

/// `usage`: the final counts when the client asked for them.
fn stream_reply(shared: &Shared, completion: &Completion, text: &str, usage: Option<Value>) -> Response {
    let null_usage = usage.as_ref().map(|_| Value::Null);
    let choice = |delta: Value, finish_reason: Value| {
        json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}])
    };
    let mut events = vec![completion.chunk(
        choice(json!({"role": "assistant", "content": "", "refusal": null}), Value::Null),
        null_usage.clone(),
    )];
    for piece in text_chunks(text) {
        events.push(completion.chunk(choice(json!({"content": piece}), Value::Null), null_usage.clone()));
    }
    events.push(completion.chunk(choice(json!({}), json!("stop")), null_usage));
    if let Some(u) = usage {
        events.push(completion.chunk(json!([]), Some(u)));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));

    // The gate holds the stream after the role chunk and the first delta.
    let mut response = event_stream(shared, events, 2).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    with_request_id(response)
}
