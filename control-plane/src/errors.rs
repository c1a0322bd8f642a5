//! API errors: every error answers `{"error":{"code","message","field"?}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug)]
pub enum ApiError {
    /// 400: the body is not JSON at all.
    BadRequest(String),
    /// 422: well-formed input that breaks a rule; `field` names it.
    Validation {
        field: String,
        message: String,
    },
    Unauthorized,
    Forbidden,
    /// 403 on the internal listener: the peer address is not allowed.
    ForbiddenSource,
    /// 429: too many failed authentications from this client address.
    LockedOut {
        retry_after_secs: u64,
    },
    NotFound,
    MethodNotAllowed,
    /// 409: e.g. a duplicate name.
    Conflict {
        field: Option<String>,
        message: String,
    },
    PayloadTooLarge,
    /// 415: a body that is not declared as JSON.
    UnsupportedMediaType,
    Internal(anyhow::Error),
}

impl ApiError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn conflict(field: &str, message: impl Into<String>) -> Self {
        ApiError::Conflict {
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, String, Option<&str>) {
        match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "invalid_json", m.clone(), None),
            ApiError::Validation { field, message } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                message.clone(),
                Some(field.as_str()),
            ),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or invalid bearer token".to_string(),
                None,
            ),
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "this credential may not use this endpoint".to_string(),
                None,
            ),
            ApiError::ForbiddenSource => (
                StatusCode::FORBIDDEN,
                "forbidden_source",
                "this address may not use the internal API".to_string(),
                None,
            ),
            ApiError::LockedOut { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "auth_locked_out",
                "too many failed authentications from this address; retry after the time in Retry-After"
                    .to_string(),
                None,
            ),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "not found".to_string(),
                None,
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this path".to_string(),
                None,
            ),
            ApiError::Conflict { field, message } => (
                StatusCode::CONFLICT,
                "conflict",
                message.clone(),
                field.as_deref(),
            ),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body too large".to_string(),
                None,
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON, sent with Content-Type: application/json".to_string(),
                None,
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "internal error".to_string(),
                None,
            ),
        }
    }
}

pub fn error_body(code: &str, message: &str, field: Option<&str>) -> serde_json::Value {
    let mut error = json!({ "code": code, "message": message });
    if let Some(field) = field {
        error["field"] = json!(field);
    }
    json!({ "error": error })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(err) = &self {
            tracing::error!(error = format!("{err:#}"), "request failed");
        }
        let (status, code, message, field) = self.parts();
        let mut response = (status, Json(error_body(code, &message, field))).into_response();
        if let ApiError::LockedOut { retry_after_secs } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &err {
            if db.is_unique_violation() {
                let field = match db.constraint() {
                    Some(c) if c.contains("model") => "model",
                    Some(c) if c.contains("word") => "word",
                    _ => "name",
                };
                return ApiError::conflict(field, format!("{field} already exists"));
            }
        }
        ApiError::Internal(anyhow::Error::new(err))
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        ApiError::Internal(err)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let ApiError::Internal(err) = self {
            return write!(f, "{err:#}");
        }
        let (_, code, message, field) = self.parts();
        match field {
            Some(field) => write!(f, "{code}: {field}: {message}"),
            None => write!(f, "{code}: {message}"),
        }
    }
}

impl std::error::Error for ApiError {}

pub type ApiResult<T> = Result<T, ApiError>;
