//! Integration tests of the app registry: the bundled sample, every kind of
//! problem, and the runtime lookups.

use std::path::Path;

use scopewatch_model::registry::{AppStatus, Registry, RegistryError, Tier};
use time::macros::date;

/// Read at run time, not baked in with `env!`: a test binary reused from a
/// shared target directory must find the checkout it is run from.
fn sample_path() -> std::path::PathBuf {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("run under cargo test");
    Path::new(&manifest).join("../docs/registry-example.toml")
}
const FILE: &str = "docs/registry-example.toml";

fn sample_text() -> String {
    std::fs::read_to_string(sample_path()).expect("sample registry readable")
}

fn sample() -> Registry {
    Registry::load(&sample_path()).unwrap_or_else(|e| panic!("sample must validate:\n{e}"))
}

/// The sample with `from` (which must occur) replaced once by `to`.
fn edited(from: &str, to: &str) -> String {
    let text = sample_text();
    assert!(text.contains(from), "sample no longer contains {from:?}");
    text.replacen(from, to, 1)
}

/// Loads `text`, expects a failure and returns its message.
fn error_of(text: &str) -> (RegistryError, String) {
    match Registry::from_toml_str(text, FILE) {
        Ok(_) => panic!("registry unexpectedly valid"),
        Err(e) => {
            let msg = e.to_string();
            (e, msg)
        }
    }
}

/// Asserts the error is a validation error with one line naming the file,
/// the app and the field, and containing every `parts`.
fn assert_problem(text: &str, app: &str, field: &str, parts: &[&str]) {
    let (err, msg) = error_of(text);
    assert!(
        matches!(err, RegistryError::Invalid { .. }),
        "expected a validation error, got:\n{msg}"
    );
    let prefix = format!("{FILE}: {app}: field {field}: ");
    let line = msg
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{msg}"));
    for part in parts {
        assert!(line.contains(part), "{part:?} missing from {line:?}");
    }
    assert!(
        msg.ends_with(&format!(
            "fix the registry and run `scopewatch registry check {FILE}`"
        )),
        "no advice at the end of:\n{msg}"
    );
}

fn minimal(app_body: &str) -> String {
    format!(
        r#"version = 1

[[app]]
client_id = "mini"
name = "Mini"
owner = "Team"
contact = "team@example.org"
tier = 3
status = "active"
approved_scopes = ["launch", "openid"]
{app_body}
"#
    )
}

// ---------------------------------------------------------------------------
// The sample

#[test]
fn sample_registry_loads() {
    let reg = sample();
    assert_eq!(reg.version, 1);
    assert_eq!(reg.apps.len(), 10);

    let cardio = reg
        .app("cardio-insight")
        .expect("cardio-insight registered");
    assert_eq!(cardio.name, "Cardio Insight");
    assert_eq!(cardio.owner, "Cardiology IT");
    assert_eq!(cardio.contact, "cardio-it@north.example.org");
    assert_eq!(cardio.tier, Tier::new(2).unwrap());
    assert_eq!(cardio.status, AppStatus::Active { since: None });
    assert_eq!(cardio.tenants, ["north", "south"]);
    assert_eq!(cardio.approved.len(), 7);
    assert_eq!(cardio.approved[3].raw(), "patient/Patient.r");
    assert_eq!(cardio.last_certified, Some(date!(2026 - 07 - 01)));
    assert!(cardio.tenant_overrides.contains_key("south"));

    let derm = reg.app("dermascan-ai").unwrap();
    assert_eq!(
        derm.status,
        AppStatus::Suspended {
            since: date!(2026 - 05 - 12)
        }
    );
    assert!(derm
        .status_reason
        .as_deref()
        .unwrap()
        .contains("under review"));
    let bill = reg.app("quickbill-connect").unwrap();
    assert_eq!(bill.status.as_str(), "revoked");
    assert_eq!(bill.status.since(), Some(date!(2025 - 11 - 30)));

    let companion = reg.app("my-health-companion").unwrap();
    assert!(companion.offline_access_justified());
    assert!(companion.approved.iter().any(|s| s.is_offline_access()));

    let lab = reg.app("lab-trends").unwrap();
    assert!(lab.approved.iter().any(|s| s.raw().contains("?category=")));

    assert!(reg
        .app("pop-health-export")
        .unwrap()
        .approved_versions
        .is_none());
    assert_eq!(
        reg.app("cohort-builder-pilot").unwrap().tier,
        Tier::EXPERIMENTAL
    );
    assert!(reg.app("nobody").is_none());
    assert_eq!(
        reg.tenants().into_iter().collect::<Vec<_>>(),
        ["north", "research", "south"]
    );
}

#[test]
fn sample_registry_serializes_to_readable_json() {
    let reg = sample();
    let json = serde_json::to_value(&reg).unwrap();
    let apps = json["apps"].as_array().unwrap();
    assert_eq!(apps.len(), 10);
    let derm = apps
        .iter()
        .find(|a| a["client_id"] == "dermascan-ai")
        .unwrap();
    assert_eq!(derm["status"], "suspended");
    assert_eq!(derm["status_since"], "2026-05-12");
    assert_eq!(derm["tier"], 4);
    assert_eq!(derm["approved_versions"][0], "0.9.*");
    let cardio = &apps[0];
    assert_eq!(cardio["status"], "active");
    assert!(cardio.get("status_since").is_none());
    assert_eq!(cardio["approved_scopes"][0], "launch");
    assert_eq!(
        cardio["tenant_overrides"]["south"][4],
        "patient/Observation.rs"
    );
    assert_eq!(cardio["last_certified"], "2026-07-01");
}

// ---------------------------------------------------------------------------
// Problems

#[test]
fn empty_client_id() {
    let text = edited(r#"client_id = "lab-trends""#, r#"client_id = """#);
    assert_problem(&text, "app[4]", "client_id", &["must not be empty"]);
}

#[test]
fn client_id_with_whitespace() {
    let text = edited(r#"client_id = "lab-trends""#, r#"client_id = "lab trends""#);
    assert_problem(
        &text,
        "app[4]",
        "client_id",
        &["\"lab trends\"", "whitespace"],
    );
}

#[test]
fn duplicate_client_id() {
    let text = edited(
        r#"client_id = "lab-trends""#,
        r#"client_id = "cardio-insight""#,
    );
    assert_problem(
        &text,
        "app[4]",
        "client_id",
        &["\"cardio-insight\"", "app[0]", "unique"],
    );
}

#[test]
fn empty_name_and_owner() {
    let text = edited(r#"name = "Lab Trends""#, r#"name = "  ""#);
    assert_problem(&text, r#"app "lab-trends""#, "name", &["must not be empty"]);
    let text = edited(r#"owner = "Laboratory Medicine""#, r#"owner = """#);
    assert_problem(
        &text,
        r#"app "lab-trends""#,
        "owner",
        &["must not be empty"],
    );
}

#[test]
fn contact_must_be_email_or_url() {
    let text = edited(
        r#"contact = "labmed-apps@north.example.org""#,
        r#"contact = "call Jane""#,
    );
    assert_problem(
        &text,
        r#"app "lab-trends""#,
        "contact",
        &["\"call Jane\"", "email", "URL"],
    );
}

#[test]
fn tier_out_of_range() {
    for tier in ["0", "6", "-1", "300"] {
        let text = edited("tier = 5", &format!("tier = {tier}"));
        assert_problem(
            &text,
            r#"app "cohort-builder-pilot""#,
            "tier",
            &[tier, "1 (first-party) .. 5 (experimental)"],
        );
    }
}

#[test]
fn suspended_without_date() {
    let text = edited("status_since = 2026-05-12\n", "");
    assert_problem(
        &text,
        r#"app "dermascan-ai""#,
        "status_since",
        &["required when status is \"suspended\""],
    );
    let text = edited("status_since = 2025-11-30\n", "");
    assert_problem(
        &text,
        r#"app "quickbill-connect""#,
        "status_since",
        &["required when status is \"revoked\""],
    );
}

#[test]
fn invalid_scope_names_scope_and_reason() {
    let text = edited(
        r#""patient/Observation.rs",
  "patient/Condition.rs",
  "patient/MedicationRequest.rs",
]
approved_versions = ["2.3.0""#,
        r#""patient/Observation.dus",
  "patient/Condition.rs",
  "patient/MedicationRequest.rs",
]
approved_versions = ["2.3.0""#,
    );
    assert_problem(
        &text,
        r#"app "cardio-insight""#,
        "approved_scopes[4]",
        &[
            "\"patient/Observation.dus\"",
            "permission letters out of order",
        ],
    );
}

#[test]
fn scope_list_in_one_string() {
    let text = minimal("").replace(r#"["launch", "openid"]"#, r#"["launch openid"]"#);
    assert_problem(
        &text,
        r#"app "mini""#,
        "approved_scopes[0]",
        &["\"launch openid\"", "one scope per entry"],
    );
}

#[test]
fn duplicate_scopes() {
    let text = minimal("").replace(
        r#"["launch", "openid"]"#,
        r#"["launch", "openid", "launch", "patient/Observation.rs", "patient/Observation.read"]"#,
    );
    let (_, msg) = error_of(&text);
    assert!(
        msg.contains(&format!(
            "{FILE}: app \"mini\": field approved_scopes[2]: \"launch\" is listed twice (first at approved_scopes[0])"
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "{FILE}: app \"mini\": field approved_scopes[4]: \"patient/Observation.read\" is the same scope as \"patient/Observation.rs\""
        )),
        "{msg}"
    );
}

#[test]
fn offline_access_requires_justification() {
    let text = edited(
        r#"offline_access = { justified = true, reason = "patients stay signed in on the mobile app; home readings sync nightly" }"#,
        "",
    );
    assert_problem(
        &text,
        r#"app "my-health-companion""#,
        "approved_scopes[3]",
        &["\"offline_access\" is approved", "justified = true"],
    );

    let text = minimal(r#"offline_access = { justified = false, reason = "n/a" }"#)
        .replace(r#""openid"]"#, r#""openid", "offline_access"]"#);
    assert_problem(
        &text,
        r#"app "mini""#,
        "approved_scopes[2]",
        &["not justified"],
    );

    let text = minimal("offline_access = { justified = true }");
    assert_problem(
        &text,
        r#"app "mini""#,
        "offline_access.reason",
        &["without a reason"],
    );
}

#[test]
fn offline_access_in_tenant_override_requires_justification() {
    let text = minimal(
        r#"tenants = ["north"]

[app.tenant.north]
approved_scopes = ["launch", "offline_access"]"#,
    );
    assert_problem(
        &text,
        r#"app "mini""#,
        "tenant.north.approved_scopes[1]",
        &["\"offline_access\" is approved"],
    );
}

#[test]
fn override_for_undeployed_tenant() {
    let text = edited("[app.tenant.south]", "[app.tenant.east]");
    assert_problem(
        &text,
        r#"app "cardio-insight""#,
        "tenant.east",
        &["\"east\"", "not in tenants", "[app.tenant.east]"],
    );
    // Without `tenants` the app is everywhere, so any override is fine.
    let text = minimal(
        r#"[app.tenant.anywhere]
approved_scopes = ["launch"]"#,
    );
    assert!(Registry::from_toml_str(&text, FILE).is_ok());
}

#[test]
fn invalid_scope_in_override() {
    let text = edited(
        r#"  "patient/MedicationRequest.rs",
  "patient/MedicationStatement.rs",
]"#,
        r#"  "patient/MedicationRequest.rs",
  "patient/Medication Statement.rs",
]"#,
    );
    assert_problem(
        &text,
        r#"app "medrec-reconcile""#,
        "tenant.research.approved_scopes[4]",
        &["Medication Statement"],
    );
    let text = edited(
        r#"  "patient/MedicationRequest.rs",
  "patient/MedicationStatement.rs",
]"#,
        r#"  "patient/MedicationRequest.rs",
  "patient/Medicationstatement.rs",
]"#,
    );
    assert_problem(
        &text,
        r#"app "medrec-reconcile""#,
        "tenant.research.approved_scopes[4]",
        &[
            "\"patient/Medicationstatement.rs\"",
            "not a FHIR R4 resource type",
        ],
    );
}

#[test]
fn bad_version_patterns() {
    for (pattern, reason) in [
        ("", "empty"),
        ("2.*.1", "whole last component"),
        ("2.4*", "whole last component"),
        ("2..4", "empty component"),
        ("2.4 .1", "whitespace"),
    ] {
        let text = edited(
            r#"approved_versions = ["2.3.0", "2.4.*"]"#,
            &format!(r#"approved_versions = ["2.3.0", "{pattern}"]"#),
        );
        assert_problem(
            &text,
            r#"app "cardio-insight""#,
            "approved_versions[1]",
            &[&format!("{pattern:?}"), reason],
        );
    }
    let text = edited(
        r#"approved_versions = ["2.3.0", "2.4.*"]"#,
        "approved_versions = []",
    );
    assert_problem(
        &text,
        r#"app "cardio-insight""#,
        "approved_versions",
        &["no version at all"],
    );
}

#[test]
fn every_problem_is_reported() {
    let mut text = edited(
        r#"client_id = "lab-trends""#,
        r#"client_id = "cardio-insight""#,
    );
    text = text.replacen("tier = 5", "tier = 9", 1);
    text = text.replacen("status_since = 2026-05-12\n", "", 1);
    text = text.replacen(r#""patient/*.read""#, r#""patient/*.reed""#, 1);
    text = text.replacen(r#"["7.*"]"#, r#"["7.*.1"]"#, 1);
    let (err, msg) = error_of(&text);
    assert_eq!(err.problems().len(), 5, "{msg}");
    assert_eq!(err.file(), FILE);
    for needle in [
        "app[4]: field client_id",
        "app \"cohort-builder-pilot\": field tier",
        "app \"dermascan-ai\": field status_since",
        "app \"growth-charts-classic\": field approved_scopes[3]",
        "app \"my-health-companion\": field approved_versions[0]",
    ] {
        assert!(
            msg.lines()
                .any(|l| l.starts_with(&format!("{FILE}: {needle}: "))),
            "{needle:?} missing from:\n{msg}"
        );
    }
    assert!(msg.ends_with(&format!(
        "5 problems in {FILE}; fix the registry and run `scopewatch registry check {FILE}`"
    )));
}

#[test]
fn unknown_fields_are_rejected_by_name() {
    // In an app.
    let text = edited("tier = 3\n", "tier = 3\ncolour = \"red\"\n");
    let (err, msg) = error_of(&text);
    let RegistryError::Syntax { line, message, .. } = &err else {
        panic!("expected a syntax error, got:\n{msg}");
    };
    assert!(msg.starts_with(&format!("{FILE}: ")), "{msg}");
    assert!(msg.contains("unknown field `colour`"), "{msg}");
    assert!(message.contains("expected one of"), "{message}");
    let expected_line = text.lines().position(|l| l.starts_with("colour")).unwrap() + 1;
    assert_eq!(*line, Some(expected_line));
    assert!(msg.contains(&format!("registry check {FILE}")));

    // At the top level, in an override and in offline_access.
    for (from, to, field) in [
        ("version = 1\n", "version = 1\nowner = \"x\"\n", "owner"),
        (
            "[app.tenant.research]\n",
            "[app.tenant.research]\napproved_versions = [\"1.0\"]\n",
            "approved_versions",
        ),
        (
            "offline_access = { justified = false }",
            "offline_access = { justified = false, justification = \"x\" }",
            "justification",
        ),
        (
            "tier = 2\n",
            "tier = 2\nstatus_sice = 2025-01-01\n",
            "status_sice",
        ),
    ] {
        let (err, msg) = error_of(&edited(from, to));
        assert!(matches!(err, RegistryError::Syntax { .. }), "{msg}");
        assert!(msg.contains(&format!("unknown field `{field}`")), "{msg}");
    }
}

#[test]
fn malformed_values_are_syntax_errors() {
    let (_, msg) = error_of(&edited(r#"status = "revoked""#, r#"status = "retired""#));
    assert!(msg.contains("unknown variant `retired`"), "{msg}");
    let (_, msg) = error_of(&edited(
        "last_certified = 2026-07-01",
        "last_certified = 2026-07-01T09:00:00Z",
    ));
    assert!(msg.contains("expected a date like 2025-03-01"), "{msg}");
    let (_, msg) = error_of(&edited(
        "last_certified = 2026-07-01",
        r#"last_certified = "July 1st""#,
    ));
    assert!(msg.contains("expected a date like 2025-03-01"), "{msg}");
    let (_, msg) = error_of(&edited(
        "approved_scopes = [\n  \"launch\",",
        "scopes = [\n  \"launch\",",
    ));
    assert!(msg.contains("unknown field `scopes`"), "{msg}");
    let (_, msg) = error_of("version = 1\n[[app]\n");
    assert!(
        msg.starts_with(&format!("{FILE}: TOML parse error at line 2")),
        "{msg}"
    );
}

#[test]
fn quoted_dates_are_accepted() {
    let text = edited(
        "last_certified = 2026-07-01",
        r#"last_certified = "2026-07-01""#,
    );
    let reg = Registry::from_toml_str(&text, FILE).unwrap();
    assert_eq!(
        reg.app("cardio-insight").unwrap().last_certified,
        Some(date!(2026 - 07 - 01))
    );
}

#[test]
fn unsupported_format_version() {
    let (_, msg) = error_of(&edited("version = 1", "version = 2"));
    assert!(
        msg.starts_with(&format!(
            "{FILE}: field version: unsupported registry format version 2"
        )),
        "{msg}"
    );
    // Even when the other format's fields do not fit this one.
    let (_, msg) = error_of("version = 3\n[[application]]\nid = \"x\"\n");
    assert!(
        msg.contains("unsupported registry format version 3"),
        "{msg}"
    );
}

#[test]
fn missing_file_names_the_file() {
    let err = Registry::load(Path::new("/nonexistent/registry.toml")).unwrap_err();
    assert!(matches!(err, RegistryError::Io { .. }));
    assert!(err
        .to_string()
        .starts_with("/nonexistent/registry.toml: cannot read the app registry"));
}

// ---------------------------------------------------------------------------
// Runtime lookups

#[test]
fn approved_scopes_for_tenant() {
    let reg = sample();
    let cardio = reg.app("cardio-insight").unwrap();
    let raw = |scopes: &[scopewatch_model::scope::Scope]| {
        scopes
            .iter()
            .map(|s| s.raw().to_string())
            .collect::<Vec<_>>()
    };
    let north = raw(cardio.approved_scopes_for("north"));
    let south = raw(cardio.approved_scopes_for("south"));
    assert!(north.contains(&"patient/Condition.rs".to_string()));
    assert!(!south.contains(&"patient/Condition.rs".to_string()));
    assert_eq!(south.len(), 6);
    // Tenants without an override get the default set.
    assert_eq!(raw(cardio.approved_scopes_for("elsewhere")), north);
    assert!(cardio.deployed_in("north") && !cardio.deployed_in("research"));
    let medrec = reg.app("medrec-reconcile").unwrap();
    assert!(medrec.deployed_in("research"));
    assert_eq!(medrec.approved_scopes_for("research").len(), 5);
    assert_eq!(medrec.approved_scopes_for("north").len(), 7);
}

#[test]
fn version_approval() {
    let reg = sample();
    let cardio = reg.app("cardio-insight").unwrap();
    assert!(cardio.version_approved("2.3.0"));
    assert!(!cardio.version_approved("2.3.1"));
    assert!(cardio.version_approved("2.4.0"));
    assert!(cardio.version_approved("2.4.17"));
    assert!(!cardio.version_approved("2.4"));
    assert!(!cardio.version_approved("2.40.0"));
    assert!(!cardio.version_approved("2.5.0"));
    let companion = reg.app("my-health-companion").unwrap();
    assert!(companion.version_approved("7.0.3"));
    assert!(!companion.version_approved("6.9.9"));
    // Absent approved_versions: any version.
    let export = reg.app("pop-health-export").unwrap();
    assert!(export.version_approved("whatever"));
    assert!(export.version_approved(""));
}

#[test]
fn callable_by_status_and_date() {
    let reg = sample();
    let derm = reg.app("dermascan-ai").unwrap(); // suspended 2026-05-12
    assert!(derm.is_callable(date!(2026 - 05 - 11)));
    assert!(!derm.is_callable(date!(2026 - 05 - 12)));
    assert!(!derm.is_callable(date!(2026 - 11 - 23)));
    let bill = reg.app("quickbill-connect").unwrap(); // revoked 2025-11-30
    assert!(bill.is_callable(date!(2025 - 11 - 29)));
    assert!(!bill.is_callable(date!(2025 - 11 - 30)));
    let sepsis = reg.app("sepsis-watch").unwrap(); // active since 2026-02-02
    assert_eq!(sepsis.status.since(), Some(date!(2026 - 02 - 02)));
    assert!(sepsis.is_callable(date!(2020 - 01 - 01)));
    assert!(reg
        .app("cardio-insight")
        .unwrap()
        .is_callable(date!(2030 - 01 - 01)));
}
