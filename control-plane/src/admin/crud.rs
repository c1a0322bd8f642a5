//! What the admin resources share: PATCH's lock → merge → validate → write,
//! and a delete that bumps the policy. Each resource module keeps its input
//! type, its validation and its SQL.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::postgres::PgQueryResult;
use sqlx::{PgConnection, PgPool};

use crate::db::bump_policy;
use crate::errors::{ApiError, ApiResult};
use crate::extract::merge_patch;
use crate::validate::Check;

/// PATCH: `lock` reads row `id` (`FOR UPDATE`, 404 when there is none),
/// `patch` is laid over it as input `I`, validated, and handed to `write`
/// (which writes and bumps the policy), all in one transaction.
pub async fn update<T, I>(
    pool: &PgPool,
    id: i64,
    patch: Map<String, Value>,
    lock: impl AsyncFnOnce(&mut PgConnection, i64) -> ApiResult<T>,
    validate: fn(&I) -> Check,
    write: impl AsyncFnOnce(&mut PgConnection, i64, &I) -> ApiResult<T>,
) -> ApiResult<T>
where
    I: for<'a> From<&'a T> + Serialize + DeserializeOwned,
{
    let mut tx = pool.begin().await?;
    let current = lock(&mut tx, id).await?;
    let input: I = merge_patch(&I::from(&current), patch)?;
    validate(&input)?;
    let row = write(&mut tx, id, &input).await?;
    tx.commit().await?;
    Ok(row)
}

/// Runs `delete`, the statement deleting one row, and bumps the policy (the
/// key epoch too with `keys_changed`, see [`bump_policy`]) in one
/// transaction; 404 when the statement found no row.
pub async fn delete(
    pool: &PgPool,
    keys_changed: bool,
    delete: impl AsyncFnOnce(&mut PgConnection) -> sqlx::Result<PgQueryResult>,
) -> ApiResult<()> {
    let mut tx = pool.begin().await?;
    found(delete(&mut tx).await?)?;
    bump_policy(&mut tx, keys_changed).await?;
    tx.commit().await?;
    Ok(())
}

/// 404 when a write by id changed no row.
pub fn found(result: PgQueryResult) -> ApiResult<()> {
    if result.rows_affected() == 0 {
        return Err(ApiError::NotFound);
    }
    Ok(())
}
