//! What the admin resources share: reading rows by id, listing, deleting,
//! and PATCH's lock → merge → validate → write. Each resource module keeps
//! its input type, its validation and the SQL that writes it.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, PgExecutor, PgPool};

use crate::db::bump_policy;
use crate::errors::{ApiError, ApiResult};
use crate::extract::merge_patch;
use crate::validate::Check;

/// An admin table and how its rows are read and deleted.
pub struct Resource {
    pub table: &'static str,
    /// What the row type reads.
    pub columns: &'static str,
    pub delete: Delete,
    /// A delete moves the key epoch too (see [`bump_policy`]).
    pub keys_changed: bool,
}

pub enum Delete {
    /// The row is removed.
    Hard,
    /// The row stays, with `deleted_at` and these other assignments set;
    /// reads skip it.
    Soft(&'static str),
}

impl Resource {
    /// `sql` when deleted rows stay in the table, else nothing.
    fn if_soft(&self, sql: &'static str) -> &'static str {
        match self.delete {
            Delete::Soft(_) => sql,
            Delete::Hard => "",
        }
    }
}

/// Row `id`, or 404; `for_update` locks it.
pub async fn find<'e, T>(
    db: impl PgExecutor<'e>,
    r: &Resource,
    id: i64,
    for_update: bool,
) -> ApiResult<T>
where
    T: for<'row> FromRow<'row, PgRow> + Send + Unpin,
{
    let (table, columns) = (r.table, r.columns);
    let live = r.if_soft(" AND deleted_at IS NULL");
    let lock = if for_update { " FOR UPDATE" } else { "" };
    let sql = format!("SELECT {columns} FROM {table} WHERE id = $1{live}{lock}");
    sqlx::query_as(&sql)
        .bind(id)
        .fetch_optional(db)
        .await?
        .ok_or(ApiError::NotFound)
}

pub async fn list<T>(pool: &PgPool, r: &Resource, order_by: &str) -> ApiResult<Vec<T>>
where
    T: for<'row> FromRow<'row, PgRow> + Send + Unpin,
{
    let (table, columns) = (r.table, r.columns);
    let live = r.if_soft(" WHERE deleted_at IS NULL");
    let sql = format!("SELECT {columns} FROM {table}{live} ORDER BY {order_by}");
    Ok(sqlx::query_as(&sql).fetch_all(pool).await?)
}

/// PATCH: locks row `id`, lays `patch` over it as input `I`, validates, and
/// hands the result to `write` (which writes and bumps the policy) in the
/// same transaction.
pub async fn update<T, I>(
    pool: &PgPool,
    r: &Resource,
    id: i64,
    patch: Map<String, Value>,
    validate: fn(&I) -> Check,
    write: impl AsyncFnOnce(&mut PgConnection, i64, &I) -> ApiResult<T>,
) -> ApiResult<T>
where
    T: for<'row> FromRow<'row, PgRow> + Send + Unpin,
    I: for<'a> From<&'a T> + Serialize + DeserializeOwned,
{
    let mut tx = pool.begin().await?;
    let current: T = find(&mut *tx, r, id, true).await?;
    let input: I = merge_patch(&I::from(&current), patch)?;
    validate(&input)?;
    let row = write(&mut tx, id, &input).await?;
    tx.commit().await?;
    Ok(row)
}

/// Deletes row `id` (see [`Delete`]) and bumps the policy; 404 when there
/// is no such row.
pub async fn delete(pool: &PgPool, r: &Resource, id: i64) -> ApiResult<()> {
    let mut tx = pool.begin().await?;
    delete_row(&mut tx, r, id).await?;
    bump_policy(&mut tx, r.keys_changed).await?;
    tx.commit().await?;
    Ok(())
}

/// The delete statement alone, for callers that do more in its transaction.
pub async fn delete_row(conn: &mut PgConnection, r: &Resource, id: i64) -> ApiResult<()> {
    let table = r.table;
    let sql = match r.delete {
        Delete::Hard => format!("DELETE FROM {table} WHERE id = $1"),
        Delete::Soft(set) => format!(
            "UPDATE {table} SET deleted_at = now(), {set}, updated_at = now() \
             WHERE id = $1 AND deleted_at IS NULL"
        ),
    };
    let deleted = sqlx::query(&sql).bind(id).execute(conn).await?;
    if deleted.rows_affected() == 0 {
        return Err(ApiError::NotFound);
    }
    Ok(())
}
