//! Rendering the configs in `envoy/` and running the real Envoy.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::process::{tail_section, Child};

/// Replaces every `{{NAME}}`. Placeholders left on a non-comment line are an
/// error, so a template that grows a new placeholder cannot slip through.
pub fn render(template: &str, vars: &[(&str, String)]) -> Result<String> {
    let mut out = template.to_string();
    for (name, value) in vars {
        out = out.replace(&format!("{{{{{name}}}}}"), value);
    }
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

/// `envoy --mode validate -c <config>`: Ok with Envoy's output, or the error.
pub fn validate(envoy: &Path, config: &Path) -> Result<String> {
    let out = Command::new(envoy)
        .args(["--mode", "validate", "--disable-hot-restart", "-l", "warning", "-c"])
        .arg(config)
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
    pub admin_port: u16,
    pub config: PathBuf,
}

impl Envoy {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.listen_port)
    }

    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// True while the process runs and its admin endpoint says it is ready.
    pub async fn is_ready(&mut self) -> bool {
        if self.child.exit_status().is_some() {
            return false;
        }
        match reqwest::get(format!("{}/ready", self.admin_url())).await {
            Ok(r) => r.status() == 200,
            Err(_) => false,
        }
    }

    /// A counter or gauge from the admin `/stats` endpoint.
    pub async fn stat(&self, name: &str) -> Result<Option<u64>> {
        let text = reqwest::get(format!("{}/stats?filter=^{}$", self.admin_url(), regex_escape(name)))
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
            .and_then(|v| v.trim().parse().ok()))
    }
}

fn regex_escape(s: &str) -> String {
    s.chars().flat_map(|c| if c.is_ascii_alphanumeric() || c == '_' { vec![c] } else { vec!['\\', c] }).collect()
}

/// Renders `template` with fresh LISTEN_PORT / ADMIN_PORT plus `vars`, starts
/// Envoy and waits until it is ready and the listener accepts connections.
/// Retries with new ports when a port was taken in between.
pub async fn start(
    envoy_bin: &Path,
    template: &Path,
    vars: &[(&str, String)],
    log_dir: &Path,
    name: &str,
    log_level: &str,
) -> Result<Envoy> {
    let template_text =
        std::fs::read_to_string(template).with_context(|| format!("reading {}", template.display()))?;
    let mut last_error = None;
    for attempt in 1..=3 {
        let listen_port = free_port()?;
        let admin_port = free_port()?;
        let mut all_vars: Vec<(&str, String)> =
            vec![("LISTEN_PORT", listen_port.to_string()), ("ADMIN_PORT", admin_port.to_string())];
        all_vars.extend(vars.iter().cloned());
        let yaml = render(&template_text, &all_vars).with_context(|| format!("rendering {}", template.display()))?;
        let config = log_dir.join(format!("{name}.yaml"));
        std::fs::write(&config, yaml)?;
        let log = log_dir.join(format!("{name}.log"));
        let mut cmd = Command::new(envoy_bin);
        cmd.arg("-c")
            .arg(&config)
            .args(["--concurrency", "2", "--disable-hot-restart", "--log-level", log_level]);
        let child = Child::spawn(name, cmd, &log)?;
        let mut envoy = Envoy { child, listen_port, admin_port, config };
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
        let e = render("a: {{A}}\nb: {{B}}\n", &[("A", "1".into())]).unwrap_err();
        assert!(e.to_string().contains("{{B}}"), "{e}");
    }
}
