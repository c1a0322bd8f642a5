//! Failed admin authentication is throttled per client address.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use hubgate_control_plane::throttle::{AuthThrottle, ThrottlePolicy};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{assert_error, client_from, send_with, spawn_with, ADMIN_TOKEN};

const MAX: u32 = 3;

fn small_policy() -> ThrottlePolicy {
    ThrottlePolicy {
        max_failures: MAX,
        window: Duration::from_secs(60),
        lockout: Duration::from_secs(120),
    }
}

#[tokio::test]
async fn repeated_failures_lock_the_address_out() {
    let app = spawn_with(|config| config.admin_auth = small_policy()).await;
    // Failures that are not guesses do not count: a valid non-admin key
    // (403) and a disabled admin's key (401).
    let plain = app.create_user("plain").await;
    let (_, plain_key) = app
        .create_key(plain["id"].as_i64().unwrap(), json!({ "name": "k" }))
        .await;
    let admin = app
        .post("/api/v1/users", json!({ "name": "root", "role": "admin" }))
        .await
        .1;
    let (_, disabled_key) = app
        .create_key(admin["id"].as_i64().unwrap(), json!({ "name": "k" }))
        .await;
    app.patch(
        &format!("/api/v1/users/{}", admin["id"]),
        json!({ "enabled": false }),
    )
    .await;
    for _ in 0..MAX + 2 {
        let (status, _) = app
            .send(Method::GET, "/api/v1/users", Some(&plain_key), None)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = app
            .send(Method::GET, "/api/v1/users", Some(&disabled_key), None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    // MAX unknown or missing credentials are answered 401 ...
    for token in [Some("guess-1"), None, Some("sk-guess-3")] {
        let (status, body) = app.send(Method::GET, "/api/v1/users", token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_error(&body, "unauthorized", None);
    }
    // ... then the address is locked out: 429 with Retry-After, for a
    // correct token too, on every admin route.
    for token in ["guess-4", ADMIN_TOKEN] {
        let resp = app
            .client
            .post(app.url("/api/v1/users"))
            .bearer_auth(token)
            .json(&json!({ "name": "during-lockout" }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS, "{token}");
        let retry_after: u64 = resp.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((110..=120).contains(&retry_after), "{retry_after}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_error(&body, "auth_locked_out", None);
    }
    assert_eq!(app.count("users WHERE name = 'during-lockout'").await, 0);
    // Public routes stay open.
    let (status, metrics) = app.send(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains("hubgate_cp_admin_auth_failures_total 3\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hubgate_cp_admin_auth_lockouts_total 1\n"),
        "{metrics}"
    );

    // Another client address is unaffected, and its own failures count
    // for it alone.
    let other = client_from(Some("127.0.0.2".parse().unwrap()));
    let users = app.url("/api/v1/users");
    let (status, _) = send_with(&other, Method::GET, &users, Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    for _ in 0..MAX {
        let (status, _) = send_with(&other, Method::GET, &users, Some("nope"), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = send_with(&other, Method::GET, &users, Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let third = client_from(Some("127.0.0.3".parse().unwrap()));
    let (status, _) = send_with(&third, Method::GET, &users, Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn the_throttle_counts_per_address_within_the_window() {
    let throttle = AuthThrottle::new(small_policy(), 100);
    let start = Instant::now();
    let a = ip("192.0.2.1");
    let b = ip("192.0.2.2");
    assert!(!throttle.record_failure(a, start));
    assert!(!throttle.record_failure(a, start + Duration::from_secs(1)));
    assert!(!throttle.record_failure(b, start + Duration::from_secs(1)));
    assert_eq!(throttle.locked_for(a, start), None);
    assert!(
        throttle.record_failure(a, start + Duration::from_secs(2)),
        "third failure locks"
    );
    assert_eq!(
        throttle.locked_for(a, start + Duration::from_secs(2)),
        Some(Duration::from_secs(120))
    );
    assert_eq!(throttle.locked_for(b, start + Duration::from_secs(2)), None);
    // The lockout ends on time.
    assert!(throttle
        .locked_for(a, start + Duration::from_secs(121))
        .is_some());
    assert_eq!(
        throttle.locked_for(a, start + Duration::from_secs(122)),
        None
    );

    // Failures further apart than the window never add up.
    let c = ip("192.0.2.3");
    for i in 0..10 {
        assert!(!throttle.record_failure(c, start + Duration::from_secs(61 * i)));
    }
}

#[test]
fn ipv6_clients_are_grouped_by_64() {
    let throttle = AuthThrottle::new(small_policy(), 100);
    let now = Instant::now();
    for host in ["2001:db8:0:1::1", "2001:db8:0:1::2", "2001:db8:0:1:ffff::3"] {
        throttle.record_failure(ip(host), now);
    }
    assert!(throttle.locked_for(ip("2001:db8:0:1::99"), now).is_some());
    assert_eq!(throttle.locked_for(ip("2001:db8:0:2::1"), now), None);
    // An IPv4-mapped address is its IPv4 address.
    for _ in 0..MAX {
        throttle.record_failure(ip("::ffff:198.51.100.7"), now);
    }
    assert!(throttle.locked_for(ip("198.51.100.7"), now).is_some());
}

#[test]
fn memory_stays_bounded_under_a_flood_of_addresses() {
    let capacity = 1000;
    let throttle = AuthThrottle::new(small_policy(), capacity);
    let now = Instant::now();
    let locked = ip("198.51.100.1");
    for _ in 0..MAX {
        throttle.record_failure(locked, now);
    }
    for i in 0..50_000u32 {
        let [_, b, c, d] = i.to_be_bytes();
        throttle.record_failure(IpAddr::from([10, b, c, d]), now + Duration::from_millis(1));
        assert!(throttle.tracked() <= capacity);
    }
    assert!(
        throttle.locked_for(locked, now).is_some(),
        "a lockout outlives a flood of one-off failures"
    );

    // When full, records that no longer matter make room first.
    let throttle = AuthThrottle::new(small_policy(), 10);
    for d in 0..10 {
        throttle.record_failure(IpAddr::from([10, 0, 0, d]), now);
    }
    assert_eq!(throttle.tracked(), 10);
    throttle.record_failure(ip("203.0.113.9"), now + Duration::from_secs(3600));
    assert_eq!(throttle.tracked(), 1);
}
