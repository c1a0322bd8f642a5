//! Circuit breakers through the admin API (SPEC §6): what the instances
//! report is shown per instance with a summary, a reset reaches the
//! snapshot and refuses older reports, and the eligibility answer names why
//! each provider is (not) chosen.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{assert_error, spawn, TestApp};

async fn report(app: &TestApp, instance: &str, now_ms: i64, circuits: Value) -> StatusCode {
    let (status, body) = app
        .internal_post(
            hubgate_wire::CIRCUITS_PATH,
            json!({"instance": instance, "now_ms": now_ms, "circuits": circuits}),
        )
        .await;
    assert!(body.is_null(), "{body}");
    status
}

fn closed(provider: i64, failures: u32, marker: i64) -> Value {
    json!({"provider_id": provider, "state": "closed", "failures": failures, "successes": 0,
           "open_until_ms": null, "reset_at_ms": marker})
}

fn open(provider: i64, until_ms: i64, marker: i64) -> Value {
    json!({"provider_id": provider, "state": "open", "failures": 0, "successes": 0,
           "open_until_ms": until_ms, "reset_at_ms": marker})
}

async fn circuit(app: &TestApp, provider: i64) -> Value {
    let (status, body) = app
        .get(&format!("/api/v1/providers/{provider}/circuit"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn instances(circuit: &Value) -> Vec<(String, String, bool)> {
    circuit["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["instance"].as_str().unwrap().to_string(),
                i["state"].as_str().unwrap().to_string(),
                i["stale"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn id(v: &Value) -> i64 {
    v["id"].as_i64().unwrap()
}

#[tokio::test]
async fn reported_states_are_shown_per_instance_with_the_worst_current_one() {
    let app = spawn().await;
    let p1 = id(&app.create_provider("one", "sk-1").await);
    let p2 = id(&app.create_provider("two", "sk-2").await);
    assert_eq!(
        circuit(&app, p1).await,
        json!({"provider_id": p1, "state": null, "open_on": [], "reset_at": null, "instances": []}),
        "nothing reported yet"
    );

    // Instance a's clock is an hour behind ours: the open time is read
    // against the clock of the report, so it lands a minute from now.
    let a_now = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let status = report(
        &app,
        "envoy-a",
        a_now,
        json!([open(p1, a_now + 60_000, 0), closed(p2, 2, 0)]),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let c = circuit(&app, p1).await;
    assert_eq!(
        (c["state"].clone(), c["open_on"].clone()),
        (json!("open"), json!(["envoy-a"]))
    );
    let until =
        chrono::DateTime::parse_from_rfc3339(c["instances"][0]["open_until"].as_str().unwrap())
            .unwrap();
    let ahead = until.timestamp_millis() - chrono::Utc::now().timestamp_millis();
    assert!(
        (50_000..=60_000).contains(&ahead),
        "open until {until}, {ahead} ms ahead"
    );
    let c2 = circuit(&app, p2).await;
    assert_eq!(c2["state"], "closed");
    assert_eq!(c2["instances"][0]["failures"], 2);

    // b sees p1 closed: the summary stays the worst current state.
    let b_now = chrono::Utc::now().timestamp_millis();
    report(
        &app,
        "envoy-b",
        b_now,
        json!([closed(p1, 0, 0), closed(p2, 0, 0)]),
    )
    .await;
    let c = circuit(&app, p1).await;
    assert_eq!(c["state"], "open");
    assert_eq!(
        instances(&c),
        vec![
            ("envoy-a".into(), "open".into(), false),
            ("envoy-b".into(), "closed".into(), false)
        ]
    );

    // A report older than the stored one (another worker's, late) changes nothing.
    report(
        &app,
        "envoy-a",
        a_now - 1_000,
        json!([closed(p1, 0, 0), closed(p2, 0, 0)]),
    )
    .await;
    assert_eq!(circuit(&app, p1).await["state"], "open");
    // A provider a report leaves out (gone from its snapshot) loses its row.
    report(
        &app,
        "envoy-a",
        a_now + 1_000,
        json!([open(p1, a_now + 60_000, 0)]),
    )
    .await;
    assert_eq!(
        instances(&circuit(&app, p2).await),
        vec![("envoy-b".into(), "closed".into(), false)]
    );

    // a stops reporting: after 90 s it is stale and out of the summary.
    sqlx::query("UPDATE provider_circuits SET reported_at = now() - interval '91 seconds' WHERE instance = 'envoy-a'")
        .execute(&app.pool)
        .await
        .unwrap();
    let c = circuit(&app, p1).await;
    assert_eq!(
        (c["state"].clone(), c["open_on"].clone()),
        (json!("closed"), json!([]))
    );
    assert_eq!(
        instances(&c),
        vec![
            ("envoy-a".into(), "open".into(), true),
            ("envoy-b".into(), "closed".into(), false)
        ]
    );

    // Unknown providers are skipped; bad reports are refused, naming the field.
    assert_eq!(
        report(&app, "envoy-c", b_now, json!([closed(999_999, 0, 0)])).await,
        StatusCode::NO_CONTENT
    );
    let (status, body) = app
        .internal_post(
            hubgate_wire::CIRCUITS_PATH,
            json!({"instance": "", "now_ms": 1, "circuits": []}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&body, "validation_failed", Some("instance"));
    let (status, _) = app
        .internal_post(
            hubgate_wire::CIRCUITS_PATH,
            json!({"instance": "x", "now_ms": 1, "circuits": [], "extra": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        app.get("/api/v1/providers/999999/circuit").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_reset_reaches_the_snapshot_and_refuses_reports_made_before_it() {
    let app = spawn().await;
    let p = id(&app.create_provider("flaky", "sk-1").await);
    let now = chrono::Utc::now().timestamp_millis();
    report(&app, "envoy-a", now, json!([open(p, now + 60_000, 0)])).await;
    let (version, _) = app.policy().await;

    let (status, c) = app
        .post(&format!("/api/v1/providers/{p}/circuit/reset"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    assert_eq!(c["instances"], json!([]), "{c}");
    assert_eq!(c["state"], Value::Null);
    let reset_at = chrono::DateTime::parse_from_rfc3339(c["reset_at"].as_str().unwrap()).unwrap();
    let marker = reset_at.timestamp_millis();
    assert_eq!(
        app.policy().await.0,
        version + 1,
        "the reset is a policy change"
    );
    let (_, snapshot) = app.snapshot(None).await;
    let shipped = snapshot["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == p)
        .unwrap();
    assert_eq!(shipped["circuit"]["reset_at_ms"], marker, "{shipped}");
    assert_eq!(circuit(&app, p).await["reset_at"], c["reset_at"]);

    // A report under the old marker (sent before the instance saw the
    // reset) is ignored; one under the new marker counts.
    report(
        &app,
        "envoy-a",
        now + 1_000,
        json!([open(p, now + 60_000, 0)]),
    )
    .await;
    assert_eq!(circuit(&app, p).await["instances"], json!([]));
    report(&app, "envoy-a", now + 2_000, json!([closed(p, 1, marker)])).await;
    assert_eq!(
        instances(&circuit(&app, p).await),
        vec![("envoy-a".into(), "closed".into(), false)]
    );

    // A second reset, even at once, moves the marker forward.
    let (_, again) = app
        .post(&format!("/api/v1/providers/{p}/circuit/reset"), json!({}))
        .await;
    let again = chrono::DateTime::parse_from_rfc3339(again["reset_at"].as_str().unwrap()).unwrap();
    assert!(again.timestamp_millis() > marker);

    let (status, _) = app
        .post("/api/v1/providers/999999/circuit/reset", json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn provider(app: &TestApp, body: Value) -> i64 {
    let (status, created) = app.post("/api/v1/providers", body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    id(&created)
}

fn base(name: &str) -> Value {
    json!({"name": name, "type": "claude", "base_url": "http://127.0.0.1:9", "api_key": "sk-x"})
}

fn with(mut body: Value, fields: Value) -> Value {
    for (k, v) in fields.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

async fn ask(app: &TestApp, query: &str) -> Value {
    let (status, body) = app
        .get(&format!("/api/v1/providers/eligibility?{query}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    body
}

/// (name, reason, in_tier, probability) per provider.
fn verdicts(answer: &Value) -> Vec<(String, Option<String>, bool, f64)> {
    answer["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["reason"].as_str().map(str::to_string),
                p["in_tier"].as_bool().unwrap(),
                p["probability"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn by_name<'a>(answer: &'a Value, name: &str) -> &'a Value {
    answer["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap()
}

#[tokio::test]
async fn eligibility_names_each_reason_the_tier_and_the_weights() {
    let app = spawn().await;
    provider(&app, with(base("off"), json!({"enabled": false}))).await;
    provider(&app, with(base("gem"), json!({"type": "gemini"}))).await;
    provider(&app, with(base("team-b"), json!({"group_tags": ["b"]}))).await;
    provider(
        &app,
        with(
            base("sonnet-only"),
            json!({"allowed_models": ["claude-sonnet-4-5"]}),
        ),
    )
    .await;
    let flaky = provider(&app, base("flaky")).await;
    provider(&app, with(base("light"), json!({"weight": 1}))).await;
    provider(
        &app,
        with(
            base("heavy"),
            json!({"weight": 3, "model_redirects": [{"match_type": "prefix", "pattern": "claude-opus", "target": "claude-opus-4-1"}]}),
        ),
    )
    .await;
    provider(&app, with(base("backup"), json!({"priority": 5}))).await;
    let now = chrono::Utc::now().timestamp_millis();
    report(&app, "envoy-a", now, json!([open(flaky, now + 60_000, 0)])).await;
    report(&app, "envoy-b", now, json!([closed(flaky, 0, 0)])).await;

    let user = id(&app.create_user("alice").await);
    let (key, _) = app.create_key(user, json!({"name": "k"})).await;
    let key = id(&key);
    let q = format!("key_id={key}&model=claude-opus-4&api=anthropic_messages");
    let a = ask(&app, &q).await;
    assert_eq!(
        (a["format"].clone(), a["group"].clone()),
        (json!("claude"), json!("default"))
    );
    assert_eq!(
        (a["user_id"].clone(), a["key_id"].clone()),
        (json!(user), json!(key))
    );
    assert_eq!(a["tier"], 0);
    assert_eq!(
        (a["unavailable"].clone(), a["model_refused"].clone()),
        (Value::Null, Value::Null)
    );
    let r = |s: &str| Some(s.to_string());
    assert_eq!(
        verdicts(&a),
        vec![
            ("off".into(), r("not_enabled"), false, 0.0),
            ("gem".into(), r("wrong_format"), false, 0.0),
            ("team-b".into(), r("not_in_group"), false, 0.0),
            ("sonnet-only".into(), r("model_not_allowed"), false, 0.0),
            ("flaky".into(), r("circuit_open"), false, 0.0),
            ("light".into(), None, true, 0.25),
            ("heavy".into(), None, true, 0.75),
            ("backup".into(), None, false, 0.0),
        ]
    );
    assert_eq!(by_name(&a, "flaky")["circuit_open_on"], json!(["envoy-a"]));
    assert_eq!(by_name(&a, "flaky")["detail"], "circuit open on envoy-a");
    assert_eq!(
        by_name(&a, "team-b")["detail"],
        "not in the group `default` (its groups: b)"
    );
    assert_eq!(
        by_name(&a, "gem")["detail"],
        "its type is `gemini`; this API needs `claude`"
    );
    assert_eq!(
        by_name(&a, "heavy")["upstream_model"],
        "claude-opus-4-1",
        "after its redirect"
    );
    assert_eq!(by_name(&a, "light")["upstream_model"], "claude-opus-4");

    // As instance b sees it, flaky's circuit is closed: it joins the tier.
    let b = ask(&app, &format!("{q}&instance=envoy-b")).await;
    assert_eq!(by_name(&b, "flaky")["reason"], Value::Null);
    assert_eq!(by_name(&b, "flaky")["probability"], 0.2);
    assert_eq!(b["instance"], "envoy-b");

    // The key's group wins over the user's; nothing serves `b`-group gemini.
    app.patch(
        &format!("/api/v1/users/{user}"),
        json!({"provider_group": "nobody"}),
    )
    .await;
    app.patch(
        &format!("/api/v1/keys/{key}"),
        json!({"provider_group": "b"}),
    )
    .await;
    let g = ask(
        &app,
        &format!("key_id={key}&model=gemini-2.5-pro&api=gemini"),
    )
    .await;
    assert_eq!(
        (g["format"].clone(), g["group"].clone(), g["tier"].clone()),
        (json!("gemini"), json!("b"), Value::Null)
    );
    assert_eq!(by_name(&g, "gem")["reason"], "not_in_group");
    assert_eq!(
        g["unavailable"],
        "No provider is available: no enabled `gemini` provider is in the group `b`."
    );
    // Asked by user: the user's group.
    let u = ask(
        &app,
        &format!("user_id={user}&model=claude-opus-4&api=anthropic_messages"),
    )
    .await;
    assert_eq!(
        (u["group"].clone(), u["key_id"].clone()),
        (json!("nobody"), Value::Null)
    );
    assert_eq!(by_name(&u, "team-b")["reason"], "not_in_group");

    // The user's allowed models refuse the model before any provider.
    app.patch(
        &format!("/api/v1/users/{user}"),
        json!({"allowed_models": ["claude-sonnet-4-5"]}),
    )
    .await;
    let m = ask(
        &app,
        &format!("user_id={user}&key_id={key}&model=claude-opus-4&api=anthropic_messages"),
    )
    .await;
    assert_eq!(
        m["model_refused"],
        "Model not allowed. The requested model 'claude-opus-4' is not in the allowed list."
    );
}

#[tokio::test]
async fn eligibility_questions_are_validated_naming_the_parameter() {
    let app = spawn().await;
    let user = id(&app.create_user("alice").await);
    let other = id(&app.create_user("bob").await);
    let (key, _) = app.create_key(user, json!({"name": "k"})).await;
    let key = id(&key);
    let ok = format!("user_id={user}&model=m&api=openai_chat");
    ask(&app, &ok).await;
    for (query, field) in [
        ("model=m&api=openai_chat".to_string(), "user_id"),
        (format!("user_id={user}&api=openai_chat"), "model"),
        (format!("user_id={user}&model=m"), "api"),
        (format!("user_id={user}&model=m&api=claude"), "api"),
        (format!("user_id={user}&model=&api=gemini"), "model"),
        ("user_id=abc&model=m&api=gemini".to_string(), "user_id"),
        ("user_id=999999&model=m&api=gemini".to_string(), "user_id"),
        ("key_id=999999&model=m&api=gemini".to_string(), "key_id"),
        (
            format!("user_id={other}&key_id={key}&model=m&api=gemini"),
            "key_id",
        ),
        (format!("{ok}&provider_id=1"), "provider_id"),
    ] {
        let (status, body) = app
            .get(&format!("/api/v1/providers/eligibility?{query}"))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert_error(&body, "validation_failed", Some(field));
    }
}

#[tokio::test]
async fn circuits_and_eligibility_are_for_admins_only() {
    let app = spawn().await;
    let p = id(&app.create_provider("one", "sk-1").await);
    let user = id(&app.create_user("alice").await);
    let (_, raw) = app
        .create_key(user, json!({"name": "k", "can_login_web_ui": true}))
        .await;
    let routes = [
        (Method::GET, format!("/api/v1/providers/{p}/circuit")),
        (Method::POST, format!("/api/v1/providers/{p}/circuit/reset")),
        (
            Method::GET,
            format!("/api/v1/providers/eligibility?user_id={user}&model=m&api=gemini"),
        ),
    ];
    for (method, path) in routes {
        let (status, body) = app.send(method.clone(), &path, Some(&raw), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        assert_error(&body, "forbidden", None);
        let (status, _) = app.send(method.clone(), &path, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    let (_, reset_at): (i64, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT id, circuit_reset_at FROM providers WHERE id = $1")
            .bind(p)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(reset_at, None, "a refused reset writes nothing");
}
