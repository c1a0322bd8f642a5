//! A user with a console key reads their own record and sessions, nobody
//! else's (admins: everyone's).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{assert_error, event, ingest, spawn};

fn sessions(page: &Value) -> Vec<String> {
    let mut ids: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn users_read_their_own_record_and_sessions() {
    let app = spawn().await;
    let alice = app.create_user("alice").await["id"].as_i64().unwrap();
    let bob = app.create_user("bob").await["id"].as_i64().unwrap();
    let (key, raw) = app
        .create_key(alice, json!({ "name": "web", "can_login_web_ui": true }))
        .await;
    let alice_key = key["id"].as_i64().unwrap();
    let (key, _) = app.create_key(bob, json!({ "name": "b" })).await;
    let bob_key = key["id"].as_i64().unwrap();
    let as_alice = |path: String| {
        let (app, raw) = (&app, raw.clone());
        async move { app.send(Method::GET, &path, Some(&raw), None).await }
    };

    // The user record.
    let (status, me) = as_alice(format!("/api/v1/users/{alice}")).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(
        (me["id"].as_i64(), me["name"].as_str()),
        (Some(alice), Some("alice"))
    );
    let (status, body) = as_alice(format!("/api/v1/users/{bob}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&body, "forbidden", None);
    let (status, _) = as_alice("/api/v1/users/999999".into()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = as_alice("/api/v1/users".into()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the list stays admin-only");
    let (status, user) = app.get(&format!("/api/v1/users/{bob}")).await;
    assert_eq!(
        (status, user["name"].as_str()),
        (StatusCode::OK, Some("bob"))
    );
    let (_, plain) = app.create_key(alice, json!({ "name": "cli" })).await;
    let (status, _) = app
        .send(
            Method::GET,
            &format!("/api/v1/users/{alice}"),
            Some(&plain),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a key without console access"
    );

    // Sessions.
    let events: Vec<_> = [
        (alice, alice_key, "s-a1"),
        (alice, alice_key, "s-a2"),
        (bob, bob_key, "s-b"),
    ]
    .into_iter()
    .map(|(user, key, session)| {
        let mut e = event(session);
        e.user_id = Some(user);
        e.key_id = Some(key);
        e.session_id = Some(session.to_string());
        e
    })
    .collect();
    ingest(&app, &events).await;
    let (status, page) = as_alice("/api/v1/sessions".into()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(sessions(&page), ["s-a1", "s-a2"]);
    assert_eq!(page["total"], 2);
    let (_, page) = as_alice(format!("/api/v1/sessions?user_id={alice}&active=false")).await;
    assert_eq!(sessions(&page), ["s-a1", "s-a2"]);
    let (status, body) = as_alice(format!("/api/v1/sessions?user_id={bob}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&body, "forbidden", None);
    let (_, page) = as_alice(format!("/api/v1/sessions?key_id={bob_key}")).await;
    assert_eq!(page["total"], 0, "another user's key: nothing");
    let (_, page) = app.get("/api/v1/sessions").await;
    assert_eq!(sessions(&page), ["s-a1", "s-a2", "s-b"]);
    let (status, _) = app
        .send(Method::GET, "/api/v1/sessions", Some(&plain), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
