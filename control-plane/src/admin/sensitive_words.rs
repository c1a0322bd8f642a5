//! `/api/v1/sensitive-words` (SPEC §2.2), and
//! `POST /api/v1/sensitive-words/test`: what the filter's guard says about a
//! text, with the enabled words.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use hubgate_core::api::Endpoint;
use hubgate_core::body_text::user_texts;
use hubgate_core::guards::sensitive_words::SensitiveWords;
use hubgate_wire::pattern::PatternUse;
use hubgate_wire::WordMatch;
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

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = SensitiveWordInput)]
#[serde(deny_unknown_fields)]
pub struct WordInput {
    /// Up to 256 characters; a regex up to 512 that does not match empty text.
    #[schema(min_length = 1)]
    pub word: String,
    #[serde(default = "contains")]
    #[schema(schema_with = match_types)]
    pub match_type: String,
    #[serde(default)]
    #[schema(max_length = 500)]
    pub description: String,
    #[serde(default = "super::yes")]
    pub enabled: bool,
}

pub type WordPatch = Patch<WordInput>;

/// How a word or a text-replacing request filter matches.
pub const MATCH_TYPES: &[&str] = &["contains", "exact", "regex"];

fn match_types() -> ObjectBuilder {
    openapi::one_of(MATCH_TYPES)
}

fn contains() -> String {
    "contains".to_string()
}

impl WordInput {
    pub fn validate(&self) -> Check {
        validate::one_of("match_type", &self.match_type, MATCH_TYPES)?;
        if self.match_type == "regex" {
            validate::regex("word", &self.word, PatternUse::SensitiveWord)?;
        } else {
            validate::text("word", &self.word, 256)?;
        }
        validate::optional_text("description", &self.description, 500)?;
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SensitiveWord {
    pub id: i64,
    pub word: String,
    #[schema(schema_with = match_types)]
    pub match_type: String,
    pub description: String,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

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
    let word = sqlx::query_as!(
        SensitiveWord,
        "UPDATE sensitive_words SET word = $1, match_type = $2, description = $3, enabled = $4, updated_at = now() \
         WHERE id = $5 RETURNING id, word, match_type, description, enabled, created_at, updated_at",
        input.word,
        input.match_type,
        input.description,
        input.enabled,
        id
    )
    .fetch_one(&mut *conn)
    .await?;
    bump_policy(conn, false).await?;
    Ok(word)
}

#[utoipa::path(
    post,
    path = "/api/v1/sensitive-words",
    tag = "sensitive-words",
    operation_id = "create_sensitive_word",
    summary = "Create a word",
    request_body = WordInput,
    responses(
        (status = 201, description = "The new word", body = SensitiveWord),
        BadBody,
        Conflict,
        AdminOnly,
    ),
    security(("adminBearer" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<WordInput>,
) -> ApiResult<(StatusCode, Json<SensitiveWord>)> {
    input.validate()?;
    let mut tx = state.pool.begin().await?;
    let word = sqlx::query_as!(
        SensitiveWord,
        "INSERT INTO sensitive_words (word, match_type, description, enabled) VALUES ($1, $2, $3, $4) \
         RETURNING id, word, match_type, description, enabled, created_at, updated_at",
        input.word,
        input.match_type,
        input.description,
        input.enabled
    )
    .fetch_one(&mut *tx)
    .await?;
    bump_policy(&mut tx, false).await?;
    tx.commit().await?;
    tracing::info!(word_id = word.id, "sensitive word created");
    Ok((StatusCode::CREATED, Json(word)))
}

#[utoipa::path(
    get,
    path = "/api/v1/sensitive-words",
    tag = "sensitive-words",
    operation_id = "list_sensitive_words",
    summary = "List words",
    responses((status = 200, description = "Every word", body = Vec<SensitiveWord>), AdminOnly),
    security(("adminBearer" = [])),
)]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<SensitiveWord>>> {
    let words = sqlx::query_as!(
        SensitiveWord,
        "SELECT id, word, match_type, description, enabled, created_at, updated_at \
         FROM sensitive_words ORDER BY id"
    )
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(words))
}

#[utoipa::path(
    get,
    path = "/api/v1/sensitive-words/{id}",
    tag = "sensitive-words",
    operation_id = "get_sensitive_word",
    summary = "Get a word",
    params(Id),
    responses((status = 200, description = "The word", body = SensitiveWord), NotFound, AdminOnly),
    security(("adminBearer" = [])),
)]
pub async fn get(State(state): State<AppState>, Id(id): Id) -> ApiResult<Json<SensitiveWord>> {
    Ok(Json(find(&state.pool, id, false).await?))
}

/// A word, or 404; `for_update` locks it.
async fn find<'e>(db: impl PgExecutor<'e>, id: i64, for_update: bool) -> ApiResult<SensitiveWord> {
    let row = if for_update {
        sqlx::query_as!(
            SensitiveWord,
            "SELECT id, word, match_type, description, enabled, created_at, updated_at \
             FROM sensitive_words WHERE id = $1 FOR UPDATE",
            id
        )
        .fetch_optional(db)
        .await?
    } else {
        sqlx::query_as!(
            SensitiveWord,
            "SELECT id, word, match_type, description, enabled, created_at, updated_at \
             FROM sensitive_words WHERE id = $1",
            id
        )
        .fetch_optional(db)
        .await?
    };
    row.ok_or(ApiError::NotFound)
}

#[utoipa::path(
    patch,
    path = "/api/v1/sensitive-words/{id}",
    tag = "sensitive-words",
    operation_id = "update_sensitive_word",
    summary = "Update a word (any subset of fields)",
    params(Id),
    request_body = WordPatch,
    responses(
        (status = 200, description = "The updated word", body = SensitiveWord),
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
) -> ApiResult<Json<SensitiveWord>> {
    let lock = async |conn: &mut PgConnection, id| find(conn, id, true).await;
    let word = crud::update(&state.pool, id, patch, lock, WordInput::validate, replace).await?;
    Ok(Json(word))
}

#[utoipa::path(
    delete,
    path = "/api/v1/sensitive-words/{id}",
    tag = "sensitive-words",
    operation_id = "delete_sensitive_word",
    summary = "Delete a word",
    params(Id),
    responses((status = 204, description = "Deleted"), NotFound, AdminOnly),
    security(("adminBearer" = [])),
)]
pub async fn delete(State(state): State<AppState>, Id(id): Id) -> ApiResult<StatusCode> {
    crud::delete(&state.pool, false, async |conn: &mut PgConnection| {
        sqlx::query!("DELETE FROM sensitive_words WHERE id = $1", id)
            .execute(conn)
            .await
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /api/v1/sensitive-words/test`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(as = SensitiveWordTestInput)]
#[serde(deny_unknown_fields)]
pub struct TestInput {
    /// Checked as the text of a user message.
    #[schema(max_length = 200000)]
    pub text: String,
}

/// Longest `text` the test box takes, in characters.
pub const MAX_TEST_CHARS: usize = 200_000;

fn match_types_or_null() -> ObjectBuilder {
    openapi::one_of_or_null(MATCH_TYPES)
}

/// What the filter would do with a user message holding the text.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = SensitiveWordTest)]
pub struct TestResult {
    /// A request with this text would be refused (400 `sensitive_word`).
    pub blocked: bool,
    /// The word that matched, as configured; null when none did.
    pub word: Option<String>,
    #[schema(schema_with = match_types_or_null)]
    pub match_type: Option<&'static str>,
    /// The matched span with some context (at most ~60 characters), as the
    /// refusal shows it.
    pub matched_text: Option<String>,
    pub word_id: Option<i64>,
}

#[utoipa::path(
    post,
    path = "/api/v1/sensitive-words/test",
    tag = "sensitive-words",
    operation_id = "test_sensitive_words",
    summary = "Check a text against the enabled words, with the filter's own matcher, as a user \
               message",
    description = "Compiles the enabled words as the policy snapshot ships them to the filter and \
                   runs the filter's sensitive-word guard on a request whose only user message is \
                   `text`: the first hit wins (contains words, then exact, then regexes). Nothing \
                   is written.",
    request_body = TestInput,
    responses(
        (status = 200, description = "The first word that matches, if any", body = TestResult),
        BadBody,
        AdminOnly,
    ),
    security(("adminBearer" = [])),
)]
pub async fn test(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<TestInput>,
) -> ApiResult<Json<TestResult>> {
    let chars = input.text.chars().count();
    if chars > MAX_TEST_CHARS {
        return Err(ApiError::validation(
            "text",
            format!("must be at most {MAX_TEST_CHARS} characters (got {chars})"),
        ));
    }
    let mut conn = state.pool.acquire().await?;
    let words = crate::internal::snapshot::sensitive_words(&mut conn).await?;
    drop(conn);
    let (compiled, _warnings) = SensitiveWords::compile(&words);
    let body = serde_json::to_vec(&serde_json::json!({
        "messages": [{ "role": "user", "content": input.text }],
    }))
    .map_err(anyhow::Error::new)?;
    let texts = user_texts(Endpoint::AnthropicMessages, &body).map_err(anyhow::Error::new)?;
    let Some(hit) = compiled.find(&texts) else {
        return Ok(Json(TestResult {
            blocked: false,
            word: None,
            match_type: None,
            matched_text: None,
            word_id: None,
        }));
    };
    // (word, match_type) is unique, and the hit names the word as configured.
    let word_id = words
        .iter()
        .find(|w| w.word == hit.word && w.match_type == hit.match_type)
        .map(|w| w.id);
    Ok(Json(TestResult {
        blocked: true,
        match_type: Some(match hit.match_type {
            WordMatch::Contains => "contains",
            WordMatch::Exact => "exact",
            WordMatch::Regex => "regex",
        }),
        word: Some(hit.word),
        matched_text: Some(hit.matched_text),
        word_id,
    }))
}
