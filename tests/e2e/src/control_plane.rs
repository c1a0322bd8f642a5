//! The real control plane, as a separate process on a fresh database.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::process::{run_logged, Child};

pub struct ControlPlane {
    pub child: Child,
    /// The admin API.
    pub addr: SocketAddr,
    /// The filter's internal API (Envoy's control-plane cluster).
    pub internal_addr: SocketAddr,
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

/// `hubgate-cp serve` with both listeners on free ports; waits until both
/// are bound (`HUBGATE_CP_LISTENING=`, `HUBGATE_CP_INTERNAL_LISTENING=`).
/// `env` adds or overrides settings (e.g. `HUBGATE_CLIENT_VERSION_INTERVAL_SECS`).
pub async fn start(
    bin: &Path,
    database_url: &str,
    internal_token: &str,
    log: &Path,
    env: &[(&'static str, String)],
) -> Result<ControlPlane> {
    start_on(bin, database_url, internal_token, log, "127.0.0.1:0", "127.0.0.1:0", env).await
}

/// Like `start`, on given addresses (to bring a stopped control plane back
/// where Envoy expects it).
pub async fn start_on(
    bin: &Path,
    database_url: &str,
    internal_token: &str,
    log: &Path,
    listen: &str,
    internal_listen: &str,
    env: &[(&'static str, String)],
) -> Result<ControlPlane> {
    let mut cmd = base_command(bin, database_url);
    cmd.args(["serve", "--listen", listen, "--internal-listen", internal_listen])
        .env("HUBGATE_INTERNAL_TOKEN", internal_token)
        .envs(env.iter().map(|(k, v)| (k, v)));
    // The admin address is printed first, the internal one right after.
    let (child, internal) = Child::spawn_with_marker(
        "control plane",
        cmd,
        log,
        "HUBGATE_CP_INTERNAL_LISTENING=",
        Duration::from_secs(90),
    )
    .await?;
    let internal_addr: SocketAddr = internal
        .parse()
        .with_context(|| format!("control plane printed HUBGATE_CP_INTERNAL_LISTENING={internal}"))?;
    let log_text = std::fs::read_to_string(log)?;
    let admin = log_text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("HUBGATE_CP_LISTENING="))
        .context("control plane did not print HUBGATE_CP_LISTENING=")?;
    let addr: SocketAddr =
        admin.trim().parse().with_context(|| format!("control plane printed HUBGATE_CP_LISTENING={admin}"))?;
    Ok(ControlPlane { child, addr, internal_addr })
}

/// `hubgate-cp bootstrap --admin-token <token>` (no demo flags).
pub async fn bootstrap(bin: &Path, database_url: &str, admin_token: &str, log: &Path) -> Result<()> {
    let mut cmd = base_command(bin, database_url);
    cmd.args(["bootstrap", "--admin-token", admin_token]);
    run_logged("hubgate-cp bootstrap", cmd, log, Duration::from_secs(90)).await
}
