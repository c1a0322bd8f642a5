//! API errors: every error answers `{"error":{"code","message","field"?}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    /// The offending field, e.g. `allowed_models[3]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub field: Option<String>,
}

/// What went wrong, for programs: codes are stable, messages are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidJson,
    ValidationFailed,
    Unauthorized,
    Forbidden,
    ForbiddenSource,
    CsrfTokenInvalid,
    OriginRefused,
    AuthLockedOut,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    InternalError,
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(code)) => f.write_str(&code),
            _ => write!(f, "{self:?}"),
        }
    }
}

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
    /// 403: a console session's state change without its CSRF token.
    CsrfTokenInvalid,
    /// 403: a console session's state change from another origin.
    OriginRefused,
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

    fn parts(&self) -> (StatusCode, ErrorCode, String, Option<&str>) {
        match self {
            ApiError::BadRequest(m) => (
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidJson,
                m.clone(),
                None,
            ),
            ApiError::Validation { field, message } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::ValidationFailed,
                message.clone(),
                Some(field.as_str()),
            ),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "missing or invalid credentials".to_string(),
                None,
            ),
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "this credential may not use this endpoint".to_string(),
                None,
            ),
            ApiError::ForbiddenSource => (
                StatusCode::FORBIDDEN,
                ErrorCode::ForbiddenSource,
                "this address may not use the internal API".to_string(),
                None,
            ),
            ApiError::CsrfTokenInvalid => (
                StatusCode::FORBIDDEN,
                ErrorCode::CsrfTokenInvalid,
                "missing or wrong x-csrf-token for this console session".to_string(),
                None,
            ),
            ApiError::OriginRefused => (
                StatusCode::FORBIDDEN,
                ErrorCode::OriginRefused,
                "the Origin header is not this address's origin".to_string(),
                None,
            ),
            ApiError::LockedOut { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::AuthLockedOut,
                "too many failed authentications from this address; retry after the time in Retry-After"
                    .to_string(),
                None,
            ),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "not found".to_string(),
                None,
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::MethodNotAllowed,
                "method not allowed on this path".to_string(),
                None,
            ),
            ApiError::Conflict { field, message } => (
                StatusCode::CONFLICT,
                ErrorCode::Conflict,
                message.clone(),
                field.as_deref(),
            ),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                "request body too large".to_string(),
                None,
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                "the body must be JSON, sent with Content-Type: application/json".to_string(),
                None,
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::InternalError,
                "internal error".to_string(),
                None,
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(err) = &self {
            tracing::error!(error = format!("{err:#}"), "request failed");
        }
        let (status, code, message, field) = self.parts();
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message,
                field: field.map(str::to_string),
            },
        };
        let mut response = (status, Json(body)).into_response();
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
