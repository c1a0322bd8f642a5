//! Types holding secrets never print them through `Debug`.

use hubgate_control_plane::admin::keys::{Key, KeyCreated};
use hubgate_control_plane::bootstrap::{BootstrapArgs, DemoProvider};
use hubgate_control_plane::config::redact_url;
use hubgate_control_plane::Config;

#[test]
fn config_debug_hides_the_token_and_the_database_password() {
    let config = Config::new(
        "postgres://hub:db-pass-1234@db.internal:5432/hubgate?sslmode=require&password=query-pass-1234"
            .to_string(),
        "internal-token-secret-0123456789".to_string(),
        "127.0.0.1:8081".parse().unwrap(),
        "127.0.0.1:8082".parse().unwrap(),
    );
    let shown = format!("{config:?}");
    for secret in ["db-pass-1234", "query-pass-1234", "internal-token-secret"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(
        shown.contains("postgres://hub:…@db.internal:5432/hubgate?sslmode=require&password=…"),
        "{shown}"
    );

    assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    assert_eq!(redact_url("postgres://u:p/w@h/db"), "postgres://u:…@h/db");
    assert_eq!(
        redact_url("postgres:///db?host=/tmp&PASSWORD=x"),
        "postgres:///db?host=/tmp&PASSWORD=…"
    );
}

#[test]
fn bootstrap_args_debug_masks_the_secrets() {
    let args = BootstrapArgs {
        admin_token: "hgadm-admin-secret-0123456789".to_string(),
        demo_user: "demo".to_string(),
        demo_key: Some("sk-demo-secret-0123456789".to_string()),
        demo_provider: Some(DemoProvider {
            base_url: "http://127.0.0.1:9".to_string(),
            api_key: "provider-secret-0123456789".to_string(),
        }),
    };
    let shown = format!("{args:?}");
    for secret in ["admin-secret", "demo-secret", "provider-secret"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(shown.contains("hgadm-…6789"), "{shown}");
    assert!(shown.contains("http://127.0.0.1:9"), "{shown}");
}

#[test]
fn key_created_debug_masks_the_raw_key() {
    let now = chrono::Utc::now();
    let raw = "sk-RawKeySecret0123456789abcdefghijklmnopqrstuvwx".to_string();
    let created = KeyCreated {
        meta: Key {
            id: 1,
            user_id: 1,
            name: "k".to_string(),
            key_masked: hubgate_wire::mask_key(&raw),
            enabled: true,
            expires_at: None,
            can_login_web_ui: false,
            limit_total_usd: None,
            limit_5h_usd: None,
            limit_5h_mode: "rolling".to_string(),
            limit_daily_usd: None,
            limit_weekly_usd: None,
            limit_monthly_usd: None,
            limit_concurrent_sessions: None,
            provider_group: None,
            cost_reset_at: None,
            created_at: now,
            updated_at: now,
        },
        key: raw.clone(),
    };
    let shown = format!("{created:?}");
    assert!(!shown.contains("RawKeySecret"), "{shown}");
    assert!(shown.contains("sk-…uvwx"), "{shown}");
}
