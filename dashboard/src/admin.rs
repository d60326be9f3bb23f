//! Admin pages: users (API tokens, disabling) and the audit trail.
//! Adding and resetting users is on the command line (`scopewatch user`),
//! where the one-time password is printed to the admin who ran it.

use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;

use crate::audit::{to_csv, Outcome};
use crate::auth::{CurrentUser, Permission};
use crate::http::attachment;
use crate::layout::{csrf_field, page};
use crate::{AppError, AppState};

/// Audit entries shown on the page, newest first (the CSV has them all).
const AUDIT_PAGE_ROWS: usize = 1000;

pub async fn users_page(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Response, AppError> {
    user.require(Permission::ManageUsers)?;
    let users = state.users.list();
    let body = html! {
        p {
            a href="/admin/audit" { "Audit trail" } " · "
            a href="/admin/audit.csv" { "Audit trail as CSV" } " · "
            a href="/metrics" { "Metrics" }
        }
        h2 { "Users" }
        p.muted {
            "Add users and reset passwords with "
            code { "scopewatch user add NAME --role ROLE [--tenant T]" } " and "
            code { "scopewatch user reset NAME" } "."
        }
        table {
            thead { tr {
                th { "User" } th { "Roles" } th { "Tenants" } th { "Owned apps" }
                th { "Status" } th { "API tokens" } th { "Actions" }
            } }
            tbody {
                @for u in &users {
                    tr {
                        td.mono { (u.username) }
                        td { (u.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")) }
                        td { @if u.tenants.is_empty() { span.muted { "all" } } @else { (u.tenants.join(", ")) } }
                        td { (u.owned_apps.join(", ")) }
                        td {
                            @if u.disabled { span.error { "disabled" } }
                            @else if u.must_change_password { "must change password" }
                            @else { "active" }
                        }
                        td {
                            @for t in &u.api_tokens {
                                div.mono { (t.id) " " (t.label) " " span.muted { (t.created) } }
                            }
                        }
                        td {
                            @if !u.disabled {
                                form.inline method="post" action={ "/admin/users/" (u.username) "/tokens" } {
                                    (csrf_field(&user))
                                    input type="text" name="label" placeholder="token label" aria-label="token label";
                                    button.secondary type="submit" { "Create API token" }
                                }
                                " "
                                @if u.username != user.username {
                                    form.inline method="post" action={ "/admin/users/" (u.username) "/disable" } {
                                        (csrf_field(&user))
                                        button.secondary type="submit" { "Disable" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(Html(page("Admin", &user, body).into_string()).into_response())
}

#[derive(Debug, Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    label: String,
}

pub async fn create_token(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
    Form(form): Form<TokenForm>,
) -> Result<Response, AppError> {
    user.require(Permission::ManageUsers)?;
    let (st, n) = (state.clone(), name.clone());
    let created = tokio::task::spawn_blocking(move || st.users.create_token(&n, &form.label))
        .await
        .map_err(AppError::task)?;
    let (id, token) = match created {
        Ok(t) => t,
        Err(e) => {
            state
                .audit(
                    &user.username,
                    "token_create",
                    &format!("user/{name}"),
                    Outcome::Failure,
                    &user.ip,
                )
                .await?;
            return Err(e.into());
        }
    };
    state
        .audit(
            &user.username,
            "token_create",
            &format!("user/{name} token/{id}"),
            Outcome::Success,
            &user.ip,
        )
        .await?;
    let body = html! {
        p { "API token " code { (id) } " for " strong { (name) } ". It is shown this once; copy it now." }
        p.secret #token { (token) }
        p { "Use it as " code { "Authorization: Bearer <token>" } " on " code { "/api/…" } "." }
        p { a href="/admin" { "Back to users" } }
    };
    Ok(Html(page("API token created", &user, body).into_string()).into_response())
}

pub async fn disable_user(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
) -> Result<Response, AppError> {
    user.require(Permission::ManageUsers)?;
    let (st, n) = (state.clone(), name.clone());
    let result = tokio::task::spawn_blocking(move || st.users.disable(&n))
        .await
        .map_err(AppError::task)?;
    state
        .audited(&user, "user_disable", &format!("user/{name}"), result)
        .await?;
    state.sessions.remove_user(&name, None);
    Ok(Redirect::to("/admin").into_response())
}

pub async fn audit_page(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Response, AppError> {
    user.require(Permission::ViewAudit)?;
    let st = state.clone();
    let (entries, bad) = tokio::task::spawn_blocking(move || st.audit.read_all())
        .await
        .map_err(AppError::task)??;
    let body = html! {
        p {
            (entries.len()) " entries, newest first"
            @if entries.len() > AUDIT_PAGE_ROWS { " (the newest " (AUDIT_PAGE_ROWS) " shown)" }
            ". " a href="/admin/audit.csv" { "Download all as CSV" }
        }
        @if bad > 0 { p.error { (bad) " lines of the trail could not be read." } }
        table {
            thead { tr { th { "Time (UTC)" } th { "User" } th { "Action" } th { "Target" } th { "Outcome" } th { "Client" } } }
            tbody {
                @for e in entries.iter().rev().take(AUDIT_PAGE_ROWS) {
                    tr {
                        td.mono { (e.time) } td { (e.user) } td { (e.action) }
                        td { (e.target) } td { (e.outcome.as_str()) } td.mono { (e.ip) }
                    }
                }
            }
        }
    };
    Ok(Html(page("Audit trail", &user, body).into_string()).into_response())
}

pub async fn audit_csv(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Response, AppError> {
    user.require(Permission::ViewAudit)?;
    // The export is itself an action worth recording; recorded first so it
    // appears in what is downloaded.
    state
        .audit(
            &user.username,
            "audit_export",
            "audit.csv",
            Outcome::Success,
            &user.ip,
        )
        .await?;
    let st = state.clone();
    let (entries, _) = tokio::task::spawn_blocking(move || st.audit.read_all())
        .await
        .map_err(AppError::task)??;
    Ok(attachment(
        "text/csv; charset=utf-8",
        "scopewatch-audit.csv",
        to_csv(&entries),
    ))
}
