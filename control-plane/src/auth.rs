//! Bearer authentication for the admin and internal APIs, the admin API's
//! failed-authentication throttle and the internal listener's source check.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, Method};
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

/// Admin API guard: an admin token, or the key of an admin-role user, as a
/// bearer token or through an admin console session (see [`crate::ui`]).
/// Unknown, disabled or expired credentials → 401; a valid non-admin key → 403.
/// A client address with too many missing or unknown credentials is locked
/// out (429 with `Retry-After`), whatever it sends meanwhile.
pub async fn require_admin(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    match identify(&state, peer, req.method(), req.headers()).await? {
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
    let caller = match identify(&state, peer, req.method(), req.headers()).await? {
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

/// The caller: the bearer token's holder, else the principal of the admin
/// console session cookie (whose state-changing requests must pass the
/// CSRF and origin checks). A bearer token wins over a cookie: a browser
/// does not add one on its own, so it is no ambient credential.
async fn identify(
    state: &AppState,
    peer: SocketAddr,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Outcome, ApiError> {
    refuse_locked_out(state, peer)?;
    let outcome = match (bearer(headers), crate::ui::session_id(headers)) {
        (Some(token), _) => {
            bearer_outcome(authenticate(state, &hubgate_wire::hash_key(token)).await?)
        }
        (None, Some(session_id)) => match crate::ui::session_credential(state, session_id).await? {
            Some(credential) => {
                let outcome = session_outcome(credential);
                if matches!(outcome, Outcome::Admin(_) | Outcome::User { .. })
                    && changes_state(method)
                {
                    crate::ui::check_csrf(headers, session_id)?;
                }
                outcome
            }
            // A stale cookie (expired, signed out) is the browser's own, not
            // a guess at a 256-bit id: refused without counting towards the
            // lockout, which would lock the admin out of their own address.
            None => return Err(ApiError::Unauthorized),
        },
        (None, None) => Outcome::Unknown,
    };
    if matches!(outcome, Outcome::Unknown) {
        record_failure(state, peer);
    }
    Ok(outcome)
}

/// 429 while `peer`'s address is locked out.
pub(crate) fn refuse_locked_out(state: &AppState, peer: SocketAddr) -> Result<(), ApiError> {
    if let Some(left) = state.admin_throttle.locked_for(peer.ip(), Instant::now()) {
        let retry_after_secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        return Err(ApiError::LockedOut { retry_after_secs });
    }
    Ok(())
}

/// Counts a failed authentication from `peer` towards its lockout.
pub(crate) fn record_failure(state: &AppState, peer: SocketAddr) {
    state.metrics.admin_auth_failures.inc_by(1);
    if state
        .admin_throttle
        .record_failure(peer.ip(), Instant::now())
    {
        state.metrics.admin_auth_lockouts.inc_by(1);
        let client = crate::throttle::client_group(peer.ip());
        tracing::warn!(%client, "admin API locked out for this client after repeated failed authentication");
    }
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
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

/// What a credential is, whatever its state.
#[derive(Debug, Clone, Copy)]
pub enum Credential {
    AdminToken {
        id: i64,
    },
    Key {
        key_id: i64,
        user_id: i64,
        admin: bool,
        /// Key and user enabled and unexpired.
        active: bool,
        web_ui: bool,
    },
    Unknown,
}

fn bearer_outcome(credential: Credential) -> Outcome {
    match credential {
        Credential::AdminToken { id } => Outcome::Admin(Admin::Token { id }),
        Credential::Key {
            key_id,
            user_id,
            admin: true,
            active: true,
            ..
        } => Outcome::Admin(Admin::UserKey { user_id, key_id }),
        Credential::Key {
            key_id,
            user_id,
            active: true,
            web_ui,
            ..
        } => Outcome::User {
            user_id,
            key_id,
            web_ui,
        },
        Credential::Key { .. } => Outcome::Inactive,
        Credential::Unknown => Outcome::Unknown,
    }
}

/// A session acts as its credential does as a bearer token, as long as the
/// credential may still sign in to the console.
fn session_outcome(credential: Credential) -> Outcome {
    match credential {
        Credential::Key { web_ui: false, .. } => Outcome::Inactive,
        other => bearer_outcome(other),
    }
}

/// The credential whose hash is `hash` (an admin token or a key).
pub(crate) async fn authenticate(state: &AppState, hash: &str) -> Result<Credential, ApiError> {
    let token = sqlx::query_scalar!(
        "SELECT id FROM admin_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
        hash
    )
    .fetch_optional(&state.pool)
    .await?;
    if let Some(id) = token {
        return Ok(Credential::AdminToken { id });
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
        Some(k) => Credential::Key {
            key_id: k.key_id,
            user_id: k.user_id,
            admin: k.role == "admin",
            active: k.active,
            web_ui: k.can_login_web_ui,
        },
        None => Credential::Unknown,
    })
}

/// The admin token `id` (unless revoked), as a credential.
pub(crate) async fn admin_token_by_id(state: &AppState, id: i64) -> Result<Credential, ApiError> {
    let live = sqlx::query_scalar!(
        "SELECT id FROM admin_tokens WHERE id = $1 AND revoked_at IS NULL",
        id
    )
    .fetch_optional(&state.pool)
    .await?;
    Ok(match live {
        Some(id) => Credential::AdminToken { id },
        None => Credential::Unknown,
    })
}

/// The key `key_id` (unless deleted), as a credential.
pub(crate) async fn key_by_id(state: &AppState, key_id: i64) -> Result<Credential, ApiError> {
    let key = sqlx::query!(
        r#"SELECT k.id AS key_id, u.id AS user_id, u.role,
                  k.enabled AND u.enabled
                  AND (k.expires_at IS NULL OR k.expires_at > now())
                  AND (u.expires_at IS NULL OR u.expires_at > now()) AS "active!",
                  k.can_login_web_ui
           FROM keys k JOIN users u ON u.id = k.user_id
           WHERE k.id = $1 AND k.deleted_at IS NULL AND u.deleted_at IS NULL"#,
        key_id
    )
    .fetch_optional(&state.pool)
    .await?;
    Ok(match key {
        Some(k) => Credential::Key {
            key_id: k.key_id,
            user_id: k.user_id,
            admin: k.role == "admin",
            active: k.active,
            web_ui: k.can_login_web_ui,
        },
        None => Credential::Unknown,
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
