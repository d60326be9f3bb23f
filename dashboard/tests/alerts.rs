//! The alert pages and `/api/alerts` over real HTTP on loopback: the list
//! and its filters, tenant isolation (404, never 403, for another tenant's
//! alert), status changes with CSRF, comment and audit entry, escaping of
//! log content, and the JSON API with tokens and sessions.

mod common;

use common::*;
use scopewatch_dashboard::Role;
use scopewatch_rules::alert::{AlertStatus, Severity};
use serde_json::{json, Value};

const XSS: &str = "<script>alert(1)</script>";

/// Four alerts: north (high, newest), south (critical), one without a
/// tenant (low), and a north one whose client_id is markup (medium, oldest).
fn seed(s: &Server) {
    s.raise_alerts(&[
        alert(
            "al-north1",
            "token_replay",
            Severity::High,
            "cardio-insight",
            Some("north"),
            "2026-03-02T10:00:00Z",
        ),
        alert(
            "al-south1",
            "ip_spread",
            Severity::Critical,
            "derm-view",
            Some("south"),
            "2026-03-01T10:00:00Z",
        ),
        alert(
            "al-notenant",
            "ip_spread",
            Severity::Low,
            "lab-sync",
            None,
            "2026-02-28T10:00:00Z",
        ),
        alert(
            "al-north2",
            "unapproved_scope",
            Severity::Medium,
            XSS,
            Some("north"),
            "2026-02-27T10:00:00Z",
        ),
    ]);
}

/// The alert ids in the list page's table, in order.
fn listed(html: &str) -> Vec<String> {
    html.match_indices("href=\"/alerts/al-")
        .map(|(at, _)| {
            html[at + 14..]
                .split('"')
                .next()
                .unwrap()
                .trim_start_matches('/')
                .to_string()
        })
        .collect()
}

fn ids(json_body: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(json_body).expect("JSON");
    v.as_array()
        .expect("an array")
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_list_shows_alerts_newest_first_and_filters_work() {
    let s = Server::start();
    s.add_user("sec", &[Role::Security], &[], PW);
    let c = session(&s, "sec");
    // Empty store: the page says so.
    let r = get(&s.url("/alerts"), Some(&c));
    assert_eq!(r.status, 200);
    assert!(r.body.contains("No alerts match."));

    // Raised by "another process" after the dashboard opened the store.
    seed(&s);
    let r = get(&s.url("/alerts"), Some(&c));
    assert_eq!(r.status, 200);
    assert_eq!(
        listed(&r.body),
        ["al-north1", "al-south1", "al-notenant", "al-north2"]
    );
    for text in [
        "Title of token_replay",
        "token_replay",
        "tenant",
        "north",
        "2026-03-02 10:00:00",
        "2026-03-02 09:59:00",
        "sev-critical",
        "st-open",
    ] {
        assert!(r.body.contains(text), "list lacks {text}");
    }
    // No inline script or style (the CSP forbids them).
    common::assert_no_inline_code(&r.body);
    // The selects offer what there is.
    for option in [
        "<option value=\"north\">",
        "<option value=\"south\">",
        "<option value=\"ip_spread\">",
        "<option value=\"false_positive\">",
    ] {
        assert!(r.body.contains(option), "no {option}");
    }

    for (query, want) in [
        ("?severity=critical", vec!["al-south1"]),
        ("?tenant=north", vec!["al-north1", "al-north2"]),
        ("?rule=ip_spread", vec!["al-south1", "al-notenant"]),
        ("?rule=ip_spread&severity=low", vec!["al-notenant"]),
        (
            "?status=open&severity=&rule=&tenant=",
            vec!["al-north1", "al-south1", "al-notenant", "al-north2"],
        ),
        ("?status=resolved", vec![]),
        // SQL in a filter only filters.
        ("?tenant=north%27%20OR%20%271%27%3D%271", vec![]),
        ("?rule=%27%3B%20DROP%20TABLE%20alerts%3B--", vec![]),
    ] {
        let r = get(&s.url(&format!("/alerts{query}")), Some(&c));
        assert_eq!(r.status, 200, "{query}");
        assert_eq!(listed(&r.body), want, "{query}");
    }
    // The chosen filter stays selected.
    let r = get(&s.url("/alerts?tenant=south"), Some(&c));
    assert!(r.body.contains("<option value=\"south\" selected>"));

    // Markup from the log is text, in the list and on the detail page.
    for path in ["/alerts", "/alerts/al-north2"] {
        let r = get(&s.url(path), Some(&c));
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{path}"
        );
        assert!(!r.body.contains(XSS), "{path} holds raw markup");
    }
}

#[test]
fn the_detail_page_shows_everything_and_viewers_get_no_form() {
    let s = Server::start();
    s.add_user("sec", &[Role::Security], &[], PW);
    s.add_user("vic", &[Role::Viewer], &[], PW);
    s.add_user("po", &[Role::ProductOwner], &[], PW);
    seed(&s);
    let c = session(&s, "sec");
    let r = get(&s.url("/alerts/al-north1"), Some(&c));
    assert_eq!(r.status, 200);
    for text in [
        "Alert: Title of token_replay",
        "al-north1",
        "token_replay",
        "cardio-insight",
        "al-north1-e1",
        "al-north1-e2",
        "al-north1-e3",
        "3 events of cardio-insight within 60 s (threshold 2)",
        "2026-03-02 10:00:00",
        "No changes yet",
        "action=\"/alerts/al-north1/status\"",
        "name=\"csrf\"",
        "<option value=\"acknowledged\" selected>",
        "<option value=\"false_positive\">",
        "<option value=\"resolved\">",
        "name=\"comment\"",
    ] {
        assert!(r.body.contains(text), "detail lacks {text}");
    }
    common::assert_no_inline_code(&r.body);
    let r = get(&s.url("/alerts/al-nope"), Some(&c));
    assert_eq!(r.status, 404);

    // A viewer reads, without the form; may not post.
    let v = session(&s, "vic");
    let r = get(&s.url("/alerts/al-north1"), Some(&v));
    assert_eq!(r.status, 200);
    assert!(!r.body.contains("/status\""));
    let csrf = csrf_of(&r.body);
    let r = post_form(
        &s.url("/alerts/al-north1/status"),
        Some(&v),
        &[("csrf", &csrf), ("status", "resolved"), ("comment", "x")],
    );
    assert_eq!(r.status, 403);
    assert_eq!(
        s.alert_store().get("al-north1").unwrap().status,
        AlertStatus::Open
    );
    // A product owner has no alert pages at all.
    let p = session(&s, "po");
    for path in ["/alerts", "/alerts/al-north1", "/api/alerts"] {
        assert_eq!(get(&s.url(path), Some(&p)).status, 403, "{path}");
    }
}

#[test]
fn a_tenant_limited_user_sees_only_their_tenants_alerts() {
    let s = Server::start();
    s.add_user("nora", &[Role::Security], &["north"], PW);
    s.add_user("sec", &[Role::Security], &[], PW);
    seed(&s);
    let c = session(&s, "nora");
    let r = get(&s.url("/alerts"), Some(&c));
    assert_eq!(r.status, 200);
    assert_eq!(listed(&r.body), ["al-north1", "al-north2"]);
    // Nothing of the south, not even as a filter option.
    for text in ["south", "derm-view", "al-south1", "lab-sync", "al-notenant"] {
        assert!(!r.body.contains(text), "north user's list shows {text}");
    }
    // Asking for the south by filter gives nothing.
    let r = get(&s.url("/alerts?tenant=south"), Some(&c));
    assert_eq!(listed(&r.body), Vec::<String>::new());

    // Another tenant's alert, and one without a tenant, are "not found",
    // exactly like an id that does not exist.
    let missing = get(&s.url("/alerts/al-nope"), Some(&c));
    assert_eq!(missing.status, 404);
    for id in ["al-south1", "al-notenant"] {
        let r = get(&s.url(&format!("/alerts/{id}")), Some(&c));
        assert_eq!(r.status, 404, "{id}");
        assert_eq!(r.body, missing.body, "{id}");
        assert!(!r.body.contains("derm-view"));
    }
    assert_eq!(get(&s.url("/alerts/al-north1"), Some(&c)).status, 200);

    // Changing one with a valid form: 404 as well, and nothing changes.
    let page = get(&s.url("/alerts/al-north1"), Some(&c));
    let csrf = csrf_of(&page.body);
    let r = post_form(
        &s.url("/alerts/al-south1/status"),
        Some(&c),
        &[
            ("csrf", &csrf),
            ("status", "resolved"),
            ("comment", "mine now"),
        ],
    );
    assert_eq!(r.status, 404);
    assert_eq!(
        s.alert_store().get("al-south1").unwrap().status,
        AlertStatus::Open
    );

    // The API: the same limits, by session and by token.
    let (_, token) = s.state.users.create_token("nora", "ci").unwrap();
    let r = get_bearer(&s.url("/api/alerts"), &token);
    assert_eq!(r.status, 200);
    assert_eq!(ids(&r.body), ["al-north1", "al-north2"]);
    assert!(!r.body.contains("south") && !r.body.contains("lab-sync"));
    let r = get(&s.url("/api/alerts?tenant=south"), Some(&c));
    assert_eq!(ids(&r.body), Vec::<String>::new());
    for id in ["al-south1", "al-notenant", "al-nope"] {
        let r = get_bearer(&s.url(&format!("/api/alerts/{id}")), &token);
        assert_eq!(r.status, 404, "{id}");
        assert_eq!(r.body, r#"{"error":"no such alert"}"#);
        let r = post_json(
            &s.url(&format!("/api/alerts/{id}/status")),
            &[("Authorization", &format!("Bearer {token}"))],
            &json!({ "status": "resolved", "comment": "mine now" }),
        );
        assert_eq!(r.status, 404, "{id}");
    }
    assert_eq!(
        get_bearer(&s.url("/api/alerts/al-north1"), &token).status,
        200
    );
    assert_eq!(s.alert_store().get("al-south1").unwrap().history.len(), 0);

    // An unlimited user sees all four, the tenantless one included.
    let u = session(&s, "sec");
    let r = get(&s.url("/alerts"), Some(&u));
    assert_eq!(listed(&r.body).len(), 4);
    assert_eq!(get(&s.url("/alerts/al-notenant"), Some(&u)).status, 200);
}

#[test]
fn a_status_change_needs_csrf_and_a_comment_and_is_recorded() {
    let s = Server::start();
    s.add_user("sec", &[Role::Security], &[], PW);
    seed(&s);
    let c = session(&s, "sec");
    let page = get(&s.url("/alerts/al-north1"), Some(&c));
    let csrf = csrf_of(&page.body);
    let url = s.url("/alerts/al-north1/status");

    // Without the CSRF token, or with a wrong one: refused.
    for fields in [
        vec![("status", "acknowledged"), ("comment", "looking")],
        vec![
            ("csrf", "00"),
            ("status", "acknowledged"),
            ("comment", "looking"),
        ],
    ] {
        let r = post_form(&url, Some(&c), &fields);
        assert_eq!(r.status, 403, "{fields:?}");
    }
    // No comment (or only blanks): 400 with a message, on the page.
    for comment in ["", "   "] {
        let r = post_form(
            &url,
            Some(&c),
            &[
                ("csrf", &csrf),
                ("status", "acknowledged"),
                ("comment", comment),
            ],
        );
        assert_eq!(r.status, 400, "{comment:?}");
        assert!(r.body.contains("A comment is required"), "{}", r.body);
    }
    let r = post_form(
        &url,
        Some(&c),
        &[("csrf", &csrf), ("status", "closed"), ("comment", "x")],
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("Choose a status"));
    assert_eq!(s.alert_store().get("al-north1").unwrap().history.len(), 0);
    assert!(!s
        .audit_lines()
        .iter()
        .any(|e| e["action"] == "alert_status"));

    // Now properly: back to the detail page, which shows the change.
    let note = "Checked with the vendor <b>&</b> \"rotating\" the secret";
    let r = post_form(
        &url,
        Some(&c),
        &[
            ("csrf", &csrf),
            ("status", "acknowledged"),
            ("comment", note),
        ],
    );
    assert_eq!((r.status, r.location()), (303, Some("/alerts/al-north1")));
    let page = get(&s.url("/alerts/al-north1"), Some(&c));
    assert!(page.body.contains("st-acknowledged"));
    let history = &page.body[page.body.find("id=\"history\"").expect("a history table")..];
    assert!(history.contains("<td>sec</td>"), "{history}");
    assert!(history.contains(
        "Checked with the vendor &lt;b&gt;&amp;&lt;/b&gt; &quot;rotating&quot; the secret"
    ));
    assert!(history.contains("st-open") && history.contains("st-acknowledged"));
    // Now "resolved" is offered first.
    assert!(page.body.contains("<option value=\"resolved\" selected>"));

    // The store has it (for the detector and every other reader) ...
    let stored = s.alert_store();
    let a = stored.get("al-north1").unwrap();
    assert_eq!(a.status, AlertStatus::Acknowledged);
    assert_eq!(a.history.len(), 1);
    let h = &a.history[0];
    assert_eq!(
        (h.by.as_str(), h.from, h.to, h.comment.as_deref()),
        (
            "sec",
            AlertStatus::Open,
            AlertStatus::Acknowledged,
            Some(note)
        )
    );
    // ... and so has the audit trail.
    let audit = s.audit_lines();
    let entries: Vec<&Value> = audit
        .iter()
        .filter(|e| e["action"] == "alert_status")
        .collect();
    assert_eq!(entries.len(), 1, "{audit:?}");
    assert_eq!(entries[0]["user"], "sec");
    assert_eq!(entries[0]["target"], "alert/al-north1");
    assert_eq!(entries[0]["outcome"], "success");
    assert_eq!(entries[0]["ip"], "127.0.0.1");

    // Resolve it as well: the history grows in order.
    post_form(
        &url,
        Some(&c),
        &[
            ("csrf", &csrf),
            ("status", "resolved"),
            ("comment", "rotated"),
        ],
    );
    let a = s.alert_store().get("al-north1").unwrap().clone();
    assert_eq!(a.status, AlertStatus::Resolved);
    assert_eq!(a.history.len(), 2);
    assert_eq!(a.history[1].from, AlertStatus::Acknowledged);
}

#[test]
fn the_api_lists_gets_and_changes_alerts() {
    let s = Server::start();
    s.add_user("sec", &[Role::Security], &[], PW);
    s.add_user("vic", &[Role::Viewer], &[], PW);
    seed(&s);
    let (_, token) = s.state.users.create_token("sec", "ci").unwrap();
    let (_, viewer_token) = s.state.users.create_token("vic", "ci").unwrap();

    let r = get_bearer(&s.url("/api/alerts"), &token);
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(
        ids(&r.body),
        ["al-north1", "al-south1", "al-notenant", "al-north2"]
    );
    let all: Value = serde_json::from_str(&r.body).unwrap();
    let first = &all[0];
    assert_eq!(first["severity"], "high");
    assert_eq!(first["status"], "open");
    assert_eq!(first["group"]["tenant"], "north");
    assert_eq!(first["last_seen"], "2026-03-02T10:00:00Z");
    assert_eq!(
        first["evidence"],
        json!(["al-north1-e1", "al-north1-e2", "al-north1-e3"])
    );
    // JSON carries the markup as a string, escaped as JSON requires.
    assert_eq!(all[3]["group"]["client_id"], XSS);

    let r = get_bearer(&s.url("/api/alerts?severity=critical&tenant=south"), &token);
    assert_eq!(ids(&r.body), ["al-south1"]);
    let r = get_bearer(&s.url("/api/alerts?severity=%27%20OR%201%3D1--"), &token);
    assert_eq!((r.status, ids(&r.body)), (200, vec![]));

    let r = get_bearer(&s.url("/api/alerts/al-south1"), &token);
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        (v["id"].as_str(), v["rule"].as_str()),
        (Some("al-south1"), Some("ip_spread"))
    );

    // Token: no CSRF needed.
    let bearer = format!("Bearer {token}");
    let url = s.url("/api/alerts/al-south1/status");
    let r = post_json(
        &url,
        &[("Authorization", &bearer)],
        &json!({ "status": "false_positive", "comment": "pen test" }),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["status"], "false_positive");
    assert_eq!(v["history"][0]["by"], "sec");
    assert_eq!(v["history"][0]["comment"], "pen test");
    // Bad input: JSON errors.
    for (body, want) in [
        (
            json!({ "status": "resolved", "comment": "" }),
            "comment is required",
        ),
        (json!({ "status": "resolved" }), "comment is required"),
        (
            json!({ "status": "gone", "comment": "x" }),
            "Choose a status",
        ),
        (json!({ "comment": "x" }), "expected JSON"),
    ] {
        let r = post_json(&url, &[("Authorization", &bearer)], &body);
        assert_eq!(r.status, 400, "{body}");
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert!(v["error"].as_str().unwrap().contains(want), "{}", r.body);
    }
    // A viewer's token reads but does not change.
    assert_eq!(get_bearer(&s.url("/api/alerts"), &viewer_token).status, 200);
    let r = post_json(
        &url,
        &[("Authorization", &format!("Bearer {viewer_token}"))],
        &json!({ "status": "open", "comment": "no" }),
    );
    assert_eq!(r.status, 403);

    // Session: the CSRF header is required.
    let c = session(&s, "sec");
    let csrf = csrf_of(&get(&s.url("/alerts"), Some(&c)).body);
    let body = json!({ "status": "open", "comment": "reopened: not a pen test after all" });
    let r = post_json(&url, &[("Cookie", &c)], &body);
    assert_eq!(r.status, 403);
    let r = post_json(&url, &[("Cookie", &c), ("X-CSRF-Token", "0")], &body);
    assert_eq!(r.status, 403);
    let r = post_json(&url, &[("Cookie", &c), ("X-CSRF-Token", &csrf)], &body);
    assert_eq!(r.status, 200, "{}", r.body);
    let a = s.alert_store().get("al-south1").unwrap().clone();
    assert_eq!(a.status, AlertStatus::Open);
    assert_eq!(a.history.len(), 2);
    let audited = s
        .audit_lines()
        .iter()
        .filter(|e| e["action"] == "alert_status" && e["target"] == "alert/al-south1")
        .count();
    assert_eq!(audited, 2);

    // Anonymous: 401 in JSON.
    assert_eq!(get(&s.url("/api/alerts"), None).status, 401);
}
