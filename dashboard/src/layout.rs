//! The page frame every dashboard page uses: title, nav bar, logout form,
//! the embedded stylesheet. maud escapes every interpolated value.

use maud::{html, Markup, DOCTYPE};

use crate::auth::{CurrentUser, Permission};

/// The stylesheet, embedded in the binary and served at [`CSS_PATH`].
pub const CSS: &str = include_str!("../assets/style.css");
pub const CSS_PATH: &str = "/static/style.css";

/// Nav entries: (label, href, permission needed to see the link).
const NAV: &[(&str, &str, Permission)] = &[
    ("Overview", "/", Permission::ViewData),
    ("Apps", "/apps", Permission::ViewData),
    ("Tenants", "/tenants", Permission::ViewData),
    ("Alerts", "/alerts", Permission::ViewAlerts),
    ("Incidents", "/incidents", Permission::ViewIncidents),
    (
        "Recertification",
        "/recert",
        Permission::ViewRecertification,
    ),
    ("Reports", "/reports", Permission::ViewReports),
    ("Admin", "/admin", Permission::ManageUsers),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · scopewatch" }
            link rel="stylesheet" href=(CSS_PATH);
        }
    }
}

/// A hidden input carrying the session's CSRF token; put it in every form
/// that POSTs (the middleware refuses a POST without it).
pub fn csrf_field(user: &CurrentUser) -> Markup {
    html! { input type="hidden" name="csrf" value=(user.csrf.as_deref().unwrap_or("")); }
}

/// A full page for a logged-in user: nav bar (links the user's roles can
/// use), who is logged in, a logout button, then `body` under an `h1`.
pub fn page(title: &str, user: &CurrentUser, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top {
                    a.brand href="/" { "scopewatch" }
                    nav aria-label="Main" {
                        @for (label, href, perm) in NAV {
                            @if user.can(*perm) { a href=(href) { (label) } }
                        }
                    }
                    div.who {
                        span { (user.username) }
                        form.inline method="post" action="/logout" {
                            (csrf_field(user))
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A page without nav, for login and errors before anyone is known.
pub fn bare_page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top { span.brand { "scopewatch" } }
                main { (body) }
            }
        }
    }
}
