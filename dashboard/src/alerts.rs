//! Alerts: the list with filters, the detail page with the evidence events
//! (read from the lake), a timeline of each token involved, the status
//! history and a form to open an incident, status changes (acknowledge,
//! resolve, false positive, reopen) with a required comment, and the same
//! as JSON under `/api/alerts`.
//!
//! Tenant limits: an alert belongs to the tenant in its group
//! (`group["tenant"]`). A user limited to some tenants sees only alerts of
//! those tenants; an alert without a tenant is shown only to users without
//! a limit. Anything else answers 404, exactly as an unknown id does, so a
//! limited user cannot even learn that another tenant's alert exists.
//! Evidence events and timelines are read for the user's tenants only: a
//! token used across tenants shows only the user's side of it.
//!
//! Routes:
//! - `GET /alerts`, `GET /alerts/{id}` (ViewAlerts)
//! - `POST /alerts/{id}/status` (ManageAlerts; form with `csrf`, `status`, `comment`)
//! - `GET /api/alerts`, `GET /api/alerts/{id}` (ViewAlerts; the detail
//!   adds `evidence_events`, `evidence_not_shown`, `timelines`,
//!   `tokens_left_out` and `incidents` to the alert's fields)
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
use scopewatch_analytics::evidence::{EventScope, EvidenceEvent, TokenTimeline};
use scopewatch_analytics::{AnalyticsError, Lake};
use scopewatch_model::events::Timestamp;
use scopewatch_rules::alert::{Alert, AlertStatus, Severity};
use scopewatch_rules::store::{AlertStore, StoreError};
use serde::{Deserialize, Serialize};

use crate::auth::{CurrentUser, Permission};
use crate::http::json_body;
use crate::layout::{csrf_field, page, seg, select, when, when_to, Precision};
use crate::{AppError, AppState, DashboardError};

/// Rows shown on the list page (newest first); the API returns them all.
const LIST_PAGE_ROWS: usize = 2000;

/// Longest comment accepted with a status change.
const MAX_COMMENT_CHARS: usize = 2000;

const DAY_US: i64 = 86_400_000_000;

/// Evidence events are looked up within the alert's first..last seen plus
/// this margin: they lie inside it, and the window keeps DuckDB to a few
/// days of partitions on a large lake.
pub(crate) const EVIDENCE_MARGIN_US: i64 = DAY_US;

/// A token's timeline reaches this far before the alert's first and after
/// its last evidence (issuance often precedes the alert; revocation follows).
const TIMELINE_MARGIN_US: i64 = 7 * DAY_US;

/// Entries per token timeline.
const TIMELINE_LIMIT: usize = 200;

/// Tokens whose timeline the detail shows (the group's first, then in the
/// order the evidence names them).
const MAX_TIMELINES: usize = 5;

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
pub(crate) async fn with_store<T, F>(state: &AppState, f: F) -> Result<T, DashboardError>
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
    sees_group(
        user,
        tenant_of(alert),
        alert.group.get("client_id").map(String::as_str),
    )
}

/// The rule for an alert's group (and an incident's copy of it): a group
/// without a tenant is for users without a tenant limit; one without an
/// app is for everyone who sees its tenant.
pub(crate) fn sees_group(
    user: &CurrentUser,
    tenant: Option<&str>,
    client_id: Option<&str>,
) -> bool {
    let tenant_ok = match tenant {
        Some(t) => user.sees_tenant(t),
        None => user.tenant_filter().is_none(),
    };
    tenant_ok && client_id.is_none_or(|app| user.sees_app(app))
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

/// Checks and applies a status change for `user`, and writes the audit
/// entry. The permission is checked before the id, so a 403 says nothing
/// about which alerts exist.
async fn change_status(
    state: &AppState,
    user: &CurrentUser,
    id: String,
    status: &str,
    comment: &str,
) -> Result<Alert, AppError> {
    if !user.can(Permission::ManageAlerts) {
        return Err(AppError::Forbidden);
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
            return Ok(Err(AppError::NotFound));
        }
        let (to, comment) = match input {
            Ok(v) => v,
            Err(message) => return Ok(Err(AppError::BadRequest(message))),
        };
        store
            .set_status(&id, to, &by, Some(comment), at)
            .map(|a| Ok(a.clone()))
    })
    .await;
    let changed = changed.unwrap_or_else(|e| Err(e.into()));
    state.audited(user, "alert_status", &target, changed).await
}

/// Alert ids are `al-<hex>`, but links must not break on whatever a store
/// holds: the id is encoded.
pub(crate) fn alert_href(id: &str) -> String {
    format!("/alerts/{}", seg(id))
}

pub(crate) fn severity_badge(s: Severity) -> Markup {
    html! { span class={ "badge sev-" (s.as_str()) } { (s.as_str()) } }
}

pub(crate) fn status_badge(s: AlertStatus) -> Markup {
    html! { span class={ "badge st-" (s.as_str()) } { (s.as_str().replace('_', " ")) } }
}

pub(crate) fn group_list(a: &Alert) -> Markup {
    html! {
        @for (k, v) in &a.group {
            div.kv { span.k { (k) } "=" span.v { (v) } }
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
    let severities: Vec<(String, String)> = Severity::ALL
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
                            td { (severity_badge(a.severity)) }
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

/// The lake's side of an alert, as the user may see it.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    /// The evidence events found, oldest first, of the user's tenants.
    pub events: Vec<EvidenceEvent>,
    /// Evidence ids not shown: not in the lake (yet), or of a tenant the
    /// user does not see.
    pub not_shown: usize,
    /// One per token involved, at most [`MAX_TIMELINES`].
    pub timelines: Vec<TokenTimeline>,
    /// Tokens involved beyond [`MAX_TIMELINES`].
    pub tokens_left_out: usize,
}

/// The part of the lake to read for `user` around `first..=last` (µs).
pub(crate) fn scope_for(user: &CurrentUser, first: i64, last: i64, margin: i64) -> EventScope {
    EventScope {
        window: Some((first.saturating_sub(margin), last.saturating_add(margin))),
        tenants: user.tenant_filter().map(<[String]>::to_vec),
    }
}

/// The evidence events of `alert` that `user` may see, oldest first. Runs
/// on the lake (blocking).
pub(crate) fn evidence_events(
    lake: &Lake,
    user: &CurrentUser,
    alert: &Alert,
) -> Result<Vec<EvidenceEvent>, AnalyticsError> {
    let scope = scope_for(
        user,
        alert.first_seen.0,
        alert.last_seen.0,
        EVIDENCE_MARGIN_US,
    );
    let mut events = lake.events_by_id(&alert.evidence, &scope)?;
    // The query keeps to the user's tenants; the app limit of a product
    // owner is applied here, by the same rule as every data page.
    events.retain(|e| crate::insights::sees(user, Some(&e.tenant), e.client_id.as_deref()));
    Ok(events)
}

/// The token ids an alert is about: those in its group first, then those
/// its evidence events name, without repeats.
fn tokens_involved(alert: &Alert, events: &[EvidenceEvent]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let from_group = alert
        .group
        .iter()
        .filter(|(k, _)| k.contains("token"))
        .map(|(_, v)| v.as_str());
    let from_events = events.iter().flat_map(|e| e.token_ids());
    for t in from_group.chain(from_events) {
        if !t.is_empty() && !out.iter().any(|o| o == t) {
            out.push(t.to_string());
        }
    }
    out
}

/// Reads the evidence events and the token timelines of `alert` for `user`.
pub(crate) async fn evidence(
    state: &AppState,
    user: &CurrentUser,
    alert: &Alert,
) -> Result<Evidence, DashboardError> {
    let (user, alert) = (user.clone(), alert.clone());
    state
        .insights
        .with_lake(move |lake| {
            let events = evidence_events(lake, &user, &alert)?;
            let tokens = tokens_involved(&alert, &events);
            let scope = scope_for(
                &user,
                alert.first_seen.0,
                alert.last_seen.0,
                TIMELINE_MARGIN_US,
            );
            let mut timelines = Vec::new();
            for t in tokens.iter().take(MAX_TIMELINES) {
                let mut tl = lake.token_timeline(t, &scope, TIMELINE_LIMIT)?;
                let found = tl.entries.len();
                tl.entries.retain(|e| {
                    crate::insights::sees(&user, Some(&e.tenant), e.client_id.as_deref())
                });
                // What the user may not see is not counted either.
                tl.total -= (found - tl.entries.len()) as u64;
                timelines.push(tl);
            }
            let distinct: BTreeSet<&str> = alert.evidence.iter().map(String::as_str).collect();
            Ok(Evidence {
                not_shown: distinct.len().saturating_sub(events.len()),
                events,
                timelines,
                tokens_left_out: tokens.len().saturating_sub(MAX_TIMELINES),
            })
        })
        .await
}

/// What the detail page shows besides the alert itself.
struct Extras {
    /// The evidence, or why the lake could not give it.
    evidence: Result<Evidence, String>,
    /// Incidents (the user may see) that hold this alert.
    incidents: Vec<crate::incidents::IncidentLink>,
}

async fn extras(state: &AppState, user: &CurrentUser, alert: &Alert) -> Result<Extras, AppError> {
    let evidence = evidence(state, user, alert).await.map_err(|e| {
        tracing::error!(error = %e, alert = %alert.id, "reading an alert's evidence from the lake failed");
        "The lake could not be read; the server log has the details.".to_string()
    });
    let incidents = crate::incidents::holding(state, user, &alert.id).await?;
    Ok(Extras {
        evidence,
        incidents,
    })
}

fn token_ref(t: &str, timelines: &[TokenTimeline]) -> Markup {
    match timelines.iter().position(|tl| tl.token_id == t) {
        Some(i) => html! { a.kv href={ "#timeline-" (i) } { (t) } },
        None => html! { span.kv { (t) } },
    }
}

fn outcome_text(outcome: &str, status: Option<i32>) -> String {
    match status {
        Some(s) => format!("{outcome} ({s})"),
        None => outcome.to_string(),
    }
}

/// The evidence events as a table.
pub(crate) fn events_table(events: &[EvidenceEvent], timelines: &[TokenTimeline]) -> Markup {
    html! {
        table #evidence-events {
            thead { tr {
                th { "When (UTC)" } th { "Event" } th { "Tenant / app" } th { "Outcome" }
                th { "Tokens" } th { "Client" } th { "Pseudonyms" }
            } }
            tbody {
                @for e in events {
                    tr {
                        td.nowrap { (when_to(&e.ts, Precision::Exact)) br; code.kv { (e.event_id) } }
                        td {
                            @if e.stream == "access" {
                                (e.method.as_deref().unwrap_or("")) " " span.kv { (e.path.as_deref().unwrap_or("")) }
                                @if let Some(r) = &e.required { br; span.muted { "needs " code { (r) } } }
                            } @else {
                                (e.kind.as_deref().unwrap_or("auth"))
                                @if let Some(g) = &e.scopes_granted { br; span.muted { "granted " span.kv { (g.join(" ")) } } }
                                @if let Some(err) = &e.error { br; span.error { (err) } }
                            }
                        }
                        td { (e.tenant) br; span.kv { (e.client_id.as_deref().unwrap_or("-")) } }
                        td { (outcome_text(&e.outcome, e.status)) }
                        td {
                            @if let Some(t) = &e.token_id { div { "token " (token_ref(t, timelines)) } }
                            @if let Some(t) = &e.refresh_token_id { div { "refresh " (token_ref(t, timelines)) } }
                            @if let Some(t) = &e.parent_token_id { div { "parent " (token_ref(t, timelines)) } }
                        }
                        td { span.kv { (e.ip.as_deref().unwrap_or("-")) } br; span.kv { (e.user_agent.as_deref().unwrap_or("")) } }
                        td {
                            @if let Some(u) = &e.user { div.kv { "user " (u) } }
                            @if let Some(p) = &e.patient { div.kv { "patient " (p) } }
                        }
                    }
                }
            }
        }
    }
}

fn timeline_section(i: usize, tl: &TokenTimeline) -> Markup {
    html! {
        section.timeline id={ "timeline-" (i) } {
            h3 { "Token " code.kv { (tl.token_id) } }
            @if tl.entries.is_empty() {
                p.muted { "Nothing about this token in the lake within 7 days of the alert." }
            } @else {
                table.timeline {
                    thead { tr {
                        th { "When (UTC)" } th { "What" } th { "Tenant / app" } th { "Detail" }
                        th { "Outcome" } th { "Client" }
                    } }
                    tbody {
                        @for e in &tl.entries {
                            tr {
                                td.nowrap { (when_to(&e.ts, Precision::Exact)) }
                                td { (e.what) }
                                td { (e.tenant) br; span.kv { (e.client_id.as_deref().unwrap_or("-")) } }
                                td {
                                    @if e.stream == "access" {
                                        (e.method.as_deref().unwrap_or("")) " " span.kv { (e.path.as_deref().unwrap_or("")) }
                                    } @else {
                                        @if let Some(g) = &e.scopes_granted { span.kv { (g.join(" ")) } }
                                        @if let Some(x) = &e.expires_at { div.muted { "expires " (when_to(x, Precision::Exact)) } }
                                        @if let Some(err) = &e.error { div.error { (err) } }
                                    }
                                }
                                td { (outcome_text(&e.outcome, e.status)) }
                                td { span.kv { (e.ip.as_deref().unwrap_or("-")) } br; span.kv { (e.user_agent.as_deref().unwrap_or("")) } }
                            }
                        }
                    }
                }
                @if tl.left_out > 0 {
                    p.muted { "The first " (tl.entries.len()) " of " (tl.total) " events; " (tl.left_out) " more not shown." }
                }
            }
        }
    }
}

fn detail_body(user: &CurrentUser, a: &Alert, error: Option<&str>, extras: &Extras) -> Markup {
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
            dt { "Severity" } dd { (severity_badge(a.severity)) }
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
        h2 { "Incidents" }
        @if extras.incidents.is_empty() {
            p.muted #no-incidents { "Not part of any incident." }
        } @else {
            ul #alert-incidents {
                @for i in &extras.incidents {
                    li { a href=(i.href()) { (i.title) } " " code { (i.id) } " (" (i.status.as_str()) ")" }
                }
            }
        }
        @if user.can(Permission::ManageIncidents) {
            div.card {
                h2 { "Open an incident" }
                form #open-incident method="post" action="/incidents" {
                    (csrf_field(user))
                    input type="hidden" name="alert" value=(a.id);
                    label for="incident-title" { "Title (required)" }
                    input #incident-title type="text" name="title" required
                        maxlength=(crate::incidents::MAX_TITLE_CHARS) value=(a.title);
                    div { button #open-incident-button type="submit" { "Open an incident" } }
                }
            }
        }
        h2 { "Evidence" }
        p.muted {
            (a.evidence.len()) " event ids kept of " (a.count) " matching events, in event-time order."
        }
        @match &extras.evidence {
            Err(message) => { p.error #evidence-error { (message) } }
            Ok(ev) => {
                @if ev.events.is_empty() {
                    p.muted #no-evidence-events { "None of these events is in the lake for the tenants you see." }
                } @else {
                    (events_table(&ev.events, &ev.timelines))
                }
                @if ev.not_shown > 0 && !ev.events.is_empty() {
                    p.muted #evidence-not-shown {
                        (ev.not_shown) " of the event ids are not shown: not in the lake, or of a tenant you do not see."
                    }
                }
                h2 { "Token timeline" }
                @if ev.timelines.is_empty() {
                    p.muted #no-timeline { "No token is named by this alert or its evidence." }
                } @else {
                    p.muted {
                        "Everything the lake holds about each token within 7 days of the alert: issued, refreshed, used, revoked."
                        @if ev.tokens_left_out > 0 { " " (ev.tokens_left_out) " more tokens are not shown." }
                    }
                    @for (i, tl) in ev.timelines.iter().enumerate() { (timeline_section(i, tl)) }
                }
            }
        }
        details {
            summary { "Event ids" }
            ol.evidence #evidence {
                @for e in &a.evidence { li { code { (e) } } }
            }
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
    let extras = extras(&state, &user, &alert).await?;
    let body = detail_body(&user, &alert, None, &extras);
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
        Err(AppError::BadRequest(message)) => {
            // The page again, with the message by the form.
            let Some(alert) = visible_alert(&state, &user, id).await? else {
                return Err(AppError::NotFound);
            };
            let title = format!("Alert: {}", alert.title);
            let extras = extras(&state, &user, &alert).await?;
            let body = detail_body(&user, &alert, Some(&message), &extras);
            Ok((
                StatusCode::BAD_REQUEST,
                Html(page(&title, &user, body).into_string()),
            )
                .into_response())
        }
        Err(other) => Err(other),
    }
}

fn api_refused(e: AppError) -> Response {
    e.into_api("no such alert")
}

/// `GET /api/alerts`: the alerts the caller may see that match the
/// filters, newest `last_seen` first.
async fn api_list(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(filters): Query<Filters>,
) -> Response {
    if !user.can(Permission::ViewAlerts) {
        return api_refused(AppError::Forbidden);
    }
    match listing(&state, &user, &filters).await {
        Ok(l) => Json(l.alerts).into_response(),
        Err(e) => api_refused(e.into()),
    }
}

/// The alert with its evidence, as `GET /api/alerts/{id}` answers it.
#[derive(Debug, Serialize)]
struct AlertDetail {
    #[serde(flatten)]
    alert: Alert,
    evidence_events: Vec<EvidenceEvent>,
    evidence_not_shown: usize,
    timelines: Vec<TokenTimeline>,
    tokens_left_out: usize,
    incidents: Vec<crate::incidents::IncidentLink>,
}

/// `GET /api/alerts/{id}`
async fn api_get(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Response {
    if !user.can(Permission::ViewAlerts) {
        return api_refused(AppError::Forbidden);
    }
    let alert = match visible_alert(&state, &user, id).await {
        Ok(Some(a)) => a,
        Ok(None) => return api_refused(AppError::NotFound),
        Err(e) => return api_refused(e.into()),
    };
    let ev = match evidence(&state, &user, &alert).await {
        Ok(ev) => ev,
        Err(e) => return api_refused(e.into()),
    };
    let incidents = match crate::incidents::holding(&state, &user, &alert.id).await {
        Ok(i) => i,
        Err(e) => return api_refused(e.into()),
    };
    Json(AlertDetail {
        alert,
        evidence_events: ev.events,
        evidence_not_shown: ev.not_shown,
        timelines: ev.timelines,
        tokens_left_out: ev.tokens_left_out,
        incidents,
    })
    .into_response()
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
        return api_refused(AppError::Forbidden);
    }
    let body: StatusBody = match json_body(&body, r#"{"status": "...", "comment": "..."}"#) {
        Ok(b) => b,
        Err(e) => return api_refused(e),
    };
    match change_status(&state, &user, id, &body.status, &body.comment).await {
        Ok(a) => Json(a).into_response(),
        Err(e) => api_refused(e),
    }
}
