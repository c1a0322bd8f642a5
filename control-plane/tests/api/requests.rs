use reqwest::StatusCode;

use crate::common::{assert_error, event, event_ids as ids, ingest, spawn_with};

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

#[tokio::test]
async fn audit_log_filters_and_pages() {
    // Fixed times, long past the default retention: no retention sweep.
    let app = spawn_with(|c| c.background_jobs = false).await;
    // e0 is the oldest, e9 the newest; one minute apart.
    let events: Vec<_> = (0..10)
        .map(|i| {
            let mut e = event(&format!("e{i}"));
            e.started_at_ms = T0 + i * 60_000;
            e.user_id = Some(if i % 2 == 0 { 1 } else { 2 });
            e.key_id = Some(if i < 5 { 10 } else { 20 });
            e.key_masked = Some("sk-…abcd".into());
            if i == 3 || i == 7 {
                e.status = 400;
                e.blocked_by = Some("model_not_allowed".into());
            }
            e
        })
        .collect();
    ingest(&app, &events).await;

    let (status, page) = app.get("/api/v1/requests").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["total"], 10);
    assert_eq!(page["page"], 1);
    assert_eq!(page["page_size"], 50);
    assert_eq!(
        ids(&page),
        (0..10).rev().map(|i| format!("e{i}")).collect::<Vec<_>>(),
        "newest first"
    );
    let first = &page["items"][0];
    assert_eq!(first["started_at"], "2026-01-01T00:09:00Z");
    assert_eq!(first["cost_usd"], "0.006");
    assert_eq!(first["input_tokens"], 1000);
    assert_eq!(first["request_id"], "req-e9");

    let (_, page) = app.get("/api/v1/requests?user_id=1").await;
    assert_eq!(ids(&page), ["e8", "e6", "e4", "e2", "e0"]);
    let (_, page) = app.get("/api/v1/requests?key_id=20&user_id=2").await;
    assert_eq!(ids(&page), ["e9", "e7", "e5"]);
    let (_, page) = app.get("/api/v1/requests?status=400").await;
    assert_eq!(ids(&page), ["e7", "e3"]);
    let (_, page) = app
        .get("/api/v1/requests?blocked_by=model_not_allowed&key_id=10")
        .await;
    assert_eq!(ids(&page), ["e3"]);
    let (_, page) = app
        .get("/api/v1/requests?from=2026-01-01T00:02:00Z&to=2026-01-01T00:05:00Z")
        .await;
    assert_eq!(
        ids(&page),
        ["e4", "e3", "e2"],
        "from inclusive, to exclusive"
    );
    let (_, page) = app
        .get("/api/v1/requests?from=2026-01-01T09:02:00%2B09:00")
        .await;
    assert_eq!(ids(&page).len(), 8, "offsets are honoured");

    // Pagination.
    let (_, page) = app.get("/api/v1/requests?page_size=4&page=2").await;
    assert_eq!(page["total"], 10);
    assert_eq!(ids(&page), ["e5", "e4", "e3", "e2"]);
    let (_, page) = app.get("/api/v1/requests?page_size=4&page=3").await;
    assert_eq!(ids(&page), ["e1", "e0"]);
    let (_, page) = app.get("/api/v1/requests?page_size=4&page=4").await;
    assert!(ids(&page).is_empty());
    assert_eq!(page["total"], 10);

    for (query, field) in [
        ("page_size=501", "page_size"),
        ("page_size=0", "page_size"),
        ("page=0", "page"),
        ("from=yesterday", "from"),
        ("to=2026-01-01", "to"),
        ("user_id=abc", "user_id"),
        ("colour=blue", "colour"),
    ] {
        let (status, body) = app.get(&format!("/api/v1/requests?{query}")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_error(&body, "validation_failed", Some(field));
    }
    let (status, page) = app.get("/api/v1/requests?page_size=500").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["page_size"], 500);
}
