//! `/api/v1/model-prices`: USD per million tokens. Rows written here get
//! `source = "admin"` and are never overwritten by the seed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor};
use utoipa::openapi::schema::ObjectBuilder;
use utoipa::ToSchema;

use super::crud;
use super::Id;
use crate::app::AppState;
use crate::db::bump_policy;
use crate::errors::{ApiError, ApiResult};
use crate::extract::{JsonBody, JsonObject};
use crate::openapi::{self, AdminOnly, BadBody, Conflict, NotFound, Patch};
use crate::validate::{self, Check};

/// Body of `POST /api/v1/model-prices` (and the seed file's rows): USD per
/// million tokens.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = ModelPriceInput)]
#[serde(deny_unknown_fields)]
pub struct PriceInput {
    #[schema(schema_with = openapi::model)]
    pub model: String,
    #[schema(schema_with = openapi::usd)]
    pub input_per_mtok: Decimal,
    #[schema(schema_with = openapi::usd)]
    pub output_per_mtok: Decimal,
    #[serde(default)]
    #[schema(schema_with = openapi::usd_or_null)]
    pub cache_write_5m_per_mtok: Option<Decimal>,
    #[serde(default)]
    #[schema(schema_with = openapi::usd_or_null)]
    pub cache_write_1h_per_mtok: Option<Decimal>,
    #[serde(default)]
    #[schema(schema_with = openapi::usd_or_null)]
    pub cache_read_per_mtok: Option<Decimal>,
}

pub type PricePatch = Patch<PriceInput>;

fn sources() -> ObjectBuilder {
    openapi::one_of(&["seed", "admin"])
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

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelPrice {
    pub id: i64,
    pub model: String,
    pub input_per_mtok: Decimal,
    pub output_per_mtok: Decimal,
    pub cache_write_5m_per_mtok: Option<Decimal>,
    pub cache_write_1h_per_mtok: Option<Decimal>,
    pub cache_read_per_mtok: Option<Decimal>,
    /// `seed` or `admin` (written through this API; the seed leaves it alone).
    #[schema(schema_with = sources)]
    pub source: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

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

/// Writes every writable field of price `id`; bumps the policy.
async fn replace(conn: &mut PgConnection, id: i64, p: &PriceInput) -> ApiResult<ModelPrice> {
    let price = sqlx::query_as!(
        ModelPrice,
        "UPDATE model_prices SET model = $1, input_per_mtok = $2, output_per_mtok = $3, \
           cache_write_5m_per_mtok = $4, cache_write_1h_per_mtok = $5, cache_read_per_mtok = $6, \
           model_fold = $7, source = 'admin', updated_at = now() \
         WHERE id = $8 \
         RETURNING id, model, input_per_mtok, output_per_mtok, cache_write_5m_per_mtok, \
           cache_write_1h_per_mtok, cache_read_per_mtok, source, created_at, updated_at",
        p.model,
        p.input_per_mtok,
        p.output_per_mtok,
        p.cache_write_5m_per_mtok,
        p.cache_write_1h_per_mtok,
        p.cache_read_per_mtok,
        validate::fold(&p.model),
        id
    )
    .fetch_one(&mut *conn)
    .await?;
    bump_policy(conn, false).await?;
    Ok(price)
}

#[utoipa::path(
    post,
    path = "/api/v1/model-prices",
    tag = "model-prices",
    operation_id = "create_model_price",
    summary = "Create a price",
    request_body = PriceInput,
    responses(
        (status = 201, description = "The new price", body = ModelPrice),
        BadBody,
        Conflict,
        AdminOnly,
    ),
    security(("adminBearer" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    JsonBody(p): JsonBody<PriceInput>,
) -> ApiResult<(StatusCode, Json<ModelPrice>)> {
    p.validate()?;
    let mut tx = state.pool.begin().await?;
    // A deleted row is a tombstone: creating the same model (in any case)
    // revives it, under the name as now typed.
    let price = sqlx::query_as!(
        ModelPrice,
        "INSERT INTO model_prices (model, input_per_mtok, output_per_mtok, cache_write_5m_per_mtok, \
           cache_write_1h_per_mtok, cache_read_per_mtok, model_fold, source) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'admin') \
         ON CONFLICT (model_fold) DO UPDATE SET model = EXCLUDED.model, \
           input_per_mtok = EXCLUDED.input_per_mtok, \
           output_per_mtok = EXCLUDED.output_per_mtok, \
           cache_write_5m_per_mtok = EXCLUDED.cache_write_5m_per_mtok, \
           cache_write_1h_per_mtok = EXCLUDED.cache_write_1h_per_mtok, \
           cache_read_per_mtok = EXCLUDED.cache_read_per_mtok, \
           source = 'admin', deleted_at = NULL, created_at = now(), updated_at = now() \
         WHERE model_prices.deleted_at IS NOT NULL \
         RETURNING id, model, input_per_mtok, output_per_mtok, cache_write_5m_per_mtok, \
           cache_write_1h_per_mtok, cache_read_per_mtok, source, created_at, updated_at",
        p.model,
        p.input_per_mtok,
        p.output_per_mtok,
        p.cache_write_5m_per_mtok,
        p.cache_write_1h_per_mtok,
        p.cache_read_per_mtok,
        validate::fold(&p.model)
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::conflict("model", "a price for this model already exists"))?;
    bump_policy(&mut tx, false).await?;
    tx.commit().await?;
    tracing::info!(model = %price.model, "model price created");
    Ok((StatusCode::CREATED, Json(price)))
}

#[utoipa::path(
    get,
    path = "/api/v1/model-prices",
    tag = "model-prices",
    operation_id = "list_model_prices",
    summary = "List prices",
    responses(
        (status = 200, description = "Every price, by model", body = Vec<ModelPrice>),
        AdminOnly,
    ),
    security(("adminBearer" = [])),
)]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<ModelPrice>>> {
    let prices = sqlx::query_as!(
        ModelPrice,
        "SELECT id, model, input_per_mtok, output_per_mtok, cache_write_5m_per_mtok, \
           cache_write_1h_per_mtok, cache_read_per_mtok, source, created_at, updated_at \
         FROM model_prices WHERE deleted_at IS NULL ORDER BY model"
    )
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(prices))
}

#[utoipa::path(
    get,
    path = "/api/v1/model-prices/{id}",
    tag = "model-prices",
    operation_id = "get_model_price",
    summary = "Get a price",
    params(Id),
    responses((status = 200, description = "The price", body = ModelPrice), NotFound, AdminOnly),
    security(("adminBearer" = [])),
)]
pub async fn get(State(state): State<AppState>, Id(id): Id) -> ApiResult<Json<ModelPrice>> {
    Ok(Json(find(&state.pool, id, false).await?))
}

/// A live (not deleted) price, or 404; `for_update` locks it.
async fn find<'e>(db: impl PgExecutor<'e>, id: i64, for_update: bool) -> ApiResult<ModelPrice> {
    let row = if for_update {
        sqlx::query_as!(
            ModelPrice,
            "SELECT id, model, input_per_mtok, output_per_mtok, cache_write_5m_per_mtok, \
               cache_write_1h_per_mtok, cache_read_per_mtok, source, created_at, updated_at \
             FROM model_prices WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
            id
        )
        .fetch_optional(db)
        .await?
    } else {
        sqlx::query_as!(
            ModelPrice,
            "SELECT id, model, input_per_mtok, output_per_mtok, cache_write_5m_per_mtok, \
               cache_write_1h_per_mtok, cache_read_per_mtok, source, created_at, updated_at \
             FROM model_prices WHERE id = $1 AND deleted_at IS NULL",
            id
        )
        .fetch_optional(db)
        .await?
    };
    row.ok_or(ApiError::NotFound)
}

#[utoipa::path(
    patch,
    path = "/api/v1/model-prices/{id}",
    tag = "model-prices",
    operation_id = "update_model_price",
    summary = "Update a price (any subset of fields; null clears a nullable field)",
    params(Id),
    request_body = PricePatch,
    responses(
        (status = 200, description = "The updated price", body = ModelPrice),
        NotFound,
        BadBody,
        Conflict,
        AdminOnly,
    ),
    security(("adminBearer" = [])),
)]
pub async fn update(
    State(state): State<AppState>,
    Id(id): Id,
    JsonObject(patch): JsonObject,
) -> ApiResult<Json<ModelPrice>> {
    let lock = async |conn: &mut PgConnection, id| find(conn, id, true).await;
    let price = crud::update(&state.pool, id, patch, lock, PriceInput::validate, replace).await?;
    tracing::info!(model = %price.model, "model price updated");
    Ok(Json(price))
}

#[utoipa::path(
    delete,
    path = "/api/v1/model-prices/{id}",
    tag = "model-prices",
    operation_id = "delete_model_price",
    summary = "Delete a price (kept as a tombstone so the seed does not restore it)",
    params(Id),
    responses((status = 204, description = "Deleted"), NotFound, AdminOnly),
    security(("adminBearer" = [])),
)]
pub async fn delete(State(state): State<AppState>, Id(id): Id) -> ApiResult<StatusCode> {
    // The row stays as an `admin` tombstone, so re-seeding does not bring it back.
    crud::delete(&state.pool, false, async |conn: &mut PgConnection| {
        sqlx::query!(
            "UPDATE model_prices SET deleted_at = now(), source = 'admin', updated_at = now() \
             WHERE id = $1 AND deleted_at IS NULL",
            id
        )
        .execute(conn)
        .await
    })
    .await?;
    tracing::info!(price_id = id, "model price deleted");
    Ok(StatusCode::NO_CONTENT)
}
