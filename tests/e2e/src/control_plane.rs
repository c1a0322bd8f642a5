//! The real control plane, as a separate process on a fresh database.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::process::{run_logged, Child};

pub struct ControlPlane {
    pub child: Child,
    pub addr: SocketAddr,
}

impl ControlPlane {
    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn base_command(bin: &Path, database_url: &str) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env("DATABASE_URL", database_url).env("NO_COLOR", "1");
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    cmd
}

/// `hubgate-cp serve --listen 127.0.0.1:0`; waits for `HUBGATE_CP_LISTENING=`.
pub async fn start(bin: &Path, database_url: &str, internal_token: &str, log: &Path) -> Result<ControlPlane> {
    start_on(bin, database_url, internal_token, log, "127.0.0.1:0").await
}

/// Like `start`, on a given address (to bring a stopped control plane back
/// where Envoy expects it).
pub async fn start_on(
    bin: &Path,
    database_url: &str,
    internal_token: &str,
    log: &Path,
    listen: &str,
) -> Result<ControlPlane> {
    let mut cmd = base_command(bin, database_url);
    cmd.args(["serve", "--listen", listen]).env("HUBGATE_INTERNAL_TOKEN", internal_token);
    let (child, value) =
        Child::spawn_with_marker("control plane", cmd, log, "HUBGATE_CP_LISTENING=", Duration::from_secs(90)).await?;
    let addr: SocketAddr =
        value.parse().with_context(|| format!("control plane printed HUBGATE_CP_LISTENING={value}"))?;
    Ok(ControlPlane { child, addr })
}

/// `hubgate-cp bootstrap --admin-token <token>` (no demo flags).
pub async fn bootstrap(bin: &Path, database_url: &str, admin_token: &str, log: &Path) -> Result<()> {
    let mut cmd = base_command(bin, database_url);
    cmd.args(["bootstrap", "--admin-token", admin_token]);
    run_logged("hubgate-cp bootstrap", cmd, log, Duration::from_secs(90)).await
}
