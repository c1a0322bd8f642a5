//! `POST /api/v1/sensitive-words/test`: the filter's own matcher over the
//! enabled words, the text taken as a user message.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{assert_error, spawn, TestApp, ADMIN_TOKEN};

async fn word(app: &TestApp, word: &str, match_type: &str, enabled: bool) -> i64 {
    let (status, body) = app
        .post(
            "/api/v1/sensitive-words",
            json!({ "word": word, "match_type": match_type, "enabled": enabled }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_i64().unwrap()
}

async fn test(app: &TestApp, text: &str) -> Value {
    let (status, body) = app
        .post("/api/v1/sensitive-words/test", json!({ "text": text }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn the_test_box_matches_as_the_filter_does() {
    let app = spawn().await;
    let none = json!({"blocked": false, "word": null, "match_type": null, "matched_text": null,
                      "word_id": null});
    assert_eq!(test(&app, "anything at all").await, none, "no words");

    let plan = word(&app, "secret-plan", "contains", true).await;
    let hello = word(&app, "Hello World", "exact", true).await;
    let akia = word(&app, "AKIA[0-9A-Z]{16}", "regex", true).await;
    let arger = word(&app, "ärger", "contains", true).await;
    word(&app, "dormant", "contains", false).await;

    assert_eq!(
        test(&app, "here is my SECRET-PLAN for today").await,
        json!({"blocked": true, "word": "secret-plan", "match_type": "contains",
               "matched_text": "here is my SECRET-PLAN for today", "word_id": plan})
    );
    assert_eq!(
        test(&app, "  hello world\n").await,
        json!({"blocked": true, "word": "Hello World", "match_type": "exact",
               "matched_text": "hello world", "word_id": hello})
    );
    let hit = test(&app, "key AKIAABCDEFGHIJKLMNOP here").await;
    assert_eq!(
        (&hit["match_type"], &hit["word_id"]),
        (&json!("regex"), &json!(akia))
    );
    assert_eq!(hit["matched_text"], "key AKIAABCDEFGHIJKLMNOP here");
    let hit = test(&app, "VIEL ÄRGER").await;
    assert_eq!(
        (&hit["word"], &hit["word_id"]),
        (&json!("ärger"), &json!(arger))
    );
    // A contains word anywhere in the text.
    assert_eq!(test(&app, "hello world secret-plan").await["word_id"], plan);
    // An exact word is the whole message, not part of it.
    assert_eq!(test(&app, "hello world, again").await, none);
    assert_eq!(test(&app, "dormant words do nothing").await, none);
    assert_eq!(test(&app, "").await, none);

    // Nothing was written: the words are as they were.
    let (_, words) = app.get("/api/v1/sensitive-words").await;
    assert_eq!(words.as_array().unwrap().len(), 5);
    // The word routes still answer next to it.
    let (status, got) = app.get(&format!("/api/v1/sensitive-words/{plan}")).await;
    assert_eq!(
        (status, got["word"].as_str()),
        (StatusCode::OK, Some("secret-plan"))
    );
}

#[tokio::test]
async fn the_test_box_takes_a_strict_body_from_admins() {
    let app = spawn().await;
    for (body, field) in [
        (json!({ "text": 1 }), "text"),
        (json!({ "text": "x", "extra": true }), "extra"),
        (json!({}), "text"),
        (json!({ "text": "é".repeat(200_001) }), "text"),
    ] {
        let (status, answer) = app.post("/api/v1/sensitive-words/test", body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_error(&answer, "validation_failed", Some(field));
    }
    let response = app
        .client
        .post(app.url("/api/v1/sensitive-words/test"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let (status, _) = app.get("/api/v1/sensitive-words/test").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

    let user = app.create_user("u").await["id"].as_i64().unwrap();
    let (_, raw) = app
        .create_key(user, json!({ "name": "web", "can_login_web_ui": true }))
        .await;
    let (status, _) = app
        .send(
            Method::POST,
            "/api/v1/sensitive-words/test",
            Some(&raw),
            Some(&json!({ "text": "x" })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
