//! `/api/v1/sensitive-words` (SPEC §2.2).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Id;
use crate::app::AppState;
use crate::db::bump_policy;
use crate::errors::{ApiError, ApiResult};
use crate::extract::{merge_patch, JsonBody, JsonObject};
use crate::validate::{self, Check};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WordInput {
    pub word: String,
    /// `contains`, `exact` or `regex`.
    #[serde(default = "contains")]
    pub match_type: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "super::yes")]
    pub enabled: bool,
}

fn contains() -> String {
    "contains".to_string()
}

impl WordInput {
    pub fn validate(&self) -> Check {
        validate::one_of(
            "match_type",
            &self.match_type,
            &["contains", "exact", "regex"],
        )?;
        if self.match_type == "regex" {
            validate::regex("word", &self.word)?;
        } else {
            validate::text("word", &self.word, 256)?;
        }
        validate::optional_text("description", &self.description, 500)?;
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct SensitiveWord {
    pub id: i64,
    pub word: String,
    pub match_type: String,
    pub description: String,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, word, match_type, description, enabled, created_at, updated_at";

pub async fn create(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<WordInput>,
) -> ApiResult<(StatusCode, Json<SensitiveWord>)> {
    input.validate()?;
    let mut tx = state.pool.begin().await?;
    let word: SensitiveWord = sqlx::query_as(&format!(
        "INSERT INTO sensitive_words (word, match_type, description, enabled) VALUES ($1, $2, $3, $4) \
         RETURNING {COLUMNS}"
    ))
    .bind(&input.word)
    .bind(&input.match_type)
    .bind(&input.description)
    .bind(input.enabled)
    .fetch_one(&mut *tx)
    .await?;
    bump_policy(&mut tx, false).await?;
    tx.commit().await?;
    tracing::info!(word_id = word.id, "sensitive word created");
    Ok((StatusCode::CREATED, Json(word)))
}

pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<SensitiveWord>>> {
    let sql = format!("SELECT {COLUMNS} FROM sensitive_words ORDER BY id");
    Ok(Json(sqlx::query_as(&sql).fetch_all(&state.pool).await?))
}

async fn find<'e, E: sqlx::PgExecutor<'e>>(
    db: E,
    id: i64,
    for_update: bool,
) -> ApiResult<SensitiveWord> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    let sql = format!("SELECT {COLUMNS} FROM sensitive_words WHERE id = $1{lock}");
    sqlx::query_as(&sql)
        .bind(id)
        .fetch_optional(db)
        .await?
        .ok_or(ApiError::NotFound)
}

pub async fn get(State(state): State<AppState>, Id(id): Id) -> ApiResult<Json<SensitiveWord>> {
    Ok(Json(find(&state.pool, id, false).await?))
}

pub async fn update(
    State(state): State<AppState>,
    Id(id): Id,
    JsonObject(patch): JsonObject,
) -> ApiResult<Json<SensitiveWord>> {
    let mut tx = state.pool.begin().await?;
    let current = find(&mut *tx, id, true).await?;
    let base = WordInput {
        word: current.word,
        match_type: current.match_type,
        description: current.description,
        enabled: current.enabled,
    };
    let input: WordInput = merge_patch(&base, patch)?;
    input.validate()?;
    let word: SensitiveWord = sqlx::query_as(&format!(
        "UPDATE sensitive_words SET word = $1, match_type = $2, description = $3, enabled = $4, updated_at = now() \
         WHERE id = $5 RETURNING {COLUMNS}"
    ))
    .bind(&input.word)
    .bind(&input.match_type)
    .bind(&input.description)
    .bind(input.enabled)
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    bump_policy(&mut tx, false).await?;
    tx.commit().await?;
    Ok(Json(word))
}

pub async fn delete(State(state): State<AppState>, Id(id): Id) -> ApiResult<StatusCode> {
    let mut tx = state.pool.begin().await?;
    let deleted = sqlx::query("DELETE FROM sensitive_words WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(ApiError::NotFound);
    }
    bump_policy(&mut tx, false).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
