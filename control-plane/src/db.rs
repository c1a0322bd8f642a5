//! Database connection, migrations and the policy version counter.

use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub async fn connect(database_url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = database_url.parse().context("parsing DATABASE_URL")?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .context("connecting to PostgreSQL")
}

/// Runs the embedded migrations, fills missing folded names (see
/// [`fill_folds`]), then upserts the committed price seed.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await.context("running migrations")?;
    fill_folds(pool).await.context("folding names")?;
    crate::prices::seed(pool)
        .await
        .context("seeding model prices")?;
    Ok(())
}

/// The tables with a unique name: (table, name column, folded column).
const FOLDED: [(&str, &str, &str); 4] = [
    ("users", "name", "name_fold"),
    ("providers", "name", "name_fold"),
    ("request_filters", "name", "name_fold"),
    ("model_prices", "model", "model_fold"),
];

/// Fills the folded-name columns (see `migrations/0003_folded_names.sql`)
/// of rows that lack them: rows written before that migration, or by an
/// older binary during a rolling upgrade. A row whose folded name is already
/// taken keeps NULL and is reported, for an admin to rename.
pub async fn fill_folds(pool: &PgPool) -> anyhow::Result<()> {
    for (table, column, fold_column) in FOLDED {
        let rows: Vec<(i64, String)> = sqlx::query_as(&format!(
            "SELECT id, {column} FROM {table} WHERE {fold_column} IS NULL ORDER BY id"
        ))
        .fetch_all(pool)
        .await?;
        for (id, name) in rows {
            let filled = sqlx::query(&format!(
                "UPDATE {table} SET {fold_column} = $1 WHERE id = $2"
            ))
            .bind(crate::validate::fold(&name))
            .bind(id)
            .execute(pool)
            .await;
            match filled {
                Ok(_) => {}
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => tracing::warn!(
                    table,
                    id,
                    "this row's {column} differs only in case or Unicode form from another row's; \
                     rename one of them"
                ),
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Marks a policy change: bumps `version`, and `key_epoch` too when users or
/// keys changed. Call inside the transaction that makes the change, so a
/// snapshot or key answer never mixes old data with a new version.
pub async fn bump_policy(conn: &mut PgConnection, keys_changed: bool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE policy_state SET version = version + 1, \
         key_epoch = key_epoch + CASE WHEN $1 THEN 1 ELSE 0 END, updated_at = now()",
    )
    .bind(keys_changed)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct PolicyState {
    pub version: i64,
    pub key_epoch: i64,
}

pub async fn policy_state<'e, E: sqlx::PgExecutor<'e>>(db: E) -> Result<PolicyState, sqlx::Error> {
    sqlx::query_as("SELECT version, key_epoch FROM policy_state")
        .fetch_one(db)
        .await
}
