//! What OpenAI's Chat Completions and Responses APIs share: bearer auth, the
//! error shape `{"error":{"message","type","param","code"}}`, the
//! `x-request-id` header and the parsing of a JSON request body.

use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::{random_id, Incoming, Shared};

/// An OpenAI error reply.
pub fn error(status: StatusCode, error_type: &str, message: &str, param: Option<&str>, code: Option<&str>) -> Response {
    let body = json!({"error": {"message": message, "type": error_type, "param": param, "code": code}});
    with_request_id((status, axum::Json(body)).into_response())
}

pub(crate) fn with_request_id(mut response: Response) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("req_{}", random_id(32))) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

/// `Missing required parameter: 'model'.` (400).
pub(crate) fn missing_parameter(name: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        &format!("Missing required parameter: '{name}'."),
        Some(name),
        Some("missing_required_parameter"),
    )
}

/// Checks method and `Authorization: Bearer`, then parses the body as a JSON
/// object; the error reply otherwise.
pub(crate) fn accept(shared: &Shared, req: &Incoming) -> Result<Value, Box<Response>> {
    if req.method != Method::POST {
        let message = format!("Invalid URL ({} {})", req.method, req.path);
        return Err(Box::new(error(StatusCode::METHOD_NOT_ALLOWED, "invalid_request_error", &message, None, None)));
    }
    let token = req.header("authorization").and_then(|v| {
        let (scheme, token) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    match token {
        None | Some("") => {
            return Err(Box::new(error(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "You didn't provide an API key. You need to provide your API key in an Authorization header using \
                 Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) \
                 if you're accessing the API from your browser and are prompted for a username and password. You \
                 can obtain an API key from https://platform.openai.com/account/api-keys.",
                None,
                None,
            )))
        }
        Some(k) if k != shared.api_key => {
            let message = format!(
                "Incorrect API key provided: {}. You can find your API key at \
                 https://platform.openai.com/account/api-keys.",
                mask(k)
            );
            let reply =
                error(StatusCode::UNAUTHORIZED, "invalid_request_error", &message, None, Some("invalid_api_key"));
            return Err(Box::new(reply));
        }
        Some(_) => {}
    }
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP \
             library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you \
             have trouble figuring out how to fix this, please contact us through our help center at \
             help.openai.com.)",
            None,
            None,
        ))),
    }
}

/// A key as OpenAI shows it in errors: its ends, the middle starred.
fn mask(key: &str) -> String {
    let n = key.chars().count();
    if n <= 8 {
        return "*".repeat(n);
    }
    let head: String = key.chars().take(3).collect();
    let tail: String = key.chars().skip(n - 4).collect();
    format!("{head}{}{tail}", "*".repeat(n - 7))
}

/// The request's `model`, or the error reply.
pub(crate) fn model(body: &Value) -> Result<String, Box<Response>> {
    match body.get("model").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => Ok(m.to_string()),
        _ => Err(Box::new(missing_parameter("model"))),
    }
}
