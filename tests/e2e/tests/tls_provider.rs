//! A provider behind HTTPS, as every real provider is: the filter sends the
//! request to Envoy's TLS cluster, which offers the provider's host name as
//! SNI and checks the certificate against it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hubgate_e2e::envoy::{self, Envoy};
use hubgate_e2e::{paths, Stack, StackOptions};
use serde_json::json;

/// A self-signed certificate for `localhost` (key and cert PEM), made with
/// the openssl CLI.
fn self_signed_localhost(dir: &Path) -> (String, String) {
    let (cert, key) = (dir.join("localhost.crt"), dir.join("localhost.key"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is required (tests/run installs it)");
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    (cert.display().to_string(), key.display().to_string())
}

async fn tls_front(stack: &Stack, cert: &str, key: &str) -> Envoy {
    envoy::start(
        &paths::envoy().unwrap(),
        &paths::workspace_root().join("tests/e2e/envoy/tls-front.yaml.tmpl"),
        &[
            ("UPSTREAM_PORT", stack.mock.addr().port().to_string()),
            ("CERT", cert.to_string()),
            ("KEY", key.to_string()),
        ],
        &[],
        &stack.log_dir,
        "envoy-tls-front",
        "info",
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_provider_gets_sni_and_a_verified_certificate() {
    let certs = paths::fresh_log_dir("tls_provider_certs").unwrap();
    let (cert, key) = self_signed_localhost(&certs);
    let stack = Stack::start(StackOptions::new("tls_provider").without_provider().upstream_ca(&cert)).await.unwrap();
    let front = tls_front(&stack, &cert, &key).await;
    let port = front.listen_port;
    let provider = stack
        .admin
        .create_provider(json!({
            "name": "https-provider",
            "type": "claude",
            "base_url": format!("https://localhost:{port}"),
            "api_key": stack.mock.api_key(),
        }))
        .await
        .unwrap();
    let (_user, client_key) = stack.user_with_key(json!({})).await.unwrap();

    // The new provider arrives with the next snapshot.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let resp = loop {
        let (req, _) = stack.messages(&client_key.raw);
        let resp = req.json(&hubgate_e2e::simple_body("claude-sonnet-4-5", false, "over tls")).send().await.unwrap();
        if resp.status() == 200 || tokio::time::Instant::now() > deadline {
            break resp;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(resp.status(), 200, "{}", stack.log_tails(40));
    assert_eq!(resp.headers().get("x-tls-front-sni").and_then(|v| v.to_str().ok()), Some("localhost"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["content"][0]["text"], "You said: over tls", "{body}");
    let seen = stack.mock.requests();
    let last = seen.last().unwrap();
    assert_eq!(last.header("x-api-key"), Some(stack.mock.api_key()));
    assert_eq!(last.header("x-hubgate-upstream-tls"), None, "the routing header must not reach the provider");

    // Same certificate, but the provider is named by an address the
    // certificate does not cover: the handshake must be refused.
    stack
        .admin
        .patch(
            &format!("/api/v1/providers/{}", provider["id"]),
            &json!({"base_url": format!("https://127.0.0.1:{port}")}),
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (status, body) = loop {
        let (req, _) = stack.messages(&client_key.raw);
        let resp = req.json(&hubgate_e2e::simple_body("claude-sonnet-4-5", false, "x")).send().await.unwrap();
        let status = resp.status();
        if status != 200 || tokio::time::Instant::now() > deadline {
            break (status, resp.text().await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status, 503, "a certificate that does not name the provider must fail the upstream TLS handshake");
    let san_failures = stack.envoy.stat("cluster.providers_tls.ssl.fail_verify_san").await.unwrap();
    assert!(san_failures.unwrap_or(0) >= 1, "expected a SAN verification failure: {body}");
}
