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
#[command(name = "scopewatch", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
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
