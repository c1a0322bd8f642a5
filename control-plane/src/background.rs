//! Background jobs, off the request path: disabling expired users and keys,
//! deleting long-idle sessions, recomputing client GA versions (SPEC §2.5),
//! and the audit log's partitions and retention (`crate::retention`). With
//! several control-plane replicas on one database, each interval's run is
//! claimed in `job_runs` ([`claim`]): one replica runs it.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use sqlx::PgPool;
use tokio::task::JoinHandle;

use crate::app::AppState;
use crate::config::Config;
use crate::db::bump_policy;

pub struct Jobs(Vec<JoinHandle<()>>);

impl Jobs {
    pub fn abort(self) {
        for job in self.0 {
            job.abort();
        }
    }
}

pub fn spawn(state: AppState, config: &Config) -> Jobs {
    let sweep_every = config.expiry_sweep_interval;
    let versions_every = config.client_version_interval;
    let sweep_state = state.clone();
    let sweep = tokio::spawn(async move {
        let mut tick = tokio::time::interval(sweep_every);
        loop {
            // A wakeup (an expiry just set on this replica) runs at once.
            let due = tokio::select! {
                _ = tick.tick() => claimed(&sweep_state.pool, SWEEP_JOB, sweep_every).await,
                _ = sweep_state.expiry_wakeup.notified() => true,
            };
            if !due {
                continue;
            }
            match disable_expired(&sweep_state.pool).await {
                Ok(0) => {}
                Ok(n) => {
                    sweep_state.metrics.expired_disabled.inc_by(n);
                    tracing::info!(count = n, "disabled expired users/keys");
                }
                Err(err) => tracing::warn!(error = format!("{err:#}"), "expiry sweep failed"),
            }
            match delete_idle_sessions(&sweep_state.pool).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(count = n, "deleted idle sessions"),
                Err(err) => {
                    tracing::warn!(error = format!("{err:#}"), "session retention sweep failed")
                }
            }
            match crate::ui::delete_dead_sessions(&sweep_state.pool).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::debug!(count = n, "deleted expired or signed-out console sessions")
                }
                Err(err) => {
                    tracing::warn!(error = format!("{err:#}"), "console session sweep failed")
                }
            }
        }
    });
    let versions = periodic(
        state.pool.clone(),
        VERSIONS_JOB,
        versions_every,
        |pool| async move { refresh_client_versions(&pool).await.map(|_| ()) },
    );
    let audit = periodic(state.pool, AUDIT_JOB, AUDIT_EVERY, |pool| async move {
        crate::retention::maintain(&pool, chrono::Utc::now())
            .await
            .map(|done| done.log())
    });
    Jobs(vec![sweep, versions, audit])
}

/// Runs `job` every `every`, on the one replica that claims the interval;
/// a failed run is logged and the next interval tries again.
fn periodic<F, Fut>(pool: PgPool, job: &'static str, every: Duration, run: F) -> JoinHandle<()>
where
    F: Fn(PgPool) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if !claimed(&pool, job, every).await {
                continue;
            }
            if let Err(err) = run(pool.clone()).await {
                tracing::warn!(job, error = format!("{err:#}"), "background job failed");
            }
        }
    })
}

const SWEEP_JOB: &str = "expiry_sweep";
const VERSIONS_JOB: &str = "client_versions";
const AUDIT_JOB: &str = "audit_partitions";
const AUDIT_EVERY: Duration = Duration::from_secs(3600);

/// Claims this interval's run of `job` for this replica: true unless
/// another replica ran it less than 90 % of `every` ago (the slack lets
/// replicas' timers drift without skipping an interval). An unreachable
/// database claims nothing; the next tick tries again.
pub async fn claim(pool: &PgPool, job: &str, every: Duration) -> anyhow::Result<bool> {
    let claimed = sqlx::query_scalar!(
        "INSERT INTO job_runs (job, last_run_at) VALUES ($1, now()) \
         ON CONFLICT (job) DO UPDATE SET last_run_at = now() \
         WHERE job_runs.last_run_at <= now() - make_interval(secs => $2) \
         RETURNING job",
        job,
        every.as_secs_f64() * 0.9
    )
    .fetch_optional(pool)
    .await?;
    Ok(claimed.is_some())
}

async fn claimed(pool: &PgPool, job: &str, every: Duration) -> bool {
    match claim(pool, job, every).await {
        Ok(claimed) => claimed,
        Err(err) => {
            tracing::warn!(
                job,
                error = format!("{err:#}"),
                "cannot claim a background job run"
            );
            false
        }
    }
}

/// Marks expired but still enabled users and keys disabled (SPEC §2.1),
/// with `disabled_reason = 'expired'` (see `admin::after_patch`).
/// Returns how many rows changed; bumps version and key epoch if any did.
pub async fn disable_expired(pool: &PgPool) -> anyhow::Result<u64> {
    let mut tx = pool.begin().await?;
    let users = sqlx::query!(
        "UPDATE users SET enabled = false, disabled_reason = 'expired', updated_at = now() \
         WHERE enabled AND expires_at <= now() AND deleted_at IS NULL"
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let keys = sqlx::query!(
        "UPDATE keys SET enabled = false, disabled_reason = 'expired', updated_at = now() \
         WHERE enabled AND expires_at <= now() AND deleted_at IS NULL"
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if users + keys > 0 {
        bump_policy(&mut tx, true).await?;
    }
    tx.commit().await?;
    Ok(users + keys)
}

/// Sessions idle (no request) for longer than this are deleted.
pub const SESSION_RETENTION_HOURS: i32 = 24;

/// Deletes sessions whose last request is over
/// [`SESSION_RETENTION_HOURS`] old (run with the expiry sweep). Returns how
/// many were deleted.
pub async fn delete_idle_sessions(pool: &PgPool) -> anyhow::Result<u64> {
    let deleted = sqlx::query!(
        "DELETE FROM sessions WHERE last_seen_at < now() - make_interval(hours => $1)",
        SESSION_RETENTION_HOURS
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(deleted)
}

/// `major.minor.patch`.
pub type Semver = (u64, u64, u64);

/// Client type and `major.minor.patch` of a User-Agent, for the clients the
/// version check knows. Pre-release versions are ignored.
///
/// `claude-cli/2.1.197 (external, sdk-cli)` → (`claude-cli`, 2.1.197);
/// `claude-cli/… (external, claude-vscode)` → `claude-vscode`;
/// `codex_exec/…`, `codex_cli_rs/…` → `codex-cli`;
/// `GeminiCLI/…`, `GeminiCLI-tui/…` → `gemini-cli`; `factory-cli/…` → `factory-cli`.
pub fn parse_user_agent(ua: &str) -> Option<(&'static str, Semver)> {
    let product = ua.split_whitespace().next()?;
    let mut parts = product.split('/');
    let name = parts.next()?.to_ascii_lowercase();
    let version = parts.next()?;
    let client_type = if name == "claude-cli" {
        if ua.to_ascii_lowercase().contains("claude-vscode") {
            "claude-vscode"
        } else {
            "claude-cli"
        }
    } else if name.starts_with("codex") {
        "codex-cli"
    } else if name.starts_with("geminicli") {
        "gemini-cli"
    } else if name == "factory-cli" || name == "droid" {
        "factory-cli"
    } else {
        return None;
    };
    let mut numbers = version.split('.').map(|n| {
        if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
            n.parse::<u64>().ok()
        } else {
            None
        }
    });
    let semver = (numbers.next()??, numbers.next()??, numbers.next()??);
    if numbers.next().is_some() {
        return None;
    }
    Some((client_type, semver))
}

/// Per client type, the highest version used by at least `threshold`
/// distinct users.
pub fn ga_versions(
    seen: impl IntoIterator<Item = (i64, String)>,
    threshold: usize,
) -> BTreeMap<&'static str, (Semver, usize)> {
    let mut users: BTreeMap<(&'static str, Semver), BTreeSet<i64>> = BTreeMap::new();
    for (user_id, ua) in seen {
        if let Some((client_type, version)) = parse_user_agent(&ua) {
            users
                .entry((client_type, version))
                .or_default()
                .insert(user_id);
        }
    }
    let mut ga = BTreeMap::new();
    // Ascending order: later (higher) versions overwrite earlier ones.
    for ((client_type, version), who) in users {
        if who.len() >= threshold.max(1) {
            ga.insert(client_type, (version, who.len()));
        }
    }
    ga
}

/// Recomputes `client_ga_versions` from the last 7 days of requests; bumps the
/// policy version only when the result changed. Returns whether it did.
pub async fn refresh_client_versions(pool: &PgPool) -> anyhow::Result<bool> {
    let threshold = sqlx::query_scalar!("SELECT ga_threshold FROM settings")
        .fetch_one(pool)
        .await?;
    let seen = sqlx::query!(
        r#"SELECT DISTINCT user_id AS "user_id!", user_agent AS "user_agent!" FROM message_request
           WHERE started_at > now() - interval '7 days' AND user_id IS NOT NULL AND user_agent IS NOT NULL
             AND blocked_by IS NULL"#
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| (r.user_id, r.user_agent));
    let ga = ga_versions(seen, usize::try_from(threshold).unwrap_or(1));
    let wanted: BTreeMap<String, String> = ga
        .iter()
        .map(|(t, ((a, b, c), _))| (t.to_string(), format!("{a}.{b}.{c}")))
        .collect();

    let mut tx = pool.begin().await?;
    // Serialize concurrent refreshes (several control-plane replicas).
    sqlx::query!("SELECT pg_advisory_xact_lock(hashtext('hubgate.client_ga_versions'))")
        .execute(&mut *tx)
        .await?;
    let current: BTreeMap<String, String> =
        sqlx::query!("SELECT client_type, version FROM client_ga_versions")
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|r| (r.client_type, r.version))
            .collect();
    if current == wanted {
        return Ok(false);
    }
    sqlx::query!("DELETE FROM client_ga_versions")
        .execute(&mut *tx)
        .await?;
    for (client_type, ((a, b, c), users)) in &ga {
        sqlx::query!(
            "INSERT INTO client_ga_versions (client_type, version, users) VALUES ($1, $2, $3)",
            *client_type,
            format!("{a}.{b}.{c}"),
            i32::try_from(*users).unwrap_or(i32::MAX)
        )
        .execute(&mut *tx)
        .await?;
    }
    bump_policy(&mut tx, false).await?;
    tx.commit().await?;
    tracing::info!(versions = ?wanted, "client GA versions changed");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_clients() {
        assert_eq!(
            parse_user_agent("claude-cli/2.1.197 (external, sdk-cli)"),
            Some(("claude-cli", (2, 1, 197)))
        );
        assert_eq!(
            parse_user_agent("claude-cli/1.0.3 (external, claude-vscode)"),
            Some(("claude-vscode", (1, 0, 3)))
        );
        assert_eq!(
            parse_user_agent("codex_exec/0.169.0 (Linux; x86_64)"),
            Some(("codex-cli", (0, 169, 0)))
        );
        assert_eq!(
            parse_user_agent("codex_cli_rs/0.1.2"),
            Some(("codex-cli", (0, 1, 2)))
        );
        assert_eq!(
            parse_user_agent("GeminiCLI-tui/0.61.0/gemini-3-pro-preview (linux; x64; terminal)"),
            Some(("gemini-cli", (0, 61, 0)))
        );
        assert_eq!(
            parse_user_agent("GeminiCLI/0.22.5/gemini-3-pro-preview (darwin; arm64)"),
            Some(("gemini-cli", (0, 22, 5)))
        );
        assert_eq!(parse_user_agent("curl/8.0.1"), None);
        assert_eq!(parse_user_agent("claude-cli/2.1.0-beta.1"), None);
        assert_eq!(parse_user_agent("claude-cli"), None);
    }

    #[test]
    fn ga_needs_threshold_users_and_takes_the_highest() {
        let seen = vec![
            (1, "claude-cli/2.0.0 (external, cli)".to_string()),
            (2, "claude-cli/2.0.0 (external, cli)".to_string()),
            (1, "claude-cli/2.1.0 (external, cli)".to_string()),
            (3, "claude-cli/1.9.0 (external, cli)".to_string()),
            (4, "claude-cli/1.9.0 (external, cli)".to_string()),
            (1, "claude-cli/1.10.0 (external, cli)".to_string()),
        ];
        let ga = ga_versions(seen, 2);
        assert_eq!(ga.get("claude-cli"), Some(&((2, 0, 0), 2)));
        assert!(!ga.contains_key("codex-cli"));
    }
}
