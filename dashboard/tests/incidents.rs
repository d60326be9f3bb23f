//! Alert evidence and incidents over real HTTP, on a lake of the committed
//! samples: the alert detail shows the evidence events and the token's
//! timeline (never another tenant's events); an incident is opened from an
//! alert, gets an owner, a status, a note and another alert; its evidence
//! bundle is a tar whose manifest verifies and whose events are exactly the
//! evidence found in the lake; viewers change nothing; a tenant-limited
//! user gets 404 for another tenant's incident everywhere; markup typed
//! into a title or note is text.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use common::*;
use scopewatch_analytics::Lake;
use scopewatch_dashboard::Role;
use scopewatch_model::events::Timestamp;
use scopewatch_rules::alert::{Alert, Severity};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const XSS: &str = "<script>alert(1)</script>";
const XSS_ESCAPED: &str = "&lt;script&gt;alert(1)&lt;/script&gt;";

/// A token of `tenant` the lake shows issued (auth `token` event) and used
/// (access calls), with those events.
struct Picked {
    token: String,
    client_id: String,
    issued: String,
    calls: Vec<String>,
    first_us: i64,
    last_us: i64,
}

fn pick(lake: &Lake, tenant: &str) -> Picked {
    let conn = lake.connection();
    let (token, issued, client_id, issued_us): (String, String, String, i64) = conn
        .query_row(
            "SELECT token_id, event_id, client_id, epoch_us(ts) FROM auth
             WHERE tenant = ? AND kind = 'token' AND outcome = 'success' AND client_id IS NOT NULL
               AND token_id IN (SELECT token_id FROM access WHERE tenant = ?)
             ORDER BY ts, event_id LIMIT 1",
            [tenant, tenant],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .expect("the samples hold a token issued and used in this tenant");
    let mut stmt = conn
        .prepare(
            "SELECT event_id, epoch_us(ts) FROM access WHERE token_id = ? AND tenant = ?
             ORDER BY ts, event_id LIMIT 2",
        )
        .unwrap();
    let calls: Vec<(String, i64)> = stmt
        .query_map([&token, &tenant.to_string()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(calls.len(), 2, "two calls with the token");
    let times = std::iter::once(issued_us).chain(calls.iter().map(|c| c.1));
    Picked {
        first_us: times.clone().min().unwrap(),
        last_us: times.max().unwrap(),
        token,
        client_id,
        issued,
        calls: calls.into_iter().map(|c| c.0).collect(),
    }
}

/// The access event of `tenant` nearest in time to `around_us`.
fn one_call(lake: &Lake, tenant: &str, around_us: i64) -> String {
    lake.connection()
        .query_row(
            "SELECT event_id FROM access WHERE tenant = ?
             ORDER BY abs(epoch_us(ts) - CAST(? AS BIGINT)), event_id LIMIT 1",
            [tenant, around_us.to_string().as_str()],
            |r| r.get(0),
        )
        .unwrap()
}

/// An alert of `p` as the detector would raise it, with `extra` evidence.
fn evidence_alert(id: &str, tenant: &str, p: &Picked, extra: &[String]) -> Alert {
    let mut a = alert(
        id,
        "token_ip_spread",
        Severity::High,
        &p.client_id,
        Some(tenant),
        "2026-11-20T00:00:00Z",
    );
    a.first_seen = Timestamp(p.first_us);
    a.last_seen = Timestamp(p.last_us);
    a.group.insert("token_id".into(), p.token.clone());
    a.evidence = std::iter::once(p.issued.clone())
        .chain(p.calls.iter().cloned())
        .chain(extra.iter().cloned())
        .collect();
    a.count = a.evidence.len() as u64;
    a
}

/// The text between the element with `id="{id}"` and the next `</table>`.
fn table<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}"));
    let end = html[at..].find("</table>").map_or(html.len(), |e| at + e);
    &html[at..end]
}

/// Creates an incident through the form; returns its id.
fn open_incident(s: &Server, cookie: &str, alerts: &[&str], title: &str) -> String {
    let page = get(&s.url("/incidents"), Some(cookie));
    let csrf = csrf_of(&page.body);
    let mut fields = vec![("csrf", csrf.as_str()), ("title", title)];
    fields.extend(alerts.iter().map(|a| ("alert", *a)));
    let r = post_form(&s.url("/incidents"), Some(cookie), &fields);
    assert_eq!(r.status, 303, "{}", r.body);
    let loc = r.location().unwrap().to_string();
    let id = loc.strip_prefix("/incidents/").unwrap().to_string();
    assert!(id.starts_with("inc-") && id.len() == 20, "{id}");
    id
}

#[test]
fn evidence_timeline_incident_and_bundle() {
    let s = Server::start_with_samples();
    s.add_user("sec", &[Role::Security], &[], PW);
    s.add_user("nsec", &[Role::Security], &["north"], PW);
    let lake = Lake::open(s.data_dir(), &Default::default()).unwrap();
    let p = pick(&lake, "north");
    let south_call = one_call(&lake, "south", p.first_us);
    drop(lake);
    // The north alert's evidence also names a south call (a token used
    // across tenants): a user limited to north must not see that event.
    let north = evidence_alert(
        "al-north-ev",
        "north",
        &p,
        std::slice::from_ref(&south_call),
    );
    let mut other = alert(
        "al-north-other",
        "denied_burst",
        Severity::Critical,
        &p.client_id,
        Some("north"),
        "2026-11-20T10:00:00Z",
    );
    other.evidence = vec!["not-in-the-lake-1".into()];
    s.raise_alerts(&[north.clone(), other]);
    let wanted: BTreeSet<String> = north.evidence.iter().cloned().collect();
    assert_eq!(wanted.len(), 4);

    // The alert's detail: every evidence event, and the token's timeline.
    let c = session(&s, "sec");
    let r = get(&s.url("/alerts/al-north-ev"), Some(&c));
    assert_eq!(r.status, 200);
    let events = table(&r.body, "evidence-events");
    for id in &wanted {
        assert!(events.contains(id.as_str()), "evidence table lacks {id}");
    }
    assert!(r.body.contains("id=\"timeline-0\""));
    let timeline = table(&r.body, "timeline-0");
    assert!(timeline.contains(&p.token), "timeline names the token");
    assert!(timeline.contains("access token issued"), "{timeline}");
    assert!(timeline.contains("used"));
    assert!(r.body.contains("action=\"/incidents\""));
    assert!(r.body.contains("Open an incident"));

    // The same as JSON.
    let r = get(&s.url("/api/alerts/al-north-ev"), Some(&c));
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    let got: BTreeSet<String> = v["evidence_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, wanted);
    assert_eq!(v["id"], "al-north-ev");
    let tl = &v["timelines"][0];
    assert_eq!(tl["token_id"], p.token.as_str());
    let tl_ids: Vec<&str> = tl["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    for id in std::iter::once(&p.issued).chain(&p.calls) {
        assert!(tl_ids.contains(&id.as_str()), "timeline lacks {id}");
    }
    let times: Vec<&str> = tl["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["ts"].as_str().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "the timeline is in time order");

    // Limited to north: the south event is not shown, anywhere.
    let nc = session(&s, "nsec");
    let r = get(&s.url("/alerts/al-north-ev"), Some(&nc));
    assert_eq!(r.status, 200);
    let events = table(&r.body, "evidence-events");
    assert!(!events.contains(&south_call));
    assert!(events.contains(&p.issued));
    assert!(r.body.contains("not shown"));
    let v: Value =
        serde_json::from_str(&get(&s.url("/api/alerts/al-north-ev"), Some(&nc)).body).unwrap();
    let got: Vec<&str> = v["evidence_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(got.len(), 3);
    assert!(!got.contains(&south_call.as_str()));
    assert!(v["evidence_events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["tenant"] == "north"));

    // Open an incident from the alert, with markup in the title.
    let title = format!("Replay {XSS}");
    let id = open_incident(&s, &c, &["al-north-ev"], &title);
    let href = s.url(&format!("/incidents/{id}"));
    let page = get(&href, Some(&c));
    assert_eq!(page.status, 200);
    assert!(page.body.contains(&format!("Replay {XSS_ESCAPED}")));
    assert!(!page.body.contains(XSS), "raw markup in the page");
    let csrf = csrf_of(&page.body);

    // Owner, status, a note (markup again), another alert.
    for (path, fields) in [
        ("owner", vec![("owner", "sec")]),
        ("status", vec![("status", "investigating")]),
        (
            "notes",
            vec![(
                "text",
                "Seen from two IPs.\n<b>check</b> <script>alert(1)</script>",
            )],
        ),
        ("alerts", vec![("alert", "al-north-other")]),
    ] {
        let mut f = vec![("csrf", csrf.as_str())];
        f.extend(fields);
        let r = post_form(&format!("{href}/{path}"), Some(&c), &f);
        assert_eq!(r.status, 303, "{path}: {}", r.body);
        assert_eq!(r.location(), Some(format!("/incidents/{id}").as_str()));
    }
    // Bad input is refused and changes nothing.
    for (path, fields, want) in [
        ("notes", vec![("text", "   ")], 400),
        ("notes", vec![("text", &*"x".repeat(4001))], 400),
        ("status", vec![("status", "exploded")], 400),
        ("owner", vec![("owner", "nobody-of-that-name")], 400),
        ("alerts", vec![("alert", "al-does-not-exist")], 404),
        ("alerts", vec![("alert", "al-north-other")], 400),
    ] {
        let mut f = vec![("csrf", csrf.as_str())];
        f.extend(fields);
        let r = post_form(&format!("{href}/{path}"), Some(&c), &f);
        assert_eq!(r.status, want, "{path}");
    }
    // Without the CSRF field: refused.
    let r = post_form(&format!("{href}/notes"), Some(&c), &[("text", "no csrf")]);
    assert_eq!(r.status, 403);

    let page = get(&href, Some(&c));
    assert!(page
        .body
        .contains("&lt;b&gt;check&lt;/b&gt; &lt;script&gt;"));
    assert!(!page.body.contains("<b>check") && !page.body.contains(XSS));
    assert!(table(&page.body, "incident-alerts").contains("al-north-other"));
    let list = get(&s.url("/incidents?status=investigating"), Some(&c));
    assert!(list.body.contains(&id) && list.body.contains(XSS_ESCAPED));
    assert!(!list.body.contains(XSS));
    let list = get(&s.url("/incidents?status=closed"), Some(&c));
    assert!(!list.body.contains(&id));

    let v: Value =
        serde_json::from_str(&get(&s.url(&format!("/api/incidents/{id}")), Some(&c)).body).unwrap();
    assert_eq!(v["title"], title.as_str());
    assert_eq!(v["status"], "investigating");
    assert_eq!(v["owner"], "sec");
    assert_eq!(v["severity"], "critical");
    assert_eq!(v["tenants"], json!(["north"]));
    assert_eq!(v["notes"][0]["author"], "sec");
    assert!(v["notes"][0]["text"].as_str().unwrap().contains(XSS));
    let actions: Vec<&str> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "created",
            "owner_set",
            "status_changed",
            "note_added",
            "alert_added"
        ]
    );

    // The alert page names the incident now.
    let r = get(&s.url("/alerts/al-north-ev"), Some(&c));
    assert!(r.body.contains(&format!("href=\"/incidents/{id}\"")));

    // The bundle.
    let (status, headers, bytes) = get_bytes(&format!("{href}/bundle.tar"), &c);
    assert_eq!(status, 200);
    let header = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(header("content-type"), "application/x-tar");
    assert!(header("content-disposition").starts_with("attachment;"));
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut archive = tar::Archive::new(&bytes[..]);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        files.insert(name, data);
    }
    let prefix = format!("{id}/");
    let names: Vec<&str> = files
        .keys()
        .map(|k| {
            k.strip_prefix(&prefix)
                .expect("every file in the incident's folder")
        })
        .collect();
    assert_eq!(
        names,
        [
            "events.csv",
            "events.json",
            "incident.json",
            "manifest.sha256"
        ]
    );
    let manifest = String::from_utf8(files[&format!("{prefix}manifest.sha256")].clone()).unwrap();
    let mut listed = Vec::new();
    for line in manifest.lines() {
        let (hash, name) = line.split_once("  ").expect("sha256sum format");
        let data = &files[&format!("{prefix}{name}")];
        assert_eq!(hash, hex::encode(Sha256::digest(data)), "{name}");
        listed.push(name);
    }
    listed.sort();
    assert_eq!(listed, ["events.csv", "events.json", "incident.json"]);
    // And `sha256sum -c` agrees, where the tool exists.
    let out = tempfile::tempdir().unwrap();
    tar::Archive::new(&bytes[..]).unpack(out.path()).unwrap();
    match std::process::Command::new("sha256sum")
        .args(["-c", "manifest.sha256"])
        .current_dir(out.path().join(&id))
        .output()
    {
        Ok(o) => assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout)),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
    }

    let events: Value = serde_json::from_slice(&files[&format!("{prefix}events.json")]).unwrap();
    let got: BTreeSet<String> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, wanted, "events.json holds exactly the evidence found");
    let csv = parse_csv(std::str::from_utf8(&files[&format!("{prefix}events.csv")]).unwrap());
    assert_eq!(csv[0][..3], ["stream", "event_id", "ts"]);
    assert!(csv.iter().all(|r| r.len() == csv[0].len()));
    let got: BTreeSet<String> = csv[1..].iter().map(|r| r[1].clone()).collect();
    assert_eq!(got, wanted, "events.csv holds exactly the evidence found");
    let inc: Value = serde_json::from_slice(&files[&format!("{prefix}incident.json")]).unwrap();
    assert_eq!(inc["incident"]["id"], id.as_str());
    assert_eq!(inc["incident"]["notes"][0]["author"], "sec");
    assert_eq!(inc["alerts"].as_array().unwrap().len(), 2);
    assert_eq!(
        inc["evidence"]["event_ids_not_included"],
        json!(["not-in-the-lake-1"])
    );

    // The north-limited user's bundle of the same (north) incident leaves
    // the south event out.
    let (status, _, bytes) = get_bytes(&format!("{href}/bundle.tar"), &nc);
    assert_eq!(status, 200);
    let mut archive = tar::Archive::new(&bytes[..]);
    let mut events_json = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().ends_with("events.json") {
            entry.read_to_end(&mut events_json).unwrap();
        }
    }
    let events: Value = serde_json::from_slice(&events_json).unwrap();
    let got: BTreeSet<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(got.len(), 3);
    assert!(!got.contains(south_call.as_str()));

    // Every change is in the audit trail.
    let target = format!("incident/{id}");
    let audited: Vec<String> = s
        .audit_lines()
        .iter()
        .filter(|l| l["target"] == target.as_str() && l["outcome"] == "success")
        .map(|l| l["action"].as_str().unwrap().to_string())
        .collect();
    for action in [
        "incident_create",
        "incident_owner",
        "incident_status",
        "incident_note",
        "incident_add_alert",
        "incident_export",
    ] {
        assert!(
            audited.iter().any(|a| a == action),
            "no {action} in {audited:?}"
        );
    }

    // The API creates and changes too (session + X-CSRF-Token).
    let csrf = csrf_of(&get(&s.url("/incidents"), Some(&c)).body);
    let h = [("Cookie", c.as_str()), ("X-CSRF-Token", csrf.as_str())];
    let r = post_json(
        &s.url("/api/incidents"),
        &h,
        &json!({ "title": "From the API", "alerts": ["al-north-other"] }),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let api_id = serde_json::from_str::<Value>(&r.body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = post_json(
        &s.url(&format!("/api/incidents/{api_id}/status")),
        &h,
        &json!({ "status": "contained" }),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = post_json(
        &s.url(&format!("/api/incidents/{api_id}/notes")),
        &h,
        &json!({ "text": "contained by revoking the token" }),
    );
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        (v["status"].as_str(), v["notes"][0]["text"].as_str()),
        (Some("contained"), Some("contained by revoking the token"))
    );
    let r = post_json(
        &s.url("/api/incidents"),
        &h,
        &json!({ "title": " ", "alerts": ["al-north-other"] }),
    );
    assert_eq!(r.status, 400);
    let r = post_json(
        &s.url("/api/incidents"),
        &h,
        &json!({ "title": "x", "alerts": [] }),
    );
    assert_eq!(r.status, 400);
    let all: Value = serde_json::from_str(&get(&s.url("/api/incidents"), Some(&c)).body).unwrap();
    let ids: BTreeSet<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, BTreeSet::from([id.as_str(), api_id.as_str()]));
    let contained: Value =
        serde_json::from_str(&get(&s.url("/api/incidents?status=contained"), Some(&c)).body)
            .unwrap();
    assert_eq!(contained.as_array().unwrap().len(), 1);
}

#[test]
fn viewers_change_nothing_and_tenants_stay_apart() {
    let s = Server::start();
    s.add_user("sec", &[Role::Security], &[], PW);
    s.add_user("vic", &[Role::Viewer], &[], PW);
    s.add_user("nsec", &[Role::Security], &["north"], PW);
    s.raise_alerts(&[
        alert(
            "al-n",
            "token_replay",
            Severity::High,
            "cardio",
            Some("north"),
            "2026-11-10T10:00:00Z",
        ),
        alert(
            "al-s",
            "token_replay",
            Severity::Medium,
            "derm",
            Some("south"),
            "2026-11-10T11:00:00Z",
        ),
        alert(
            "al-n2",
            "ip_spread",
            Severity::Low,
            "cardio",
            Some("north"),
            "2026-11-10T12:00:00Z",
        ),
    ]);
    let c = session(&s, "sec");
    let north = open_incident(&s, &c, &["al-n"], "North only");
    let south = open_incident(&s, &c, &["al-s"], "South only");
    let mixed = open_incident(&s, &c, &["al-n2", "al-s"], "Both");

    // A viewer reads, without forms, and every POST is 403.
    let v = session(&s, "vic");
    let page = get(&s.url(&format!("/incidents/{north}")), Some(&v));
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("/notes\"") && !page.body.contains("/status\""));
    let list = get(&s.url("/incidents"), Some(&v));
    assert!(list.body.contains(&north) && !list.body.contains("id=\"new-incident\""));
    let alert_page = get(&s.url("/alerts/al-n"), Some(&v));
    assert!(!alert_page.body.contains("action=\"/incidents\""));
    let csrf = csrf_of(&page.body);
    let base = format!("/incidents/{north}");
    for (path, field) in [
        ("/incidents".to_string(), ("alert", "al-n")),
        (format!("{base}/owner"), ("owner", "vic")),
        (format!("{base}/status"), ("status", "closed")),
        (format!("{base}/notes"), ("text", "hi")),
        (format!("{base}/alerts"), ("alert", "al-n2")),
        ("/incidents/inc-unknown/notes".to_string(), ("text", "hi")),
    ] {
        let r = post_form(
            &s.url(&path),
            Some(&v),
            &[("csrf", &csrf), ("title", "t"), field],
        );
        assert_eq!(r.status, 403, "{path}");
    }
    let (_, token) = s.state.users.create_token("vic", "ci").unwrap();
    let bearer = format!("Bearer {token}");
    for (path, body) in [
        (
            "/api/incidents".to_string(),
            json!({ "title": "t", "alerts": ["al-n"] }),
        ),
        (
            format!("/api/incidents/{north}/status"),
            json!({ "status": "closed" }),
        ),
        (
            format!("/api/incidents/{north}/notes"),
            json!({ "text": "hi" }),
        ),
    ] {
        let r = post_json(&s.url(&path), &[("Authorization", &bearer)], &body);
        assert_eq!(r.status, 403, "{path}");
    }
    assert_eq!(
        get_bearer(&s.url(&format!("/api/incidents/{north}")), &token).status,
        200
    );
    let unchanged: Value =
        serde_json::from_str(&get_bearer(&s.url(&format!("/api/incidents/{north}")), &token).body)
            .unwrap();
    assert_eq!(unchanged["status"], "open");
    assert_eq!(unchanged["notes"], json!([]));
    assert_eq!(unchanged["history"].as_array().unwrap().len(), 1);

    // Limited to north: the south and the mixed incident do not exist.
    let n = session(&s, "nsec");
    for id in [&south, &mixed] {
        assert_eq!(
            get(&s.url(&format!("/incidents/{id}")), Some(&n)).status,
            404
        );
        assert_eq!(
            get(&s.url(&format!("/api/incidents/{id}")), Some(&n)).status,
            404
        );
        assert_eq!(
            get(&s.url(&format!("/incidents/{id}/bundle.tar")), Some(&n)).status,
            404
        );
    }
    let list = get(&s.url("/incidents"), Some(&n));
    assert!(list.body.contains(&north));
    assert!(!list.body.contains(&south) && !list.body.contains(&mixed));
    let api: Value = serde_json::from_str(&get(&s.url("/api/incidents"), Some(&n)).body).unwrap();
    let ids: Vec<&str> = api
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [north.as_str()]);
    let csrf = csrf_of(&get(&s.url(&format!("/incidents/{north}")), Some(&n)).body);
    // Changing them: 404 too, as for an unknown id.
    for path in [
        format!("/incidents/{south}/notes"),
        format!("/incidents/{mixed}/status"),
        "/incidents/inc-0000000000000000/notes".to_string(),
    ] {
        let r = post_form(
            &s.url(&path),
            Some(&n),
            &[("csrf", &csrf), ("text", "x"), ("status", "closed")],
        );
        assert_eq!(r.status, 404, "{path}");
    }
    // Another tenant's alert cannot be added nor opened: 404.
    let r = post_form(
        &s.url(&format!("/incidents/{north}/alerts")),
        Some(&n),
        &[("csrf", &csrf), ("alert", "al-s")],
    );
    assert_eq!(r.status, 404);
    let r = post_form(
        &s.url("/incidents"),
        Some(&n),
        &[
            ("csrf", &csrf),
            ("title", "sneaky"),
            ("alert", "al-n"),
            ("alert", "al-s"),
        ],
    );
    assert_eq!(r.status, 404);
    // Their own incident works; the owner must see it all.
    let r = post_form(
        &s.url(&format!("/incidents/{north}/owner")),
        Some(&n),
        &[("csrf", &csrf), ("owner", "nsec")],
    );
    assert_eq!(r.status, 303);
    let sc = csrf_of(&get(&s.url("/incidents"), Some(&c)).body);
    let r = post_form(
        &s.url(&format!("/incidents/{mixed}/owner")),
        Some(&c),
        &[("csrf", &sc), ("owner", "nsec")],
    );
    assert_eq!(r.status, 400, "nsec cannot see the south alert");
    // When sec adds a south alert to the north incident, it leaves nsec's view.
    let r = post_form(
        &s.url(&format!("/incidents/{north}/alerts")),
        Some(&c),
        &[("csrf", &sc), ("alert", "al-s")],
    );
    assert_eq!(r.status, 303);
    assert_eq!(
        get(&s.url(&format!("/incidents/{north}")), Some(&n)).status,
        404
    );
}
