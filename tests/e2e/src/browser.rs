//! A real headless Chromium (Debian's `chromium` and `chromium-driver`,
//! installed by `deploy/lib.sh`'s `ensure_chromium`), driven through
//! chromedriver's W3C WebDriver HTTP API. Needs HUBGATE_CHROMIUM_BIN and
//! HUBGATE_CHROMEDRIVER_BIN (tests/run sets them). Test support: a failed
//! WebDriver command panics with its answer.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

/// The WebDriver id key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long a page may take to reach an expected state.
pub const PATIENCE: Duration = Duration::from_secs(20);

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run `source deploy/lib.sh; ensure_chromium` first"))
}

/// A chromedriver process and one browser session, both ended on drop.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    client: reqwest::Client,
    profile: PathBuf,
}

impl Browser {
    /// A headless browser with a `width`×`height` window.
    pub async fn start(width: u32, height: u32) -> Browser {
        let chromium = required_env("HUBGATE_CHROMIUM_BIN");
        let chromedriver = required_env("HUBGATE_CHROMEDRIVER_BIN");
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
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
        let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let ready = match client.get(format!("{base}/status")).send().await {
                Ok(resp) => resp.json::<Value>().await.ok().map(|v| v["value"]["ready"] == true),
                Err(_) => None,
            };
            if ready == Some(true) {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = std::env::temp_dir().join(format!("hubgate-chromium-{}-{port}", std::process::id()));
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--hide-scrollbars", format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let resp = client.post(format!("{base}/session")).json(&capabilities).send().await.unwrap();
        let status = resp.status();
        let created: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "new browser session: {created}");
        let session = created["value"]["sessionId"].as_str().unwrap().to_string();
        Browser { driver, base, session, client, profile }
    }

    pub async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
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

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> Value {
        self.command(reqwest::Method::GET, path, None).await
    }

    pub async fn open(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    /// The first element matching `css`, waiting for it to appear.
    pub async fn element(&self, css: &str) -> String {
        let selector = serde_json::to_string(css).unwrap();
        self.wait_for(&format!("return document.querySelector({selector}) !== null"), json!(true)).await;
        let found = self.post("/element", json!({ "using": "css selector", "value": css })).await;
        found[ELEMENT].as_str().unwrap_or_else(|| panic!("{css}: {found}")).to_string()
    }

    /// Types `text` into the element matching `css` (after clearing it).
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.post(&format!("/element/{id}/clear"), json!({})).await;
        self.post(&format!("/element/{id}/value"), json!({ "text": text })).await;
    }

    pub async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.post(&format!("/element/{id}/click"), json!({})).await;
    }

    /// Presses keys (WebDriver key codes, e.g. "\u{E004}" for Tab) in the
    /// focused element.
    pub async fn keys(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|c| [json!({"type": "keyDown", "value": c.to_string()}), json!({"type": "keyUp", "value": c.to_string()})])
            .collect();
        self.post("/actions", json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] })).await;
    }

    /// Runs `script` (a function body) in the page and returns its value.
    pub async fn script(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": [] })).await
    }

    /// Runs `script`, whose promise's value is passed to the callback.
    pub async fn script_async(&self, script: &str) -> Value {
        let wrapped = format!("const done = arguments[arguments.length - 1]; ({script}).then(done, e => done(String(e)));");
        self.post("/execute/async", json!({ "script": wrapped, "args": [] })).await
    }

    /// Waits until `script` returns `expected`.
    pub async fn wait_for(&self, script: &str, expected: Value) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.script(script).await;
            if value == expected {
                return;
            }
            assert!(Instant::now() < deadline, "`{script}` is {value}, expected {expected}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the text of the first element matching `css` contains
    /// `needle`, and returns that text.
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> String {
        let selector = serde_json::to_string(css).unwrap();
        let script = format!("const e = document.querySelector({selector}); return e ? e.innerText : null");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.script(&script).await;
            if let Some(text) = value.as_str() {
                if text.contains(needle) {
                    return text.to_string();
                }
            }
            assert!(Instant::now() < deadline, "{css} never contained {needle:?}; it is {value}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn cookies(&self) -> Vec<Value> {
        self.get("/cookie").await.as_array().unwrap().clone()
    }

    /// Writes a PNG of the whole viewport to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let data = self.get("/screenshot").await;
        let png = base64::engine::general_purpose::STANDARD.decode(data.as_str().unwrap()).unwrap();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }

    pub async fn set_window(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({ "width": width, "height": height })).await;
    }

    pub async fn close(&self) {
        self.command(reqwest::Method::DELETE, "", None).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.driver.id())]).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
