//! A private PostgreSQL server for tests that restart it (the shared one
//! serves every other test). Debian's server binaries; when the tests run
//! as root, the server runs as the `postgres` user. Stopped and removed on
//! drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

pub struct PrivatePostgres {
    bindir: PathBuf,
    dir: PathBuf,
    port: u16,
}

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

/// Runs a server tool, as `postgres` when we are root.
fn run(program: &Path, args: &[&str]) -> Result<()> {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    let out = cmd.args(args).output().with_context(|| format!("running {}", program.display()))?;
    if !out.status.success() {
        bail!(
            "{} {args:?} failed: {}{}",
            program.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn bindir() -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no PostgreSQL server binaries under /usr/lib/postgresql")?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
        .collect();
    dirs.sort();
    dirs.pop().context("no initdb/pg_ctl under /usr/lib/postgresql/*/bin")
}

impl PrivatePostgres {
    pub fn start() -> Result<PrivatePostgres> {
        let bindir = bindir()?;
        let dir = std::env::temp_dir().join(format!("hubgate-e2e-pg-{}", crate::random_lower(10)));
        std::fs::create_dir_all(&dir)?;
        if is_root() {
            let status = Command::new("chown").args(["postgres:postgres"]).arg(&dir).status()?;
            if !status.success() {
                bail!("cannot hand {} to the postgres user", dir.display());
            }
        }
        let data = dir.join("data");
        let data_arg = data.to_string_lossy().to_string();
        run(&bindir.join("initdb"), &["-D", &data_arg, "-U", "postgres", "--auth=trust", "--locale=C", "-E", "UTF8"])?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let pg = PrivatePostgres { bindir, dir, port };
        pg.start_again()?;
        Ok(pg)
    }

    /// `pg_ctl <args>` on this server's data directory, waiting for it.
    fn ctl(&self, args: &[&str]) -> Result<()> {
        let data = self.dir.join("data").to_string_lossy().to_string();
        let mut all = args.to_vec();
        all.extend(["-w", "-t", "60", "-D", &data]);
        run(&self.bindir.join("pg_ctl"), &all)
    }

    fn stop_now(&self, mode: &str) -> Result<()> {
        self.ctl(&["stop", "-m", mode])
    }

    /// The admin connection URL (database `postgres`).
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A fast shutdown: every connection is cut.
    pub fn stop(&self) -> Result<()> {
        self.stop_now("fast")
    }

    /// Starts it (again, after [`PrivatePostgres::stop`]) on its port,
    /// reachable over TCP only.
    pub fn start_again(&self) -> Result<()> {
        let log = self.dir.join("postgres.log").to_string_lossy().to_string();
        let options = format!("-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories=''", self.port);
        self.ctl(&["start", "-l", &log, "-o", &options])
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.stop_now("immediate");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
