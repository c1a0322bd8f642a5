//! The audit log, newest first:
//! - `GET /api/v1/requests`: filtered and paged. Query parameters: user_id,
//!   key_id, provider_id, session_id, status, blocked_by, model (the
//!   original or upstream model, case-insensitive), from, to (RFC 3339;
//!   from inclusive, to exclusive), page (from 1), page_size (1..=500,
//!   default 50). Answer: `{items, total, total_capped, page, page_size}`;
//!   matching rows are counted up to [`MAX_COUNTED`] (see [`Page`]).
//! - `GET /api/v1/requests/{id}`: one row.
//! - `GET /api/v1/requests/export.csv`: the same filters (no paging), as
//!   CSV, at most [`MAX_EXPORT_ROWS`] rows.
//!
//! Admins read every row; a user (`auth::require_account`) only their own:
//! their user_id is forced, asking for another's is 403, another user's
//! row by id is 404.

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::TryStreamExt;
use hubgate_wire::CostBreakdown;
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::types::Json as DbJson;
use sqlx::{PgPool, Postgres, QueryBuilder};
use utoipa::{IntoParams, ToSchema};

use super::paging::{parse, Page, Paging};
use super::Id;
use crate::app::AppState;
use crate::auth::Caller;
use crate::errors::{ApiError, ApiResult};
use crate::openapi::{AdminOrOwner, BadQuery, NotFound};
use crate::validate;

/// The list counts matching rows up to this many; beyond, `total` is this
/// and `total_capped` is true.
pub const MAX_COUNTED: i64 = 10_000;
/// Rows of one CSV export at most (the newest).
pub const MAX_EXPORT_ROWS: i64 = 100_000;

/// One request, as the filter reported it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct RequestLog {
    pub id: i64,
    pub event_id: String,
    pub request_id: String,
    pub started_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub user_id: Option<i64>,
    pub key_id: Option<i64>,
    pub key_masked: Option<String>,
    pub provider_id: Option<i64>,
    pub method: String,
    pub endpoint: String,
    pub original_model: Option<String>,
    pub upstream_model: Option<String>,
    pub status: i32,
    pub duration_ms: i64,
    pub ttfb_ms: Option<i64>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_creation_5m_tokens: i64,
    pub cache_creation_1h_tokens: i64,
    pub cache_read_tokens: i64,
    pub cost_usd: Decimal,
    pub cost_multiplier: Decimal,
    /// What cost_usd is made of, as the filter computed it: USD per token
    /// kind, the provider's multiplier applied; the parts add up to
    /// cost_usd. Null when the request was not billed from a price (not
    /// billed, price unknown) or was stored before the filter reported it.
    #[schema(value_type = Option<CostBreakdown>)]
    pub cost_breakdown: Option<DbJson<CostBreakdown>>,
    pub session_id: Option<String>,
    pub user_agent: Option<String>,
    pub client_ip: Option<String>,
    pub stream: bool,
    /// Stable code of the guard that answered instead of a provider.
    pub blocked_by: Option<String>,
    /// A JSON object with the guard's details, or null.
    pub blocked_reason: Option<serde_json::Value>,
    pub error: Option<String>,
    pub flags: Vec<String>,
}

const COLUMNS: &str = "id, event_id, request_id, started_at, received_at, user_id, key_id, key_masked, \
    provider_id, method, endpoint, original_model, upstream_model, status, duration_ms, ttfb_ms, input_tokens, \
    output_tokens, cache_creation_5m_tokens, cache_creation_1h_tokens, cache_read_tokens, cost_usd, \
    cost_multiplier, cost_breakdown, session_id, user_agent, client_ip, stream, blocked_by, blocked_reason, error, \
    flags";

#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
struct Filters {
    /// Only this user's requests (users: only their own id).
    user_id: Option<i64>,
    /// Only this key's requests.
    key_id: Option<i64>,
    /// Only requests sent to this provider.
    provider_id: Option<i64>,
    /// Only this session.
    session_id: Option<String>,
    /// HTTP status answered to the client.
    status: Option<i32>,
    /// Stable code of the guard that answered, e.g. sensitive_word.
    blocked_by: Option<String>,
    /// Only requests for this model: the model the client asked for or the
    /// one sent upstream, ignoring case.
    #[param(min_length = 1, max_length = 256)]
    model: Option<String>,
    /// RFC 3339, inclusive.
    from: Option<DateTime<Utc>>,
    /// RFC 3339, exclusive.
    to: Option<DateTime<Utc>>,
    #[param(ignore)]
    paging: Paging,
    /// The hours in which `model` occurs, per the request rollup: from the
    /// first (inclusive) to the end of the last.
    #[param(ignore)]
    model_hours: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// `model` occurs in no hour: nothing matches.
    #[param(ignore)]
    nothing: bool,
}

fn parse_time(field: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ApiError::validation(field, format!("must be an RFC 3339 timestamp: {e}")))
}

impl Filters {
    /// The filters of `pairs`; `paged`: page and page_size are taken too
    /// (the list), else they are unknown parameters (the export).
    fn from_pairs(pairs: Vec<(String, String)>, paged: bool) -> Result<Filters, ApiError> {
        let mut f = Filters::default();
        for (name, value) in pairs {
            validate::no_nul(&name, &value)?;
            if paged && f.paging.take(&name, &value)? {
                continue;
            }
            match name.as_str() {
                "user_id" => f.user_id = Some(parse(&name, &value)?),
                "key_id" => f.key_id = Some(parse(&name, &value)?),
                "provider_id" => f.provider_id = Some(parse(&name, &value)?),
                "session_id" => f.session_id = Some(value),
                "status" => f.status = Some(parse(&name, &value)?),
                "blocked_by" => f.blocked_by = Some(value),
                "model" => {
                    validate::text(&name, &value, 256)?;
                    f.model = Some(value);
                }
                "from" => f.from = Some(parse_time(&name, &value)?),
                "to" => f.to = Some(parse_time(&name, &value)?),
                _ => return Err(ApiError::validation(name, "unknown query parameter")),
            }
        }
        f.paging.check()?;
        Ok(f)
    }

    /// A user sees only their own rows: their user_id is forced; asking
    /// for another user's is 403.
    fn scope(&mut self, caller: &Caller) -> Result<(), ApiError> {
        if let Caller::User { user_id, .. } = caller {
            if self.user_id.is_some_and(|asked| asked != *user_id) {
                return Err(ApiError::Forbidden);
            }
            self.user_id = Some(*user_id);
        }
        Ok(())
    }

    /// Narrows a `model` filter down to the hours in which the model occurs
    /// (`request_rollup`, migration 0019): without this a model with few
    /// rows, or none, makes Postgres walk the whole log looking for them.
    async fn narrow(&mut self, pool: &PgPool) -> ApiResult<()> {
        let Some(model) = &self.model else {
            return Ok(());
        };
        let hours = sqlx::query!(
            r#"SELECT min(bucket_start) AS "first?", max(bucket_start) AS "last?" FROM request_rollup
               WHERE lower(model) = lower($1) OR lower(upstream_model) = lower($1)"#,
            model
        )
        .fetch_one(pool)
        .await?;
        match (hours.first, hours.last) {
            (Some(first), Some(last)) => {
                self.model_hours = Some((first, last + chrono::TimeDelta::hours(1)));
            }
            _ => self.nothing = true,
        }
        Ok(())
    }

    fn push_where(&self, qb: &mut QueryBuilder<'_, Postgres>) {
        qb.push(if self.nothing {
            " WHERE false"
        } else {
            " WHERE true"
        });
        if let Some((first, end)) = self.model_hours {
            qb.push(" AND started_at >= ")
                .push_bind(first)
                .push(" AND started_at < ")
                .push_bind(end);
        }
        if let Some(v) = self.user_id {
            qb.push(" AND user_id = ").push_bind(v);
        }
        if let Some(v) = self.key_id {
            qb.push(" AND key_id = ").push_bind(v);
        }
        if let Some(v) = self.provider_id {
            qb.push(" AND provider_id = ").push_bind(v);
        }
        if let Some(v) = &self.session_id {
            qb.push(" AND session_id = ").push_bind(v.clone());
        }
        if let Some(v) = self.status {
            // A literal (it is an integer), not a parameter: the status
            // index holds the statuses other than 200 only, and the planner
            // can use it for a value it sees, even in a generic plan.
            qb.push(format!(" AND status = {v}"));
        }
        if let Some(v) = &self.blocked_by {
            qb.push(" AND blocked_by = ").push_bind(v.clone());
        }
        if let Some(v) = &self.model {
            qb.push(" AND (lower(original_model) = lower(")
                .push_bind(v.clone())
                .push(") OR lower(upstream_model) = lower(")
                .push_bind(v.clone())
                .push("))");
        }
        if let Some(v) = self.from {
            qb.push(" AND started_at >= ").push_bind(v);
        }
        if let Some(v) = self.to {
            qb.push(" AND started_at < ").push_bind(v);
        }
    }

    /// `SELECT … FROM message_request WHERE …` newest first.
    fn select(&self) -> QueryBuilder<'static, Postgres> {
        let mut select =
            QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM message_request"));
        self.push_where(&mut select);
        select.push(" ORDER BY started_at DESC, id DESC");
        select
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/requests",
    tag = "requests",
    operation_id = "list_requests",
    summary = "Audit log, newest first (users: their own requests)",
    description = "Matching rows are counted up to 10,000: beyond, `total` is 10,000 and \
                   `total_capped` is true (page on while a page is full).",
    params(Filters, Paging),
    responses(
        (status = 200, description = "One page of the log", body = Page<RequestLog>),
        BadQuery,
        AdminOrOwner,
    ),
    security(("adminBearer" = []), ("userBearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult<Json<Page<RequestLog>>> {
    let Query(pairs) = query.map_err(|e| ApiError::validation("", e.body_text()))?;
    let mut filters = Filters::from_pairs(pairs, true)?;
    filters.scope(&caller)?;
    filters.narrow(&state.pool).await?;

    // An exact count of a million rows is most of a second: count up to
    // the cap (the planner stops there).
    let mut count =
        QueryBuilder::<Postgres>::new("SELECT count(*) FROM (SELECT 1 FROM message_request");
    filters.push_where(&mut count);
    count
        .push(" LIMIT ")
        .push_bind(MAX_COUNTED + 1)
        .push(") AS matching");
    let (counted,): (i64,) = count.build_query_as().fetch_one(&state.pool).await?;

    let mut select = filters.select();
    filters.paging.push_limit(&mut select);
    let items: Vec<RequestLog> = select.build_query_as().fetch_all(&state.pool).await?;
    let mut page = filters.paging.page(items, counted.min(MAX_COUNTED));
    page.total_capped = counted > MAX_COUNTED;
    Ok(Json(page))
}

#[utoipa::path(
    get,
    path = "/api/v1/requests/{id}",
    tag = "requests",
    operation_id = "get_request",
    summary = "One request of the audit log, with its cost breakdown (users: their own)",
    params(Id),
    responses(
        (status = 200, description = "The request", body = RequestLog),
        NotFound,
        AdminOrOwner,
    ),
    security(("adminBearer" = []), ("userBearer" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Id(id): Id,
) -> ApiResult<Json<RequestLog>> {
    let own = match caller {
        Caller::Admin(_) => None,
        Caller::User { user_id, .. } => Some(user_id),
    };
    // message_request_id (BRIN, migrations 0017 and 0018) finds the id's
    // few pages in each daily partition.
    let row = sqlx::query_as!(
        RequestLog,
        r#"SELECT id, event_id, request_id, started_at, received_at, user_id, key_id, key_masked, provider_id,
                  method, endpoint, original_model, upstream_model, status, duration_ms, ttfb_ms, input_tokens,
                  output_tokens, cache_creation_5m_tokens, cache_creation_1h_tokens, cache_read_tokens, cost_usd,
                  cost_multiplier, cost_breakdown AS "cost_breakdown: DbJson<CostBreakdown>", session_id,
                  user_agent, client_ip, stream, blocked_by, blocked_reason, error, flags
           FROM message_request WHERE id = $1 AND ($2::bigint IS NULL OR user_id = $2)"#,
        id,
        own
    )
    .fetch_optional(&state.pool)
    .await?;
    row.map(Json).ok_or(ApiError::NotFound)
}

/// The export's columns: [`RequestLog`]'s fields, its cost breakdown as one
/// column per part.
const CSV_HEADER: &[&str] = &[
    "id",
    "event_id",
    "request_id",
    "started_at",
    "received_at",
    "user_id",
    "key_id",
    "key_masked",
    "provider_id",
    "method",
    "endpoint",
    "original_model",
    "upstream_model",
    "status",
    "duration_ms",
    "ttfb_ms",
    "input_tokens",
    "output_tokens",
    "cache_creation_5m_tokens",
    "cache_creation_1h_tokens",
    "cache_read_tokens",
    "cost_usd",
    "cost_multiplier",
    "cost_input_usd",
    "cost_output_usd",
    "cost_cache_creation_5m_usd",
    "cost_cache_creation_1h_usd",
    "cost_cache_read_usd",
    "session_id",
    "user_agent",
    "client_ip",
    "stream",
    "blocked_by",
    "blocked_reason",
    "error",
    "flags",
];

#[utoipa::path(
    get,
    path = "/api/v1/requests/export.csv",
    tag = "requests",
    operation_id = "export_requests",
    summary = "The audit log as CSV, newest first, with the list's filters (users: their own \
               requests); at most 100,000 rows",
    description = "A header row, then one row per request (RFC 4180 quoting, CRLF line ends). \
                   Columns: the fields of a request, its cost_breakdown as cost_input_usd, \
                   cost_output_usd, cost_cache_creation_5m_usd, cost_cache_creation_1h_usd and \
                   cost_cache_read_usd (empty when null), blocked_reason as JSON, flags joined \
                   with `;`. Text that a spreadsheet would run as a formula (starting with =, +, \
                   -, @, tab or carriage return) gets a leading `'`. At most the newest 100,000 \
                   matching rows: narrow from/to to export more.",
    params(Filters),
    responses(
        (
            status = 200,
            description = "CSV (attachment hubgate-requests.csv)",
            body = String,
            content_type = "text/csv",
        ),
        BadQuery,
        AdminOrOwner,
    ),
    security(("adminBearer" = []), ("userBearer" = [])),
)]
pub async fn export(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(pairs) = query.map_err(|e| ApiError::validation("", e.body_text()))?;
    let mut filters = Filters::from_pairs(pairs, false)?;
    filters.scope(&caller)?;
    filters.narrow(&state.pool).await?;
    let mut select = filters.select();
    select.push(" LIMIT ").push_bind(MAX_EXPORT_ROWS);

    // Rows go out as they come from Postgres, in chunks: the whole export
    // is never held in memory. An error after the answer started ends the
    // body early (the client sees a cut transfer).
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(stream_csv(state.pool.clone(), select, tx));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"hubgate-requests.csv\"",
            ),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// A chunk is sent once it holds this many bytes.
const CHUNK_BYTES: usize = 64 * 1024;

async fn stream_csv(
    pool: PgPool,
    mut select: QueryBuilder<'static, Postgres>,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let mut out = String::with_capacity(CHUNK_BYTES + 4096);
    csv_row(
        &mut out,
        CSV_HEADER.iter().map(|h| Cell::Plain(h.to_string())),
    );
    let mut rows = select.build_query_as::<RequestLog>().fetch(&pool);
    loop {
        match rows.try_next().await {
            Ok(Some(row)) => {
                csv_row(&mut out, csv_cells(row));
                if out.len() >= CHUNK_BYTES {
                    let chunk = Bytes::from(std::mem::take(&mut out));
                    if tx.send(Ok(chunk)).await.is_err() {
                        return; // The client went away.
                    }
                }
            }
            Ok(None) => break,
            Err(err) => {
                tracing::error!(error = format!("{err:#}"), "request export failed");
                let _ = tx.send(Err(std::io::Error::other(err))).await;
                return;
            }
        }
    }
    if !out.is_empty() {
        let _ = tx.send(Ok(Bytes::from(out))).await;
    }
}

/// One CSV value: numbers and codes as they are; text the client or an
/// upstream chose is guarded against spreadsheet formulas.
enum Cell {
    Plain(String),
    Text(String),
}

fn plain<T: ToString>(v: T) -> Cell {
    Cell::Plain(v.to_string())
}

fn plain_opt<T: ToString>(v: Option<T>) -> Cell {
    Cell::Plain(v.map(|v| v.to_string()).unwrap_or_default())
}

fn text_opt(v: Option<String>) -> Cell {
    Cell::Text(v.unwrap_or_default())
}

fn time(t: DateTime<Utc>) -> Cell {
    Cell::Plain(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

fn csv_cells(r: RequestLog) -> impl Iterator<Item = Cell> {
    let parts = r.cost_breakdown.map(|DbJson(p)| p);
    let part = |f: fn(&CostBreakdown) -> Decimal| plain_opt(parts.as_ref().map(f));
    [
        plain(r.id),
        Cell::Text(r.event_id),
        Cell::Text(r.request_id),
        time(r.started_at),
        time(r.received_at),
        plain_opt(r.user_id),
        plain_opt(r.key_id),
        text_opt(r.key_masked),
        plain_opt(r.provider_id),
        Cell::Text(r.method),
        Cell::Text(r.endpoint),
        text_opt(r.original_model),
        text_opt(r.upstream_model),
        plain(r.status),
        plain(r.duration_ms),
        plain_opt(r.ttfb_ms),
        plain(r.input_tokens),
        plain(r.output_tokens),
        plain(r.cache_creation_5m_tokens),
        plain(r.cache_creation_1h_tokens),
        plain(r.cache_read_tokens),
        plain(r.cost_usd),
        plain(r.cost_multiplier),
        part(|p| p.input_usd),
        part(|p| p.output_usd),
        part(|p| p.cache_creation_5m_usd),
        part(|p| p.cache_creation_1h_usd),
        part(|p| p.cache_read_usd),
        text_opt(r.session_id),
        text_opt(r.user_agent),
        text_opt(r.client_ip),
        plain(r.stream),
        text_opt(r.blocked_by),
        text_opt(r.blocked_reason.map(|v| v.to_string())),
        text_opt(r.error),
        Cell::Text(r.flags.join(";")),
    ]
    .into_iter()
}

/// Appends one CSV record (RFC 4180: CRLF line end).
fn csv_row(out: &mut String, cells: impl Iterator<Item = Cell>) {
    for (i, cell) in cells.enumerate() {
        if i > 0 {
            out.push(',');
        }
        match cell {
            Cell::Plain(v) => csv_field(out, &v, false),
            Cell::Text(v) => csv_field(out, &v, true),
        }
    }
    out.push_str("\r\n");
}

/// Appends `value` as one CSV field: quoted (inner quotes doubled) when it
/// holds a comma, a quote, a line break or edge whitespace. `guard`: a
/// value a spreadsheet would run as a formula gets a leading `'`.
fn csv_field(out: &mut String, value: &str, guard: bool) {
    let formula = guard && value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = value.contains([',', '"', '\n', '\r'])
        || value.starts_with(char::is_whitespace)
        || value.ends_with(char::is_whitespace);
    if quote {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    for c in value.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if quote {
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(value: &str, guard: bool) -> String {
        let mut out = String::new();
        csv_field(&mut out, value, guard);
        out
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        let cases = [
            ("", ""),
            ("plain", "plain"),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("two\nlines", "\"two\nlines\""),
            ("cr\rlf", "\"cr\rlf\""),
            (" padded", "\" padded\""),
            ("padded ", "\"padded \""),
            ("中文,ok", "\"中文,ok\""),
            ("\"", "\"\"\"\""),
        ];
        for (value, want) in cases {
            assert_eq!(field(value, false), want, "{value:?}");
            assert_eq!(field(value, true), want, "{value:?}");
        }
    }

    #[test]
    fn formulas_are_defused_in_text_only() {
        assert_eq!(field("=1+2", true), "'=1+2");
        assert_eq!(field("+1", true), "'+1");
        assert_eq!(field("-1", true), "'-1");
        assert_eq!(field("@SUM(A1)", true), "'@SUM(A1)");
        assert_eq!(
            field("=HYPERLINK(\"x\",\"y\")", true),
            "\"'=HYPERLINK(\"\"x\"\",\"\"y\"\")\""
        );
        assert_eq!(field("\tx", true), "\"'\tx\"");
        assert_eq!(field("-1", false), "-1");
        assert_eq!(field("a=b", true), "a=b");
    }

    #[test]
    fn a_record_ends_with_crlf() {
        let mut out = String::new();
        csv_row(
            &mut out,
            [
                Cell::Plain("1".into()),
                Cell::Text("x,y".into()),
                Cell::Plain(String::new()),
            ]
            .into_iter(),
        );
        assert_eq!(out, "1,\"x,y\",\r\n");
    }
}
