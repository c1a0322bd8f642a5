//! Runtime configuration of the server.

use std::net::SocketAddr;
use std::time::Duration;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8081";

#[derive(Clone, Debug)]
pub struct Config {
    pub database_url: String,
    /// Bearer token the filter presents on the internal API.
    pub internal_token: String,
    pub listen: SocketAddr,
    pub db_max_connections: u32,
    /// How often expired users/keys are disabled (also woken on demand).
    pub expiry_sweep_interval: Duration,
    /// How often client GA versions are recomputed from the audit log.
    pub client_version_interval: Duration,
    /// Run the expiry sweep and GA-version jobs (tests that drive them by
    /// hand turn them off).
    pub background_jobs: bool,
}

impl Config {
    pub fn new(database_url: String, internal_token: String, listen: SocketAddr) -> Self {
        Config {
            database_url,
            internal_token,
            listen,
            db_max_connections: 10,
            expiry_sweep_interval: Duration::from_secs(30),
            client_version_interval: Duration::from_secs(300),
            background_jobs: true,
        }
    }
}
