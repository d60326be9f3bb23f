//! One function per verb: read the arguments, call the library, print JSON.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use scopewatch_model::config::Config;
use scopewatch_model::registry::{Registry, RegistryError};
use scopewatch_model::request::{bundle_entries, classify, FhirBase, Interaction, RequestNeed};
use scopewatch_model::scope::{covers, infer_context, minimise, parse_scope_list, Coverage, Scope};
use scopewatch_model::Context;
use serde_json::{json, Value};

use crate::cli::{Cli, Command, ContextArg, RegistryCommand, ScopesCommand};

pub fn run(cli: Cli) -> Result<ExitCode> {
    let config = load_config(&cli)?;
    match cli.command {
        Command::Scopes(ScopesCommand::Explain { scopes }) => scopes_explain(&scopes),
        Command::Scopes(ScopesCommand::Check {
            granted,
            request,
            base,
            context,
            bundle,
        }) => scopes_check(
            &config,
            &granted,
            &request,
            base.as_deref(),
            context,
            bundle,
        ),
        Command::Scopes(ScopesCommand::Minimise { used }) => scopes_minimise(&used),
        Command::Registry(RegistryCommand::Check { file }) => registry_check(&config, file),
        Command::Ingest(args) => crate::ingest::run(&config, args, None),
        Command::Generate(args) => generate(args),
        Command::Sql(args) => crate::sql::run(&config, args),
        Command::Report(args) => crate::report::run(&config, args),
        Command::Rules(command) => crate::rules::run_rules(&config, command),
        Command::Alerts(command) => crate::rules::run_alerts(&config, command),
        Command::Run(args) => crate::run::run(&config, args),
        Command::Serve(args) => crate::serve::run_serve(&config, args),
        Command::User(command) => crate::serve::run_user(&config, command),
    }
}

fn generate(args: crate::cli::GenerateArgs) -> Result<ExitCode> {
    use scopewatch_ingest::generate::{self, GenerateOptions};
    let end = match &args.end {
        Some(text) => time::Date::parse(
            text,
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .with_context(|| format!("--end {text:?}: expected YYYY-MM-DD"))?,
        None => generate::today() - time::Duration::days(1),
    };
    let opts = GenerateOptions {
        out: args.out,
        seed: args.seed,
        days: args.days,
        tenants: args.tenants,
        apps: args.apps,
        events_per_day: args.events_per_day,
        formats: args.formats,
        end,
        config_data_dir: args.config_data_dir,
    };
    let started = std::time::Instant::now();
    let summary = generate::generate(&opts)?;
    let seconds = started.elapsed().as_secs_f64();
    let mut v = serde_json::to_value(&summary)?;
    v["seconds"] = json!((seconds * 1000.0).round() / 1000.0);
    v["mb_per_s"] = json!(((summary.bytes as f64 / 1e6 / seconds.max(1e-3)) * 10.0).round() / 10.0);
    println!("{v}");
    Ok(ExitCode::SUCCESS)
}

/// The validated config (defaults when no file is given), with `--data` on top.
fn load_config(cli: &Cli) -> Result<Config> {
    let samples = std::path::Path::new(crate::run::SAMPLES_CONFIG);
    let mut config = match &cli.global.config {
        Some(path) => Config::load(path)?,
        // `run` with no config runs on the bundled samples.
        None if matches!(cli.command, Command::Run(_)) && samples.exists() => {
            Config::load(samples)?
        }
        None => Config::default(),
    };
    // The environment overrides the file; the flags of each command
    // override both (they are applied where the command reads the value).
    let applied = config
        .apply_env(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))?;
    for (var, path) in [
        ("SCOPEWATCH_REGISTRY", &config.registry),
        ("SCOPEWATCH_RULES", &config.rules),
    ] {
        if let (true, Some(path)) = (applied.contains(&var), path) {
            if !path.is_file() {
                bail!(
                    "environment variable {var}: {}: no such file",
                    path.display()
                );
            }
        }
    }
    if let Some(data) = &cli.global.data {
        config.data_dir = data.clone();
    }
    Ok(config)
}

fn print_json_line(value: &impl serde::Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

fn scopes_explain(args: &[String]) -> Result<ExitCode> {
    for arg in args {
        for scope in parse_scope_list(arg) {
            print_json_line(&scope.explain())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn scopes_check(
    config: &Config,
    granted: &str,
    request: &str,
    base: Option<&str>,
    context: Option<ContextArg>,
    bundle: Option<PathBuf>,
) -> Result<ExitCode> {
    let granted = parse_scope_list(granted);
    let base = match base {
        Some(prefix) => FhirBase::parse(prefix).with_context(|| format!("--base {prefix:?}"))?,
        None => config.fhir_base.clone(),
    };
    let Some((method, path)) = request.trim().split_once(char::is_whitespace) else {
        bail!(
            "--request {request:?}: expected \"METHOD PATH[?QUERY]\", e.g. \"GET /fhir/Patient/1\""
        );
    };
    let need = classify(method, path.trim(), &base)
        .with_context(|| format!("cannot read request {request:?}"))?;
    let context = context.map(|c| match c {
        ContextArg::Patient => Context::Patient,
        ContextArg::User => Context::User,
        ContextArg::System => Context::System,
    });
    let mut report = judge(&granted, &need, context);
    if need.interaction == Interaction::Batch {
        if let Some(path) = bundle {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read bundle {}", path.display()))?;
            let doc: Value = serde_json::from_str(&text)
                .with_context(|| format!("bundle {} is not JSON", path.display()))?;
            let entries: Vec<Value> = bundle_entries(&doc, &base)
                .into_iter()
                .map(|entry| match entry {
                    Ok(n) => judge(&granted, &n, context),
                    Err(e) => json!({ "error": e.to_string() }),
                })
                .collect();
            // A batch is allowed only as far as each of its entries is.
            let all = entries
                .iter()
                .map(|e| e["covered"].as_bool())
                .collect::<Vec<_>>();
            report["covered"] =
                if all.contains(&Some(false)) || entries.iter().any(|e| e.get("error").is_some()) {
                    json!(false)
                } else if all.contains(&None) {
                    Value::Null
                } else {
                    json!(true)
                };
            report["entries"] = Value::Array(entries);
        }
    }
    print_json_line(&report)?;
    Ok(ExitCode::SUCCESS)
}

/// The JSON verdict for one classified request.
fn judge(granted: &[Scope], need: &RequestNeed, context: Option<Context>) -> Value {
    let base = json!({
        "interaction": need.interaction.as_str(),
        "level": need.level.as_str(),
        "resource": need.resource_type,
        "operation": need.operation,
        "compartment": need.compartment,
        "patient": need.patient,
    });
    let Some(n) = &need.need else {
        let mut v = base;
        v["required"] = Value::Null;
        v["covered"] = json!(true);
        v["coverage"] = json!("nothing_required");
        v["covered_by"] = Value::Null;
        return v;
    };
    let names_patient = need.patient.is_some() || need.compartment.is_some();
    let context = context
        .unwrap_or_else(|| infer_context(granted, n.resource.as_deref(), n.perms, names_patient));
    let required = n.required(context);
    let query = (need.interaction == Interaction::Search).then_some(need.query.as_slice());
    let coverage = covers(granted, &required, query);
    let by: Vec<String> = coverage
        .scopes()
        .iter()
        .map(|i| granted[*i].to_string())
        .collect();
    let mut v = base;
    v["required"] = json!(required.to_string());
    v["covered"] = json!(coverage.as_bool());
    v["coverage"] = json!(match coverage {
        Coverage::Covered(_) => "covered",
        Coverage::Indeterminate(_) => "indeterminate",
        Coverage::NotCovered => "not_covered",
    });
    v["covered_by"] = if by.is_empty() {
        Value::Null
    } else {
        json!(by.join(" "))
    };
    v
}

fn scopes_minimise(used: &[String]) -> Result<ExitCode> {
    let scopes: Vec<Scope> = used.iter().flat_map(|u| parse_scope_list(u)).collect();
    let m = minimise(&scopes);
    let list: Vec<String> = m.scopes.iter().map(Scope::to_string).collect();
    let rejected: Vec<Value> = m
        .rejected
        .iter()
        .map(|s| json!({ "input": s.raw(), "error": s.error() }))
        .collect();
    print_json_line(&json!({
        "scope": list.join(" "),
        "scopes": list,
        "rejected": rejected,
    }))?;
    if rejected.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for s in &m.rejected {
            eprintln!(
                "scopewatch: not a scope: {:?}: {}",
                s.raw(),
                s.error().unwrap_or_default()
            );
        }
        Ok(ExitCode::from(1))
    }
}

fn registry_check(config: &Config, file: Option<PathBuf>) -> Result<ExitCode> {
    let Some(path) = file.or_else(|| config.registry.clone()) else {
        bail!("no registry file: give one (`scopewatch registry check FILE`) or set `registry` in the config");
    };
    match Registry::load(&path) {
        Ok(registry) => {
            let tenants: Vec<&str> = registry.tenants().into_iter().collect();
            print_json_line(&json!({
                "file": path.display().to_string(),
                "valid": true,
                "apps": registry.apps.len(),
                "tenants": tenants,
                "problems": [],
            }))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(RegistryError::Io { file, source }) => {
            bail!("cannot read registry {file}: {source}")
        }
        Err(err) => {
            let problems: Vec<Value> = match &err {
                RegistryError::Syntax {
                    message,
                    line,
                    column,
                    ..
                } => vec![json!({
                    "app": null, "field": null, "message": message, "line": line, "column": column,
                })],
                other => other
                    .problems()
                    .iter()
                    .map(|p| json!({ "app": p.app, "field": p.field, "message": p.message }))
                    .collect(),
            };
            print_json_line(&json!({
                "file": path.display().to_string(),
                "valid": false,
                "problems": problems,
            }))?;
            eprintln!("{err}");
            Ok(ExitCode::from(1))
        }
    }
}
