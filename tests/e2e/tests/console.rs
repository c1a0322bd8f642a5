//! The admin console in a real headless Chromium against the real control
//! plane, Postgres and Envoy with the filter: an admin signs in, creates a
//! user and a key (shown once), a request sent through Envoy with that key
//! shows up in the log with its cost, a sensitive word added on the policy
//! page blocks the next one and the log shows why, the user signs in and
//! sees only their own data, both sign out. Screenshots of every page in
//! English and Chinese go to target/console-screenshots/.

use std::path::PathBuf;
use std::time::Duration;

use hubgate_e2e::browser::Browser;
use hubgate_e2e::{paths, Stack, StackOptions};
use serde_json::{json, Value};

const MODEL: &str = "claude-sonnet-4-5";
const WORD: &str = "Project Nightfall";

fn body(text: &str) -> Value {
    json!({"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": text}]})
}

/// Sends one Messages request through Envoy: (status, request id).
async fn send(stack: &Stack, key: &str, text: &str) -> (u16, String) {
    let (req, id) = stack.messages(key);
    let resp = req.json(&body(text)).send().await.unwrap();
    (resp.status().as_u16(), id)
}

fn screenshot_dir() -> PathBuf {
    paths::workspace_root().join("target/console-screenshots")
}

/// Opens `route` and waits until the page has rendered it.
async fn go(browser: &Browser, route: &str) {
    let route = serde_json::to_string(route).unwrap();
    browser.script(&format!("location.hash = {route}; return null")).await;
    browser.wait_for(&format!("return document.body.dataset.rendered === {route}"), json!(true)).await;
}

/// Waits until some route has rendered.
async fn wait_for_page(browser: &Browser) {
    browser.wait_for("return document.body.dataset.rendered !== undefined", json!(true)).await;
}

/// The page's own money format for `value` (en, up to six decimals).
async fn money(browser: &Browser, value: &str) -> String {
    let value = serde_json::to_string(value).unwrap();
    let script = format!(
        "return new Intl.NumberFormat('en-US', {{style: 'currency', currency: 'USD', minimumFractionDigits: 2, maximumFractionDigits: 6}}).format(Number({value}))"
    );
    browser.script(&script).await.as_str().unwrap().to_string()
}

async fn sign_in(browser: &Browser, token: &str) {
    browser.wait_for("return document.getElementById('signed-out').hidden", json!(false)).await;
    browser.type_into("#token", token).await;
    browser.click("#sign-in").await;
    browser.element("#nav a").await;
    wait_for_page(browser).await;
}

async fn sign_out(browser: &Browser) {
    browser.click("#sign-out").await;
    browser.wait_for("return document.getElementById('signed-out').hidden", json!(false)).await;
    let cookies = browser.cookies().await;
    assert!(cookies.iter().all(|c| c["name"] != "hubgate_ui"), "{cookies:?}");
}

async fn nav_pages(browser: &Browser) -> Value {
    browser.script("return [...document.querySelectorAll('#nav a')].map(a => a.dataset.page)").await
}

async fn no_missing_translations(browser: &Browser) {
    assert_eq!(browser.script("return [...window.hubgateMissingTranslations]").await, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_and_user_in_a_real_browser() {
    let stack = Stack::start(StackOptions::new("console")).await.unwrap();
    let ui = format!("{}/ui", stack.admin.base_url);
    let browser = Browser::start(1280, 900).await;
    browser.open(&ui).await;

    // A wrong token shows the API's error.
    browser.wait_for("return document.getElementById('signed-out').hidden", json!(false)).await;
    browser.type_into("#token", "not-a-token").await;
    browser.click("#sign-in").await;
    browser.wait_for_text("#error", "invalid credentials").await;

    sign_in(&browser, &stack.admin_token).await;
    assert_eq!(nav_pages(&browser).await, json!(["overview", "users", "providers", "policy", "requests", "sessions"]));
    // The session cookie's flags; the page's scripts cannot read it.
    let cookies = browser.cookies().await;
    let session: Vec<&Value> = cookies.iter().filter(|c| c["name"] == "hubgate_ui").collect();
    assert_eq!(session.len(), 1, "{cookies:?}");
    assert_eq!(session[0]["httpOnly"], true);
    assert_eq!(session[0]["sameSite"], "Strict");
    assert!(session[0]["expiry"].is_u64(), "a cookie with an expiry");
    assert_eq!(browser.script("return document.cookie").await, json!(""));
    // From the page, a state change without the session's CSRF token is refused.
    let unprotected = browser
        .script_async(
            "fetch('/api/v1/users', { method: 'POST', headers: { 'content-type': 'application/json' }, \
             body: JSON.stringify({ name: 'from-page' }) }).then(r => r.status)",
        )
        .await;
    assert_eq!(unprotected, json!(403));

    // Create a user; a 422 lands next to its field and nothing is created.
    go(&browser, "#/users").await;
    browser.click("#new-user").await;
    let name = format!("console-{}", hubgate_e2e::random_lower(8));
    browser.type_into("dialog [data-field=name] input", &name).await;
    browser.type_into("dialog [data-field=daily_reset_time] input", "25:99").await;
    browser.click("dialog button[type=submit]").await;
    browser.wait_for("return document.querySelector('dialog [data-field=daily_reset_time] .field-error').textContent.length > 0", json!(true)).await;
    assert_eq!(browser.script("return document.querySelector('dialog [data-field=daily_reset_time] input').getAttribute('aria-invalid')").await, json!("true"));
    let users = stack.admin.get("/api/v1/users").await.unwrap();
    assert!(users.as_array().unwrap().iter().all(|u| u["name"] != name.as_str()), "{users}");
    browser.type_into("dialog [data-field=daily_reset_time] input", "00:00").await;
    browser.click("dialog button[type=submit]").await;
    browser.wait_for("return /^#\\/users\\/\\d+$/.test(location.hash)", json!(true)).await;
    wait_for_page(&browser).await;
    let user_id: i64 = browser.script("return Number(location.hash.split('/')[2])").await.as_i64().unwrap();
    browser.wait_for_text("#page h1", &name).await;

    // A key, shown once with a copy button, then never again.
    browser.click("#new-key").await;
    browser.type_into("dialog [data-field=name] input", "laptop").await;
    browser.click("dialog [data-field=can_login_web_ui] input").await;
    browser.click("dialog button[type=submit]").await;
    browser.element("#raw-key").await;
    let raw = browser.script("return document.getElementById('raw-key').textContent").await.as_str().unwrap().to_string();
    assert!(raw.starts_with("sk-") && raw.len() > 40, "{raw}");
    browser.element("#copy-key").await;
    browser.click("#close-key").await;
    browser.wait_for_text("#keys", "laptop").await;
    let shown = browser.script("return document.body.innerText").await;
    assert!(!shown.as_str().unwrap().contains(&raw), "the raw key is shown only once");

    // A request through Envoy with that key is in the log with its cost.
    let (status, request_id) = send(&stack, &raw, "hello from the console test").await;
    assert_eq!(status, 200);
    let row = stack.admin.wait_for_request(user_id, &request_id, Duration::from_secs(20)).await.unwrap();
    let cost = row["cost_usd"].as_str().unwrap().to_string();
    assert!(hubgate_e2e::decimal(&row["cost_usd"]).unwrap() > rust_decimal::Decimal::ZERO, "{row}");
    let expected_cost = money(&browser, &cost).await;
    go(&browser, &format!("#/requests?user_id={user_id}")).await;
    browser.wait_for_text("#page td.cost", &expected_cost).await;
    // Keyboard: a focused row opens its detail with Enter.
    browser.script("document.querySelector('#page tr.clickable').focus(); return null").await;
    browser.keys("\u{E007}").await;
    browser.wait_for_text("#detail-cost", &expected_cost).await;
    browser.wait_for_text("#request-detail", MODEL).await;
    browser.screenshot(&screenshot_dir().join("request-detail-en.png")).await;
    browser.script("document.querySelector('dialog').close(); return null").await;

    // A sensitive word added on the policy page: the test box names it, the
    // next request is blocked, and the log shows why.
    go(&browser, "#/policy").await;
    browser.type_into("#add-word [data-field=word] input", WORD).await;
    browser.click("#add-word button[type=submit]").await;
    browser.wait_for_text("#words table", WORD).await;
    browser.type_into("#test-text", "tell me about project NIGHTFALL").await;
    browser.click("#test-word button[type=submit]").await;
    browser.wait_for_text("#test-verdict", WORD).await;
    // A request filter from its dialog, and the guard settings saved.
    browser.click("#new-filter").await;
    browser.type_into("dialog [data-field=name] input", "tag-gateway").await;
    browser.type_into("dialog [data-field=target] input", "x-console-tag").await;
    browser.type_into("dialog [data-field=replacement] textarea", "\"from-console\"").await;
    browser.click("dialog button[type=submit]").await;
    browser.wait_for_text("#filters table", "x-console-tag").await;
    let filters = stack.admin.get("/api/v1/request-filters").await.unwrap();
    let filter = filters.as_array().unwrap().iter().find(|f| f["name"] == "tag-gateway").cloned().unwrap();
    assert_eq!((filter["scope"].as_str(), filter["action"].as_str(), filter["binding"].as_str()), (Some("header"), Some("set"), Some("global")));
    assert_eq!(filter["replacement"], "from-console");
    browser.click("#settings-form [data-field=intercept_anthropic_warmup_requests] input").await;
    browser.click("#settings-form button[type=submit]").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while stack.admin.get("/api/v1/settings").await.unwrap()["intercept_anthropic_warmup_requests"] != true {
        assert!(tokio::time::Instant::now() < deadline, "the settings were not saved");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut sent = 1;
    let blocked_id = loop {
        let (status, id) = send(&stack, &raw, "tell me about project NIGHTFALL").await;
        sent += 1;
        if status == 400 {
            break id;
        }
        assert_eq!(status, 200);
        assert!(tokio::time::Instant::now() < deadline, "the word never took effect");
        tokio::time::sleep(stack.poll_interval).await;
    };
    stack.admin.wait_for_request(user_id, &blocked_id, Duration::from_secs(20)).await.unwrap();
    go(&browser, "#/requests?blocked_by=sensitive_word").await;
    browser.wait_for_text("#page table", "sensitive_word").await;
    browser.click("#page tr.clickable").await;
    browser.wait_for_text("#blocked-reason", WORD).await;
    browser.script("document.querySelector('dialog').close(); return null").await;

    // A provider created on its page: its credential is write-only, an
    // edit that leaves it empty keeps it, and its circuit can be reset.
    let secret = "sk-upstream-console-secret-0123456789";
    go(&browser, "#/providers").await;
    browser.click("#new-provider").await;
    browser.type_into("dialog [data-field=name] input", "console-backup").await;
    browser.script("document.querySelector('dialog [data-field=type] select').value = 'openai-compatible'; return null").await;
    browser.type_into("dialog [data-field=base_url] input", "http://127.0.0.1:9/v1").await;
    browser.type_into("dialog [data-field=api_key] input", secret).await;
    browser.type_into("dialog [data-field=priority] input", "5").await;
    browser.click("dialog [data-field=enabled] input").await;
    browser.click("dialog button[type=submit]").await;
    browser.wait_for("return /^#\\/providers\\/\\d+$/.test(location.hash)", json!(true)).await;
    browser.wait_for_text("#provider-detail", "openai-compatible").await;
    let backup_id: i64 = browser.script("return Number(location.hash.split('/')[2])").await.as_i64().unwrap();
    let backup = stack.admin.get(&format!("/api/v1/providers/{backup_id}")).await.unwrap();
    assert_eq!(backup["type"], "openai-compatible", "{backup}");
    assert_eq!(backup["priority"], 5, "{backup}");
    assert_eq!(backup["enabled"], false, "{backup}");
    let shown = browser.script("return document.body.innerText").await;
    assert!(!shown.as_str().unwrap().contains(secret), "the credential is never shown");
    browser.wait_for_text("#provider-detail", backup["api_key_masked"].as_str().unwrap()).await;
    browser.click("#edit-provider").await;
    assert_eq!(browser.script("return document.querySelector('dialog [data-field=api_key] input').value").await, json!(""));
    browser.type_into("dialog [data-field=weight] input", "3").await;
    browser.click("dialog button[type=submit]").await;
    browser.wait_for("return document.querySelector('dialog') === null", json!(true)).await;
    let edited = stack.admin.get(&format!("/api/v1/providers/{backup_id}")).await.unwrap();
    assert_eq!(edited["weight"], 3, "{edited}");
    assert_eq!(edited["api_key_masked"], backup["api_key_masked"], "an empty credential field keeps the credential");
    browser.click("#reset-circuit").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let circuit = stack.admin.get(&format!("/api/v1/providers/{backup_id}/circuit")).await.unwrap();
        if !circuit["reset_at"].is_null() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{circuit}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every page, in English and in Chinese.
    let provider_id = stack.provider_id().unwrap();
    let pages = [
        ("overview", "#/overview".to_string()),
        ("users", "#/users".to_string()),
        ("user", format!("#/users/{user_id}")),
        ("providers", format!("#/providers/{provider_id}")),
        ("policy", "#/policy".to_string()),
        ("requests", "#/requests".to_string()),
        ("sessions", "#/sessions".to_string()),
    ];
    for lang in ["en", "zh"] {
        browser.script(&format!("localStorage.setItem('hubgate.lang', '{lang}'); return null")).await;
        for (name, route) in &pages {
            go(&browser, route).await;
            browser.screenshot(&screenshot_dir().join(format!("{name}-{lang}.png"))).await;
        }
        no_missing_translations(&browser).await;
    }
    browser.wait_for_text("#nav", "概览").await;
    // The overview charts the traffic just sent.
    browser.script("localStorage.setItem('hubgate.lang', 'en'); return null").await;
    go(&browser, "#/overview?window=hour").await;
    assert!(browser.script("return document.querySelectorAll('svg.chart rect.bar').length").await.as_u64().unwrap() > 0);
    // The first card is the window's request count (the stack's own warm-up
    // request included), as the API gives it.
    let overview = stack.admin.get("/api/v1/overview?window=hour").await.unwrap();
    let requests = overview["totals"]["requests"].as_i64().unwrap();
    assert!(requests >= sent, "{overview}");
    assert_eq!(browser.script("return document.querySelector('.cards .card-value').textContent").await, json!(requests.to_string()));
    // Readable on a phone: nothing wider than the screen but scrolling tables.
    browser.set_window(390, 844).await;
    go(&browser, "#/requests").await;
    browser.screenshot(&screenshot_dir().join("requests-phone-en.png")).await;
    assert_eq!(browser.script("return document.documentElement.scrollWidth <= window.innerWidth + 1").await, json!(true));
    browser.set_window(1280, 900).await;
    sign_out(&browser).await;

    // Another user's traffic, which the first user must not see.
    let (_, other_key) = stack.user_with_key(json!({})).await.unwrap();
    let (status, other_request) = send(&stack, &other_key.raw, "someone else").await;
    assert_eq!(status, 200);

    // The user signs in with their own key: their pages only, their rows only.
    sign_in(&browser, &raw).await;
    assert_eq!(nav_pages(&browser).await, json!(["account", "requests", "sessions"]));
    browser.wait_for_text("#page", &name).await;
    browser.wait_for_text("#keys", "laptop").await;
    assert_eq!(browser.script("return document.querySelector('#new-key, #edit-user') === null").await, json!(true));
    go(&browser, "#/requests").await;
    browser.wait_for_text(".pager", &format!("({sent} ")).await;
    let text = browser.script("return document.body.innerText").await;
    assert!(!text.as_str().unwrap().contains(&other_request));
    let forbidden = browser.script_async("fetch('/api/v1/users').then(r => r.status)").await;
    assert_eq!(forbidden, json!(403));
    browser.screenshot(&screenshot_dir().join("account-requests-en.png")).await;
    go(&browser, "#/account").await;
    browser.screenshot(&screenshot_dir().join("account-en.png")).await;
    sign_out(&browser).await;
    assert_eq!(browser.script_async("fetch('/api/v1/requests').then(r => r.status)").await, json!(401));
    browser.close().await;
}
