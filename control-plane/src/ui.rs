//! Admin console sessions (issue 9): sign-in with the admin token or a key
//! of a user with `can_login_web_ui`, an HttpOnly, SameSite=Strict cookie,
//! CSRF protection of the state-changing requests it authenticates, and
//! sign-out.
//!
//! The cookie holds a random 256-bit session id; the database keeps only its
//! hash (`ui_sessions`, migration 0016). The CSRF token is derived from the
//! id (so it is never stored and the page can fetch it again after a
//! reload). A session acts as the credential it was opened with, checked
//! again on every request (see `auth::identify`).

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::header::{COOKIE, HOST, ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::auth::{self, Credential};
use crate::errors::{ApiError, ApiResult};
use crate::extract::TypedBody;

/// The session cookie's name.
pub const COOKIE_NAME: &str = "hubgate_ui";
/// The header a cookie-authenticated state-changing request must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How console sessions are issued.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    pub ttl: Duration,
    /// Adds `Secure` to the cookie: set when the admin address is reached
    /// over HTTPS (directly or through a TLS-terminating proxy).
    pub secure_cookie: bool,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            ttl: Duration::from_secs(12 * 3600),
            secure_cookie: false,
        }
    }
}

/// The session id of the request's `hubgate_ui` cookie.
pub fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == COOKIE_NAME && !value.is_empty())
        .map(|(_, value)| value)
}

/// The CSRF token of session `session_id`.
pub fn csrf_token(session_id: &str) -> String {
    hubgate_wire::hash_key(&format!("hubgate-ui-csrf:{session_id}"))
}

/// Refuses a cookie-authenticated state change sent from another origin or
/// without the session's CSRF token in `x-csrf-token`.
pub fn check_csrf(headers: &HeaderMap, session_id: &str) -> Result<(), ApiError> {
    if !same_origin(headers) {
        return Err(ApiError::OriginRefused);
    }
    let given = headers
        .get(CSRF_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    // Compare digests, byte by byte without stopping early.
    let given = Sha256::digest(given);
    let expected = Sha256::digest(csrf_token(session_id).as_bytes());
    let differs = given
        .iter()
        .zip(expected.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if differs != 0 {
        return Err(ApiError::CsrfTokenInvalid);
    }
    Ok(())
}

/// No `Origin` header (not sent by a browser, or a same-origin GET), or one
/// whose host and port are the request's `Host`.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    let authority = origin.to_str().ok().and_then(|o| {
        o.strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
    });
    match (authority, host) {
        (Some(authority), Some(host)) => authority.eq_ignore_ascii_case(host),
        _ => false,
    }
}

/// Deletes expired and signed-out console sessions (at every sign-in and by
/// the expiry sweep); returns how many.
pub async fn delete_dead_sessions(pool: &sqlx::PgPool) -> sqlx::Result<u64> {
    Ok(
        sqlx::query!("DELETE FROM ui_sessions WHERE expires_at <= now() OR revoked_at IS NOT NULL")
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

struct StoredSession {
    admin_token_id: Option<i64>,
    key_id: Option<i64>,
    expires_at: DateTime<Utc>,
}

async fn stored_session(state: &AppState, session_id: &str) -> ApiResult<Option<StoredSession>> {
    Ok(sqlx::query_as!(
        StoredSession,
        "SELECT admin_token_id, key_id, expires_at FROM ui_sessions
         WHERE id_hash = $1 AND revoked_at IS NULL AND expires_at > now()",
        hubgate_wire::hash_key(session_id)
    )
    .fetch_optional(&state.pool)
    .await?)
}

async fn credential_of(state: &AppState, session: &StoredSession) -> ApiResult<Credential> {
    match (session.admin_token_id, session.key_id) {
        (Some(id), _) => auth::admin_token_by_id(state, id).await,
        (None, Some(key_id)) => auth::key_by_id(state, key_id).await,
        (None, None) => Ok(Credential::Unknown),
    }
}

/// The credential of a live (unrevoked, unexpired) session.
pub async fn session_credential(
    state: &AppState,
    session_id: &str,
) -> ApiResult<Option<Credential>> {
    match stored_session(state, session_id).await? {
        Some(session) => credential_of(state, &session).await.map(Some),
        None => Ok(None),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    User,
}

/// Who a credential signs in as, if it may sign in to the console now:
/// `Err(Forbidden)` for a valid key without `can_login_web_ui`.
fn signs_in_as(credential: Credential) -> ApiResult<(Role, Option<i64>)> {
    match credential {
        Credential::AdminToken { .. } => Ok((Role::Admin, None)),
        Credential::Key {
            active: true,
            web_ui: false,
            ..
        } => Err(ApiError::Forbidden),
        Credential::Key {
            active: true,
            admin,
            user_id,
            ..
        } => Ok((if admin { Role::Admin } else { Role::User }, Some(user_id))),
        Credential::Key { .. } | Credential::Unknown => Err(ApiError::Unauthorized),
    }
}

/// Sign-in: the admin token, or a user's own hubgate key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    pub token: String,
}

/// The signed-in session.
#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    pub role: Role,
    /// The signed-in user (null for the admin token).
    pub user_id: Option<i64>,
    /// Send it as `x-csrf-token` with every POST, PUT, PATCH and DELETE.
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
    /// The settings' time zone: the console shows times in it.
    pub timezone: String,
    /// The settings' locale: the console's language until the browser
    /// chooses one.
    pub locale: String,
}

struct Display {
    timezone: String,
    locale: String,
}

async fn display(state: &AppState) -> ApiResult<Display> {
    Ok(
        sqlx::query_as!(Display, "SELECT timezone, locale FROM settings")
            .fetch_one(&state.pool)
            .await?,
    )
}

fn cookie(policy: &SessionPolicy, value: &str, max_age: u64) -> String {
    let secure = if policy.secure_cookie { "; Secure" } else { "" };
    format!("{COOKIE_NAME}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}")
}

#[utoipa::path(
    post,
    path = "/ui/api/session",
    tag = "console",
    operation_id = "sign_in",
    summary = "Sign in to the admin console",
    description = "Opens a session for the admin token, or for a key of a user with can_login_web_ui \
        (enabled, unexpired). Sets the HttpOnly, SameSite=Strict `hubgate_ui` cookie; the cookie \
        then authenticates `/api/v1` as that credential would (state changes need `x-csrf-token`). \
        Failed attempts count towards the client address's lockout.",
    request_body = SignIn,
    responses(
        (status = 200, description = "Signed in; the cookie is set", body = Session),
        crate::openapi::BadBody,
        (status = 401, description = "Unknown, disabled or expired credential", body = crate::errors::ErrorBody),
        (status = 403, description = "A key without can_login_web_ui, or a request from another origin", body = crate::errors::ErrorBody),
        (status = 429, description = "Too many failed authentications from this client address", body = crate::errors::ErrorBody),
    ),
)]
pub async fn sign_in(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    TypedBody(body): TypedBody<SignIn>,
) -> ApiResult<Response> {
    auth::refuse_locked_out(&state, peer)?;
    if !same_origin(&headers) {
        return Err(ApiError::OriginRefused);
    }
    let credential = auth::authenticate(&state, &hubgate_wire::hash_key(&body.token)).await?;
    if matches!(credential, Credential::Unknown) {
        auth::record_failure(&state, peer);
    }
    let (role, user_id) = signs_in_as(credential)?;
    let (admin_token_id, key_id) = match credential {
        Credential::AdminToken { id } => (Some(id), None),
        Credential::Key { key_id, .. } => (None, Some(key_id)),
        Credential::Unknown => return Err(ApiError::Unauthorized),
    };

    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let session_id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let policy = state.ui_sessions;
    delete_dead_sessions(&state.pool).await?;
    let expires_at = sqlx::query_scalar!(
        "INSERT INTO ui_sessions (id_hash, admin_token_id, key_id, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))
         RETURNING expires_at",
        hubgate_wire::hash_key(&session_id),
        admin_token_id,
        key_id,
        policy.ttl.as_secs_f64(),
    )
    .fetch_one(&state.pool)
    .await?;
    let Display { timezone, locale } = display(&state).await?;
    let session = Session {
        role,
        user_id,
        csrf_token: csrf_token(&session_id),
        expires_at,
        timezone,
        locale,
    };
    let set_cookie = cookie(&policy, &session_id, policy.ttl.as_secs());
    Ok((StatusCode::OK, [(SET_COOKIE, set_cookie)], Json(session)).into_response())
}

#[utoipa::path(
    get,
    path = "/ui/api/session",
    tag = "console",
    operation_id = "current_session",
    summary = "The signed-in session",
    description = "Who the `hubgate_ui` cookie signs in, and the session's CSRF token.",
    responses(
        (status = 200, description = "Signed in", body = Session),
        (status = 401, description = "No live session, or its credential no longer signs in", body = crate::errors::ErrorBody),
        (status = 429, description = "Too many failed authentications from this client address", body = crate::errors::ErrorBody),
    ),
    security(("uiSession" = [])),
)]
pub async fn current(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> ApiResult<Json<Session>> {
    auth::refuse_locked_out(&state, peer)?;
    let session_id = session_id(&headers).ok_or(ApiError::Unauthorized)?;
    let stored = stored_session(&state, session_id)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    let (role, user_id) =
        signs_in_as(credential_of(&state, &stored).await?).map_err(|_| ApiError::Unauthorized)?;
    let Display { timezone, locale } = display(&state).await?;
    Ok(Json(Session {
        role,
        user_id,
        csrf_token: csrf_token(session_id),
        expires_at: stored.expires_at,
        timezone,
        locale,
    }))
}

#[utoipa::path(
    delete,
    path = "/ui/api/session",
    tag = "console",
    operation_id = "sign_out",
    summary = "Sign out of the admin console",
    description = "Revokes the session and clears the cookie. Needs `x-csrf-token`.",
    responses(
        (status = 204, description = "Signed out; the cookie is cleared"),
        (status = 401, description = "No live session", body = crate::errors::ErrorBody),
        (status = 403, description = "Missing or wrong x-csrf-token, or a request from another origin", body = crate::errors::ErrorBody),
        (status = 429, description = "Too many failed authentications from this client address", body = crate::errors::ErrorBody),
    ),
    security(("uiSession" = [])),
)]
pub async fn sign_out(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    auth::refuse_locked_out(&state, peer)?;
    let session_id = session_id(&headers).ok_or(ApiError::Unauthorized)?;
    if stored_session(&state, session_id).await?.is_none() {
        return Err(ApiError::Unauthorized);
    }
    check_csrf(&headers, session_id)?;
    sqlx::query!(
        "UPDATE ui_sessions SET revoked_at = now() WHERE id_hash = $1",
        hubgate_wire::hash_key(session_id)
    )
    .execute(&state.pool)
    .await?;
    let policy = state.ui_sessions;
    let set_cookie = cookie(&policy, "", 0);
    Ok((StatusCode::NO_CONTENT, [(SET_COOKIE, set_cookie)]).into_response())
}

/// The console's pages are not API: they are served next to it but are not
/// in the OpenAPI document.
pub fn pages() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/ui", axum::routing::get(index))
        .route("/ui/", axum::routing::get(index))
        .route("/ui/{*path}", axum::routing::get(asset))
}

/// Scripts and styles only from this address, no inline code, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
     img-src 'self'; style-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

const JS: &str = "text/javascript; charset=utf-8";

/// The console's files, built into the binary (it works offline).
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", JS, include_str!("../ui/app.js")),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../ui/app.css"),
    ),
    ("lib/api.js", JS, include_str!("../ui/lib/api.js")),
    ("lib/chart.js", JS, include_str!("../ui/lib/chart.js")),
    ("lib/dom.js", JS, include_str!("../ui/lib/dom.js")),
    ("lib/form.js", JS, include_str!("../ui/lib/form.js")),
    ("lib/format.js", JS, include_str!("../ui/lib/format.js")),
    ("lib/i18n.js", JS, include_str!("../ui/lib/i18n.js")),
    (
        "pages/overview.js",
        JS,
        include_str!("../ui/pages/overview.js"),
    ),
    ("pages/policy.js", JS, include_str!("../ui/pages/policy.js")),
    (
        "pages/providers.js",
        JS,
        include_str!("../ui/pages/providers.js"),
    ),
    (
        "pages/requests.js",
        JS,
        include_str!("../ui/pages/requests.js"),
    ),
    (
        "pages/sessions.js",
        JS,
        include_str!("../ui/pages/sessions.js"),
    ),
    ("pages/users.js", JS, include_str!("../ui/pages/users.js")),
];

fn page(content_type: &'static str, body: &'static str) -> Response {
    use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY as CSP, CONTENT_TYPE};
    (
        [
            (CONTENT_TYPE, content_type),
            (CSP, CONTENT_SECURITY_POLICY),
            (CACHE_CONTROL, "no-store"),
            (axum::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (axum::http::header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    page("text/html; charset=utf-8", include_str!("../ui/index.html"))
}

async fn asset(axum::extract::Path(path): axum::extract::Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == path) {
        Some((_, content_type, body)) => page(content_type, body),
        None => ApiError::NotFound.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::ASSETS;

    /// Every file under control-plane/ui is served (a new page module that
    /// is not listed would fail to load in the browser).
    #[test]
    fn every_console_file_is_served() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
        let mut on_disk = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let name = path
                        .strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    if name != "index.html" {
                        on_disk.push(name);
                    }
                }
            }
        }
        on_disk.sort();
        let mut served: Vec<String> = ASSETS.iter().map(|(name, _, _)| name.to_string()).collect();
        served.sort();
        assert_eq!(on_disk, served);
    }
}
