//! The data pages: overview, apps, app detail and tenants, as HTML and as
//! JSON under `/api/`. Every page reads the shared snapshot
//! ([`crate::insights`]) and shows only what the user may see: rows of
//! other tenants and, for product owners, other apps are filtered out
//! before anything is counted, so totals never leak them either.
//!
//! Add a page here: a handler taking `CurrentUser` (check a `Permission`,
//! filter with the snapshot's `visible_*`), rendering with `layout::page`,
//! and a `.route(...)` in [`routes`].
//!
//! Routes (ViewData): `GET /`, `/apps`, `/apps/{client_id}`, `/tenants`,
//! `/tenants/{tenant}`, `/api/overview`, `/api/apps`,
//! `/api/apps/{client_id}`, `/api/tenants`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::PoisonError;

use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use maud::{html, Markup, PreEscaped};
use scopewatch_analytics::matrix::{AppTenant, ScopeClass};
use scopewatch_analytics::report::{class_label, class_meaning, lines_per_day_svg, CLASSES};
use scopewatch_model::registry::App;
use scopewatch_rules::alert::{Alert, AlertStatus, Severity};
use serde::{Deserialize, Serialize};

use crate::alerts::{alert_href, severity_badge};
use crate::auth::{CurrentUser, Permission};
use crate::insights::Snapshot;
use crate::layout::{num, page, qv, seg, select, when, when_str};
use crate::{AppError, AppState, DashboardError};

/// The data pages' routes, merged into [`crate::router`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(overview))
        .route("/apps", get(apps_page))
        .route("/apps/{client_id}", get(app_page))
        .route("/tenants", get(tenants_page))
        .route("/tenants/{tenant}", get(tenant_page))
        .route("/api/overview", get(api_overview))
        .route("/api/apps", get(api_apps))
        .route("/api/apps/{client_id}", get(api_app))
        .route("/api/tenants", get(api_tenants))
        .merge(crate::alerts::routes())
        .merge(crate::incidents::routes())
        .merge(crate::recert::routes())
        .merge(crate::reports::routes())
}

fn app_href(client_id: &str) -> String {
    format!("/apps/{}", seg(client_id))
}

fn tenant_href(tenant: &str) -> String {
    format!("/tenants/{}", seg(tenant))
}

fn band_badge(band: &str) -> Markup {
    html! { span class={ "badge band-" (band) } { (band) } }
}

fn class_badge(c: ScopeClass) -> Markup {
    let name = scopewatch_analytics::report::class_name(c);
    html! { span class={ "badge cls-" (name) } title=(class_meaning(c)) { (class_label(c)) } }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The line under each data page's title: the window and how fresh.
fn window_note(snap: &Snapshot) -> Markup {
    html! {
        p.muted #window {
            "Window " strong { (snap.from) " – " (snap.to) } " (UTC, "
            ((snap.to - snap.from).whole_days() + 1) " days); figures as of "
            (when_str(&snap.built_at)) " UTC."
        }
        @if let Some(problem) = &snap.registry_problem {
            p.error #registry-problem { (problem) }
        }
    }
}

// ---------------------------------------------------------------------------
// Per-app rollup (an app across the tenants the user sees)
// ---------------------------------------------------------------------------

/// One app across the tenants a user sees: what the apps list shows.
#[derive(Debug, Clone, Serialize)]
pub struct AppSummary {
    pub client_id: String,
    pub name: Option<String>,
    pub registered: bool,
    pub tier: Option<u8>,
    pub status: Option<String>,
    pub owner: Option<String>,
    pub tenants: Vec<String>,
    /// The highest score over its tenants, and its band.
    pub score: u8,
    pub band: &'static str,
    /// Granted scopes not used in the window, summed over tenants.
    pub unused_scopes: usize,
    pub unapproved_scopes: usize,
    pub calls: u64,
    pub denied_calls: u64,
    pub last_call: Option<String>,
    /// Stale in every tenant it is seen in.
    pub stale: bool,
}

fn summarise<'a>(
    rows: impl Iterator<Item = &'a AppTenant>,
    registry: &scopewatch_model::registry::Registry,
) -> Vec<AppSummary> {
    let mut by_app: BTreeMap<&str, Vec<&AppTenant>> = BTreeMap::new();
    for r in rows {
        by_app.entry(&r.client_id).or_default().push(r);
    }
    by_app
        .into_iter()
        .map(|(client_id, rows)| {
            let reg = registry.app(client_id);
            let top = rows
                .iter()
                .max_by_key(|r| r.creep.score)
                .expect("a group has a row");
            let count = |c: ScopeClass| {
                rows.iter()
                    .map(|r| r.scopes.iter().filter(|s| s.class == c).count())
                    .sum()
            };
            AppSummary {
                client_id: client_id.to_string(),
                name: rows.iter().find_map(|r| r.name.clone()),
                registered: reg.is_some(),
                tier: reg.map(|a| a.tier.get()),
                status: reg.map(|a| a.status.as_str().to_string()),
                owner: reg.map(|a| a.owner.clone()),
                tenants: rows.iter().map(|r| r.tenant.clone()).collect(),
                score: top.creep.score,
                band: top.creep.band,
                unused_scopes: count(ScopeClass::Unused),
                unapproved_scopes: count(ScopeClass::Unapproved),
                calls: rows.iter().map(|r| r.calls).sum(),
                denied_calls: rows.iter().map(|r| r.denied_calls).sum(),
                last_call: rows.iter().filter_map(|r| r.last_call.clone()).max(),
                stale: rows.iter().all(|r| r.stale),
            }
        })
        .collect()
}

/// Filters and sort order of the apps list (query string). Every value
/// only compares against the snapshot; none reaches SQL.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct AppFilters {
    /// Text in the client id, name or owner (case-insensitive).
    #[serde(default)]
    q: String,
    #[serde(default)]
    tenant: String,
    /// low / medium / high
    #[serde(default)]
    band: String,
    /// active / suspended / revoked / unregistered
    #[serde(default)]
    status: String,
    /// `1`: stale apps only.
    #[serde(default)]
    stale: String,
    /// name, score, calls, unused, last_call, tier (default score).
    #[serde(default)]
    sort: String,
    /// `asc` or `desc` (default: desc for numbers, asc for names).
    #[serde(default)]
    dir: String,
}

impl AppFilters {
    fn matches(&self, a: &AppSummary) -> bool {
        let q = self.q.trim().to_lowercase();
        let text_ok = q.is_empty()
            || a.client_id.to_lowercase().contains(&q)
            || a.name
                .as_deref()
                .is_some_and(|n| n.to_lowercase().contains(&q))
            || a.owner
                .as_deref()
                .is_some_and(|n| n.to_lowercase().contains(&q));
        let status = a.status.as_deref().unwrap_or("unregistered");
        text_ok
            && (self.tenant.is_empty() || a.tenants.contains(&self.tenant))
            && (self.band.is_empty() || a.band == self.band)
            && (self.status.is_empty() || status == self.status)
            && (self.stale != "1" || a.stale)
    }

    fn sort(&self, apps: &mut [AppSummary]) {
        let desc_default = !matches!(self.sort.as_str(), "name" | "tier");
        let desc = match self.dir.as_str() {
            "asc" => false,
            "desc" => true,
            _ => desc_default,
        };
        apps.sort_by(|a, b| {
            let order = match self.sort.as_str() {
                "name" => a
                    .name
                    .as_deref()
                    .unwrap_or(&a.client_id)
                    .to_lowercase()
                    .cmp(&b.name.as_deref().unwrap_or(&b.client_id).to_lowercase()),
                "calls" => a.calls.cmp(&b.calls),
                "unused" => a.unused_scopes.cmp(&b.unused_scopes),
                "last_call" => a.last_call.cmp(&b.last_call),
                "tier" => a.tier.cmp(&b.tier),
                _ => a.score.cmp(&b.score),
            };
            let order = if desc { order.reverse() } else { order };
            order.then_with(|| a.client_id.cmp(&b.client_id))
        });
    }

    /// The query string of these filters with another sort.
    fn with_sort(&self, sort: &str) -> String {
        let dir = if self.sort == sort && self.dir != "asc" && self.dir != "desc" {
            // Clicking the current column flips its default direction.
            if matches!(sort, "name" | "tier") {
                "desc"
            } else {
                "asc"
            }
        } else if self.sort == sort && self.dir == "asc" {
            "desc"
        } else if self.sort == sort {
            "asc"
        } else {
            ""
        };
        let mut parts = Vec::new();
        for (k, v) in [
            ("q", self.q.as_str()),
            ("tenant", &self.tenant),
            ("band", &self.band),
            ("status", &self.status),
            ("stale", &self.stale),
            ("sort", sort),
            ("dir", dir),
        ] {
            if !v.is_empty() {
                parts.push(format!("{k}={}", qv(v)));
            }
        }
        format!("?{}", parts.join("&"))
    }
}

fn visible_summaries(snap: &Snapshot, user: &CurrentUser) -> Vec<AppSummary> {
    summarise(snap.visible_apps(user), &snap.registry)
}

// ---------------------------------------------------------------------------
// Alerts the user may see (the overview and app pages count them)
// ---------------------------------------------------------------------------

async fn visible_alerts(state: &AppState, user: &CurrentUser) -> Result<Vec<Alert>, AppError> {
    if !user.can(Permission::ViewAlerts) {
        return Ok(Vec::new());
    }
    let store = state.alerts.clone();
    let user = user.clone();
    tokio::task::spawn_blocking(move || {
        let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
        crate::alerts::fresh(&mut store)?;
        Ok::<_, DashboardError>(
            store
                .alerts()
                .filter(|a| crate::alerts::visible(&user, a))
                .cloned()
                .collect(),
        )
    })
    .await
    .map_err(AppError::task)?
    .map_err(AppError::from)
}

// ---------------------------------------------------------------------------
// Overview
// ---------------------------------------------------------------------------

/// What the overview shows, as JSON too.
#[derive(Debug, Serialize)]
struct Overview {
    from: String,
    to: String,
    built_at: String,
    apps: usize,
    app_tenants: usize,
    events: u64,
    access_calls: u64,
    denied_calls: u64,
    bands: BTreeMap<&'static str, usize>,
    stale_apps: Vec<StaleApp>,
    /// severity -> (open, acknowledged, all); absent without ViewAlerts.
    alerts_by_severity: Option<BTreeMap<&'static str, [usize; 3]>>,
    sources: Vec<SourceRow>,
}

#[derive(Debug, Serialize)]
struct StaleApp {
    client_id: String,
    tenant: String,
    name: Option<String>,
    last_call: Option<String>,
    last_grant: Option<String>,
}

#[derive(Debug, Serialize)]
struct SourceRow {
    source: String,
    stream: String,
    events: u64,
    last_event: Option<String>,
    /// Seconds from the newest event to now.
    lag_seconds: Option<i64>,
}

fn overview_of(snap: &Snapshot, user: &CurrentUser, alerts: Option<&[Alert]>) -> Overview {
    let rows: Vec<&AppTenant> = snap.visible_apps(user).collect();
    let apps: BTreeSet<&str> = rows.iter().map(|r| r.client_id.as_str()).collect();
    let mut bands: BTreeMap<&'static str, usize> = [("low", 0), ("medium", 0), ("high", 0)]
        .into_iter()
        .collect();
    for a in visible_summaries(snap, user) {
        *bands.entry(a.band).or_default() += 1;
    }
    let (mut events, mut access_calls, mut denied_calls) = (0, 0, 0);
    for d in snap.visible_daily(user) {
        events += d.events;
        if d.stream == "access" {
            access_calls += d.events;
            denied_calls += d.denied;
        }
    }
    let alerts_by_severity = alerts.map(|alerts| {
        let mut m: BTreeMap<&'static str, [usize; 3]> =
            Severity::ALL.iter().map(|s| (s.as_str(), [0; 3])).collect();
        for a in alerts {
            let e = m.entry(a.severity.as_str()).or_default();
            match a.status {
                AlertStatus::Open => e[0] += 1,
                AlertStatus::Acknowledged => e[1] += 1,
                _ => {}
            }
            e[2] += 1;
        }
        m
    });
    let now_us = time::OffsetDateTime::now_utc().unix_timestamp() * 1_000_000;
    let mut sources: BTreeMap<(String, String), (u64, Option<i64>)> = BTreeMap::new();
    for s in snap.visible_sources(user) {
        let e = sources
            .entry((
                s.source.clone().unwrap_or_else(|| "(unknown)".into()),
                s.stream.clone(),
            ))
            .or_default();
        e.0 += s.events;
        e.1 = e.1.max(s.last_event_us);
    }
    Overview {
        from: snap.from.to_string(),
        to: snap.to.to_string(),
        built_at: snap.built_at.clone(),
        apps: apps.len(),
        app_tenants: rows.len(),
        events,
        access_calls,
        denied_calls,
        bands,
        stale_apps: rows
            .iter()
            .filter(|r| r.stale)
            .map(|r| StaleApp {
                client_id: r.client_id.clone(),
                tenant: r.tenant.clone(),
                name: r.name.clone(),
                last_call: r.last_call.clone(),
                last_grant: r.last_grant.clone(),
            })
            .collect(),
        alerts_by_severity,
        sources: sources
            .into_iter()
            .map(|((source, stream), (events, last))| SourceRow {
                source,
                stream,
                events,
                last_event: last.map(iso_us),
                lag_seconds: last.map(|us| (now_us - us).max(0) / 1_000_000),
            })
            .collect(),
    }
}

fn iso_us(us: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// `3 d 4 h`, `12 min`, `40 s`.
fn duration_words(seconds: i64) -> String {
    match seconds {
        s if s >= 86_400 => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
        s if s >= 3600 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// The events-per-day chart of the rows a user sees, one line per stream
/// (or per `series` as given).
fn daily_chart<'a>(
    rows: impl IntoIterator<Item = (&'a str, &'a str, u64)>,
    snap: &Snapshot,
    y_desc: &str,
) -> Markup {
    let rows: Vec<(&str, &str, u64)> = rows.into_iter().collect();
    // Start at the first day with data: a new deployment's 90-day window
    // is mostly empty days otherwise.
    let first = rows
        .iter()
        .filter(|r| r.2 > 0)
        .filter_map(|r| {
            time::Date::parse(
                r.1,
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .ok()
        })
        .min();
    let from = first.map_or(snap.from, |f| f.max(snap.from));
    match lines_per_day_svg(rows, from, snap.to, y_desc, "no events in the window") {
        Ok(svg) => html! { div.chart { (PreEscaped(svg)) } },
        Err(e) => {
            tracing::error!(error = %e, "drawing a chart failed");
            html! { p.error { "The chart could not be drawn; the server log says why." } }
        }
    }
}

/// `GET /`
async fn overview(State(state): State<AppState>, user: CurrentUser) -> Result<Response, AppError> {
    user.require(Permission::ViewData)?;
    let snap = state.insights.snapshot().await?;
    let alerts = if user.can(Permission::ViewAlerts) {
        Some(visible_alerts(&state, &user).await?)
    } else {
        None
    };
    let o = overview_of(&snap, &user, alerts.as_deref());
    // The slowest part of the page: drawn once per snapshot and view.
    let chart = snap.overview_chart(&user, || {
        let stream_rows: Vec<(&str, &str, u64)> = snap
            .visible_daily(&user)
            .map(|d| {
                let series = if d.stream == "access" {
                    "FHIR calls"
                } else {
                    "authorization events"
                };
                (series, d.date.as_str(), d.events)
            })
            .chain(
                snap.visible_daily(&user)
                    .filter(|d| d.stream == "access")
                    .map(|d| ("denied FHIR calls", d.date.as_str(), d.denied)),
            )
            .collect();
        daily_chart(stream_rows, &snap, "events").into_string()
    });
    let body = html! {
        p #welcome {
            "Welcome, " strong { (user.username) } ". You see "
            @match user.tenant_filter() {
                None => { "every tenant" }
                Some(t) => { "the tenants " strong { (t.join(", ")) } " only" }
            }
            "."
        }
        (window_note(&snap))
        div.kpis #kpis {
            div.kpi { span.n #kpi-apps { (o.apps) } span.l { "apps" } }
            div.kpi { span.n { (o.app_tenants) } span.l { "app × tenant" } }
            div.kpi { span.n #kpi-events { (num(o.events)) } span.l { "events" } }
            div.kpi { span.n { (num(o.access_calls)) } span.l { "FHIR calls" } }
            div.kpi { span.n { (num(o.denied_calls)) } span.l { "denied calls" } }
            div.kpi { span.n { (o.stale_apps.len()) } span.l { "stale app × tenant" } }
        }
        h2 { "Events per day" }
        (PreEscaped(&*chart))
        div.cols {
            @if let Some(by_sev) = &o.alerts_by_severity {
                section.card #alerts-by-severity {
                    h2 { "Alerts by severity" }
                    table {
                        thead { tr { th { "Severity" } th.num { "Open" } th.num { "Acknowledged" } th.num { "All" } } }
                        tbody {
                            @for s in Severity::ALL.iter().rev() {
                                @let c = by_sev.get(s.as_str()).copied().unwrap_or([0; 3]);
                                tr {
                                    td { a href={ "/alerts?severity=" (s.as_str()) } { (severity_badge(*s)) } }
                                    td.num { (c[0]) } td.num { (c[1]) } td.num { (c[2]) }
                                }
                            }
                        }
                    }
                }
            }
            section.card #bands {
                h2 { "Apps by scope-creep band" }
                table {
                    thead { tr { th { "Band" } th.num { "Apps" } } }
                    tbody {
                        @for band in ["high", "medium", "low"] {
                            tr {
                                td { a href={ "/apps?band=" (band) } { (band_badge(band)) } }
                                td.num { (o.bands.get(band).copied().unwrap_or(0)) }
                            }
                        }
                    }
                }
                p.muted { "Score 0–100 per app and tenant; the app's highest is counted." }
            }
        }
        h2 { "Stale apps" }
        @if o.stale_apps.is_empty() {
            p.muted #no-stale { "No app is stale in the window." }
        } @else {
            table #stale {
                thead { tr { th { "App" } th { "Tenant" } th { "Last call (UTC)" } th { "Last grant (UTC)" } } }
                tbody {
                    @for s in &o.stale_apps {
                        tr {
                            td { a href=(app_href(&s.client_id)) { (s.name.as_deref().unwrap_or(&s.client_id)) } br; code { (s.client_id) } }
                            td { (s.tenant) }
                            td.nowrap { (s.last_call.as_deref().map(when_str).unwrap_or_else(|| "never".into())) }
                            td.nowrap { (s.last_grant.as_deref().map(when_str).unwrap_or_else(|| "never".into())) }
                        }
                    }
                }
            }
        }
        h2 { "Ingest by source" }
        @if o.sources.is_empty() {
            p.muted #no-sources { "The lake holds no events yet." }
        } @else {
            table #sources {
                thead { tr { th { "Source" } th { "Stream" } th.num { "Events" } th { "Newest event (UTC)" } th { "Behind now" } } }
                tbody {
                    @for s in &o.sources {
                        tr {
                            td { code { (s.source) } }
                            td { (s.stream) }
                            td.num { (num(s.events)) }
                            td.nowrap { (s.last_event.as_deref().map(when_str).unwrap_or_default()) }
                            td.nowrap class=[s.lag_seconds.filter(|l| *l > 3600).map(|_| "lagging")] {
                                (s.lag_seconds.map(duration_words).unwrap_or_default())
                            }
                        }
                    }
                }
            }
            p.muted { "“Behind now” is the time since the newest event of the source: a live source that falls far behind has stopped delivering." }
        }
    };
    Ok(Html(page("Overview", &user, body).into_string()).into_response())
}

/// `GET /api/overview`
async fn api_overview(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Response, AppError> {
    user.require(Permission::ViewData)?;
    let snap = state.insights.snapshot().await?;
    let alerts = if user.can(Permission::ViewAlerts) {
        Some(visible_alerts(&state, &user).await?)
    } else {
        None
    };
    Ok(Json(overview_of(&snap, &user, alerts.as_deref())).into_response())
}

// ---------------------------------------------------------------------------
// Apps
// ---------------------------------------------------------------------------

fn apps_table(apps: &[AppSummary], filters: &AppFilters, action: &str) -> Markup {
    let head = |label: &str, key: &str, class: &str| {
        let arrow = if filters.sort == key || (filters.sort.is_empty() && key == "score") {
            match filters.dir.as_str() {
                "asc" => " ▲",
                "desc" => " ▼",
                _ if matches!(key, "name" | "tier") => " ▲",
                _ => " ▼",
            }
        } else {
            ""
        };
        html! { th class=(class) { a href={ (action) (filters.with_sort(key)) } { (label) (arrow) } } }
    };
    html! {
        table #apps {
            thead { tr {
                (head("App", "name", ""))
                (head("Tier", "tier", "num"))
                th { "Status" } th { "Owner" } th { "Tenants" }
                (head("Score", "score", "num"))
                (head("Unused scopes", "unused", "num"))
                (head("Calls", "calls", "num"))
                (head("Last call (UTC)", "last_call", ""))
            } }
            tbody {
                @for a in apps {
                    tr {
                        td {
                            a href=(app_href(&a.client_id)) { (a.name.as_deref().unwrap_or(&a.client_id)) }
                            br; code.client-id { (a.client_id) }
                        }
                        td.num { (a.tier.map(|t| t.to_string()).unwrap_or_else(|| "–".into())) }
                        td {
                            @match &a.status {
                                Some(s) => { span class={ "badge app-" (s) } { (s) } }
                                None => { span.badge.app-unregistered { "unregistered" } }
                            }
                            @if a.stale { " " span.badge.stale { "stale" } }
                        }
                        td { (a.owner.as_deref().unwrap_or("")) }
                        td { (a.tenants.join(", ")) }
                        td.num { (a.score) " " (band_badge(a.band)) }
                        td.num { (a.unused_scopes) }
                        td.num { (num(a.calls)) }
                        td.nowrap { (a.last_call.as_deref().map(when_str).unwrap_or_else(|| "never".into())) }
                    }
                }
            }
        }
    }
}

/// `GET /apps`
async fn apps_page(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(filters): Query<AppFilters>,
) -> Result<Response, AppError> {
    user.require(Permission::ViewData)?;
    let snap = state.insights.snapshot().await?;
    let all = visible_summaries(&snap, &user);
    let tenants: BTreeSet<String> = all.iter().flat_map(|a| a.tenants.clone()).collect();
    let mut apps: Vec<AppSummary> = all.into_iter().filter(|a| filters.matches(a)).collect();
    filters.sort(&mut apps);
    let opts = |v: &[&str]| -> Vec<(String, String)> {
        v.iter().map(|s| (s.to_string(), s.to_string())).collect()
    };
    let tenant_opts: Vec<(String, String)> =
        tenants.iter().map(|t| (t.clone(), t.clone())).collect();
    let body = html! {
        (window_note(&snap))
        form.filters #app-filters method="get" action="/apps" {
            div.field {
                label for="f-q" { "Search" }
                input #f-q type="text" name="q" value=(filters.q) placeholder="client id, name or owner";
            }
            (select("tenant", "Tenant", &filters.tenant, &tenant_opts))
            (select("band", "Band", &filters.band, &opts(&["high", "medium", "low"])))
            (select("status", "Status", &filters.status, &opts(&["active", "suspended", "revoked", "unregistered"])))
            div.field {
                label for="f-stale" { "Stale only" }
                input #f-stale type="checkbox" name="stale" value="1" checked[filters.stale == "1"];
            }
            input type="hidden" name="sort" value=(filters.sort);
            input type="hidden" name="dir" value=(filters.dir);
            div.field.actions { button type="submit" { "Filter" } " " a href="/apps" { "Clear" } }
        }
        p.muted #app-count { (apps.len()) @if apps.len() == 1 { " app" } @else { " apps" } "." }
        @if apps.is_empty() {
            p #no-apps { "No app matches." }
        } @else {
            (apps_table(&apps, &filters, "/apps"))
        }
    };
    Ok(Html(page("Apps", &user, body).into_string()).into_response())
}

/// `GET /api/apps` (the same filters as the page).
async fn api_apps(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(filters): Query<AppFilters>,
) -> Result<Response, AppError> {
    user.require(Permission::ViewData)?;
    let snap = state.insights.snapshot().await?;
    let mut apps: Vec<AppSummary> = visible_summaries(&snap, &user)
        .into_iter()
        .filter(|a| filters.matches(a))
        .collect();
    filters.sort(&mut apps);
    Ok(Json(serde_json::json!({
        "from": snap.from.to_string(),
        "to": snap.to.to_string(),
        "apps": apps,
    }))
    .into_response())
}

// ---------------------------------------------------------------------------
// App detail
// ---------------------------------------------------------------------------

fn registry_facts(app: Option<&App>) -> Markup {
    html! {
        @match app {
            None => {
                p.error #unregistered { "This app is not in the registry: nothing it requests or holds is approved." }
            }
            Some(a) => {
                dl.facts #registry-facts {
                    dt { "Name" } dd { (a.name) }
                    dt { "Owner" } dd { (a.owner) }
                    dt { "Contact" } dd { (a.contact) }
                    dt { "Trust tier" } dd { (a.tier.get()) }
                    dt { "Status" } dd {
                        span class={ "badge app-" (a.status.as_str()) } { (a.status.as_str()) }
                        @if let Some(since) = a.status.since() { " since " (since) }
                        @if let Some(r) = &a.status_reason { " — " (r) }
                    }
                    dt { "Approved versions" } dd {
                        @match &a.approved_versions {
                            None => { "any" }
                            Some(v) => { (v.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")) }
                        }
                    }
                    dt { "Offline access" } dd {
                        @match &a.offline_access {
                            None => { "not justified" }
                            Some(o) => {
                                (if o.justified { "justified" } else { "not justified" })
                                @if let Some(r) = &o.reason { " — " (r) }
                            }
                        }
                    }
                    dt { "Last certified" } dd { (a.last_certified.map(|d| d.to_string()).unwrap_or_else(|| "never".into())) }
                    dt { "Registered" } dd { (a.registered.map(|d| d.to_string()).unwrap_or_else(|| "unknown".into())) }
                }
            }
        }
    }
}

fn matrix_section(r: &AppTenant) -> Markup {
    let suggestion = r.suggestion.scopes.join(" ");
    html! {
        section.tenant-matrix id={ "tenant-" (seg(&r.tenant)) } {
            h2 { "Tenant " (r.tenant) }
            div.kpis {
                div.kpi { span.n { (r.creep.score) } span.l { "score " (band_badge(r.creep.band)) } }
                div.kpi { span.n { (num(r.calls)) } span.l { "calls" } }
                div.kpi { span.n { (num(r.denied_calls)) } span.l { "denied" } }
                div.kpi { span.n { (num(r.patients)) } span.l { "patients" } }
                div.kpi { span.n { (num(r.grants)) } span.l { "token grants" } }
            }
            p.muted {
                "Last call " (r.last_call.as_deref().map(when_str).unwrap_or_else(|| "never".into()))
                "; last grant " (r.last_grant.as_deref().map(when_str).unwrap_or_else(|| "never".into())) "."
                @if r.too_new_to_judge { " " span.badge { "too new to judge" } " registered after the window began: unused scopes are not judged." }
                @if r.stale { " " span.badge.stale { "stale" } }
                @if r.offline_without_refresh { " Holds offline_access and never refreshed." }
                @if !r.requested_known { " No source records what this app requests: “requested” is unknown." }
            }
            table.matrix {
                thead { tr {
                    th { "Scope" } th { "Class" } th { "Approved" } th { "Requested" } th { "Granted" }
                    th.num { "Calls" } th.num { "Patients" } th { "Last used (UTC)" } th { "Types used" }
                } }
                tbody {
                    @for s in &r.scopes {
                        tr {
                            td { code { (s.scope) } }
                            td { (class_badge(s.class)) }
                            td { (yes(s.approved)) }
                            td { (s.requested.map(yes).unwrap_or("unknown")) }
                            td { (yes(s.granted)) }
                            td.num { (num(s.calls)) }
                            td.num { (num(s.patients)) }
                            td.nowrap { (s.last_used.as_deref().map(when_str).unwrap_or_default()) }
                            td { (s.types_used.join(", ")) @if !s.letters_used.is_empty() { " (" (s.letters_used) ")" } }
                        }
                    }
                }
            }
            div.card.suggestion {
                h3 { "Least-privilege suggestion" }
                @if r.too_new_to_judge {
                    p.muted { "Not judged: the app is younger than the window." }
                }
                div.copyable {
                    code.scopes id={ "suggest-" (seg(&r.tenant)) } { (suggestion) }
                    button.secondary type="button" data-copy={ "suggest-" (seg(&r.tenant)) } { "Copy" }
                }
                @if !r.suggestion.remove_from_approved.is_empty() {
                    p { "Remove from the registry's approval: " code { (r.suggestion.remove_from_approved.join(" ")) } }
                }
                @if !r.suggestion.add_to_approved.is_empty() {
                    p { "Used but not approved: " code { (r.suggestion.add_to_approved.join(" ")) } }
                }
                @if !r.suggestion.remove_from_granted.is_empty() {
                    p { "Granted but not needed: " code { (r.suggestion.remove_from_granted.join(" ")) } }
                }
            }
            @if !r.versions.is_empty() {
                h3 { "Drift by version" }
                table.versions {
                    thead { tr { th { "Version" } th { "Approved" } th.num { "Calls" } th { "Requested" } th { "New since the previous version" } } }
                    tbody {
                        @for v in &r.versions {
                            tr {
                                td { code { (v.version) } }
                                td { (v.approved_version.map(yes).unwrap_or("any")) }
                                td.num { (num(v.calls)) }
                                td { code { (v.requested.join(" ")) } }
                                td { @if v.new_scopes.is_empty() { span.muted { "none" } } @else { code.new-scopes { (v.new_scopes.join(" ")) } } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The app x tenant rows `user` may see that `keep` picks; a 404 when there
/// are none, so an unknown app or tenant and one not theirs look alike.
fn visible_rows<'a>(
    snap: &'a Snapshot,
    user: &'a CurrentUser,
    keep: impl Fn(&AppTenant) -> bool,
) -> Result<Vec<&'a AppTenant>, AppError> {
    let rows: Vec<&AppTenant> = snap.visible_apps(user).filter(|r| keep(r)).collect();
    if rows.is_empty() {
        return Err(AppError::NotFound);
    }
    Ok(rows)
}

/// `GET /apps/{client_id}`: 404 unless the user sees some tenant of it.
async fn app_page(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(client_id): Path<String>,
) -> Result<Response, AppError> {
    user.require(Permission::ViewData)?;
    let snap = state.insights.snapshot().await?;
    let rows = visible_rows(&snap, &user, |r| r.client_id == client_id)?;
    let alerts: Vec<Alert> = visible_alerts(&state, &user)
        .await?
        .into_iter()
        .filter(|a| a.group.get("client_id") == Some(&client_id))
        .collect();
    let reg = snap.registry.app(&client_id);
    let title = format!(
        "App: {}",
        rows.iter()
            .find_map(|r| r.name.clone())
            .unwrap_or_else(|| client_id.clone())
    );
    let chart_rows: Vec<(&str, &str, u64)> = snap
        .visible_daily(&user)
        .filter(|d| d.stream == "access" && d.client_id.as_deref() == Some(client_id.as_str()))
        .map(|d| {
            (
                d.tenant.as_deref().unwrap_or("(no tenant)"),
                d.date.as_str(),
                d.events,
            )
        })
        .collect();
    let body = html! {
        p { a href="/apps" { "← All apps" } " · client id " code #client-id { (client_id) } }
        (window_note(&snap))
        (registry_facts(reg))
        h2 { "Calls per day, by tenant" }
        (daily_chart(chart_rows, &snap, "FHIR calls"))
        p.muted.legend {
            "Classes: "
            @for c in CLASSES { (class_badge(c)) " " }
        }
        @for r in &rows { (matrix_section(r)) }
        @if user.can(Permission::ViewAlerts) {
            h2 { "Alerts" }
            @if alerts.is_empty() {
                p.muted #no-app-alerts { "No alerts for this app." }
            } @else {
                table #app-alerts {
                    thead { tr { th { "Severity" } th { "Rule" } th { "Tenant" } th { "Last seen" } th { "Status" } } }
                    tbody {
                        @for a in &alerts {
                            tr {
                                td { (severity_badge(a.severity)) }
                                td { a href=(alert_href(&a.id)) { (a.title) } }
                                td { (a.group.get("tenant").map(String::as_str).unwrap_or("")) }
                                td.nowrap { (when(a.last_seen)) }
                                td { (a.status.as_str().replace('_', " ")) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(Html(page(&title, &user, body).into_string()).into_response())
}

/// `GET /api/apps/{client_id}`: the registry entry and the matrix rows of
/// the tenants the user sees.
async fn api_app(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(client_id): Path<String>,
) -> Result<Response, AppError> {
    user.require(Permission::ViewData)?;
    let snap = state.insights.snapshot().await?;
    let rows = visible_rows(&snap, &user, |r| r.client_id == client_id)?;
    let registry = snap
        .registry
        .app(&client_id)
        .map(scopewatch_analytics::report::RegistryEntry::from_app);
    Ok(Json(serde_json::json!({
        "from": snap.from.to_string(),
        "to": snap.to.to_string(),
        "client_id": client_id,
        "registry": registry,
        "tenants": rows,
    }))
    .into_response())
}

// ---------------------------------------------------------------------------
// Tenants
// ---------------------------------------------------------------------------

#[derive(Debug, Serialize)]
struct TenantRow {
    tenant: String,
    apps: usize,
    calls: u64,
    denied_calls: u64,
    /// Denied / all calls, percent (one decimal).
    denied_rate_percent: f64,
    unused_scopes: usize,
    unapproved_scopes: usize,
    high_band_apps: usize,
    stale_apps: usize,
}

fn tenant_rows(snap: &Snapshot, user: &CurrentUser) -> Vec<TenantRow> {
    let mut by: BTreeMap<&str, Vec<&AppTenant>> = BTreeMap::new();
    for r in snap.visible_apps(user) {
        by.entry(&r.tenant).or_default().push(r);
    }
    by.into_iter()
        .map(|(tenant, rows)| {
            let calls: u64 = rows.iter().map(|r| r.calls).sum();
            let denied: u64 = rows.iter().map(|r| r.denied_calls).sum();
            let all = calls + denied;
            let count = |c: ScopeClass| -> usize {
                rows.iter()
                    .map(|r| r.scopes.iter().filter(|s| s.class == c).count())
                    .sum()
            };
            TenantRow {
                tenant: tenant.to_string(),
                apps: rows.len(),
                calls,
                denied_calls: denied,
                denied_rate_percent: if all == 0 {
                    0.0
                } else {
                    (denied as f64 * 1000.0 / all as f64).round() / 10.0
                },
                unused_scopes: count(ScopeClass::Unused),
                unapproved_scopes: count(ScopeClass::Unapproved),
                high_band_apps: rows.iter().filter(|r| r.creep.band == "high").count(),
                stale_apps: rows.iter().filter(|r| r.stale).count(),
            }
        })
        .collect()
}

/// `GET /tenants`
async fn tenants_page(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Response, AppError> {
    user.require(Permission::ViewData)?;
    let snap = state.insights.snapshot().await?;
    let rows = tenant_rows(&snap, &user);
    let body = html! {
        (window_note(&snap))
        @if rows.is_empty() {
            p #no-tenants { "No tenant to show." }
        } @else {
            table #tenants {
                thead { tr {
                    th { "Tenant" } th.num { "Apps" } th.num { "Calls" } th.num { "Denied" }
                    th.num { "Denied rate" } th.num { "Unused scopes" } th.num { "Unapproved scopes" }
                    th.num { "High-band apps" } th.num { "Stale apps" }
                } }
                tbody {
                    @for t in &rows {
                        tr {
                            td { a href=(tenant_href(&t.tenant)) { (t.tenant) } }
                            td.num { (t.apps) }
                            td.num { (num(t.calls)) }
                            td.num { (num(t.denied_calls)) }
                            td.num { (format!("{:.1} %", t.denied_rate_percent)) }
                            td.num { (t.unused_scopes) }
                            td.num { (t.unapproved_scopes) }
                            td.num { (t.high_band_apps) }
                            td.num { (t.stale_apps) }
                        }
                    }
                }
            }
            p.muted { "Denied rate: calls refused by the gateway or FHIR server out of all calls of the tenant's apps in the window." }
        }
    };
    Ok(Html(page("Tenants", &user, body).into_string()).into_response())
}

/// `GET /tenants/{tenant}`: the tenant's apps with their denied-call
/// rates and its calls per day. 404 for a tenant the user may not see.
async fn tenant_page(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(tenant): Path<String>,
    Query(mut filters): Query<AppFilters>,
) -> Result<Response, AppError> {
    user.require(Permission::ViewData)?;
    let snap = state.insights.snapshot().await?;
    filters.tenant = tenant.clone();
    let rows = visible_rows(&snap, &user, |r| r.tenant == tenant)?;
    let mut apps = summarise(rows.iter().copied(), &snap.registry);
    filters.sort(&mut apps);
    let chart_rows: Vec<(&str, &str, u64)> = snap
        .visible_daily(&user)
        .filter(|d| d.stream == "access" && d.tenant.as_deref() == Some(tenant.as_str()))
        .flat_map(|d| {
            [
                (
                    "allowed FHIR calls",
                    d.date.as_str(),
                    d.events.saturating_sub(d.denied),
                ),
                ("denied FHIR calls", d.date.as_str(), d.denied),
            ]
        })
        .collect();
    let body = html! {
        p { a href="/tenants" { "← All tenants" } }
        (window_note(&snap))
        h2 { "Calls per day" }
        (daily_chart(chart_rows, &snap, "FHIR calls"))
        h2 { "Apps" }
        table #tenant-apps {
            thead { tr { th { "App" } th.num { "Score" } th.num { "Calls" } th.num { "Denied" } th.num { "Denied rate" } th.num { "Unused scopes" } th { "Last call (UTC)" } } }
            tbody {
                @for a in &apps {
                    @let all = a.calls + a.denied_calls;
                    tr {
                        td { a href=(app_href(&a.client_id)) { (a.name.as_deref().unwrap_or(&a.client_id)) } br; code { (a.client_id) } }
                        td.num { (a.score) " " (band_badge(a.band)) }
                        td.num { (num(a.calls)) }
                        td.num { (num(a.denied_calls)) }
                        td.num { (if all == 0 { "–".to_string() } else { format!("{:.1} %", a.denied_calls as f64 * 100.0 / all as f64) }) }
                        td.num { (a.unused_scopes) }
                        td.nowrap { (a.last_call.as_deref().map(when_str).unwrap_or_else(|| "never".into())) }
                    }
                }
            }
        }
        p.muted { a href={ "/apps?tenant=" (qv(&tenant)) } { "Filter and sort these apps" } " on the apps page." }
    };
    Ok(Html(page(&format!("Tenant {tenant}"), &user, body).into_string()).into_response())
}

/// `GET /api/tenants`
async fn api_tenants(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Response, AppError> {
    user.require(Permission::ViewData)?;
    let snap = state.insights.snapshot().await?;
    Ok(Json(serde_json::json!({
        "from": snap.from.to_string(),
        "to": snap.to.to_string(),
        "tenants": tenant_rows(&snap, &user),
    }))
    .into_response())
}
