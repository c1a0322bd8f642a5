//! hubgate-bench: plain Envoy, Envoy + an empty proxy-wasm filter, and Envoy +
//! hubgate, same mock upstream, same load, in one run. Prints RPS, the RPS
//! ratios, the added p50/p99 latency and Envoy's CPU time per request for
//! 1 KB and ~115 KB (Claude Code-shaped) request bodies, and the added p50 at
//! concurrency 1 for the 1 KB body.
//!
//! hubgate runs with every guard on: 1,000 `contains`, 1,000 `exact` and 50
//! regex sensitive words, 20 request filters, a user restricted to the
//! `claude-cli` client and to the model used, the client version check and
//! the warmup intercept. The
//! requests are Claude Code-shaped (its headers and `metadata.user_id`), so
//! they pass every guard and reach the upstream.
//!
//! The ~115 KB body runs three ways: the same bytes every time; a new last
//! turn in every request (what a Claude Code session sends: all earlier parts
//! repeat); and every part new (a first request, nothing seen before).
//!
//! The memory case then reports Envoy's RSS with hubgate as 0, 10,000 and
//! `--memory-keys` (default 100,000) distinct keys are used, and again after
//! each of `--memory-passes` more passes over all of them.
//!
//! The ingest case last: audit event batches POSTed straight at the control
//! plane for `--ingest-secs` (default 5, after one second of warmup), from
//! 50 users and keys that exist in the database: events per second, and the
//! CPU the control plane and PostgreSQL spend per event, overall and per
//! one-second slice; then a check that the usage rollup and the sessions add
//! up to the stored rows.
//!
//! `--only-ingest` runs the ingest case alone, on a control plane and a
//! fresh database without Envoy or the mock provider.
//!
//! Usage: hubgate-bench [--secs N] [--warmup-secs N] [--concurrency N]
//! [--memory-keys N] [--memory-passes N] [--ingest-secs N] [--only-ingest] (or
//! HUBGATE_BENCH_SECS, HUBGATE_BENCH_WARMUP_SECS, HUBGATE_BENCH_CONCURRENCY,
//! HUBGATE_BENCH_MEMORY_KEYS, HUBGATE_BENCH_MEMORY_PASSES,
//! HUBGATE_BENCH_INGEST_SECS).
//! Prerequisites as for the e2e tests (built .wasm files, control plane,
//! Envoy, PostgreSQL). Reports only: nothing here asserts on timings.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hubgate_e2e::bench_policy::{
    request_filters, sensitive_words, small_body, CONTAINS_WORDS, EXACT_WORDS, REGEXES, REGEX_PROBE,
};
use hubgate_e2e::claude_code::{self, ClaudeCodeSession};
use hubgate_e2e::envoy::{self, Envoy};
use hubgate_e2e::{paths, AdminClient, Stack, StackOptions};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Value};

struct Settings {
    secs: u64,
    warmup_secs: u64,
    concurrency: usize,
    /// Users (one key each) of the memory case; 0 skips it.
    memory_keys: u64,
    /// Passes over all of them after the first.
    memory_passes: u64,
    /// Seconds of the ingest case (event batches straight at the control
    /// plane's internal API); 0 skips it.
    ingest_secs: u64,
    /// Only the ingest case: no Envoy, no mock provider.
    only_ingest: bool,
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
        memory_keys: env("HUBGATE_BENCH_MEMORY_KEYS", 100_000)?,
        memory_passes: env("HUBGATE_BENCH_MEMORY_PASSES", 2)?,
        ingest_secs: env("HUBGATE_BENCH_INGEST_SECS", 5)?,
        only_ingest: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--only-ingest" {
            s.only_ingest = true;
            continue;
        }
        let mut value = || -> Result<u64> {
            let v = args.next().with_context(|| format!("{arg} needs a value"))?;
            v.parse().with_context(|| format!("{arg} {v}"))
        };
        match arg.as_str() {
            "--secs" => s.secs = value()?,
            "--warmup-secs" => s.warmup_secs = value()?,
            "--concurrency" => s.concurrency = value()? as usize,
            "--memory-keys" => s.memory_keys = value()?,
            "--memory-passes" => s.memory_passes = value()?,
            "--ingest-secs" => s.ingest_secs = value()?,
            "-h" | "--help" => {
                println!(
                    "usage: hubgate-bench [--secs N] [--warmup-secs N] [--concurrency N] [--memory-keys N] [--memory-passes N] \
                     [--ingest-secs N] [--only-ingest]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    if s.only_ingest && s.ingest_secs == 0 {
        bail!("--only-ingest needs --ingest-secs above 0");
    }
    if s.secs == 0 || s.concurrency == 0 {
        bail!("--secs and --concurrency must be positive");
    }
    Ok(s)
}

/// The three columns, in the order they run and print.
const COLUMNS: [&str; 3] = ["plain", "empty", "hubgate"];
const PLAIN: usize = 0;
const EMPTY: usize = 1;
const HUBGATE: usize = 2;

/// One load target: where to send, with which headers (credential
/// included), and the Envoy process that serves it.
struct Target {
    url: String,
    headers: HeaderMap,
    envoy_pid: u32,
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

    fn sent(&self) -> u64 {
        self.ok + self.errors
    }
}

/// Stands where a varying body gets its per-request text.
const MARKER: &str = "HUBGATE-BENCH-MARKER";

/// The bodies a case sends.
#[derive(Clone)]
enum Bodies {
    /// The same bytes every time.
    Same(Arc<Vec<u8>>),
    /// A template cut at every [`MARKER`]: each request fills the cuts with
    /// a number of its own, so whatever holds a marker is new every time.
    Fresh { parts: Arc<Vec<Vec<u8>>>, next: Arc<AtomicU64> },
}

impl Bodies {
    fn fresh(template: &[u8]) -> Result<Bodies> {
        let text = std::str::from_utf8(template)?;
        let parts: Vec<Vec<u8>> = text.split(MARKER).map(|p| p.as_bytes().to_vec()).collect();
        if parts.len() < 2 {
            bail!("the template has no {MARKER}");
        }
        Ok(Bodies::Fresh { parts: Arc::new(parts), next: Arc::new(AtomicU64::new(0)) })
    }

    fn next(&self) -> Vec<u8> {
        match self {
            Bodies::Same(body) => body.to_vec(),
            Bodies::Fresh { parts, next } => {
                let fill = format!("req{:010}", next.fetch_add(1, Ordering::Relaxed));
                let mut body = Vec::with_capacity(self.len() + 16);
                for (i, part) in parts.iter().enumerate() {
                    if i > 0 {
                        body.extend_from_slice(fill.as_bytes());
                    }
                    body.extend_from_slice(part);
                }
                body
            }
        }
    }

    /// Bytes per request.
    fn len(&self) -> usize {
        match self {
            Bodies::Same(body) => body.len(),
            Bodies::Fresh { parts, .. } => {
                parts.iter().map(Vec::len).sum::<usize>() + (parts.len() - 1) * "req0000000000".len()
            }
        }
    }
}

/// One request; Ok(()) on a 200 whose body was read.
async fn send_once(client: &reqwest::Client, target: &Target, body: Vec<u8>) -> Result<(), String> {
    let result = client.post(&target.url).headers(target.headers.clone()).body(body).send().await;
    match result {
        Ok(r) => {
            let status = r.status();
            match r.bytes().await {
                Ok(_) if status == 200 => Ok(()),
                Ok(b) => Err(format!("{status}: {}", String::from_utf8_lossy(&b))),
                Err(e) => Err(format!("reading body: {e}")),
            }
        }
        Err(e) => Err(format!("{e:#}")),
    }
}

/// `concurrency` workers send the same request back to back for `secs`.
async fn drive(
    client: &reqwest::Client,
    target: &Arc<Target>,
    bodies: &Bodies,
    concurrency: usize,
    secs: u64,
) -> Outcome {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let target = target.clone();
        let bodies = bodies.clone();
        workers.push(tokio::spawn(async move {
            let mut out = Outcome::default();
            while Instant::now() < deadline {
                let body = bodies.next();
                let t0 = Instant::now();
                match send_once(&client, &target, body).await {
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
        Cpu { envoy: cpu_us(envoy_pid), ..Cpu::read_pipeline(cp_pid) }
    }

    /// The control plane and Postgres only (the audit pipeline).
    fn read_pipeline(cp_pid: u32) -> Cpu {
        Cpu { envoy: 0, control_plane: cpu_us(cp_pid), postgres: postgres_cpu_us() }
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

/// Claude Code's request headers plus the credential.
fn claude_code_headers(session: &ClaudeCodeSession, api_key: &str) -> Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, value) in claude_code::headers(session) {
        map.insert(HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())?, HeaderValue::from_str(&value)?);
    }
    map.insert("x-api-key", HeaderValue::from_str(api_key)?);
    Ok(map)
}

/// The same small request with `text` as the user turn.
fn body_with_text(model: &str, session: &ClaudeCodeSession, text: &str) -> Result<Vec<u8>> {
    let mut body: Value = serde_json::from_slice(&small_body(model, session, 0)?)?;
    body["messages"][0]["content"] = json!(text);
    Ok(serde_json::to_vec(&body)?)
}

/// The Claude Code body after one exchange: the first turn, the answer and
/// a new question whose text holds the [`MARKER`].
fn next_turn_body(model: &str, session: &ClaudeCodeSession) -> Result<Vec<u8>> {
    let mut body = claude_code::body(model, session, false);
    let messages = body["messages"].as_array_mut().context("the Claude Code body has no messages")?;
    messages.push(json!({"role": "assistant", "content": [{"type": "text",
        "text": "The repository is a command-line tool that parses configuration files and reports errors."}]}));
    messages.push(json!({"role": "user", "content": [{"type": "text",
        "text": format!("Now fix the tokenizer bug {MARKER} in src/parser.rs and add a test for it.")}]}));
    Ok(serde_json::to_vec(&body)?)
}

/// The Claude Code body with the [`MARKER`] in every system block, tool
/// description and message, so no part of it repeats between requests.
fn all_new_body(model: &str, session: &ClaudeCodeSession) -> Result<Vec<u8>> {
    let mut body = claude_code::body(model, session, false);
    let mark = |text: &mut Value| {
        if let Some(t) = text.as_str() {
            *text = json!(format!("{MARKER} {t}"));
        }
    };
    for block in body["system"].as_array_mut().context("no system blocks")? {
        mark(&mut block["text"]);
    }
    for tool in body["tools"].as_array_mut().context("no tools")? {
        mark(&mut tool["description"]);
    }
    for message in body["messages"].as_array_mut().context("no messages")? {
        for block in message["content"].as_array_mut().context("no content blocks")? {
            mark(&mut block["text"]);
        }
    }
    Ok(serde_json::to_vec(&body)?)
}

/// Resident memory of a process, KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|l| l.strip_prefix("VmRSS:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()))
        })
        .unwrap_or(0)
}

/// The raw key of memory-case user `i`.
fn memory_key(i: u64) -> String {
    format!("sk-benchmem-{i:08}")
}

/// Envoy's RSS as more and more distinct keys are used: `keys` users with
/// one key each (written straight into the database: the admin API would
/// take minutes), one 1 KB request per key, then `passes` more passes over
/// them all. Returns the number of requests sent.
async fn memory_case(stack: &Stack, body: &[u8], session: &ClaudeCodeSession, keys: u64, passes: u64) -> Result<u64> {
    eprintln!("memory case: creating {keys} users with one key each...");
    let pool = sqlx::PgPool::connect(stack.database_url()).await?;
    let keys_i64 = i64::try_from(keys)?;
    sqlx::query(
        "INSERT INTO users (name, name_fold) \
         SELECT 'bench-mem-' || lpad(i::text, 8, '0'), 'bench-mem-' || lpad(i::text, 8, '0') \
         FROM generate_series(1, $1) AS i",
    )
    .bind(keys_i64)
    .execute(&pool)
    .await?;
    sqlx::query(
        "INSERT INTO keys (user_id, name, key_hash, key_masked) \
         SELECT id, 'bench', encode(sha256(convert_to('sk-benchmem-' || substr(name, 11), 'UTF8')), 'hex'), \
                'sk-…' || right(name, 4) \
         FROM users WHERE name LIKE 'bench-mem-%'",
    )
    .execute(&pool)
    .await?;
    pool.close().await;

    let pid = stack.envoy.child.pid();
    let mut report = vec![(0u64, "", rss_kib(pid))];
    let mut sent = 0;
    let mut steps = vec![(1, keys.min(10_000), "first use"), (keys.min(10_000) + 1, keys, "first use")];
    for _ in 0..passes {
        steps.push((1, keys, "again"));
    }
    let mut used = 0;
    for (from, to, what) in steps {
        if from > to {
            continue;
        }
        eprintln!("memory case: keys {from}..={to} ({what})...");
        let (ok, errors, first_error) = send_with_keys(stack, body, session, from, to).await?;
        sent += ok + errors;
        if errors > 0 {
            eprintln!("  {errors} errors, first: {}", first_error.unwrap_or_default());
        }
        used = used.max(to);
        report.push((used, what, rss_kib(pid)));
    }
    println!();
    println!("memory: Envoy + hubgate RSS by distinct keys used (one 1 KB request per key and pass)");
    println!("{:>12} {:>10} {:>10} {:>11}", "keys used", "", "RSS MiB", "growth MiB");
    let base = report.first().map(|r| r.2).unwrap_or(0);
    for (used, what, rss) in &report {
        println!(
            "{:>12} {:>10} {:>10.1} {:>11.1}",
            used,
            what,
            *rss as f64 / 1024.0,
            (*rss as f64 - base as f64) / 1024.0
        );
    }
    Ok(sent)
}

/// One request per key `from..=to`, from 8 workers, each with its own
/// client address (127.0.0.10 + n) and one request at a time, so no address
/// ever waits on more than one unknown key (the pending-auth bound).
async fn send_with_keys(
    stack: &Stack,
    body: &[u8],
    session: &ClaudeCodeSession,
    from: u64,
    to: u64,
) -> Result<(u64, u64, Option<String>)> {
    const WORKERS: u64 = 8;
    let url = format!("{}/v1/messages", stack.gateway_url());
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..WORKERS {
        let local = std::net::IpAddr::from([127, 0, 0, 10 + w as u8]);
        let client = reqwest::Client::builder().no_proxy().local_address(local).build()?;
        let (url, body, session) = (url.clone(), body.to_vec(), session.clone());
        tasks.spawn(async move {
            let (mut ok, mut errors, mut first) = (0u64, 0u64, None);
            let mut i = from + w;
            while i <= to {
                let headers = claude_code_headers(&session, &memory_key(i)).map_err(|e| e.to_string());
                let result = match headers {
                    Ok(headers) => {
                        let target = Target { url: url.clone(), headers, envoy_pid: 0 };
                        send_once(&client, &target, body.clone()).await
                    }
                    Err(e) => Err(e),
                };
                match result {
                    Ok(()) => ok += 1,
                    Err(e) => {
                        errors += 1;
                        first.get_or_insert(e);
                    }
                }
                i += WORKERS;
            }
            (ok, errors, first)
        });
    }
    let (mut ok, mut errors, mut first) = (0, 0, None);
    while let Some(done) = tasks.join_next().await {
        let (o, e, f) = done?;
        ok += o;
        errors += e;
        if first.is_none() {
            first = f;
        }
    }
    Ok((ok, errors, first))
}

/// Creates the words through the admin API, a few at a time.
async fn create_words(admin: &AdminClient, words: &[(String, &'static str)]) -> Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    let mut iter = words.iter().cloned();
    let mut next = || iter.next();
    let spawn = |tasks: &mut tokio::task::JoinSet<Result<()>>, (word, match_type): (String, &'static str)| {
        let admin = admin.clone();
        tasks.spawn(async move {
            admin
                .post("/api/v1/sensitive-words", &json!({"word": word, "match_type": match_type}))
                .await
                .map(|_| ())
                .with_context(|| format!("creating the {match_type} word {word:?}"))
        });
    };
    for _ in 0..8 {
        if let Some(w) = next() {
            spawn(&mut tasks, w);
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
        if let Some(w) = next() {
            spawn(&mut tasks, w);
        }
    }
    Ok(())
}

/// The status and body of one request through hubgate.
async fn status_of(client: &reqwest::Client, target: &Target, body: &[u8]) -> Result<(u16, String)> {
    let r = client.post(&target.url).headers(target.headers.clone()).body(body.to_vec()).send().await?;
    let status = r.status().as_u16();
    Ok((status, r.text().await.unwrap_or_default()))
}

/// True for hubgate's sensitive-word refusal.
fn is_word_refusal(status: u16, answer: &str) -> bool {
    let code = serde_json::from_str::<Value>(answer).ok().and_then(|b| b["error"]["code"].as_str().map(str::to_string));
    status == 400 && code.as_deref() == Some("sensitive_word")
}

/// Sends `body` until hubgate refuses it for a sensitive word (the filter
/// has the policy that blocks it), for up to 30 s. Returns how many were sent.
async fn wait_until_refused(client: &reqwest::Client, target: &Target, body: &[u8]) -> Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = 0;
    loop {
        let (status, text) = status_of(client, target, body).await?;
        sent += 1;
        if is_word_refusal(status, &text) {
            return Ok(sent);
        }
        if Instant::now() > deadline {
            bail!("hubgate did not refuse a request holding a sensitive word within 30 s; last answer {status}: {text}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn start_envoy(stack: &Stack, template: &str, vars: &[(&'static str, String)], name: &str) -> Result<Envoy> {
    let mut all = vec![("UPSTREAM_PORT", stack.mock.addr().port().to_string())];
    all.extend(vars.iter().cloned());
    envoy::start(&paths::envoy()?, &paths::envoy_template(template), &all, &[], &stack.log_dir, name, "warning").await
}

/// Waits (bounded) for the audit log to catch up, then prints how many of
/// hubgate's requests were recorded and the filter's own counters. Rows are
/// counted in the database: the API counts a list's rows up to 10,000 only.
async fn report_audit(stack: &Stack, expected: u64) -> Result<()> {
    use sqlx::Connection;
    let mut db = sqlx::PgConnection::connect(stack.database_url()).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stored = 0;
    while Instant::now() < deadline {
        let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM message_request").fetch_one(&mut db).await?;
        stored = u64::try_from(rows).unwrap_or(0);
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

/// Events per POST in the ingest case: what a busy filter sends (its
/// drain joins the VMs' batches of 32 up to `event_batch_max`, 200).
const INGEST_BATCH: usize = 200;
/// POSTs in flight at once in the ingest case.
const INGEST_CONCURRENCY: usize = 4;
/// Users (one key each) the ingest case's events belong to.
const INGEST_USERS: i64 = 50;

/// Audit events shaped like the filter's, for the ingest case: forwarded
/// Claude Code requests with usage, cost (and its breakdown) and a session,
/// spread over users.
fn ingest_batch(prefix: &str, first: u64) -> hubgate_wire::EventBatch {
    let now = chrono::Utc::now().timestamp_millis();
    let events = (first..first + INGEST_BATCH as u64)
        .map(|n| {
            let user = 1_000_000 + (n as i64 % INGEST_USERS);
            let cost_usd = rust_decimal::Decimal::new(31_234 + (n % 1000) as i64, 6);
            let output_usd = rust_decimal::Decimal::new(4_500 + (n % 90) as i64 * 15, 6);
            hubgate_wire::RequestEvent {
                event_id: format!("{prefix}-{n}"),
                request_id: format!("req-{prefix}-{n}"),
                started_at_ms: now - 1500,
                user_id: Some(user),
                key_id: Some(user * 10),
                key_masked: Some("sk-…abcd".to_string()),
                provider_id: Some(1),
                method: "POST".to_string(),
                endpoint: "/v1/messages".to_string(),
                original_model: Some("claude-sonnet-4-5".to_string()),
                upstream_model: Some("claude-sonnet-4-5-20250929".to_string()),
                status: 200,
                duration_ms: 1480,
                ttfb_ms: Some(420),
                usage: hubgate_wire::Usage {
                    input_tokens: 1200 + n % 700,
                    output_tokens: 300 + n % 90,
                    cache_creation_5m_tokens: 2048,
                    cache_creation_1h_tokens: 0,
                    cache_read_tokens: 40_960,
                },
                cost_usd,
                cost_multiplier: rust_decimal::Decimal::ONE,
                // As the filter reports a billed request's cost (the parts add up).
                cost_breakdown: Some(hubgate_wire::CostBreakdown {
                    input_usd: cost_usd - output_usd,
                    output_usd,
                    ..Default::default()
                }),
                session_id: Some(format!("0b1c2d3e-0000-4000-8000-{:012}", user * 100 + (n as i64 % 3))),
                user_agent: Some("claude-cli/2.1.197 (external, sdk-cli)".to_string()),
                client_ip: Some("127.0.0.1".to_string()),
                stream: true,
                blocked_by: None,
                blocked_reason: None,
                error: None,
                flags: Vec::new(),
                leases: Vec::new(),
            }
        })
        .collect();
    hubgate_wire::EventBatch { events }
}

/// Where the ingest case sends its batches.
#[derive(Clone)]
struct IngestTarget {
    url: String,
    token: String,
    cp_pid: u32,
    database_url: String,
}

impl IngestTarget {
    fn of(stack: &Stack) -> IngestTarget {
        IngestTarget {
            url: format!("http://{}{}", stack.control_plane.internal_addr, hubgate_wire::EVENTS_PATH),
            token: stack.internal_token.clone(),
            cp_pid: stack.control_plane.child.pid(),
            database_url: stack.database_url().to_string(),
        }
    }
}

/// Keys of the ingest case's users (see `ingest_batch`): no other case uses
/// ids this high.
const INGEST_FIRST_KEY: i64 = 10_000_000;

/// Posts batches from `INGEST_CONCURRENCY` tasks until `secs` have passed,
/// adding the events stored to `stored` as they are acknowledged.
async fn ingest_for(
    target: &IngestTarget,
    prefix: &str,
    next: &Arc<AtomicU64>,
    stored: &Arc<AtomicU64>,
    secs: u64,
) -> Result<()> {
    let http = client(INGEST_CONCURRENCY)?;
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..INGEST_CONCURRENCY {
        let (http, url, token) = (http.clone(), target.url.clone(), target.token.clone());
        let (prefix, next, stored) = (prefix.to_string(), next.clone(), stored.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let first = next.fetch_add(INGEST_BATCH as u64, Ordering::Relaxed);
                let batch = ingest_batch(&prefix, first);
                let resp = http.post(&url).bearer_auth(&token).json(&batch).send().await?;
                if !resp.status().is_success() {
                    bail!("ingest answered {}: {}", resp.status(), resp.text().await.unwrap_or_default());
                }
                let ack: hubgate_wire::EventBatchAck = resp.json().await?;
                stored.fetch_add(u64::from(ack.accepted), Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// The backends serving `db` (the control plane's pooled connections).
async fn backend_pids(db: &mut sqlx::PgConnection) -> Result<Vec<u32>> {
    let pids: Vec<(i32,)> = sqlx::query_as(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(db)
    .await?;
    Ok(pids.into_iter().filter_map(|(p,)| u32::try_from(p).ok()).collect())
}

/// The audit pipeline alone: event batches POSTed straight at the control
/// plane's internal API for `secs` (after one second of warmup), as fast as
/// it takes them. Prints events per second and the CPU the control plane
/// and Postgres spend per event: Postgres as a whole (every `postgres`
/// process on the machine, other databases' work included) and the
/// backends serving this database alone; then the range of the control
/// plane's and these backends' CPU per event over one-second slices (on a
/// shared machine the lowest slices show the cost with the least
/// interference). Then checks that the usage rollup and the sessions add
/// up to the stored rows. Returns the events stored.
async fn ingest_case(target: &IngestTarget, secs: u64) -> Result<u64> {
    use sqlx::Connection;
    eprintln!(
        "ingest case: batches of {INGEST_BATCH} events, {INGEST_CONCURRENCY} in flight, 1 s warmup then {secs} s, straight at the internal API..."
    );
    let mut db = sqlx::PgConnection::connect(&target.database_url).await?;
    create_ingest_users(&mut db).await?;
    let prefix = hubgate_e2e::random_token(8);
    let next = Arc::new(AtomicU64::new(0));
    let stored = Arc::new(AtomicU64::new(0));
    ingest_for(target, &prefix, &next, &stored, 1).await?;
    let warm = stored.swap(0, Ordering::Relaxed);
    let backends = backend_pids(&mut db).await?;
    let backends_cpu = || backends.iter().map(|&pid| cpu_us(pid)).sum::<u64>();
    let before = Cpu::read_pipeline(target.cp_pid);
    let backends_before = backends_cpu();
    let started = Instant::now();
    let load = {
        let (target, prefix, next, stored) = (target.clone(), prefix.clone(), next.clone(), stored.clone());
        tokio::spawn(async move { ingest_for(&target, &prefix, &next, &stored, secs).await })
    };
    // (events, control plane µs, backends µs) of each full second.
    let mut slices = Vec::new();
    let mut last = (0, cpu_us(target.cp_pid), backends_before);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(1), Duration::from_secs(1));
    while slices.len() + 1 < secs as usize {
        tick.tick().await;
        let now = (stored.load(Ordering::Relaxed), cpu_us(target.cp_pid), backends_cpu());
        slices.push((now.0 - last.0, now.1.saturating_sub(last.1), now.2.saturating_sub(last.2)));
        last = now;
    }
    load.await??;
    let elapsed = started.elapsed().as_secs_f64();
    let stored = stored.load(Ordering::Relaxed);
    let cpu = Cpu::read_pipeline(target.cp_pid).since(before);
    let backends_used = backends_cpu().saturating_sub(backends_before);
    let per = |us: u64| us as f64 / stored.max(1) as f64;
    println!();
    println!(
        "audit ingest: {stored} events in {elapsed:.1} s = {:.0} events/s (batches of {INGEST_BATCH}, {INGEST_CONCURRENCY} in flight); \
         CPU per event, microseconds: control plane {:.1}, postgres {:.1}, together {:.1}; \
         postgres backends of this database {:.1} ({} backends)",
        stored as f64 / elapsed,
        per(cpu.control_plane),
        per(cpu.postgres),
        per(cpu.control_plane + cpu.postgres),
        per(backends_used),
        backends.len(),
    );
    let mut cp: Vec<f64> = slices.iter().filter(|s| s.0 > 0).map(|s| s.1 as f64 / s.0 as f64).collect();
    let mut pg: Vec<f64> = slices.iter().filter(|s| s.0 > 0).map(|s| s.2 as f64 / s.0 as f64).collect();
    let mut sum: Vec<f64> = slices.iter().filter(|s| s.0 > 0).map(|s| (s.1 + s.2) as f64 / s.0 as f64).collect();
    if !sum.is_empty() {
        let range = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            format!("{:.1} / {:.1} / {:.1}", v[0], v[v.len() / 2], v[v.len() - 1])
        };
        println!(
            "per one-second slice ({}), lowest / median / highest: control plane {}, postgres backends {}, together {}",
            sum.len(),
            range(&mut cp),
            range(&mut pg),
            range(&mut sum)
        );
    }
    check_ingested(&mut db, warm + stored).await?;
    Ok(warm + stored)
}

/// The users and keys the ingest case's events name, as in a real
/// deployment, where ingestion keeps their five-hour windows.
async fn create_ingest_users(db: &mut sqlx::PgConnection) -> Result<()> {
    let first_user = INGEST_FIRST_KEY / 10;
    sqlx::query(
        "INSERT INTO users (id, name, name_fold) \
         SELECT $1 + g, 'bench-ingest-' || g, 'bench-ingest-' || g FROM generate_series(0, $2 - 1) g \
         ON CONFLICT DO NOTHING",
    )
    .bind(first_user)
    .bind(INGEST_USERS)
    .execute(&mut *db)
    .await?;
    sqlx::query(
        "INSERT INTO keys (id, user_id, name, key_hash, key_masked) \
         SELECT $1 + 10 * g, $2 + g, 'bench', 'bench-ingest-' || g, 'sk-…abcd' FROM generate_series(0, $3 - 1) g \
         ON CONFLICT DO NOTHING",
    )
    .bind(INGEST_FIRST_KEY)
    .bind(first_user)
    .bind(INGEST_USERS)
    .execute(&mut *db)
    .await?;
    Ok(())
}

/// The ingest case's rows, their usage rollup and their sessions agree.
async fn check_ingested(db: &mut sqlx::PgConnection, stored: u64) -> Result<()> {
    let (rows, cost): (i64, rust_decimal::Decimal) =
        sqlx::query_as("SELECT count(*), coalesce(sum(cost_usd), 0) FROM message_request WHERE key_id >= $1")
            .bind(INGEST_FIRST_KEY)
            .fetch_one(&mut *db)
            .await?;
    let (rolled_rows, rolled_cost): (rust_decimal::Decimal, rust_decimal::Decimal) = sqlx::query_as(
        "SELECT coalesce(sum(request_count), 0), coalesce(sum(cost_usd), 0) FROM usage_rollup \
         WHERE entity_type = 'key' AND entity_id >= $1",
    )
    .bind(INGEST_FIRST_KEY)
    .fetch_one(&mut *db)
    .await?;
    let (session_rows,): (rust_decimal::Decimal,) =
        sqlx::query_as("SELECT coalesce(sum(request_count), 0) FROM sessions WHERE key_id >= $1")
            .bind(INGEST_FIRST_KEY)
            .fetch_one(&mut *db)
            .await?;
    let rows_dec = rust_decimal::Decimal::from(rows);
    if u64::try_from(rows).ok() != Some(stored) || rolled_rows != rows_dec || rolled_cost != cost || session_rows != rows_dec {
        bail!(
            "ingest case: {stored} events accepted, {rows} rows costing {cost}; rollup {rolled_rows} requests \
             costing {rolled_cost}; sessions {session_rows} requests"
        );
    }
    println!("ingest check: {rows} rows, their usage rollup and sessions agree");
    Ok(())
}

/// `--only-ingest`: the ingest case on a control plane and a fresh
/// database, nothing else.
async fn only_ingest(secs: u64) -> Result<()> {
    let log_dir = paths::fresh_log_dir("bench-ingest")?;
    let db = hubgate_e2e::db::TestDb::create(&paths::database_admin_url()).await?;
    let token = hubgate_e2e::random_token(32);
    eprintln!("starting the control plane on {} (logs in {})...", db.name, log_dir.display());
    let cp = hubgate_e2e::control_plane::start(
        &paths::control_plane()?,
        &db.url,
        &token,
        &log_dir.join("control-plane.log"),
        &[],
    )
    .await?;
    let target = IngestTarget {
        url: format!("http://{}{}", cp.internal_addr, hubgate_wire::EVENTS_PATH),
        token,
        cp_pid: cp.child.pid(),
        database_url: db.url.clone(),
    };
    ingest_case(&target, secs).await?;
    // The control plane goes before its database.
    drop(cp);
    drop(db);
    Ok(())
}

/// One body at one concurrency, through the three columns.
struct Row {
    label: &'static str,
    bytes: usize,
    results: Vec<(Outcome, Cpu)>,
}

/// The three targets and what every case shares.
struct Bench {
    http: reqwest::Client,
    targets: Vec<Arc<Target>>,
    cp_pid: u32,
    /// Requests sent through hubgate so far: each should become an audit row.
    hubgate_requests: u64,
}

impl Bench {
    /// Runs `body` through every target in turn: warmup, then measure (CPU
    /// read from /proc around the measurement).
    async fn run_case(
        &mut self,
        label: &'static str,
        bodies: Bodies,
        concurrency: usize,
        (warmup_secs, secs): (u64, u64),
    ) -> Row {
        let mut results = Vec::new();
        for (i, target) in self.targets.iter().enumerate() {
            let name = COLUMNS[i];
            eprintln!(
                "{label} body ({} bytes), concurrency {concurrency}, via {name}: warmup {warmup_secs}s, measure {secs}s...",
                bodies.len()
            );
            if warmup_secs > 0 {
                let warm = drive(&self.http, target, &bodies, concurrency, warmup_secs).await;
                if i == HUBGATE {
                    self.hubgate_requests += warm.sent();
                }
            }
            let before = Cpu::read(target.envoy_pid, self.cp_pid);
            let out = drive(&self.http, target, &bodies, concurrency, secs).await;
            // Let the last event batch reach the control plane before reading.
            if i == HUBGATE {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                self.hubgate_requests += out.sent();
            }
            let cpu = Cpu::read(target.envoy_pid, self.cp_pid).since(before);
            if out.errors > 0 {
                eprintln!("  {name}: {} errors, first: {}", out.errors, out.first_error.as_deref().unwrap_or(""));
            }
            results.push((out, cpu));
        }
        Row { label, bytes: bodies.len(), results }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let s = settings()?;
    if s.only_ingest {
        return only_ingest(s.ingest_secs).await;
    }
    let started = Instant::now();
    let empty_wasm = paths::empty_wasm()?;
    let mut options = StackOptions::new("bench").poll_interval_ms(1000);
    options.record_requests = false;
    options.envoy_log_level = "warning".to_string();
    eprintln!("starting the stack (control plane, Envoy + hubgate, Envoy + empty filter, plain Envoy, mock provider)...");
    let stack = Stack::start(options).await?;
    let plain = start_envoy(&stack, "plain.yaml.tmpl", &[], "envoy-plain").await?;
    let empty = start_envoy(
        &stack,
        "empty-filter.yaml.tmpl",
        &[("EMPTY_WASM_PATH", empty_wasm.display().to_string())],
        "envoy-empty-filter",
    )
    .await?;
    let model = stack.claude_model("claude-sonnet-4").await.unwrap_or_else(|_| "claude-sonnet-4-5".to_string());
    let session = ClaudeCodeSession::random();
    let small = small_body(&model, &session, 1024)?;
    let large = serde_json::to_vec(&claude_code::body(&model, &session, false))?;
    let next_turn = Bodies::fresh(&next_turn_body(&model, &session)?)?;
    let all_new = Bodies::fresh(&all_new_body(&model, &session)?)?;

    // Every guard on (issue 6, "Speed").
    eprintln!(
        "configuring hubgate: settings, user, request filters, {CONTAINS_WORDS} contains + {EXACT_WORDS} exact + {} regex words...",
        REGEXES.len()
    );
    stack
        .admin
        .patch(
            "/api/v1/settings",
            &json!({"enable_client_version_check": true, "intercept_anthropic_warmup_requests": true}),
        )
        .await?;
    let (_user, key) = stack
        .user_with_key(json!({"allowed_clients": ["claude-cli"], "allowed_models": [model.clone(), "claude-haiku-4-5"]}))
        .await?;
    let filters = request_filters(stack.provider_id()?);
    for filter in &filters {
        stack.admin.post("/api/v1/request-filters", filter).await.with_context(|| format!("creating {filter}"))?;
    }
    // Words last: once the last one is refused, the filter has it all.
    let words = sensitive_words(&[&small, &large]);
    create_words(&stack.admin, &words).await?;

    let mock_key = stack.mock.api_key().to_string();
    let targets: Vec<Arc<Target>> = vec![
        Arc::new(Target {
            url: format!("{}/v1/messages", plain.url()),
            headers: claude_code_headers(&session, &mock_key)?,
            envoy_pid: plain.child.pid(),
        }),
        Arc::new(Target {
            url: format!("{}/v1/messages", empty.url()),
            headers: claude_code_headers(&session, &mock_key)?,
            envoy_pid: empty.child.pid(),
        }),
        Arc::new(Target {
            url: format!("{}/v1/messages", stack.gateway_url()),
            headers: claude_code_headers(&session, &key.raw)?,
            envoy_pid: stack.envoy.child.pid(),
        }),
    ];
    let http = client(s.concurrency)?;
    // Every request hubgate answered should end up as one audit row; the
    // stack's readiness probe made one already.
    let mut hubgate_requests: u64 = 1;

    // The filter has the whole policy once the last word is refused; then
    // one word of each kind is, and the bench's own requests are not.
    let hub = &targets[HUBGATE];
    hubgate_requests += wait_until_refused(&http, hub, &body_with_text(&model, &session, REGEX_PROBE)?).await?;
    let contains = words.iter().find(|w| w.1 == "contains").map(|w| w.0.clone()).unwrap_or_default();
    let exact = words.iter().find(|w| w.1 == "exact").map(|w| w.0.clone()).unwrap_or_default();
    for text in [format!("what does {} mean here?", contains.to_uppercase()), format!("  {exact} ")] {
        let (status, answer) = status_of(&http, hub, &body_with_text(&model, &session, &text)?).await?;
        hubgate_requests += 1;
        if !is_word_refusal(status, &answer) {
            bail!("hubgate did not refuse a sensitive word ({text:?}): {status} {answer}");
        }
    }
    let first_requests = [small.clone(), large.clone(), next_turn.next(), all_new.next()];
    for (label, body) in ["1 KB", "115 KB", "115 KB+", "115 KB*"].into_iter().zip(first_requests) {
        for (i, target) in targets.iter().enumerate() {
            send_once(&http, target, body.clone())
                .await
                .map_err(|e| anyhow!("the {label} bench request fails via {}: {e}", COLUMNS[i]))?;
            if i == HUBGATE {
                hubgate_requests += 1;
            }
        }
    }
    eprintln!("hubgate has the policy ({:.0} s since start)", started.elapsed().as_secs_f64());

    let mut bench = Bench { http, targets, cp_pid: stack.control_plane.child.pid(), hubgate_requests };
    let times = (s.warmup_secs, s.secs);
    let mut rows = Vec::new();
    let cases = [
        ("1 KB", Bodies::Same(Arc::new(small.clone()))),
        ("115 KB", Bodies::Same(Arc::new(large))),
        ("115 KB+", next_turn),
        ("115 KB*", all_new),
    ];
    for (label, bodies) in cases {
        rows.push(bench.run_case(label, bodies, s.concurrency, times).await);
    }
    // Latency without queueing: one request at a time, 1 KB.
    let serial_times = (s.warmup_secs.min(1), s.secs.min(5));
    let serial = bench.run_case("1 KB", Bodies::Same(Arc::new(small.clone())), 1, serial_times).await;

    let per = |us: u64, n: u64| us as f64 / n.max(1) as f64;
    println!();
    println!(
        "hubgate benchmark: concurrency {}, {} s per case (after {} s warmup), same mock upstream, JSON replies",
        s.concurrency, s.secs, s.warmup_secs
    );
    println!("  plain   = Envoy, no filter (envoy/plain.yaml.tmpl)");
    println!("  empty   = Envoy + empty proxy-wasm filter: buffers and reads the body, nothing else (envoy/empty-filter.yaml.tmpl)");
    println!(
        "  hubgate = Envoy + hubgate, every guard on: {CONTAINS_WORDS} contains, {EXACT_WORDS} exact, {} regex sensitive words;",
        REGEXES.len()
    );
    println!(
        "            {} request filters; user allowed_clients [claude-cli], allowed_models [{model}, …];",
        filters.len()
    );
    println!("            client version check; warmup intercept;");
    println!("            with the control plane and PostgreSQL ingesting every audit event");
    println!("  requests: Claude Code headers and metadata.user_id; 115 KB = a Claude Code first turn, the same bytes each time;");
    println!("            115 KB+ = the same with a new last turn in every request (what a session sends);");
    println!("            115 KB* = every part new in every request (system, tools, messages: nothing seen before)");
    println!();
    println!(
        "{:<7} {:>7} {:>10} {:>10} {:>11} {:>12} {:>14} {:>14} {:>7}",
        "body", "bytes", "RPS plain", "RPS empty", "RPS hubgate", "empty/plain", "hubgate/plain", "hubgate/empty", "errors"
    );
    for row in &rows {
        let [p, e, h] = [&row.results[PLAIN].0, &row.results[EMPTY].0, &row.results[HUBGATE].0];
        println!(
            "{:<7} {:>7} {:>10.0} {:>10.0} {:>11.0} {:>12.2} {:>14.2} {:>14.2} {:>7}",
            row.label,
            row.bytes,
            p.rps(),
            e.rps(),
            h.rps(),
            e.rps() / p.rps(),
            h.rps() / p.rps(),
            h.rps() / e.rps(),
            p.errors + e.errors + h.errors,
        );
    }
    println!();
    println!("latency, ms (+ = added over plain Envoy)");
    println!(
        "{:<7} {:>9} {:>9} {:>11} {:>10} {:>12} {:>9} {:>9} {:>11} {:>10} {:>12}",
        "body", "p50 plain", "p50 empty", "p50 hubgate", "+p50 empty", "+p50 hubgate", "p99 plain", "p99 empty",
        "p99 hubgate", "+p99 empty", "+p99 hubgate"
    );
    for row in &rows {
        let [p, e, h] = [&row.results[PLAIN].0, &row.results[EMPTY].0, &row.results[HUBGATE].0];
        let (p50, p99) = (|o: &Outcome| o.percentile_ms(0.5), |o: &Outcome| o.percentile_ms(0.99));
        println!(
            "{:<7} {:>9.2} {:>9.2} {:>11.2} {:>10.2} {:>12.2} {:>9.2} {:>9.2} {:>11.2} {:>10.2} {:>12.2}",
            row.label,
            p50(p),
            p50(e),
            p50(h),
            p50(e) - p50(p),
            p50(h) - p50(p),
            p99(p),
            p99(e),
            p99(h),
            p99(e) - p99(p),
            p99(h) - p99(p),
        );
    }
    println!();
    println!("CPU per request, microseconds (from /proc; independent of what else loads the machine):");
    println!(
        "{:<7} {:>11} {:>11} {:>13} {:>11} {:>13} {:>13} {:>14} {:>9}",
        "body", "envoy plain", "envoy empty", "envoy hubgate", "empty-plain", "hubgate-plain", "hubgate-empty",
        "control plane", "postgres"
    );
    for row in &rows {
        let [(p, pc), (e, ec), (h, hc)] = [&row.results[PLAIN], &row.results[EMPTY], &row.results[HUBGATE]];
        let (plain_us, empty_us, hub_us) = (per(pc.envoy, p.ok), per(ec.envoy, e.ok), per(hc.envoy, h.ok));
        println!(
            "{:<7} {:>11.1} {:>11.1} {:>13.1} {:>11.1} {:>13.1} {:>13.1} {:>14.1} {:>9.1}",
            row.label,
            plain_us,
            empty_us,
            hub_us,
            empty_us - plain_us,
            hub_us - plain_us,
            hub_us - empty_us,
            per(hc.control_plane, h.ok),
            per(hc.postgres, h.ok),
        );
    }
    println!("(control plane and postgres: per request through hubgate, ingesting its audit events)");
    println!();
    let [(p, pc), (e, ec), (h, hc)] = [&serial.results[PLAIN], &serial.results[EMPTY], &serial.results[HUBGATE]];
    let p50_us = |o: &Outcome| o.percentile_ms(0.5) * 1000.0;
    println!(
        "concurrency 1, {} body ({} bytes), {} s per column (after {} s warmup): p50 and Envoy CPU per request, microseconds",
        serial.label, serial.bytes, serial_times.1, serial_times.0
    );
    println!(
        "{:>9} {:>9} {:>11} {:>10} {:>12} {:>12} {:>11} {:>11} {:>13} {:>7}",
        "p50 plain", "p50 empty", "p50 hubgate", "+p50 empty", "+p50 hubgate", "hubgate-empty", "cpu plain", "cpu empty",
        "cpu hubgate", "errors"
    );
    println!(
        "{:>9.0} {:>9.0} {:>11.0} {:>10.0} {:>12.0} {:>12.0} {:>11.1} {:>11.1} {:>13.1} {:>7}",
        p50_us(p),
        p50_us(e),
        p50_us(h),
        p50_us(e) - p50_us(p),
        p50_us(h) - p50_us(p),
        p50_us(h) - p50_us(e),
        per(pc.envoy, p.ok),
        per(ec.envoy, e.ok),
        per(hc.envoy, h.ok),
        p.errors + e.errors + h.errors,
    );
    if s.memory_keys > 0 {
        let sent = memory_case(&stack, &small, &session, s.memory_keys, s.memory_passes).await?;
        bench.hubgate_requests += sent;
    }
    if s.ingest_secs > 0 {
        bench.hubgate_requests += ingest_case(&IngestTarget::of(&stack), s.ingest_secs).await?;
    }
    println!();
    println!("mock upstream served {} requests in total", stack.mock.request_count());
    report_audit(&stack, bench.hubgate_requests).await?;
    eprintln!("bench done in {:.0} s", started.elapsed().as_secs_f64());
    drop(empty);
    drop(plain);
    Ok(())
}
