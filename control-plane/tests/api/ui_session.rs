//! Admin console sessions (issue 9): sign-in, the cookie's flags, cookie
//! authentication of `/api/v1`, CSRF and origin checks, user-vs-admin
//! visibility, sign-out and expiry.

use std::collections::BTreeSet;
use std::time::Duration;

use hubgate_control_plane::throttle::ThrottlePolicy;
use hubgate_control_plane::ui::SessionPolicy;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{assert_error, spawn, spawn_with, TestApp, ADMIN_TOKEN};

/// What a browser would send along: the session cookie, the CSRF header and
/// the Origin header.
#[derive(Default, Clone, Copy)]
struct Browser<'a> {
    cookie: Option<&'a str>,
    csrf: Option<&'a str>,
    origin: Option<&'a str>,
}

struct Answer {
    status: StatusCode,
    set_cookie: Vec<String>,
    body: Value,
    text: String,
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    browser: Browser<'_>,
    body: Option<&Value>,
) -> Answer {
    let mut req = app.client.request(method, app.url(path));
    if let Some(id) = browser.cookie {
        req = req.header("cookie", format!("theme=dark; hubgate_ui={id}"));
    }
    if let Some(token) = browser.csrf {
        req = req.header("x-csrf-token", token);
    }
    if let Some(origin) = browser.origin {
        req = req.header("origin", origin);
    }
    if let Some(body) = body {
        req = req.json(body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let set_cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        set_cookie,
        body,
        text,
    }
}

/// A signed-in session: the cookie's value and the answer's body.
struct Signed {
    id: String,
    csrf: String,
    body: Value,
    set_cookie: String,
    text: String,
}

impl Signed {
    fn browser(&self) -> Browser<'_> {
        Browser {
            cookie: Some(&self.id),
            csrf: Some(&self.csrf),
            origin: None,
        }
    }

    fn without_csrf(&self) -> Browser<'_> {
        Browser {
            cookie: Some(&self.id),
            ..Browser::default()
        }
    }
}

async fn sign_in(app: &TestApp, token: &str) -> Signed {
    let answer = call(
        app,
        Method::POST,
        "/ui/api/session",
        Browser::default(),
        Some(&json!({ "token": token })),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.set_cookie.len(), 1);
    let set_cookie = answer.set_cookie[0].clone();
    let id = set_cookie
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("hubgate_ui=")
        .unwrap()
        .to_string();
    Signed {
        id,
        csrf: answer.body["csrf_token"].as_str().unwrap().to_string(),
        body: answer.body,
        set_cookie,
        text: answer.text,
    }
}

fn attributes(set_cookie: &str) -> BTreeSet<String> {
    set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

async fn user_with_key(app: &TestApp, name: &str, web_ui: bool) -> (i64, i64, String) {
    let user = app.create_user(name).await;
    let user_id = user["id"].as_i64().unwrap();
    let (key, raw) = app
        .create_key(
            user_id,
            json!({ "name": format!("{name}-key"), "can_login_web_ui": web_ui }),
        )
        .await;
    (user_id, key["id"].as_i64().unwrap(), raw)
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_cookie_and_stores_only_its_hash() {
    let app = spawn().await;
    let signed = sign_in(&app, ADMIN_TOKEN).await;

    assert_eq!(signed.id.len(), 64, "256 bits, hex");
    assert!(signed.id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        attributes(&signed.set_cookie),
        set(&["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"])
    );
    assert_eq!(signed.body["role"], "admin");
    assert_eq!(signed.body["user_id"], Value::Null);
    assert_eq!(signed.csrf.len(), 64);
    assert_ne!(signed.csrf, signed.id);
    let expires_at: chrono::DateTime<chrono::Utc> =
        signed.body["expires_at"].as_str().unwrap().parse().unwrap();
    let left = expires_at - chrono::Utc::now();
    assert!(left > chrono::TimeDelta::hours(11) && left <= chrono::TimeDelta::hours(12));
    assert!(
        !signed.text.contains(&signed.id),
        "no session id in the body"
    );

    // Only the id's hash is stored; neither the id nor the CSRF token.
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT id_hash, row_to_json(s)::text FROM ui_sessions s")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, hubgate_wire::hash_key(&signed.id));
    assert!(!rows[0].1.contains(&signed.id) && !rows[0].1.contains(&signed.csrf));

    // The page bootstraps from the cookie alone.
    let current = call(
        &app,
        Method::GET,
        "/ui/api/session",
        signed.without_csrf(),
        None,
    )
    .await;
    assert_eq!(current.status, StatusCode::OK);
    assert_eq!(current.body["role"], "admin");
    assert_eq!(current.body["csrf_token"], signed.csrf.as_str());
    assert_eq!(current.body["expires_at"], signed.body["expires_at"]);
    let none = call(
        &app,
        Method::GET,
        "/ui/api/session",
        Browser::default(),
        None,
    )
    .await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_error(&none.body, "unauthorized", None);
}

#[tokio::test]
async fn secure_flag_and_lifetime_follow_the_config() {
    let app = spawn_with(|config| {
        config.ui_sessions = SessionPolicy {
            ttl: Duration::from_secs(600),
            secure_cookie: true,
        }
    })
    .await;
    let signed = sign_in(&app, ADMIN_TOKEN).await;
    assert_eq!(
        attributes(&signed.set_cookie),
        set(&[
            "HttpOnly",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=600",
            "Secure"
        ])
    );
}

#[tokio::test]
async fn wrong_credentials_store_nothing_and_count_towards_the_lockout() {
    let app = spawn_with(|config| {
        config.admin_auth = ThrottlePolicy {
            max_failures: 3,
            window: Duration::from_secs(300),
            lockout: Duration::from_secs(600),
        }
    })
    .await;
    let sign_in_with = |body: Value| {
        let app = &app;
        async move {
            call(
                app,
                Method::POST,
                "/ui/api/session",
                Browser::default(),
                Some(&body),
            )
            .await
        }
    };

    // A strict body: an unknown or missing field is a 422 naming it.
    let answer = sign_in_with(json!({ "token": ADMIN_TOKEN, "remember": true })).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&answer.body, "validation_failed", Some("remember"));
    let answer = sign_in_with(json!({})).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&answer.body, "validation_failed", Some("token"));

    for attempt in 0..3 {
        let answer = sign_in_with(json!({ "token": format!("wrong-{attempt}") })).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_error(&answer.body, "unauthorized", None);
        assert!(answer.set_cookie.is_empty());
    }
    assert_eq!(app.count("ui_sessions").await, 0);
    // Locked out: the right token is refused too, and nothing is stored.
    let answer = sign_in_with(json!({ "token": ADMIN_TOKEN })).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    assert_error(&answer.body, "auth_locked_out", None);
    assert_eq!(app.count("ui_sessions").await, 0);
}

async fn name(app: &TestApp, path: &str) -> Value {
    app.get(path).await.1["name"].clone()
}

#[tokio::test]
async fn cookie_state_changes_need_the_csrf_token_and_the_same_origin() {
    let app = spawn().await;
    let signed = sign_in(&app, ADMIN_TOKEN).await;
    let user = app.create_user("target").await;
    let path = format!("/api/v1/users/{}", user["id"]);
    let rename = json!({ "name": "renamed" });
    let users_before = app.count("users").await;

    // Reading needs no CSRF token.
    let answer = call(&app, Method::GET, &path, signed.without_csrf(), None).await;
    assert_eq!(answer.status, StatusCode::OK);

    // Without the header, or with a wrong one: 403, nothing written.
    let wrong_token = "0".repeat(64);
    let wrong = Browser {
        csrf: Some(&wrong_token),
        ..signed.browser()
    };
    for browser in [signed.without_csrf(), wrong] {
        let answer = call(&app, Method::PATCH, &path, browser, Some(&rename)).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN);
        assert_error(&answer.body, "csrf_token_invalid", None);
        let answer = call(
            &app,
            Method::POST,
            "/api/v1/users",
            browser,
            Some(&json!({ "name": "created" })),
        )
        .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN);
        assert_error(&answer.body, "csrf_token_invalid", None);
        let answer = call(&app, Method::DELETE, &path, browser, None).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN);
        assert_error(&answer.body, "csrf_token_invalid", None);
    }
    assert_eq!(name(&app, &path).await, "target");
    assert_eq!(app.count("users").await, users_before);

    // Another session's token does not fit this one.
    let other = sign_in(&app, ADMIN_TOKEN).await;
    let crossed = Browser {
        csrf: Some(&other.csrf),
        ..signed.browser()
    };
    let answer = call(&app, Method::PATCH, &path, crossed, Some(&rename)).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);

    // The right token but another origin (or an opaque one): refused.
    for origin in ["http://evil.example", "null", "http://127.0.0.1:1"] {
        let browser = Browser {
            origin: Some(origin),
            ..signed.browser()
        };
        let answer = call(&app, Method::PATCH, &path, browser, Some(&rename)).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{origin}");
        assert_error(&answer.body, "origin_refused", None);
    }
    assert_eq!(name(&app, &path).await, "target");

    // The right token, from the same origin or without Origin: written.
    let same_origin = Browser {
        origin: Some(&app.base),
        ..signed.browser()
    };
    let answer = call(&app, Method::PATCH, &path, same_origin, Some(&rename)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(name(&app, &path).await, "renamed");
    let answer = call(
        &app,
        Method::POST,
        "/api/v1/users",
        signed.browser(),
        Some(&json!({ "name": "created" })),
    )
    .await;
    assert_eq!(answer.status, StatusCode::CREATED);

    // Bearer requests need no CSRF token and are not origin-checked.
    let resp = app
        .client
        .patch(app.url(&path))
        .bearer_auth(ADMIN_TOKEN)
        .header("origin", "http://evil.example")
        .json(&json!({ "name": "by-bearer" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(name(&app, &path).await, "by-bearer");

    // Deleting through the cookie, with the token.
    let answer = call(&app, Method::DELETE, &path, signed.browser(), None).await;
    assert!(answer.status.is_success(), "{}", answer.text);
    assert_eq!(app.get(&path).await.0, StatusCode::NOT_FOUND);
}

/// `value` without the fields that depend on when it was answered.
fn stable(mut value: Value) -> Value {
    match &mut value {
        Value::Object(map) => {
            map.remove("at");
            map.remove("window_start");
            for v in map.values_mut() {
                *v = stable(v.take());
            }
        }
        Value::Array(items) => {
            for v in items.iter_mut() {
                *v = stable(v.take());
            }
        }
        _ => {}
    }
    value
}

#[tokio::test]
async fn a_user_session_acts_exactly_as_the_users_key() {
    let app = spawn().await;
    let (user_id, key_id, raw) = user_with_key(&app, "alice", true).await;
    let (other_id, other_key_id, _) = user_with_key(&app, "bob", true).await;

    let users_before = app.count("users").await;
    let signed = sign_in(&app, &raw).await;
    assert_eq!(signed.body["role"], "user");
    assert_eq!(signed.body["user_id"], user_id);

    let reads = [
        format!("/api/v1/usage/users/{user_id}"),
        format!("/api/v1/usage/keys/{key_id}"),
        format!("/api/v1/users/{user_id}/keys"),
        format!("/api/v1/users/{user_id}"),
        "/api/v1/requests".to_string(),
        format!("/api/v1/usage/users/{other_id}"),
        format!("/api/v1/usage/keys/{other_key_id}"),
        format!("/api/v1/users/{other_id}/keys"),
        format!("/api/v1/users/{other_id}"),
        format!("/api/v1/requests?user_id={other_id}"),
        "/api/v1/users".to_string(),
        format!("/api/v1/keys/{key_id}"),
        "/api/v1/providers".to_string(),
        "/api/v1/settings".to_string(),
    ];
    let mut statuses = Vec::new();
    for path in &reads {
        let by_key = app.send(Method::GET, path, Some(&raw), None).await;
        let by_cookie = call(&app, Method::GET, path, signed.without_csrf(), None).await;
        assert_eq!(by_cookie.status, by_key.0, "{path}");
        if by_key.0 == StatusCode::OK {
            assert_eq!(stable(by_cookie.body), stable(by_key.1), "{path}");
        } else {
            assert_error(&by_cookie.body, "forbidden", None);
        }
        statuses.push(by_key.0);
    }
    assert_eq!(
        &statuses[..5],
        [StatusCode::OK; 5],
        "own usage, keys, record and requests are readable"
    );
    assert!(
        statuses[5..].iter().all(|s| *s == StatusCode::FORBIDDEN),
        "others' data and admin routes are refused: {statuses:?}"
    );

    // Admin-only writes are refused, even with the CSRF token.
    let writes = [
        (
            Method::PATCH,
            format!("/api/v1/keys/{key_id}"),
            Some(json!({ "limit_daily_usd": 1000 })),
        ),
        (
            Method::POST,
            "/api/v1/users".to_string(),
            Some(json!({ "name": "mallory" })),
        ),
        (Method::DELETE, format!("/api/v1/users/{other_id}"), None),
    ];
    for (method, path, body) in &writes {
        let answer = call(&app, method.clone(), path, signed.browser(), body.as_ref()).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_error(&answer.body, "forbidden", None);
    }
    assert_eq!(app.count("users").await, users_before);
    let key = app.get(&format!("/api/v1/keys/{key_id}")).await.1;
    assert_eq!(key["limit_daily_usd"], Value::Null);

    // Clearing can_login_web_ui ends the session.
    app.patch(
        &format!("/api/v1/keys/{key_id}"),
        json!({ "can_login_web_ui": false }),
    )
    .await;
    let path = format!("/api/v1/usage/users/{user_id}");
    let answer = call(&app, Method::GET, &path, signed.without_csrf(), None).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let answer = call(
        &app,
        Method::GET,
        "/ui/api/session",
        signed.without_csrf(),
        None,
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_admin_users_key_signs_in_as_admin() {
    let app = spawn().await;
    let (status, admin) = app
        .post("/api/v1/users", json!({ "name": "root", "role": "admin" }))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let admin_id = admin["id"].as_i64().unwrap();
    let (_, raw) = app
        .create_key(admin_id, json!({ "name": "r", "can_login_web_ui": true }))
        .await;
    let signed = sign_in(&app, &raw).await;
    assert_eq!(signed.body["role"], "admin");
    assert_eq!(signed.body["user_id"], admin_id);
    let answer = call(
        &app,
        Method::GET,
        "/api/v1/users",
        signed.without_csrf(),
        None,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn keys_that_may_not_sign_in_are_refused() {
    let app = spawn().await;
    let (_, _, no_web_ui) = user_with_key(&app, "carol", false).await;
    let (_, disabled_key, disabled) = user_with_key(&app, "dave", true).await;
    app.patch(
        &format!("/api/v1/keys/{disabled_key}"),
        json!({ "enabled": false }),
    )
    .await;
    for (token, status, code) in [
        (no_web_ui.as_str(), StatusCode::FORBIDDEN, "forbidden"),
        (disabled.as_str(), StatusCode::UNAUTHORIZED, "unauthorized"),
    ] {
        let answer = call(
            &app,
            Method::POST,
            "/ui/api/session",
            Browser::default(),
            Some(&json!({ "token": token })),
        )
        .await;
        assert_eq!(answer.status, status);
        assert_error(&answer.body, code, None);
        assert!(answer.set_cookie.is_empty());
    }
    assert_eq!(app.count("ui_sessions").await, 0);

    // Signing in from another origin is refused as well.
    let answer = call(
        &app,
        Method::POST,
        "/ui/api/session",
        Browser {
            origin: Some("http://evil.example"),
            ..Browser::default()
        },
        Some(&json!({ "token": ADMIN_TOKEN })),
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_error(&answer.body, "origin_refused", None);
    assert_eq!(app.count("ui_sessions").await, 0);
}

#[tokio::test]
async fn sign_out_revokes_the_session_and_clears_the_cookie() {
    let app = spawn().await;
    let signed = sign_in(&app, ADMIN_TOKEN).await;

    let answer = call(
        &app,
        Method::DELETE,
        "/ui/api/session",
        signed.without_csrf(),
        None,
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "sign-out needs CSRF");
    assert_error(&answer.body, "csrf_token_invalid", None);
    let answer = call(
        &app,
        Method::GET,
        "/api/v1/users",
        signed.without_csrf(),
        None,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "still signed in");

    let answer = call(
        &app,
        Method::DELETE,
        "/ui/api/session",
        signed.browser(),
        None,
    )
    .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert_eq!(
        answer.set_cookie,
        ["hubgate_ui=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"]
    );
    for path in ["/ui/api/session", "/api/v1/users"] {
        let answer = call(&app, Method::GET, path, signed.without_csrf(), None).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_error(&answer.body, "unauthorized", None);
    }
    let answer = call(
        &app,
        Method::DELETE,
        "/ui/api/session",
        signed.browser(),
        None,
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_stale_cookie_does_not_lock_its_address_out() {
    let app = spawn_with(|config| {
        config.admin_auth = ThrottlePolicy {
            max_failures: 3,
            window: Duration::from_secs(300),
            lockout: Duration::from_secs(600),
        }
    })
    .await;
    let signed = sign_in(&app, ADMIN_TOKEN).await;
    let answer = call(
        &app,
        Method::DELETE,
        "/ui/api/session",
        signed.browser(),
        None,
    )
    .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    // A tab left open keeps sending the signed-out cookie: 401 each time,
    // past the lockout's limit, and the address is not locked.
    for _ in 0..5 {
        let answer = call(
            &app,
            Method::GET,
            "/api/v1/users",
            signed.without_csrf(),
            None,
        )
        .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_error(&answer.body, "unauthorized", None);
    }
    let answer = call(
        &app,
        Method::POST,
        "/ui/api/session",
        Browser::default(),
        Some(&json!({ "token": ADMIN_TOKEN })),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
}

#[tokio::test]
async fn expired_sessions_are_refused_and_swept() {
    let app = spawn().await;
    let signed = sign_in(&app, ADMIN_TOKEN).await;
    sqlx::query("UPDATE ui_sessions SET expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    for path in ["/ui/api/session", "/api/v1/users"] {
        let answer = call(&app, Method::GET, path, signed.without_csrf(), None).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let answer = call(
        &app,
        Method::POST,
        "/api/v1/users",
        signed.browser(),
        Some(&json!({ "name": "late" })),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

    // The expiry sweep deletes them (the app's own sweep may have run
    // first), and so does the next sign-in.
    hubgate_control_plane::ui::delete_dead_sessions(&app.pool)
        .await
        .unwrap();
    let (left,): (i64,) = sqlx::query_as("SELECT count(*) FROM ui_sessions")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
    let _stale = sign_in(&app, ADMIN_TOKEN).await;
    sqlx::query("UPDATE ui_sessions SET expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    let fresh = sign_in(&app, ADMIN_TOKEN).await;
    let hashes: Vec<(String,)> = sqlx::query_as("SELECT id_hash FROM ui_sessions")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(hashes, [(hubgate_wire::hash_key(&fresh.id),)]);
}

#[tokio::test]
async fn the_sign_in_page_is_served_with_a_strict_content_security_policy() {
    let app = spawn().await;
    for (path, content_type) in [
        ("/ui", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
        ("/ui/pages/requests.js", "text/javascript; charset=utf-8"),
    ] {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let header = |name: &str| resp.headers()[name].to_str().unwrap().to_string();
        assert_eq!(header("content-type"), content_type);
        let csp = header("content-security-policy");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert_eq!(header("cache-control"), "no-store");
    }
    let page = app.client.get(app.url("/ui")).send().await.unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="/ui/app.js"></script>"#));
    assert!(!html.contains("<script>"), "no inline script");
    let missing = app
        .client
        .get(app.url("/ui/pages/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}
