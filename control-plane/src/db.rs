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

/// The tables with a unique name, each with its name and folded-name columns.
#[derive(Debug, Clone, Copy)]
enum Folded {
    Users,
    Providers,
    RequestFilters,
    ModelPrices,
}

impl Folded {
    const ALL: [Folded; 4] = [
        Folded::Users,
        Folded::Providers,
        Folded::RequestFilters,
        Folded::ModelPrices,
    ];

    fn table(self) -> &'static str {
        match self {
            Folded::Users => "users",
            Folded::Providers => "providers",
            Folded::RequestFilters => "request_filters",
            Folded::ModelPrices => "model_prices",
        }
    }

    fn name_column(self) -> &'static str {
        match self {
            Folded::ModelPrices => "model",
            _ => "name",
        }
    }

    /// The rows without a folded name, oldest first.
    async fn unfolded(self, pool: &PgPool) -> sqlx::Result<Vec<Unfolded>> {
        match self {
            Folded::Users => {
                sqlx::query_as!(
                    Unfolded,
                    "SELECT id, name FROM users WHERE name_fold IS NULL ORDER BY id"
                )
                .fetch_all(pool)
                .await
            }
            Folded::Providers => {
                sqlx::query_as!(
                    Unfolded,
                    "SELECT id, name FROM providers WHERE name_fold IS NULL ORDER BY id"
                )
                .fetch_all(pool)
                .await
            }
            Folded::RequestFilters => {
                sqlx::query_as!(
                    Unfolded,
                    "SELECT id, name FROM request_filters WHERE name_fold IS NULL ORDER BY id"
                )
                .fetch_all(pool)
                .await
            }
            Folded::ModelPrices => {
                sqlx::query_as!(
                Unfolded,
                "SELECT id, model AS name FROM model_prices WHERE model_fold IS NULL ORDER BY id"
            )
                .fetch_all(pool)
                .await
            }
        }
    }

    async fn set_fold(self, pool: &PgPool, id: i64, fold: &str) -> sqlx::Result<()> {
        match self {
            Folded::Users => {
                sqlx::query!("UPDATE users SET name_fold = $1 WHERE id = $2", fold, id)
                    .execute(pool)
                    .await?
            }
            Folded::Providers => {
                sqlx::query!(
                    "UPDATE providers SET name_fold = $1 WHERE id = $2",
                    fold,
                    id
                )
                .execute(pool)
                .await?
            }
            Folded::RequestFilters => {
                sqlx::query!(
                    "UPDATE request_filters SET name_fold = $1 WHERE id = $2",
                    fold,
                    id
                )
                .execute(pool)
                .await?
            }
            Folded::ModelPrices => {
                sqlx::query!(
                    "UPDATE model_prices SET model_fold = $1 WHERE id = $2",
                    fold,
                    id
                )
                .execute(pool)
                .await?
            }
        };
        Ok(())
    }
}

struct Unfolded {
    id: i64,
    name: String,
}

/// Fills the folded-name columns (see `migrations/0003_folded_names.sql`)
/// of rows that lack them: rows written before that migration, or by an
/// older binary during a rolling upgrade. A row whose folded name is already
/// taken keeps NULL and is reported, for an admin to rename.
pub async fn fill_folds(pool: &PgPool) -> anyhow::Result<()> {
    for folded in Folded::ALL {
        for row in folded.unfolded(pool).await? {
            let filled = folded
                .set_fold(pool, row.id, &crate::validate::fold(&row.name))
                .await;
            match filled {
                Ok(()) => {}
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => tracing::warn!(
                    table = folded.table(),
                    id = row.id,
                    "this row's {} differs only in case or Unicode form from another row's; \
                     rename one of them",
                    folded.name_column()
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
    sqlx::query!(
        "UPDATE policy_state SET version = version + 1, \
         key_epoch = key_epoch + CASE WHEN $1 THEN 1 ELSE 0 END, updated_at = now()",
        keys_changed
    )
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyState {
    pub version: i64,
    pub key_epoch: i64,
}

pub async fn policy_state<'e, E: sqlx::PgExecutor<'e>>(db: E) -> Result<PolicyState, sqlx::Error> {
    sqlx::query_as!(PolicyState, "SELECT version, key_epoch FROM policy_state")
        .fetch_one(db)
        .await
}
