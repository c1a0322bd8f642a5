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
    assert_eq!(
        stdout,
        "HUBGATE_ADMIN_TOKEN=admin-token-abcdefgh\nHUBGATE_DEMO_KEY=sk-demo-0123456789abcdefghij\n"
    );

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
    assert_eq!(stdout, "HUBGATE_ADMIN_TOKEN=second-admin-token-xyz\n");

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
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("DATABASE_URL", &db.url)
        .env("HUBGATE_INTERNAL_TOKEN", "internal-token-for-serve")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .unwrap()
    .unwrap();
    let addr = line
        .trim()
        .strip_prefix("HUBGATE_CP_LISTENING=")
        .unwrap_or_else(|| panic!("bad line {line:?}"))
        .to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let health = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let snap = client
        .get(format!("http://{addr}{}", hubgate_wire::SNAPSHOT_PATH))
        .bearer_auth("internal-token-for-serve")
        .send()
        .await
        .unwrap();
    assert_eq!(snap.status(), 200);

    // SIGTERM stops it cleanly.
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}
