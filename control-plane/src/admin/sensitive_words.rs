//! `/api/v1/sensitive-words` (SPEC §2.2).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use hubgate_wire::pattern::PatternUse;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

use super::crud::{self, Delete, Resource};
use super::Id;
use crate::app::AppState;
use crate::db::bump_policy;
use crate::errors::ApiResult;
use crate::extract::{JsonBody, JsonObject};
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
            validate::regex("word", &self.word, PatternUse::SensitiveWord)?;
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

const WORDS: Resource = Resource {
    table: "sensitive_words",
    columns: COLUMNS,
    delete: Delete::Hard,
    keys_changed: false,
};

impl From<&SensitiveWord> for WordInput {
    fn from(w: &SensitiveWord) -> Self {
        WordInput {
            word: w.word.clone(),
            match_type: w.match_type.clone(),
            description: w.description.clone(),
            enabled: w.enabled,
        }
    }
}

/// Writes every writable field of word `id`; bumps the policy.
async fn replace(conn: &mut PgConnection, id: i64, input: &WordInput) -> ApiResult<SensitiveWord> {
    let word = sqlx::query_as(&format!(
        "UPDATE sensitive_words SET word = $1, match_type = $2, description = $3, enabled = $4, updated_at = now() \
         WHERE id = $5 RETURNING {COLUMNS}"
    ))
    .bind(&input.word)
    .bind(&input.match_type)
    .bind(&input.description)
    .bind(input.enabled)
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    bump_policy(conn, false).await?;
    Ok(word)
}

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
    Ok(Json(crud::list(&state.pool, &WORDS, "id").await?))
}

pub async fn get(State(state): State<AppState>, Id(id): Id) -> ApiResult<Json<SensitiveWord>> {
    Ok(Json(crud::find(&state.pool, &WORDS, id, false).await?))
}

pub async fn update(
    State(state): State<AppState>,
    Id(id): Id,
    JsonObject(patch): JsonObject,
) -> ApiResult<Json<SensitiveWord>> {
    let word = crud::update(&state.pool, &WORDS, id, patch, WordInput::validate, replace).await?;
    Ok(Json(word))
}

pub async fn delete(State(state): State<AppState>, Id(id): Id) -> ApiResult<StatusCode> {
    crud::delete(&state.pool, &WORDS, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
