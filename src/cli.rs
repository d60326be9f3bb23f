//! The command-line grammar. Every command that touches data takes `--data`
//! and `--config`; machine-readable output is JSON, one object per line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Watches a SMART-on-FHIR app ecosystem from its logs: which scopes every
/// app was approved, requested, granted and actually used.
///
/// Exit status: 0 when the command did its work (and a check passed), 1 when
/// a check found a problem (invalid registry, input that is not a scope), 2
/// when the command could not run (bad arguments, unreadable files).
#[derive(Debug, Parser)]
#[command(
    name = "scopewatch",
    version,
    propagate_version = true,
    after_help = ENVIRONMENT_HELP
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Shown under every `--help`: what the environment can set, and what wins.
const ENVIRONMENT_HELP: &str = "\
Settings, highest precedence first: a command-line flag, then a SCOPEWATCH_*
environment variable, then the config file (--config, examples/scopewatch.toml
documents every option), then the built-in default. Every command checks the
variables that are set before it does anything; an invalid or empty one stops
it, naming the variable.

Environment:
  SCOPEWATCH_CONFIG                   the config file (as --config)
  SCOPEWATCH_DATA                     the data directory (as --data; config `data_dir`)
  SCOPEWATCH_LISTEN                   dashboard address of `run` and `serve`, IP:port
                                      (as --listen; default 127.0.0.1:8080)
  SCOPEWATCH_REGISTRY                 the app registry TOML (config `registry`)
  SCOPEWATCH_RULES                    the rule file, with alert delivery (config `rules`)
  SCOPEWATCH_OBSERVATION_WINDOW_DAYS  days before a scope counts as unused, 1-3660
                                      (config `analysis.observation_window_days`, 90)
  SCOPEWATCH_STALE_AFTER_DAYS         days without activity before an app is stale,
                                      1-3660 (config `analysis.stale_after_days`, 90)
  SCOPEWATCH_MEMORY_LIMIT_MIB         query engine memory, MiB, at least 64
                                      (config `analysis.memory_limit_mib`, 2048)
  SCOPEWATCH_THREADS                  query engine threads, 1-64 (config `analysis.threads`)
  SCOPEWATCH_METRICS_LISTEN           Prometheus endpoint of `ingest`, IP:port
                                      (config `ingest.metrics_listen`)
  SCOPEWATCH_PSEUDONYM_KEY            pseudonymisation key, hex or base64, 32+ bytes
                                      (config `ingest.pseudonym_key`)
  SCOPEWATCH_LOG                      log filter, e.g. warn or scopewatch_ingest=debug
                                      (default info)
Secrets in files name their variable instead: the SMTP password
(`password_env` in the rule file's [delivery.smtp]), webhook URLs and headers
(`env:NAME`), push keys (`key_env`, `source_key_env` in [ingest.push]).";

/// The variables the command line reads itself (clap `env`), with their
/// flag. clap's own error for a bad value names only the flag, and an empty
/// value would be taken as an empty path, so they are checked first.
const FLAG_VARIABLES: &[(&str, &str)] = &[
    ("SCOPEWATCH_CONFIG", "--config"),
    ("SCOPEWATCH_DATA", "--data"),
    ("SCOPEWATCH_LISTEN", "--listen"),
];

/// Checks the variables of [`FLAG_VARIABLES`]: set but empty is an error
/// naming the variable (clap refuses an empty value even when the flag is
/// given, as the flags are global), and so is a SCOPEWATCH_LISTEN that is
/// not an address unless `--listen` is given in `args`.
pub fn check_flag_variables(
    args: &[std::ffi::OsString],
    lookup: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<(), String> {
    for (var, flag) in FLAG_VARIABLES {
        let given = args.iter().any(|a| {
            let a = a.to_string_lossy();
            a == *flag || a.starts_with(&format!("{flag}="))
        });
        let Some(value) = lookup(var) else { continue };
        if value.is_empty() {
            return Err(format!(
                "environment variable {var}: is set but empty: give a value or unset it"
            ));
        }
        if given {
            continue;
        }
        let Some(text) = value.to_str() else {
            return Err(format!("environment variable {var}: is not UTF-8"));
        };
        if *var == "SCOPEWATCH_LISTEN" && text.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!(
                "environment variable {var}: {text:?}: use IP:port, e.g. 127.0.0.1:8080 or 0.0.0.0:8080"
            ));
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Data directory: the lake, checkpoints and state [default: ./scopewatch-data,
    /// or `data_dir` from the config]
    #[arg(long, global = true, env = "SCOPEWATCH_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Configuration file (scopewatch.toml)
    #[arg(long, global = true, env = "SCOPEWATCH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Explain, check and minimise SMART scopes
    #[command(subcommand)]
    Scopes(ScopesCommand),
    /// Validate the app registry
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// Read logs into the lake: follow the config's sources until stopped,
    /// or backfill files with --once
    Ingest(IngestArgs),
    /// Write a realistic multi-tenant SMART ecosystem as logs of every
    /// format, with its registry, a config that ingests it, and
    /// ground-truth.json (the true scope matrix and every injected incident)
    Generate(GenerateArgs),
    /// Ask the lake your own question in SQL (DuckDB), read-only: a query
    /// as argument, `;`-separated queries on stdin, or an interactive
    /// prompt on a terminal (`.tables`, `.schema [view]`, `.quit`)
    Sql(SqlArgs),
    /// The quarterly scope report over a date range: a printable HTML page
    /// with charts, CSV (one row per app x tenant x scope) or JSON
    Report(crate::report::ReportArgs),
    /// Detection rules: check a rule file, print the built-in one, or
    /// backtest rules over the lake's history
    #[command(subcommand)]
    Rules(crate::rules::RulesCommand),
    /// The alerts streaming detection raised: list them, change their status
    #[command(subcommand)]
    Alerts(crate::rules::AlertsCommand),
    /// Everything in one process: ingest with streaming rules and alert
    /// delivery, and the dashboard; without --config, on the bundled samples
    Run(crate::run::RunArgs),
    /// The web dashboard (login required): `scopewatch serve [--listen ADDR]`
    Serve(crate::serve::ServeArgs),
    /// Dashboard users: add, reset, disable, list
    #[command(subcommand)]
    User(crate::serve::UserCommand),
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The query (SELECT, WITH, FROM, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN,
    /// PRAGMA table_info), several separated by `;`; without it, queries
    /// are read from stdin, or from a prompt when stdin is a terminal
    #[arg(value_name = "QUERY")]
    pub query: Option<String>,
    /// Output format [default: table on a terminal, else json]
    #[arg(long, value_enum)]
    pub format: Option<SqlFormat>,
    /// Rows to print per query, 0 for all [default: 1000 for table, else all]
    #[arg(long, value_name = "N")]
    pub max_rows: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SqlFormat {
    /// An aligned table with a row count
    Table,
    /// One JSON object per row, column names as keys
    Json,
    /// A header row, then RFC 4180 CSV
    Csv,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Folder to write into (created; existing files of the same names are
    /// replaced)
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the random choices: the same seed writes the same bytes
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Days of activity, ending with --end
    #[arg(long, default_value_t = 14)]
    pub days: u32,
    /// Number of tenants (hospitals)
    #[arg(long, default_value_t = 3)]
    pub tenants: usize,
    /// Number of apps (clinician, patient and backend, in turn)
    #[arg(long, default_value_t = 9)]
    pub apps: usize,
    /// Events per weekday (weekends have fewer), incidents not counted
    #[arg(long, default_value_t = 2000)]
    pub events_per_day: u64,
    /// Formats to write, comma separated
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "keycloak,nginx,kong,envoy,fhir-auditevent,scopewatch"
    )]
    pub formats: Vec<String>,
    /// Last day (YYYY-MM-DD); default yesterday (UTC), so every event is past
    #[arg(long)]
    pub end: Option<String>,
    /// `data_dir` written into the generated scopewatch.toml (relative to it)
    #[arg(long, default_value = "scopewatch-data")]
    pub config_data_dir: String,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Read to the end, commit, print a summary and exit: the given paths,
    /// or without paths the config's sources
    #[arg(long)]
    pub once: bool,
    /// Files, folders or globs to backfill (with --once)
    #[arg(value_name = "PATH")]
    pub paths: Vec<String>,
    /// Log format of the given paths
    #[arg(long, default_value = "scopewatch")]
    pub format: String,
    /// Tenant of events whose line does not name one
    #[arg(long)]
    pub tenant: Option<String>,
    /// Environment of events whose line does not name one (prod, sandbox, test)
    #[arg(long, default_value = "prod")]
    pub env: String,
    /// Source name for the given paths (part of every event id)
    #[arg(long, default_value = "cli")]
    pub source: String,
    /// No progress bar
    #[arg(long)]
    pub quiet: bool,
    /// Following: do not run the detection rules on what is ingested
    #[arg(long)]
    pub no_rules: bool,
}

#[derive(Debug, Subcommand)]
pub enum ScopesCommand {
    /// Print what each scope means: one JSON object per scope with `input`,
    /// `valid`, `kind`, `version`, `context`, `resource`, `permissions`,
    /// `filter`, `normalised` and `error`
    Explain {
        /// Scopes, each an argument or several in one space-separated argument
        #[arg(required = true, value_name = "SCOPE")]
        scopes: Vec<String>,
    },
    /// Decide whether granted scopes allow one FHIR request
    Check {
        /// The token's scopes, space-separated
        #[arg(long, value_name = "SCOPES")]
        granted: String,
        /// The request: "METHOD PATH[?QUERY]", e.g. "GET /fhir/Observation?patient=1"
        #[arg(long, value_name = "REQUEST")]
        request: String,
        /// FHIR base path prefix, e.g. /fhir/r4 or /fhir/{tenant} [default: from
        /// the config, else the first R4 resource type in the path starts the request]
        #[arg(long, value_name = "PREFIX")]
        base: Option<String>,
        /// Judge the call in this context instead of inferring it from the grants
        #[arg(long, value_enum)]
        context: Option<ContextArg>,
        /// For a batch or transaction: the Bundle (JSON file) whose entries are judged one by one
        #[arg(long, value_name = "FILE")]
        bundle: Option<PathBuf>,
    },
    /// Print the smallest scope set that covers a list of uses (least privilege)
    #[command(alias = "minimize")]
    Minimise {
        /// Permissions used, e.g. "patient/Observation.r patient/Observation.s launch"
        #[arg(long, required = true, num_args = 1.., value_name = "REQUIRED")]
        used: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ContextArg {
    Patient,
    User,
    System,
}

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Validate a registry file; prints a JSON summary, exits 1 on problems
    Check {
        /// The registry TOML [default: `registry` from the config]
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
}
