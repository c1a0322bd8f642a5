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

/// Runs the embedded migrations, then upserts the committed price seed.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await.context("running migrations")?;
    crate::prices::seed(pool)
        .await
        .context("seeding model prices")?;
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
