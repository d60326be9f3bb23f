//! The middleware every request passes: security headers, the request log
//! and metrics, and authentication with CSRF checks; the two answers
//! handlers share, a JSON API error and a file download; and the parsing
//! of a day typed into a form.

use std::net::SocketAddr;
use std::time::Instant;

use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use crate::auth::{ct_eq, AuthMethod, CurrentUser};
use crate::{AppError, AppState};

pub const SESSION_COOKIE: &str = "sw_session";
pub const LOGIN_COOKIE: &str = "sw_login";

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Largest form body read for the CSRF check; dashboard forms are small.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// Adds the security headers to every response, 404s included. Pages are
/// not cached (they show data behind a login); static assets may be.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let is_static = req.uri().path().starts_with("/static/");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !is_static && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// Who answered the request, for the request log (set by `authenticate`).
#[derive(Debug, Clone)]
struct LogUser(String);

/// One structured log line and two metrics per request. The path is logged
/// without its query string, and no header is logged at all (cookies and
/// tokens live there).
pub async fn access_log(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    // The route pattern, not the path, labels metrics: bounded cardinality.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    let latency = start.elapsed();
    let status = resp.status().as_u16();
    let user = resp
        .extensions()
        .get::<LogUser>()
        .map(|u| u.0.as_str())
        .unwrap_or("-");
    tracing::info!(
        target: "scopewatch_dashboard::request",
        method = %method,
        path = %path,
        status,
        latency_ms = (latency.as_secs_f64() * 1000.0 * 100.0).round() / 100.0,
        user,
        "request"
    );
    let labels = [
        ("method", method.to_string()),
        ("route", route),
        ("status", status.to_string()),
    ];
    metrics::counter!("scopewatch_dashboard_requests_total", &labels).increment(1);
    metrics::histogram!("scopewatch_dashboard_request_seconds", &labels[..2])
        .record(latency.as_secs_f64());
    resp
}

/// The value of one cookie from the `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// The peer address: no proxy header is trusted (a deployment behind a
/// proxy would configure that explicitly; not built yet).
pub fn client_ip(req: &Request) -> String {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn is_public(path: &str) -> bool {
    path == "/login" || path == "/healthz" || path.starts_with("/static/")
}

fn is_api(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/") || path == "/metrics"
}

/// The JSON API's error answer, `{"error": "..."}`; a 401 also names the
/// scheme to use (`WWW-Authenticate: Bearer`).
pub(crate) fn api_error(status: StatusCode, message: &str) -> Response {
    let mut resp = (status, axum::Json(serde_json::json!({ "error": message }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

/// A JSON API body as `T`, or a 400 naming the `shape` expected.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    shape: &str,
) -> Result<T, AppError> {
    serde_json::from_slice(body)
        .map_err(|e| AppError::BadRequest(format!("expected JSON {shape}: {e}")))
}

/// A day typed into form or API field `field` (`YYYY-MM-DD`, blanks around
/// it ignored), or a message for the user naming the field and the format;
/// callers wrap it in the error they answer with.
pub(crate) fn parse_day(field: &str, text: &str) -> Result<time::Date, String> {
    let text = text.trim();
    time::Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|_| format!("{field}: expected a date like 2026-10-01 (YYYY-MM-DD), got {text:?}."))
}

/// A file to download: `body` as `content_type`, saved as `filename`. The
/// name goes into the header as it is, so callers build it from fixed
/// text, dates and checked ids, never from log values.
pub(crate) fn attachment(content_type: &str, filename: &str, body: impl IntoResponse) -> Response {
    // Names may carry ids from requests or logs: anything but a plain
    // token character is replaced, so the header cannot be broken out of.
    let filename: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        body,
    )
        .into_response()
}

fn unauthenticated(path: &str) -> Response {
    if is_api(path) {
        api_error(StatusCode::UNAUTHORIZED, "authentication required")
    } else {
        Redirect::to("/login").into_response()
    }
}

/// Resolves the user (API token on /api and /metrics, else the session
/// cookie), turns away anonymous requests to non-public paths, sends users
/// who must change their password to /password, and checks the CSRF token
/// of every state-changing request made with a session.
pub async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let ip = client_ip(&req);
    let mut user: Option<CurrentUser> = None;

    if let Some(auth) = req.headers().get(header::AUTHORIZATION) {
        if !is_api(&path) {
            return (
                StatusCode::BAD_REQUEST,
                "API tokens are accepted on /api/ and /metrics only.\n",
            )
                .into_response();
        }
        let token = auth
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match token.and_then(|t| state.users.user_for_token(t)) {
            Some(u) => {
                user = Some(CurrentUser::from_user(
                    &u,
                    AuthMethod::Token,
                    None,
                    ip.clone(),
                ))
            }
            None => return api_error(StatusCode::UNAUTHORIZED, "invalid or revoked token"),
        }
    } else if let Some(id) = cookie(req.headers(), SESSION_COOKIE) {
        if let Some((username, csrf)) = state.sessions.touch(&id) {
            match state.users.get(&username) {
                Some(u) if !u.disabled => {
                    user = Some(CurrentUser::from_user(
                        &u,
                        AuthMethod::Session,
                        Some(csrf),
                        ip.clone(),
                    ))
                }
                // Disabled or deleted since login: the session ends now.
                _ => state.sessions.remove(&id),
            }
        }
    }

    let Some(user) = user else {
        if is_public(&path) {
            return next.run(req).await;
        }
        return unauthenticated(&path);
    };

    if user.method == AuthMethod::Session
        && user.must_change_password
        && !is_public(&path)
        && path != "/password"
        && path != "/logout"
    {
        return if is_api(&path) {
            api_error(StatusCode::FORBIDDEN, "password change required")
        } else {
            Redirect::to("/password").into_response()
        };
    }

    let mut req = req;
    let state_changing = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if state_changing && user.method == AuthMethod::Session {
        let expected = user.csrf.clone().unwrap_or_default();
        let (ok, rebuilt) = check_csrf(req, &expected).await;
        let Some(rebuilt) = rebuilt else {
            return (StatusCode::PAYLOAD_TOO_LARGE, "Form too large.\n").into_response();
        };
        if !ok {
            tracing::warn!(path = %path, user = %user.username, "CSRF token missing or wrong");
            return (
                StatusCode::FORBIDDEN,
                "Forbidden: the form's security token is missing or stale. Reload the page and try again.\n",
            )
                .into_response();
        }
        req = rebuilt;
    }

    let name = user.username.clone();
    req.extensions_mut().insert(user);
    let mut resp = next.run(req).await;
    resp.extensions_mut().insert(LogUser(name));
    resp
}

/// Checks the `X-CSRF-Token` header, or else the `csrf` field of a form
/// body (read and put back). Returns the request again, or `None` when the
/// body was too large to read.
async fn check_csrf(req: Request, expected: &str) -> (bool, Option<Request>) {
    if let Some(h) = req.headers().get("x-csrf-token") {
        let ok = h.to_str().is_ok_and(|v| ct_eq(v, expected));
        return (ok, Some(req));
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_FORM_BYTES).await else {
        return (false, None);
    };
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    // Tokens are hex, so the raw field value needs no percent-decoding.
    let ok = is_form
        && bytes
            .split(|b| *b == b'&')
            .filter_map(|pair| pair.strip_prefix(b"csrf="))
            .any(|v| std::str::from_utf8(v).is_ok_and(|v| ct_eq(v, expected)));
    (ok, Some(Request::from_parts(parts, Body::from(bytes))))
}

/// `Set-Cookie` for the session: HttpOnly, SameSite=Strict, Path=/, and
/// Secure as configured. No Max-Age: it ends with the browser, and the
/// server ends it sooner by its timeouts.
pub fn session_cookie(id: &str, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/{}",
        if secure { "; Secure" } else { "" }
    )
}

pub fn expired_cookie(name: &str, path: &str, secure: bool) -> String {
    format!(
        "{name}=; HttpOnly; SameSite=Strict; Path={path}; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}
