//! `GET SNAPSHOT_PATH`: the versioned policy snapshot. With
//! `x-hubgate-snapshot-version: N` and N current, answers 304 without body.

use std::sync::Mutex;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hubgate_wire::{
    CircuitSettings, ClientGaVersion, Limits, ModelPrice, PolicySnapshot, Provider,
    ProviderTimeouts, RequestFilter, SensitiveWord, Settings, UnknownPathAction,
    SNAPSHOT_VERSION_HEADER,
};
use rust_decimal::Decimal;
use sqlx::types::Json as DbJson;
use sqlx::PgPool;

use super::wire_enum;
use crate::admin::providers::{self, Provider as ProviderRow};
use crate::app::AppState;
use crate::db;
use crate::errors::ApiResult;

/// The last serialized snapshot, keyed by version. Every change bumps the
/// version in the same transaction, so a version names one content.
#[derive(Default)]
pub struct Cache {
    last: Mutex<Option<(u64, Bytes)>>,
}

impl Cache {
    fn get(&self, version: u64) -> Option<Bytes> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.as_ref()
            .filter(|(v, _)| *v == version)
            .map(|(_, b)| b.clone())
    }

    fn put(&self, version: u64, body: Bytes) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_ref().is_none_or(|(v, _)| *v < version) {
            *last = Some((version, body));
        }
    }
}

pub async fn get(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let current = db::policy_state(&state.pool).await?;
    let current_version = current.version as u64;
    let held = headers
        .get(SNAPSHOT_VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if held == Some(current_version) {
        state.metrics.snapshot_not_modified.inc_by(1);
        return Ok(with_version(
            StatusCode::NOT_MODIFIED.into_response(),
            current_version,
        ));
    }
    let (version, body) = match state.snapshot_cache.get(current_version) {
        Some(body) => (current_version, body),
        None => {
            let snapshot = build(&state.pool).await?;
            let body = Bytes::from(serde_json::to_vec(&snapshot).map_err(anyhow::Error::new)?);
            state.snapshot_cache.put(snapshot.version, body.clone());
            (snapshot.version, body)
        }
    };
    state.metrics.snapshot_full.inc_by(1);
    let response = (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body),
    )
        .into_response();
    Ok(with_version(response, version))
}

fn with_version(mut response: Response, version: u64) -> Response {
    response
        .headers_mut()
        .insert(SNAPSHOT_VERSION_HEADER, HeaderValue::from(version));
    response
}

/// The enabled sensitive words, as the snapshot ships them (by id).
pub async fn sensitive_words(conn: &mut sqlx::PgConnection) -> anyhow::Result<Vec<SensitiveWord>> {
    sqlx::query!("SELECT id, word, match_type FROM sensitive_words WHERE enabled ORDER BY id")
        .fetch_all(conn)
        .await?
        .into_iter()
        .map(|w| {
            Ok(SensitiveWord {
                id: w.id,
                word: w.word,
                match_type: wire_enum("match_type", &w.match_type)?,
            })
        })
        .collect()
}

/// Reads the whole policy in one repeatable-read transaction, so the version
/// and the content always match.
pub async fn build(pool: &PgPool) -> anyhow::Result<PolicySnapshot> {
    let mut tx = pool.begin().await?;
    sqlx::query!("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let state = db::policy_state(&mut *tx).await?;

    let s = crate::admin::settings::load(&mut *tx).await?;
    let settings = Settings {
        enable_client_version_check: s.enable_client_version_check,
        intercept_anthropic_warmup_requests: s.intercept_anthropic_warmup_requests,
        timezone: s.timezone,
        unknown_path: wire_enum::<UnknownPathAction>("unknown_path", &s.unknown_path)?,
        locale: s.locale,
        max_provider_attempts: u8::try_from(s.max_provider_attempts)
            .unwrap_or(hubgate_wire::snapshot::DEFAULT_MAX_PROVIDER_ATTEMPTS),
    };

    let mut providers = providers::enabled(&mut *tx)
        .await?
        .into_iter()
        .map(wire_provider)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let resets = sqlx::query!(
        r#"SELECT id, circuit_reset_at AS "reset_at!" FROM providers
           WHERE enabled AND deleted_at IS NULL AND circuit_reset_at IS NOT NULL"#
    )
    .fetch_all(&mut *tx)
    .await?;
    for reset in resets {
        if let Some(p) = providers.iter_mut().find(|p| p.id == reset.id) {
            p.circuit.reset_at_ms = reset.reset_at.timestamp_millis();
        }
    }

    let prices = sqlx::query_as!(
        ModelPrice,
        "SELECT model, input_per_mtok, output_per_mtok, cache_write_5m_per_mtok, cache_write_1h_per_mtok, \
           cache_read_per_mtok FROM model_prices WHERE deleted_at IS NULL ORDER BY model"
    )
    .fetch_all(&mut *tx)
    .await?;

    let sensitive_words = sensitive_words(&mut tx).await?;

    let request_filters = sqlx::query!(
        r#"SELECT id, name, scope, action, match_type, target,
                  replacement AS "replacement: DbJson<serde_json::Value>", priority, binding, provider_ids,
                  group_tags
           FROM request_filters WHERE enabled ORDER BY priority, id"#
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|f| {
        Ok(RequestFilter {
            id: f.id,
            name: f.name,
            scope: wire_enum("scope", &f.scope)?,
            action: wire_enum("action", &f.action)?,
            match_type: match f.match_type {
                Some(m) => Some(wire_enum("match_type", &m)?),
                None => None,
            },
            target: f.target,
            replacement: f.replacement.map(|r| r.0),
            priority: f.priority,
            binding: wire_enum("binding", &f.binding)?,
            provider_ids: f.provider_ids,
            group_tags: f.group_tags,
        })
    })
    .collect::<anyhow::Result<Vec<_>>>()?;

    let client_versions = sqlx::query_as!(
        ClientGaVersion,
        "SELECT client_type, version FROM client_ga_versions ORDER BY client_type"
    )
    .fetch_all(&mut *tx)
    .await?;

    tx.commit().await?;
    Ok(PolicySnapshot {
        version: state.version as u64,
        key_epoch: state.key_epoch as u64,
        settings,
        providers,
        prices,
        sensitive_words,
        request_filters,
        client_versions,
    })
}

pub(crate) fn wire_limits(
    total: Option<Decimal>,
    five_hours: Option<Decimal>,
    five_hour_mode: &str,
    daily: Option<Decimal>,
    weekly: Option<Decimal>,
    monthly: Option<Decimal>,
    concurrent_sessions: Option<i32>,
) -> anyhow::Result<Limits> {
    Ok(Limits {
        limit_total_usd: total,
        limit_5h_usd: five_hours,
        limit_5h_mode: wire_enum("limit_5h_mode", five_hour_mode)?,
        limit_daily_usd: daily,
        limit_weekly_usd: weekly,
        limit_monthly_usd: monthly,
        limit_concurrent_sessions: concurrent_sessions.and_then(|n| u32::try_from(n).ok()),
    })
}

fn wire_provider(p: ProviderRow) -> anyhow::Result<Provider> {
    let limits = wire_limits(
        p.limit_total_usd,
        p.limit_5h_usd,
        &p.limit_5h_mode,
        p.limit_daily_usd,
        p.limit_weekly_usd,
        p.limit_monthly_usd,
        p.limit_concurrent_sessions,
    )?;
    let positive = |n: i32| u32::try_from(n).unwrap_or(0);
    Ok(Provider {
        id: p.id,
        name: p.name,
        provider_type: wire_enum("type", &p.provider_type)?,
        base_url: p.base_url,
        credential: p.credential,
        enabled: p.enabled,
        weight: positive(p.weight),
        priority: p.priority,
        cost_multiplier: p.cost_multiplier,
        group_tags: p.group_tags,
        allowed_models: p.allowed_models,
        model_redirects: p.model_redirects.0,
        limits,
        circuit: CircuitSettings {
            failure_threshold: positive(p.circuit_failure_threshold),
            open_seconds: positive(p.circuit_open_seconds),
            half_open_successes: positive(p.circuit_half_open_successes),
            // Filled from `circuit_reset_at` by `build`.
            reset_at_ms: 0,
        },
        timeouts: ProviderTimeouts {
            first_byte_ms: p.first_byte_timeout_ms.and_then(|n| u32::try_from(n).ok()),
            idle_ms: p.idle_timeout_ms.and_then(|n| u32::try_from(n).ok()),
        },
    })
}
