//! Runtime configuration of the server.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use crate::throttle::ThrottlePolicy;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8081";
pub const DEFAULT_INTERNAL_LISTEN: &str = "127.0.0.1:8082";
pub const DEFAULT_INTERNAL_ALLOW: &str = "127.0.0.0/8,::1/128";

/// Shortest internal token `serve` accepts.
pub const MIN_INTERNAL_TOKEN_CHARS: usize = 16;

// Debug is written by hand: it must not show the token or the password.
#[derive(Clone)]
pub struct Config {
    pub database_url: String,
    /// Bearer token the filter presents on the internal API.
    pub internal_token: String,
    /// The admin API, `/metrics` and the other public routes.
    pub listen: SocketAddr,
    /// The filter's internal API (served only here) and `/healthz`.
    pub internal_listen: SocketAddr,
    /// Peers the internal listener answers; any other gets 403.
    pub internal_allow: Vec<IpNet>,
    /// Failed admin authentications per client address before a lockout.
    pub admin_auth: ThrottlePolicy,
    pub db_max_connections: u32,
    /// How often expired users/keys are disabled (also woken on demand).
    pub expiry_sweep_interval: Duration,
    /// How often client GA versions are recomputed from the audit log.
    pub client_version_interval: Duration,
    /// How long quota budget granted to a filter stays usable unless it is
    /// renewed (SPEC §4 leases).
    pub lease_ttl: Duration,
    /// Admin console sessions: lifetime and the cookie's `Secure` flag.
    pub ui_sessions: crate::ui::SessionPolicy,
    /// Run the expiry sweep and GA-version jobs (tests that drive them by
    /// hand turn them off).
    pub background_jobs: bool,
}

impl Config {
    pub fn new(
        database_url: String,
        internal_token: String,
        listen: SocketAddr,
        internal_listen: SocketAddr,
    ) -> Self {
        Config {
            database_url,
            internal_token,
            listen,
            internal_listen,
            // The default cannot fail to parse; were it to, nobody would be allowed.
            internal_allow: parse_allow_list(DEFAULT_INTERNAL_ALLOW).unwrap_or_default(),
            admin_auth: ThrottlePolicy::default(),
            db_max_connections: 10,
            expiry_sweep_interval: Duration::from_secs(30),
            client_version_interval: Duration::from_secs(300),
            lease_ttl: Duration::from_secs(60),
            ui_sessions: crate::ui::SessionPolicy::default(),
            background_jobs: true,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &redact_url(&self.database_url))
            .field("internal_token", &"…")
            .field("listen", &self.listen)
            .field("internal_listen", &self.internal_listen)
            .field("internal_allow", &self.internal_allow)
            .field("admin_auth", &self.admin_auth)
            .field("db_max_connections", &self.db_max_connections)
            .field("expiry_sweep_interval", &self.expiry_sweep_interval)
            .field("client_version_interval", &self.client_version_interval)
            .field("lease_ttl", &self.lease_ttl)
            .field("ui_sessions", &self.ui_sessions)
            .field("background_jobs", &self.background_jobs)
            .finish()
    }
}

/// The internal token is the only thing guarding the filter's API (keys,
/// provider credentials): refuse short or oddly shaped ones at startup.
pub fn check_internal_token(token: &str) -> anyhow::Result<()> {
    let len = token.chars().count();
    if len < MIN_INTERNAL_TOKEN_CHARS {
        anyhow::bail!(
            "HUBGATE_INTERNAL_TOKEN must be at least {MIN_INTERNAL_TOKEN_CHARS} characters (got {len})"
        );
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        anyhow::bail!("HUBGATE_INTERNAL_TOKEN must not contain whitespace or control characters");
    }
    Ok(())
}

/// `HUBGATE_INTERNAL_ALLOW`: comma-separated CIDRs (a bare address means
/// just that address).
pub fn parse_allow_list(value: &str) -> anyhow::Result<Vec<IpNet>> {
    value
        .split(',')
        .map(|item| {
            let item = item.trim();
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| {
                    anyhow::anyhow!(
                        "HUBGATE_INTERNAL_ALLOW (--internal-allow): {item:?} is not a CIDR \
                         such as 10.0.0.0/8 or fd00::/8"
                    )
                })
        })
        .collect()
}

/// A database URL with the password (`user:password@` or a `password=`
/// query parameter) replaced by `…`.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host_and_path)) => match userinfo.split_once(':') {
                Some((user, _password)) => format!("{scheme}://{user}:…@{host_and_path}"),
                None => format!("{scheme}://{userinfo}@{host_and_path}"),
            },
            None => format!("{scheme}://{rest}"),
        },
        None => base.to_string(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((name, _)) if name.eq_ignore_ascii_case("password") => format!("{name}=…"),
                _ => param.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists() {
        let default = parse_allow_list(DEFAULT_INTERNAL_ALLOW).unwrap();
        assert_eq!(default.len(), 2);
        let nets = parse_allow_list(" 10.1.2.3/8, fd00::1 ").unwrap();
        assert_eq!(nets[0].to_string(), "10.0.0.0/8");
        assert_eq!(nets[1].to_string(), "fd00::1/128");
        for bad in [
            "",
            "10.0.0.0/8,",
            "10.0.0.0/33",
            "localhost",
            "10.0.0.0/8;fd00::/8",
        ] {
            let err = parse_allow_list(bad).unwrap_err().to_string();
            assert!(err.contains("HUBGATE_INTERNAL_ALLOW"), "{bad}: {err}");
        }
    }
}
