//! Admin API (`/api/v1/...`, SPEC §7). Bearer admin token or an admin
//! user's key; see [`crate::auth::require_admin`].

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use utoipa::openapi::schema::ObjectBuilder;
use utoipa::IntoParams;

use crate::app::Routes;
use crate::errors::ApiError;
use crate::openapi;
use crate::validate::{self, Check};

pub mod circuits;
mod crud;
pub mod keys;
pub mod overview;
pub mod paging;
pub mod prices;
pub mod providers;
pub mod request_filters;
pub mod requests;
pub mod sensitive_words;
pub mod sessions;
pub mod settings;
pub mod users;

pub fn routes() -> Routes {
    Routes::new()
        .post("/api/v1/users", users::create)
        .get("/api/v1/users", users::list)
        .patch("/api/v1/users/{id}", users::update)
        .delete("/api/v1/users/{id}", users::delete)
        .post("/api/v1/users/{id}/keys", keys::create)
        .get("/api/v1/keys/{id}", keys::get)
        .patch("/api/v1/keys/{id}", keys::update)
        .delete("/api/v1/keys/{id}", keys::delete)
        .post("/api/v1/providers", providers::create)
        .get("/api/v1/providers", providers::list)
        .get("/api/v1/providers/eligibility", circuits::eligibility)
        .get("/api/v1/providers/{id}/circuit", circuits::get)
        .post("/api/v1/providers/{id}/circuit/reset", circuits::reset)
        .get("/api/v1/providers/{id}", providers::get)
        .patch("/api/v1/providers/{id}", providers::update)
        .delete("/api/v1/providers/{id}", providers::delete)
        .post("/api/v1/model-prices", prices::create)
        .get("/api/v1/model-prices", prices::list)
        .get("/api/v1/model-prices/{id}", prices::get)
        .patch("/api/v1/model-prices/{id}", prices::update)
        .delete("/api/v1/model-prices/{id}", prices::delete)
        .post("/api/v1/sensitive-words", sensitive_words::create)
        .get("/api/v1/sensitive-words", sensitive_words::list)
        .post("/api/v1/sensitive-words/test", sensitive_words::test)
        .get("/api/v1/sensitive-words/{id}", sensitive_words::get)
        .patch("/api/v1/sensitive-words/{id}", sensitive_words::update)
        .delete("/api/v1/sensitive-words/{id}", sensitive_words::delete)
        .post("/api/v1/request-filters", request_filters::create)
        .get("/api/v1/request-filters", request_filters::list)
        .get("/api/v1/request-filters/{id}", request_filters::get)
        .patch("/api/v1/request-filters/{id}", request_filters::update)
        .delete("/api/v1/request-filters/{id}", request_filters::delete)
        .get("/api/v1/settings", settings::get)
        .patch("/api/v1/settings", settings::update)
        .get("/api/v1/client-versions", settings::client_versions)
        .get("/api/v1/overview", overview::get)
        .post(
            "/api/v1/usage/users/{id}/reset",
            crate::limits::usage::reset_user,
        )
        .post(
            "/api/v1/usage/keys/{id}/reset",
            crate::limits::usage::reset_key,
        )
}

/// The `{id}` path segment; anything but an integer is a 404.
#[derive(IntoParams)]
#[into_params(names("id"), parameter_in = Path)]
pub struct Id(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<i64>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(Id(id)),
            Err(_) => Err(ApiError::NotFound),
        }
    }
}

pub(crate) fn yes() -> bool {
    true
}

pub(crate) fn rolling() -> String {
    "rolling".to_string()
}

/// `limit_5h_mode`: how the 5-hour window runs.
pub const LIMIT_MODES: &[&str] = &["rolling", "fixed"];

pub(crate) fn limit_modes() -> ObjectBuilder {
    openapi::one_of(LIMIT_MODES)
}

/// The SPEC §4 limit fields shared by users, keys and providers.
pub struct LimitFields<'a> {
    pub total: Option<Decimal>,
    pub five_hours: Option<Decimal>,
    pub five_hour_mode: &'a str,
    pub daily: Option<Decimal>,
    pub weekly: Option<Decimal>,
    pub monthly: Option<Decimal>,
    pub concurrent_sessions: Option<i32>,
}

pub fn limits(l: &LimitFields<'_>) -> Check {
    validate::usd("limit_total_usd", l.total)?;
    validate::usd("limit_5h_usd", l.five_hours)?;
    validate::one_of("limit_5h_mode", l.five_hour_mode, LIMIT_MODES)?;
    validate::usd("limit_daily_usd", l.daily)?;
    validate::usd("limit_weekly_usd", l.weekly)?;
    validate::usd("limit_monthly_usd", l.monthly)?;
    validate::at_least("limit_concurrent_sessions", l.concurrent_sessions, 0)?;
    Ok(())
}

/// Applies a PATCH to a user's or key's expiry-sweep disable
/// (`disabled_reason = 'expired'`, set by
/// [`crate::background::disable_expired`]): when `expires_at` is now in the
/// future or cleared, the row is enabled again, unless the PATCH sets
/// `enabled` itself. Takes the stored `disabled_reason`; returns the one to
/// store.
pub(crate) fn after_patch(
    reason: Option<String>,
    enabled_in_patch: bool,
    enabled: &mut bool,
    expires_at: Option<DateTime<Utc>>,
) -> Option<String> {
    if enabled_in_patch || *enabled {
        return None;
    }
    if reason.as_deref() == Some("expired") && expires_at.is_none_or(|t| t > Utc::now()) {
        *enabled = true;
        return None;
    }
    reason
}
