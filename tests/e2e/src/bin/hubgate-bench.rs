//! hubgate-bench: plain Envoy vs Envoy + hubgate, same mock upstream, same
//! load, in one run. Prints RPS, the RPS ratio and the added p50/p99 latency
//! for 1 KB and ~115 KB (Claude Code-sized) request bodies.
//!
//! Usage: hubgate-bench [--secs N] [--warmup-secs N] [--concurrency N]
//! (or HUBGATE_BENCH_SECS, HUBGATE_BENCH_WARMUP_SECS, HUBGATE_BENCH_CONCURRENCY).
//! Prerequisites as for the e2e tests (built .wasm, control plane, Envoy,
//! PostgreSQL). Reports only: nothing here asserts on timings.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hubgate_e2e::claude_code::{self, ClaudeCodeSession};
use hubgate_e2e::envoy::{self, Envoy};
use hubgate_e2e::{paths, Stack, StackOptions};
use serde_json::json;

struct Settings {
    secs: u64,
    warmup_secs: u64,
    concurrency: usize,
}

fn settings() -> Result<Settings> {
    let env = |name: &str, default: u64| -> Result<u64> {
        match std::env::var(name) {
            Ok(v) if !v.is_empty() => v.parse().with_context(|| format!("{name}={v}")),
            _ => Ok(default),
        }
    };
    let mut s = Settings {
        secs: env("HUBGATE_BENCH_SECS", 10)?,
        warmup_secs: env("HUBGATE_BENCH_WARMUP_SECS", 2)?,
        concurrency: env("HUBGATE_BENCH_CONCURRENCY", 16)? as usize,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || -> Result<u64> {
            let v = args.next().with_context(|| format!("{arg} needs a value"))?;
            v.parse().with_context(|| format!("{arg} {v}"))
        };
        match arg.as_str() {
            "--secs" => s.secs = value()?,
            "--warmup-secs" => s.warmup_secs = value()?,
            "--concurrency" => s.concurrency = value()? as usize,
            "-h" | "--help" => {
                println!("usage: hubgate-bench [--secs N] [--warmup-secs N] [--concurrency N]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    if s.secs == 0 || s.concurrency == 0 {
        bail!("--secs and --concurrency must be positive");
    }
    Ok(s)
}

/// One load target: where to send, with which credential.
struct Target {
    url: String,
    api_key: String,
}

#[derive(Default)]
struct Outcome {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Outcome {
    fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[i].as_secs_f64() * 1000.0
    }
}

/// `concurrency` workers send the same request back to back for `secs`.
async fn drive(client: &reqwest::Client, target: &Target, body: Arc<Vec<u8>>, concurrency: usize, secs: u64) -> Outcome {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let url = target.url.clone();
        let key = target.api_key.clone();
        let body = body.clone();
        workers.push(tokio::spawn(async move {
            let mut out = Outcome::default();
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let result = client
                    .post(&url)
                    .header("x-api-key", &key)
                    .header("anthropic-version", "2023-06-01")
                    .header("content-type", "application/json")
                    .body(body.as_ref().clone())
                    .send()
                    .await;
                let ok = match result {
                    Ok(r) => {
                        let status = r.status();
                        match r.bytes().await {
                            Ok(_) if status == 200 => Ok(()),
                            Ok(b) => Err(format!("{status}: {}", String::from_utf8_lossy(&b))),
                            Err(e) => Err(format!("reading body: {e}")),
                        }
                    }
                    Err(e) => Err(format!("{e:#}")),
                };
                match ok {
                    Ok(()) => {
                        out.ok += 1;
                        out.latencies.push(t0.elapsed());
                    }
                    Err(e) => {
                        out.errors += 1;
                        out.first_error.get_or_insert(e);
                    }
                }
            }
            out
        }));
    }
    let mut total = Outcome::default();
    for w in workers {
        if let Ok(out) = w.await {
            total.ok += out.ok;
            total.errors += out.errors;
            if total.first_error.is_none() {
                total.first_error = out.first_error;
            }
            total.latencies.extend(out.latencies);
        }
    }
    total.elapsed = start.elapsed();
    total.latencies.sort();
    total
}

/// CPU time (user + system) a process has used, in microseconds.
fn cpu_us(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0 };
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    (ticks(11) + ticks(12)) * 1_000_000 / hz
}

/// CPU time of every `postgres` process (server and backends), microseconds.
fn postgres_cpu_us() -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres"))
        .map(cpu_us)
        .sum()
}

/// CPU used by each process of interest while one case ran.
#[derive(Default, Clone, Copy)]
struct Cpu {
    envoy: u64,
    control_plane: u64,
    postgres: u64,
}

impl Cpu {
    fn read(envoy_pid: u32, cp_pid: u32) -> Cpu {
        Cpu { envoy: cpu_us(envoy_pid), control_plane: cpu_us(cp_pid), postgres: postgres_cpu_us() }
    }

    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            envoy: self.envoy.saturating_sub(before.envoy),
            control_plane: self.control_plane.saturating_sub(before.control_plane),
            postgres: self.postgres.saturating_sub(before.postgres),
        }
    }
}

fn client(concurrency: usize) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder().no_proxy().pool_max_idle_per_host(concurrency).build()?)
}

/// An Anthropic request of exactly `size` bytes (±1 for JSON punctuation).
fn body_of_size(model: &str, size: usize) -> Vec<u8> {
    let mut body = hubgate_e2e::simple_body(model, false, "");
    let base = serde_json::to_vec(&body).map(|b| b.len()).unwrap_or(0);
    body["messages"][0]["content"] = json!("a".repeat(size.saturating_sub(base)));
    serde_json::to_vec(&body).unwrap_or_default()
}

async fn start_plain_envoy(stack: &Stack) -> Result<Envoy> {
    envoy::start(
        &paths::envoy()?,
        &paths::envoy_template("plain.yaml.tmpl"),
        &[("UPSTREAM_PORT", stack.mock.addr().port().to_string())],
        &[],
        &stack.log_dir,
        "envoy-plain",
        "warning",
    )
    .await
}

/// Waits (bounded) for the audit log to catch up, then prints how many of
/// hubgate's requests were recorded and the filter's own counters.
async fn report_audit(stack: &Stack, expected: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stored = 0;
    while Instant::now() < deadline {
        let page = stack.admin.get("/api/v1/requests?page_size=1").await?;
        stored = page.get("total").and_then(serde_json::Value::as_u64).unwrap_or(0);
        if stored >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("audit rows stored: {stored} of {expected} requests sent through hubgate");
    let (_, stats) = stack.envoy.admin_get("/stats?filter=^wasmcustom\\.").await?;
    let counters: Vec<&str> = stats.lines().collect();
    if !counters.is_empty() {
        println!("filter counters: {}", counters.join(", "));
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let s = settings()?;
    let mut options = StackOptions::new("bench").poll_interval_ms(1000);
    options.record_requests = false;
    options.envoy_log_level = "warning".to_string();
    eprintln!("starting the stack (control plane, Envoy + hubgate, plain Envoy, mock provider)...");
    let stack = Stack::start(options).await?;
    let plain = start_plain_envoy(&stack).await?;
    let (_user, key) = stack.user_with_key(json!({})).await?;
    let model = stack.claude_model("claude-sonnet-4").await.unwrap_or_else(|_| "claude-sonnet-4-5".to_string());

    let plain_target = Target { url: format!("{}/v1/messages", plain.url()), api_key: stack.mock.api_key().to_string() };
    let hubgate_target = Target { url: format!("{}/v1/messages", stack.gateway_url()), api_key: key.raw.clone() };
    let small = body_of_size(&model, 1024);
    let large = serde_json::to_vec(&claude_code::body(&model, &ClaudeCodeSession::random(), false))?;
    let cases = [("1 KB", small), ("115 KB", large)];

    let http = client(s.concurrency)?;
    // Every request hubgate answered should end up as one audit row; the
    // stack's readiness probe made one already.
    let mut hubgate_requests: u64 = 1;
    let mut rows = Vec::new();
    for (label, body) in cases {
        let body = Arc::new(body);
        let mut results = Vec::new();
        for (name, target) in [("plain", &plain_target), ("hubgate", &hubgate_target)] {
            eprintln!("{label} body ({} bytes) via {name}: warmup {}s, measure {}s...", body.len(), s.warmup_secs, s.secs);
            let is_hubgate = name == "hubgate";
            if s.warmup_secs > 0 {
                let warm = drive(&http, target, body.clone(), s.concurrency, s.warmup_secs).await;
                if is_hubgate {
                    hubgate_requests += warm.ok + warm.errors;
                }
            }
            let envoy_pid = if is_hubgate { stack.envoy.child.pid() } else { plain.child.pid() };
            let cp_pid = stack.control_plane.child.pid();
            let before = Cpu::read(envoy_pid, cp_pid);
            let out = drive(&http, target, body.clone(), s.concurrency, s.secs).await;
            // Let the last event batch reach the control plane before reading.
            tokio::time::sleep(Duration::from_millis(if is_hubgate { 1500 } else { 0 })).await;
            let cpu = Cpu::read(envoy_pid, cp_pid).since(before);
            if is_hubgate {
                hubgate_requests += out.ok + out.errors;
            }
            if out.errors > 0 {
                eprintln!(
                    "  {name}: {} errors, first: {}",
                    out.errors,
                    out.first_error.as_deref().unwrap_or("")
                );
            }
            results.push((out, cpu));
        }
        rows.push((label, body.len(), results));
    }

    println!();
    println!(
        "hubgate benchmark: concurrency {}, {} s per case (after {} s warmup), same mock upstream, JSON replies",
        s.concurrency, s.secs, s.warmup_secs
    );
    println!(
        "{:<8} {:>8} {:>11} {:>11} {:>7} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9} {:>8}",
        "body", "bytes", "RPS plain", "RPS hubgate", "ratio", "p50 plain", "p50 hubg.", "p99 plain", "p99 hubg.", "+p50 ms", "+p99 ms", "errors"
    );
    for (label, bytes, results) in &rows {
        let (p, h) = (&results[0].0, &results[1].0);
        println!(
            "{:<8} {:>8} {:>11.0} {:>11.0} {:>7.2} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>9.2} {:>9.2} {:>8}",
            label,
            bytes,
            p.rps(),
            h.rps(),
            h.rps() / p.rps(),
            p.percentile_ms(0.5),
            h.percentile_ms(0.5),
            p.percentile_ms(0.99),
            h.percentile_ms(0.99),
            h.percentile_ms(0.5) - p.percentile_ms(0.5),
            h.percentile_ms(0.99) - p.percentile_ms(0.99),
            p.errors + h.errors,
        );
    }
    println!("(ratio = RPS hubgate / RPS plain; +p50/+p99 = latency hubgate adds over plain Envoy)");
    println!();
    println!("CPU per request, microseconds (from /proc; independent of what else loads the machine):");
    println!(
        "{:<8} {:>12} {:>14} {:>12} {:>16} {:>14}",
        "body", "envoy plain", "envoy+hubgate", "added", "control plane", "postgres"
    );
    for (label, _, results) in &rows {
        let ((p, pc), (h, hc)) = (&results[0], &results[1]);
        let per = |us: u64, n: u64| us as f64 / n.max(1) as f64;
        let plain_us = per(pc.envoy, p.ok);
        let hub_us = per(hc.envoy, h.ok);
        println!(
            "{:<8} {:>12.1} {:>14.1} {:>12.1} {:>16.1} {:>14.1}",
            label,
            plain_us,
            hub_us,
            hub_us - plain_us,
            per(hc.control_plane, h.ok),
            per(hc.postgres, h.ok),
        );
    }
    println!("mock upstream served {} requests in total", stack.mock.request_count());
    report_audit(&stack, hubgate_requests).await?;
    drop(plain);
    Ok(())
}
