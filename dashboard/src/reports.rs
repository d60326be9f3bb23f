//! Reports: the quarterly scope report of `scopewatch report`, made on
//! demand and downloaded as HTML, CSV or JSON.
//!
//! A user limited to some tenants gets reports of one of their tenants at a
//! time (the report's tenant filter is a bound query parameter); only a
//! user without a tenant limit may have a report of every tenant. A
//! product owner's report is limited to an app they own.
//!
//! Routes (ViewReports): `GET /reports` (the form), `GET /reports/download`
//! and `GET /api/reports` (query: `from`, `to`, `tenant`, `app`, `format`).

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::html;
use scopewatch_analytics::report;
use serde::Deserialize;
use time::{Date, Month};

use crate::auth::{CurrentUser, Permission};
use crate::http::{attachment, parse_day};
use crate::layout::page;
use crate::{AppError, AppState};

/// The widest report window accepted (a year and a bit): longer ones are
/// for `scopewatch report` on the command line.
const MAX_REPORT_DAYS: i64 = 400;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/reports", get(reports_page))
        .route("/reports/download", get(download))
        .route("/api/reports", get(download))
}

/// The report form's fields. Empty = default.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct ReportForm {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    app: String,
    /// html, csv or json
    #[serde(default)]
    format: String,
}

/// The calendar quarter holding `day`: (first day, last day).
pub fn quarter_of(day: Date) -> (Date, Date) {
    let q = (u8::from(day.month()) - 1) / 3;
    let first = Month::try_from(q * 3 + 1).expect("1..=10 is a month");
    let from = Date::from_calendar_date(day.year(), first, 1).expect("a valid day");
    let last_month = Month::try_from(q * 3 + 3).expect("3..=12 is a month");
    let to = Date::from_calendar_date(day.year(), last_month, last_month.length(day.year()))
        .expect("a valid day");
    (from, to)
}

/// A checked request: dates in order, a tenant and app the user may have.
struct Checked {
    from: Date,
    to: Date,
    tenant: Option<String>,
    app: Option<String>,
    format: &'static str,
}

fn check(user: &CurrentUser, form: &ReportForm) -> Result<Checked, AppError> {
    let from = parse_day("from", &form.from).map_err(AppError::BadRequest)?;
    let to = parse_day("to", &form.to).map_err(AppError::BadRequest)?;
    if from > to {
        return Err(AppError::BadRequest(format!(
            "The dates are inverted: from {from} is after to {to}."
        )));
    }
    if (to - from).whole_days() >= MAX_REPORT_DAYS {
        return Err(AppError::BadRequest(format!(
            "At most {MAX_REPORT_DAYS} days per report here; use `scopewatch report` for longer ones."
        )));
    }
    let format = match form.format.as_str() {
        "html" | "" => "html",
        "csv" => "csv",
        "json" => "json",
        _ => {
            return Err(AppError::BadRequest(
                "format: choose html, csv or json.".into(),
            ))
        }
    };
    let tenant = Some(form.tenant.trim().to_string()).filter(|t| !t.is_empty());
    match (&tenant, user.tenant_filter()) {
        // Another tenant's report does not exist for this user.
        (Some(t), _) if !user.sees_tenant(t) => return Err(AppError::NotFound),
        (None, Some(_)) => {
            return Err(AppError::BadRequest(
                "Choose one of your tenants: your account sees only some tenants.".into(),
            ))
        }
        _ => {}
    }
    let app = Some(form.app.trim().to_string()).filter(|a| !a.is_empty());
    match &app {
        Some(a) if !user.sees_app(a) => return Err(AppError::NotFound),
        None if !user.sees_app("") => {
            return Err(AppError::BadRequest(
                "Choose one of your apps: your account sees only the apps it owns.".into(),
            ))
        }
        _ => {}
    }
    Ok(Checked {
        from,
        to,
        tenant,
        app,
        format,
    })
}

/// `GET /reports`
async fn reports_page(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Response, AppError> {
    user.require(Permission::ViewReports)?;
    let snap = state.insights.snapshot().await?;
    let (q_from, q_to) = quarter_of(snap.to);
    let (p_from, p_to) = quarter_of(q_from.previous_day().unwrap_or(q_from));
    let tenants: Vec<String> = {
        let mut t: Vec<String> = snap.visible_apps(&user).map(|a| a.tenant.clone()).collect();
        t.sort();
        t.dedup();
        t
    };
    let apps: Vec<(String, String)> = {
        let mut a: Vec<(String, String)> = snap
            .visible_apps(&user)
            .map(|a| {
                (
                    a.client_id.clone(),
                    a.name.clone().unwrap_or_else(|| a.client_id.clone()),
                )
            })
            .collect();
        a.sort();
        a.dedup();
        a
    };
    let all_tenants = user.tenant_filter().is_none();
    let body = html! {
        p {
            "The quarterly scope report: for every app and tenant, the scopes approved, requested, granted and used, "
            "their classification, least-privilege suggestions, stale apps and drift by version, with the method. "
            "HTML is a printable page with its charts; CSV has one row per app × tenant × scope; JSON has the same data for scripts."
        }
        form.report #report-form method="get" action="/reports/download" {
            div.field {
                label for="r-from" { "From (first day, UTC)" }
                input #r-from type="date" name="from" value=(q_from) required;
            }
            div.field {
                label for="r-to" { "To (last day, UTC)" }
                input #r-to type="date" name="to" value=(q_to) required;
            }
            div.field {
                label for="r-tenant" { "Tenant" }
                select #r-tenant name="tenant" {
                    @if all_tenants { option value="" { "every tenant" } }
                    @for t in &tenants { option value=(t) { (t) } }
                }
            }
            div.field {
                label for="r-app" { "App" }
                select #r-app name="app" {
                    @if user.sees_app("") { option value="" { "every app" } }
                    @for (id, name) in &apps { option value=(id) { (name) " (" (id) ")" } }
                }
            }
            div.field {
                label for="r-format" { "Format" }
                select #r-format name="format" {
                    option value="html" { "HTML (printable)" }
                    option value="csv" { "CSV" }
                    option value="json" { "JSON" }
                }
            }
            div.field.actions { button #download type="submit" { "Download" } }
        }
        p.muted {
            "Quick picks: "
            a #this-quarter href={ "/reports/download?from=" (q_from) "&to=" (q_to) "&format=html" } { "this quarter (HTML)" }
            " · "
            a href={ "/reports/download?from=" (p_from) "&to=" (p_to) "&format=html" } { "previous quarter (HTML)" }
            @if !all_tenants { " — choose your tenant in the form for these." }
        }
    };
    Ok(Html(page("Reports", &user, body).into_string()).into_response())
}

/// `GET /reports/download` and `GET /api/reports`: the report as a file.
async fn download(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(form): Query<ReportForm>,
) -> Result<Response, AppError> {
    user.require(Permission::ViewReports)?;
    let c = check(&user, &form)?;
    let made = state
        .insights
        .report(c.from, c.to, c.tenant.clone(), c.app.clone())
        .await;
    let target = format!(
        "report/{}..{}/{}/{}",
        c.from,
        c.to,
        c.tenant.as_deref().unwrap_or("*"),
        c.app.as_deref().unwrap_or("*")
    );
    let made = state
        .audited(&user, "report_download", &target, made)
        .await?;
    let (bytes, content_type) = match c.format {
        "csv" => {
            let mut out = Vec::new();
            report::write_csv(&made, &mut out)
                .map_err(|e| AppError::Internal(crate::DashboardError::Task(e.to_string())))?;
            (out, "text/csv; charset=utf-8")
        }
        "json" => (
            report::to_json(&made)
                .map_err(|e| AppError::Internal(crate::DashboardError::Task(e.to_string())))?
                .into_bytes(),
            "application/json",
        ),
        _ => (
            report::to_html(&made)
                .map_err(|e| AppError::Internal(crate::DashboardError::Task(e.to_string())))?
                .into_bytes(),
            "text/html; charset=utf-8",
        ),
    };
    // The file name carries only dates and the fixed extension: tenant and
    // app names came from logs and stay out of headers.
    let name = format!("scopewatch-report-{}-{}.{}", c.from, c.to, c.format);
    Ok(attachment(content_type, &name, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn quarters() {
        assert_eq!(
            quarter_of(date!(2026 - 11 - 20)),
            (date!(2026 - 10 - 01), date!(2026 - 12 - 31))
        );
        assert_eq!(
            quarter_of(date!(2026 - 01 - 01)),
            (date!(2026 - 01 - 01), date!(2026 - 03 - 31))
        );
        assert_eq!(
            quarter_of(date!(2024 - 05 - 31)),
            (date!(2024 - 04 - 01), date!(2024 - 06 - 30))
        );
    }
}
