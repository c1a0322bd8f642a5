//! The `hubgate-cp` binary's contract: bootstrap, migrate, serve.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_hubgate-cp");

fn run(db: &TestDb, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env_remove("HUBGATE_ADMIN_TOKEN")
        .env_remove("HUBGATE_DEMO_KEY")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run hubgate-cp");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn snapshot_of_state(pool: &sqlx::PgPool) -> Value {
    let row: (Value,) = sqlx::query_as(
        "SELECT json_build_object( \
           'tokens', (SELECT json_agg(json_build_array(name, token_hash, revoked_at) ORDER BY id) FROM admin_tokens), \
           'users', (SELECT json_agg(json_build_array(id, name, enabled, deleted_at) ORDER BY id) FROM users), \
           'keys', (SELECT json_agg(json_build_array(id, user_id, key_hash, enabled, deleted_at) ORDER BY id) FROM keys), \
           'providers', (SELECT json_agg(json_build_array(id, name, type, base_url, credential, enabled) ORDER BY id) FROM providers), \
           'prices', (SELECT count(*) FROM model_prices), \
           'policy', (SELECT json_build_array(version, key_epoch) FROM policy_state))",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    row.0
}

#[tokio::test]
async fn bootstrap_is_idempotent() {
    let db = TestDb::create().await;
    let args = [
        "bootstrap",
        "--admin-token",
        "admin-token-abcdefgh",
        "--demo-key",
        "sk-demo-0123456789abcdefghij",
        "--demo-provider-url",
        "http://127.0.0.1:18080",
        "--demo-provider-key",
        "mock-provider-key-123456",
    ];
    let (ok, stdout, stderr) = run(&db, &args);
    assert!(ok, "{stderr}");
    // Masked: this output lands in job and CI logs.
    assert_eq!(
        stdout,
        "HUBGATE_ADMIN_TOKEN=admin-…efgh\nHUBGATE_DEMO_KEY=sk-…ghij\n"
    );
    for secret in [
        "admin-token-abcdefgh",
        "sk-demo-0123456789abcdefghij",
        "mock-provider-key-123456",
    ] {
        assert!(!stdout.contains(secret), "{stdout}");
        assert!(!stderr.contains(secret), "{stderr}");
    }

    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let first = snapshot_of_state(&pool).await;
    assert_eq!(first["users"].as_array().unwrap().len(), 1);
    assert_eq!(first["users"][0][1], "demo");
    assert_eq!(
        first["keys"][0][2],
        hubgate_wire::hash_key("sk-demo-0123456789abcdefghij")
    );
    assert_eq!(first["providers"][0][1], "demo");
    assert_eq!(first["providers"][0][2], "claude");
    assert_eq!(first["providers"][0][3], "http://127.0.0.1:18080");
    assert_eq!(
        first["tokens"][0][1],
        hubgate_wire::hash_key("admin-token-abcdefgh")
    );

    let (ok, stdout2, stderr) = run(&db, &args);
    assert!(ok, "{stderr}");
    assert_eq!(stdout2, stdout);
    assert_eq!(
        snapshot_of_state(&pool).await,
        first,
        "second bootstrap changed the state"
    );

    // A changed provider URL/credential updates the same row.
    let mut changed = args;
    changed[6] = "http://127.0.0.1:18081";
    let (ok, _, stderr) = run(&db, &changed);
    assert!(ok, "{stderr}");
    let third = snapshot_of_state(&pool).await;
    assert_eq!(third["providers"].as_array().unwrap().len(), 1);
    assert_eq!(third["providers"][0][3], "http://127.0.0.1:18081");
    assert!(third["policy"][0].as_i64() > first["policy"][0].as_i64());

    // Token only: no demo lines, no demo objects needed.
    let (ok, stdout, stderr) = run(
        &db,
        &["bootstrap", "--admin-token", "second-admin-token-xyz"],
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "HUBGATE_ADMIN_TOKEN=second-…-xyz\n");

    // Bad input fails without writing.
    let (ok, _, _) = run(&db, &["bootstrap", "--admin-token", "short"]);
    assert!(!ok);
    let (ok, _, _) = run(
        &db,
        &[
            "bootstrap",
            "--admin-token",
            "admin-token-abcdefgh",
            "--demo-provider-url",
            "http://x",
        ],
    );
    assert!(!ok, "url without key is refused");
    pool.close().await;
}

/// Waits up to 30 s for `child` to exit; kills it and fails with `message`
/// when it does not (it would be serving).
fn wait_for_exit(child: &mut std::process::Child, message: &str) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("{message}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn serve_refuses_a_weak_internal_token() {
    let db = TestDb::create().await;
    for token in ["tiny-tok", "fifteen-chars-x", "sixteen chars ok"] {
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--internal-token",
                token,
            ])
            .env("DATABASE_URL", &db.url)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        // A token it wrongly accepts would leave it serving: stop it then.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                panic!("serve accepted internal token {token:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(!status.success(), "{token:?}");
        assert!(
            stderr.contains("HUBGATE_INTERNAL_TOKEN must"),
            "{token:?}: {stderr}"
        );
        assert!(!stderr.contains(token), "the token is not echoed: {stderr}");
    }
}

#[tokio::test]
async fn migrate_and_serve() {
    let db = TestDb::create().await;
    let (ok, stdout, stderr) = run(&db, &["migrate"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.is_empty(),
        "migrate prints nothing on stdout: {stdout}"
    );
    let (ok, _, stderr) = run(&db, &["migrate"]);
    assert!(ok, "second migrate: {stderr}");

    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--internal-listen",
            "127.0.0.1:0",
        ])
        .env("DATABASE_URL", &db.url)
        .env("HUBGATE_INTERNAL_TOKEN", "internal-token-for-serve")
        .env_remove("HUBGATE_INTERNAL_ALLOW")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut reader = BufReader::new(stdout);
        let mut lines = [String::new(), String::new()];
        for line in &mut lines {
            reader.read_line(line)?;
        }
        Ok::<_, std::io::Error>(lines)
    })
    .await
    .unwrap()
    .unwrap();
    let marker = |line: &str, prefix: &str| {
        let addr = line
            .trim()
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("expected {prefix}, got {line:?}"))
            .to_string();
        assert!(addr.starts_with("127.0.0.1:"), "{addr}");
        addr
    };
    let addr = marker(&lines[0], "HUBGATE_CP_LISTENING=");
    let internal_addr = marker(&lines[1], "HUBGATE_CP_INTERNAL_LISTENING=");
    assert_ne!(addr, internal_addr);

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for base in [&addr, &internal_addr] {
        let health = client
            .get(format!("http://{base}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
    }
    // The internal API answers on its own listener only; the default
    // allow-list lets loopback in.
    let snapshot = |base: &str| {
        client
            .get(format!("http://{base}{}", hubgate_wire::SNAPSHOT_PATH))
            .bearer_auth("internal-token-for-serve")
            .send()
    };
    assert_eq!(snapshot(&internal_addr).await.unwrap().status(), 200);
    assert_eq!(snapshot(&addr).await.unwrap().status(), 404);

    // SIGTERM stops it cleanly.
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn serve_refuses_a_bad_internal_allow_list() {
    let db = TestDb::create().await;
    for allow in ["10.0.0.0/33", "", "10.0.0.0/8,intranet"] {
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--internal-listen",
                "127.0.0.1:0",
            ])
            .env("DATABASE_URL", &db.url)
            .env("HUBGATE_INTERNAL_TOKEN", "internal-token-for-serve")
            .env("HUBGATE_INTERNAL_ALLOW", allow)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let status = wait_for_exit(&mut child, &format!("serve accepted allow-list {allow:?}"));
        let mut stdout = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(!status.success(), "{allow:?} accepted");
        assert!(stdout.is_empty(), "{allow:?}: nothing was served: {stdout}");
        assert!(
            stderr.contains("HUBGATE_INTERNAL_ALLOW"),
            "{allow:?}: {stderr}"
        );
    }
}

#[tokio::test]
async fn bootstrap_never_takes_over_or_revives_a_key() {
    use hubgate_control_plane::bootstrap::{self, BootstrapArgs};

    let app = crate::common::spawn().await;
    let args = |demo_key: &str| BootstrapArgs {
        admin_token: crate::common::ADMIN_TOKEN.to_string(),
        demo_user: "demo".to_string(),
        demo_key: Some(demo_key.to_string()),
        demo_provider: None,
    };
    let key_row = |id: i64| {
        let pool = app.pool.clone();
        async move {
            let row: (i64, bool, bool) = sqlx::query_as(
                "SELECT user_id, enabled, deleted_at IS NOT NULL FROM keys WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
            row
        }
    };

    // Another user's key is not moved to the demo user.
    let alice = app.create_user("alice").await;
    let alice_id = alice["id"].as_i64().unwrap();
    let (key, raw) = app
        .create_key(alice_id, serde_json::json!({ "name": "k" }))
        .await;
    let key_id = key["id"].as_i64().unwrap();
    let before = app.policy().await;
    let err = bootstrap::run(&app.pool, &args(&raw)).await.unwrap_err();
    assert!(
        err.to_string().contains("choose another demo key"),
        "{err:#}"
    );
    assert!(!err.to_string().contains(&raw), "{err:#}");
    assert_eq!(key_row(key_id).await, (alice_id, true, false));
    assert_eq!(app.policy().await, before);
    assert_eq!(
        app.count("users WHERE name = 'demo'").await,
        0,
        "nothing written"
    );

    // The demo user's own key: an admin's disable stands.
    let demo_key = "sk-demo-0123456789abcdefghij";
    assert!(bootstrap::run(&app.pool, &args(demo_key)).await.unwrap());
    let (demo_key_id,): (i64,) = sqlx::query_as("SELECT id FROM keys WHERE key_hash = $1")
        .bind(hubgate_wire::hash_key(demo_key))
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let (status, _) = app
        .patch(
            &format!("/api/v1/keys/{demo_key_id}"),
            serde_json::json!({ "enabled": false }),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let (demo_user_id, _, _) = key_row(demo_key_id).await;
    assert!(
        !bootstrap::run(&app.pool, &args(demo_key)).await.unwrap(),
        "nothing changed"
    );
    assert_eq!(key_row(demo_key_id).await, (demo_user_id, false, false));

    // A deleted key is not brought back.
    app.delete(&format!("/api/v1/keys/{demo_key_id}")).await;
    let before = app.policy().await;
    let err = bootstrap::run(&app.pool, &args(demo_key))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("deleted"), "{err:#}");
    assert_eq!(key_row(demo_key_id).await, (demo_user_id, false, true));
    assert_eq!(app.policy().await, before);
}
