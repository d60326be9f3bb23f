//! Dashboard: the axum web UI and JSON API where compliance recertifies,
//! security works alerts and incidents, and product owners prune scopes.
//! Login is required, everything from a log is escaped, and a user limited
//! to some tenants sees nothing of the others.
//!
//! The foundation: users, login, sessions, CSRF, rate limiting, roles and
//! tenant limits ([`auth`]), the audit trail ([`audit`]), API tokens,
//! security headers, request logs and metrics ([`http`]), the page frame
//! ([`layout`]), and the append-only JSON Lines logs of incidents and
//! recertification decisions ([`jsonl`]). The data pages read one shared snapshot of the lake
//! ([`insights`]): overview, apps and tenants in [`pages`], reports in
//! [`reports`], alerts in [`alerts`], incidents in [`incidents`],
//! recertification in [`recert`].
//!
//! Routes (the JSON ones are documented in `assets/openapi.json`, served at
//! `/api/openapi.json`):
//! - public: `GET /login`, `POST /login`, `GET /healthz`, `GET /static/style.css`,
//!   `GET /static/app.js`
//! - any logged-in user: `POST /logout`, `GET|POST /password`, `GET /api/me`,
//!   `GET /api/openapi.json`
//! - data ([`pages`]): `/`, `/apps`, `/apps/{client_id}`, `/tenants`,
//!   `/tenants/{tenant}`, `/api/overview`, `/api/apps`, `/api/apps/{client_id}`,
//!   `/api/tenants`
//! - reports ([`reports`]): `/reports`, `/reports/download`, `/api/reports`
//! - alerts ([`alerts`]): `/alerts`, `/alerts/{id}`, `POST /alerts/{id}/status`,
//!   `/api/alerts`, `/api/alerts/{id}`, `POST /api/alerts/{id}/status`
//! - incidents ([`incidents`]): `/incidents`, `/incidents/{id}`,
//!   `/incidents/{id}/bundle.tar`, `POST /incidents[/{id}/{owner,status,notes,alerts}]`,
//!   and the same under `/api/incidents`
//! - recertification ([`recert`]): `/recert`, `/recert/{id}`,
//!   `POST /recert/{id}/decisions`, `/recert/{id}/{decisions.csv,decisions.json,registry-patch}`,
//!   `/api/recert`, `/api/recert/{id}`, `POST /api/recert/{id}/decisions`
//! - admin: `/admin`, `POST /admin/users/{name}/tokens`,
//!   `POST /admin/users/{name}/disable`, `/admin/audit`, `/admin/audit.csv`,
//!   `/metrics`
//!
//! API tokens (`Authorization: Bearer swt_...`) are accepted on `/api/*`
//! and `/metrics` only, and need no CSRF token; cookies are not needed then.

pub mod admin;
pub mod alerts;
pub mod api;
pub mod audit;
pub mod auth;
pub mod config;
pub mod error;
pub mod http;
pub mod incidents;
pub mod insights;
pub mod jsonl;
pub mod layout;
pub mod login;
pub mod pages;
pub mod recert;
pub mod reports;
pub mod users;

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, Mutex, OnceLock};

use axum::http::{header, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::html;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub use crate::audit::{AuditEntry, AuditLog, Outcome};
pub use crate::auth::{CurrentUser, Permission};
pub use crate::config::{AnalysisSettings, DashboardConfig, SecureCookies};
pub use crate::error::DashboardError;
pub use crate::layout::page;
pub use crate::users::{InitialAdmin, NewUser, Role, User, UserStore};

/// Everything handlers share. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
pub struct Inner {
    pub config: DashboardConfig,
    pub users: UserStore,
    pub sessions: auth::Sessions,
    pub limiter: auth::LoginLimiter,
    pub audit: AuditLog,
    /// The alert store, `<data>/alerts/alerts.jsonl`, shared with the
    /// detector of `scopewatch ingest`: take it up with
    /// [`alerts::fresh`] before reading, and lock it in `spawn_blocking`.
    pub alerts: Arc<Mutex<scopewatch_rules::store::AlertStore>>,
    /// The lake and the figures of the data pages.
    pub insights: Arc<insights::Insights>,
    /// `None` when another metrics recorder owns this process.
    pub metrics: Option<PrometheusHandle>,
    /// Verified against when the username is unknown (constant-ish time).
    dummy_hash: String,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The process-wide Prometheus recorder, installed on first use. `None`
/// when some other recorder was installed first.
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .clone()
}

impl AppState {
    /// Opens the dashboard's state under `<data>/dashboard/`. On the first
    /// run it creates the `admin` user and returns its one-time password,
    /// which the caller must show to whoever started the server.
    pub fn open(
        config: DashboardConfig,
    ) -> Result<(AppState, Option<InitialAdmin>), DashboardError> {
        config.validate()?;
        let dir = config.state_dir();
        let (users, initial) = UserStore::open(&dir)?;
        let audit = AuditLog::open(&dir)?;
        let alerts = scopewatch_rules::store::AlertStore::open(
            &scopewatch_rules::stream::alerts_dir(&config.data_dir).join("alerts.jsonl"),
        )?;
        if let Some(admin) = &initial {
            audit.record(&AuditEntry::new(
                "-",
                "user_create_initial_admin",
                &format!("user/{}", admin.username),
                Outcome::Success,
                "local",
            ))?;
        }
        let inner = Inner {
            sessions: auth::Sessions::new(config.idle_timeout, config.absolute_timeout),
            limiter: auth::LoginLimiter::new(config.login_max_failures, config.login_window),
            dummy_hash: users::hash_password(&users::generate_password())?,
            metrics: metrics_handle(),
            insights: Arc::new(insights::Insights::new(
                config.data_dir.clone(),
                config.analysis.clone(),
            )),
            users,
            audit,
            alerts: Arc::new(Mutex::new(alerts)),
            config,
        };
        Ok((AppState(Arc::new(inner)), initial))
    }

    /// Appends to the audit trail off the async threads (it fsyncs).
    pub async fn audit(
        &self,
        user: &str,
        action: &str,
        target: &str,
        outcome: Outcome,
        ip: &str,
    ) -> Result<(), DashboardError> {
        let entry = AuditEntry::new(user, action, target, outcome, ip);
        let state = self.clone();
        tokio::task::spawn_blocking(move || state.audit.record(&entry))
            .await
            .map_err(|e| DashboardError::Task(e.to_string()))?
    }

    /// Audits `action` on `target` by `user` with the outcome of `result`
    /// (a success, or a failure when something broke), then hands the
    /// result on. A refusal (403, 404, 400) came before anything was tried:
    /// it is not recorded.
    pub async fn audited<T, E: Into<AppError>>(
        &self,
        user: &CurrentUser,
        action: &str,
        target: &str,
        result: Result<T, E>,
    ) -> Result<T, AppError> {
        let result = result.map_err(Into::into);
        let outcome = match &result {
            Ok(_) => Outcome::Success,
            Err(AppError::Internal(_)) => Outcome::Failure,
            Err(_) => return result,
        };
        self.audit(&user.username, action, target, outcome, &user.ip)
            .await?;
        result
    }
}

/// A handler error, or why an action was refused: a missing permission
/// (403), something missing or not for this user's eyes (404, the same
/// answer either way), a bad form or body (400, with a message for the
/// user), or a failure that is logged in full and answered with a plain
/// 500. Pages answer it as HTML ([`IntoResponse`]), the JSON API with
/// [`AppError::into_api`].
#[derive(Debug)]
pub enum AppError {
    Forbidden,
    NotFound,
    BadRequest(String),
    Internal(DashboardError),
}

impl AppError {
    pub fn task(e: tokio::task::JoinError) -> Self {
        Self::Internal(DashboardError::Task(e.to_string()))
    }

    /// The JSON API's answer: `{"error": "..."}` with the status a page
    /// would have; `not_found` says what was missing. A 500 is the plain
    /// one of the pages: the detail goes to the log only.
    pub fn into_api(self, not_found: &str) -> Response {
        match self {
            Self::Forbidden => {
                http::api_error(StatusCode::FORBIDDEN, "your role does not allow this")
            }
            Self::NotFound => http::api_error(StatusCode::NOT_FOUND, not_found),
            Self::BadRequest(message) => http::api_error(StatusCode::BAD_REQUEST, &message),
            internal @ Self::Internal(_) => internal.into_response(),
        }
    }
}

impl From<DashboardError> for AppError {
    fn from(e: DashboardError) -> Self {
        Self::Internal(e)
    }
}

impl From<auth::Forbidden> for AppError {
    fn from(_: auth::Forbidden) -> Self {
        Self::Forbidden
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            Self::Forbidden => auth::Forbidden.into_response(),
            Self::NotFound => not_found_page(),
            Self::BadRequest(message) => {
                let body = html! {
                    h1 { "Bad request" }
                    p.error { (message) }
                    p { "Go back, correct the form and send it again." }
                };
                (
                    StatusCode::BAD_REQUEST,
                    Html(layout::bare_page("Bad request", body).into_string()),
                )
                    .into_response()
            }
            Self::Internal(e) => {
                tracing::error!(error = %e, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal error; the server log has the details.\n",
                )
                    .into_response()
            }
        }
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        layout::CSS,
    )
        .into_response()
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        layout::JS,
    )
        .into_response()
}

async fn not_found() -> Response {
    not_found_page()
}

/// The 404 page, for unknown paths and for data the user may not see.
pub(crate) fn not_found_page() -> Response {
    let body = html! { h1 { "Not found" } p { a href="/" { "Back to the overview" } } };
    (
        StatusCode::NOT_FOUND,
        Html(layout::bare_page("Not found", body).into_string()),
    )
        .into_response()
}

/// The whole app: [`pages::routes`] plus the foundation's own routes and
/// middleware.
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// Like [`router`], with `extra` routes merged in under the same
/// middleware (login, CSRF, headers, logging).
pub fn router_with(state: AppState, extra: Router<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route(layout::CSS_PATH, get(css))
        .route(layout::JS_PATH, get(js))
        .route("/login", get(login::login_get).post(login::login_post))
        .route("/logout", post(login::logout))
        .route(
            "/password",
            get(login::password_get).post(login::password_post),
        )
        .route("/admin", get(admin::users_page))
        .route("/admin/users/{name}/tokens", post(admin::create_token))
        .route("/admin/users/{name}/disable", post(admin::disable_user))
        .route("/admin/audit", get(admin::audit_page))
        .route("/admin/audit.csv", get(admin::audit_csv))
        .route("/api/me", get(api::me))
        .route("/api/openapi.json", get(api::openapi))
        .route("/metrics", get(api::metrics))
        .merge(pages::routes())
        .merge(extra)
        .fallback(not_found)
        // Innermost first: auth sees the request after logging started and
        // headers are added to whatever comes back, auth refusals included.
        .layer(from_fn_with_state(state.clone(), http::authenticate))
        .layer(from_fn(http::access_log))
        .layer(from_fn(http::security_headers))
        .with_state(state)
}

/// Serves the dashboard on `listener` until `shutdown` completes, then lets
/// requests in progress finish.
pub async fn serve<F>(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let app = router(state);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// [`serve`] on a runtime of its own, for callers without one (the
/// `scopewatch` binary): serves `listener` until `stop` is set (by a signal
/// handler, say), then finishes requests in progress and returns.
pub fn serve_blocking(
    listener: std::net::TcpListener,
    state: AppState,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("dashboard")
        .build()?;
    runtime.block_on(async move {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        // A signal handler can only set a flag; poll it.
        let shutdown = async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            tracing::info!("shutting down: finishing requests in progress");
        };
        serve(listener, state, shutdown).await
    })
}
