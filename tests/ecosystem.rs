//! A generated ecosystem in every format, ingested by the binary and read
//! back with DuckDB: per app and tenant, the lake must carry the requested,
//! granted and used scopes that `ground-truth.json` says.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use scopewatch_analytics::{EngineLimits, Lake};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_scopewatch"))
}

fn run_json(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.output().expect("scopewatch runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let last = stdout.lines().last().expect("a summary line");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON: {last}: {e}"))
}

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

#[test]
fn every_format_carries_the_true_scope_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let eco = dir.path().join("eco");
    let truth = generate(&eco);
    let config = eco.join("scopewatch.toml");
    let data = dir.path().join("data");
    let summary = run_json(bin().args([
        "--config",
        config.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "ingest",
        "--once",
        "--quiet",
    ]));
    assert_eq!(
        summary["dead_lettered"], 0,
        "every generated line parses: {summary}"
    );
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
    for entry in walk(&data) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !contains(&bytes, raw_jwt_prefix.as_bytes()),
            "{} holds a raw bearer token",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
