//! The HTTP application: state, router and server lifecycle.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, State};
use axum::handler::Handler;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{on, MethodFilter};
use axum::{middleware, Router};
use ipnet::IpNet;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::config::Config;
use crate::errors::ApiError;
use crate::metrics::Metrics;
use crate::throttle::{self, AuthThrottle};
use crate::{admin, auth, background, db, internal, limits, openapi, ui};

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub internal_token_digest: Arc<Vec<u8>>,
    pub metrics: Arc<Metrics>,
    pub snapshot_cache: Arc<internal::snapshot::Cache>,
    /// Wakes the background sweep that disables expired users and keys.
    pub expiry_wakeup: Arc<Notify>,
    /// Peers the internal listener answers.
    pub internal_allow: Arc<Vec<IpNet>>,
    pub admin_throttle: Arc<AuthThrottle>,
    pub lease_ttl: std::time::Duration,
    pub ui_sessions: crate::ui::SessionPolicy,
}

/// Collects routes and remembers each (method, path), so the OpenAPI
/// document can be checked against what is really served.
pub struct Routes {
    router: Router<AppState>,
    list: Vec<(&'static str, &'static str)>,
}

impl Routes {
    pub fn new() -> Self {
        Routes {
            router: Router::new(),
            list: Vec::new(),
        }
    }

    fn add<H, T>(
        mut self,
        method: &'static str,
        filter: MethodFilter,
        path: &'static str,
        handler: H,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.router = self.router.route(path, on(filter, handler));
        self.list.push((method, path));
        self
    }

    pub fn get<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, handler: H) -> Self {
        self.add("GET", MethodFilter::GET, path, handler)
    }

    pub fn post<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, handler: H) -> Self {
        self.add("POST", MethodFilter::POST, path, handler)
    }

    pub fn patch<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        handler: H,
    ) -> Self {
        self.add("PATCH", MethodFilter::PATCH, path, handler)
    }

    pub fn delete<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        handler: H,
    ) -> Self {
        self.add("DELETE", MethodFilter::DELETE, path, handler)
    }

    /// Applies `f` (e.g. an auth layer) to the routes added so far.
    fn map_router(mut self, f: impl FnOnce(Router<AppState>) -> Router<AppState>) -> Self {
        self.router = f(self.router);
        self
    }

    fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.list.extend(other.list);
        self
    }
}

impl Default for Routes {
    fn default() -> Self {
        Routes::new()
    }
}

fn public_routes() -> Routes {
    Routes::new()
        .get("/healthz", healthz)
        .get("/readyz", readyz)
        .get("/metrics", metrics)
        .get("/api/v1/openapi.json", openapi::serve)
}

/// What the admin listener serves: the public routes and the admin API.
fn admin_listener_routes(state: &AppState) -> Routes {
    let admin = admin::routes().map_router(|r| {
        r.route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin,
        ))
    });
    let account = account_routes().map_router(|r| {
        r.route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_account,
        ))
    });
    public_routes()
        .merge(admin)
        .merge(account)
        .merge(console_routes())
}

/// The admin console's session routes (each checks its own credential).
fn console_routes() -> Routes {
    Routes::new()
        .post("/ui/api/session", ui::sign_in)
        .get("/ui/api/session", ui::current)
        .delete("/ui/api/session", ui::sign_out)
}

/// Routes a user may also call, about themselves (admins: about anyone).
/// `/api/v1/requests/export.csv` is a static path: it wins over
/// `/api/v1/requests/{id}` whatever the order (axum's router prefers static
/// segments to parameters).
fn account_routes() -> Routes {
    Routes::new()
        .get("/api/v1/users/{id}", admin::users::get)
        .get("/api/v1/requests", admin::requests::list)
        .get("/api/v1/requests/export.csv", admin::requests::export)
        .get("/api/v1/requests/{id}", admin::requests::get)
        .get("/api/v1/sessions", admin::sessions::list)
        .get("/api/v1/usage/users/{id}", limits::usage::user)
        .get("/api/v1/usage/keys/{id}", limits::usage::key)
        .get("/api/v1/users/{id}/keys", admin::keys::list)
        .post("/api/v1/keys/{id}/rotate", admin::keys::rotate)
}

/// What the internal listener serves: the filter's internal API.
fn internal_listener_routes(state: &AppState) -> Routes {
    let internal = internal::routes().map_router(|r| {
        r.route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_internal,
        ))
    });
    Routes::new().get("/healthz", healthz).merge(internal)
}

/// Who may call a route of the admin listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// [`auth::require_admin`].
    Admin,
    /// [`auth::require_account`]: an admin, or a user about themselves.
    Account,
    /// The admin console's session routes ([`ui`]): a credential in the
    /// body (sign-in) or the session cookie.
    Console,
}

/// The (access, method, path) of each route the admin listener serves (what
/// the OpenAPI document describes).
pub fn route_table() -> Vec<(Access, &'static str, &'static str)> {
    let groups = [
        (Access::Public, public_routes()),
        (Access::Admin, admin::routes()),
        (Access::Account, account_routes()),
        (Access::Console, console_routes()),
    ];
    groups
        .into_iter()
        .flat_map(|(access, routes)| {
            routes
                .list
                .into_iter()
                .map(move |(method, path)| (access, method, path))
        })
        .collect()
}

/// The admin listener's router.
pub fn router(state: AppState) -> Router {
    let router = with_fallbacks(admin_listener_routes(&state).router.merge(ui::pages()));
    finish(router, state)
}

/// The internal listener's router: a peer outside the allow-list gets 403
/// whatever it asks, before any token is looked at.
pub fn internal_router(state: AppState) -> Router {
    let router = with_fallbacks(internal_listener_routes(&state).router).layer(
        middleware::from_fn_with_state(state.clone(), auth::require_allowed_source),
    );
    finish(router, state)
}

fn with_fallbacks(router: Router<AppState>) -> Router<AppState> {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

fn finish(router: Router<AppState>, state: AppState) -> Router {
    router
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ))
        // Admin bodies are small; the event route raises its own limit.
        .layer(DefaultBodyLimit::max(2 * 1024 * 1024))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "service",
    operation_id = "healthz",
    summary = "Liveness",
    responses((status = 200, description = "Serving", body = String, content_type = "text/plain")),
)]
async fn healthz() -> &'static str {
    "ok\n"
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "service",
    operation_id = "readyz",
    summary = "Readiness (database reachable)",
    responses(
        (status = 200, description = "Ready", body = String, content_type = "text/plain"),
        (
            status = 503,
            description = "The database is unreachable",
            body = String,
            content_type = "text/plain",
        ),
    ),
)]
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match sqlx::query_scalar!("SELECT 1 AS one")
        .fetch_one(&state.pool)
        .await
    {
        Ok(_) => (StatusCode::OK, "ready\n"),
        Err(err) => {
            tracing::warn!(error = format!("{err:#}"), "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")
        }
    }
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    operation_id = "metrics",
    summary = "Prometheus metrics",
    responses((
        status = 200,
        description = "OpenMetrics text",
        body = String,
        content_type = crate::metrics::CONTENT_TYPE,
    )),
)]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
}

pub struct Application {
    listener: TcpListener,
    internal_listener: TcpListener,
    state: AppState,
    config: Config,
}

impl Application {
    /// Connects to the database, migrates it (with the price seed) and binds
    /// both listeners. Nothing is served until
    /// [`Application::run_until_stopped`].
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let pool = db::connect(&config.database_url, config.db_max_connections).await?;
        db::migrate(&pool).await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding the admin listener {}", config.listen))?;
        let internal_listener = TcpListener::bind(config.internal_listen)
            .await
            .with_context(|| format!("binding the internal listener {}", config.internal_listen))?;
        let state = AppState {
            pool,
            internal_token_digest: Arc::new(auth::digest(&config.internal_token)),
            metrics: Arc::new(Metrics::default()),
            snapshot_cache: Arc::new(internal::snapshot::Cache::default()),
            expiry_wakeup: Arc::new(Notify::new()),
            internal_allow: Arc::new(config.internal_allow.clone()),
            admin_throttle: Arc::new(AuthThrottle::new(
                config.admin_auth,
                throttle::DEFAULT_CAPACITY,
            )),
            lease_ttl: config.lease_ttl,
            ui_sessions: config.ui_sessions,
        };
        Ok(Application {
            listener,
            internal_listener,
            state,
            config,
        })
    }

    /// The admin listener's address.
    pub fn address(&self) -> anyhow::Result<SocketAddr> {
        self.listener
            .local_addr()
            .context("reading the bound address")
    }

    pub fn port(&self) -> u16 {
        self.address().map(|a| a.port()).unwrap_or(0)
    }

    /// The internal listener's address.
    pub fn internal_address(&self) -> anyhow::Result<SocketAddr> {
        self.internal_listener
            .local_addr()
            .context("reading the bound internal address")
    }

    pub fn internal_port(&self) -> u16 {
        self.internal_address().map(|a| a.port()).unwrap_or(0)
    }

    pub fn pool(&self) -> PgPool {
        self.state.pool.clone()
    }

    /// Serves both listeners until SIGINT/SIGTERM, running the background
    /// jobs alongside.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let jobs = self
            .config
            .background_jobs
            .then(|| background::spawn(self.state.clone(), &self.config));
        let (stop, stopped) = watch::channel(false);
        let signal = tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        });
        let admin = axum::serve(
            self.listener,
            router(self.state.clone()).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(wait_for_stop(stopped.clone()));
        let internal = axum::serve(
            self.internal_listener,
            internal_router(self.state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(wait_for_stop(stopped));
        let result = tokio::try_join!(admin.into_future(), internal.into_future())
            .map(|_| ())
            .context("serving HTTP");
        signal.abort();
        if let Some(jobs) = jobs {
            jobs.abort();
        }
        result
    }
}

async fn wait_for_stop(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
