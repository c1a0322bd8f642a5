use std::time::Duration;

use hubgate_wire::{KeyResolveResponse, PolicySnapshot};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::json;

use crate::common::{event, ingest, spawn, spawn_with, TestApp};

async fn resolve(app: &TestApp, raw: &str) -> KeyResolveResponse {
    let (status, body) = app
        .internal_post(
            hubgate_wire::KEY_RESOLVE_PATH,
            json!({ "key_hash": hubgate_wire::hash_key(raw) }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_value(body).unwrap()
}

#[tokio::test]
async fn snapshot_is_versioned() {
    let app = spawn().await;
    let (status, body) = app.snapshot(None).await;
    assert_eq!(status, StatusCode::OK);
    let snap: PolicySnapshot = serde_json::from_value(body).unwrap();
    assert!(snap.providers.is_empty());
    assert!(
        snap.prices.iter().any(|p| p.model == "claude-sonnet-4-5"),
        "seed prices in the snapshot"
    );
    assert_eq!(snap.settings.timezone, "UTC");

    // Same version held → 304, no body; unknown/garbage version → 200.
    let (status, body) = app.snapshot(Some(snap.version)).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_null());
    let (status, _) = app.snapshot(Some(snap.version + 100)).await;
    assert_eq!(status, StatusCode::OK);

    // An admin write moves the version; the new snapshot carries the change.
    app.create_provider("p", "provider-secret-abcdefgh").await;
    app.post("/api/v1/sensitive-words", json!({ "word": "forbidden" }))
        .await;
    app.post(
        "/api/v1/sensitive-words",
        json!({ "word": "off", "enabled": false }),
    )
    .await;
    let (status, body) = app.snapshot(Some(snap.version)).await;
    assert_eq!(status, StatusCode::OK);
    let next: PolicySnapshot = serde_json::from_value(body).unwrap();
    assert!(next.version > snap.version);
    assert_eq!(
        next.key_epoch, snap.key_epoch,
        "provider writes leave the key epoch alone"
    );
    assert_eq!(next.providers.len(), 1);
    assert_eq!(next.providers[0].credential, "provider-secret-abcdefgh");
    assert_eq!(next.sensitive_words.len(), 1, "only enabled words");
    let (status, _) = app.snapshot(Some(next.version)).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);

    // Key writes bump the key epoch.
    let user = app.create_user("u").await;
    let (key, _) = app
        .create_key(user["id"].as_i64().unwrap(), json!({ "name": "k" }))
        .await;
    let (_, body) = app.snapshot(None).await;
    let before: PolicySnapshot = serde_json::from_value(body).unwrap();
    app.patch(
        &format!("/api/v1/keys/{}", key["id"]),
        json!({ "enabled": false }),
    )
    .await;
    let (_, body) = app.snapshot(Some(before.version)).await;
    let after: PolicySnapshot = serde_json::from_value(body).unwrap();
    assert_eq!(after.key_epoch, before.key_epoch + 1);
    assert_eq!(after.version, before.version + 1);
}

#[tokio::test]
async fn key_resolution() {
    let app = spawn().await;
    let unknown = resolve(&app, "sk-unknown-key-000000000000").await;
    assert!(unknown.key.is_none());

    let user = app
        .post(
            "/api/v1/users",
            json!({ "name": "erin", "allowed_models": ["claude-sonnet-4-5"], "rpm": 30, "limit_daily_usd": "5",
                    "daily_reset_mode": "rolling", "provider_group": "team-a" }),
        )
        .await
        .1;
    let uid = user["id"].as_i64().unwrap();
    let (key, raw) = app
        .create_key(
            uid,
            json!({ "name": "main", "limit_concurrent_sessions": 2 }),
        )
        .await;
    let kid = key["id"].as_i64().unwrap();

    let (_, epoch) = app.policy().await;
    let found = resolve(&app, &raw).await;
    assert_eq!(found.key_epoch, epoch as u64);
    let k = found.key.unwrap();
    assert_eq!(k.id, kid);
    assert_eq!(k.masked, hubgate_wire::mask_key(&raw));
    assert!(k.enabled);
    assert_eq!(k.limits.limit_concurrent_sessions, Some(2));
    assert_eq!(k.user.id, uid);
    assert_eq!(k.user.allowed_models, vec!["claude-sonnet-4-5".to_string()]);
    assert_eq!(k.user.rpm, Some(30));
    assert_eq!(k.user.limits.limit_daily_usd, Some(Decimal::new(5, 0)));
    assert_eq!(
        k.user.daily_reset_mode,
        hubgate_wire::DailyResetMode::Rolling
    );
    assert_eq!(k.user.provider_group.as_deref(), Some("team-a"));

    // Disabled keys and users are reported, not hidden.
    app.patch(&format!("/api/v1/keys/{kid}"), json!({ "enabled": false }))
        .await;
    let k = resolve(&app, &raw).await.key.unwrap();
    assert!(!k.enabled);
    app.patch(&format!("/api/v1/keys/{kid}"), json!({ "enabled": true }))
        .await;
    app.patch(&format!("/api/v1/users/{uid}"), json!({ "enabled": false }))
        .await;
    let k = resolve(&app, &raw).await.key.unwrap();
    assert!(k.enabled && !k.user.enabled);
    app.patch(&format!("/api/v1/users/{uid}"), json!({ "enabled": true }))
        .await;

    // Expired: reported with its expiry, then disabled in the background.
    let past = "2020-01-02T03:04:05Z";
    app.patch(
        &format!("/api/v1/keys/{kid}"),
        json!({ "expires_at": past }),
    )
    .await;
    let (_, epoch_before) = app.policy().await;
    let k = resolve(&app, &raw).await.key.unwrap();
    assert_eq!(k.expires_at_ms, Some(1_577_934_245_000));
    let mut disabled = false;
    for _ in 0..100 {
        let (_, body) = app.get(&format!("/api/v1/keys/{kid}")).await;
        if body["enabled"] == false {
            disabled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(disabled, "expired key was not disabled lazily");
    let (_, epoch_after) = app.policy().await;
    assert!(
        epoch_after > epoch_before,
        "lazy disable bumps the key epoch"
    );
    let k = resolve(&app, &raw).await.key.unwrap();
    assert!(!k.enabled);
    assert_eq!(k.expires_at_ms, Some(1_577_934_245_000));

    // Deleted keys, and keys of deleted users, are unknown.
    app.delete(&format!("/api/v1/keys/{kid}")).await;
    assert!(resolve(&app, &raw).await.key.is_none());
    let (_, raw2) = app.create_key(uid, json!({ "name": "second" })).await;
    assert!(resolve(&app, &raw2).await.key.is_some());
    app.delete(&format!("/api/v1/users/{uid}")).await;
    assert!(resolve(&app, &raw2).await.key.is_none());
}

#[tokio::test]
async fn event_ingestion_is_idempotent() {
    let app = spawn().await;
    let mut events: Vec<_> = (0..3).map(|i| event(&format!("evt-{i}"))).collect();
    events[0].user_id = Some(7);
    events[0].key_id = Some(70);
    events[1].user_id = Some(7);
    events[1].cost_usd = Decimal::new(125, 4);
    events[2].blocked_by = Some("sensitive_word".into());
    events[2].blocked_reason = Some(json!({ "word": "bad\u{0}", "match_type": "contains" }));
    events[2].error = Some("nul \u{0} byte".into());
    events[2].flags = vec!["usage_estimated".into()];

    let ack = ingest(&app, &events).await;
    assert_eq!((ack.accepted, ack.duplicates), (3, 0));
    let ack = ingest(&app, &events).await;
    assert_eq!((ack.accepted, ack.duplicates), (0, 3));
    // A batch mixing old and new events stores only the new ones.
    let mut mixed = events.clone();
    mixed.push(event("evt-3"));
    let ack = ingest(&app, &mixed).await;
    assert_eq!((ack.accepted, ack.duplicates), (1, 3));
    assert_eq!(app.count("message_request").await, 4);

    let (cost, requests): (Decimal, i64) = sqlx::query_as(
        "SELECT cost_usd, request_count FROM usage_rollup WHERE entity_type = 'user' AND entity_id = 7",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(cost, Decimal::new(185, 4), "each event counted once");
    assert_eq!(requests, 2);

    let (blocked, flags): (Option<serde_json::Value>, Vec<String>) = sqlx::query_as(
        "SELECT blocked_reason, flags FROM message_request WHERE event_id = 'evt-2'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(blocked.unwrap()["match_type"], "contains");
    assert_eq!(flags, vec!["usage_estimated".to_string()]);

    // Over-sized batches are refused whole.
    let big: Vec<_> = (0..1001).map(|i| event(&format!("big-{i}"))).collect();
    let (status, body) = app
        .internal_post(
            hubgate_wire::EVENTS_PATH,
            serde_json::to_value(hubgate_wire::EventBatch { events: big }).unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "events");
    assert_eq!(app.count("message_request").await, 4);

    // Batches may be far larger than admin bodies.
    let large: Vec<_> = (0..10)
        .map(|i| {
            let mut e = event(&format!("large-{i}"));
            e.error = Some("x".repeat(300_000));
            e
        })
        .collect();
    let ack = ingest(&app, &large).await;
    assert_eq!(ack.accepted, 10);
    let (status, _) = app.delete(&format!("/api/v1/model-prices/{}", 1)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    app.send(reqwest::Method::GET, "/metrics", None, None).await;

    let (_, metrics) = app.send(reqwest::Method::GET, "/metrics", None, None).await;
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(metrics.ends_with("# EOF\n"), "OpenMetrics text: {metrics}");
    assert!(
        metrics.contains("hubgate_cp_events_ingested_total 14"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hubgate_cp_events_duplicate_total 6"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hubgate_cp_http_requests_total{route=\"/internal/v1/events\",method=\"POST\",status=\"200\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hubgate_cp_http_requests_total{route=\"/api/v1/model-prices/{id}\",method=\"DELETE\",status=\"204\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "hubgate_cp_http_requests_total{route=\"/metrics\",method=\"GET\",status=\"200\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn client_ga_versions_come_from_recent_traffic() {
    // The job is driven by hand here; the background one would race it.
    let app = spawn_with(|c| c.background_jobs = false).await;
    let mut events = Vec::new();
    for (i, (user, ua)) in [
        (1, "claude-cli/2.0.5 (external, cli)"),
        (2, "claude-cli/2.0.5 (external, cli)"),
        (3, "claude-cli/2.1.0 (external, cli)"),
        (1, "GeminiCLI/0.22.5/gemini-3-pro-preview (darwin; arm64)"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut e = event(&format!("ua-{i}"));
        e.user_id = Some(user);
        e.user_agent = Some(ua.to_string());
        events.push(e);
    }
    ingest(&app, &events).await;
    let (_, body) = app.snapshot(None).await;
    let before: PolicySnapshot = serde_json::from_value(body).unwrap();
    assert!(before.client_versions.is_empty());

    assert!(
        hubgate_control_plane::background::refresh_client_versions(&app.pool)
            .await
            .unwrap()
    );
    let (status, body) = app.snapshot(Some(before.version)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a GA change is a new snapshot version"
    );
    let after: PolicySnapshot = serde_json::from_value(body).unwrap();
    assert_eq!(
        after.client_versions,
        vec![hubgate_wire::ClientGaVersion {
            client_type: "claude-cli".into(),
            version: "2.0.5".into()
        }]
    );
    // Admins read the same through the admin API.
    let (status, versions) = app.get("/api/v1/client-versions").await;
    assert_eq!(status, StatusCode::OK);
    let versions = versions.as_array().unwrap();
    assert_eq!(versions.len(), 1, "{versions:?}");
    assert_eq!(versions[0]["client_type"], "claude-cli");
    assert_eq!(versions[0]["version"], "2.0.5");
    assert_eq!(versions[0]["users"], 2);
    assert!(versions[0]["computed_at"].is_string());
    // Unchanged input → no new version.
    assert!(
        !hubgate_control_plane::background::refresh_client_versions(&app.pool)
            .await
            .unwrap()
    );
    let (status, _) = app.snapshot(Some(after.version)).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn odd_costs_and_times_are_repaired_and_flagged() {
    let app = spawn().await;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let day_ms = 24 * 3600 * 1000;
    let mut events: Vec<_> = (0..8).map(|i| event(&format!("odd-{i}"))).collect();
    for e in &mut events {
        e.user_id = Some(7);
    }
    events[0].cost_usd = Decimal::new(-5, 0);
    events[0].flags = vec!["usage_estimated".into()];
    events[1].cost_multiplier = Decimal::new(-1, 0);
    events[1].cost_usd = Decimal::new(-1, 3);
    events[2].started_at_ms = now_ms + 2 * day_ms;
    events[3].started_at_ms = 1_577_836_800_000 - 1; // 2019-12-31T23:59:59.999Z
    events[4].started_at_ms = i64::MIN;
    events[5].started_at_ms = now_ms - 30 * day_ms; // old but sane: kept
    events[6].started_at_ms = now_ms + 3_600_000; // clock skew: kept
                                                  // events[7]: an ordinary event.
    ingest(&app, &events).await;

    type Stored = (
        String,
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
        Decimal,
        Decimal,
        Vec<String>,
    );
    let rows: Vec<Stored> = sqlx::query_as(
        "SELECT event_id, started_at, received_at, cost_usd, cost_multiplier, flags \
         FROM message_request ORDER BY event_id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let row = |id: &str| rows.iter().find(|r| r.0 == id).unwrap().clone();

    let (_, _, _, cost, multiplier, flags) = row("odd-0");
    assert_eq!((cost, multiplier), (Decimal::ZERO, Decimal::ONE));
    assert_eq!(flags, vec!["usage_estimated", "invalid_cost"]);
    let (_, _, _, cost, multiplier, flags) = row("odd-1");
    assert_eq!((cost, multiplier), (Decimal::ZERO, Decimal::ZERO));
    assert_eq!(flags, vec!["invalid_cost"], "flagged once");
    for id in ["odd-2", "odd-3", "odd-4"] {
        let (_, started, received, _, _, flags) = row(id);
        assert_eq!(started, received, "{id}");
        assert_eq!(flags, vec!["invalid_started_at"], "{id}");
    }
    for (id, ms) in [
        ("odd-5", events[5].started_at_ms),
        ("odd-6", events[6].started_at_ms),
    ] {
        let (_, started, _, _, _, flags) = row(id);
        assert_eq!(started.timestamp_millis(), ms, "{id}");
        assert!(flags.is_empty(), "{id}: {flags:?}");
    }

    // Negative costs do not lower the rollup: six events of 0.006, two of 0.
    let (cost,): (Decimal,) = sqlx::query_as(
        "SELECT sum(cost_usd) FROM usage_rollup WHERE entity_type = 'user' AND entity_id = 7",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(cost, Decimal::new(36, 3));
    // A repaired started_at lands in the hour the event was received.
    let (far_future,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM usage_rollup WHERE bucket_start > now() + interval '2 hours'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(far_future, 0);
}

#[tokio::test]
async fn an_oversized_indexed_value_cannot_block_its_batch() {
    let app = spawn().await;
    let mut events: Vec<_> = (0..3).map(|i| event(&format!("long-{i}"))).collect();
    events[1].session_id = Some("s".repeat(7000));
    events[2].blocked_by = Some("b".repeat(5000));
    ingest(&app, &events).await;
    type Stored = (String, Option<String>, Option<String>, Vec<String>);
    let rows: Vec<Stored> = sqlx::query_as(
        "SELECT event_id, session_id, blocked_by, flags FROM message_request ORDER BY event_id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 3, "every event of the batch is stored");
    assert_eq!(rows[1].1.as_deref().map(str::len), Some(256));
    assert_eq!(rows[1].3, vec!["session_id_truncated"]);
    assert_eq!(rows[2].2.as_deref().map(str::len), Some(256));
    assert_eq!(rows[2].3, vec!["blocked_by_truncated"]);
}
