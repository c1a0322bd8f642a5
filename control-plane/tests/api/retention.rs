use chrono::{DateTime, Days, NaiveDate, TimeDelta, Utc};
use hubgate_control_plane::retention::{ensure_partitions, maintain, partition_days};
use reqwest::StatusCode;
use serde_json::json;

use crate::common::{event, ingest, spawn_with, TestApp};

/// A fixed clock: 2026-06-15T12:00:00Z.
fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-06-15T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// Which table holds each stored event, by event id.
async fn homes(app: &TestApp) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT event_id, tableoid::regclass::text FROM message_request ORDER BY event_id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn days_are_created_ahead_and_rows_find_their_day() {
    let app = spawn_with(|c| c.background_jobs = false).await;
    let done = maintain(&app.pool, now()).await.unwrap();
    assert_eq!(done.created, 9, "from yesterday to a week ahead");
    let days = partition_days(&app.pool).await.unwrap();
    for d in ["2026-06-14", "2026-06-15", "2026-06-22"] {
        assert!(days.contains(&day(d)), "{d} in {days:?}");
    }
    assert_eq!(maintain(&app.pool, now()).await.unwrap().created, 0);

    // A day without a partition goes to the default one, and moves to its
    // own day's when that is created.
    let mut old = event("old");
    old.started_at_ms = now().timestamp_millis() - TimeDelta::days(30).num_milliseconds();
    let mut new = event("new");
    new.started_at_ms = now().timestamp_millis();
    ingest(&app, &[old, new]).await;
    let home = homes(&app).await;
    assert_eq!(home[0], ("new".into(), "message_request_20260615".into()));
    assert_eq!(home[1], ("old".into(), "message_request_default".into()));
    ensure_partitions(&app.pool, day("2026-05-16"), day("2026-05-16"))
        .await
        .unwrap();
    assert_eq!(
        homes(&app).await[1],
        ("old".into(), "message_request_20260516".into())
    );
}

#[tokio::test]
async fn retention_drops_whole_days_and_usage_outlives_them() {
    let app = spawn_with(|c| c.background_jobs = false).await;
    let (status, body) = app
        .patch("/api/v1/settings", json!({"audit_retention_days": 30}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["audit_retention_days"], 30);
    let user = app.create_user("alice").await["id"].as_i64().unwrap();
    ensure_partitions(&app.pool, day("2026-05-01"), day("2026-06-20"))
        .await
        .unwrap();
    // 40, 31 and 29 days old, and today; one more 45 days old in no day's
    // partition (the default one).
    let ages = [40, 31, 29, 0, 45];
    let events: Vec<_> = ages
        .iter()
        .map(|age| {
            let mut e = event(&format!("age-{age}"));
            e.user_id = Some(user);
            e.started_at_ms = now().timestamp_millis() - TimeDelta::days(*age).num_milliseconds();
            e
        })
        .collect();
    sqlx::query("DROP TABLE message_request_20260501")
        .execute(&app.pool)
        .await
        .unwrap();
    ingest(&app, &events).await;
    assert_eq!(app.count("message_request").await, 5);

    let done = maintain(&app.pool, now()).await.unwrap();
    // Days ending at or before 2026-05-16T12:00Z go: up to the 15th.
    assert_eq!(done.dropped.first(), Some(&day("2026-05-02")));
    assert_eq!(done.dropped.last(), Some(&day("2026-05-15")));
    assert_eq!(done.deleted_rows, 1, "the default partition's old row");
    let kept: Vec<String> = homes(&app).await.into_iter().map(|(id, _)| id).collect();
    // 31 days old is on the 15th of May: dropped with its day.
    assert_eq!(kept, ["age-0", "age-29"]);
    assert!(partition_days(&app.pool)
        .await
        .unwrap()
        .contains(&day("2026-05-16")));

    // The usage rollup keeps what the rows no longer show.
    let (_, usage) = app.get(&format!("/api/v1/usage/users/{user}")).await;
    let total = usage["windows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["limit_type"] == "usd_total")
        .unwrap()["spent_usd"]
        .clone();
    assert_eq!(total, "0.030", "{usage}");

    // Event ids are forgotten two days after receipt, not before.
    let (remembered,): (i64,) = sqlx::query_as("SELECT count(*) FROM audit_event_ids")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(remembered, 5);
    maintain(&app.pool, Utc::now() + Days::new(3))
        .await
        .unwrap();
    let (remembered,): (i64,) = sqlx::query_as("SELECT count(*) FROM audit_event_ids")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(remembered, 0);
}

#[tokio::test]
async fn retention_is_validated() {
    let app = spawn_with(|c| c.background_jobs = false).await;
    for bad in [json!(0), json!(3651), json!("ninety")] {
        let (status, body) = app
            .patch("/api/v1/settings", json!({"audit_retention_days": bad}))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["field"], "audit_retention_days", "{body}");
    }
    let (_, settings) = app.get("/api/v1/settings").await;
    assert_eq!(settings["audit_retention_days"], 90);
}
