//! Bearer authentication for the admin and internal APIs.

use axum::extract::{Request, State};
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

/// Admin API guard: an admin token, or the key of an admin-role user.
/// Unknown, disabled or expired credentials → 401; a valid non-admin key → 403.
pub async fn require_admin(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = bearer(req.headers()).ok_or(ApiError::Unauthorized)?;
    let hash = hubgate_wire::hash_key(token);
    let admin = authenticate(&state, &hash).await?;
    req.extensions_mut().insert(admin);
    Ok(next.run(req).await)
}

async fn authenticate(state: &AppState, hash: &str) -> Result<Admin, ApiError> {
    let token: Option<(i64,)> =
        sqlx::query_as("SELECT id FROM admin_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
            .bind(hash)
            .fetch_optional(&state.pool)
            .await?;
    if let Some((id,)) = token {
        return Ok(Admin::Token { id });
    }
    let key: Option<(i64, i64, String, bool)> = sqlx::query_as(
        "SELECT k.id, u.id, u.role, \
                k.enabled AND u.enabled \
                AND (k.expires_at IS NULL OR k.expires_at > now()) \
                AND (u.expires_at IS NULL OR u.expires_at > now()) \
         FROM keys k JOIN users u ON u.id = k.user_id \
         WHERE k.key_hash = $1 AND k.deleted_at IS NULL AND u.deleted_at IS NULL",
    )
    .bind(hash)
    .fetch_optional(&state.pool)
    .await?;
    match key {
        Some((key_id, user_id, role, true)) if role == "admin" => {
            Ok(Admin::UserKey { user_id, key_id })
        }
        Some((_, _, _, true)) => Err(ApiError::Forbidden),
        _ => Err(ApiError::Unauthorized),
    }
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
