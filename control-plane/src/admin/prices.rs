//! `/api/v1/model-prices`: USD per million tokens. Rows written here get
//! `source = "admin"` and are never overwritten by the seed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::Id;
use crate::app::AppState;
use crate::db::bump_policy;
use crate::errors::{ApiError, ApiResult};
use crate::extract::{merge_patch, JsonBody, JsonObject};
use crate::validate::{self, Check};

/// Body of `POST /api/v1/model-prices` (and the seed file's rows).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceInput {
    pub model: String,
    pub input_per_mtok: Decimal,
    pub output_per_mtok: Decimal,
    #[serde(default)]
    pub cache_write_5m_per_mtok: Option<Decimal>,
    #[serde(default)]
    pub cache_write_1h_per_mtok: Option<Decimal>,
    #[serde(default)]
    pub cache_read_per_mtok: Option<Decimal>,
}

impl PriceInput {
    pub fn validate(&self) -> Check {
        validate::model_name("model", &self.model)?;
        validate::usd("input_per_mtok", Some(self.input_per_mtok))?;
        validate::usd("output_per_mtok", Some(self.output_per_mtok))?;
        validate::usd("cache_write_5m_per_mtok", self.cache_write_5m_per_mtok)?;
        validate::usd("cache_write_1h_per_mtok", self.cache_write_1h_per_mtok)?;
        validate::usd("cache_read_per_mtok", self.cache_read_per_mtok)?;
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ModelPrice {
    pub id: i64,
    pub model: String,
    pub input_per_mtok: Decimal,
    pub output_per_mtok: Decimal,
    pub cache_write_5m_per_mtok: Option<Decimal>,
    pub cache_write_1h_per_mtok: Option<Decimal>,
    pub cache_read_per_mtok: Option<Decimal>,
    /// `seed` or `admin`.
    pub source: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, model, input_per_mtok, output_per_mtok, cache_write_5m_per_mtok, \
    cache_write_1h_per_mtok, cache_read_per_mtok, source, created_at, updated_at";

impl From<&ModelPrice> for PriceInput {
    fn from(p: &ModelPrice) -> Self {
        PriceInput {
            model: p.model.clone(),
            input_per_mtok: p.input_per_mtok,
            output_per_mtok: p.output_per_mtok,
            cache_write_5m_per_mtok: p.cache_write_5m_per_mtok,
            cache_write_1h_per_mtok: p.cache_write_1h_per_mtok,
            cache_read_per_mtok: p.cache_read_per_mtok,
        }
    }
}

pub async fn create(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<PriceInput>,
) -> ApiResult<(StatusCode, Json<ModelPrice>)> {
    input.validate()?;
    let mut tx = state.pool.begin().await?;
    // A deleted row is a tombstone: creating the same model revives it.
    let sql = format!(
        "INSERT INTO model_prices (model, input_per_mtok, output_per_mtok, cache_write_5m_per_mtok, \
           cache_write_1h_per_mtok, cache_read_per_mtok, source) \
         VALUES ($1, $2, $3, $4, $5, $6, 'admin') \
         ON CONFLICT (model) DO UPDATE SET input_per_mtok = EXCLUDED.input_per_mtok, \
           output_per_mtok = EXCLUDED.output_per_mtok, \
           cache_write_5m_per_mtok = EXCLUDED.cache_write_5m_per_mtok, \
           cache_write_1h_per_mtok = EXCLUDED.cache_write_1h_per_mtok, \
           cache_read_per_mtok = EXCLUDED.cache_read_per_mtok, \
           source = 'admin', deleted_at = NULL, created_at = now(), updated_at = now() \
         WHERE model_prices.deleted_at IS NOT NULL \
         RETURNING {COLUMNS}"
    );
    let price: Option<ModelPrice> = sqlx::query_as(&sql)
        .bind(&input.model)
        .bind(input.input_per_mtok)
        .bind(input.output_per_mtok)
        .bind(input.cache_write_5m_per_mtok)
        .bind(input.cache_write_1h_per_mtok)
        .bind(input.cache_read_per_mtok)
        .fetch_optional(&mut *tx)
        .await?;
    let price = price
        .ok_or_else(|| ApiError::conflict("model", "a price for this model already exists"))?;
    bump_policy(&mut tx, false).await?;
    tx.commit().await?;
    tracing::info!(model = %price.model, "model price created");
    Ok((StatusCode::CREATED, Json(price)))
}

pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<ModelPrice>>> {
    let sql = format!("SELECT {COLUMNS} FROM model_prices WHERE deleted_at IS NULL ORDER BY model");
    Ok(Json(sqlx::query_as(&sql).fetch_all(&state.pool).await?))
}

async fn find<'e, E: sqlx::PgExecutor<'e>>(
    db: E,
    id: i64,
    for_update: bool,
) -> ApiResult<ModelPrice> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    let sql =
        format!("SELECT {COLUMNS} FROM model_prices WHERE id = $1 AND deleted_at IS NULL{lock}");
    sqlx::query_as(&sql)
        .bind(id)
        .fetch_optional(db)
        .await?
        .ok_or(ApiError::NotFound)
}

pub async fn get(State(state): State<AppState>, Id(id): Id) -> ApiResult<Json<ModelPrice>> {
    Ok(Json(find(&state.pool, id, false).await?))
}

pub async fn update(
    State(state): State<AppState>,
    Id(id): Id,
    JsonObject(patch): JsonObject,
) -> ApiResult<Json<ModelPrice>> {
    let mut tx = state.pool.begin().await?;
    let current = find(&mut *tx, id, true).await?;
    let input: PriceInput = merge_patch(&PriceInput::from(&current), patch)?;
    input.validate()?;
    let sql = format!(
        "UPDATE model_prices SET model = $1, input_per_mtok = $2, output_per_mtok = $3, \
           cache_write_5m_per_mtok = $4, cache_write_1h_per_mtok = $5, cache_read_per_mtok = $6, \
           source = 'admin', updated_at = now() \
         WHERE id = $7 RETURNING {COLUMNS}"
    );
    let price: ModelPrice = sqlx::query_as(&sql)
        .bind(&input.model)
        .bind(input.input_per_mtok)
        .bind(input.output_per_mtok)
        .bind(input.cache_write_5m_per_mtok)
        .bind(input.cache_write_1h_per_mtok)
        .bind(input.cache_read_per_mtok)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    bump_policy(&mut tx, false).await?;
    tx.commit().await?;
    tracing::info!(model = %price.model, "model price updated");
    Ok(Json(price))
}

/// Leaves an `admin` tombstone, so re-seeding does not bring the price back.
pub async fn delete(State(state): State<AppState>, Id(id): Id) -> ApiResult<StatusCode> {
    let mut tx = state.pool.begin().await?;
    let deleted = sqlx::query(
        "UPDATE model_prices SET deleted_at = now(), source = 'admin', updated_at = now() \
         WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if deleted.rows_affected() == 0 {
        return Err(ApiError::NotFound);
    }
    bump_policy(&mut tx, false).await?;
    tx.commit().await?;
    tracing::info!(price_id = id, "model price deleted");
    Ok(StatusCode::NO_CONTENT)
}
