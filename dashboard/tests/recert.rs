//! Recertification over real HTTP on the committed samples: a campaign run
//! to completion with keep / narrow / revoke, refusals (no justification,
//! a bad scope, a viewer, no CSRF), exports only when complete, the
//! registry patch read back by the registry's own parser, the audit trail,
//! and tenant isolation on the page, the API and every export.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use scopewatch_dashboard::Role;
use scopewatch_model::registry::Registry;
use serde_json::{json, Value};

fn json_of(r: &Resp) -> Value {
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).expect("JSON")
}

/// Creates a campaign through the form; returns its id.
fn create(s: &Server, cookie: &str, name: &str, from: &str, to: &str) -> String {
    let page = get(&s.url("/recert"), Some(cookie));
    assert_eq!(page.status, 200);
    let r = post_form(
        &s.url("/recert"),
        Some(cookie),
        &[
            ("csrf", &csrf_of(&page.body)),
            ("name", name),
            ("from", from),
            ("to", to),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let id = r
        .location()
        .unwrap()
        .trim_start_matches("/recert/")
        .to_string();
    assert!(id.starts_with("rc-"), "{id}");
    id
}

/// The rows of a campaign as `cookie`'s user sees them through the API.
fn rows(s: &Server, cookie: &str, id: &str) -> Vec<Value> {
    let v = json_of(&get(&s.url(&format!("/api/recert/{id}")), Some(cookie)));
    v["rows"].as_array().unwrap().clone()
}

fn key(row: &Value) -> (String, String) {
    (
        row["client_id"].as_str().unwrap().to_string(),
        row["tenant"].as_str().unwrap().to_string(),
    )
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Posts a decision through the campaign page's form.
fn decide(
    s: &Server,
    cookie: &str,
    id: &str,
    (client, tenant): &(String, String),
    decision: &str,
    scopes: &str,
    justification: &str,
) -> Resp {
    let page = get(&s.url(&format!("/recert/{id}")), Some(cookie));
    assert_eq!(page.status, 200);
    post_form(
        &s.url(&format!("/recert/{id}/decisions")),
        Some(cookie),
        &[
            ("csrf", &csrf_of(&page.body)),
            ("client_id", client),
            ("tenant", tenant),
            ("decision", decision),
            ("scopes", scopes),
            ("justification", justification),
        ],
    )
}

/// The CSV as (client_id, tenant) -> column -> value.
fn csv_by_row(text: &str) -> BTreeMap<(String, String), BTreeMap<String, String>> {
    let records = parse_csv(text);
    let header = records[0].clone();
    records[1..]
        .iter()
        .map(|r| {
            assert_eq!(r.len(), header.len(), "{r:?}");
            let m: BTreeMap<String, String> =
                header.iter().cloned().zip(r.iter().cloned()).collect();
            ((m["client_id"].clone(), m["tenant"].clone()), m)
        })
        .collect()
}

fn sample_registry(s: &Server) -> Registry {
    let path = s.state.insights.settings().registry.clone().unwrap();
    Registry::load(&path).unwrap()
}

#[test]
fn a_campaign_runs_to_completion_and_exports_its_decisions() {
    let s = Server::start_with_samples();
    s.add_user("carol", &[Role::Compliance], &[], PW);
    s.add_user("vic", &[Role::Viewer], &[], PW);
    let carol = session(&s, "carol");
    let vic = session(&s, "vic");

    // An inverted period is refused, and creates nothing.
    let page = get(&s.url("/recert"), Some(&carol));
    let r = post_form(
        &s.url("/recert"),
        Some(&carol),
        &[
            ("csrf", &csrf_of(&page.body)),
            ("name", "backwards"),
            ("from", "2026-11-30"),
            ("to", "2026-11-01"),
        ],
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("inverted"), "{}", r.body);

    let id = create(
        &s,
        &carol,
        "2026 November, \"review\"",
        "2026-11-01",
        "2026-11-30",
    );
    let all = rows(&s, &carol, &id);
    let tenants: BTreeSet<String> = all.iter().map(|r| key(r).1).collect();
    assert_eq!(tenants, ["east", "north", "south"].map(String::from).into());
    assert!(all.iter().all(|r| r["decision"].is_null()));
    // The evidence is there, with the least-privilege suggestion.
    assert!(all.iter().any(|r| r["calls"].as_u64().unwrap() > 0));
    assert!(all.iter().any(|r| !strings(&r["suggestion"]).is_empty()));

    // Nothing exports before every row is decided.
    for export in ["decisions.csv", "decisions.json", "registry-patch"] {
        let r = get(&s.url(&format!("/recert/{id}/{export}")), Some(&carol));
        assert_eq!(r.status, 409, "{export}");
        assert!(r.body.contains("not complete"), "{}", r.body);
    }

    // Choose what to decide from the evidence and the registry.
    let registry = sample_registry(&s);
    let mut by_app: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for r in &all {
        by_app.entry(key(r).0).or_default().push(r);
    }
    // Revoked everywhere: a registered, active app with a row in every
    // tenant the registry deploys it in (the one in fewest tenants).
    let revoke_all = by_app
        .iter()
        .filter_map(|(app, rs)| {
            let a = registry.app(app)?;
            let seen: BTreeSet<&str> = rs.iter().map(|r| r["tenant"].as_str().unwrap()).collect();
            (a.status.is_active()
                && !a.tenants.is_empty()
                && a.tenants.iter().all(|t| seen.contains(t.as_str())))
            .then_some((a.tenants.len(), app.clone()))
        })
        .min()
        .expect("an app to revoke")
        .1;
    // Narrowed: a row of another registered app approving several scopes.
    let narrow_row = all
        .iter()
        .find(|r| {
            let (app, tenant) = key(r);
            app != revoke_all
                && registry.app(&app).is_some_and(|a| a.deployed_in(&tenant))
                && strings(&r["approved"]).len() >= 3
        })
        .expect("a row to narrow");
    let narrow = key(narrow_row);
    let approved = strings(&narrow_row["approved"]);
    let narrowed: Vec<String> = approved[..approved.len() - 1].to_vec();
    // Revoked in one tenant only: a third app deployed in several tenants.
    let revoke_one = all
        .iter()
        .map(key)
        .find(|(app, tenant)| {
            *app != revoke_all
                && *app != narrow.0
                && registry
                    .app(app)
                    .is_some_and(|a| a.tenants.len() > 1 && a.deployed_in(tenant))
        })
        .expect("a row to revoke in one tenant");

    // Refusals first: nothing of them is recorded.
    let r = decide(&s, &carol, &id, &narrow, "keep", "", "   ");
    assert_eq!(r.status, 400);
    assert!(r.body.contains("justification is required"), "{}", r.body);
    let r = decide(
        &s,
        &carol,
        &id,
        &narrow,
        "narrow",
        "launch patient/Observation.xyz",
        "tidy",
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("patient/Observation.xyz"), "{}", r.body);
    let r = decide(
        &s,
        &carol,
        &id,
        &narrow,
        "narrow",
        "system/*.cruds",
        "wider",
    );
    assert_eq!(r.status, 400, "a narrowing cannot widen");
    let r = decide(&s, &carol, &id, &narrow, "maybe", "", "hmm");
    assert_eq!(r.status, 400);
    let unknown = ("no-such-app".to_string(), "north".to_string());
    assert_eq!(
        decide(&s, &carol, &id, &unknown, "keep", "", "x").status,
        404
    );
    // Without the CSRF field.
    let r = post_form(
        &s.url(&format!("/recert/{id}/decisions")),
        Some(&carol),
        &[
            ("client_id", &narrow.0),
            ("tenant", &narrow.1),
            ("decision", "keep"),
            ("justification", "no token"),
        ],
    );
    assert_eq!(r.status, 403);
    // A viewer reads but cannot decide, by form or by API token.
    let page = get(&s.url(&format!("/recert/{id}")), Some(&vic));
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("name=\"justification\""));
    assert_eq!(
        decide(&s, &vic, &id, &narrow, "keep", "", "viewer").status,
        403
    );
    let (_, vic_token) = s.state.users.create_token("vic", "ci").unwrap();
    let r = post_json(
        &s.url(&format!("/api/recert/{id}/decisions")),
        &[("Authorization", &format!("Bearer {vic_token}"))],
        &json!({"client_id": narrow.0, "tenant": narrow.1, "decision": "keep", "justification": "x"}),
    );
    assert_eq!(r.status, 403);
    assert!(rows(&s, &carol, &id)
        .iter()
        .all(|r| r["decision"].is_null()));

    // Decide every row: the narrowing first kept, then changed (history).
    let mut expected: BTreeMap<(String, String), (&str, Vec<String>)> = BTreeMap::new();
    let r = decide(&s, &carol, &id, &narrow, "keep", "", "first thought");
    assert_eq!(r.status, 303, "{}", r.body);
    for row in &all {
        let k = key(row);
        let (decision, scopes) = if k == narrow {
            ("narrow", narrowed.clone())
        } else if k.0 == revoke_all || k == revoke_one {
            ("revoke", vec![])
        } else {
            ("keep", vec![])
        };
        let justification = format!("{decision}, reviewed with the owner of {}", k.0);
        let r = decide(
            &s,
            &carol,
            &id,
            &k,
            decision,
            &scopes.join("\n"),
            &justification,
        );
        assert_eq!(r.status, 303, "{k:?}: {}", r.body);
        expected.insert(k, (decision, scopes));
    }
    // One more by API token, re-deciding a kept row the same way.
    let (_, carol_token) = s.state.users.create_token("carol", "ci").unwrap();
    let kept = expected
        .iter()
        .find(|(_, (d, _))| *d == "keep")
        .unwrap()
        .0
        .clone();
    let r = post_json(
        &s.url(&format!("/api/recert/{id}/decisions")),
        &[("Authorization", &format!("Bearer {carol_token}"))],
        &json!({"client_id": kept.0, "tenant": kept.1, "decision": "keep", "justification": "confirmed by token"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);

    // Progress: 100 %, on the page, the list and the API.
    let list = json_of(&get_bearer(&s.url("/api/recert"), &carol_token));
    let mine = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id.as_str())
        .unwrap();
    assert_eq!(mine["decided"], mine["total"]);
    assert_eq!(mine["total"].as_u64().unwrap() as usize, all.len());
    assert_eq!(mine["percent"], 100);
    assert_eq!(mine["complete"], true);
    let page = get(&s.url(&format!("/recert/{id}")), Some(&carol));
    assert!(page
        .body
        .contains(&format!("{n} of {n} decided (100 %)", n = all.len())));
    assert!(page.body.contains("<progress"));
    assert!(
        !page.body.contains("style="),
        "the CSP forbids inline styles"
    );
    let list_page = get(&s.url("/recert"), Some(&carol));
    assert!(list_page.body.contains(&id));

    // The API shows the narrowing's history.
    let now = rows(&s, &carol, &id);
    let n = now.iter().find(|r| key(r) == narrow).unwrap();
    assert_eq!(n["decision"]["decision"], "narrow");
    assert_eq!(strings(&n["decision"]["scopes"]), narrowed);
    assert_eq!(n["history"].as_array().unwrap().len(), 2);
    assert_eq!(n["history"][0]["decision"], "keep");

    // CSV: exactly the decisions, one line per row.
    let r = get(&s.url(&format!("/recert/{id}/decisions.csv")), Some(&carol));
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-disposition")
        .unwrap()
        .contains(&format!("attachment; filename=\"{id}-decisions.csv\"")));
    let csv = csv_by_row(&r.body);
    assert_eq!(csv.len(), expected.len());
    for (k, (decision, scopes)) in &expected {
        let line = &csv[k];
        assert_eq!(line["decision"], *decision, "{k:?}");
        assert_eq!(line["scopes"], scopes.join(" "), "{k:?}");
        assert_eq!(line["decided_by"], "carol");
        assert_eq!(line["campaign"], "2026 November, \"review\"");
        assert_eq!(line["period"], "2026-11-01..2026-11-30");
    }
    assert_eq!(csv[&kept]["justification"], "confirmed by token");

    // JSON: the same.
    let r = get(
        &s.url(&format!("/recert/{id}/decisions.json")),
        Some(&carol),
    );
    assert!(r.header("content-disposition").unwrap().contains(".json\""));
    let export = json_of(&r);
    let exported = export["rows"].as_array().unwrap();
    assert_eq!(exported.len(), expected.len());
    for row in exported {
        let (decision, scopes) = &expected[&key(row)];
        assert_eq!(row["decision"]["decision"], *decision);
        assert_eq!(strings(&row["decision"]["scopes"]), *scopes);
    }

    // The registry patch parses and carries the decisions.
    let r = get(
        &s.url(&format!("/recert/{id}/registry-patch")),
        Some(&carol),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r
        .header("content-disposition")
        .unwrap()
        .contains(&format!("filename=\"registry-{id}.toml\"")));
    let patched = Registry::from_toml_str(&r.body, "patch").expect("the patch is a valid registry");
    let app = patched.app(&narrow.0).unwrap();
    let now_approved: Vec<String> = app
        .approved_scopes_for(&narrow.1)
        .iter()
        .map(|s| s.raw().to_string())
        .collect();
    assert_eq!(now_approved, narrowed);
    let one = patched.app(&revoke_one.0).unwrap();
    assert!(one.approved_scopes_for(&revoke_one.1).is_empty());
    assert!(one.status.is_active(), "revoked in one tenant only");
    let gone = patched.app(&revoke_all).unwrap();
    assert_eq!(gone.status.as_str(), "revoked");
    assert_eq!(
        gone.status_reason.as_deref(),
        Some("2026 November, \"review\"")
    );
    // Apps kept in every tenant are certified to the campaign's last day.
    let kept_everywhere = by_app
        .keys()
        .find(|a| {
            registry.app(a).is_some_and(|x| x.status.is_active())
                && expected
                    .iter()
                    .filter(|(k, _)| &k.0 == *a)
                    .all(|(_, (d, _))| *d == "keep")
        })
        .expect("an app kept everywhere");
    assert_eq!(
        patched
            .app(kept_everywhere)
            .unwrap()
            .last_certified
            .map(|d| d.to_string())
            .as_deref(),
        Some("2026-11-30")
    );
    // The rest of the registry, comments included, is still there.
    assert_eq!(patched.apps.len(), registry.apps.len());
    let original =
        std::fs::read_to_string(s.state.insights.settings().registry.as_ref().unwrap()).unwrap();
    for comment in original.lines().filter(|l| l.starts_with('#')) {
        assert!(r.body.contains(comment), "{comment}");
    }
    assert!(r.body.contains("# Changes ("));

    // The audit trail has the creation, every decision and every export.
    let audit = s.audit_lines();
    let has = |action: &str, target: &str, outcome: &str| {
        audit
            .iter()
            .any(|e| e["action"] == action && e["target"] == target && e["outcome"] == outcome)
    };
    assert!(has("recert_create", &format!("recert/{id}"), "success"));
    let decisions = audit
        .iter()
        .filter(|e| e["action"] == "recert_decision")
        .count();
    assert_eq!(
        decisions,
        expected.len() + 2,
        "every recorded decision, no refused one"
    );
    assert!(has(
        "recert_decision",
        &format!("recert/{id}/{}/{}", narrow.0, narrow.1),
        "success"
    ));
    for export in ["csv", "json", "registry_patch"] {
        let action = format!("recert_export_{export}");
        assert!(has(&action, &format!("recert/{id}"), "success"), "{action}");
        assert!(
            has(&action, &format!("recert/{id}"), "failure"),
            "{action} refused before completion"
        );
    }
}

#[test]
fn a_tenant_limited_user_sees_only_their_tenant() {
    let s = Server::start_with_samples();
    s.add_user("carol", &[Role::Compliance], &[], PW);
    s.add_user("nora", &[Role::Compliance], &["north"], PW);
    s.add_user("sam", &[Role::Compliance], &["south"], PW);
    let carol = session(&s, "carol");
    let nora = session(&s, "nora");
    let sam = session(&s, "sam");

    let id = create(&s, &carol, "Everyone", "2026-11-01", "2026-11-30");
    let all = rows(&s, &carol, &id);
    let north: BTreeSet<(String, String)> =
        all.iter().map(key).filter(|(_, t)| t == "north").collect();
    let south = all.iter().map(key).find(|(_, t)| t == "south").unwrap();
    assert!(!north.is_empty() && north.len() < all.len());

    // Page and API: north rows only.
    let page = get(&s.url(&format!("/recert/{id}")), Some(&nora));
    assert_eq!(page.status, 200);
    assert_eq!(
        page.body.matches("data-tenant=\"north\"").count(),
        north.len()
    );
    assert!(
        !page.body.contains("data-tenant=\"south\"") && !page.body.contains("data-tenant=\"east\"")
    );
    let seen: BTreeSet<_> = rows(&s, &nora, &id).iter().map(key).collect();
    assert_eq!(seen, north);

    // Another tenant's row is not there for her: 404, by form and by API.
    let r = decide(&s, &nora, &id, &south, "keep", "", "not mine");
    assert_eq!(r.status, 404);
    let (_, token) = s.state.users.create_token("nora", "ci").unwrap();
    let r = post_json(
        &s.url(&format!("/api/recert/{id}/decisions")),
        &[("Authorization", &format!("Bearer {token}"))],
        &json!({"client_id": south.0, "tenant": south.1, "decision": "revoke", "justification": "x"}),
    );
    assert_eq!(r.status, 404);

    // Her share complete, her exports open, with her rows only; Carol's
    // campaign is still incomplete for Carol.
    for k in &north {
        assert_eq!(
            decide(&s, &nora, &id, k, "revoke", "", "north only").status,
            303
        );
    }
    assert_eq!(
        get(&s.url(&format!("/recert/{id}/decisions.csv")), Some(&carol)).status,
        409
    );
    let csv = get(&s.url(&format!("/recert/{id}/decisions.csv")), Some(&nora));
    assert_eq!(csv.status, 200);
    let lines = csv_by_row(&csv.body);
    assert_eq!(lines.keys().cloned().collect::<BTreeSet<_>>(), north);
    let export = json_of(&get(
        &s.url(&format!("/recert/{id}/decisions.json")),
        Some(&nora),
    ));
    let exported: BTreeSet<_> = export["rows"].as_array().unwrap().iter().map(key).collect();
    assert_eq!(exported, north);
    assert!(!serde_json::to_string(&export)
        .unwrap()
        .contains("\"south\""));
    let patch = get(&s.url(&format!("/recert/{id}/registry-patch")), Some(&nora));
    assert_eq!(patch.status, 200, "{}", patch.body);
    for other in ["south", "east"] {
        for form in [format!("\"{other}\""), format!("tenant.{other}]")] {
            assert!(!patch.body.contains(&form), "{form}: {}", patch.body);
        }
    }
    assert!(patch.body.contains("NOT the whole registry"));
    let patched = Registry::from_toml_str(&patch.body, "patch").unwrap();
    for (app, _) in &north {
        if let Some(a) = patched.app(app) {
            assert!(
                a.approved_scopes_for("north").is_empty(),
                "{app} revoked in north"
            );
        }
    }
    assert!(patched
        .apps
        .iter()
        .all(|a| a.tenants.iter().all(|t| t == "north")));

    // A campaign she creates covers north only; Sam's (south) is not hers.
    let hers = create(&s, &nora, "North only", "2026-11-01", "2026-11-30");
    let v = json_of(&get(&s.url(&format!("/api/recert/{hers}")), Some(&carol)));
    assert_eq!(v["campaign"]["tenants"], json!(["north"]));
    let hers_rows: BTreeSet<_> = v["rows"].as_array().unwrap().iter().map(key).collect();
    assert_eq!(hers_rows, north);
    let his = create(&s, &sam, "South only", "2026-11-01", "2026-11-30");
    assert_eq!(
        get(&s.url(&format!("/recert/{his}")), Some(&nora)).status,
        404
    );
    assert_eq!(
        get_bearer(&s.url(&format!("/api/recert/{his}")), &token).status,
        404
    );
    assert_eq!(
        get(
            &s.url(&format!("/recert/{his}/decisions.json")),
            Some(&nora)
        )
        .status,
        404
    );
    let list = json_of(&get_bearer(&s.url("/api/recert"), &token));
    let listed: BTreeSet<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [id.as_str(), hers.as_str()].into());
    assert!(!get(&s.url("/recert"), Some(&nora))
        .body
        .contains("South only"));
}
