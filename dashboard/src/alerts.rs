//! Alerts: the list with filters, the detail page with evidence and status
//! history, status changes (acknowledge, resolve, false positive, reopen)
//! with a required comment, and the same as JSON under `/api/alerts`.
//!
//! Tenant limits: an alert belongs to the tenant in its group
//! (`group["tenant"]`). A user limited to some tenants sees only alerts of
//! those tenants; an alert without a tenant is shown only to users without
//! a limit. Anything else answers 404, exactly as an unknown id does, so a
//! limited user cannot even learn that another tenant's alert exists.
//!
//! Routes:
//! - `GET /alerts`, `GET /alerts/{id}` (ViewAlerts)
//! - `POST /alerts/{id}/status` (ManageAlerts; form with `csrf`, `status`, `comment`)
//! - `GET /api/alerts`, `GET /api/alerts/{id}` (ViewAlerts)
//! - `POST /api/alerts/{id}/status` (ManageAlerts; JSON `{"status", "comment"}`)
//!
//! The filters (`status`, `severity`, `rule`, `tenant`) compare whole
//! values; an empty value is no filter, an unknown one matches nothing.

use std::collections::BTreeSet;
use std::sync::PoisonError;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use maud::{html, Markup};
use scopewatch_model::events::Timestamp;
use scopewatch_rules::alert::{Alert, AlertStatus};
use scopewatch_rules::store::{AlertStore, StoreError};
use serde::Deserialize;

use crate::audit::Outcome;
use crate::auth::{CurrentUser, Permission};
use crate::layout::{csrf_field, page};
use crate::{AppError, AppState, DashboardError};

/// Rows shown on the list page (newest first); the API returns them all.
const LIST_PAGE_ROWS: usize = 2000;

/// Longest comment accepted with a status change.
const MAX_COMMENT_CHARS: usize = 2000;

/// The alert routes, merged by [`crate::pages::routes`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/alerts", get(list_page))
        .route("/alerts/{id}", get(detail_page))
        .route("/alerts/{id}/status", post(status_form))
        .route("/api/alerts", get(api_list))
        .route("/api/alerts/{id}", get(api_get))
        .route("/api/alerts/{id}/status", post(api_status))
}

/// Takes up what other processes (the detector) appended to the store
/// since it was last read. Call before every read.
pub fn fresh(store: &mut AlertStore) -> Result<(), StoreError> {
    store.refresh()
}

/// Runs `f` on the freshly refreshed store, off the async threads.
async fn with_store<T, F>(state: &AppState, f: F) -> Result<T, DashboardError>
where
    T: Send + 'static,
    F: FnOnce(&mut AlertStore) -> Result<T, StoreError> + Send + 'static,
{
    let store = state.alerts.clone();
    tokio::task::spawn_blocking(move || {
        let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
        fresh(&mut store)?;
        f(&mut store)
    })
    .await
    .map_err(|e| DashboardError::Task(e.to_string()))?
    .map_err(DashboardError::from)
}

/// The tenant an alert belongs to, if its rule groups by tenant.
fn tenant_of(alert: &Alert) -> Option<&str> {
    alert.group.get("tenant").map(String::as_str)
}

/// Whether `user` may see `alert` at all (tenant limit, and the app for a
/// product owner).
pub fn visible(user: &CurrentUser, alert: &Alert) -> bool {
    let tenant_ok = match tenant_of(alert) {
        Some(t) => user.sees_tenant(t),
        None => user.tenant_filter().is_none(),
    };
    let app_ok = alert
        .group
        .get("client_id")
        .is_none_or(|app| user.sees_app(app));
    tenant_ok && app_ok
}

/// The list filters, from the query string. Empty = no filter.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Filters {
    #[serde(default)]
    status: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    rule: String,
    #[serde(default)]
    tenant: String,
}

impl Filters {
    fn matches(&self, a: &Alert) -> bool {
        (self.status.is_empty() || a.status.as_str() == self.status)
            && (self.severity.is_empty() || a.severity.as_str() == self.severity)
            && (self.rule.is_empty() || a.rule == self.rule)
            && (self.tenant.is_empty() || tenant_of(a) == Some(self.tenant.as_str()))
    }
}

/// What the list shows: the matching alerts newest first, and the rules
/// and tenants of every alert the user may see (for the selects).
struct Listing {
    alerts: Vec<Alert>,
    rules: Vec<(String, String)>,
    tenants: Vec<String>,
}

async fn listing(
    state: &AppState,
    user: &CurrentUser,
    filters: &Filters,
) -> Result<Listing, DashboardError> {
    let (user, filters) = (user.clone(), filters.clone());
    with_store(state, move |store| {
        let mut rules = BTreeSet::new();
        let mut tenants = BTreeSet::new();
        let mut alerts = Vec::new();
        for a in store.alerts().filter(|a| visible(&user, a)) {
            rules.insert((a.rule.clone(), a.title.clone()));
            if let Some(t) = tenant_of(a) {
                tenants.insert(t.to_string());
            }
            if filters.matches(a) {
                alerts.push(a.clone());
            }
        }
        alerts.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(a.id.cmp(&b.id)));
        Ok(Listing {
            alerts,
            rules: rules.into_iter().collect(),
            tenants: tenants.into_iter().collect(),
        })
    })
    .await
}

/// One alert if it exists and `user` may see it; `None` either way else.
async fn visible_alert(
    state: &AppState,
    user: &CurrentUser,
    id: String,
) -> Result<Option<Alert>, DashboardError> {
    let user = user.clone();
    with_store(state, move |store| {
        Ok(store.get(&id).filter(|a| visible(&user, a)).cloned())
    })
    .await
}

/// Why a status change was refused.
enum Refused {
    Forbidden,
    NotFound,
    Bad(String),
    Internal(DashboardError),
}

impl From<DashboardError> for Refused {
    fn from(e: DashboardError) -> Self {
        Refused::Internal(e)
    }
}

/// Checks and applies a status change for `user`, and writes the audit
/// entry. The permission is checked before the id, so a 403 says nothing
/// about which alerts exist.
async fn change_status(
    state: &AppState,
    user: &CurrentUser,
    id: String,
    status: &str,
    comment: &str,
) -> Result<Alert, Refused> {
    if !user.can(Permission::ManageAlerts) {
        return Err(Refused::Forbidden);
    }
    let input = match AlertStatus::parse(status) {
        None => Err("Choose a status: open, acknowledged, resolved or false_positive.".to_string()),
        Some(_) if comment.trim().is_empty() => {
            Err("A comment is required: say why the status changes.".to_string())
        }
        Some(_) if comment.trim().chars().count() > MAX_COMMENT_CHARS => Err(format!(
            "The comment is too long (at most {MAX_COMMENT_CHARS} characters)."
        )),
        Some(to) => Ok((to, comment.trim().to_string())),
    };
    let (viewer, by) = (user.clone(), user.username.clone());
    let at = Timestamp::from_offset_datetime(time::OffsetDateTime::now_utc());
    let target = format!("alert/{id}");
    // One lock for the check and the change.
    let changed = with_store(state, move |store| {
        if !store.get(&id).is_some_and(|a| visible(&viewer, a)) {
            return Ok(Err(Refused::NotFound));
        }
        let (to, comment) = match input {
            Ok(v) => v,
            Err(message) => return Ok(Err(Refused::Bad(message))),
        };
        store
            .set_status(&id, to, &by, Some(comment), at)
            .map(|a| Ok(a.clone()))
    })
    .await;
    let outcome = match &changed {
        Ok(Ok(_)) => Outcome::Success,
        Ok(Err(_)) => return changed?,
        Err(_) => Outcome::Failure,
    };
    state
        .audit(&user.username, "alert_status", &target, outcome, &user.ip)
        .await?;
    changed?
}

/// A path segment with everything but unreserved characters
/// percent-encoded (alert ids are `al-<hex>`, but links must not break on
/// whatever a store holds).
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn alert_href(id: &str) -> String {
    format!("/alerts/{}", seg(id))
}

/// `YYYY-MM-DD HH:MM:SS` UTC, for tables (the API keeps RFC 3339).
fn when(t: Timestamp) -> String {
    let s = t.to_string();
    let s = s.trim_end_matches('Z');
    let s = s.split('.').next().unwrap_or(s);
    s.replacen('T', " ", 1)
}

fn severity_badge(a: &Alert) -> Markup {
    html! { span class={ "badge sev-" (a.severity.as_str()) } { (a.severity.as_str()) } }
}

fn status_badge(s: AlertStatus) -> Markup {
    html! { span class={ "badge st-" (s.as_str()) } { (s.as_str().replace('_', " ")) } }
}

fn group_list(a: &Alert) -> Markup {
    html! {
        @for (k, v) in &a.group {
            div.kv { span.k { (k) } "=" span.v { (v) } }
        }
    }
}

fn select(name: &str, label: &str, current: &str, options: &[(String, String)]) -> Markup {
    html! {
        div.field {
            label for={ "f-" (name) } { (label) }
            select id={ "f-" (name) } name=(name) {
                option value="" selected[current.is_empty()] { "any" }
                @for (value, text) in options {
                    option value=(value) selected[current == value] { (text) }
                }
            }
        }
    }
}

/// `GET /alerts`
async fn list_page(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(filters): Query<Filters>,
) -> Result<Response, AppError> {
    user.require(Permission::ViewAlerts)?;
    let listing = listing(&state, &user, &filters).await?;
    let statuses: Vec<(String, String)> = AlertStatus::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), s.as_str().replace('_', " ")))
        .collect();
    let severities: Vec<(String, String)> = scopewatch_rules::alert::Severity::ALL
        .iter()
        .rev()
        .map(|s| (s.as_str().to_string(), s.as_str().to_string()))
        .collect();
    let rules: Vec<(String, String)> = listing
        .rules
        .iter()
        .map(|(id, title)| (id.clone(), format!("{title} ({id})")))
        .collect();
    let tenants: Vec<(String, String)> = listing
        .tenants
        .iter()
        .map(|t| (t.clone(), t.clone()))
        .collect();
    let total = listing.alerts.len();
    let body = html! {
        form.filters #alert-filters method="get" action="/alerts" {
            (select("status", "Status", &filters.status, &statuses))
            (select("severity", "Severity", &filters.severity, &severities))
            (select("rule", "Rule", &filters.rule, &rules))
            (select("tenant", "Tenant", &filters.tenant, &tenants))
            div.field.actions {
                button type="submit" { "Filter" }
                " "
                a href="/alerts" { "Clear" }
            }
        }
        p.muted #alert-count {
            (total) @if total == 1 { " alert" } @else { " alerts" }
            @if total > LIST_PAGE_ROWS { ", the newest " (LIST_PAGE_ROWS) " shown" }
            "."
        }
        @if total == 0 {
            p #no-alerts { "No alerts match." }
        } @else {
            table #alerts {
                thead { tr {
                    th { "Severity" } th { "Rule" } th { "Group" } th { "First seen (UTC)" }
                    th { "Last seen (UTC)" } th.num { "Count" } th { "Status" } th { "" }
                } }
                tbody {
                    @for a in listing.alerts.iter().take(LIST_PAGE_ROWS) {
                        tr {
                            td { (severity_badge(a)) }
                            td { (a.title) br; code { (a.rule) } }
                            td { (group_list(a)) }
                            td.nowrap { (when(a.first_seen)) }
                            td.nowrap { (when(a.last_seen)) }
                            td.num { (a.count) }
                            td { (status_badge(a.status)) }
                            td { a.open href=(alert_href(&a.id)) { "Details" } }
                        }
                    }
                }
            }
        }
    };
    Ok(Html(page("Alerts", &user, body).into_string()).into_response())
}

fn detail_body(user: &CurrentUser, a: &Alert, error: Option<&str>) -> Markup {
    // Offer the statuses it can move to; the first differs from the current.
    let choices: Vec<AlertStatus> = [
        AlertStatus::Acknowledged,
        AlertStatus::Resolved,
        AlertStatus::FalsePositive,
        AlertStatus::Open,
    ]
    .into_iter()
    .filter(|s| *s != a.status)
    .collect();
    html! {
        p { a href="/alerts" { "← All alerts" } }
        dl.facts #alert-facts {
            dt { "Status" } dd #alert-status { (status_badge(a.status)) }
            dt { "Severity" } dd { (severity_badge(a)) }
            dt { "Rule" } dd { (a.title) " " code { (a.rule) } }
            dt { "Alert id" } dd { code { (a.id) } }
            dt { "Group" } dd { (group_list(a)) }
            dt { "First seen (UTC)" } dd { (when(a.first_seen)) }
            dt { "Last seen (UTC)" } dd { (when(a.last_seen)) }
            dt { "Count" } dd { (a.count) }
            dt { "Detail" } dd #alert-detail { (a.detail) }
        }
        h2 { "Status history" }
        @if a.history.is_empty() {
            p.muted #no-history { "No changes yet: raised as open." }
        } @else {
            table #history {
                thead { tr { th { "When (UTC)" } th { "By" } th { "Change" } th { "Comment" } } }
                tbody {
                    @for h in &a.history {
                        tr {
                            td.nowrap { (when(h.at)) }
                            td { (h.by) }
                            td { (status_badge(h.from)) " → " (status_badge(h.to)) }
                            td.comment { (h.comment.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
        @if user.can(Permission::ManageAlerts) {
            div.card {
                h2 { "Change status" }
                @if let Some(e) = error { p.error #form-error { (e) } }
                form #status-form method="post" action={ (alert_href(&a.id)) "/status" } {
                    (csrf_field(user))
                    label for="status" { "New status" }
                    select #status name="status" {
                        @for (i, s) in choices.iter().enumerate() {
                            option value=(s.as_str()) selected[i == 0] { (s.as_str().replace('_', " ")) }
                        }
                    }
                    label for="comment" { "Comment (required)" }
                    textarea #comment name="comment" rows="3" required maxlength=(MAX_COMMENT_CHARS) {}
                    div { button #change-status type="submit" { "Change status" } }
                }
            }
        }
        h2 { "Evidence" }
        p.muted {
            (a.evidence.len()) " event ids kept of " (a.count) " matching events, in event-time order."
        }
        ol.evidence #evidence {
            @for e in &a.evidence { li { code { (e) } } }
        }
    }
}

/// `GET /alerts/{id}`
async fn detail_page(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    user.require(Permission::ViewAlerts)?;
    let alert = visible_alert(&state, &user, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let title = format!("Alert: {}", alert.title);
    let body = detail_body(&user, &alert, None);
    Ok(Html(page(&title, &user, body).into_string()).into_response())
}

#[derive(Debug, Deserialize)]
struct StatusForm {
    #[serde(default)]
    status: String,
    #[serde(default)]
    comment: String,
}

/// `POST /alerts/{id}/status` (the CSRF field is checked by the middleware).
async fn status_form(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Form(form): Form<StatusForm>,
) -> Result<Response, AppError> {
    match change_status(&state, &user, id.clone(), &form.status, &form.comment).await {
        Ok(a) => Ok(Redirect::to(&alert_href(&a.id)).into_response()),
        Err(Refused::Forbidden) => Err(AppError::Forbidden),
        Err(Refused::NotFound) => Err(AppError::NotFound),
        Err(Refused::Internal(e)) => Err(AppError::Internal(e)),
        Err(Refused::Bad(message)) => {
            // The page again, with the message by the form.
            let Some(alert) = visible_alert(&state, &user, id).await? else {
                return Err(AppError::NotFound);
            };
            let title = format!("Alert: {}", alert.title);
            let body = detail_body(&user, &alert, Some(&message));
            Ok((
                StatusCode::BAD_REQUEST,
                Html(page(&title, &user, body).into_string()),
            )
                .into_response())
        }
    }
}

fn api_error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

fn api_internal(e: DashboardError) -> Response {
    AppError::Internal(e).into_response()
}

fn api_forbidden() -> Response {
    api_error(StatusCode::FORBIDDEN, "your role does not allow this")
}

fn api_not_found() -> Response {
    api_error(StatusCode::NOT_FOUND, "no such alert")
}

/// `GET /api/alerts`: the alerts the caller may see that match the
/// filters, newest `last_seen` first.
async fn api_list(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(filters): Query<Filters>,
) -> Response {
    if !user.can(Permission::ViewAlerts) {
        return api_forbidden();
    }
    match listing(&state, &user, &filters).await {
        Ok(l) => Json(l.alerts).into_response(),
        Err(e) => api_internal(e),
    }
}

/// `GET /api/alerts/{id}`
async fn api_get(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Response {
    if !user.can(Permission::ViewAlerts) {
        return api_forbidden();
    }
    match visible_alert(&state, &user, id).await {
        Ok(Some(a)) => Json(a).into_response(),
        Ok(None) => api_not_found(),
        Err(e) => api_internal(e),
    }
}

#[derive(Debug, Deserialize)]
struct StatusBody {
    status: String,
    #[serde(default)]
    comment: String,
}

/// `POST /api/alerts/{id}/status` with `{"status": "...", "comment": "..."}`;
/// answers the changed alert.
async fn api_status(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if !user.can(Permission::ManageAlerts) {
        return api_forbidden();
    }
    let body: StatusBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                &format!("expected JSON {{\"status\": \"...\", \"comment\": \"...\"}}: {e}"),
            )
        }
    };
    match change_status(&state, &user, id, &body.status, &body.comment).await {
        Ok(a) => Json(a).into_response(),
        Err(Refused::Forbidden) => api_forbidden(),
        Err(Refused::NotFound) => api_not_found(),
        Err(Refused::Bad(message)) => api_error(StatusCode::BAD_REQUEST, &message),
        Err(Refused::Internal(e)) => api_internal(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("al-0123abcd"), "al-0123abcd");
        assert_eq!(seg("a/b?c d<"), "a%2Fb%3Fc%20d%3C");
    }

    #[test]
    fn times_read_as_utc_seconds() {
        let t = Timestamp::parse_rfc3339("2026-03-04T05:06:07.891Z").unwrap();
        assert_eq!(when(t), "2026-03-04 05:06:07");
    }
}
