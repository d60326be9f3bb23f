//! The data pages. Add a page here: a handler taking `CurrentUser` (check
//! a `Permission`, filter by `sees_tenant` / `tenant_filter` / `sees_app`),
//! rendering with `layout::page`, and a `.route(...)` in [`routes`]. The
//! auth, CSRF, header and logging middleware apply to it automatically.

use axum::response::Html;
use axum::routing::get;
use axum::Router;
use maud::html;

use crate::auth::{CurrentUser, Permission};
use crate::layout::page;
use crate::AppState;

/// The data pages' routes, merged into [`crate::router`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(overview))
        .merge(crate::alerts::routes())
}

/// Placeholder overview until the analytics pages arrive.
async fn overview(user: CurrentUser) -> Html<String> {
    let body = html! {
        p #welcome { "Welcome, " strong { (user.username) } "." }
        p {
            "You see "
            @match user.tenant_filter() {
                None => { "every tenant" }
                Some(t) => { "the tenants " strong { (t.join(", ")) } " only" }
            }
            ", with the roles " (user.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")) "."
        }
        div.card {
            h2 { "Coming next" }
            ul {
                li { "Overview: events per day, alerts by severity, scope-creep bands, stale apps, ingest lag." }
                li { "Apps and app detail: the scope matrix, least-privilege suggestions, drift by version." }
                li { "Tenants: the same per tenant, with denied-call rates." }
                @if user.can(Permission::ViewAlerts) { li { "Alerts and incidents: triage, evidence, timelines." } }
                @if user.can(Permission::ViewRecertification) { li { "Recertification campaigns and their exports." } }
                @if user.can(Permission::ViewReports) { li { "Quarterly reports in HTML, CSV and JSON." } }
            }
        }
    };
    Html(page("Overview", &user, body).into_string())
}
