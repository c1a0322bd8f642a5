//! Local replies: JSON errors in the client's own API dialect, each with a
//! stable machine code that is also the audit `blocked_by` and metric tag.

use serde_json::{json, Map, Value};

use crate::api::Dialect;

#[derive(Debug, Clone, PartialEq)]
pub struct LocalReply {
    pub status: u16,
    /// Stable machine code, e.g. `invalid_api_key`.
    pub code: &'static str,
    pub message: String,
    /// Extra response headers (e.g. `retry-after`).
    pub headers: Vec<(String, String)>,
    /// Extra fields placed in the error object (e.g. quota details).
    pub details: Map<String, Value>,
    /// The error `type` (Anthropic, OpenAI) when not the one its status implies.
    pub error_type: Option<&'static str>,
}

impl LocalReply {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> LocalReply {
        LocalReply { status, code, message: message.into(), headers: Vec::new(), details: Map::new(), error_type: None }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> LocalReply {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn with_detail(mut self, name: &str, value: Value) -> LocalReply {
        self.details.insert(name.to_string(), value);
        self
    }

    pub fn with_type(mut self, error_type: &'static str) -> LocalReply {
        self.error_type = Some(error_type);
        self
    }

    /// The JSON body in the given dialect.
    pub fn body(&self, dialect: Dialect, request_id: &str) -> Vec<u8> {
        let value = match dialect {
            Dialect::Anthropic => {
                let mut error = Map::new();
                error.insert("type".into(), json!(self.type_field()));
                error.insert("message".into(), json!(self.message));
                error.insert("code".into(), json!(self.code));
                error.extend(self.details.clone());
                json!({"type": "error", "error": error, "request_id": request_id})
            }
            Dialect::OpenAi => {
                let mut error = Map::new();
                error.insert("message".into(), json!(self.message));
                error.insert("type".into(), json!(self.type_field()));
                error.insert("param".into(), Value::Null);
                error.insert("code".into(), json!(self.code));
                error.extend(self.details.clone());
                json!({"error": error, "request_id": request_id})
            }
            Dialect::Gemini => {
                let mut info = Map::new();
                info.insert("@type".into(), json!("type.googleapis.com/google.rpc.ErrorInfo"));
                info.insert("reason".into(), json!(self.code));
                info.insert("domain".into(), json!("hubgate"));
                let mut metadata = Map::new();
                metadata.insert("request_id".into(), json!(request_id));
                for (k, v) in &self.details {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    metadata.insert(k.clone(), json!(text));
                }
                info.insert("metadata".into(), Value::Object(metadata));
                json!({"error": {
                    "code": self.status,
                    "message": self.message,
                    "status": grpc_status(self.status),
                    "details": [info],
                }})
            }
        };
        serde_json::to_vec(&value).unwrap_or_default()
    }

    fn type_field(&self) -> &'static str {
        self.error_type.unwrap_or_else(|| error_type(self.status))
    }

    /// All response headers for this reply.
    pub fn response_headers(&self, request_id: &str) -> Vec<(String, String)> {
        let mut headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("x-hubgate-error-code".to_string(), self.code.to_string()),
        ];
        if !request_id.is_empty() {
            headers.push(("x-request-id".to_string(), request_id.to_string()));
        }
        headers.extend(self.headers.iter().cloned());
        headers
    }
}

fn error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "payment_required_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 => "overloaded_error",
        _ => "api_error",
    }
}

fn grpc_status(status: u16) -> &'static str {
    match status {
        400 | 413 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        402 | 429 => "RESOURCE_EXHAUSTED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn anthropic_shape() {
        let r = LocalReply::new(401, "invalid_api_key", "API key is invalid.");
        let v = parse(&r.body(Dialect::Anthropic, "req-1"));
        assert_eq!(
            v,
            json!({"type":"error","error":{"type":"authentication_error","message":"API key is invalid.","code":"invalid_api_key"},"request_id":"req-1"})
        );
    }

    #[test]
    fn openai_shape_has_null_param() {
        let r = LocalReply::new(429, "rpm", "slow down").with_detail("limit", json!(5));
        let v = parse(&r.body(Dialect::OpenAi, "r"));
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(v["error"]["param"], Value::Null);
        assert_eq!(v["error"]["code"], "rpm");
        assert_eq!(v["error"]["limit"], 5);
    }

    #[test]
    fn type_override_replaces_the_status_type() {
        let r = LocalReply::new(400, "client_upgrade_required", "old").with_type("client_upgrade_required");
        for dialect in [Dialect::Anthropic, Dialect::OpenAi] {
            assert_eq!(parse(&r.body(dialect, "r"))["error"]["type"], "client_upgrade_required");
        }
        let v = parse(&r.body(Dialect::Gemini, "r"));
        assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
        assert_eq!(v["error"]["details"][0]["reason"], "client_upgrade_required");
    }

    #[test]
    fn gemini_shape() {
        let r = LocalReply::new(400, "model_not_allowed", "no");
        let v = parse(&r.body(Dialect::Gemini, "r"));
        assert_eq!(v["error"]["code"], 400);
        assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
        assert_eq!(v["error"]["details"][0]["reason"], "model_not_allowed");
        assert_eq!(v["error"]["details"][0]["metadata"]["request_id"], "r");
    }

    #[test]
    fn headers_carry_code_and_extras() {
        let r = LocalReply::new(429, "auth_locked_out", "x").with_header("retry-after", "600");
        let h = r.response_headers("id");
        assert!(h.contains(&("x-hubgate-error-code".into(), "auth_locked_out".into())));
        assert!(h.contains(&("retry-after".into(), "600".into())));
    }
}
