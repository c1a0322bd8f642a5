//! hubgate-console-bench: how fast the control plane answers the admin
//! console's reads on a big audit log.
//!
//! Seeds a fresh database with `--rows` audit rows (default 1,000,000)
//! spread evenly over the last 7 days: 50 users with a key each, 3
//! providers, 6 models, about 88 % plain 200s and the rest upstream errors
//! (429, 500, 502) and guard refusals (sensitive_word, model_not_allowed,
//! rpm_exceeded, invalid_api_key, no_provider_available). The rows go in
//! with one `INSERT … SELECT generate_series`; the hourly rollups are then
//! built from them as ingestion would have kept them: `request_rollup` with
//! migration 0019's own backfill statement, `usage_rollup` (users, keys,
//! providers; forwarded requests only) with the same grouping; then
//! `VACUUM ANALYZE`, as autovacuum would have run on a live table. A few
//! hundred sessions are active.
//!
//! Then, against the control plane started on that database (release
//! build: `HUBGATE_CP_BIN`, see `tests/bench/console`), each endpoint is
//! called 2 times to warm up and `--calls` times (default 20) one after
//! another; the table shows the client's wall time per call on localhost
//! (p50 and max) against the 300 ms target. Reports only: nothing here
//! fails on a timing.
//!
//! Usage: hubgate-console-bench [--rows N] [--calls N]

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hubgate_e2e::{control_plane, db::TestDb, paths};
use sqlx::{Connection, PgConnection};

/// What every endpoint must answer within.
const TARGET: Duration = Duration::from_millis(300);
const USERS: i64 = 50;
const MODELS: [&str; 6] =
    ["claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5", "gpt-5", "gpt-5-mini", "gemini-2.5-pro"];
/// Migration 0019, whose backfill statement builds `request_rollup`.
const MIGRATION: &str = include_str!("../../../../control-plane/migrations/0019_rollup_upstream_model.sql");

struct Settings {
    rows: i64,
    calls: usize,
}

fn settings() -> Result<Settings> {
    let mut s = Settings { rows: 1_000_000, calls: 20 };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || -> Result<i64> {
            let v = args.next().with_context(|| format!("{arg} needs a value"))?;
            v.parse().with_context(|| format!("{arg} {v}"))
        };
        match arg.as_str() {
            "--rows" => s.rows = value()?,
            "--calls" => s.calls = value()? as usize,
            "-h" | "--help" => {
                println!("usage: hubgate-console-bench [--rows N] [--calls N]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    if s.rows < 1000 || s.calls == 0 {
        bail!("--rows must be at least 1000 and --calls positive");
    }
    Ok(s)
}

/// The statement of migration 0019 that fills `request_rollup` from the
/// audit rows.
fn rollup_backfill() -> Result<&'static str> {
    let start = MIGRATION.find("INSERT INTO request_rollup").context("no backfill in migration 0019")?;
    let end = MIGRATION[start..].find(';').context("unterminated backfill")?;
    Ok(&MIGRATION[start..start + end])
}

/// Users, keys, providers, the audit rows, the rollups and sessions.
async fn seed(db: &mut PgConnection, rows: i64) -> Result<()> {
    let users: Vec<(i64,)> = sqlx::query_as(
        "INSERT INTO users (name, name_fold) SELECT 'bench-user-' || g, 'bench-user-' || g \
         FROM generate_series(1, $1) g RETURNING id",
    )
    .bind(USERS)
    .fetch_all(&mut *db)
    .await?;
    let users: Vec<i64> = users.into_iter().map(|(id,)| id).collect();
    let keys: Vec<(i64,)> = sqlx::query_as(
        "INSERT INTO keys (user_id, name, key_hash, key_masked) \
         SELECT u, 'bench', 'bench-key-' || u, 'sk-…' || u FROM unnest($1::int8[]) WITH ORDINALITY AS t(u, n) \
         ORDER BY n RETURNING id",
    )
    .bind(&users)
    .fetch_all(&mut *db)
    .await?;
    let keys: Vec<i64> = keys.into_iter().map(|(id,)| id).collect();
    let providers: Vec<(i64,)> = sqlx::query_as(
        "INSERT INTO providers (name, name_fold, type, base_url, credential) \
         SELECT 'bench-provider-' || g, 'bench-provider-' || g, 'claude', 'https://api.example.com', 'sk' \
         FROM generate_series(1, 3) g RETURNING id",
    )
    .fetch_all(&mut *db)
    .await?;
    let providers: Vec<i64> = providers.into_iter().map(|(id,)| id).collect();
    // Days as the partition job would have made them, one a day.
    sqlx::query("SELECT hubgate_ensure_audit_partitions(current_date - 8, current_date + 7)")
        .execute(&mut *db)
        .await?;

    let started = Instant::now();
    // Row g: user (g*7)%50, model (g*13)%6; r = (g*7919)%1000 picks the
    // answer. Oldest first, so ids grow with time as at ingestion.
    sqlx::query(
        "INSERT INTO message_request (event_id, request_id, started_at, received_at, user_id, key_id, key_masked, \
           provider_id, method, endpoint, original_model, upstream_model, status, duration_ms, ttfb_ms, \
           input_tokens, output_tokens, cache_creation_5m_tokens, cache_creation_1h_tokens, cache_read_tokens, \
           cost_usd, cost_multiplier, session_id, user_agent, client_ip, stream, blocked_by, blocked_reason, \
           error, flags, cost_breakdown) \
         SELECT 'bench-' || g, 'req-' || g, t, t + interval '2 seconds', users[u], keys[u], 'sk-…' || users[u], \
           CASE WHEN blocked IS NULL THEN providers[1 + (g % 3)::int] END, 'POST', '/v1/messages', models[m], \
           CASE WHEN blocked IS NULL THEN models[m] || '-20250929' END, status, 900 + g % 4000, \
           CASE WHEN blocked IS NULL THEN 200 + g % 700 END, \
           CASE WHEN ok THEN 1000 + g % 5000 ELSE 0 END, CASE WHEN ok THEN 100 + g % 900 ELSE 0 END, \
           CASE WHEN ok THEN g % 2048 ELSE 0 END, 0, CASE WHEN ok THEN g % 40000 ELSE 0 END, \
           CASE WHEN ok THEN (1 + g % 997) * 0.00003 ELSE 0 END, 1, \
           CASE WHEN blocked IS NULL THEN 'sess-' || u || '-' || g % 7 END, \
           'claude-cli/2.1.' || (190 + g % 8) || ' (external, sdk-cli)', '10.0.' || u || '.7', g % 2 = 0, \
           blocked, CASE WHEN blocked IS NOT NULL THEN jsonb_build_object('code', blocked) END, \
           CASE WHEN status <> 200 THEN 'status ' || status END, '{}', \
           CASE WHEN ok THEN jsonb_build_object('input_usd', ((1 + g % 997) * 0.00001)::text, \
             'output_usd', ((1 + g % 997) * 0.00002)::text, 'cache_creation_5m_usd', '0', \
             'cache_creation_1h_usd', '0', 'cache_read_usd', '0') END \
         FROM (SELECT g, now() - ($1 - g)::float8 * (interval '7 days' / $1::float8) AS t, \
                 1 + ((g * 7) % 50)::int AS u, 1 + ((g * 13) % 6)::int AS m, a.status, a.blocked, \
                 a.status = 200 AS ok, $2::int8[] AS users, $3::int8[] AS keys, $4::int8[] AS providers, \
                 $5::text[] AS models \
               FROM generate_series(1, $1) g \
               CROSS JOIN LATERAL (SELECT (g * 7919) % 1000 AS r) x \
               CROSS JOIN LATERAL (SELECT \
                 CASE WHEN r < 880 THEN 200 WHEN r < 905 THEN 429 WHEN r < 925 THEN 500 WHEN r < 935 THEN 502 \
                   WHEN r < 970 THEN 400 WHEN r < 985 THEN 429 WHEN r < 995 THEN 401 ELSE 503 END AS status, \
                 CASE WHEN r < 935 THEN NULL WHEN r < 955 THEN 'sensitive_word' WHEN r < 970 THEN 'model_not_allowed' \
                   WHEN r < 985 THEN 'rpm_exceeded' WHEN r < 995 THEN 'invalid_api_key' \
                   ELSE 'no_provider_available' END AS blocked) a) s",
    )
    .bind(rows)
    .bind(&users)
    .bind(&keys)
    .bind(&providers)
    .bind(MODELS.map(str::to_string).to_vec())
    .execute(&mut *db)
    .await
    .context("seeding message_request")?;
    eprintln!("  {rows} audit rows in {:.1} s", started.elapsed().as_secs_f64());

    let started = Instant::now();
    sqlx::query(rollup_backfill()?).execute(&mut *db).await.context("request_rollup backfill")?;
    // What ingestion adds to usage_rollup (internal/events.rs): forwarded
    // requests per hour and user, key, provider.
    sqlx::query(
        "INSERT INTO usage_rollup (entity_type, entity_id, bucket_start, cost_usd, request_count, input_tokens, \
           output_tokens) \
         SELECT e.kind, e.entity, date_trunc('hour', m.started_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', \
           sum(m.cost_usd), count(*), sum(m.input_tokens), sum(m.output_tokens) \
         FROM message_request m \
         CROSS JOIN LATERAL (VALUES ('user', m.user_id), ('key', m.key_id), ('provider', m.provider_id)) \
           AS e(kind, entity) \
         WHERE m.blocked_by IS NULL AND e.entity IS NOT NULL GROUP BY 1, 2, 3",
    )
    .execute(&mut *db)
    .await
    .context("usage_rollup")?;
    sqlx::query(
        "INSERT INTO sessions (key_id, session_id, user_id, provider_id, client, first_seen_at, last_seen_at, \
           request_count) \
         SELECT k, 'live-' || k || '-' || n, u, ($3::int8[])[1], 'claude-cli/2.1.197 (external, sdk-cli)', \
           now() - interval '1 hour', now() - n * interval '7 seconds', 10 \
         FROM unnest($1::int8[], $2::int8[]) AS t(k, u), generate_series(1, 8) n",
    )
    .bind(&keys)
    .bind(&users)
    .bind(&providers)
    .execute(&mut *db)
    .await?;
    eprintln!("  rollups and sessions in {:.1} s", started.elapsed().as_secs_f64());
    let started = Instant::now();
    sqlx::query("VACUUM (ANALYZE) message_request, request_rollup, usage_rollup, sessions")
        .execute(&mut *db)
        .await?;
    eprintln!("  VACUUM ANALYZE in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

struct Timing {
    label: String,
    p50: Duration,
    max: Duration,
    /// Held to the target (informational rows are not).
    target: bool,
    note: String,
}

async fn time_calls(http: &reqwest::Client, base: &str, token: &str, path: &str, calls: usize) -> Result<(Vec<Duration>, String)> {
    let mut times = Vec::with_capacity(calls);
    let mut note = String::new();
    for i in 0..calls + 2 {
        let started = Instant::now();
        let resp = http.get(format!("{base}{path}")).bearer_auth(token).send().await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        let took = started.elapsed();
        if !status.is_success() {
            bail!("GET {path} answered {status}: {}", String::from_utf8_lossy(&body));
        }
        if i == 0 {
            note = describe(&body);
        }
        if i >= 2 {
            times.push(took);
        }
    }
    times.sort();
    Ok((times, note))
}

/// What an answer holds, in a few words.
fn describe(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        let lines = body.iter().filter(|&&b| b == b'\n').count();
        return format!("{} CSV lines, {} KB", lines, body.len() / 1024);
    };
    if let Some(items) = v["items"].as_array() {
        return format!(
            "{} items, total {}{}",
            items.len(),
            v["total"],
            if v["total_capped"] == true { " (capped)" } else { "" }
        );
    }
    if let Some(totals) = v.get("totals") {
        return format!("{} buckets, {} requests", v["series"].as_array().map_or(0, Vec::len), totals["requests"]);
    }
    format!("{} bytes", body.len())
}

#[tokio::main]
async fn main() -> Result<()> {
    let s = settings()?;
    let log_dir = paths::fresh_log_dir("bench-console")?;
    let db = TestDb::create(&paths::database_admin_url()).await?;
    let bin = paths::control_plane()?;
    let token = hubgate_e2e::random_token(32);
    eprintln!("console bench: database {}, control plane {} (logs in {})", db.name, bin.display(), log_dir.display());
    let cp = control_plane::start(
        &bin,
        &db.url,
        &hubgate_e2e::random_token(32),
        &log_dir.join("control-plane.log"),
        // The client-version job reads a week of audit rows: not during the measurement.
        &[("HUBGATE_CLIENT_VERSION_INTERVAL_SECS", "86400".to_string())],
    )
    .await?;
    control_plane::bootstrap(&bin, &db.url, &token, &log_dir.join("bootstrap.log")).await?;
    let mut conn = PgConnection::connect(&db.url).await?;
    eprintln!("seeding...");
    seed(&mut conn, s.rows).await?;
    let (rollup_rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM request_rollup").fetch_one(&mut conn).await?;
    let (usage_rows,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM usage_rollup WHERE entity_type = 'user'").fetch_one(&mut conn).await?;
    let (user, mid): (i64, i64) =
        sqlx::query_as("SELECT min(user_id), (min(id) + max(id)) / 2 FROM message_request").fetch_one(&mut conn).await?;

    let base = cp.url();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?;
    let cases: Vec<(String, bool)> = vec![
        ("/api/v1/requests".into(), true),
        ("/api/v1/requests?model=gpt-5".into(), true),
        // A model no row has: the rollup says so before the log is read.
        ("/api/v1/requests?model=no-such-model".into(), true),
        ("/api/v1/requests?status=429".into(), true),
        (format!("/api/v1/requests?user_id={user}"), true),
        ("/api/v1/overview?window=hour".into(), true),
        ("/api/v1/overview?window=day".into(), true),
        ("/api/v1/overview?window=week".into(), true),
        (format!("/api/v1/requests/{mid}"), true),
        ("/api/v1/requests?model=gpt-5&status=500&page=3".into(), true),
        ("/api/v1/requests/export.csv?status=500&model=gpt-5".into(), false),
    ];
    eprintln!("measuring: {} calls per endpoint after 2 warmups...", s.calls);
    let mut timings = Vec::new();
    for (path, target) in cases {
        let (times, note) = time_calls(&http, &base, &token, &path, s.calls).await?;
        timings.push(Timing {
            label: format!("GET {path}"),
            p50: times[times.len() / 2],
            max: times[times.len() - 1],
            target,
            note,
        });
    }

    println!();
    println!(
        "console bench: {} audit rows over the last 7 days ({USERS} users, {} models, ~12 % errors and refusals); \
         request_rollup {rollup_rows} rows, usage_rollup {usage_rows} user rows",
        s.rows,
        MODELS.len()
    );
    println!(
        "client wall time per call on localhost, {} sequential calls after 2 warmups; target {} ms",
        s.calls,
        TARGET.as_millis()
    );
    println!();
    let width = timings.iter().map(|t| t.label.len()).max().unwrap_or(0);
    println!("{:<width$}  {:>8}  {:>8}  {:<6}  answer", "endpoint", "p50 ms", "max ms", "target");
    let mut missed = 0;
    for t in &timings {
        let verdict = match (t.target, t.max <= TARGET) {
            (false, _) => "n/a",
            (true, true) => "ok",
            (true, false) => {
                missed += 1;
                "MISSED"
            }
        };
        println!(
            "{:<width$}  {:>8.1}  {:>8.1}  {:<6}  {}",
            t.label,
            t.p50.as_secs_f64() * 1e3,
            t.max.as_secs_f64() * 1e3,
            verdict,
            t.note
        );
    }
    println!();
    if missed == 0 {
        println!("every endpoint held to the target answered within {} ms (max)", TARGET.as_millis());
    } else {
        println!("{missed} endpoint(s) over {} ms (max)", TARGET.as_millis());
    }
    drop(conn);
    // The control plane goes before its database.
    drop(cp);
    drop(db);
    Ok(())
}
