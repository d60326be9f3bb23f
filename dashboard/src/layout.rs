//! The page frame every dashboard page uses: title, nav bar, logout form,
//! the embedded stylesheet. maud escapes every interpolated value.

use maud::{html, Markup, DOCTYPE};

use crate::auth::{CurrentUser, Permission};

/// The stylesheet, embedded in the binary and served at [`CSS_PATH`].
pub const CSS: &str = include_str!("../assets/style.css");
pub const CSS_PATH: &str = "/static/style.css";
/// The one script: progressive enhancement only (copy buttons); every page
/// works without it. Served from our origin, as the CSP requires.
pub const JS: &str = include_str!("../assets/app.js");
pub const JS_PATH: &str = "/static/app.js";

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
            script src=(JS_PATH) defer {}
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

/// A path segment with everything but unreserved characters
/// percent-encoded: links built from log values (client ids, tenants)
/// must not break or turn into other paths.
pub fn seg(s: &str) -> String {
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

/// A query-string value, percent-encoded like [`seg`].
pub fn qv(s: &str) -> String {
    seg(s)
}

/// `12 345`: thousands apart, for tables.
pub fn num(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

/// `2026-11-20 13:04:05` from an RFC 3339 time (UTC), for tables; the API
/// keeps RFC 3339.
pub fn when_str(t: &str) -> String {
    let t = t.trim_end_matches('Z');
    let t = t.split('.').next().unwrap_or(t);
    let t = t.split('+').next().unwrap_or(t);
    t.replacen('T', " ", 1)
}
