//! Bearer authentication for the admin and internal APIs, the admin API's
//! failed-authentication throttle and the internal listener's source check.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::errors::ApiError;

/// The token of an `Authorization: Bearer <token>` header (scheme is
/// case-insensitive).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Who is calling the admin API.
#[derive(Clone, Debug)]
pub enum Admin {
    Token {
        id: i64,
    },
    /// An enabled, unexpired admin-role user's key.
    UserKey {
        user_id: i64,
        key_id: i64,
    },
}

/// Who is calling a route that users may call for themselves.
#[derive(Clone, Debug)]
pub enum Caller {
    Admin(Admin),
    /// An enabled, unexpired key of a non-admin user with
    /// `can_login_web_ui`: it may read its own user's data only.
    User {
        user_id: i64,
        key_id: i64,
    },
}

impl Caller {
    /// Admins may read any user; a user only themselves.
    pub fn may_read_user(&self, user_id: i64) -> bool {
        match self {
            Caller::Admin(_) => true,
            Caller::User { user_id: own, .. } => *own == user_id,
        }
    }
}

/// Admin API guard: an admin token, or the key of an admin-role user.
/// Unknown, disabled or expired credentials → 401; a valid non-admin key → 403.
/// A client address with too many missing or unknown credentials is locked
/// out (429 with `Retry-After`), whatever it sends meanwhile.
pub async fn require_admin(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    match identify(&state, peer, req.headers()).await? {
        Outcome::Admin(admin) => {
            req.extensions_mut().insert(admin);
            Ok(next.run(req).await)
        }
        Outcome::User { .. } => Err(ApiError::Forbidden),
        _ => Err(ApiError::Unauthorized),
    }
}

/// Guard of the routes a user may call about themselves (their usage): an
/// admin as for [`require_admin`], or the key of a user allowed to log in
/// to the web UI (`can_login_web_ui`); other valid keys → 403. Handlers
/// check ownership through the [`Caller`] extension.
pub async fn require_account(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let caller = match identify(&state, peer, req.headers()).await? {
        Outcome::Admin(admin) => Caller::Admin(admin),
        Outcome::User {
            user_id,
            key_id,
            web_ui: true,
        } => Caller::User { user_id, key_id },
        Outcome::User { web_ui: false, .. } => return Err(ApiError::Forbidden),
        _ => return Err(ApiError::Unauthorized),
    };
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

/// The bearer credential's holder. Failed attempts count towards the
/// client address's lockout; a locked-out address gets 429 whatever it sends.
async fn identify(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<Outcome, ApiError> {
    let now = Instant::now();
    if let Some(left) = state.admin_throttle.locked_for(peer.ip(), now) {
        let retry_after_secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        return Err(ApiError::LockedOut { retry_after_secs });
    }
    let outcome = match bearer(headers) {
        Some(token) => authenticate(state, &hubgate_wire::hash_key(token)).await?,
        None => Outcome::Unknown,
    };
    if matches!(outcome, Outcome::Unknown) {
        state.metrics.admin_auth_failures.inc_by(1);
        if state.admin_throttle.record_failure(peer.ip(), now) {
            state.metrics.admin_auth_lockouts.inc_by(1);
            let client = crate::throttle::client_group(peer.ip());
            tracing::warn!(%client, "admin API locked out for this client after repeated failed authentication");
        }
    }
    Ok(outcome)
}

enum Outcome {
    Admin(Admin),
    /// A valid key of a non-admin user.
    User {
        user_id: i64,
        key_id: i64,
        web_ui: bool,
    },
    /// A key of a disabled or expired user or key.
    Inactive,
    /// No credential, or one nobody holds.
    Unknown,
}

async fn authenticate(state: &AppState, hash: &str) -> Result<Outcome, ApiError> {
    let token = sqlx::query_scalar!(
        "SELECT id FROM admin_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
        hash
    )
    .fetch_optional(&state.pool)
    .await?;
    if let Some(id) = token {
        return Ok(Outcome::Admin(Admin::Token { id }));
    }
    let key = sqlx::query!(
        r#"SELECT k.id AS key_id, u.id AS user_id, u.role,
                  k.enabled AND u.enabled
                  AND (k.expires_at IS NULL OR k.expires_at > now())
                  AND (u.expires_at IS NULL OR u.expires_at > now()) AS "active!",
                  k.can_login_web_ui
           FROM keys k JOIN users u ON u.id = k.user_id
           WHERE k.key_hash = $1 AND k.deleted_at IS NULL AND u.deleted_at IS NULL"#,
        hash
    )
    .fetch_optional(&state.pool)
    .await?;
    Ok(match key {
        Some(k) if k.active && k.role == "admin" => Outcome::Admin(Admin::UserKey {
            user_id: k.user_id,
            key_id: k.key_id,
        }),
        Some(k) if k.active => Outcome::User {
            user_id: k.user_id,
            key_id: k.key_id,
            web_ui: k.can_login_web_ui,
        },
        Some(_) => Outcome::Inactive,
        None => Outcome::Unknown,
    })
}

/// Internal listener guard, before anything else: the peer address must be
/// in `HUBGATE_INTERNAL_ALLOW`.
pub async fn require_allowed_source(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let ip = peer.ip().to_canonical();
    if state.internal_allow.iter().any(|net| net.contains(&ip)) {
        return Ok(next.run(req).await);
    }
    state.metrics.internal_forbidden_source.inc_by(1);
    tracing::debug!(peer = %ip, "internal API refused: address not in HUBGATE_INTERNAL_ALLOW");
    Err(ApiError::ForbiddenSource)
}

/// Internal API guard: the filter's shared internal token.
pub async fn require_internal(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = bearer(req.headers()).ok_or(ApiError::Unauthorized)?;
    // Compare digests so the comparison time does not depend on the token.
    let given = Sha256::digest(token.as_bytes());
    if given.as_slice() != state.internal_token_digest.as_slice() {
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(req).await)
}

pub fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}
