//! Rendering the configs in `envoy/` and running the real Envoy.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::process::{tail_section, Child};

/// Replaces every `{{NAME}}` and `{{NAME:-default}}` (the default when
/// `vars` has no NAME). Placeholders left on a non-comment line are an
/// error, so a template that grows a new placeholder cannot slip through.
pub fn render(template: &str, vars: &[(&str, String)]) -> Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else { break };
        let inner = &rest[start + 2..start + len];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        out.push_str(&rest[..start]);
        match vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str()).or(default) {
            Some(value) => out.push_str(value),
            None => out.push_str(&rest[start..start + len + 2]),
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    for (i, line) in out.lines().enumerate() {
        if !line.trim_start().starts_with('#') && line.contains("{{") {
            bail!("line {}: placeholder left after rendering: {}", i + 1, line.trim());
        }
    }
    Ok(out)
}

/// A port that was free a moment ago (bind 127.0.0.1:0, then release it).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `envoy --mode validate -c <config>` with `env` added to Envoy's
/// environment: Ok with Envoy's output, or the error.
pub fn validate(envoy: &Path, config: &Path, env: &[(&str, &str)]) -> Result<String> {
    let out = Command::new(envoy)
        .args(["--mode", "validate", "--disable-hot-restart", "-l", "warning", "-c"])
        .arg(config)
        .envs(env.iter().copied())
        .output()
        .with_context(|| format!("running {}", envoy.display()))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("envoy --mode validate rejected {} ({}):\n{text}", config.display(), out.status);
    }
    Ok(text)
}

pub struct Envoy {
    pub child: Child,
    pub listen_port: u16,
    /// Envoy's admin endpoint: a unix socket (mode 0600).
    pub admin_socket: PathBuf,
    pub config: PathBuf,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.admin_socket);
    }
}

impl Envoy {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.listen_port)
    }

    pub fn listen_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.listen_port))
    }

    /// Resident memory of the Envoy process, from /proc.
    pub fn rss_bytes(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.pid()))?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("no VmRSS in /proc/<pid>/status")?;
        Ok(kb * 1024)
    }

    /// `GET path` on the admin socket: status and body.
    pub async fn admin_get(&self, path: &str) -> Result<(u16, String)> {
        admin_request(&self.admin_socket, "GET", path).await
    }

    /// True while the process runs and its admin endpoint says it is ready.
    pub async fn is_ready(&mut self) -> bool {
        if self.child.exit_status().is_some() {
            return false;
        }
        matches!(self.admin_get("/ready").await, Ok((200, _)))
    }

    /// A counter or gauge from the admin `/stats` endpoint.
    pub async fn stat(&self, name: &str) -> Result<Option<u64>> {
        let (_, text) = self.admin_get(&format!("/stats?filter=^{}$", regex_escape(name))).await?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
            .and_then(|v| v.trim().parse().ok()))
    }
}

/// One HTTP/1.1 request (then close) over a unix socket (Envoy's admin endpoint).
pub async fn admin_request(socket: &Path, method: &str, path: &str) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| format!("connecting to Envoy's admin socket {}", socket.display()))?;
    stream.write_all(format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw)).await??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    Ok((status, if chunked { dechunk(body) } else { body.to_string() }))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

fn regex_escape(s: &str) -> String {
    s.chars().flat_map(|c| if c.is_ascii_alphanumeric() || c == '_' { vec![c] } else { vec!['\\', c] }).collect()
}

/// Renders `template` with a fresh LISTEN_PORT, ADMIN_SOCKET (in `log_dir`)
/// plus `vars`, starts Envoy with `env` added to its environment, and waits
/// until it is ready and the listener accepts connections. Retries with a
/// new port when the port was taken in between.
pub async fn start(
    envoy_bin: &Path,
    template: &Path,
    vars: &[(&str, String)],
    env: &[(&str, String)],
    log_dir: &Path,
    name: &str,
    log_level: &str,
) -> Result<Envoy> {
    let template_text =
        std::fs::read_to_string(template).with_context(|| format!("reading {}", template.display()))?;
    let mut last_error = None;
    for attempt in 1..=3 {
        let listen_port = free_port()?;
        // Unix socket paths are limited to 107 bytes: a short one in /tmp.
        let admin_socket = std::env::temp_dir().join(format!("hubgate-{}.sock", crate::random_lower(12)));
        let mut all_vars: Vec<(&str, String)> =
            vec![("LISTEN_PORT", listen_port.to_string()), ("ADMIN_SOCKET", admin_socket.display().to_string())];
        all_vars.extend(vars.iter().cloned());
        let yaml = render(&template_text, &all_vars).with_context(|| format!("rendering {}", template.display()))?;
        let config = log_dir.join(format!("{name}.yaml"));
        std::fs::write(&config, yaml)?;
        let log = log_dir.join(format!("{name}.log"));
        let mut cmd = Command::new(envoy_bin);
        cmd.arg("-c")
            .arg(&config)
            .args(["--concurrency", "2", "--disable-hot-restart", "--log-level", log_level]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = Child::spawn(name, cmd, &log)?;
        let mut envoy = Envoy { child, listen_port, admin_socket, config };
        match wait_ready(&mut envoy, Duration::from_secs(60)).await {
            Ok(()) => return Ok(envoy),
            Err(e) => {
                let log_text = std::fs::read_to_string(&log).unwrap_or_default();
                let port_taken = log_text.contains("Address already in use") || log_text.contains("cannot bind");
                last_error = Some(e);
                if !port_taken || attempt == 3 {
                    break;
                }
            }
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("envoy did not start")))
}

async fn wait_ready(envoy: &mut Envoy, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(status) = envoy.child.exit_status() {
            bail!("envoy exited ({status}) during startup\n{}", tail_section(&envoy.child.log, 60));
        }
        if envoy.is_ready().await && tokio::net::TcpStream::connect(("127.0.0.1", envoy.listen_port)).await.is_ok() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("envoy was not ready within {}s\n{}", timeout.as_secs(), tail_section(&envoy.child.log, 60));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_replaces_and_catches_leftovers() {
        let t = "# every {{NAME}} is replaced\nport: {{PORT}}\n";
        assert_eq!(render(t, &[("PORT", "1".into())]).unwrap(), "# every {{NAME}} is replaced\nport: 1\n");
        let t = "a: {{A:-5s}}\nb: {{B:-7}}\n";
        assert_eq!(render(t, &[("A", "1s".into())]).unwrap(), "a: 1s\nb: 7\n");
        let e = render("a: {{A}}\nb: {{B}}\n", &[("A", "1".into())]).unwrap_err();
        assert!(e.to_string().contains("{{B}}"), "{e}");
    }
}
