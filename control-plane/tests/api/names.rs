//! Names are unique regardless of case and Unicode normalization form, and
//! may not hide invisible or bidi format characters.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{assert_error, spawn, TestApp, ADMIN_TOKEN};

const NFC: &str = "probe-\u{e9}";
const NFD: &str = "probe-e\u{301}";

fn provider(name: &str) -> Value {
    json!({ "name": name, "type": "claude", "base_url": "https://api.anthropic.com", "api_key": "secret-1234567890" })
}

fn filter(name: &str) -> Value {
    json!({ "name": name, "scope": "header", "action": "remove", "target": "x-drop" })
}

fn price(model: &str) -> Value {
    json!({ "model": model, "input_per_mtok": 1, "output_per_mtok": 2 })
}

/// Creates `first`, then expects `second` to be a 409 naming `field` that
/// writes nothing; returns the first answer.
async fn conflicts(app: &TestApp, path: &str, first: Value, second: Value, field: &str) -> Value {
    let (status, created) = app.post(path, first).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let before = app.policy().await;
    let (status, body) = app.post(path, second.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{path} {second}: {body}");
    assert_error(&body, "conflict", Some(field));
    assert_eq!(
        app.policy().await,
        before,
        "a refused create wrote something"
    );
    created
}

#[tokio::test]
async fn names_differing_only_in_case_or_normal_form_conflict() {
    let app = spawn().await;
    let user = conflicts(
        &app,
        "/api/v1/users",
        json!({ "name": "PROBE-DUP" }),
        json!({ "name": "probe-dup" }),
        "name",
    )
    .await;
    assert_eq!(user["name"], "PROBE-DUP", "the name is kept as typed");
    conflicts(
        &app,
        "/api/v1/users",
        json!({ "name": NFC }),
        json!({ "name": NFD }),
        "name",
    )
    .await;
    // Compatibility forms fold too (fullwidth letters).
    conflicts(
        &app,
        "/api/v1/users",
        json!({ "name": "wide" }),
        json!({ "name": "ＷＩＤＥ" }),
        "name",
    )
    .await;
    conflicts(
        &app,
        "/api/v1/providers",
        provider("Anthropic-Main"),
        provider("anthropic-main"),
        "name",
    )
    .await;
    conflicts(
        &app,
        "/api/v1/providers",
        provider(NFD),
        provider(NFC),
        "name",
    )
    .await;
    conflicts(
        &app,
        "/api/v1/request-filters",
        filter("Strip-X"),
        filter("strip-x"),
        "name",
    )
    .await;
    conflicts(
        &app,
        "/api/v1/request-filters",
        filter(NFC),
        filter(NFD),
        "name",
    )
    .await;
    // The filter looks prices up case-insensitively: one row per model,
    // seeded ones included.
    let (status, body) = app.post("/api/v1/model-prices", price("GPT-5")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_error(&body, "conflict", Some("model"));
    conflicts(
        &app,
        "/api/v1/model-prices",
        price("Acme-Model-1"),
        price("acme-model-1"),
        "model",
    )
    .await;

    // A rename into someone else's name conflicts too; a rename of the same
    // row into another case of its own name is fine and kept as typed.
    let other = app.create_user("other").await;
    let path = format!("/api/v1/users/{}", other["id"]);
    let (status, body) = app.patch(&path, json!({ "name": "Probe-Dup" })).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_error(&body, "conflict", Some("name"));
    let (status, body) = app.patch(&path, json!({ "name": "OTHER" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "OTHER");

    // A deleted user's name is free again, in any case.
    let (status, _) = app.delete(&format!("/api/v1/users/{}", user["id"])).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app
        .post("/api/v1/users", json!({ "name": "probe-DUP" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // A deleted price is a tombstone: creating it in another case revives
    // it under the name as now typed.
    let created = app
        .post("/api/v1/model-prices", price("tomb-model"))
        .await
        .1;
    app.delete(&format!("/api/v1/model-prices/{}", created["id"]))
        .await;
    let (status, revived) = app.post("/api/v1/model-prices", price("TOMB-model")).await;
    assert_eq!(status, StatusCode::CREATED, "{revived}");
    assert_eq!(revived["id"], created["id"]);
    assert_eq!(revived["model"], "TOMB-model");
}

#[tokio::test]
async fn concurrent_creates_of_one_name_leave_one_row() {
    let app = spawn().await;
    let names = ["race", "RACE", "Race", "rAcE", "racE", "RAce"];
    let mut tasks = tokio::task::JoinSet::new();
    for name in names {
        let request = app
            .client
            .post(app.url("/api/v1/users"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "name": name }));
        tasks.spawn(async move { request.send().await.unwrap().status() });
    }
    let answers = tasks.join_all().await;
    let created = answers
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let conflicted = answers
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((created, conflicted), (1, names.len() - 1), "{answers:?}");
    assert_eq!(
        app.count("users WHERE deleted_at IS NULL AND name <> 'demo'")
            .await,
        1
    );
}

#[tokio::test]
async fn names_written_before_folding_are_folded_at_migrate() {
    let app = spawn().await;
    // Rows as an older binary wrote them: no folded name. Two of them
    // differ only in case.
    for name in ["Legacy", "LEGACY", NFD] {
        sqlx::query("INSERT INTO users (name) VALUES ($1)")
            .bind(name)
            .execute(&app.pool)
            .await
            .unwrap();
    }
    sqlx::query(
        "INSERT INTO providers (name, type, base_url, credential) VALUES ('Old-P', 'claude', 'https://a.example', 'k')",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    hubgate_control_plane::db::migrate(&app.pool).await.unwrap();

    let folds: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT name, name_fold FROM users WHERE name <> 'demo' ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        folds,
        vec![
            ("Legacy".to_string(), Some("legacy".to_string())),
            // Left for an admin to rename: it collides with the older row.
            ("LEGACY".to_string(), None),
            (NFD.to_string(), Some(NFC.to_string())),
        ]
    );
    for (path, body) in [
        ("/api/v1/users", json!({ "name": "legacy" })),
        ("/api/v1/users", json!({ "name": NFC })),
        ("/api/v1/providers", provider("old-p")),
    ] {
        let (status, answer) = app.post(path, body).await;
        assert_eq!(status, StatusCode::CONFLICT, "{path}: {answer}");
    }
}

#[tokio::test]
async fn format_characters_in_names_are_refused() {
    let app = spawn().await;
    let user = app.create_user("plain").await;
    let uid = user["id"].as_i64().unwrap();
    let hidden = [
        "\u{061C}", "\u{200B}", "\u{200C}", "\u{200D}", "\u{200E}", "\u{200F}", "\u{202A}",
        "\u{202B}", "\u{202C}", "\u{202D}", "\u{202E}", "\u{2060}", "\u{2061}", "\u{2062}",
        "\u{2063}", "\u{2064}", "\u{2066}", "\u{2067}", "\u{2068}", "\u{2069}", "\u{FEFF}",
        "\u{00AD}",
    ];
    let before = app.policy().await;
    for c in hidden {
        let name = format!("ad{c}min");
        for (path, body, field) in [
            ("/api/v1/users".to_string(), json!({ "name": name }), "name"),
            (
                "/api/v1/users".to_string(),
                json!({ "name": "u", "provider_group": name }),
                "provider_group",
            ),
            (
                format!("/api/v1/users/{uid}/keys"),
                json!({ "name": name }),
                "name",
            ),
            ("/api/v1/providers".to_string(), provider(&name), "name"),
            ("/api/v1/request-filters".to_string(), filter(&name), "name"),
            (
                "/api/v1/users".to_string(),
                json!({ "name": "u", "allowed_clients": [name] }),
                "allowed_clients[0]",
            ),
        ] {
            let (status, answer) = app.post(&path, body).await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{c:?} {path}: {answer}"
            );
            assert_error(&answer, "validation_failed", Some(field));
        }
        let (status, answer) = app
            .patch(&format!("/api/v1/users/{uid}"), json!({ "name": name }))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{c:?}: {answer}");
    }
    assert_eq!(
        app.policy().await,
        before,
        "a refused write changed something"
    );
    // Letters with marks and other scripts are names like any.
    for name in ["Zoë", "e\u{301}", "李雷", "عمر"] {
        let (status, answer) = app.post("/api/v1/users", json!({ "name": name })).await;
        assert_eq!(status, StatusCode::CREATED, "{name}: {answer}");
        assert_eq!(answer["name"], name);
    }
}
