//! The `scopewatch` binary run as a user runs it: its JSON output and exit
//! codes for the scope and registry verbs.

use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;

mod common;
use common::{bin, repo, stderr};

fn scopewatch(args: &[&str]) -> Output {
    bin()
        .args(args)
        .output()
        .expect("the scopewatch binary runs")
}

/// The JSON lines of stdout, whatever the exit code.
fn json_lines(out: &Output) -> Vec<Value> {
    common::json_lines(&String::from_utf8_lossy(&out.stdout))
}

fn sample_registry() -> PathBuf {
    repo().join("docs/registry-example.toml")
}

#[test]
fn explain_prints_one_object_per_scope() {
    let out = scopewatch(&[
        "scopes",
        "explain",
        "patient/*.read",
        "patient/Observation.rs?category=laboratory",
        "user/Patient.dus",
    ]);
    assert!(out.status.success());
    let v = json_lines(&out);
    assert_eq!(v.len(), 3);
    for key in [
        "input",
        "valid",
        "version",
        "context",
        "resource",
        "permissions",
        "filter",
        "error",
    ] {
        assert!(
            v.iter().all(|o| o.get(key).is_some()),
            "every object has `{key}`"
        );
    }
    assert_eq!(v[0]["valid"], true);
    assert_eq!(v[0]["version"], "v1");
    assert_eq!(v[0]["context"], "patient");
    assert_eq!(v[0]["resource"], "*");
    assert_eq!(v[0]["permissions"], "rs");
    assert_eq!(v[1]["version"], "v2");
    assert_eq!(v[1]["resource"], "Observation");
    assert_eq!(v[1]["filter"], "category=laboratory");
    assert_eq!(v[1]["error"], Value::Null);
    assert_eq!(v[2]["input"], "user/Patient.dus");
    assert_eq!(v[2]["valid"], false);
    assert!(v[2]["error"].as_str().unwrap().contains("out of order"));
}

#[test]
fn check_judges_a_request_against_its_grants() {
    let out = scopewatch(&[
        "scopes",
        "check",
        "--granted",
        "launch/patient patient/Observation.rs patient/Patient.r",
        "--request",
        "GET /fhir/r4/tenant-a/Observation?patient=123&category=laboratory",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = &json_lines(&out)[0];
    assert_eq!(v["interaction"], "search");
    assert_eq!(v["resource"], "Observation");
    assert_eq!(v["required"], "patient/Observation.s");
    assert_eq!(v["covered"], true);
    assert_eq!(v["covered_by"], "patient/Observation.rs");

    let out = scopewatch(&[
        "scopes",
        "check",
        "--granted",
        "patient/Observation.rs",
        "--request",
        "DELETE /api/Observation/9",
        "--base",
        "/api",
    ]);
    let v = &json_lines(&out)[0];
    assert_eq!(v["interaction"], "delete");
    assert_eq!(v["required"], "patient/Observation.d");
    assert_eq!(v["covered"], false);
    assert_eq!(v["covered_by"], Value::Null);

    // a granular grant against a search that does not say its category
    let out = scopewatch(&[
        "scopes",
        "check",
        "--granted",
        "patient/Observation.rs?category=laboratory",
        "--request",
        "GET /Observation?code=1234-5",
    ]);
    let v = &json_lines(&out)[0];
    assert_eq!(v["covered"], Value::Null);
    assert_eq!(v["coverage"], "indeterminate");

    // capabilities need nothing
    let out = scopewatch(&[
        "scopes",
        "check",
        "--granted",
        "",
        "--request",
        "GET /fhir/metadata",
    ]);
    let v = &json_lines(&out)[0];
    assert_eq!(v["interaction"], "capabilities");
    assert_eq!(v["required"], Value::Null);
    assert_eq!(v["covered"], true);
}

#[test]
fn check_judges_a_transaction_entry_by_entry() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("tx.json");
    std::fs::write(
        &bundle,
        r#"{"resourceType":"Bundle","type":"transaction","entry":[
            {"request":{"method":"POST","url":"Observation"}},
            {"request":{"method":"GET","url":"Patient/7"}},
            {"request":{"method":"DELETE","url":"Condition/3"}}]}"#,
    )
    .unwrap();
    let out = scopewatch(&[
        "scopes",
        "check",
        "--granted",
        "user/Observation.c user/Patient.r",
        "--request",
        "POST /fhir",
        "--base",
        "/fhir",
        "--bundle",
        bundle.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = &json_lines(&out)[0];
    assert_eq!(v["interaction"], "batch");
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0]["required"], "user/Observation.c");
    assert_eq!(entries[0]["covered"], true);
    assert_eq!(entries[1]["required"], "user/Patient.r");
    assert_eq!(entries[1]["covered"], true);
    assert_eq!(entries[2]["required"], "user/Condition.d");
    assert_eq!(entries[2]["covered"], false);
    assert_eq!(
        v["covered"], false,
        "one entry not covered fails the bundle"
    );
}

#[test]
fn check_refuses_what_is_not_a_fhir_request() {
    let out = scopewatch(&[
        "scopes",
        "check",
        "--granted",
        "patient/*.rs",
        "--request",
        "GET /fhir/Observaton/1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("Observation"), "suggests the type: {err}");
    let out = scopewatch(&[
        "scopes",
        "check",
        "--granted",
        "patient/*.rs",
        "--request",
        "nonsense",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn minimise_prints_the_least_privilege_set() {
    let out = scopewatch(&[
        "scopes",
        "minimise",
        "--used",
        "patient/Observation.r patient/Observation.s",
        "patient/Condition.r",
        "launch",
    ]);
    assert!(out.status.success());
    let v = &json_lines(&out)[0];
    assert_eq!(
        v["scope"],
        "launch patient/Condition.r patient/Observation.rs"
    );
    assert_eq!(v["scopes"].as_array().unwrap().len(), 3);

    let out = scopewatch(&["scopes", "minimise", "--used", "patient/Observation.sr"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        json_lines(&out)[0]["rejected"][0]["input"],
        "patient/Observation.sr"
    );
}

#[test]
fn the_sample_registry_passes() {
    let out = scopewatch(&["registry", "check", sample_registry().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = &json_lines(&out)[0];
    assert_eq!(v["valid"], true);
    assert!(v["apps"].as_u64().unwrap() >= 8);
}

#[test]
fn a_broken_registry_fails_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(sample_registry()).unwrap();

    // a bad scope: the app and the field are named
    let broken = text.replacen("\"patient/Condition.rs\"", "\"patient/Condition.dus\"", 1);
    assert_ne!(broken, text);
    let file = dir.path().join("registry.toml");
    std::fs::write(&file, broken).unwrap();
    let out = scopewatch(&["registry", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("registry.toml"), "{err}");
    assert!(err.contains("approved_scopes["), "{err}");
    assert!(err.contains("patient/Condition.dus"), "{err}");
    let v = &json_lines(&out)[0];
    assert_eq!(v["valid"], false);
    assert!(v["problems"][0]["app"].is_string());
    assert!(v["problems"][0]["field"]
        .as_str()
        .unwrap()
        .starts_with("approved_scopes["));

    // an unknown field: toml names it
    let broken = text.replacen("tier = 2", "tier = 2\ncolour = \"blue\"", 1);
    std::fs::write(&file, broken).unwrap();
    let out = scopewatch(&["registry", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("colour"));

    // a missing file is an error of its own
    let out = scopewatch(&[
        "registry",
        "check",
        dir.path().join("nope.toml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nope.toml"));
}

#[test]
fn the_config_supplies_the_registry_and_fhir_base() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("scopewatch.toml");
    std::fs::write(
        &config,
        format!(
            "registry = {:?}\n[fhir]\nbase_paths = [\"/fhir/{{tenant}}\"]\n",
            sample_registry().to_str().unwrap()
        ),
    )
    .unwrap();
    let out = scopewatch(&["--config", config.to_str().unwrap(), "registry", "check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // with the base configured, a tenant segment is not mistaken for anything
    let out = scopewatch(&[
        "--config",
        config.to_str().unwrap(),
        "scopes",
        "check",
        "--granted",
        "user/List.rs",
        "--request",
        "GET /fhir/List/List/5",
    ]);
    let v = &json_lines(&out)[0];
    assert_eq!(v["interaction"], "read", "{v}");
    assert_eq!(v["resource"], "List");

    // a typo in the config stops the program before it does anything
    std::fs::write(&config, "registy = \"x\"\n").unwrap();
    let out = scopewatch(&[
        "--config",
        config.to_str().unwrap(),
        "scopes",
        "explain",
        "launch",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("registy"));
    assert!(out.stdout.is_empty());
}
