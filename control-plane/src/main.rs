//! `hubgate-cp`: serve | migrate | bootstrap. Logs go to stderr; stdout
//! carries only the machine-readable lines harnesses parse.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use hubgate_control_plane::bootstrap::{self, BootstrapArgs, DemoProvider};
use hubgate_control_plane::config::{
    check_internal_token, parse_allow_list, DEFAULT_INTERNAL_ALLOW, DEFAULT_INTERNAL_LISTEN,
    DEFAULT_LISTEN,
};
use hubgate_control_plane::throttle::ThrottlePolicy;
use hubgate_control_plane::{db, Application, Config};

#[derive(Parser)]
#[command(name = "hubgate-cp", version, about = "hubgate control plane")]
struct Cli {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Migrate, then serve the admin API and, on its own listener, the
    /// internal API.
    Serve {
        /// Admin API, /metrics, /readyz, /healthz.
        #[arg(long, env = "HUBGATE_LISTEN", default_value = DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// The filter's internal API (served only here) and /healthz.
        #[arg(long, env = "HUBGATE_INTERNAL_LISTEN", default_value = DEFAULT_INTERNAL_LISTEN)]
        internal_listen: SocketAddr,
        /// Comma-separated CIDRs whose connections the internal listener
        /// answers; any other peer gets 403.
        #[arg(long, env = "HUBGATE_INTERNAL_ALLOW", default_value = DEFAULT_INTERNAL_ALLOW)]
        internal_allow: String,
        /// Failed admin authentications from one client address, within
        /// the window, that lock it out.
        #[arg(long, env = "HUBGATE_ADMIN_AUTH_MAX_FAILURES", default_value_t = 20,
              value_parser = clap::value_parser!(u32).range(1..))]
        admin_auth_max_failures: u32,
        /// Seconds within which failed admin authentications add up.
        #[arg(long, env = "HUBGATE_ADMIN_AUTH_WINDOW_SECS", default_value_t = 300,
              value_parser = clap::value_parser!(u32).range(1..))]
        admin_auth_window_secs: u32,
        /// Seconds a locked-out client address is refused.
        #[arg(long, env = "HUBGATE_ADMIN_AUTH_LOCKOUT_SECS", default_value_t = 600,
              value_parser = clap::value_parser!(u32).range(1..))]
        admin_auth_lockout_secs: u32,
        /// Bearer token the filter uses on the internal API.
        #[arg(long, env = "HUBGATE_INTERNAL_TOKEN", hide_env_values = true)]
        internal_token: String,
        #[arg(long, env = "HUBGATE_DB_MAX_CONNECTIONS", default_value_t = 10)]
        db_max_connections: u32,
        /// Seconds between recomputations of the client GA versions (SPEC
        /// §2.5) from the last 7 days of requests.
        #[arg(long, env = "HUBGATE_CLIENT_VERSION_INTERVAL_SECS", default_value_t = 300,
              value_parser = clap::value_parser!(u32).range(1..))]
        client_version_interval_secs: u32,
        /// Seconds a filter may use quota budget it was granted before it
        /// must renew the lease (SPEC §4).
        #[arg(long, env = "HUBGATE_LEASE_TTL_SECS", default_value_t = 60,
              value_parser = clap::value_parser!(u32).range(5..=3600))]
        lease_ttl_secs: u32,
        /// Seconds an admin console session lasts after sign-in.
        #[arg(long, env = "HUBGATE_UI_SESSION_TTL_SECS", default_value_t = 12 * 3600,
              value_parser = clap::value_parser!(u32).range(60..=30 * 86400))]
        ui_session_ttl_secs: u32,
        /// Mark the console's session cookie `Secure`: set it when the admin
        /// address is reached over HTTPS (e.g. behind a TLS-terminating proxy).
        #[arg(long, env = "HUBGATE_UI_SECURE_COOKIE", default_value_t = false,
              action = clap::ArgAction::Set)]
        ui_secure_cookie: bool,
    },
    /// Run the embedded migrations and upsert the committed price seed.
    Migrate,
    /// Ensure an admin token, and optionally a demo user/key and provider.
    Bootstrap {
        #[arg(long, env = "HUBGATE_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: String,
        /// Owner of --demo-key.
        #[arg(long, default_value = "demo")]
        demo_user: String,
        /// Raw value of the demo key (created for --demo-user).
        #[arg(long, env = "HUBGATE_DEMO_KEY", hide_env_values = true)]
        demo_key: Option<String>,
        /// Base URL of the `demo` claude provider.
        #[arg(long, requires = "demo_provider_key")]
        demo_provider_url: Option<String>,
        /// Credential of the `demo` claude provider.
        #[arg(
            long,
            env = "HUBGATE_DEMO_PROVIDER_KEY",
            requires = "demo_provider_url",
            hide_env_values = true
        )]
        demo_provider_key: Option<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "hubgate-cp failed");
            ExitCode::FAILURE
        }
    }
}

fn print_line(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let database_url = cli
        .database_url
        .ok_or_else(|| anyhow::anyhow!("DATABASE_URL is required"))?;
    match cli.command {
        Command::Serve {
            listen,
            internal_listen,
            internal_allow,
            admin_auth_max_failures,
            admin_auth_window_secs,
            admin_auth_lockout_secs,
            internal_token,
            db_max_connections,
            client_version_interval_secs,
            lease_ttl_secs,
            ui_session_ttl_secs,
            ui_secure_cookie,
        } => {
            check_internal_token(&internal_token)?;
            let internal_allow = parse_allow_list(&internal_allow)?;
            let mut config = Config::new(database_url, internal_token, listen, internal_listen);
            config.internal_allow = internal_allow;
            config.admin_auth = ThrottlePolicy {
                max_failures: admin_auth_max_failures,
                window: Duration::from_secs(admin_auth_window_secs.into()),
                lockout: Duration::from_secs(admin_auth_lockout_secs.into()),
            };
            config.db_max_connections = db_max_connections;
            config.client_version_interval =
                Duration::from_secs(client_version_interval_secs.into());
            config.lease_ttl = Duration::from_secs(lease_ttl_secs.into());
            config.ui_sessions = hubgate_control_plane::ui::SessionPolicy {
                ttl: Duration::from_secs(ui_session_ttl_secs.into()),
                secure_cookie: ui_secure_cookie,
            };
            let app = Application::build(config).await?;
            let addr = app.address()?;
            let internal_addr = app.internal_address()?;
            tracing::info!(%addr, %internal_addr, "listening");
            print_line(&format!("HUBGATE_CP_LISTENING={addr}"))?;
            print_line(&format!("HUBGATE_CP_INTERNAL_LISTENING={internal_addr}"))?;
            app.run_until_stopped().await
        }
        Command::Migrate => {
            let pool = db::connect(&database_url, 2).await?;
            db::migrate(&pool).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Bootstrap {
            admin_token,
            demo_user,
            demo_key,
            demo_provider_url,
            demo_provider_key,
        } => {
            let demo_provider = match (demo_provider_url, demo_provider_key) {
                (Some(base_url), Some(api_key)) => Some(DemoProvider { base_url, api_key }),
                _ => None,
            };
            let args = BootstrapArgs {
                admin_token,
                demo_user,
                demo_key,
                demo_provider,
            };
            let pool = db::connect(&database_url, 2).await?;
            db::migrate(&pool).await?;
            let changed = bootstrap::run(&pool, &args).await?;
            tracing::info!(changed, "bootstrap done");
            // Masked: this output ends up in job and CI logs. Whoever ran
            // bootstrap already holds the secrets.
            let token = hubgate_wire::mask_key(&args.admin_token);
            print_line(&format!("HUBGATE_ADMIN_TOKEN={token}"))?;
            if let Some(key) = &args.demo_key {
                let key = hubgate_wire::mask_key(key);
                print_line(&format!("HUBGATE_DEMO_KEY={key}"))?;
            }
            Ok(())
        }
    }
}
