//! `hubgate-mock-provider --listen 127.0.0.1:PORT --api-key K`
//!
//! Serves the mock provider APIs until interrupted. After binding it prints
//! `MOCK_LISTENING=127.0.0.1:<port>` on stdout; scripts parse that line.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use hubgate_mock_provider::{MockConfig, MockProvider};

const USAGE: &str = "usage: hubgate-mock-provider [--listen 127.0.0.1:PORT] --api-key KEY
  --listen ADDR    address to bind (default 127.0.0.1:0, a free port)
  --api-key KEY    credential clients must send (or env MOCK_API_KEY)
  --quiet          do not log requests on stderr";

fn parse_args() -> Result<MockConfig, String> {
    let mut listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut api_key = std::env::var("MOCK_API_KEY").ok();
    let mut log_requests = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                let v = args.next().ok_or("--listen needs a value")?;
                listen = v.parse().map_err(|e| format!("--listen {v}: {e}"))?;
            }
            "--api-key" => api_key = Some(args.next().ok_or("--api-key needs a value")?),
            "--quiet" => log_requests = false,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    let api_key = api_key.filter(|k| !k.is_empty()).ok_or("--api-key (or MOCK_API_KEY) is required")?;
    let mut config = MockConfig::new(api_key);
    config.listen = listen;
    config.record_requests = false;
    config.log_requests = log_requests;
    Ok(config)
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("hubgate-mock-provider: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let listen = config.listen;
    let handle = match MockProvider::start(config).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("hubgate-mock-provider: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "MOCK_LISTENING={}", handle.addr());
    let _ = stdout.flush();

    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hubgate-mock-provider: cannot watch SIGTERM: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    drop(handle);
    ExitCode::SUCCESS
}
