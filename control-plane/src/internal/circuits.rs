//! `POST CIRCUITS_PATH`: an Envoy process's circuit states (SPEC §6), sent
//! from its root tick when one changed and at least every 30 s
//! (`hubgate_wire::circuits`). Stored per (provider, instance) in
//! `provider_circuits`; what the admin API shows.
//!
//! A state reported under an older reset marker than the provider's
//! (`providers.circuit_reset_at`) is ignored: the instance had not seen the
//! reset yet, and will report again once it has. Providers the instance no
//! longer reports (gone from its snapshot) lose their row; rows of
//! instances that stopped reporting are deleted after a day.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, TimeDelta, Utc};
use hubgate_wire::CircuitReport;

use crate::app::AppState;
use crate::errors::{ApiError, ApiResult};
use crate::extract::JsonBody;

/// More circuits than this in one report are refused (a snapshot holds
/// every enabled provider).
const MAX_CIRCUITS: usize = 10_000;

pub async fn report(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<CircuitReport>,
) -> ApiResult<StatusCode> {
    if req.instance.is_empty() || req.instance.len() > 200 {
        return Err(ApiError::validation("instance", "1 to 200 characters"));
    }
    if req.circuits.len() > MAX_CIRCUITS {
        return Err(ApiError::validation(
            "circuits",
            format!("at most {MAX_CIRCUITS} items"),
        ));
    }
    let now = Utc::now();
    let count = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    let c = &req.circuits;
    let ids: Vec<i64> = c.iter().map(|c| c.provider_id).collect();
    let states: Vec<String> = c.iter().map(|c| c.state.as_str().to_string()).collect();
    let failures: Vec<i32> = c.iter().map(|c| count(c.failures)).collect();
    let successes: Vec<i32> = c.iter().map(|c| count(c.successes)).collect();
    let open_until: Vec<Option<DateTime<Utc>>> = c
        .iter()
        .map(|c| c.open_until_ms.map(|t| on_our_clock(now, req.now_ms, t)))
        .collect();
    let markers: Vec<i64> = c.iter().map(|c| c.reset_at_ms).collect();
    let mut tx = state.pool.begin().await?;
    sqlx::query!(
        r#"INSERT INTO provider_circuits
             (provider_id, instance, state, failures, successes, open_until, instance_ms, reported_at)
           SELECT c.provider_id, $1, c.state, c.failures, c.successes, c.open_until, $2, $3
           FROM UNNEST($4::bigint[], $5::text[], $6::integer[], $7::integer[], $8::timestamptz[],
                       $9::bigint[]) AS c (provider_id, state, failures, successes, open_until, marker)
           JOIN providers p ON p.id = c.provider_id AND p.deleted_at IS NULL
           WHERE c.marker >= COALESCE((extract(epoch FROM p.circuit_reset_at) * 1000)::bigint, 0)
           ON CONFLICT (provider_id, instance) DO UPDATE SET
             state = EXCLUDED.state, failures = EXCLUDED.failures, successes = EXCLUDED.successes,
             open_until = EXCLUDED.open_until, instance_ms = EXCLUDED.instance_ms,
             reported_at = EXCLUDED.reported_at
           WHERE provider_circuits.instance_ms <= EXCLUDED.instance_ms"#,
        req.instance,
        req.now_ms,
        now,
        &ids,
        &states,
        &failures,
        &successes,
        &open_until as &[Option<DateTime<Utc>>],
        &markers,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "DELETE FROM provider_circuits \
         WHERE instance = $1 AND provider_id <> ALL($2) AND instance_ms <= $3",
        req.instance,
        &ids,
        req.now_ms
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "DELETE FROM provider_circuits WHERE reported_at < $1",
        now - TimeDelta::days(1)
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `at_ms` on the instance's clock (which read `instance_now_ms` when we
/// read `now`), on ours: skew between the clocks does not move it.
fn on_our_clock(now: DateTime<Utc>, instance_now_ms: i64, at_ms: i64) -> DateTime<Utc> {
    let ahead = at_ms
        .saturating_sub(instance_now_ms)
        .clamp(-86_400_000 * 365, 86_400_000 * 365);
    now + TimeDelta::milliseconds(ahead)
}
