//! The audit log's daily partitions and its retention (migration
//! `0009_partitioned_audit.sql`): days are created a week ahead, days older
//! than `settings.audit_retention_days` are dropped whole, and event ids are
//! kept for deduplication two days past their receipt, quota leases a day
//! past their expiry. Run hourly by the
//! background jobs (once across replicas) and at startup. The usage and
//! request rollups are not touched: spend and the console's overview
//! outlive the rows.

use chrono::{DateTime, Days, NaiveDate, TimeDelta, Utc};
use sqlx::PgPool;

/// Days created ahead of today (UTC).
const DAYS_AHEAD: u64 = 7;
/// How long an event id is remembered after its receipt.
const EVENT_ID_DAYS: i64 = 2;

/// What one maintenance run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Maintained {
    pub created: i32,
    pub dropped: Vec<NaiveDate>,
    pub deleted_rows: u64,
}

impl Maintained {
    /// Says what changed, if anything.
    pub fn log(&self) {
        if self.created > 0 || !self.dropped.is_empty() || self.deleted_rows > 0 {
            tracing::info!(created = self.created, dropped = ?self.dropped, deleted_rows = self.deleted_rows, "audit partitions maintained");
        }
    }
}

/// Creates the daily partitions of `from..=to` that are missing (moving in
/// any rows the default partition holds for them).
pub async fn ensure_partitions(pool: &PgPool, from: NaiveDate, to: NaiveDate) -> sqlx::Result<i32> {
    sqlx::query_scalar!(
        r#"SELECT hubgate_ensure_audit_partitions($1, $2) AS "created!""#,
        from,
        to
    )
    .fetch_one(pool)
    .await
}

/// The partitions' days, oldest first.
pub async fn partition_days(pool: &PgPool) -> sqlx::Result<Vec<NaiveDate>> {
    let names = sqlx::query_scalar!(
        r#"SELECT c.relname::text AS "name!" FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = 'message_request'::regclass"#
    )
    .fetch_all(pool)
    .await?;
    let mut days: Vec<NaiveDate> = names
        .iter()
        .filter_map(|name| name.strip_prefix("message_request_"))
        .filter_map(|day| NaiveDate::parse_from_str(day, "%Y%m%d").ok())
        .collect();
    days.sort();
    Ok(days)
}

/// One maintenance run at `now`: partitions ahead, retention behind.
pub async fn maintain(pool: &PgPool, now: DateTime<Utc>) -> anyhow::Result<Maintained> {
    let today = now.date_naive();
    let created =
        ensure_partitions(pool, today - Days::new(1), today + Days::new(DAYS_AHEAD)).await?;
    let retention = sqlx::query_scalar!("SELECT audit_retention_days FROM settings")
        .fetch_one(pool)
        .await?;
    let cutoff = now - TimeDelta::days(i64::from(retention));
    let mut dropped = Vec::new();
    for day in partition_days(pool).await? {
        // A day goes once all of it is older than the cutoff.
        let end = day
            .succ_opt()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc());
        if end.is_some_and(|end| end <= cutoff) {
            let name = format!("message_request_{}", day.format("%Y%m%d"));
            sqlx::query(&format!("DROP TABLE {name}"))
                .execute(pool)
                .await?;
            dropped.push(day);
        }
    }
    let deleted_rows = sqlx::query!(
        "DELETE FROM message_request_default WHERE started_at < $1",
        cutoff
    )
    .execute(pool)
    .await?
    .rows_affected();
    sqlx::query!(
        "DELETE FROM audit_event_ids WHERE received_at < $1",
        now - TimeDelta::days(EVENT_ID_DAYS)
    )
    .execute(pool)
    .await?;
    // An expired lease holds no budget; a late event for it charges nothing.
    sqlx::query!(
        "DELETE FROM quota_leases WHERE expires_at < $1",
        now - TimeDelta::days(1)
    )
    .execute(pool)
    .await?;
    sqlx::query!(
        "DELETE FROM rate_shares WHERE expires_at < $1",
        now - TimeDelta::days(1)
    )
    .execute(pool)
    .await?;
    Ok(Maintained {
        created,
        dropped,
        deleted_rows,
    })
}
