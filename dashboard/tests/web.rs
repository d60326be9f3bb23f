//! The dashboard over real HTTP on loopback: login, sessions, CSRF, rate
//! limiting, headers, API tokens, the audit trail and what lands on disk.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use scopewatch_dashboard::Role;

fn assert_security_headers(r: &Resp) {
    let csp = r.header("content-security-policy").expect("CSP");
    for part in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(part), "CSP {csp:?} lacks {part}");
    }
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("referrer-policy"), Some("same-origin"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
}

#[test]
fn public_routes_headers_and_anonymous_requests() {
    let s = Server::start();
    let h = get(&s.url("/healthz"), None);
    assert_eq!((h.status, h.body.as_str()), (200, "ok"));
    assert_security_headers(&h);

    let css = get(&s.url("/static/style.css"), None);
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
    assert!(css.body.contains("font-family"));
    assert_security_headers(&css);

    // Pages redirect to the login form; the API answers 401 in JSON.
    for path in ["/", "/admin", "/admin/audit", "/apps", "/no-such-page"] {
        let r = get(&s.url(path), None);
        assert_eq!(r.status, 303, "{path}");
        assert_eq!(r.location(), Some("/login"), "{path}");
        assert_security_headers(&r);
    }
    for path in ["/api/me", "/metrics"] {
        let r = get(&s.url(path), None);
        assert_eq!(r.status, 401, "{path}");
        assert!(r.body.contains("authentication required"));
        assert_security_headers(&r);
    }
    // A made-up session cookie is no session.
    let r = get(
        &s.url("/"),
        Some(&format!("sw_session={}", "ab".repeat(32))),
    );
    assert_eq!(r.status, 303);

    let login = get(&s.url("/login"), None);
    assert_eq!(login.status, 200);
    assert_security_headers(&login);
    // No inline script or style anywhere: the CSP would block it.
    common::assert_no_inline_code(&login.body);
    assert!(login.body.contains("href=\"/static/style.css\""));
}

#[test]
fn first_run_admin_logs_in_changes_password_and_sees_the_overview() {
    let s = Server::start();
    let (resp, cookie) = login(&s, "admin", &s.admin_password);
    assert_eq!(resp.status, 303);
    assert_eq!(
        resp.location(),
        Some("/password"),
        "one-time password must be changed"
    );
    let set = resp
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("sw_session="))
        .unwrap()
        .to_string();
    let value = set
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("sw_session=");
    assert_eq!(value.len(), 64, "a 256-bit id in hex");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.split("; ").any(|a| a == attr), "{set} lacks {attr}");
    }
    assert!(
        !set.contains("Secure"),
        "no Secure on loopback with auto: {set}"
    );
    let cookie = cookie.unwrap();

    // Everything but the password page sends them back to it.
    let r = get(&s.url("/"), Some(&cookie));
    assert_eq!((r.status, r.location()), (303, Some("/password")));
    let r = get(&s.url("/api/me"), Some(&cookie));
    assert_eq!(r.status, 403);

    let page = get(&s.url("/password"), Some(&cookie));
    assert_eq!(page.status, 200);
    let csrf = csrf_of(&page.body);
    // Without the CSRF token the change is refused.
    let r = post_form(
        &s.url("/password"),
        Some(&cookie),
        &[("current", &s.admin_password), ("new", PW), ("confirm", PW)],
    );
    assert_eq!(r.status, 403);
    // Policy: too short.
    let r = post_form(
        &s.url("/password"),
        Some(&cookie),
        &[
            ("current", &s.admin_password),
            ("new", "short"),
            ("confirm", "short"),
            ("csrf", &csrf),
        ],
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("at least 12 characters"));
    let r = post_form(
        &s.url("/password"),
        Some(&cookie),
        &[
            ("current", &s.admin_password),
            ("new", PW),
            ("confirm", PW),
            ("csrf", &csrf),
        ],
    );
    assert_eq!((r.status, r.location()), (303, Some("/")));

    let home = get(&s.url("/"), Some(&cookie));
    assert_eq!(home.status, 200);
    assert!(home.body.contains("Welcome, <strong>admin</strong>"));
    for link in [
        "/apps",
        "/tenants",
        "/alerts",
        "/incidents",
        "/recert",
        "/reports",
        "/admin",
    ] {
        assert!(
            home.body.contains(&format!("href=\"{link}\"")),
            "nav lacks {link}"
        );
    }
    assert!(home.body.contains("action=\"/logout\""));
    assert_eq!(home.header("cache-control"), Some("no-store"));

    // The old password no longer works; the new one does, without detour.
    let (r, _) = login(&s, "admin", &s.admin_password);
    assert_eq!(r.status, 401);
    let (r, _) = login(&s, "admin", PW);
    assert_eq!((r.status, r.location()), (303, Some("/")));

    let actions: Vec<(String, String)> = s
        .audit_lines()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().into(),
                e["outcome"].as_str().unwrap().into(),
            )
        })
        .collect();
    for want in [
        ("user_create_initial_admin", "success"),
        ("login", "success"),
        ("password_change", "success"),
        ("login", "failure"),
    ] {
        assert!(
            actions
                .iter()
                .any(|(a, o)| (a.as_str(), o.as_str()) == want),
            "audit lacks {want:?}: {actions:?}"
        );
    }
}

#[test]
fn wrong_passwords_are_refused_and_then_rate_limited_per_user() {
    let s = Server::start();
    s.add_user("carol", &[Role::Viewer], &[], PW);
    for _ in 0..5 {
        let (r, cookie) = login(&s, "carol", "not the password");
        assert_eq!(r.status, 401);
        assert!(r.body.contains("Wrong username or password."));
        assert!(cookie.is_none());
    }
    // Now even the right password waits.
    let (r, cookie) = login(&s, "carol", PW);
    assert_eq!(r.status, 429);
    assert!(r.body.contains("Too many failed logins"), "{}", r.body);
    assert!(cookie.is_none());
    let audit = s.audit_lines();
    assert!(audit
        .iter()
        .any(|e| e["action"] == "login" && e["outcome"] == "denied"));
    // Every failed login was recorded with the client address.
    let failures: Vec<_> = audit
        .iter()
        .filter(|e| e["action"] == "login" && e["outcome"] == "failure")
        .collect();
    assert_eq!(failures.len(), 5);
    assert!(failures
        .iter()
        .all(|e| e["ip"] == "127.0.0.1" && e["target"] == "carol"));
}

#[test]
fn failures_spread_over_usernames_are_rate_limited_per_address() {
    let s = Server::start();
    s.add_user("dave", &[Role::Viewer], &[], PW);
    for i in 0..5 {
        let (r, _) = login(&s, &format!("nobody{i}"), "guess");
        assert_eq!(r.status, 401);
    }
    let (r, _) = login(&s, "dave", PW);
    assert_eq!(
        r.status, 429,
        "the address is blocked whatever the username"
    );
    // Unknown names are not written to the trail (they may be mistyped passwords).
    let text = std::fs::read_to_string(s.data_dir().join("dashboard/audit.jsonl")).unwrap();
    assert!(!text.contains("nobody"));
    assert!(text.contains("(unknown user)"));
}

#[test]
fn forms_without_the_csrf_token_are_refused() {
    let s = Server::start();
    s.add_user("erin", &[Role::Admin], &[], PW);
    // The login form itself: no pre-login cookie, or a mismatching one.
    let form = get(&s.url("/login"), None);
    let csrf = csrf_of(&form.body);
    let r = post_form(
        &s.url("/login"),
        None,
        &[("username", "erin"), ("password", PW), ("csrf", &csrf)],
    );
    assert_eq!(r.status, 403);
    let r = post_form(
        &s.url("/login"),
        Some(&format!("sw_login={}", "0".repeat(64))),
        &[("username", "erin"), ("password", PW), ("csrf", &csrf)],
    );
    assert_eq!(r.status, 403);

    let (_, cookie) = login(&s, "erin", PW);
    let cookie = cookie.unwrap();
    let home = get(&s.url("/"), Some(&cookie));
    let token = csrf_of(&home.body);
    for fields in [vec![], vec![("csrf", "0000")], vec![("csrf", "")]] {
        let r = post_form(&s.url("/logout"), Some(&cookie), &fields);
        assert_eq!(r.status, 403, "{fields:?}");
    }
    let r = post_form(
        &s.url("/admin/users/erin/tokens"),
        Some(&cookie),
        &[("label", "x")],
    );
    assert_eq!(r.status, 403);
    // Still logged in after the refused logout.
    assert_eq!(get(&s.url("/"), Some(&cookie)).status, 200);
    // The header works as well as the field.
    let r = collect_post_with_header(&s.url("/logout"), &cookie, &token);
    assert_eq!((r.status, r.location()), (303, Some("/login")));
    assert!(r
        .set_cookies()
        .iter()
        .any(|c| c.starts_with("sw_session=;") && c.contains("Max-Age=0")));
    // The session is over on the server, not only in the browser.
    let r = get(&s.url("/"), Some(&cookie));
    assert_eq!((r.status, r.location()), (303, Some("/login")));
    assert!(s
        .audit_lines()
        .iter()
        .any(|e| e["action"] == "logout" && e["user"] == "erin"));
}

fn collect_post_with_header(url: &str, cookie: &str, csrf: &str) -> Resp {
    let resp = agent()
        .post(url)
        .header("Cookie", cookie)
        .header("X-CSRF-Token", csrf)
        .send_empty()
        .unwrap();
    collect(resp)
}

#[test]
fn api_tokens_authenticate_on_the_api_only() {
    let s = Server::start();
    s.add_user("root2", &[Role::Admin], &[], PW);
    s.add_user(
        "alice",
        &[Role::Viewer],
        &["north", "<script>alert(1)</script>"],
        PW,
    );
    let (_, cookie) = login(&s, "root2", PW);
    let cookie = cookie.unwrap();
    let admin = get(&s.url("/admin"), Some(&cookie));
    assert_eq!(admin.status, 200);
    // A tenant named like markup is shown as text.
    assert!(admin.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!admin.body.contains("<script>alert(1)"));
    let csrf = csrf_of(&admin.body);
    let created = post_form(
        &s.url("/admin/users/alice/tokens"),
        Some(&cookie),
        &[("label", "ci"), ("csrf", &csrf)],
    );
    assert_eq!(created.status, 200, "{}", created.body);
    let at = created.body.find("swt_").expect("token shown once");
    let token: String = created.body[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    assert_eq!(token.len(), 4 + 64);

    let me = get_bearer(&s.url("/api/me"), &token);
    assert_eq!(me.status, 200, "{}", me.body);
    let v: serde_json::Value = serde_json::from_str(&me.body).unwrap();
    assert_eq!(v["username"], "alice");
    assert_eq!(v["roles"], serde_json::json!(["viewer"]));
    assert_eq!(v["auth"], "token");
    let mut tenants: Vec<String> = serde_json::from_value(v["tenants"].clone()).unwrap();
    tenants.sort();
    assert_eq!(tenants, ["<script>alert(1)</script>", "north"]);
    assert!(me
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));

    // Session users get the same endpoint; an unlimited admin has tenants null.
    let me = get(&s.url("/api/me"), Some(&cookie));
    let v: serde_json::Value = serde_json::from_str(&me.body).unwrap();
    assert_eq!(
        (
            v["username"].as_str(),
            v["tenants"].is_null(),
            v["auth"].as_str()
        ),
        (Some("root2"), true, Some("session"))
    );

    assert_eq!(get_bearer(&s.url("/api/me"), "swt_0000").status, 401);
    assert_eq!(get_bearer(&s.url("/api/me"), "garbage").status, 401);
    // Tokens do not open HTML pages.
    assert_eq!(get_bearer(&s.url("/"), &token).status, 400);
    // A viewer's token does not read metrics; an admin's does.
    assert_eq!(get_bearer(&s.url("/metrics"), &token).status, 403);
    let created = post_form(
        &s.url("/admin/users/root2/tokens"),
        Some(&cookie),
        &[("label", "prometheus"), ("csrf", &csrf)],
    );
    let at = created.body.find("swt_").unwrap();
    let admin_token: String = created.body[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let m = get_bearer(&s.url("/metrics"), &admin_token);
    assert_eq!(m.status, 200);
    assert!(
        m.body.contains("scopewatch_dashboard_requests_total"),
        "{}",
        m.body
    );

    // Only hashes are stored; the audit names the token id, not the token.
    let users = std::fs::read_to_string(s.data_dir().join("dashboard/users.json")).unwrap();
    assert!(!users.contains(&token) && !users.contains(&admin_token));
    assert!(s
        .audit_lines()
        .iter()
        .any(|e| e["action"] == "token_create" && e["user"] == "root2"));

    // Disabling the user kills the token.
    s.state.users.disable("alice").unwrap();
    assert_eq!(get_bearer(&s.url("/api/me"), &token).status, 401);
}

#[test]
fn roles_limit_pages_and_disabled_users_are_locked_out() {
    let s = Server::start();
    s.add_user("vic", &[Role::Viewer], &[], PW);
    s.add_user("boss", &[Role::Admin], &[], PW);
    let (r, vic) = login(&s, "vic", PW);
    assert_eq!(r.status, 303);
    let vic = vic.unwrap();
    let home = get(&s.url("/"), Some(&vic));
    assert_eq!(home.status, 200);
    assert!(
        !home.body.contains("href=\"/admin\""),
        "viewers get no admin link"
    );
    for path in ["/admin", "/admin/audit", "/admin/audit.csv", "/metrics"] {
        assert_eq!(get(&s.url(path), Some(&vic)).status, 403, "{path}");
    }
    let csrf = csrf_of(&home.body);
    let r = post_form(
        &s.url("/admin/users/boss/disable"),
        Some(&vic),
        &[("csrf", &csrf)],
    );
    assert_eq!(r.status, 403);

    // The admin disables vic from the web page: vic's session ends at once.
    let (_, boss) = login(&s, "boss", PW);
    let boss = boss.unwrap();
    let admin = get(&s.url("/admin"), Some(&boss));
    let r = post_form(
        &s.url("/admin/users/vic/disable"),
        Some(&boss),
        &[("csrf", &csrf_of(&admin.body))],
    );
    assert_eq!((r.status, r.location()), (303, Some("/admin")));
    let r = get(&s.url("/"), Some(&vic));
    assert_eq!((r.status, r.location()), (303, Some("/login")));
    let (r, cookie) = login(&s, "vic", PW);
    assert_eq!(r.status, 401);
    assert!(
        r.body.contains("Wrong username or password."),
        "no hint that the account exists"
    );
    assert!(cookie.is_none());

    // Audit page and CSV show it, escaped, for the admin.
    let page = get(&s.url("/admin/audit"), Some(&boss));
    assert_eq!(page.status, 200);
    assert!(page.body.contains("user_disable") && page.body.contains("user/vic"));
    let csv = get(&s.url("/admin/audit.csv"), Some(&boss));
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert!(csv
        .header("content-disposition")
        .unwrap()
        .contains("attachment"));
    assert!(csv
        .body
        .starts_with("time,user,action,target,outcome,ip\r\n"));
    assert!(csv
        .body
        .contains(",boss,user_disable,user/vic,success,127.0.0.1\r\n"));
    assert!(csv.body.contains(",boss,audit_export,"));
}

#[test]
fn state_files_are_private_and_hold_no_plaintext_secret() {
    let s = Server::start();
    s.add_user("fred", &[Role::Compliance], &["south"], PW);
    let (_, cookie) = login(&s, "admin", &s.admin_password);
    let cookie = cookie.unwrap();
    let page = get(&s.url("/password"), Some(&cookie));
    let new_admin = "another long admin passphrase";
    post_form(
        &s.url("/password"),
        Some(&cookie),
        &[
            ("current", &s.admin_password),
            ("new", new_admin),
            ("confirm", new_admin),
            ("csrf", &csrf_of(&page.body)),
        ],
    );
    login(&s, "fred", "a wrong password for fred");

    let dir = s.data_dir().join("dashboard");
    for name in ["users.json", "audit.jsonl"] {
        let mode = std::fs::metadata(dir.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
    let dir_mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    let users: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("users.json")).unwrap()).unwrap();
    for u in users["users"].as_array().unwrap() {
        assert!(u["password_hash"]
            .as_str()
            .unwrap()
            .starts_with("$argon2id$"));
    }
    let session = cookie.trim_start_matches("sw_session=");
    let mut files = 0;
    for entry in walk(s.data_dir()) {
        let bytes = std::fs::read(&entry).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for secret in [
            s.admin_password.as_str(),
            new_admin,
            PW,
            "a wrong password for fred",
            session,
        ] {
            assert!(!text.contains(secret), "{} holds a secret", entry.display());
        }
        files += 1;
    }
    assert!(files >= 2);
    // No temporary files left behind by the atomic writes.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
