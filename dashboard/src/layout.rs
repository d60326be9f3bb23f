//! The page frame every dashboard page uses: title, nav bar, logout form,
//! the embedded stylesheet. maud escapes every interpolated value.

use maud::{html, Markup, DOCTYPE};
use scopewatch_model::events::Timestamp;

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

/// How much of a time [`when_to`] shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// `2026-11-20 13:04`
    Minute,
    /// `2026-11-20 13:04:05`
    Second,
    /// All the time holds: `2026-11-20 13:04:05.123456` for events (µs).
    Exact,
}

/// A UTC time in RFC 3339 as tables show it, `2026-11-20 13:04:05` to the
/// `precision` asked for; the API keeps RFC 3339.
pub fn when_to(t: &str, precision: Precision) -> String {
    let t = t.trim_end_matches('Z');
    let t = t.split('+').next().unwrap_or(t).replacen('T', " ", 1);
    match precision {
        Precision::Minute => t.chars().take(16).collect(),
        Precision::Second => t.split('.').next().unwrap_or(&t).to_string(),
        Precision::Exact => t,
    }
}

/// [`when_to`] to the second, the tables' usual precision.
pub fn when_str(t: &str) -> String {
    when_to(t, Precision::Second)
}

/// [`when_str`] of a [`Timestamp`].
pub fn when(t: Timestamp) -> String {
    when_str(&t.to_string())
}

/// A filter's `<select>`: "any" (the empty value) and then `options`
/// (value, text), with `current` selected.
pub fn select(name: &str, label: &str, current: &str, options: &[(String, String)]) -> Markup {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("al-0123abcd"), "al-0123abcd");
        assert_eq!(seg("a/b?c d<"), "a%2Fb%3Fc%20d%3C");
    }

    #[test]
    fn times_read_as_utc_to_the_precision_asked() {
        let t = "2026-03-04T05:06:07.891234Z";
        assert_eq!(when_to(t, Precision::Minute), "2026-03-04 05:06");
        assert_eq!(when_to(t, Precision::Second), "2026-03-04 05:06:07");
        assert_eq!(when_to(t, Precision::Exact), "2026-03-04 05:06:07.891234");
        assert_eq!(when_str("2026-03-04T05:06:07+00:00"), "2026-03-04 05:06:07");
        let t = Timestamp::parse_rfc3339("2026-03-04T05:06:07.891Z").unwrap();
        assert_eq!(when(t), "2026-03-04 05:06:07");
    }
}
