//! The admin console in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, installed by `deploy/lib.sh`'s `ensure_chromium`),
//! driven through chromedriver's W3C WebDriver HTTP API, against the real
//! control plane and Postgres. Needs HUBGATE_CHROMIUM_BIN and
//! HUBGATE_CHROMEDRIVER_BIN (tests/run sets them).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
mod common;

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use common::{spawn, TestApp, ADMIN_TOKEN};

/// The WebDriver id key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long a page may take to reach an expected state.
const PATIENCE: Duration = Duration::from_secs(20);

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `source deploy/lib.sh; ensure_chromium` first")
    })
}

/// A chromedriver process and one browser session, both ended on drop.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    client: reqwest::Client,
    profile: PathBuf,
}

impl Browser {
    async fn start() -> Browser {
        let chromium = required_env("HUBGATE_CHROMIUM_BIN");
        let chromedriver = required_env("HUBGATE_CHROMEDRIVER_BIN");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Its own process group, so that the browser it starts can be ended
        // with it even when the test fails before closing the session.
        let driver = Command::new(chromedriver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let ready = match client.get(format!("{base}/status")).send().await {
                Ok(resp) => resp
                    .json::<Value>()
                    .await
                    .ok()
                    .map(|v| v["value"]["ready"] == true),
                Err(_) => None,
            };
            if ready == Some(true) {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile =
            std::env::temp_dir().join(format!("hubgate-chromium-{}-{port}", std::process::id()));
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let resp = client
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let created: Value = resp.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "new browser session: {created}");
        let session = created["value"]["sessionId"].as_str().unwrap().to_string();
        Browser {
            driver,
            base,
            session,
            client,
            profile,
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.client.request(method.clone(), url);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let answer: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {answer}");
        answer["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.command(reqwest::Method::GET, path, None).await
    }

    async fn open(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    async fn element(&self, css: &str) -> String {
        let found = self
            .post("/element", json!({ "using": "css selector", "value": css }))
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("{css}: {found}"))
            .to_string()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.post(&format!("/element/{id}/value"), json!({ "text": text }))
            .await;
    }

    async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.post(&format!("/element/{id}/click"), json!({})).await;
    }

    /// Runs `script` (a function body) in the page and returns its value.
    async fn script(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": [] }))
            .await
    }

    /// Runs `script`, whose promise's value is passed to the callback.
    async fn script_async(&self, script: &str) -> Value {
        let wrapped = format!(
            "const done = arguments[arguments.length - 1]; ({script}).then(done, e => done(String(e)));"
        );
        self.post("/execute/async", json!({ "script": wrapped, "args": [] }))
            .await
    }

    /// Waits until `script` returns `expected`.
    async fn wait_for(&self, script: &str, expected: Value) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.script(script).await;
            if value == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "`{script}` is {value}, expected {expected}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn cookies(&self) -> Vec<Value> {
        self.get("/cookie").await.as_array().unwrap().clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

async fn live_sessions(app: &TestApp) -> i64 {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM ui_sessions WHERE revoked_at IS NULL AND expires_at > now()",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    n
}

#[tokio::test]
async fn sign_in_and_out_in_a_real_browser() {
    let app = spawn().await;
    let browser = Browser::start().await;
    browser.open(&app.url("/ui")).await;
    browser
        .wait_for(
            "return document.getElementById('signed-out').hidden",
            json!(false),
        )
        .await;

    // A wrong token shows the API's error and signs nobody in.
    browser.type_into("#token", "not-a-token").await;
    browser.click("#sign-in").await;
    browser
        .wait_for(
            "return document.getElementById('error').textContent",
            json!("missing or invalid credentials"),
        )
        .await;
    assert_eq!(live_sessions(&app).await, 0);

    browser.type_into("#token", ADMIN_TOKEN).await;
    browser.click("#sign-in").await;
    browser
        .wait_for(
            "return document.getElementById('who').textContent",
            json!("admin"),
        )
        .await;
    assert_eq!(live_sessions(&app).await, 1);

    // The browser holds the cookie with its flags; the page's scripts
    // cannot read it.
    let cookies = browser.cookies().await;
    let session: Vec<&Value> = cookies
        .iter()
        .filter(|c| c["name"] == "hubgate_ui")
        .collect();
    assert_eq!(session.len(), 1, "{cookies:?}");
    assert_eq!(session[0]["httpOnly"], true);
    assert_eq!(session[0]["sameSite"], "Strict");
    assert_eq!(session[0]["path"], "/");
    assert!(
        session[0]["expiry"].is_u64(),
        "a persistent cookie with an expiry"
    );
    assert_eq!(browser.script("return document.cookie").await, json!(""));

    // The cookie authenticates the admin API from the page: reads as they
    // are, state changes only with the CSRF token.
    let read = browser
        .script_async("fetch('/api/v1/users').then(r => r.status)")
        .await;
    assert_eq!(read, json!(200));
    let unprotected = browser
        .script_async(
            "fetch('/api/v1/users', { method: 'POST', headers: { 'content-type': 'application/json' }, \
             body: JSON.stringify({ name: 'from-page' }) }).then(r => r.status)",
        )
        .await;
    assert_eq!(unprotected, json!(403));
    let protected = browser
        .script_async(
            "fetch('/ui/api/session').then(r => r.json()).then(s => fetch('/api/v1/users', { \
             method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': s.csrf_token }, \
             body: JSON.stringify({ name: 'from-page' }) })).then(r => r.status)",
        )
        .await;
    assert_eq!(protected, json!(201));

    // A reload keeps the session.
    browser.open(&app.url("/ui")).await;
    browser
        .wait_for(
            "return document.getElementById('who').textContent",
            json!("admin"),
        )
        .await;

    browser.click("#sign-out").await;
    browser
        .wait_for(
            "return document.getElementById('signed-out').hidden",
            json!(false),
        )
        .await;
    assert_eq!(live_sessions(&app).await, 0);
    let cookies = browser.cookies().await;
    assert!(
        cookies.iter().all(|c| c["name"] != "hubgate_ui"),
        "{cookies:?}"
    );
    let after = browser
        .script_async("fetch('/api/v1/users').then(r => r.status)")
        .await;
    assert_eq!(after, json!(401));
    browser.command(reqwest::Method::DELETE, "", None).await;
}
