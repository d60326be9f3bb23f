//! The data pages over a real lake of the committed samples: overview,
//! apps, app detail, tenants and reports, as HTML and JSON, checked
//! against DuckDB's own reading of the same lake; tenant isolation on
//! every one of them; log content crafted as HTML; filter values crafted
//! as SQL.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{get, get_bearer, login, Server};
use scopewatch_dashboard::Role;

/// Distinct values of a column over both streams, read by DuckDB straight
/// from the lake (not through the dashboard).
fn lake_distinct(data: &Path, column: &str, tenant: Option<&str>) -> BTreeSet<String> {
    let lake = scopewatch_analytics::Lake::open(data, &Default::default()).unwrap();
    let sql = format!(
        "SELECT DISTINCT {column} FROM (SELECT {column}, tenant FROM access UNION ALL SELECT {column}, tenant FROM auth) \
         WHERE {column} IS NOT NULL AND (CAST(? AS VARCHAR) IS NULL OR tenant = CAST(? AS VARCHAR))"
    );
    let mut stmt = lake.connection().prepare(&sql).unwrap();
    let rows = stmt
        .query_map(duckdb_params(tenant), |r| r.get::<_, String>(0))
        .unwrap();
    rows.map(Result::unwrap).collect()
}

fn duckdb_params(tenant: Option<&str>) -> [Option<String>; 2] {
    [tenant.map(str::to_string), tenant.map(str::to_string)]
}

fn session(server: &Server, name: &str, roles: &[Role], tenants: &[&str]) -> String {
    server.add_user(name, roles, tenants, "correct horse battery staple");
    let (_, cookie) = login(server, name, "correct horse battery staple");
    cookie.expect("logged in")
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).expect("JSON")
}

fn api_client_ids(server: &Server, cookie: &str, query: &str) -> BTreeSet<String> {
    let r = get(&server.url(&format!("/api/apps{query}")), Some(cookie));
    assert_eq!(r.status, 200, "{}", r.body);
    json(&r.body)["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["client_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn pages_show_the_lake_and_match_duckdb() {
    let server = Server::start_with_samples();
    let cookie = session(&server, "ada", &[Role::Admin], &[]);

    // Every app of the lake is listed (the registry may add apps without events).
    let listed = api_client_ids(&server, &cookie, "");
    let in_lake = lake_distinct(server.data_dir(), "client_id", None);
    assert!(!in_lake.is_empty());
    assert!(
        in_lake.is_subset(&listed),
        "missing: {:?}",
        in_lake.difference(&listed).collect::<Vec<_>>()
    );

    // The overview counts what the lake holds in the window.
    let r = get(&server.url("/api/overview"), Some(&cookie));
    assert_eq!(r.status, 200);
    let o = json(&r.body);
    let lake = scopewatch_analytics::Lake::open(server.data_dir(), &Default::default()).unwrap();
    let (from, to) = (o["from"].as_str().unwrap(), o["to"].as_str().unwrap());
    let events: i64 = lake
        .connection()
        .query_row(
            "SELECT (SELECT count(*) FROM access WHERE ts >= CAST($1 AS DATE) AND ts < CAST($2 AS DATE) + 1) \
                  + (SELECT count(*) FROM auth WHERE ts >= CAST($1 AS DATE) AND ts < CAST($2 AS DATE) + 1)",
            [from, to],
            |r| r.get(0),
        )
        .unwrap();
    assert!(events > 1000, "the samples hold thousands of events");
    assert_eq!(o["events"].as_i64().unwrap(), events);
    let sources: BTreeSet<&str> = o["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert!(sources.contains("keycloak") && sources.contains("fhir-kong"));

    let page = get(&server.url("/"), Some(&cookie));
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<svg"), "the events chart is inline SVG");
    assert!(page.body.contains("id=\"sources\""));
    assert!(page.body.contains("id=\"bands\""));

    // An app page shows its matrix, its classes and its suggestion.
    let app = in_lake.iter().next().unwrap().clone();
    let r = get(&server.url(&format!("/api/apps/{app}")), Some(&cookie));
    assert_eq!(r.status, 200);
    let detail = json(&r.body);
    let tenants = detail["tenants"].as_array().unwrap();
    assert!(!tenants.is_empty());
    let page = get(&server.url(&format!("/apps/{app}")), Some(&cookie));
    assert_eq!(page.status, 200);
    for t in tenants {
        for s in t["scopes"].as_array().unwrap() {
            let scope = s["scope"].as_str().unwrap();
            assert!(page.body.contains(scope), "{scope} is shown");
        }
        let suggestion = t["suggestion"]["scopes"].as_array().unwrap();
        let joined: Vec<&str> = suggestion.iter().map(|s| s.as_str().unwrap()).collect();
        assert!(page.body.contains(&joined.join(" ")));
    }
    assert!(page.body.contains("data-copy="), "the copy button");

    // Tenants and their denied rates.
    let r = get(&server.url("/api/tenants"), Some(&cookie));
    let rows = json(&r.body)["tenants"].as_array().unwrap().clone();
    let names: BTreeSet<String> = rows
        .iter()
        .map(|t| t["tenant"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        ["east", "north", "south"].map(String::from).into(),
        "the samples' tenants"
    );
    for page_path in ["/tenants", "/tenants/north", "/apps?sort=name&dir=asc"] {
        assert_eq!(
            get(&server.url(page_path), Some(&cookie)).status,
            200,
            "{page_path}"
        );
    }
    assert_eq!(
        get(&server.url("/apps/no-such-app"), Some(&cookie)).status,
        404
    );
    assert_eq!(
        get(&server.url("/tenants/no-such"), Some(&cookie)).status,
        404
    );
}

#[test]
fn a_tenant_limited_user_sees_nothing_of_other_tenants() {
    let server = Server::start_with_samples();
    let cookie = session(&server, "nora", &[Role::Compliance], &["north"]);
    let admin = session(&server, "ada", &[Role::Admin], &[]);

    let north = lake_distinct(server.data_dir(), "client_id", Some("north"));
    let listed = api_client_ids(&server, &cookie, "");
    // Apps listed are the apps of north only: the lake's and the registry's.
    let all = api_client_ids(&server, &admin, "");
    assert!(north.is_subset(&listed));
    assert!(listed.len() < all.len(), "other tenants' apps are hidden");

    // An app seen only in another tenant is a 404 on the page and the API.
    let south_only: Vec<String> = lake_distinct(server.data_dir(), "client_id", Some("south"))
        .difference(&north)
        .cloned()
        .collect();
    assert!(!south_only.is_empty(), "the samples have south-only apps");
    for app in &south_only {
        assert_eq!(
            get(&server.url(&format!("/apps/{app}")), Some(&cookie)).status,
            404
        );
        assert_eq!(
            get(&server.url(&format!("/api/apps/{app}")), Some(&cookie)).status,
            404
        );
        assert!(!listed.contains(app));
    }
    // An app in both: only its north rows.
    let r = get(&server.url("/api/apps"), Some(&cookie));
    for a in json(&r.body)["apps"].as_array().unwrap() {
        assert_eq!(a["tenants"], serde_json::json!(["north"]), "{a}");
    }
    for path in ["/api/tenants", "/api/overview"] {
        let body = get(&server.url(path), Some(&cookie)).body;
        assert!(
            !body.contains("\"south\"") && !body.contains("\"east\""),
            "{path}: {body}"
        );
    }
    for path in ["/", "/apps", "/tenants", "/tenants/north", "/reports"] {
        let r = get(&server.url(path), Some(&cookie));
        assert_eq!(r.status, 200, "{path}");
        assert!(
            !r.body.contains(">south<") && !r.body.contains(">east<"),
            "{path}"
        );
    }
    assert_eq!(
        get(&server.url("/tenants/south"), Some(&cookie)).status,
        404
    );

    // Reports: another tenant's is a 404, every tenant at once is refused,
    // their own holds only their tenant's rows.
    let q = "/reports/download?from=2026-11-01&to=2026-11-30&format=csv";
    assert_eq!(
        get(&server.url(&format!("{q}&tenant=south")), Some(&cookie)).status,
        404
    );
    assert_eq!(get(&server.url(q), Some(&cookie)).status, 400);
    let r = get(&server.url(&format!("{q}&tenant=north")), Some(&cookie));
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-disposition")
        .unwrap()
        .starts_with("attachment"));
    let mut lines = r.body.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header
        .iter()
        .position(|h| *h == "tenant")
        .expect("a tenant column");
    let mut rows = 0;
    for line in lines {
        assert_eq!(line.split(',').nth(col), Some("north"), "{line}");
        rows += 1;
    }
    assert!(rows > 10, "the north report has rows");
    // The same through an API token of a limited user.
    let (_, token) = server
        .state
        .users
        .create_token("nora", "test")
        .expect("token");
    let r = get_bearer(&server.url("/api/apps"), &token);
    assert_eq!(r.status, 200);
    assert!(!r.body.contains("\"south\""));
}

#[test]
fn filters_crafted_as_sql_only_filter() {
    let server = Server::start_with_samples();
    let cookie = session(&server, "ada", &[Role::Admin], &[]);
    for q in [
        "?q=%27%20OR%201%3D1%20--",
        "?tenant=north%27%20OR%20%271%27%3D%271",
        "?band=high%22%3B%20DROP%20TABLE%20access%3B--",
    ] {
        assert!(api_client_ids(&server, &cookie, q).is_empty(), "{q}");
        let r = get(&server.url(&format!("/apps{q}")), Some(&cookie));
        assert_eq!(r.status, 200);
        assert!(r.body.contains("No app matches."));
    }
    // A report for a tenant named like an injection is a report of nothing.
    let r = get(
        &server.url(
            "/api/reports?from=2026-11-01&to=2026-11-30&format=json&tenant=north%27%20OR%20%271%27%3D%271",
        ),
        Some(&cookie),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let report = json(&r.body);
    assert_eq!(
        report["summary"]["calls"].as_u64(),
        Some(0),
        "{}",
        report["summary"]
    );
    // And the lake is still whole.
    assert!(!api_client_ids(&server, &cookie, "").is_empty());
    // Bad report input gets a clear 400.
    for (q, says) in [
        ("from=2026-12-01&to=2026-11-01", "inverted"),
        ("from=yesterday&to=2026-11-01", "YYYY-MM-DD"),
        (
            "from=2026-11-01&to=2026-11-30&format=pdf",
            "html, csv or json",
        ),
    ] {
        let r = get(
            &server.url(&format!("/reports/download?{q}")),
            Some(&cookie),
        );
        assert_eq!(r.status, 400, "{q}");
        assert!(r.body.contains(says), "{q}: {}", r.body);
    }
}

/// Log content crafted as HTML renders as text on every data page.
#[test]
fn log_content_renders_as_text() {
    const EVIL_APP: &str = "<script>alert(1)</script>";
    const EVIL_UA: &str = "Evil\"Agent' <b onmouseover=alert(2)>x</b>";
    let server = Server::start_with(|data| {
        let dir = data.parent().unwrap().join("logs");
        std::fs::create_dir_all(&dir).unwrap();
        let mut lines = String::new();
        for i in 0..5 {
            let line = serde_json::json!({
                "stream": "access", "ts": 1_795_428_060_250i64 + i * 1000, "tenant": "north", "env": "prod",
                "client_id": EVIL_APP, "method": "GET", "path": "/fhir/r4/north/Patient/p1",
                "status": 200, "ip": "10.1.2.3", "user_agent": EVIL_UA,
                "scopes": "patient/Patient.r",
            });
            lines.push_str(&line.to_string());
            lines.push('\n');
        }
        std::fs::write(dir.join("evil.ndjson"), lines).unwrap();
        let text = format!(
            "data_dir = {:?}\n[[source]]\nname = \"evil\"\nformat = \"scopewatch\"\npaths = [{:?}]\n",
            data.display().to_string(),
            dir.join("*.ndjson").display().to_string()
        );
        let config = scopewatch_model::config::Config::from_toml_str(&text, "test", data).unwrap();
        let mut ingest = scopewatch_ingest::pipeline::Ingest::open(
            &config.sources,
            scopewatch_ingest::pipeline::IngestOptions::from_config(&config),
        )
        .unwrap();
        ingest
            .run_to_end(&std::sync::atomic::AtomicBool::new(false), |_| {})
            .unwrap();
        None
    });
    let cookie = session(&server, "ada", &[Role::Admin], &[]);
    let listed = api_client_ids(&server, &cookie, "");
    assert!(
        listed.contains(EVIL_APP),
        "the crafted app is in the lake: {listed:?}"
    );
    let app_path = format!(
        "/apps/{}",
        EVIL_APP
            .bytes()
            .map(|b| format!("%{b:02X}"))
            .collect::<String>()
    );
    for path in [
        "/",
        "/apps",
        "/tenants",
        "/tenants/north",
        app_path.as_str(),
        "/reports",
    ] {
        let r = get(&server.url(path), Some(&cookie));
        assert_eq!(r.status, 200, "{path}");
        assert!(
            !r.body.contains("<script>alert(1)"),
            "{path} has raw script"
        );
        assert!(!r.body.contains("<b onmouseover"), "{path} has raw markup");
    }
    let r = get(&server.url(&app_path), Some(&cookie));
    assert!(r.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let overview = get(&server.url("/"), Some(&cookie)).body;
    assert!(overview.contains(">evil<"), "the source is listed");

    // An alert whose evidence is those events: the evidence table and the
    // token timeline show the user agent, as text.
    let lake = scopewatch_analytics::Lake::open(server.data_dir(), &Default::default()).unwrap();
    let ids: Vec<String> = {
        let mut stmt = lake
            .connection()
            .prepare("SELECT event_id FROM access WHERE client_id = $1 ORDER BY ts")
            .unwrap();
        let rows = stmt.query_map([EVIL_APP], |r| r.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    };
    assert_eq!(ids.len(), 5);
    let mut a = common::alert(
        "al-evil",
        "distinct-ips",
        scopewatch_rules::alert::Severity::High,
        EVIL_APP,
        Some("north"),
        "2026-11-23T10:01:05Z",
    );
    a.evidence = ids;
    server.raise_alerts(&[a]);
    let r = get(&server.url("/alerts/al-evil"), Some(&cookie));
    assert_eq!(r.status, 200);
    assert!(
        r.body
            .contains("Evil&quot;Agent' &lt;b onmouseover=alert(2)&gt;x&lt;/b&gt;"),
        "the user agent is shown, escaped"
    );
    assert!(!r.body.contains("<b onmouseover") && !r.body.contains("<script>alert(1)"));
    common::assert_no_inline_code(&r.body);
}

/// Every JSON route the code serves is in the OpenAPI document the app
/// serves, and the document names no route the code lacks.
#[test]
fn the_openapi_document_covers_every_api_route() {
    let server = Server::start();
    let cookie = session(&server, "ada", &[Role::Admin], &[]);
    let r = get(&server.url("/api/openapi.json"), Some(&cookie));
    assert_eq!(r.status, 200);
    let doc = json(&r.body);
    assert_eq!(doc["openapi"], "3.1.0");
    let documented: BTreeSet<String> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|p| p.starts_with("/api/"))
        .cloned()
        .collect();
    let src = common::repo().join("dashboard/src");
    let mut served = BTreeSet::new();
    for entry in std::fs::read_dir(src).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap();
        for piece in text.split(".route(\"").skip(1) {
            let path = piece.split('"').next().unwrap();
            if path.starts_with("/api/") {
                served.insert(path.to_string());
            }
        }
    }
    assert!(served.len() > 10, "{served:?}");
    assert_eq!(documented, served);
}
