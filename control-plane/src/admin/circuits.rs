//! Circuit breakers (SPEC §6) and provider eligibility:
//! - `GET /api/v1/providers/{id}/circuit`: the provider's circuit on every
//!   Envoy instance that reported it (`internal::circuits`), and a summary;
//! - `POST /api/v1/providers/{id}/circuit/reset`: closes it everywhere by
//!   moving the provider's reset marker, which the snapshot carries (every
//!   instance clears the circuit within a snapshot poll);
//! - `GET /api/v1/providers/eligibility`: for a user or key, a client API
//!   and a model, which providers a request could go to and why the others
//!   are ruled out, computed by the filter's own selection rules
//!   (`hubgate_core::guards::eligibility`) over the snapshot the filter gets.
//!
//! An instance reports at least every 30 s; one silent for
//! [`STALE_AFTER_SECS`] is shown as stale and left out of summaries and of
//! eligibility.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, TimeDelta, Utc};
use hubgate_core::guards::eligibility::{self, Ineligible};
use hubgate_core::snapshot::{CompiledProvider, CompiledSnapshot};
use hubgate_wire::{CircuitState, Limits, PolicySnapshot, ResolvedKey};
use serde::Serialize;
use utoipa::openapi::schema::ObjectBuilder;
use utoipa::{IntoParams, ToSchema};

use super::paging::parse;
use super::Id;
use crate::app::AppState;
use crate::db::bump_policy;
use crate::errors::{ApiError, ApiResult};
use crate::openapi::{self, AdminOnly, BadQuery, NotFound};
use crate::validate;

/// A report older than this is stale (three missed heartbeats).
pub const STALE_AFTER_SECS: i64 = 3 * hubgate_wire::CIRCUIT_REPORT_EVERY_MS / 1000;

/// One instance's circuit for the provider, as it last reported it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InstanceCircuit {
    /// The Envoy process (its id in leases and shares too).
    pub instance: String,
    pub state: CircuitState,
    /// Consecutive failures while closed.
    pub failures: i32,
    /// Successes in a row while half-open.
    pub successes: i32,
    /// When an open circuit half-opens (control plane clock).
    pub open_until: Option<DateTime<Utc>>,
    pub reported_at: DateTime<Utc>,
    /// Not reported for `STALE_AFTER_SECS` (90 s): the instance is gone or
    /// cannot reach the control plane; left out of `state`.
    pub stale: bool,
}

/// A provider's circuit across the Envoy instances.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Circuit {
    pub provider_id: i64,
    /// The worst state on any instance reporting currently (open, then
    /// half-open, then closed); null when none does.
    pub state: Option<CircuitState>,
    /// The current instances where it is open.
    pub open_on: Vec<String>,
    /// The last reset through the API (null: never).
    pub reset_at: Option<DateTime<Utc>>,
    /// Every instance that reported it, current and stale.
    pub instances: Vec<InstanceCircuit>,
}

struct Row {
    provider_id: i64,
    instance: String,
    state: String,
    failures: i32,
    successes: i32,
    open_until: Option<DateTime<Utc>>,
    reported_at: DateTime<Utc>,
}

fn circuit_state(text: &str) -> anyhow::Result<CircuitState> {
    crate::internal::wire_enum("state", text)
}

impl Row {
    fn instance_circuit(self, now: DateTime<Utc>) -> anyhow::Result<InstanceCircuit> {
        Ok(InstanceCircuit {
            state: circuit_state(&self.state)?,
            stale: self.reported_at < now - TimeDelta::seconds(STALE_AFTER_SECS),
            instance: self.instance,
            failures: self.failures,
            successes: self.successes,
            open_until: self.open_until,
            reported_at: self.reported_at,
        })
    }
}

async fn rows<'e>(
    db: impl sqlx::PgExecutor<'e>,
    provider_id: Option<i64>,
) -> sqlx::Result<Vec<Row>> {
    sqlx::query_as!(
        Row,
        "SELECT provider_id, instance, state, failures, successes, open_until, reported_at \
         FROM provider_circuits WHERE $1::bigint IS NULL OR provider_id = $1 \
         ORDER BY provider_id, instance",
        provider_id
    )
    .fetch_all(db)
    .await
}

fn severity(s: CircuitState) -> u8 {
    match s {
        CircuitState::Closed => 0,
        CircuitState::HalfOpen => 1,
        CircuitState::Open => 2,
    }
}

/// Each provider's circuit as `GET /api/v1/providers/{id}/circuit` sums it
/// up (`Circuit::state`): the worst state on any instance reporting
/// currently; providers no current instance reports are left out.
pub(crate) async fn current_states<'e>(
    db: impl sqlx::PgExecutor<'e>,
) -> ApiResult<BTreeMap<i64, CircuitState>> {
    let fresh = Utc::now() - TimeDelta::seconds(STALE_AFTER_SECS);
    let mut states: BTreeMap<i64, CircuitState> = BTreeMap::new();
    // As `Row::instance_circuit` counts stale: reported before `fresh`.
    for r in rows(db, None)
        .await?
        .into_iter()
        .filter(|r| r.reported_at >= fresh)
    {
        let state = circuit_state(&r.state)?;
        let worst = states.entry(r.provider_id).or_insert(state);
        if severity(state) > severity(*worst) {
            *worst = state;
        }
    }
    Ok(states)
}

async fn view(
    conn: &mut sqlx::PgConnection,
    id: i64,
    reset_at: Option<DateTime<Utc>>,
) -> ApiResult<Circuit> {
    let now = Utc::now();
    let instances = rows(&mut *conn, Some(id))
        .await?
        .into_iter()
        .map(|r| r.instance_circuit(now))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let current = || instances.iter().filter(|i| !i.stale);
    Ok(Circuit {
        provider_id: id,
        state: current().map(|i| i.state).max_by_key(|s| severity(*s)),
        open_on: current()
            .filter(|i| i.state == CircuitState::Open)
            .map(|i| i.instance.clone())
            .collect(),
        reset_at,
        instances,
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/providers/{id}/circuit",
    tag = "providers",
    operation_id = "get_provider_circuit",
    summary = "The provider's circuit breaker on each Envoy instance",
    params(Id),
    responses(
        (status = 200, description = "The circuit per instance, and the worst current state", body = Circuit),
        NotFound,
        AdminOnly,
    ),
    security(("adminBearer" = [])),
)]
pub async fn get(State(state): State<AppState>, Id(id): Id) -> ApiResult<Json<Circuit>> {
    let mut conn = state.pool.acquire().await?;
    let reset_at = sqlx::query_scalar!(
        "SELECT circuit_reset_at FROM providers WHERE id = $1 AND deleted_at IS NULL",
        id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(ApiError::NotFound)?;
    Ok(Json(view(&mut conn, id, reset_at).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/providers/{id}/circuit/reset",
    tag = "providers",
    operation_id = "reset_provider_circuit",
    summary = "Close the provider's circuit on every Envoy instance (they clear it when their next \
               snapshot poll brings the reset)",
    params(Id),
    responses(
        (status = 200, description = "The circuit after the reset: no instance has reported since", body = Circuit),
        NotFound,
        AdminOnly,
    ),
    security(("adminBearer" = [])),
)]
pub async fn reset(State(state): State<AppState>, Id(id): Id) -> ApiResult<Json<Circuit>> {
    let mut tx = state.pool.begin().await?;
    // Whole milliseconds (the snapshot's unit), and always later than the
    // previous marker.
    let reset_at = sqlx::query_scalar!(
        r#"UPDATE providers SET circuit_reset_at = GREATEST(date_trunc('milliseconds', now()),
             circuit_reset_at + interval '1 millisecond')
           WHERE id = $1 AND deleted_at IS NULL RETURNING circuit_reset_at AS "reset_at!""#,
        id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(ApiError::NotFound)?;
    // Reports made before an instance saw the reset are refused from now on.
    sqlx::query!("DELETE FROM provider_circuits WHERE provider_id = $1", id)
        .execute(&mut *tx)
        .await?;
    bump_policy(&mut tx, false).await?;
    let circuit = view(&mut tx, id, Some(reset_at)).await?;
    tx.commit().await?;
    tracing::info!(provider_id = id, "provider circuit reset");
    Ok(Json(circuit))
}

fn apis() -> ObjectBuilder {
    openapi::one_of(eligibility::APIS)
}

const REASONS: &[&str] = &[
    "not_enabled",
    "wrong_format",
    "not_in_group",
    "model_not_allowed",
    "circuit_open",
];

fn reasons() -> ObjectBuilder {
    openapi::one_of_or_null(REASONS)
}

fn provider_types() -> ObjectBuilder {
    openapi::one_of(super::providers::TYPES)
}

/// The client API asked about: `anthropic_messages` (/v1/messages),
/// `openai_chat` (/v1/chat/completions), `openai_responses` (/v1/responses),
/// `gemini`. Documentation only: the question is parsed against
/// `eligibility::APIS` (a unit test holds the two together).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum Api {
    AnthropicMessages,
    OpenaiChat,
    OpenaiResponses,
    Gemini,
}

/// The question; `user_id` or `key_id` (or both, the key's user).
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
struct Question {
    /// A user (its provider group and allowed models; no key's group).
    user_id: Option<i64>,
    /// A key: its provider group wins over its user's.
    key_id: Option<i64>,
    /// The model the client asks for.
    #[param(required = true, min_length = 1, max_length = 256)]
    model: String,
    #[param(inline, value_type = Api)]
    api: String,
    /// Count circuits as this Envoy instance reports them (one without a
    /// current report has none open); without it a circuit open on any
    /// current instance counts as open.
    instance: Option<String>,
}

impl Question {
    fn from_pairs(pairs: Vec<(String, String)>) -> Result<Question, ApiError> {
        let mut q = Question::default();
        let (mut model, mut api) = (None, None);
        for (name, value) in pairs {
            validate::no_nul(&name, &value)?;
            match name.as_str() {
                "user_id" => q.user_id = Some(parse(&name, &value)?),
                "key_id" => q.key_id = Some(parse(&name, &value)?),
                "model" => model = Some(value),
                "api" => api = Some(value),
                "instance" => q.instance = Some(value),
                _ => return Err(ApiError::validation(name, "unknown query parameter")),
            }
        }
        if q.user_id.is_none() && q.key_id.is_none() {
            return Err(ApiError::validation(
                "user_id",
                "user_id or key_id is required",
            ));
        }
        q.model = model.ok_or_else(|| ApiError::validation("model", "required"))?;
        validate::text("model", &q.model, 256)?;
        q.api = api.ok_or_else(|| ApiError::validation("api", "required"))?;
        validate::one_of("api", &q.api, eligibility::APIS)?;
        if let Some(instance) = &q.instance {
            validate::text("instance", instance, 200)?;
        }
        Ok(q)
    }
}

/// One provider's part in the answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProviderEligibility {
    pub provider_id: i64,
    pub name: String,
    #[schema(schema_with = provider_types)]
    #[serde(rename = "type")]
    pub provider_type: String,
    pub priority: i32,
    pub weight: u32,
    pub eligible: bool,
    /// The first of the selection's checks it fails, in their order:
    /// enabled, format (type), group, allowed models, circuit; null when
    /// eligible.
    #[schema(schema_with = reasons)]
    pub reason: Option<&'static str>,
    /// The reason in words; null when eligible.
    pub detail: Option<String>,
    /// The current instances where its circuit is open (whatever the reason).
    pub circuit_open_on: Vec<String>,
    /// The model it would be sent: the requested one after its redirects.
    pub upstream_model: String,
    /// In the tier requests go to (the eligible providers of the lowest priority).
    pub in_tier: bool,
    /// The chance a request goes to it: its weight over its tier's (0 outside it).
    pub probability: f64,
}

/// Which providers a request could go to, and why not the others.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Eligibility {
    pub user_id: i64,
    pub key_id: Option<i64>,
    #[schema(schema_with = apis)]
    pub api: String,
    pub model: String,
    /// The instance whose circuits count (null: open on any current one).
    pub instance: Option<String>,
    /// The provider type the API needs.
    #[schema(schema_with = provider_types)]
    pub format: String,
    /// The group the key resolves to: its own, else its user's, else `default`.
    pub group: String,
    /// The user's allowed_models refuse the model: the request gets 400
    /// `model_not_allowed` before any provider is chosen (this message).
    pub model_refused: Option<String>,
    /// Priority of the tier requests go to; null when no provider is eligible.
    pub tier: Option<i32>,
    /// When no provider is eligible: the 503 `no_provider_available` message a
    /// request gets.
    pub unavailable: Option<String>,
    /// Every live provider, by id.
    pub providers: Vec<ProviderEligibility>,
}

#[utoipa::path(
    get,
    path = "/api/v1/providers/eligibility",
    tag = "providers",
    operation_id = "provider_eligibility",
    summary = "Which providers a user's or key's request for a model could go to, and why not the \
               others (the filter's selection rules; sticky sessions aside)",
    params(Question),
    responses(
        (status = 200, description = "Each provider's eligibility", body = Eligibility),
        BadQuery,
        AdminOnly,
    ),
    security(("adminBearer" = [])),
)]
pub async fn eligibility(
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult<Json<Eligibility>> {
    let Query(pairs) = query.map_err(|e| ApiError::validation("", e.body_text()))?;
    let q = Question::from_pairs(pairs)?;
    let key = who(&state, &q).await?;
    let now = Utc::now();
    let circuits = rows(&state.pool, None).await?;
    let fresh = now - TimeDelta::seconds(STALE_AFTER_SECS);
    let mut open_on: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for r in circuits.iter().filter(|r| r.reported_at > fresh) {
        if circuit_state(&r.state)? == CircuitState::Open {
            open_on
                .entry(r.provider_id)
                .or_default()
                .push(r.instance.clone());
        }
    }
    let counts_open = |p: &CompiledProvider| {
        open_on
            .get(&p.provider.id)
            .is_some_and(|on| match &q.instance {
                Some(instance) => on.contains(instance),
                None => !on.is_empty(),
            })
    };

    // The providers exactly as the filter's snapshot has them.
    let policy = crate::internal::snapshot::build(&state.pool).await?;
    let (snapshot, _) = CompiledSnapshot::compile(PolicySnapshot {
        providers: policy.providers,
        ..Default::default()
    });
    let (endpoint, dialect) =
        eligibility::api(&q.api).ok_or_else(|| ApiError::validation("api", "unknown API"))?;
    let e = eligibility::explain(
        &snapshot,
        &key,
        endpoint,
        dialect,
        Some(&q.model),
        counts_open,
    );
    let format = type_name(e.format);
    let mut providers: Vec<ProviderEligibility> = snapshot
        .providers
        .iter()
        .zip(&e.verdicts)
        .map(|(p, v)| {
            let p = &p.provider;
            let on = open_on.get(&p.id).cloned().unwrap_or_default();
            ProviderEligibility {
                provider_id: p.id,
                name: p.name.clone(),
                provider_type: type_name(p.provider_type),
                priority: p.priority,
                weight: p.weight,
                eligible: v.reason.is_none(),
                reason: v.reason.map(Ineligible::as_str),
                detail: v.reason.map(|r| {
                    // Where it counted as open: the instance asked about, else all.
                    let counted: Vec<String> = match &q.instance {
                        Some(instance) => vec![instance.clone()],
                        None => on.clone(),
                    };
                    detail(r, p, &format, &e.group, &counted)
                }),
                circuit_open_on: on,
                upstream_model: v.upstream_model.clone().unwrap_or_default(),
                in_tier: v.in_tier,
                probability: v.probability,
            }
        })
        .collect();
    // Disabled providers are not in the snapshot.
    let disabled = sqlx::query!(
        "SELECT id, name, type AS provider_type, priority, weight FROM providers \
         WHERE NOT enabled AND deleted_at IS NULL"
    )
    .fetch_all(&state.pool)
    .await?;
    for p in disabled {
        providers.push(ProviderEligibility {
            circuit_open_on: open_on.get(&p.id).cloned().unwrap_or_default(),
            provider_id: p.id,
            name: p.name,
            provider_type: p.provider_type,
            priority: p.priority,
            weight: u32::try_from(p.weight).unwrap_or(0),
            eligible: false,
            reason: Some(Ineligible::NotEnabled.as_str()),
            detail: Some("disabled".to_string()),
            upstream_model: q.model.clone(),
            in_tier: false,
            probability: 0.0,
        });
    }
    providers.sort_by_key(|p| p.provider_id);
    Ok(Json(Eligibility {
        user_id: key.user.id,
        key_id: q.key_id,
        api: q.api,
        model: q.model,
        instance: q.instance,
        format,
        group: e.group,
        model_refused: e.model_refused,
        tier: e.tier,
        unavailable: e.unavailable,
        providers,
    }))
}

fn type_name(t: hubgate_wire::ProviderType) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn detail(
    reason: Ineligible,
    p: &hubgate_wire::Provider,
    format: &str,
    group: &str,
    open_on: &[String],
) -> String {
    match reason {
        Ineligible::NotEnabled => "disabled".to_string(),
        Ineligible::WrongFormat => format!(
            "its type is `{}`; this API needs `{format}`",
            type_name(p.provider_type)
        ),
        Ineligible::NotInGroup if p.group_tags.is_empty() => {
            format!("not in the group `{group}` (it has no group tags: only `default` and `*`)")
        }
        Ineligible::NotInGroup => format!(
            "not in the group `{group}` (its groups: {})",
            p.group_tags.join(", ")
        ),
        Ineligible::ModelNotAllowed => format!(
            "the model is not among its allowed models: {}",
            p.allowed_models.join(", ")
        ),
        Ineligible::CircuitOpen => format!("circuit open on {}", open_on.join(", ")),
    }
}

/// The key asked about, or for a user alone, that user with a key of no
/// group of its own (the user's group applies).
async fn who(state: &AppState, q: &Question) -> ApiResult<ResolvedKey> {
    if let Some(key_id) = q.key_id {
        let key = crate::internal::keys::resolve_id(&state.pool, key_id)
            .await?
            .ok_or_else(|| ApiError::validation("key_id", "no such key"))?;
        if q.user_id.is_some_and(|u| u != key.user.id) {
            return Err(ApiError::validation(
                "key_id",
                format!("belongs to user {}, not to user_id", key.user.id),
            ));
        }
        return Ok(key);
    }
    let user_id = q.user_id.unwrap_or_default();
    let user = match super::users::find(&state.pool, user_id, false).await {
        Ok(user) => user,
        Err(ApiError::NotFound) => return Err(ApiError::validation("user_id", "no such user")),
        Err(err) => return Err(err),
    };
    Ok(ResolvedKey {
        id: 0,
        name: String::new(),
        masked: String::new(),
        enabled: true,
        expires_at_ms: None,
        can_login_web_ui: false,
        limits: Limits::default(),
        provider_group: None,
        user: crate::internal::keys::resolved_user(user)?,
    })
}
