//! `scopewatch report`: the quarterly scope report over a date range, as a
//! printable HTML page, CSV or JSON (the rendering is in
//! `scopewatch_analytics::report`). Bad input stops with exit status 2 and
//! a message that says what to do.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use scopewatch_analytics::matrix::MatrixQuery;
use scopewatch_analytics::report::{self, ReportContext};
use scopewatch_analytics::{EngineLimits, Lake};
use scopewatch_model::config::Config;
use scopewatch_model::registry::{Registry, RegistryError};
use serde_json::json;
use time::{Date, OffsetDateTime};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// First day of the report, inclusive (YYYY-MM-DD, UTC)
    #[arg(long, value_name = "DATE")]
    pub from: String,
    /// Last day of the report, inclusive (YYYY-MM-DD, UTC)
    #[arg(long, value_name = "DATE")]
    pub to: String,
    /// Only this tenant
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,
    /// Only this app (its OAuth client_id)
    #[arg(long, value_name = "CLIENT_ID")]
    pub app: Option<String>,
    /// Output format [default: from the extension of --out]
    #[arg(long, value_enum)]
    pub format: Option<ReportFormat>,
    /// File to write (replaced whole, or left as it was on failure)
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// The app registry TOML [default: `registry` from the config]
    #[arg(long, value_name = "FILE")]
    pub registry: Option<PathBuf>,
    /// Days without a call or grant before the end of the window after
    /// which an app is stale [default: `analysis.stale_after_days` from the
    /// config, 90]
    #[arg(long, value_name = "DAYS")]
    pub stale_after_days: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// A self-contained printable page with charts
    Html,
    /// One row per app x tenant x scope (RFC 4180)
    Csv,
    /// Header, summary, registry entries, daily calls and the scope matrix
    Json,
}

impl ReportFormat {
    fn as_str(self) -> &'static str {
        match self {
            ReportFormat::Html => "html",
            ReportFormat::Csv => "csv",
            ReportFormat::Json => "json",
        }
    }
}

pub(crate) fn parse_date(flag: &str, text: &str) -> Result<Date> {
    Date::parse(
        text.trim(),
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .with_context(|| format!("{flag} {text:?}: expected a date like 2026-07-01 (YYYY-MM-DD)"))
}

/// `a, b, c` of at most 12 names, for messages.
fn listing(names: &BTreeSet<String>) -> String {
    let mut shown: Vec<&str> = names.iter().take(12).map(String::as_str).collect();
    if names.len() > 12 {
        shown.push("...");
    }
    if shown.is_empty() {
        "none".into()
    } else {
        shown.join(", ")
    }
}

/// A spinner naming the phase on a terminal; nothing otherwise.
fn progress() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} report: {msg} ({elapsed})")
            .expect("a valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

pub fn run(config: &Config, args: ReportArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let from = parse_date("--from", &args.from)?;
    let to = parse_date("--to", &args.to)?;
    if from > to {
        bail!(
            "the date range is inverted: --from {from} is after --to {to}; give the earlier day as --from"
        );
    }
    let format = match args.format {
        Some(f) => f,
        None => match args
            .out
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("html" | "htm") => ReportFormat::Html,
            Some("csv") => ReportFormat::Csv,
            Some("json") => ReportFormat::Json,
            _ => bail!(
                "--out {}: say which format to write with --format html, csv or json",
                args.out.display()
            ),
        },
    };
    let stale_after_days = args.stale_after_days.unwrap_or(config.stale_after_days);
    if !(1..=3660).contains(&stale_after_days) {
        bail!("--stale-after-days {stale_after_days}: use 1 to 3660");
    }

    let registry_path = match args.registry.clone().or_else(|| config.registry.clone()) {
        Some(p) => p,
        None => bail!(
            "no app registry: the report judges scopes against it; pass --registry FILE, \
             or set `registry = \"registry.toml\"` in the config (--config FILE)"
        ),
    };
    let registry = match Registry::load(&registry_path) {
        Ok(r) => r,
        Err(RegistryError::Io { file, source }) => bail!(
            "cannot read the app registry {file}: {source}; check --registry or the config's `registry`"
        ),
        Err(e) => bail!("the app registry is not valid:\n{e}"),
    };

    let bar = progress();
    bar.set_message("opening the lake");
    let data = &config.data_dir;
    let limits = EngineLimits {
        memory_limit_mib: config.analysis_limits.memory_limit_mib,
        threads: config.analysis_limits.threads,
    };
    let lake = Lake::open(data, &limits)
        .with_context(|| format!("cannot open the lake under {}", data.display()))?;
    let events = lake.row_count("auth")? + lake.row_count("access")?;
    if events == 0 {
        bar.finish_and_clear();
        bail!(
            "the lake under {} is empty: nothing to report on; ingest logs first \
             (`scopewatch --config FILE ingest --once`), or point --data at the data directory that holds them",
            data.display()
        );
    }

    bar.set_message("checking the tenant and app");
    // Listing every name scans both streams: only when there is a name to check.
    let names = if args.tenant.is_some() || args.app.is_some() {
        lake.names()?
    } else {
        Default::default()
    };
    let registry_tenants: BTreeSet<String> =
        registry.tenants().into_iter().map(str::to_string).collect();
    if let Some(t) = &args.tenant {
        if !names.tenants.contains(t) && !registry_tenants.contains(t) {
            bar.finish_and_clear();
            let known: BTreeSet<String> = names.tenants.union(&registry_tenants).cloned().collect();
            bail!(
                "unknown tenant {t:?}: neither the lake nor the registry knows it; known tenants: {}. \
                 Check the spelling, or leave out --tenant for every tenant",
                listing(&known)
            );
        }
    }
    if let Some(a) = &args.app {
        if !names.apps.contains(a) && registry.app(a).is_none() {
            bar.finish_and_clear();
            let known: BTreeSet<String> = names
                .apps
                .iter()
                .cloned()
                .chain(registry.apps.iter().map(|x| x.client_id.clone()))
                .collect();
            bail!(
                "unknown app {a:?}: no event in the lake and no registry entry has this client_id; known apps: {}. \
                 Check the spelling, or leave out --app for every app",
                listing(&known)
            );
        }
    }

    let query = MatrixQuery {
        from,
        to,
        tenant: args.tenant.clone(),
        app: args.app.clone(),
        stale_after_days,
    };
    bar.set_message(format!("computing the scope matrix ({from} to {to})"));
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| OffsetDateTime::now_utc());
    let ctx = ReportContext {
        registry_path: registry_path.display().to_string(),
        sources: config.source_formats(),
        observation_window_days: config.observation_window_days,
        generated_at: now
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    };
    let report = lake.report(&registry, &ctx, &query)?;
    if report.header.sources.is_empty() {
        bar.suspend(|| {
            eprintln!(
                "scopewatch: note: no event between {from} and {to}{}: the report shows the registry's apps only",
                match (&args.tenant, &args.app) {
                    (None, None) => String::new(),
                    _ => " for the given --tenant/--app".into(),
                }
            )
        });
    }

    bar.set_message(format!("writing {}", format.as_str()));
    let bytes = match format {
        ReportFormat::Html => report::to_html(&report)?.into_bytes(),
        ReportFormat::Json => report::to_json(&report)?.into_bytes(),
        ReportFormat::Csv => {
            let mut out = Vec::new();
            report::write_csv(&report, &mut out)?;
            out
        }
    };
    write_whole(&args.out, &bytes)?;
    bar.finish_and_clear();

    let scope_rows: usize = report.matrix.apps.iter().map(|a| a.scopes.len()).sum();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "out": args.out.display().to_string(),
            "format": format.as_str(),
            "from": report.header.from,
            "to": report.header.to,
            "apps": report.summary.apps,
            "app_tenants": report.summary.app_tenants,
            "scope_rows": scope_rows,
            "calls": report.summary.calls,
            "bytes": bytes.len(),
            "seconds": (seconds * 1000.0).round() / 1000.0,
        })
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes `bytes` to a temporary file beside `out` and renames it over
/// `out`, so a reader never sees half a report.
fn write_whole(out: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        bail!(
            "cannot write {}: the folder {} does not exist",
            out.display(),
            dir.display()
        );
    }
    let name = out
        .file_name()
        .with_context(|| format!("--out {}: name a file", out.display()))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, out)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", out.display()));
    }
    Ok(())
}
