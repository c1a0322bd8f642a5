//! The Gemini API: `POST /v1beta/models/{model}:generateContent` (JSON),
//! `:streamGenerateContent` (SSE with `?alt=sse`, else one JSON array sent
//! chunk by chunk) and `:countTokens`, with Google's auth (`x-goog-api-key`
//! or `?key=`) and error shape `{"error":{"code","message","status"}}`.
//! Each streamed chunk carries the usage so far; the last one has
//! `finishReason`.

use std::sync::Arc;

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::{echo, event_stream, random_id, text_chunks, AnthropicUsage, Incoming, Shared};

/// `/v1beta/models/gemini-2.5-pro:generateContent` → (`gemini-2.5-pro`,
/// `generateContent`); `/v1/models/…` too.
pub(crate) fn route(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/v1beta/models/").or_else(|| path.strip_prefix("/v1/models/"))?;
    let (model, method) = rest.rsplit_once(':')?;
    (!model.is_empty() && !model.contains('/')).then_some((model, method))
}

/// A Google API error reply.
pub fn error(status: StatusCode, grpc_status: &str, message: &str) -> Response {
    error_with_details(status, grpc_status, message, None)
}

fn error_with_details(status: StatusCode, grpc_status: &str, message: &str, details: Option<Value>) -> Response {
    let mut error = Map::new();
    error.insert("code".into(), json!(status.as_u16()));
    error.insert("message".into(), json!(message));
    error.insert("status".into(), json!(grpc_status));
    if let Some(d) = details {
        error.insert("details".into(), d);
    }
    json_reply(status, &json!({"error": error}))
}

/// A JSON body with Google's content type.
fn json_reply(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    response
}

const JSON: &str = "application/json; charset=UTF-8";

/// The `usageMetadata` of a reply with `candidates` output tokens so far.
/// Cached tokens are part of the prompt; thinking tokens are counted beside
/// the candidates. Zero counts are left out, as the API does.
pub fn usage_json(usage: &AnthropicUsage, reasoning_tokens: u64, candidates: u64) -> Value {
    let prompt = usage.input_tokens + usage.cache_read_input_tokens;
    let mut fields = Map::new();
    fields.insert("promptTokenCount".into(), json!(prompt));
    fields.insert("candidatesTokenCount".into(), json!(candidates));
    fields.insert("totalTokenCount".into(), json!(prompt + candidates + reasoning_tokens));
    if usage.cache_read_input_tokens > 0 {
        fields.insert("cachedContentTokenCount".into(), json!(usage.cache_read_input_tokens));
    }
    if reasoning_tokens > 0 {
        fields.insert("thoughtsTokenCount".into(), json!(reasoning_tokens));
    }
    fields.insert("promptTokensDetails".into(), json!([{"modality": "TEXT", "tokenCount": prompt}]));
    Value::Object(fields)
}

pub(crate) async fn handle(shared: &Arc<Shared>, model: &str, method: &str, req: Incoming) -> Response {
    if !matches!(method, "generateContent" | "streamGenerateContent" | "countTokens") || req.method != Method::POST {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "Method not found.");
    }
    if let Some(refusal) = refuse_key(shared, &req) {
        return refusal;
    }
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                "Invalid JSON payload received. Expected an object.",
            )
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                &format!("Invalid JSON payload received. {e}"),
            )
        }
    };
    let usage = shared.usage();
    if method == "countTokens" {
        let prompt = usage.input_tokens + usage.cache_read_input_tokens;
        let reply = json!({"totalTokens": prompt, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]});
        return json_reply(StatusCode::OK, &reply);
    }
    let contents = match body.get("contents").and_then(Value::as_array) {
        Some(c) if !c.is_empty() => c,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                "* GenerateContentRequest.contents: contents is not specified\n",
            )
        }
    };
    let reply = Reply {
        model: model.to_string(),
        response_id: random_id(22),
        usage,
        reasoning_tokens: shared.reasoning_tokens(&usage),
    };
    let text = json_answer(&body).unwrap_or_else(|| reply_text(contents));
    if method == "generateContent" {
        let chunk = reply.chunk(&text, reply.candidates_tokens(), true);
        return json_reply(StatusCode::OK, &chunk);
    }
    stream_reply(shared, &reply, &text, req.query_param("alt") == Some("sse"))
}

/// Google's answer when the key (`x-goog-api-key`, else `?key=`) is missing
/// or wrong.
fn refuse_key(shared: &Shared, req: &Incoming) -> Option<Response> {
    let key = req.header("x-goog-api-key").or_else(|| req.query_param("key"));
    match key {
        Some(k) if k == shared.api_key => None,
        Some(_) => {
            let message = "API key not valid. Please pass a valid API key.";
            let details = json!([
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                 "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}},
                {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": message},
            ]);
            Some(error_with_details(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message, Some(details)))
        }
        // A bearer token is taken for an OAuth access token.
        None if req.header("authorization").is_some() => Some(error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other \
             valid authentication credential. See \
             https://developers.google.com/identity/sign-in/web/devconsole-project.",
        )),
        None => Some(error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key \
             or other form of API consumer identity to call this API.",
        )),
    }
}

/// Echoes the text of the last user turn.
fn reply_text(contents: &[Value]) -> String {
    let last_user = contents.iter().rev().find(|c| c.get("role").and_then(Value::as_str).is_none_or(|r| r == "user"));
    let parts = last_user.and_then(|c| c.get("parts")).and_then(Value::as_array);
    let text = parts
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    echo(&text)
}

/// With `responseMimeType: application/json` and a schema (Gemini CLI's
/// routing call asks for one), the answer is a JSON value of that schema.
fn json_answer(body: &Value) -> Option<String> {
    let config = body.get("generationConfig")?;
    if config.get("responseMimeType").and_then(Value::as_str) != Some("application/json") {
        return None;
    }
    let schema = config.get("responseJsonSchema").or_else(|| config.get("responseSchema"))?;
    Some(schema_instance(schema).to_string())
}

/// The simplest value `schema` accepts: every property of an object, the
/// first of an enum, the minimum of a number, `minItems` items of an array.
/// Type names are OpenAPI's (`OBJECT`) or JSON Schema's (`object`).
fn schema_instance(schema: &Value) -> Value {
    if let Some(first) = schema.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
        return first.clone();
    }
    let kind = schema.get("type").and_then(Value::as_str).unwrap_or("string").to_ascii_lowercase();
    let bound = |name: &str| schema.get(name).and_then(Value::as_f64);
    match kind.as_str() {
        "object" => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let fields = properties.into_iter().flatten().map(|(k, v)| (k.clone(), schema_instance(v)));
            Value::Object(fields.collect())
        }
        "array" => {
            let items = schema.get("items").map(schema_instance).unwrap_or(Value::Null);
            let count = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0);
            Value::Array((0..count).map(|_| items.clone()).collect())
        }
        "integer" => json!(bound("minimum").map_or(1, |m| m.ceil() as i64)),
        "number" => json!(bound("minimum").unwrap_or(1.0)),
        "boolean" => json!(false),
        "null" => Value::Null,
        _ => json!("Answered by the hubgate mock provider."),
    }
}

struct Reply {
    model: String,
    response_id: String,
    usage: AnthropicUsage,
    reasoning_tokens: u64,
}

impl Reply {
    /// Output tokens that are not thinking.
    fn candidates_tokens(&self) -> u64 {
        self.usage.output_tokens - self.reasoning_tokens
    }

    /// A `GenerateContentResponse` with `text` and `candidates` output tokens
    /// so far; `last` adds `finishReason`.
    fn chunk(&self, text: &str, candidates: u64, last: bool) -> Value {
        let mut candidate = json!({"content": {"parts": [{"text": text}], "role": "model"}, "index": 0});
        if let (true, Some(fields)) = (last, candidate.as_object_mut()) {
            fields.insert("finishReason".into(), json!("STOP"));
        }
        json!({
            "candidates": [candidate],
            "usageMetadata": usage_json(&self.usage, self.reasoning_tokens, candidates),
            "modelVersion": self.model,
            "responseId": self.response_id,
        })
    }
}

fn stream_reply(shared: &Shared, reply: &Reply, text: &str, sse: bool) -> Response {
    let pieces = text_chunks(text);
    let total = reply.candidates_tokens();
    let count = pieces.len() as u64;
    let mut events: Vec<Bytes> = pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            let i = i as u64 + 1;
            let chunk = reply.chunk(piece, total * i / count, i == count);
            if sse {
                Bytes::from(format!("data: {chunk}\r\n\r\n"))
            } else {
                let separator = if i == 1 { "[" } else { ",\r\n" };
                Bytes::from(format!("{separator}{chunk}"))
            }
        })
        .collect();
    if !sse {
        events.push(Bytes::from_static(b"]"));
    }

    // The gate holds the stream after its first chunk.
    let mut response = event_stream(shared, events, 1).into_response();
    let content_type = if sse { "text/event-stream" } else { JSON };
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
