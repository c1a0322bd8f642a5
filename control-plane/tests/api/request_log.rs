//! The audit log for the console: users read their own rows only (list,
//! detail, export); the model filter; one row with its cost breakdown; the
//! CSV export; the capped count.

use hubgate_wire::CostBreakdown;
use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use serde_json::json;

use crate::common::{assert_error, event, event_ids as ids, ingest, spawn, TestApp, ADMIN_TOKEN};

/// The row id of an event.
async fn row_id(app: &TestApp, event_id: &str) -> i64 {
    sqlx::query_scalar("SELECT id FROM message_request WHERE event_id = $1")
        .bind(event_id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

struct People {
    alice: i64,
    alice_key: i64,
    /// Alice's key that may sign in to the console.
    alice_raw: String,
    bob: i64,
    bob_key: i64,
}

/// Alice and Bob, three requests each, a second apart: a0, b1, … b5.
async fn people(app: &TestApp) -> People {
    let alice = app.create_user("alice").await["id"].as_i64().unwrap();
    let bob = app.create_user("bob").await["id"].as_i64().unwrap();
    let (key, alice_raw) = app
        .create_key(alice, json!({ "name": "web", "can_login_web_ui": true }))
        .await;
    let alice_key = key["id"].as_i64().unwrap();
    let (key, _) = app.create_key(bob, json!({ "name": "b" })).await;
    let bob_key = key["id"].as_i64().unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let events: Vec<_> = (0..6)
        .map(|i| {
            let (user, key, name) = if i % 2 == 0 {
                (alice, alice_key, "a")
            } else {
                (bob, bob_key, "b")
            };
            let mut e = event(&format!("{name}{i}"));
            e.user_id = Some(user);
            e.key_id = Some(key);
            e.session_id = Some(format!("s-{name}"));
            e.started_at_ms = now - 6000 + i * 1000;
            e
        })
        .collect();
    ingest(app, &events).await;
    People {
        alice,
        alice_key,
        alice_raw,
        bob,
        bob_key,
    }
}

#[tokio::test]
async fn users_read_only_their_own_requests() {
    let app = spawn().await;
    let p = people(&app).await;
    let as_alice = |path: String| {
        let app = &app;
        let raw = p.alice_raw.clone();
        async move { app.send(Method::GET, &path, Some(&raw), None).await }
    };

    let (status, page) = as_alice("/api/v1/requests".into()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(ids(&page), ["a4", "a2", "a0"]);
    assert_eq!(page["total"], 3);
    let (_, page) = as_alice(format!("/api/v1/requests?user_id={}", p.alice)).await;
    assert_eq!(ids(&page), ["a4", "a2", "a0"]);
    let (status, body) = as_alice(format!("/api/v1/requests?user_id={}", p.bob)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&body, "forbidden", None);
    let (status, page) = as_alice(format!("/api/v1/requests?key_id={}", p.bob_key)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["total"], 0, "another user's key: no rows");
    let (_, page) = as_alice(format!("/api/v1/requests?key_id={}", p.alice_key)).await;
    assert_eq!(page["total"], 3);

    // One row: their own only; anyone else's is not found.
    let own = row_id(&app, "a2").await;
    let (status, row) = as_alice(format!("/api/v1/requests/{own}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(row["event_id"], "a2");
    let other = row_id(&app, "b3").await;
    let (status, body) = as_alice(format!("/api/v1/requests/{other}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found", None);
    let (status, row) = app.get(&format!("/api/v1/requests/{other}")).await;
    assert_eq!(
        (status, row["event_id"].as_str()),
        (StatusCode::OK, Some("b3"))
    );

    // The export too.
    let (status, csv) = as_alice("/api/v1/requests/export.csv".into()).await;
    assert_eq!(status, StatusCode::OK);
    let lines: Vec<&str> = csv.as_str().unwrap().lines().collect();
    assert_eq!(lines.len(), 4, "header and Alice's three rows");
    assert!(lines[1..].iter().all(|l| l.contains(",a")), "{lines:?}");
    let (status, _) = as_alice(format!("/api/v1/requests/export.csv?user_id={}", p.bob)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Admins see everyone; a key that may not sign in to the console nothing.
    let (_, page) = app.get("/api/v1/requests").await;
    assert_eq!(page["total"], 6);
    let (_, plain) = app.create_key(p.alice, json!({ "name": "cli" })).await;
    for path in [
        "/api/v1/requests".to_string(),
        format!("/api/v1/requests/{own}"),
        "/api/v1/requests/export.csv".to_string(),
    ] {
        let (status, _) = app.send(Method::GET, &path, Some(&plain), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        let (status, _) = app.send(Method::GET, &path, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test]
async fn the_model_filter_ignores_case_and_matches_either_model() {
    let app = spawn().await;
    let mut events = Vec::new();
    for (id, original, upstream) in [
        (
            "m1",
            Some("Claude-Sonnet-4-5"),
            Some("claude-sonnet-4-5-20250929"),
        ),
        ("m2", Some("sonnet"), Some("claude-sonnet-4-5")),
        ("m3", Some("gpt-5"), Some("gpt-5")),
        ("m4", None, None),
    ] {
        let mut e = event(id);
        e.original_model = original.map(str::to_string);
        e.upstream_model = upstream.map(str::to_string);
        events.push(e);
    }
    ingest(&app, &events).await;
    for (model, want) in [
        ("claude-sonnet-4-5", vec!["m1", "m2"]),
        ("CLAUDE-SONNET-4-5-20250929", vec!["m1"]),
        ("Sonnet", vec!["m2"]),
        ("claude", vec![]),
        ("gpt-5", vec!["m3"]),
    ] {
        let (status, page) = app.get(&format!("/api/v1/requests?model={model}")).await;
        assert_eq!(status, StatusCode::OK);
        let mut got = ids(&page);
        got.sort();
        assert_eq!(got, want, "{model}");
        assert_eq!(page["total"], want.len() as i64);
    }
    for query in ["model=", "model=%20", "model=a%0Ab"] {
        let (status, body) = app.get(&format!("/api/v1/requests?{query}")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_error(&body, "validation_failed", Some("model"));
    }
}

/// The list reads only the hours in which a filtered model occurs (per the
/// request rollup): rows at both ends of that range are found, a model in no
/// hour matches nothing, and the other filters still apply.
#[tokio::test]
async fn a_model_is_looked_for_in_the_hours_it_occurs() {
    let app = spawn().await;
    let now = chrono::Utc::now();
    let mut events = Vec::new();
    for (id, original, upstream, minutes_ago) in [
        ("old", "rare", "rare-upstream", 3 * 24 * 60 + 59),
        ("new", "sonnet", "RARE", 1),
        ("between", "common", "common", 24 * 60),
        ("oldest", "common", "common", 5 * 24 * 60),
    ] {
        let mut e = event(id);
        e.original_model = Some(original.to_string());
        e.upstream_model = Some(upstream.to_string());
        e.started_at_ms = (now - chrono::TimeDelta::minutes(minutes_ago)).timestamp_millis();
        events.push(e);
    }
    ingest(&app, &events).await;
    let listed = |query: String| {
        let app = &app;
        async move {
            let (status, page) = app.get(&format!("/api/v1/requests?{query}")).await;
            assert_eq!(status, StatusCode::OK, "{query}: {page}");
            let mut got = ids(&page);
            got.sort();
            (got, page["total"].as_i64().unwrap())
        }
    };
    assert_eq!(
        listed("model=rare".into()).await,
        (vec!["new".to_string(), "old".to_string()], 2)
    );
    assert_eq!(
        listed("model=RARE-upstream".into()).await,
        (vec!["old".to_string()], 1)
    );
    assert_eq!(listed("model=missing".into()).await, (vec![], 0));
    let recent = (now - chrono::TimeDelta::hours(2)).format("%Y-%m-%dT%H:%M:%SZ");
    assert_eq!(
        listed(format!("model=rare&from={recent}")).await,
        (vec!["new".to_string()], 1)
    );
    let export = app
        .client
        .get(app.url("/api/v1/requests/export.csv?model=missing"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), StatusCode::OK);
    assert_eq!(
        export.text().await.unwrap().lines().count(),
        1,
        "the header only"
    );
}

#[tokio::test]
async fn one_request_with_its_cost_breakdown() {
    let app = spawn().await;
    let d = |s: &str| -> Decimal { s.parse().unwrap() };
    let mut billed = event("with-parts");
    billed.cost_usd = d("0.0174");
    billed.cost_multiplier = d("1.5");
    billed.cost_breakdown = Some(CostBreakdown {
        input_usd: d("0.0045"),
        output_usd: d("0.0045"),
        cache_creation_5m_usd: d("0.0054"),
        cache_creation_1h_usd: d("0"),
        cache_read_usd: d("0.003"),
    });
    let old = event("without-parts");
    let mut negative = event("negative-part");
    negative.cost_breakdown = Some(CostBreakdown {
        input_usd: d("-1"),
        ..CostBreakdown::default()
    });
    ingest(&app, &[billed, old, negative]).await;

    let id = row_id(&app, "with-parts").await;
    let (status, row) = app.get(&format!("/api/v1/requests/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{row}");
    assert_eq!(row["id"], id);
    assert_eq!(row["cost_usd"], "0.0174");
    assert_eq!(
        row["cost_breakdown"],
        json!({"input_usd": "0.0045", "output_usd": "0.0045", "cache_creation_5m_usd": "0.0054",
               "cache_creation_1h_usd": "0", "cache_read_usd": "0.003"})
    );
    let (_, page) = app.get("/api/v1/requests?page_size=5").await;
    let listed = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap();
    assert_eq!(listed, &row, "the list has the same rows");

    let id = row_id(&app, "without-parts").await;
    let (_, row) = app.get(&format!("/api/v1/requests/{id}")).await;
    assert!(row["cost_breakdown"].is_null(), "{row}");
    let id = row_id(&app, "negative-part").await;
    let (_, row) = app.get(&format!("/api/v1/requests/{id}")).await;
    assert!(row["cost_breakdown"].is_null(), "{row}");
    assert_eq!(row["flags"], json!(["invalid_cost"]));

    for path in [
        "/api/v1/requests/999999999",
        "/api/v1/requests/abc",
        "/api/v1/requests/1.5",
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_error(&body, "not_found", None);
    }
}

/// A row exported is its JSON fields, the breakdown's parts in columns.
const HEADER: &str = "id,event_id,request_id,started_at,received_at,user_id,key_id,key_masked,\
provider_id,method,endpoint,original_model,upstream_model,status,duration_ms,ttfb_ms,input_tokens,\
output_tokens,cache_creation_5m_tokens,cache_creation_1h_tokens,cache_read_tokens,cost_usd,\
cost_multiplier,cost_input_usd,cost_output_usd,cost_cache_creation_5m_usd,\
cost_cache_creation_1h_usd,cost_cache_read_usd,session_id,user_agent,client_ip,stream,blocked_by,\
blocked_reason,error,flags";

#[tokio::test]
async fn the_export_is_csv_with_the_lists_filters() {
    let app = spawn().await;
    let now = chrono::Utc::now().timestamp_millis();
    let mut quoted = event("q1");
    quoted.started_at_ms = now - 2000;
    quoted.user_agent = Some("agent, \"with\" quotes\nand a line".into());
    quoted.error = Some("=HYPERLINK(\"http://x\")".into());
    quoted.blocked_by = Some("sensitive_word".into());
    quoted.blocked_reason = Some(json!({"word": "x,y"}));
    quoted.status = 400;
    quoted.flags = vec!["usage_estimated".into(), "failover".into()];
    let mut parts = event("q2");
    parts.started_at_ms = now - 1000;
    parts.user_agent = Some("ua".into());
    parts.cost_breakdown = Some(CostBreakdown {
        input_usd: "0.006".parse().unwrap(),
        ..CostBreakdown::default()
    });
    ingest(&app, &[quoted, parts]).await;

    let response = app
        .client
        .get(app.url("/api/v1/requests/export.csv"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"hubgate-requests.csv\""
    );
    let csv = response.text().await.unwrap();
    let records: Vec<&str> = csv.split_terminator("\r\n").collect();
    assert_eq!(records.len(), 3, "{csv}");
    assert_eq!(records[0], HEADER);
    let columns = HEADER.split(',').count();
    assert!(records[1].starts_with(&format!("{},q2,req-q2,", row_id(&app, "q2").await)));
    assert!(
        records[1].contains(",0,0.006,1,0.006,0,0,0,0,,ua,"),
        "cost, multiplier and parts: {}",
        records[1]
    );
    assert_eq!(records[1].split(',').count(), columns, "{}", records[1]);
    let q1 = records[2];
    assert!(
        q1.contains(",\"agent, \"\"with\"\" quotes\nand a line\","),
        "{q1}"
    );
    assert!(
        q1.contains(",\"'=HYPERLINK(\"\"http://x\"\")\","),
        "formula defused: {q1}"
    );
    assert!(
        q1.contains(",sensitive_word,\"{\"\"word\"\":\"\"x,y\"\"}\","),
        "{q1}"
    );
    assert!(q1.ends_with(",usage_estimated;failover"), "{q1}");
    assert!(
        q1.contains(",0.006,1,,,,,,"),
        "no breakdown: empty parts: {q1}"
    );

    // The list's filters, no paging.
    let (status, csv) = app.get("/api/v1/requests/export.csv?status=400").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(csv.as_str().unwrap().matches("\r\n").count(), 2);
    let (_, csv) = app.get("/api/v1/requests/export.csv?model=nothing").await;
    assert_eq!(csv.as_str().unwrap(), format!("{HEADER}\r\n"));
    for (query, field) in [("page=2", "page"), ("status=x", "status"), ("x=1", "x")] {
        let (status, body) = app
            .get(&format!("/api/v1/requests/export.csv?{query}"))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_error(&body, "validation_failed", Some(field));
    }
}

#[tokio::test]
async fn the_count_stops_at_ten_thousand() {
    let app = spawn().await;
    sqlx::query(
        "INSERT INTO message_request (event_id, request_id, started_at, method, endpoint, status, \
           duration_ms, user_id) \
         SELECT 'cap-' || g, 'r', now() - g * interval '1 second', 'POST', '/v1/messages', \
           CASE WHEN g % 2 = 0 THEN 200 ELSE 429 END, 1, g % 3 \
         FROM generate_series(1, 10002) g",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let (_, page) = app.get("/api/v1/requests?page_size=2").await;
    assert_eq!(
        (page["total"].as_i64(), page["total_capped"].as_bool()),
        (Some(10_000), Some(true))
    );
    assert_eq!(ids(&page), ["cap-1", "cap-2"]);
    let (_, page) = app.get("/api/v1/requests?status=429").await;
    assert_eq!(
        (page["total"].as_i64(), page["total_capped"].as_bool()),
        (Some(5001), Some(false))
    );
    let (_, page) = app.get("/api/v1/requests?user_id=1&page=2").await;
    assert_eq!(
        (page["total"].as_i64(), page["total_capped"].as_bool()),
        (Some(3334), Some(false))
    );
    assert_eq!(page["items"].as_array().unwrap().len(), 50);
    let (_, page) = app.get("/api/v1/sessions").await;
    assert_eq!(page["total_capped"], false);
}
