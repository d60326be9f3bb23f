//! The commented examples (examples/scopewatch.toml, examples/rules.toml)
//! load, and document every option the config structs accept; and the
//! SCOPEWATCH_* environment overrides, with their precedence and errors.
//!
//! Which options exist is not a hand-kept list: it is asked of the serde
//! structs themselves. Every section is `deny_unknown_fields`, so a probe
//! key in a section is refused with serde's "unknown field `probe`,
//! expected one of `a`, `b`, ..." naming every field the section accepts.
//! Each field is then probed in turn as a table (`[x]`) and as an array of
//! tables (`[[x]]`): when that again says "unknown field", the field is a
//! section and is walked the same way. So a field added to any struct, at
//! any depth, must appear in the example, or this test names it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

mod common;
use common::{bin, free_port, repo, run_ok, sigterm, stderr};

use scopewatch_model::config::Config;
use scopewatch_rules::config::Rules;

const PROBE: &str = "zz_probe_field";

/// A section path: (name, is an array of tables) from the root.
type SectionPath = Vec<(String, bool)>;

fn headers(path: &SectionPath) -> String {
    let mut out = String::new();
    for i in 1..=path.len() {
        let name: Vec<&str> = path[..i].iter().map(|(n, _)| n.as_str()).collect();
        if path[i - 1].1 {
            out.push_str(&format!("[[{}]]\n", name.join(".")));
        } else {
            out.push_str(&format!("[{}]\n", name.join(".")));
        }
    }
    out
}

/// The fields a section accepts, by serde's refusal of a probe key; `None`
/// when `path` is not a struct section.
fn accepted(parse: &dyn Fn(&str) -> Option<String>, path: &SectionPath) -> Option<Vec<String>> {
    let text = format!("{}{PROBE} = 1\n", headers(path));
    let message = parse(&text)?;
    let at = message.find(&format!("unknown field `{PROBE}`"))?;
    let rest = &message[at + PROBE.len() + 16..];
    let rest = rest.lines().next().unwrap_or("");
    // "expected one of `a`, `b`" / "expected `a` or `b`" / "expected `a`"
    let names: Vec<String> = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    assert!(
        !names.is_empty() || rest.contains("there are no fields"),
        "cannot read serde's field list from {message:?}"
    );
    Some(names)
}

/// Every section (dotted path) with the fields it accepts.
fn schema(parse: &dyn Fn(&str) -> Option<String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    let mut todo: Vec<SectionPath> = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        let fields = accepted(parse, &path).expect("a section");
        for f in &fields {
            for array in [false, true] {
                let mut child = path.clone();
                child.push((f.clone(), array));
                if accepted(parse, &child).is_some() {
                    todo.push(child);
                    break;
                }
            }
        }
        let name: Vec<&str> = path.iter().map(|(n, _)| n.as_str()).collect();
        out.insert(name.join("."), fields.into_iter().collect());
    }
    out
}

fn config_schema() -> BTreeMap<String, BTreeSet<String>> {
    schema(&|text| {
        Config::from_toml_str(text, "probe.toml", Path::new("."))
            .err()
            .map(|e| e.to_string())
    })
}

fn rules_schema() -> BTreeMap<String, BTreeSet<String>> {
    schema(&|text| {
        Rules::from_toml_str(text, "probe.toml")
            .err()
            .map(|e| e.to_string())
    })
}

/// The options an example shows, by section: `key = ...` lines, set or
/// commented out (`# key = ...`), under the last `[section]` or
/// `[[section]]` header above them (also set or commented out). Multi-line
/// strings are skipped.
fn documented(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut section = String::new();
    let mut in_string = false;
    for line in text.lines() {
        if in_string {
            in_string = line.matches("\"\"\"").count() % 2 == 0;
            continue;
        }
        let opens = line.matches("\"\"\"").count() % 2 == 1;
        let body = line.trim();
        let body = body.strip_prefix("# ").unwrap_or(body);
        if let Some(h) = body.strip_prefix('[') {
            let h = h.trim_start_matches('[');
            if let Some(end) = h.find(']') {
                let name = &h[..end];
                if !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
                {
                    section = name.to_string();
                    out.entry(section.clone()).or_default();
                }
            }
        } else if let Some((key, _)) = body.split_once(" = ") {
            let key = key.trim().trim_matches('"');
            if !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
            {
                out.entry(section.clone())
                    .or_default()
                    .insert(key.to_string());
            }
        }
        in_string = opens;
    }
    out
}

/// Fails naming every option of `schema` that `example` does not show.
fn assert_documents_all(
    file: &str,
    schema: &BTreeMap<String, BTreeSet<String>>,
    example: &BTreeMap<String, BTreeSet<String>>,
    not_options: &[(&str, &str)],
) {
    let mut missing = Vec::new();
    for (section, fields) in schema {
        let shown = example.get(section).cloned().unwrap_or_default();
        for f in fields {
            if not_options.contains(&(section.as_str(), f.as_str())) {
                continue;
            }
            // A sub-section is shown by its header.
            let child = if section.is_empty() {
                f.clone()
            } else {
                format!("{section}.{f}")
            };
            if !shown.contains(f) && !example.contains_key(&child) {
                missing.push(if section.is_empty() {
                    f.clone()
                } else {
                    format!("[{section}] {f}")
                });
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{file} does not document these options: {missing:?}"
    );
}

#[test]
fn the_schema_walk_finds_nested_sections() {
    // The walk itself: it must find the sections we know of, or the
    // coverage check below would pass vacuously.
    let s = config_schema();
    for (section, field) in [
        ("", "data_dir"),
        ("fhir", "base_paths"),
        ("analysis", "threads"),
        ("ingest", "max_file_age_ms"),
        ("ingest.push", "key_env"),
        ("source", "tenant_from"),
    ] {
        assert!(s[section].contains(field), "{section}.{field}: {s:#?}");
    }
    let r = rules_schema();
    for (section, field) in [
        ("", "version"),
        ("rule", "dedup_secs"),
        ("rule.first", "remember"),
        ("rule.then", "key"),
        ("delivery", "dashboard_url"),
        ("delivery.smtp", "password_env"),
        ("delivery.destination", "headers"),
        ("delivery.route", "min_severity"),
        ("delivery.digest", "interval_secs"),
        ("delivery.retry", "max_attempts"),
    ] {
        assert!(r[section].contains(field), "{section}.{field}: {r:#?}");
    }
    // Maps are not sections: their keys are the user's.
    assert!(!s.contains_key("source.tenant_map") && !s.contains_key("source.fields"));
}

#[test]
fn the_example_config_documents_every_option_and_loads() {
    let path = repo().join("examples/scopewatch.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let example = documented(&text);
    assert_documents_all("examples/scopewatch.toml", &config_schema(), &example, &[]);
    // The fields a [source.fields] table may map are a list in the code.
    let fields = example.get("source.fields").cloned().unwrap_or_default();
    for f in scopewatch_model::config::MAPPABLE_FIELDS {
        assert!(
            fields.contains(*f),
            "examples/scopewatch.toml: [source.fields] does not show `{f}`"
        );
    }

    // It loads as it is, and what it sets is what the binary uses.
    let summary: serde_json::Value = serde_json::from_str(&run_ok(bin().args([
        "--config",
        path.to_str().unwrap(),
        "registry",
        "check",
    ])))
    .unwrap();
    assert_eq!(summary["valid"], true);
    assert!(summary["apps"].as_u64().unwrap() > 0);
    let c = Config::load(&path).unwrap();
    assert_eq!(c.sources.len(), 9);
    assert!(c.push.is_none(), "the push endpoint is shown commented out");
    // Where it states a default, it states the real one.
    let d = Config::default();
    assert_eq!(c.observation_window_days, d.observation_window_days);
    assert_eq!(c.stale_after_days, d.stale_after_days);
    assert_eq!(
        c.analysis_limits.memory_limit_mib,
        d.analysis_limits.memory_limit_mib
    );
    assert_eq!(c.ingest.max_rows_per_file, d.ingest.max_rows_per_file);
    assert_eq!(c.ingest.max_file_age_ms, d.ingest.max_file_age_ms);
    assert_eq!(c.ingest.max_line_bytes, d.ingest.max_line_bytes);
    assert_eq!(
        c.sources[1].options.authorize_paths,
        scopewatch_model::config::SourceOptions::default().authorize_paths
    );
    // It reads the same logs as the samples' own config.
    let samples = Config::load(&repo().join("sample-logs/scopewatch.toml")).unwrap();
    let names = |c: &Config| c.sources.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&c), names(&samples));
    for (a, b) in c.sources.iter().zip(&samples.sources) {
        let canon = |p: &str| {
            let p = Path::new(p);
            std::fs::canonicalize(p.parent().unwrap())
                .unwrap()
                .join(p.file_name().unwrap())
        };
        let pa: Vec<_> = a.paths.iter().map(|p| canon(p)).collect();
        let pb: Vec<_> = b.paths.iter().map(|p| canon(p)).collect();
        assert_eq!(pa, pb, "source {}", a.name);
        assert_eq!(
            (a.format.as_str(), &a.tenant, a.env),
            (b.format.as_str(), &b.tenant, b.env)
        );
    }
}

#[test]
fn the_example_rule_file_documents_every_option_and_is_the_builtin_rules() {
    let path = repo().join("examples/rules.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    // `first` and `then` share one struct; validation refuses these two
    // in `then`, so they are documented under `first` only.
    let first_only = [("rule.then", "at"), ("rule.then", "remember")];
    let schema = rules_schema();
    for (section, field) in first_only {
        assert!(schema[section].contains(field) && schema["rule.first"].contains(field));
    }
    assert_documents_all(
        "examples/rules.toml",
        &schema,
        &documented(&text),
        &first_only,
    );

    run_ok(bin().args(["rules", "check", path.to_str().unwrap()]));
    let example = Rules::load(&path).unwrap();
    let builtin = Rules::builtin();
    let defs = |r: &Rules| {
        r.rules
            .iter()
            .map(|r| (r.id.clone(), r.fingerprint.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        defs(&example),
        defs(&builtin),
        "examples/rules.toml's rules differ from rules/default-rules.toml: copy them again"
    );
    let d = &example.delivery;
    assert!(d.smtp.is_some() && d.digest.is_some());
    assert_eq!(d.destinations.len(), 2);
}

/// Exit code and stderr of a command expected to fail.
fn stderr_of(cmd: &mut std::process::Command) -> (i32, String) {
    let out = cmd.output().unwrap();
    (out.status.code().unwrap_or(-1), stderr(&out))
}

#[test]
fn environment_overrides_the_config_and_flags_override_the_environment() {
    let samples = repo().join("sample-logs/scopewatch.toml");
    let registry = repo().join("sample-logs/registry.toml");
    let dir = tempfile::tempdir().unwrap();
    // A registry that only the environment names.
    let other = dir.path().join("other-registry.toml");
    std::fs::copy(&registry, &other).unwrap();
    let check = |envs: &[(&str, &str)], extra: &[&str]| {
        let mut c = bin();
        c.args(["--config", samples.to_str().unwrap(), "registry", "check"])
            .args(extra);
        for (k, v) in envs {
            c.env(k, v);
        }
        let v: serde_json::Value = serde_json::from_str(&run_ok(&mut c)).unwrap();
        v["file"].as_str().unwrap().to_string()
    };
    // File, then environment over the file, then the argument over both.
    assert_eq!(check(&[], &[]), registry.to_str().unwrap());
    let env = [("SCOPEWATCH_REGISTRY", other.to_str().unwrap())];
    assert_eq!(check(&env, &[]), other.to_str().unwrap());
    assert_eq!(
        check(&env, &[registry.to_str().unwrap()]),
        registry.to_str().unwrap()
    );

    // Bad values stop every command before it does anything, naming the
    // variable; a flag given on the command line makes its variable moot.
    for (var, value) in [
        ("SCOPEWATCH_OBSERVATION_WINDOW_DAYS", "ninety"),
        ("SCOPEWATCH_STALE_AFTER_DAYS", "0"),
        ("SCOPEWATCH_THREADS", "100"),
        ("SCOPEWATCH_MEMORY_LIMIT_MIB", "1"),
        ("SCOPEWATCH_METRICS_LISTEN", "anywhere"),
        ("SCOPEWATCH_REGISTRY", "/nonexistent/registry.toml"),
        ("SCOPEWATCH_RULES", ""),
        ("SCOPEWATCH_LISTEN", "localhost"),
        ("SCOPEWATCH_DATA", ""),
    ] {
        let (code, err) = stderr_of(
            bin()
                .args(["--config", samples.to_str().unwrap(), "registry", "check"])
                .env(var, value),
        );
        assert_eq!(code, 2, "{var}={value:?}: {err}");
        assert!(
            err.contains(&format!("environment variable {var}")),
            "{var}={value:?}: {err}"
        );
    }
    let data = dir.path().join("data");
    // Empty is an error even beside the flag (not a silent "unset").
    let (code, err) = stderr_of(
        bin()
            .args(["--data", data.to_str().unwrap()])
            .args(["--config", samples.to_str().unwrap(), "registry", "check"])
            .env("SCOPEWATCH_DATA", ""),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("environment variable SCOPEWATCH_DATA"),
        "{err}"
    );

    // SCOPEWATCH_LISTEN is where `serve` listens; --listen wins over it
    // (even over a variable that is not an address).
    let serves_on = |env: &str, flag: Option<u16>| -> u16 {
        let port = flag.unwrap_or_else(free_port);
        let mut cmd = bin();
        cmd.args(["--data", data.to_str().unwrap(), "serve"]);
        if flag.is_some() {
            cmd.args(["--listen", &format!("127.0.0.1:{port}")]);
        }
        let env = env.replace("PORT", &port.to_string());
        let mut child = cmd
            .env("SCOPEWATCH_LISTEN", &env)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let listening = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        sigterm(&child);
        assert!(child.wait().unwrap().success());
        assert!(
            listening,
            "serve with SCOPEWATCH_LISTEN={env:?}, --listen {flag:?}: not on {port}"
        );
        port
    };
    serves_on("127.0.0.1:PORT", None);
    serves_on("not an address", Some(free_port()));

    // The help says what wins.
    let help = run_ok(bin().arg("--help"));
    assert!(help.contains("SCOPEWATCH_LISTEN") && help.contains("highest precedence first"));
    for var in scopewatch_model::config::ENV_OVERRIDES
        .iter()
        .map(|(v, _)| v)
    {
        assert!(help.contains(var), "--help does not list {var}");
    }
    // ... with the limits the config checks.
    use scopewatch_model::config::{DAYS_RANGE, MIN_MEMORY_LIMIT_MIB, THREADS_RANGE};
    for limit in [
        format!("{}-{}", DAYS_RANGE.start(), DAYS_RANGE.end()),
        format!("at least {MIN_MEMORY_LIMIT_MIB}"),
        format!("{}-{}", THREADS_RANGE.start(), THREADS_RANGE.end()),
    ] {
        assert!(help.contains(&limit), "--help does not say {limit}");
    }
}
