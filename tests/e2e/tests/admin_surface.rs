//! What a client of the gateway cannot reach: Envoy's admin endpoint is a
//! unix socket only its owner can open, its config dump holds no secret,
//! and the control plane's internal API is not served on the admin API's
//! listener.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};

use hubgate_e2e::{Stack, StackOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_admin_is_a_private_socket_without_secrets() {
    let stack = Stack::start(StackOptions::new("admin_surface")).await.unwrap();

    let meta = std::fs::metadata(&stack.envoy.admin_socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "admin socket mode");

    // Envoy listens on no TCP port but the client listener.
    let config = std::fs::read_to_string(&stack.envoy.config).unwrap();
    let admin_block = config.split("static_resources:").next().unwrap();
    assert!(!admin_block.contains("socket_address"), "admin has a TCP address:\n{admin_block}");

    let (status, dump) = stack.envoy.admin_get("/config_dump?include_eds").await.unwrap();
    assert_eq!(status, 200);
    assert!(dump.contains("hubgate_filter.wasm"), "config_dump misses the filter");
    assert!(!dump.contains(&stack.internal_token), "config_dump shows the internal token");
    assert!(!config.contains(&stack.internal_token), "the rendered config holds the internal token");

    // The internal API, with the right token, on the admin API's address.
    let resp = stack
        .http
        .get(format!("{}{}", stack.control_plane.url(), "/internal/v1/snapshot"))
        .bearer_auth(&stack.internal_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "the internal API is served on the admin listener");
}
