//! `scopewatch report` run as a compliance officer's script runs it, over
//! the bundled samples ingested into a fresh data directory: JSON that holds
//! the ground truth's matrix, CSV with a row per scope, an HTML page that
//! loads nothing from elsewhere, escapes what logs and the registry say, and
//! renders in a real headless Chromium; and clear errors for bad input.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{bin, ingest, repo, samples_config, stderr};

const FROM: &str = "2026-11-07";
const TO: &str = "2026-11-20";

fn ground_truth() -> Value {
    let text = std::fs::read_to_string(repo().join("sample-logs/ground-truth.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A temp dir with the bundled samples ingested into `<dir>/data`.
fn ingested_samples() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ingest(&samples_config(), &data);
    (dir, data)
}

/// `scopewatch --config CONFIG --data DATA report ARGS...`.
fn report(config: Option<&Path>, data: &Path, args: &[&str]) -> Output {
    let mut cmd = bin();
    if let Some(c) = config {
        cmd.args(["--config", c.to_str().unwrap()]);
    }
    cmd.args(["--data", data.to_str().unwrap(), "report"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Writes the samples' report in `format` to `<dir>/report.<format>`;
/// returns its text.
fn sample_report(dir: &Path, data: &Path, format: &str, extra: &[&str]) -> String {
    let out_path = dir.join(format!("report.{format}"));
    let mut args = vec![
        "--from",
        FROM,
        "--to",
        TO,
        "--format",
        format,
        "--out",
        out_path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = report(Some(&samples_config()), data, &args);
    assert!(out.status.success(), "report failed: {}", stderr(&out));
    let summary: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object: {e}"));
    assert_eq!(summary["format"], format);
    assert_eq!(summary["out"], out_path.to_str().unwrap());
    std::fs::read_to_string(&out_path).unwrap()
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// RFC 4180: fields separated by commas, records by CRLF, quoted fields
/// may hold commas, CR, LF and doubled quotes. Panics on malformed input.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if at_field_start => {
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some(c) => field.push(c),
                        None => panic!("unterminated quoted field"),
                    }
                }
                at_field_start = false;
                match chars.peek() {
                    Some(',') | Some('\r') | None => {}
                    other => panic!("text after a closing quote: {other:?}"),
                }
            }
            '"' => panic!("a quote inside an unquoted field: {field:?}"),
            ',' => {
                record.push(std::mem::take(&mut field));
                at_field_start = true;
            }
            '\r' => {
                assert_eq!(chars.next(), Some('\n'), "CR without LF");
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                at_field_start = true;
            }
            '\n' => panic!("bare LF outside quotes"),
            c => {
                field.push(c);
                at_field_start = false;
            }
        }
    }
    assert!(
        field.is_empty() && record.is_empty(),
        "the last record has no CRLF"
    );
    records
}

#[test]
fn json_holds_every_app_and_tenant_of_the_ground_truth() {
    let (dir, data) = ingested_samples();
    let text = sample_report(dir.path(), &data, "json", &[]);
    let v: Value = serde_json::from_str(&text).unwrap();
    let truth = ground_truth();

    assert_eq!(v["header"]["from"], FROM);
    assert_eq!(v["header"]["to"], TO);
    assert_eq!(v["header"]["days"], 14);
    assert_eq!(v["header"]["tenant"], Value::Null);
    assert!(v["header"]["generated_at"].as_str().unwrap().ends_with('Z'));
    assert!(v["header"]["registry"]
        .as_str()
        .unwrap()
        .ends_with("registry.toml"));
    // Every configured source delivered events, each named with its format.
    let sources: BTreeSet<String> = v["header"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert!(s["format"].is_string(), "{s}");
            s["source"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(sources.len(), 9, "{sources:?}");
    assert_eq!(v["header"]["sources_without_events"], serde_json::json!([]));
    let access_events: u64 = v["header"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["stream"] == "access")
        .map(|s| s["events"].as_u64().unwrap())
        .sum();
    assert_eq!(access_events, truth["events"]["access"].as_u64().unwrap());
    assert_eq!(v["summary"]["calls"], truth["events"]["access"]);

    let apps = v["matrix"]["apps"].as_array().unwrap();
    let cells = truth["matrix"].as_array().unwrap();
    assert!(cells.len() >= 20);
    for cell in cells {
        let (client, tenant) = (
            cell["client_id"].as_str().unwrap(),
            cell["tenant"].as_str().unwrap(),
        );
        let app = apps
            .iter()
            .find(|a| a["client_id"] == client && a["tenant"] == tenant)
            .unwrap_or_else(|| panic!("no report row for {client} in {tenant}"));
        let granted: BTreeSet<String> = app["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["granted"] == true)
            .map(|r| r["scope"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            granted,
            strings(&cell["granted"]),
            "granted, {client} in {tenant}"
        );
        assert_eq!(app["calls"], cell["calls"], "calls, {client} in {tenant}");
        for key in [
            "creep",
            "suggestion",
            "versions",
            "stale",
            "requested_known",
        ] {
            assert!(
                !app[key].is_null(),
                "{key} missing for {client} in {tenant}"
            );
        }
    }
    // The summary agrees with the matrix.
    assert_eq!(
        v["summary"]["app_tenants"].as_u64().unwrap() as usize,
        apps.len()
    );
    let mut by_class: BTreeMap<String, u64> = BTreeMap::new();
    for a in apps {
        for r in a["scopes"].as_array().unwrap() {
            *by_class
                .entry(r["class"].as_str().unwrap().into())
                .or_default() += 1;
        }
    }
    for (class, n) in &by_class {
        assert_eq!(v["summary"]["scopes_by_class"][class], *n, "{class}");
    }
    // Daily calls add up to the allowed and denied calls.
    let daily_total: u64 = v["daily_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let date = d["date"].as_str().unwrap();
            assert!((FROM..=TO).contains(&date), "{date} outside the window");
            d["allowed"].as_u64().unwrap() + d["denied"].as_u64().unwrap()
        })
        .sum();
    let denied: u64 = apps
        .iter()
        .map(|a| a["denied_calls"].as_u64().unwrap())
        .sum();
    assert!(daily_total <= v["summary"]["calls"].as_u64().unwrap());
    assert!(daily_total >= denied);
    // Registry entries for the registered apps.
    let registered: BTreeSet<&str> = apps
        .iter()
        .filter(|a| a["registered"] == true)
        .map(|a| a["client_id"].as_str().unwrap())
        .collect();
    let entries: BTreeSet<&str> = v["registry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["client_id"].as_str().unwrap())
        .collect();
    assert_eq!(entries, registered);
}

#[test]
fn filters_narrow_the_report_to_one_tenant_and_app() {
    let (dir, data) = ingested_samples();
    let text = sample_report(
        dir.path(),
        &data,
        "json",
        &[
            "--tenant",
            "north",
            "--app",
            "cardio-insight",
            "--stale-after-days",
            "3",
        ],
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    let apps = v["matrix"]["apps"].as_array().unwrap();
    assert_eq!(apps.len(), 1, "{apps:?}");
    assert_eq!(apps[0]["client_id"], "cardio-insight");
    assert_eq!(apps[0]["tenant"], "north");
    assert_eq!(v["header"]["tenant"], "north");
    assert_eq!(v["header"]["app"], "cardio-insight");
    assert_eq!(v["header"]["stale_after_days"], 3);
    assert_eq!(v["matrix"]["stale_after_days"], 3);
    let truth = ground_truth();
    let cell = truth["matrix"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client_id"] == "cardio-insight" && c["tenant"] == "north")
        .unwrap();
    assert_eq!(apps[0]["calls"], cell["calls"]);
    assert!(v["daily_calls"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["client_id"] == "cardio-insight"));
}

#[test]
fn csv_has_one_row_per_scope_and_its_quoting_holds() {
    let (dir, data) = ingested_samples();
    let json: Value = serde_json::from_str(&sample_report(dir.path(), &data, "json", &[])).unwrap();
    let csv = sample_report(dir.path(), &data, "csv", &[]);
    let records = parse_csv(&csv);
    let header = &records[0];
    assert_eq!(
        header,
        &scopewatch_analytics::report::CSV_COLUMNS
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    );
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let apps = json["matrix"]["apps"].as_array().unwrap();
    let scope_rows: usize = apps
        .iter()
        .map(|a| a["scopes"].as_array().unwrap().len())
        .sum();
    assert!(apps
        .iter()
        .all(|a| !a["scopes"].as_array().unwrap().is_empty()));
    assert_eq!(records.len() - 1, scope_rows, "one CSV row per scope row");
    for r in &records[1..] {
        assert_eq!(r.len(), header.len(), "{r:?}");
    }
    // Every scope row of the JSON is a CSV row with the same facts.
    let csv_rows: BTreeMap<(String, String, String), &Vec<String>> = records[1..]
        .iter()
        .map(|r| {
            (
                (
                    r[col("client_id")].clone(),
                    r[col("tenant")].clone(),
                    r[col("scope")].clone(),
                ),
                r,
            )
        })
        .collect();
    assert_eq!(csv_rows.len(), scope_rows, "app x tenant x scope is unique");
    for a in apps {
        for s in a["scopes"].as_array().unwrap() {
            let key = (
                a["client_id"].as_str().unwrap().to_string(),
                a["tenant"].as_str().unwrap().to_string(),
                s["scope"].as_str().unwrap().to_string(),
            );
            let r = csv_rows
                .get(&key)
                .unwrap_or_else(|| panic!("no CSV row {key:?}"));
            assert_eq!(r[col("class")], s["class"].as_str().unwrap());
            assert_eq!(r[col("scope_calls")], s["calls"].to_string());
            assert_eq!(r[col("granted")], s["granted"].to_string());
            assert_eq!(
                r[col("requested")],
                s["requested"]
                    .as_bool()
                    .map(|b| b.to_string())
                    .unwrap_or_default()
            );
            assert_eq!(r[col("app_calls")], a["calls"].to_string());
            assert_eq!(r[col("creep_score")], a["creep"]["score"].to_string());
            assert_eq!(r[col("from")], FROM);
            assert_eq!(
                r[col("suggested_scopes")],
                strings(&a["suggestion"]["scopes"])
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
    }
    // A field with "; " and ": " (new scopes by version) survives as one field.
    assert!(records[1..]
        .iter()
        .any(|r| r[col("new_scopes_by_version")].contains(": ")));
}

/// Sections, charts and nothing fetched from elsewhere.
fn assert_self_contained_report(html: &str) {
    for id in [
        "summary",
        "matrix",
        "suggestions",
        "stale",
        "drift",
        "method",
    ] {
        assert!(
            html.contains(&format!("<section id=\"{id}\">")),
            "section {id} missing"
        );
    }
    assert!(html.matches("<svg").count() >= 2, "charts missing");
    let lower = html.to_ascii_lowercase();
    for bad in [
        "<script",
        "<link",
        "<img",
        "<iframe",
        "<object",
        "<embed",
        "@import",
        "url(",
        "src=\"http",
        "href=\"http",
        "src=\"//",
        "href=\"//",
    ] {
        assert!(!lower.contains(bad), "the page has {bad:?}");
    }
    // The only URL is the SVG namespace, an identifier that is never fetched.
    let rest = lower.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    assert!(
        !rest.contains("http://") && !rest.contains("https://"),
        "a URL in the page"
    );
}

#[test]
fn html_has_the_sections_and_charts_and_loads_nothing() {
    let (dir, data) = ingested_samples();
    let html = sample_report(dir.path(), &data, "html", &[]);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_self_contained_report(&html);
    for words in [
        "Quarterly scope report",
        "Least-privilege suggestions",
        "Stale and dormant apps",
        "Drift by version",
        "Scope-creep score",
        "What the logs could not tell",
        "100 × Σ(weight × excess) / Σ(weight)",
    ] {
        assert!(html.contains(words), "{words:?} missing");
    }
    // Every app x tenant of the truth has its section, with its class badges
    // in words as well as colour.
    for cell in ground_truth()["matrix"].as_array().unwrap() {
        let heading = format!(
            "<code>{}</code> <span class=\"tenant\">in {}</span>",
            cell["client_id"].as_str().unwrap(),
            cell["tenant"].as_str().unwrap()
        );
        assert!(html.contains(&heading), "{heading} missing");
    }
    assert!(html.contains("<span class=\"badge c-used\">used</span>"));
    assert!(html.contains("<span class=\"badge c-unapproved\">unapproved</span>"));
}

/// An ecosystem whose registry and logs hold markup and CSV metacharacters:
/// (temp dir, config, data dir).
fn hostile_ecosystem() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("registry.toml"),
        r#"version = 1

[[app]]
client_id = "<script>alert(1)</script>"
name = 'Evil "App", <b>Inc</b> & Co'
owner = "<i>owner</i>"
contact = "owner@example.org"
tier = 4
status = "active"
tenants = ["north"]
approved_scopes = ["launch", "openid", "patient/Observation.rs"]
"#,
    )
    .unwrap();
    let client = "<script>alert(1)</script>";
    let lines = [
        serde_json::json!({"stream": "auth", "ts": "2026-11-10T10:00:00Z", "tenant": "north", "kind": "authorize",
            "client_id": client, "app_version": "1.0<b>", "user": "u1", "patient": "p1",
            "scopes_requested": "launch openid patient/Observation.rs patient/<img_src=x>.rs"}),
        serde_json::json!({"stream": "auth", "ts": "2026-11-10T10:00:01Z", "tenant": "north", "kind": "token",
            "client_id": client, "user": "u1", "patient": "p1", "grant_type": "authorization_code",
            "token": "opaque-token-1",
            "scopes_granted": "launch openid patient/Observation.rs patient/<img_src=x>.rs"}),
        serde_json::json!({"stream": "access", "ts": "2026-11-10T10:01:00Z", "tenant": "north",
            "client_id": client, "token": "Bearer opaque-token-1", "method": "GET",
            "path": "/fhir/Observation?patient=p1", "status": 200,
            "scopes": "launch openid patient/Observation.rs"}),
    ];
    let mut ndjson = String::new();
    for l in lines {
        ndjson.push_str(&l.to_string());
        ndjson.push('\n');
    }
    std::fs::create_dir_all(d.join("logs")).unwrap();
    std::fs::write(d.join("logs/events.ndjson"), ndjson).unwrap();
    std::fs::write(
        d.join("scopewatch.toml"),
        r#"data_dir = "data"
registry = "registry.toml"

[[source]]
name = "canonical"
format = "scopewatch"
paths = ["logs/*.ndjson"]
tenant = "north"
"#,
    )
    .unwrap();
    let config = d.join("scopewatch.toml");
    let data = d.join("data");
    ingest(&config, &data);
    (dir, config, data)
}

#[test]
fn html_and_csv_keep_markup_from_logs_and_registry_inert() {
    let (dir, config, data) = hostile_ecosystem();
    let html_path = dir.path().join("r.html");
    let out = report(
        Some(&config),
        &data,
        &[
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-30",
            "--out",
            html_path.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert_self_contained_report(&html);
    for raw in ["<b>Inc", "<i>owner", "<img_src", "1.0<b>"] {
        assert!(!html.contains(raw), "{raw:?} is in the page unescaped");
    }
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("Evil &quot;App&quot;, &lt;b&gt;Inc&lt;/b&gt; &amp; Co"));
    assert!(html.contains("&lt;i&gt;owner&lt;/i&gt;"));
    assert!(
        html.contains("patient/&lt;img_src=x&gt;.rs"),
        "the logged scope, escaped"
    );

    // The renderer escapes the same way without the binary.
    let app_json = serde_json::from_str::<Value>(
        &String::from_utf8(
            report(
                Some(&config),
                &data,
                &[
                    "--from",
                    "2026-11-01",
                    "--to",
                    "2026-11-30",
                    "--format",
                    "json",
                    "--out",
                    dir.path().join("r.json").to_str().unwrap(),
                ],
            )
            .stdout,
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(app_json["app_tenants"], 1);
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    let app = &v["matrix"]["apps"][0];
    assert_eq!(app["client_id"], "<script>alert(1)</script>");
    let unapproved: Vec<&Value> = app["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["class"] == "unapproved")
        .collect();
    assert_eq!(unapproved.len(), 1, "{}", app["scopes"]);
    assert_eq!(unapproved[0]["scope"], "patient/<img_src=x>.rs");

    let csv_path = dir.path().join("r.csv");
    let out = report(
        Some(&config),
        &data,
        &[
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-30",
            "--out",
            csv_path.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let records = parse_csv(&std::fs::read_to_string(&csv_path).unwrap());
    let header = &records[0];
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(records.len() - 1, app["scopes"].as_array().unwrap().len());
    for r in &records[1..] {
        assert_eq!(r[col("client_id")], "<script>alert(1)</script>");
        assert_eq!(r[col("name")], "Evil \"App\", <b>Inc</b> & Co");
        assert_eq!(r[col("versions")], "1.0<b>");
    }
}

#[test]
fn the_renderer_escapes_and_neutralises_by_itself() {
    use scopewatch_analytics::matrix::{
        AppTenant, CreepScore, ScopeMatrix, Suggestion, VersionRow,
    };
    use scopewatch_analytics::report::{
        csv_field, to_html, write_csv, DailyCalls, Report, ReportHeader, SourceSeen,
    };
    let app = AppTenant {
        client_id: "=cmd|' /C calc'!A0<x>".into(),
        tenant: "north&<b>".into(),
        name: None,
        registered: false,
        status: None,
        too_new_to_judge: false,
        calls: 3,
        denied_calls: 1,
        patients: 1,
        grants: 1,
        refreshes: 0,
        last_call: Some("2026-11-20T10:00:00Z".into()),
        last_grant: None,
        stale: true,
        offline_without_refresh: false,
        grants_without_calls: false,
        requested_known: false,
        scopes: Vec::new(),
        suggestion: Suggestion {
            scopes: vec!["patient/<x>.rs".into()],
            remove_from_approved: vec![],
            add_to_approved: vec!["patient/<x>.rs".into()],
            remove_from_granted: vec![],
        },
        versions: vec![VersionRow {
            version: "1.0<b>".into(),
            calls: 3,
            requested: vec![],
            new_scopes: vec!["user/<i>.rs".into()],
            approved_version: None,
        }],
        creep: CreepScore {
            score: 0,
            band: "low",
        },
    };
    let matrix = ScopeMatrix {
        from: FROM.into(),
        to: TO.into(),
        stale_after_days: 30,
        apps: vec![app],
    };
    let header = ReportHeader {
        from: FROM.into(),
        to: TO.into(),
        days: 14,
        tenant: None,
        app: Some("=cmd|' /C calc'!A0<x>".into()),
        generated_at: "2026-11-21T00:00:00Z".into(),
        generator: "scopewatch test".into(),
        registry: "reg<istry>.toml".into(),
        stale_after_days: 30,
        observation_window_days: 90,
        sources: vec![SourceSeen {
            source: "gw<1>".into(),
            format: Some("nginx".into()),
            stream: "access".into(),
            events: 3,
            first_event: None,
            last_event: None,
        }],
        sources_without_events: vec!["idle&source".into()],
    };
    let registry =
        scopewatch_model::registry::Registry::from_toml_str("version = 1\n", "r.toml").unwrap();
    let daily = vec![DailyCalls {
        date: "2026-11-08".into(),
        client_id: "=cmd|' /C calc'!A0<x>".into(),
        allowed: 3,
        denied: 1,
    }];
    let r = Report::new(header, &registry, daily, matrix);
    let html = to_html(&r).unwrap();
    assert_self_contained_report(&html);
    for raw in [
        "<x>",
        "north&<b>",
        "1.0<b>",
        "user/<i>",
        "gw<1>",
        "reg<istry>",
    ] {
        assert!(!html.contains(raw), "{raw:?} is in the page unescaped");
    }
    assert!(html.contains("1.0&lt;b&gt;") && html.contains("user/&lt;i&gt;.rs"));
    assert!(html.contains("patient/&lt;x&gt;.rs") && html.contains("reg&lt;istry&gt;.toml"));
    assert!(html.contains("=cmd|' /C calc'!A0&lt;x&gt;"));
    assert!(html.contains("north&amp;&lt;b&gt;"));
    assert!(html.contains("gw&lt;1&gt;") && html.contains("idle&amp;source"));
    // The charts name the app too: plotters escapes its SVG text.
    assert!(
        html.matches("A0&lt;x&gt;").count() >= 3,
        "charts and tables"
    );

    // An app x tenant without scope rows still has its CSV row, and a value
    // a spreadsheet would run as a formula is neutralised.
    let mut out = Vec::new();
    write_csv(&r, &mut out).unwrap();
    let records = parse_csv(&String::from_utf8(out).unwrap());
    assert_eq!(records.len(), 2);
    assert_eq!(records[1][3], "'=cmd|' /C calc'!A0<x>");
    assert_eq!(records[1][2], "north&<b>");
    assert_eq!(csv_field("a,b"), "\"a,b\"");
    assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(csv_field("two\r\nlines"), "\"two\r\nlines\"");
    assert_eq!(csv_field("+1"), "'+1");
    assert_eq!(csv_field("-x"), "'-x");
    assert_eq!(csv_field("@sum"), "'@sum");
    assert_eq!(csv_field(""), "");
}

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Takes a screenshot of `html` with headless Chromium; panics (with what
/// to do) when Chromium is missing or fails.
fn screenshot(html: &Path, png: &Path, profile: &Path) {
    let browser = chromium().unwrap_or_else(|| {
        panic!(
            "chromium is not installed, so the report cannot be checked in a real browser: \
             run scripts/setup.sh (it installs Debian's chromium), then run the tests again"
        )
    });
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1200,1600")
        .arg(format!("file://{}", html.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            assert!(status.success(), "chromium failed ({status}): {err}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium took more than 120 s for one screenshot");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_html_report_renders_in_headless_chromium() {
    let (dir, data) = ingested_samples();
    sample_report(dir.path(), &data, "html", &[]);
    let html = dir.path().join("report.html").canonicalize().unwrap();
    let png = dir.path().join("report.png");
    screenshot(&html, &png, &dir.path().join("chromium-profile"));

    let size = std::fs::metadata(&png)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()))
        .len();
    assert!(size > 20_000, "screenshot of only {size} bytes");
    let decoder = png::Decoder::new(BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1200, 1600));
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let pixels: Vec<&[u8]> = buf[..info.line_size * info.height as usize]
        .chunks(channels)
        .collect();
    let colours: BTreeSet<[u8; 3]> = pixels.iter().map(|p| [p[0], p[1], p[2]]).collect();
    let ink = pixels
        .iter()
        .filter(|p| p[0] < 200 || p[1] < 200 || p[2] < 200)
        .count();
    let share = ink as f64 / pixels.len() as f64;
    assert!(
        colours.len() > 50,
        "only {} colours: a blank page?",
        colours.len()
    );
    assert!(
        (0.02..0.8).contains(&share),
        "{:.1}% of the page is ink: not a rendered report",
        share * 100.0
    );
    // The badges' colours are on the first screen (the class table).
    for (name, rgb) in [
        ("used", [0x2e, 0x7d, 0x32]),
        ("unapproved", [0xc6, 0x28, 0x28]),
    ] {
        assert!(colours.contains(&rgb), "no {name} badge colour on screen");
    }
}

fn assert_fails_with(out: &Output, words: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "exit status; stderr: {err}");
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    for w in words {
        assert!(err.contains(w), "{w:?} not in: {err}");
    }
}

#[test]
fn bad_input_exits_2_with_a_message_that_says_what_to_do() {
    let (dir, data) = ingested_samples();
    let out_path = dir.path().join("never.html");
    let out = out_path.to_str().unwrap();
    let config = samples_config();

    let r = report(
        Some(&config),
        &data,
        &["--from", TO, "--to", FROM, "--out", out],
    );
    assert_fails_with(
        &r,
        &["inverted", "--from 2026-11-20 is after --to 2026-11-07"],
    );

    let r = report(
        Some(&config),
        &data,
        &["--from", "2026-11-31", "--to", TO, "--out", out],
    );
    assert_fails_with(&r, &["--from \"2026-11-31\"", "YYYY-MM-DD"]);

    let r = report(
        Some(&config),
        &data,
        &["--from", FROM, "--to", TO, "--tenant", "nort", "--out", out],
    );
    assert_fails_with(
        &r,
        &["unknown tenant \"nort\"", "east, north, south", "--tenant"],
    );

    let r = report(
        Some(&config),
        &data,
        &[
            "--from",
            FROM,
            "--to",
            TO,
            "--app",
            "cardio-insigth",
            "--out",
            out,
        ],
    );
    assert_fails_with(
        &r,
        &["unknown app \"cardio-insigth\"", "cardio-insight", "--app"],
    );

    let empty = dir.path().join("empty-data");
    std::fs::create_dir_all(&empty).unwrap();
    let r = report(
        Some(&config),
        &empty,
        &["--from", FROM, "--to", TO, "--out", out],
    );
    assert_fails_with(&r, &["empty", "ingest"]);

    // No config, so no registry.
    let r = report(None, &data, &["--from", FROM, "--to", TO, "--out", out]);
    assert_fails_with(&r, &["no app registry", "--registry FILE", "`registry"]);

    let missing = dir.path().join("no-such-registry.toml");
    let r = report(
        None,
        &data,
        &[
            "--from",
            FROM,
            "--to",
            TO,
            "--registry",
            missing.to_str().unwrap(),
            "--out",
            out,
        ],
    );
    assert_fails_with(
        &r,
        &["cannot read the app registry", "no-such-registry.toml"],
    );

    let r = report(
        Some(&config),
        &data,
        &[
            "--from",
            FROM,
            "--to",
            TO,
            "--out",
            dir.path().join("r.txt").to_str().unwrap(),
        ],
    );
    assert_fails_with(&r, &["--format html, csv or json"]);

    let r = report(
        Some(&config),
        &data,
        &[
            "--from",
            FROM,
            "--to",
            TO,
            "--out",
            dir.path().join("no/such/dir/r.html").to_str().unwrap(),
        ],
    );
    assert_fails_with(&r, &["does not exist"]);

    assert!(!out_path.exists(), "a failed report wrote its file");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn an_existing_report_is_replaced_whole() {
    let (dir, data) = ingested_samples();
    let path = dir.path().join("report.csv");
    {
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&vec![b'x'; 1_000_000]).unwrap();
    }
    let csv = sample_report(dir.path(), &data, "csv", &[]);
    assert!(csv.starts_with("from,to,tenant,client_id,"));
    assert!(!csv.contains("xxxx"));
}
