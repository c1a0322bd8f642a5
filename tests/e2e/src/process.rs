//! Child processes that log to a file and die with the harness.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

/// A running child. Killed (SIGKILL) and reaped on drop.
pub struct Child {
    pub name: String,
    pub log: PathBuf,
    child: std::process::Child,
}

impl Child {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, cmd: Command, log: &Path) -> Result<Child> {
        Self::spawn_inner(name, cmd, log, None)
    }

    /// Starts `cmd` with stderr going to `log`; stdout is copied to `log` line by
    /// line too, and the value of the first line starting with `marker` is
    /// returned once it appears (or an error when the child exits first).
    pub async fn spawn_with_marker(
        name: &str,
        cmd: Command,
        log: &Path,
        marker: &str,
        timeout: Duration,
    ) -> Result<(Child, String)> {
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        let mut child = Self::spawn_inner(name, cmd, log, Some((marker.to_string(), tx)))?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(value)) => Ok((child, value)),
            Ok(Err(_)) => {
                let status = child.wait_exit(Duration::from_secs(2));
                bail!(
                    "{name} exited ({status}) before printing {marker}\n{}",
                    tail_section(&child.log, 40)
                )
            }
            Err(_) => bail!(
                "{name} did not print {marker} within {}s\n{}",
                timeout.as_secs(),
                tail_section(&child.log, 40)
            ),
        }
    }

    fn spawn_inner(
        name: &str,
        mut cmd: Command,
        log: &Path,
        marker: Option<(String, tokio::sync::oneshot::Sender<String>)>,
    ) -> Result<Child> {
        let out = File::options().create(true).append(true).open(log).with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null()).stderr(Stdio::from(err));
        if marker.is_some() {
            cmd.stdout(Stdio::piped());
        } else {
            cmd.stdout(Stdio::from(out.try_clone()?));
        }
        // If the test process dies without running destructors (killed, or
        // aborted), take the children with it.
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        if let Some((marker, tx)) = marker {
            let stdout = child.stdout.take().ok_or_else(|| anyhow!("{name}: no stdout pipe"))?;
            let mut out = out;
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let _ = writeln!(out, "{line}");
                    if let Some(value) = line.strip_prefix(marker.as_str()) {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(value.trim().to_string());
                        }
                    }
                }
            });
        }
        Ok(Child { name: name.to_string(), log: log.to_path_buf(), child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `None` while running, else how it ended.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn wait_exit(&mut self, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(s) = self.exit_status() {
                return s.to_string();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        "still running".to_string()
    }

    pub fn kill(&mut self) {
        if self.exit_status().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `lines` lines of a file (reads at most the last 64 KB).
pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return format!("({} does not exist)", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 * 1024);
    let _ = f.seek(SeekFrom::Start(start));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A titled tail, for failure messages.
pub fn tail_section(path: &Path, lines: usize) -> String {
    format!("----- last {lines} lines of {} -----\n{}\n-----", path.display(), tail(path, lines))
}

/// Runs a command to completion with output to `log`; fails with the log tail
/// when it exits non-zero or takes longer than `timeout`.
pub async fn run_logged(name: &str, cmd: Command, log: &Path, timeout: Duration) -> Result<()> {
    let mut child = Child::spawn(name, cmd, log)?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.exit_status() {
            if status.success() {
                return Ok(());
            }
            bail!("{name} failed ({status})\n{}", tail_section(log, 40));
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{name} did not finish within {}s\n{}", timeout.as_secs(), tail_section(log, 40));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
