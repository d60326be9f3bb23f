//! A generated ecosystem in every format, ingested by the binary and read
//! back with DuckDB: per app and tenant, the lake must carry the requested,
//! granted and used scopes that `ground-truth.json` says.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use scopewatch_analytics::{EngineLimits, Lake};

mod common;
use common::{all_file_bytes, bin, contains_bytes, ingest, run_json};

fn generate(out: &Path) -> serde_json::Value {
    let summary = run_json(bin().args([
        "generate",
        "--out",
        out.to_str().unwrap(),
        "--seed",
        "7",
        "--days",
        "6",
        "--tenants",
        "3",
        "--apps",
        "9",
        "--events-per-day",
        "1500",
        "--end",
        "2026-11-20",
    ]));
    for format in [
        "keycloak",
        "nginx",
        "kong",
        "envoy",
        "fhir-auditevent",
        "scopewatch",
    ] {
        assert!(
            summary["files"]
                .as_object()
                .unwrap()
                .keys()
                .any(|f| f.starts_with(&format!("{format}/"))),
            "no {format} file written: {summary}"
        );
    }
    let text = std::fs::read_to_string(out.join("ground-truth.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

type Matrix = BTreeMap<(String, String), BTreeSet<String>>;

/// `(client_id, tenant) -> values` from a query returning those three
/// columns, one value per row.
fn matrix(lake: &Lake, sql: &str) -> Matrix {
    let conn = lake.connection();
    let mut stmt = conn.prepare(sql).unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .unwrap();
    let mut m = Matrix::new();
    for row in rows {
        let (client, tenant, value) = row.unwrap();
        m.entry((client, tenant)).or_default().insert(value);
    }
    m
}

fn truth_matrix(truth: &serde_json::Value, field: &str) -> Matrix {
    let mut m = Matrix::new();
    for cell in truth["matrix"].as_array().unwrap() {
        let key = (
            cell["client_id"].as_str().unwrap().to_string(),
            cell["tenant"].as_str().unwrap().to_string(),
        );
        let Some(values) = cell[field].as_array() else {
            continue;
        };
        let values: BTreeSet<String> = values
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        if !values.is_empty() {
            m.insert(key, values);
        }
    }
    m
}

/// A generated ecosystem ingested into a fresh data directory:
/// (the temp dir holding both, the ground truth, the data dir).
fn ingested() -> (tempfile::TempDir, serde_json::Value, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let eco = dir.path().join("eco");
    let truth = generate(&eco);
    let config = eco.join("scopewatch.toml");
    let data = dir.path().join("data");
    let summary = ingest(&config, &data);
    assert_eq!(
        summary["dead_lettered"], 0,
        "every generated line parses: {summary}"
    );
    (dir, truth, data)
}

#[test]
fn every_format_carries_the_true_scope_matrix() {
    let (_dir, truth, data) = ingested();
    let lake = Lake::open(&data, &EngineLimits::default()).unwrap();
    assert_eq!(
        lake.row_count("access").unwrap(),
        truth["events"]["access"].as_u64().unwrap(),
        "one access event per generated call"
    );

    let requested = matrix(
        &lake,
        "SELECT client_id, tenant, unnest(scopes_requested) FROM auth \
         WHERE kind = 'authorize' AND scopes_requested IS NOT NULL",
    );
    let granted = matrix(
        &lake,
        "SELECT client_id, tenant, unnest(scopes_granted) FROM auth \
         WHERE outcome = 'success' AND scopes_granted IS NOT NULL \
         AND kind IN ('token', 'refresh', 'client_credentials')",
    );
    let used = matrix(
        &lake,
        "SELECT client_id, tenant, required FROM access \
         WHERE outcome = 'allowed' AND required IS NOT NULL",
    );
    assert_eq!(
        requested,
        truth_matrix(&truth, "requested"),
        "requested scopes"
    );
    assert_eq!(granted, truth_matrix(&truth, "granted"), "granted scopes");
    // An AuditEvent names the token (its jti) but not the token's scopes,
    // so ingest cannot know whether a read without a patient was made in
    // patient, user or system context: only joining the call to its grant
    // (analytics) can. For those cells compare what was done to which type.
    let auditevent = |(client, tenant): &(String, String)| {
        truth["call_formats"][format!("{client} {tenant}")] == "fhir-auditevent"
    };
    let without_context = |m: &Matrix| -> Matrix {
        m.iter()
            .map(|(k, v)| {
                let v = if auditevent(k) {
                    v.iter()
                        .map(|s| s.split_once('/').map_or(s.clone(), |(_, r)| r.to_string()))
                        .collect()
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect()
    };
    assert_eq!(
        without_context(&used),
        without_context(&truth_matrix(&truth, "used")),
        "used scopes"
    );

    // Per-version traffic is visible: every version the truth saw has calls.
    let versions = matrix(
        &lake,
        "SELECT client_id, tenant, app_version FROM access WHERE app_version IS NOT NULL",
    );
    // AuditEvents carry no User-Agent: their calls have no version.
    let mut want_versions = truth_matrix(&truth, "versions");
    want_versions.retain(|k, _| !auditevent(k));
    assert_eq!(versions, want_versions, "app versions");

    // Nothing raw: no bearer token and no raw patient id of the logs.
    let raw_jwt_prefix = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImdlbiJ9";
    let mut files = Vec::new();
    all_file_bytes(&data, &mut files);
    for (path, bytes) in &files {
        assert!(
            !contains_bytes(bytes, raw_jwt_prefix.as_bytes()),
            "{} holds a raw bearer token",
            path.display()
        );
    }
}

/// The analytics' scope matrix against the generator's truth, for every app
/// and tenant: granted and requested sets, which scopes are used, unused and
/// unapproved, the least-privilege suggestion, scope creep across versions
/// and staleness.
#[test]
fn the_scope_matrix_matches_the_ground_truth() {
    use scopewatch_analytics::matrix::{MatrixQuery, ScopeClass};
    use scopewatch_model::registry::Registry;
    use scopewatch_model::scope::{minimise, Scope};

    let (dir, truth, data) = ingested();
    let registry = Registry::load(&dir.path().join("eco/registry.toml")).unwrap();
    let lake = Lake::open(&data, &EngineLimits::default()).unwrap();
    let date = |s: &str| {
        time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).unwrap()
    };
    let q = MatrixQuery {
        from: date(truth["start"].as_str().unwrap()),
        to: date(truth["end"].as_str().unwrap()),
        tenant: None,
        app: None,
        stale_after_days: 2,
    };
    let m = lake.scope_matrix(&registry, &q).unwrap();
    let set = |v: &serde_json::Value| -> BTreeSet<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    let app_truth = |client: &str| {
        truth["apps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["client_id"] == client)
            .unwrap()
            .clone()
    };
    let mut checked = 0;
    for cell in truth["matrix"].as_array().unwrap() {
        let (client, tenant) = (
            cell["client_id"].as_str().unwrap(),
            cell["tenant"].as_str().unwrap(),
        );
        let at = m
            .apps
            .iter()
            .find(|a| a.client_id == client && a.tenant == tenant)
            .unwrap_or_else(|| panic!("no matrix row for {client} in {tenant}"));
        let label = format!("{client} in {tenant}");
        let granted = set(&cell["granted"]);
        let used_required = set(&cell["used"]);
        let approved = set(&cell["approved"]);
        let app = app_truth(client);
        let unapproved: BTreeSet<String> = std::iter::once(&app["unapproved_scope"])
            .chain(
                app["versions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| &v["extra_scope"]),
            )
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let row_set =
            |pred: &dyn Fn(&scopewatch_analytics::matrix::ScopeRow) -> bool| -> BTreeSet<String> {
                at.scopes
                    .iter()
                    .filter(|r| pred(r))
                    .map(|r| r.scope.clone())
                    .collect()
            };
        assert_eq!(row_set(&|r| r.granted), granted, "granted, {label}");
        if at.requested_known {
            assert_eq!(
                row_set(&|r| r.requested == Some(true)),
                set(&cell["requested"]),
                "requested, {label}"
            );
        }
        for row in at.scopes.iter().filter(|r| r.class != ScopeClass::Denied) {
            assert_eq!(
                row.approved,
                approved.contains(&row.scope),
                "approved {}, {label}",
                row.scope
            );
        }
        // A granted resource scope is used when a used permission is of
        // its context and type.
        let covers = |scope: &str| {
            let head = scope.rsplit_once('.').map_or(scope, |(h, _)| h);
            used_required
                .iter()
                .any(|r| r.rsplit_once('.').is_some_and(|(h, _)| h == head))
        };
        for row in &at.scopes {
            let s = row.scope.as_str();
            let resource = s.contains('/') && !s.starts_with("launch/");
            let want = if granted.contains(s) && unapproved.contains(s) {
                ScopeClass::Unapproved
            } else if !granted.contains(s) {
                ScopeClass::NotGranted
            } else if !resource || covers(s) {
                // Launch and identity scopes are used by the launch; every
                // patient app refreshes at some point in a multi-day run.
                ScopeClass::Used
            } else {
                ScopeClass::Unused
            };
            if row.class == ScopeClass::Denied {
                continue;
            }
            assert_eq!(row.class, want, "class of {s}, {label}");
        }
        if let Some(unused) = app["unused_scope"].as_str() {
            if granted.contains(unused) {
                assert!(
                    at.scopes
                        .iter()
                        .any(|r| r.scope == unused && r.class == ScopeClass::Unused),
                    "the approved, never called {unused} is unused, {label}"
                );
            }
        }
        // Least privilege: exactly the used permissions, merged, plus the
        // launch and identity scopes the app was granted.
        let mut uses: Vec<Scope> = used_required.iter().map(|r| Scope::parse(r)).collect();
        uses.extend(
            granted
                .iter()
                .filter(|s| !s.contains('/') || s.starts_with("launch/"))
                .map(|s| Scope::parse(s)),
        );
        let want: Vec<String> = minimise(uses.iter())
            .scopes
            .iter()
            .map(Scope::normalised)
            .collect();
        let mut want = want;
        want.sort();
        assert_eq!(at.suggestion.scopes, want, "suggestion, {label}");
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} cells checked");

    // Scope creep across versions: the version that asks for one more scope.
    for app in truth["apps"].as_array().unwrap() {
        for v in app["versions"].as_array().unwrap() {
            let Some(extra) = v["extra_scope"].as_str() else {
                continue;
            };
            let version = v["version"].as_str().unwrap();
            let rows: Vec<_> = m
                .apps
                .iter()
                .filter(|a| a.client_id == app["client_id"] && a.requested_known)
                .filter_map(|a| a.versions.iter().find(|r| r.version == version))
                .collect();
            assert!(
                !rows.is_empty(),
                "version {version} of {} seen",
                app["client_id"]
            );
            for r in rows {
                assert_eq!(
                    r.new_scopes,
                    vec![extra.to_string()],
                    "{} {version}",
                    app["client_id"]
                );
            }
        }
    }
    // Staleness (stale_after_days = 2): a cell is stale when its last call
    // or grant is two days or more before the window's end.
    let end = q.to;
    for cell in truth["matrix"].as_array().unwrap() {
        let (client, tenant) = (
            cell["client_id"].as_str().unwrap(),
            cell["tenant"].as_str().unwrap(),
        );
        let last = date(cell["last_seen"].as_str().unwrap());
        let at = m
            .apps
            .iter()
            .find(|a| a.client_id == client && a.tenant == tenant)
            .unwrap();
        assert_eq!(
            at.stale,
            last < end - time::Duration::days(1),
            "stale, {client} in {tenant}"
        );
    }
    let stale_app = truth["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| !a["stale_since"].is_null())
        .unwrap();
    assert!(
        m.apps
            .iter()
            .filter(|a| a.client_id == stale_app["client_id"])
            .all(|a| a.stale),
        "the app that went stale is stale everywhere"
    );

    // A window that starts after the stale app's last event: its calls and
    // grants in the window are none, and its last call and grant are still
    // found (before the window), each equal to the whole-history figure.
    let stale_client = stale_app["client_id"].as_str().unwrap();
    let before: Vec<_> = m
        .apps
        .iter()
        .filter(|a| a.client_id == stale_client)
        .collect();
    let latest = before
        .iter()
        .filter_map(|a| a.last_call.iter().chain(a.last_grant.iter()).max())
        .max()
        .expect("the stale app has events");
    let later = MatrixQuery {
        from: date(&latest[..10]).next_day().unwrap(),
        ..q.clone()
    };
    assert!(
        later.from <= later.to,
        "the stale app went quiet before the end"
    );
    let m2 = lake.scope_matrix(&registry, &later).unwrap();
    for whole in &before {
        let at = m2
            .apps
            .iter()
            .find(|a| a.client_id == whole.client_id && a.tenant == whole.tenant)
            .unwrap_or_else(|| panic!("{stale_client} in {} has no row", whole.tenant));
        assert_eq!(
            (at.calls, at.grants, at.patients),
            (0, 0, 0),
            "{}",
            whole.tenant
        );
        assert_eq!(at.last_call, whole.last_call, "{}", whole.tenant);
        assert_eq!(at.last_grant, whole.last_grant, "{}", whole.tenant);
        assert!(at.stale, "{} in {}", stale_client, whole.tenant);
    }
}
