//! The configuration file, `scopewatch.toml`, in the project's two steps:
//! [`ConfigFile`] is what serde reads (unknown keys are errors, every field
//! documented, units in names), and [`Config`] is the validated runtime form
//! that the rest of the program uses. Later parts add their own sections.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::events::Env;
use crate::request::FhirBase;

/// The data directory used when neither `--data` nor the config names one.
pub const DEFAULT_DATA_DIR: &str = "./scopewatch-data";

/// `scopewatch.toml` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Where the lake, checkpoints and state live (default `./scopewatch-data`;
    /// `--data` overrides it).
    pub data_dir: Option<PathBuf>,
    /// The app registry TOML (relative paths are relative to the config file).
    pub registry: Option<PathBuf>,
    /// The detection rule file (TOML; relative to the config file). When
    /// absent the built-in rules run (`rules/default-rules.toml`).
    pub rules: Option<PathBuf>,
    /// How FHIR request paths are read.
    #[serde(default)]
    pub fhir: FhirSection,
    /// Scope analysis settings.
    #[serde(default)]
    pub analysis: AnalysisSection,
    /// How ingest writes the lake.
    #[serde(default)]
    pub ingest: IngestSection,
    /// The logs to read, one `[[source]]` table each.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceSection>,
}

/// `[ingest]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSection {
    /// Close a Parquet file once it holds this many events.
    #[serde(default = "default_max_rows")]
    pub max_rows_per_file: usize,
    /// Close a Parquet file once its oldest event waited this long, so a
    /// tailed event is queryable within about two seconds.
    #[serde(default = "default_max_age_ms")]
    pub max_file_age_ms: u64,
    /// Longer lines are cut to this size and dead-lettered.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// The pseudonymisation key (hex or base64, at least 32 bytes). Absent:
    /// `<data>/state/pseudonym.key`, created on first run. Prefer the
    /// `SCOPEWATCH_PSEUDONYM_KEY` environment variable to a key in a file.
    pub pseudonym_key: Option<String>,
    /// Address for the Prometheus `/metrics` endpoint of `scopewatch ingest`,
    /// e.g. `127.0.0.1:9898` (checked when the config is read). Absent: no
    /// endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// `[ingest.push]`: the HTTP push endpoint (`POST /ingest/<source>`).
    /// Absent: no endpoint. After validation it is in [`Config::push`]
    /// (and `None` here).
    pub push: Option<PushSection>,
}

/// `[ingest.push]`: `scopewatch ingest` takes NDJSON (or any configured
/// format, one entry a line) by HTTP, `POST /ingest/<source>` with
/// `Authorization: Bearer <key>`, optionally `Content-Encoding: gzip`, and
/// answers 200 only once the events are durable in the lake.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushSection {
    /// Address to listen on, `IP:port` (e.g. `127.0.0.1:9899`; port 0 takes
    /// a free port, which is logged at start). No host names.
    pub listen: String,
    /// Name of the environment variable holding the bearer key shippers
    /// send (e.g. `SCOPEWATCH_PUSH_KEY`). The preferred way to give the key.
    pub key_env: Option<String>,
    /// The bearer key itself, written in the file (for tests; prefer
    /// `key_env`). At least 16 characters. Give `key_env` or `key`, not both.
    pub key: Option<Secret>,
    /// Per-source keys: source name -> environment variable holding that
    /// source's key, e.g. `{ gateway = "SCOPEWATCH_PUSH_KEY_GATEWAY" }`. A
    /// source listed here accepts only its own key; the others take the
    /// shared `key_env` / `key`.
    #[serde(default)]
    pub source_key_env: BTreeMap<String, String>,
    /// Names of the `[[source]]`s that accept pushes. Absent: every source.
    /// A source that only takes pushes needs no `paths`.
    pub sources: Option<Vec<String>>,
    /// Largest request body in bytes, both as sent and after gzip
    /// decompression (a zip bomb stops here); larger bodies get 413.
    /// Lines longer than `ingest.max_line_bytes` get 413 too.
    #[serde(default = "default_push_max_body_bytes")]
    pub max_body_bytes: usize,
    /// How many recently committed request bodies each source remembers
    /// (by SHA-256, in the lake journal), so a shipper retrying a request
    /// whose answer it lost gets 200 without the events being written
    /// twice. 0: do not remember (a retry writes the events again, under
    /// the same event ids).
    #[serde(default = "default_push_dedup_bodies")]
    pub dedup_bodies: usize,
    /// Requests being read, parsed or waiting for their commit at once;
    /// more get 503 with `Retry-After`.
    #[serde(default = "default_push_max_concurrent_requests")]
    pub max_concurrent_requests: usize,
}

fn default_push_max_body_bytes() -> usize {
    10 << 20
}
fn default_push_dedup_bodies() -> usize {
    1024
}
fn default_push_max_concurrent_requests() -> usize {
    32
}

/// A secret read from the config file: never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret's text, for the one place that must compare it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The validated `[ingest.push]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushConfig {
    pub listen: SocketAddr,
    /// The key of sources without their own; `None` when every push source
    /// has its own.
    pub key: Option<KeySource>,
    /// Per-source keys.
    pub source_keys: BTreeMap<String, KeySource>,
    /// The sources that accept pushes, in config order.
    pub sources: Vec<String>,
    pub max_body_bytes: usize,
    /// `ingest.max_line_bytes`.
    pub max_line_bytes: usize,
    pub dedup_bodies: usize,
    pub max_concurrent_requests: usize,
}

/// Where a push key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// An environment variable, read when the endpoint starts.
    Env(String),
    /// Written in the config file.
    Literal(Secret),
}

/// Shortest key accepted.
pub const MIN_PUSH_KEY_CHARS: usize = 16;

impl KeySource {
    /// The key, looking environment variables up with `env` (the caller
    /// passes `std::env::var`; this crate does no IO). The error names the
    /// variable, never a value.
    pub fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> Result<Secret, String> {
        let key = match self {
            KeySource::Literal(s) => s.clone(),
            KeySource::Env(name) => match env(name) {
                Some(v) => Secret(v.trim().to_string()),
                None => return Err(format!("environment variable {name} is not set")),
            },
        };
        if key.0.chars().count() < MIN_PUSH_KEY_CHARS {
            let what = match self {
                KeySource::Env(name) => format!("the key in {name}"),
                KeySource::Literal(_) => "the key".to_string(),
            };
            return Err(format!(
                "{what} is shorter than {MIN_PUSH_KEY_CHARS} characters"
            ));
        }
        Ok(key)
    }
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn default_max_rows() -> usize {
    200_000
}
fn default_max_age_ms() -> u64 {
    1_000
}
fn default_max_line_bytes() -> usize {
    1 << 20
}

impl Default for IngestSection {
    fn default() -> Self {
        IngestSection {
            max_rows_per_file: default_max_rows(),
            max_file_age_ms: default_max_age_ms(),
            max_line_bytes: default_max_line_bytes(),
            pseudonym_key: None,
            metrics_listen: None,
            push: None,
        }
    }
}

/// `[[source]]`: one log to follow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    /// A short unique name (letters, digits, `-`, `_`); it is part of every
    /// event id, so renaming a source re-reads its files as new.
    pub name: String,
    /// The log format: `scopewatch` (the canonical NDJSON) or an adapter name.
    #[serde(default = "default_format")]
    pub format: String,
    /// Files, folders or globs (`*`, `?` in the last component); relative
    /// paths are relative to the config file. May be empty (or absent) only
    /// for a source that takes pushes (`[ingest.push]`) and nothing else.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Tenant of events whose line does not name one.
    pub tenant: Option<String>,
    /// Environment of events whose line does not name one (prod, sandbox, test).
    #[serde(default = "default_env")]
    pub env: String,
    /// Where to start in files found at startup with no checkpoint:
    /// `beginning` or `end`. Files appearing later are always read whole.
    #[serde(default = "default_start_at")]
    pub start_at: String,
    /// Where an event's tenant comes from: `fixed` (the `tenant` above),
    /// `host` (the request's host name), `path:N` (the Nth path segment,
    /// 1-based), `realm` (the identity provider's realm), `claim:iss` or
    /// `claim:aud` (of the bearer token). Absent: the format's own default
    /// (`realm` for keycloak, else `fixed`). What it gives is looked up in
    /// `tenant_map` first; a URL claim without a mapping gives its last path
    /// segment. Events where it gives nothing fall back to `tenant`.
    pub tenant_from: Option<String>,
    /// Values of `tenant_from` renamed to tenant names, e.g.
    /// `{ "fhir.north.example.org" = "north" }`.
    #[serde(default)]
    pub tenant_map: std::collections::BTreeMap<String, String>,
    /// Where an app's version comes from: `claim:NAME` (a bearer token claim)
    /// or `user_agent:REGEX` (the first capture group of a regular
    /// expression over the User-Agent, e.g. `user_agent:CardioApp/([0-9.]+)`).
    /// Absent: the version a line states itself, if any.
    pub app_version_from: Option<String>,
    /// Request paths that are an OAuth authorize endpoint: a gateway line for
    /// one becomes an `auth` event of kind `authorize` with the scopes of its
    /// `scope` parameter. Matched as path suffixes.
    #[serde(default = "default_authorize_paths")]
    pub authorize_paths: Vec<String>,
    /// For JSON gateway logs whose field names a site chooses (nginx
    /// `log_format ... escape=json`, envoy JSON): our field -> theirs, e.g.
    /// `method = "request_method"`. Our fields: ts, method, path, query,
    /// status, bytes, latency_ms, ip, user_agent, host, authorization,
    /// client_id, request_id.
    #[serde(default)]
    pub fields: std::collections::BTreeMap<String, String>,
}

fn default_authorize_paths() -> Vec<String> {
    vec![
        "/protocol/openid-connect/auth".into(),
        "/authorize".into(),
        "/oauth2/authorize".into(),
    ]
}

fn default_format() -> String {
    "scopewatch".into()
}
fn default_env() -> String {
    "prod".into()
}
fn default_start_at() -> String {
    "beginning".into()
}

/// `[fhir]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FhirSection {
    /// Path prefixes of the FHIR base, e.g. `["/fhir/r4/{tenant}"]`; a `{name}`
    /// segment matches any one segment. Empty: the base is found by the first
    /// segment that is an R4 resource type.
    #[serde(default)]
    pub base_paths: Vec<String>,
}

/// `[analysis]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisSection {
    /// Days of history a scope must go unused before it is called unused.
    #[serde(default = "default_window_days")]
    pub observation_window_days: u32,
    /// Days without calls or grants after which an app is stale.
    #[serde(default = "default_window_days")]
    pub stale_after_days: u32,
    /// Memory the embedded query engine (DuckDB) may use, in MiB; larger
    /// intermediate results spill to a temporary directory. At least 64.
    #[serde(default = "default_memory_limit_mib")]
    pub memory_limit_mib: u32,
    /// Worker threads of the query engine, 1 to 64. Absent: the machine's
    /// cores, at most 8.
    #[serde(default = "default_threads")]
    pub threads: u16,
}

fn default_window_days() -> u32 {
    90
}

fn default_memory_limit_mib() -> u32 {
    2048
}

/// The machine's cores, at most 8 (1 when they cannot be counted).
fn default_threads() -> u16 {
    std::thread::available_parallelism()
        .map(|n| n.get().min(8) as u16)
        .unwrap_or(1)
}

impl Default for AnalysisSection {
    fn default() -> Self {
        AnalysisSection {
            observation_window_days: default_window_days(),
            stale_after_days: default_window_days(),
            memory_limit_mib: default_memory_limit_mib(),
            threads: default_threads(),
        }
    }
}

/// Resource limits of the query engine, from `[analysis]` (validated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnalysisLimits {
    /// `analysis.memory_limit_mib`, at least 64.
    pub memory_limit_mib: u32,
    /// `analysis.threads`, 1 to 64.
    pub threads: u16,
}

impl Default for AnalysisLimits {
    fn default() -> Self {
        AnalysisLimits {
            memory_limit_mib: default_memory_limit_mib(),
            threads: default_threads(),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub registry: Option<PathBuf>,
    /// `None`: the built-in rules.
    pub rules: Option<PathBuf>,
    pub fhir_base: FhirBase,
    pub observation_window_days: u32,
    pub stale_after_days: u32,
    /// Memory and threads of the query engine.
    pub analysis_limits: AnalysisLimits,
    pub ingest: IngestSection,
    pub sources: Vec<Source>,
    /// The push endpoint, when `[ingest.push]` is configured.
    pub push: Option<PushConfig>,
}

/// A validated `[[source]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    pub format: String,
    /// Empty for a source that only takes pushes.
    pub paths: Vec<String>,
    pub tenant: Option<String>,
    pub env: Env,
    pub start_at_end: bool,
    pub options: SourceOptions,
}

/// How a source's lines are read beyond their format: validated forms of
/// `tenant_from`, `tenant_map`, `app_version_from`, `authorize_paths` and
/// `fields`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceOptions {
    /// `None`: the format's default.
    pub tenant_from: Option<TenantFrom>,
    pub tenant_map: std::collections::BTreeMap<String, String>,
    pub app_version_from: Option<VersionFrom>,
    pub authorize_paths: Vec<String>,
    pub fields: std::collections::BTreeMap<String, String>,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            tenant_from: None,
            tenant_map: Default::default(),
            app_version_from: None,
            authorize_paths: default_authorize_paths(),
            fields: Default::default(),
        }
    }
}

impl SourceOptions {
    /// A value `tenant_from` gave, as a tenant name: mapped if `tenant_map`
    /// names it, else the last path segment of a URL, else itself.
    pub fn tenant_name(&self, value: &str) -> Option<String> {
        if let Some(t) = self.tenant_map.get(value) {
            return Some(t.clone());
        }
        let v = value.trim();
        let v = if v.contains("://") {
            v.trim_end_matches('/').rsplit('/').next().unwrap_or(v)
        } else {
            v
        };
        (!v.is_empty()).then(|| v.to_string())
    }

    /// Whether `path` (without its query) is an authorize endpoint.
    pub fn is_authorize_path(&self, path: &str) -> bool {
        let path = path.split('?').next().unwrap_or(path).trim_end_matches('/');
        self.authorize_paths
            .iter()
            .any(|p| path.ends_with(p.trim_end_matches('/')))
    }
}

/// Where an event's tenant comes from (see `tenant_from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantFrom {
    Fixed,
    Host,
    /// 1-based segment of the request path.
    PathSegment(usize),
    Realm,
    Claim(String),
}

impl TenantFrom {
    pub fn parse(text: &str) -> Result<TenantFrom, String> {
        match text {
            "fixed" => Ok(TenantFrom::Fixed),
            "host" => Ok(TenantFrom::Host),
            "realm" => Ok(TenantFrom::Realm),
            _ => {
                if let Some(n) = text.strip_prefix("path:") {
                    match n.parse::<usize>() {
                        Ok(n) if n >= 1 => Ok(TenantFrom::PathSegment(n)),
                        _ => Err(format!("{text:?}: `path:N` needs N >= 1")),
                    }
                } else if let Some(c) = text.strip_prefix("claim:") {
                    if c.is_empty() {
                        Err(format!("{text:?}: name the claim, e.g. `claim:iss`"))
                    } else {
                        Ok(TenantFrom::Claim(c.to_string()))
                    }
                } else {
                    Err(format!(
                        "{text:?}: use fixed, host, path:N, realm, claim:iss or claim:aud"
                    ))
                }
            }
        }
    }
}

/// Where an app's version comes from (see `app_version_from`).
#[derive(Debug, Clone)]
pub enum VersionFrom {
    Claim(String),
    UserAgent(regex::Regex),
}

impl PartialEq for VersionFrom {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (VersionFrom::Claim(a), VersionFrom::Claim(b)) => a == b,
            (VersionFrom::UserAgent(a), VersionFrom::UserAgent(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl Eq for VersionFrom {}

impl VersionFrom {
    pub fn parse(text: &str) -> Result<VersionFrom, String> {
        if let Some(c) = text.strip_prefix("claim:") {
            if c.is_empty() {
                return Err(format!(
                    "{text:?}: name the claim, e.g. `claim:software_version`"
                ));
            }
            return Ok(VersionFrom::Claim(c.to_string()));
        }
        if let Some(re) = text.strip_prefix("user_agent:") {
            let re = regex::Regex::new(re)
                .map_err(|e| format!("{re:?} is not a regular expression: {e}"))?;
            if re.captures_len() < 2 {
                return Err(format!(
                    "{text:?}: the expression needs a capture group around the version, e.g. `App/([0-9.]+)`"
                ));
            }
            return Ok(VersionFrom::UserAgent(re));
        }
        Err(format!("{text:?}: use claim:NAME or user_agent:REGEX"))
    }

    /// The version in a User-Agent, for `user_agent:` sources.
    pub fn from_user_agent(&self, user_agent: &str) -> Option<String> {
        match self {
            VersionFrom::UserAgent(re) => re
                .captures(user_agent)
                .and_then(|c| c.get(1))
                .map(|m| m.as_str().to_string()),
            VersionFrom::Claim(_) => None,
        }
    }
}

/// The fields a `[source.fields]` table may map.
pub const MAPPABLE_FIELDS: &[&str] = &[
    "ts",
    "method",
    "path",
    "query",
    "status",
    "bytes",
    "latency_ms",
    "ip",
    "user_agent",
    "host",
    "authorization",
    "client_id",
    "request_id",
];

/// A configuration that cannot be used, with where and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {file}: {source} (check the path given to --config)")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("config file {file}: {message}")]
    Syntax { file: String, message: String },
    #[error("config file {file}: field `{field}`: {message}")]
    Invalid {
        file: String,
        field: String,
        message: String,
    },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

/// The days an observation window or the staleness threshold may span.
pub const DAYS_RANGE: std::ops::RangeInclusive<u32> = 1..=3660;
/// The least memory the query engine may be given, in MiB.
pub const MIN_MEMORY_LIMIT_MIB: u32 = 64;
/// The query engine's worker threads.
pub const THREADS_RANGE: std::ops::RangeInclusive<u16> = 1..=64;

/// The environment variables that override a setting of the config file,
/// each with the field it replaces. Precedence, highest first: a
/// command-line flag, then the environment, then the config file, then the
/// built-in default. (`SCOPEWATCH_CONFIG`, `SCOPEWATCH_DATA` and
/// `SCOPEWATCH_LISTEN` are read by the command line itself, as defaults of
/// `--config`, `--data` and `--listen`; `SCOPEWATCH_PSEUDONYM_KEY` by ingest.)
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("SCOPEWATCH_REGISTRY", "registry"),
    ("SCOPEWATCH_RULES", "rules"),
    (
        "SCOPEWATCH_OBSERVATION_WINDOW_DAYS",
        "analysis.observation_window_days",
    ),
    ("SCOPEWATCH_STALE_AFTER_DAYS", "analysis.stale_after_days"),
    ("SCOPEWATCH_MEMORY_LIMIT_MIB", "analysis.memory_limit_mib"),
    ("SCOPEWATCH_THREADS", "analysis.threads"),
    ("SCOPEWATCH_METRICS_LISTEN", "ingest.metrics_listen"),
];

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            registry: None,
            rules: None,
            fhir_base: FhirBase::auto(),
            observation_window_days: default_window_days(),
            stale_after_days: default_window_days(),
            analysis_limits: AnalysisLimits::default(),
            ingest: IngestSection::default(),
            sources: Vec::new(),
            push: None,
        }
    }
}

impl Config {
    /// Every configured source as (name, format): reports name the formats
    /// their figures come from and the sources that delivered nothing.
    pub fn source_formats(&self) -> Vec<(String, String)> {
        self.sources
            .iter()
            .map(|s| (s.name.clone(), s.format.clone()))
            .collect()
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            file: file.clone(),
            source,
        })?;
        let base_dir = path.parent().unwrap_or(Path::new("."));
        Config::from_toml_str(&text, &file, base_dir)
    }

    /// Parses and validates config text; `file` names it in errors and
    /// relative paths are resolved against `base_dir`.
    pub fn from_toml_str(text: &str, file: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let raw: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            file: file.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        raw.validate(file, base_dir)
    }
}

impl Config {
    /// Applies the [`ENV_OVERRIDES`] that `lookup` finds (the caller passes
    /// `std::env::var`; this crate does no IO), with the checks the config
    /// file's fields get. Relative paths are taken as given (relative to the
    /// working directory, like a flag's). An empty variable is an error, not
    /// "unset": it is most often a template that filled in nothing. Returns
    /// the names of the variables applied.
    pub fn apply_env(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<&'static str>, ConfigError> {
        let mut applied = Vec::new();
        for (var, _) in ENV_OVERRIDES {
            let Some(raw) = lookup(var) else { continue };
            let err = |message: String| ConfigError::Env {
                var: (*var).to_string(),
                message,
            };
            let value = raw.trim();
            if value.is_empty() {
                return Err(err("is set but empty: give a value or unset it".to_string()));
            }
            let number =
                |range: std::ops::RangeInclusive<u32>, hint: String| match value.parse::<u32>() {
                    Ok(n) if range.contains(&n) => Ok(n),
                    _ => Err(err(format!("{value:?}: use {hint}"))),
                };
            let days = || {
                let (lo, hi) = (DAYS_RANGE.start(), DAYS_RANGE.end());
                number(DAYS_RANGE, format!("{lo} to {hi} (days)"))
            };
            match *var {
                "SCOPEWATCH_REGISTRY" => self.registry = Some(PathBuf::from(value)),
                "SCOPEWATCH_RULES" => self.rules = Some(PathBuf::from(value)),
                "SCOPEWATCH_OBSERVATION_WINDOW_DAYS" => self.observation_window_days = days()?,
                "SCOPEWATCH_STALE_AFTER_DAYS" => self.stale_after_days = days()?,
                "SCOPEWATCH_MEMORY_LIMIT_MIB" => {
                    self.analysis_limits.memory_limit_mib = number(
                        MIN_MEMORY_LIMIT_MIB..=u32::MAX,
                        format!("at least {MIN_MEMORY_LIMIT_MIB} (MiB)"),
                    )?
                }
                "SCOPEWATCH_THREADS" => {
                    let (lo, hi) = (*THREADS_RANGE.start(), *THREADS_RANGE.end());
                    self.analysis_limits.threads =
                        number(u32::from(lo)..=u32::from(hi), format!("{lo} to {hi}"))? as u16
                }
                "SCOPEWATCH_METRICS_LISTEN" => {
                    self.ingest.metrics_listen =
                        Some(value.parse::<SocketAddr>().map_err(|_| {
                            err(format!("{value:?}: use IP:port, e.g. 127.0.0.1:9898"))
                        })?)
                }
                other => unreachable!("{other} is in ENV_OVERRIDES without a handler"),
            }
            applied.push(*var);
        }
        Ok(applied)
    }
}

impl ConfigFile {
    /// Turns what was read into the runtime form, or says which field is wrong.
    pub fn validate(self, file: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            file: file.to_string(),
            field: field.to_string(),
            message,
        };
        let resolve = |p: PathBuf| if p.is_relative() { base_dir.join(p) } else { p };
        let fhir_base = if self.fhir.base_paths.is_empty() {
            FhirBase::auto()
        } else {
            FhirBase::parse_many(self.fhir.base_paths.iter().map(String::as_str))
                .map_err(|e| invalid("fhir.base_paths", e.to_string()))?
        };
        for (field, days) in [
            (
                "analysis.observation_window_days",
                self.analysis.observation_window_days,
            ),
            ("analysis.stale_after_days", self.analysis.stale_after_days),
        ] {
            if !DAYS_RANGE.contains(&days) {
                let (lo, hi) = (DAYS_RANGE.start(), DAYS_RANGE.end());
                return Err(invalid(field, format!("{days} days: use {lo} to {hi}")));
            }
        }
        if self.analysis.memory_limit_mib < MIN_MEMORY_LIMIT_MIB {
            return Err(invalid(
                "analysis.memory_limit_mib",
                format!(
                    "{} MiB: use at least {MIN_MEMORY_LIMIT_MIB}",
                    self.analysis.memory_limit_mib
                ),
            ));
        }
        if !THREADS_RANGE.contains(&self.analysis.threads) {
            let (lo, hi) = (THREADS_RANGE.start(), THREADS_RANGE.end());
            return Err(invalid(
                "analysis.threads",
                format!("{}: use {lo} to {hi}", self.analysis.threads),
            ));
        }
        let analysis_limits = AnalysisLimits {
            memory_limit_mib: self.analysis.memory_limit_mib,
            threads: self.analysis.threads,
        };
        let mut ingest = self.ingest;
        let push_section = ingest.push.take();
        // Sources that take pushes may go without paths.
        let push_sources: Vec<String> = match &push_section {
            None => Vec::new(),
            Some(p) => match &p.sources {
                Some(names) => names.clone(),
                None => self.sources.iter().map(|s| s.name.clone()).collect(),
            },
        };
        if ingest.max_rows_per_file == 0 {
            return Err(invalid(
                "ingest.max_rows_per_file",
                "must be at least 1".into(),
            ));
        }
        if ingest.max_file_age_ms == 0 {
            return Err(invalid(
                "ingest.max_file_age_ms",
                "must be at least 1".into(),
            ));
        }
        if ingest.max_line_bytes < 1024 {
            return Err(invalid(
                "ingest.max_line_bytes",
                format!("{} bytes: use at least 1024", ingest.max_line_bytes),
            ));
        }
        let mut sources: Vec<Source> = Vec::new();
        for (i, s) in self.sources.into_iter().enumerate() {
            let field = |f: &str| format!("source[{i}].{f}");
            if s.name.is_empty()
                || !s
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(
                    &field("name"),
                    format!("{:?}: use letters, digits, - and _", s.name),
                ));
            }
            if sources.iter().any(|o| o.name == s.name) {
                return Err(invalid(
                    &field("name"),
                    format!("{:?} is used by another source", s.name),
                ));
            }
            if s.paths.is_empty() && !push_sources.contains(&s.name) {
                let message = if push_section.is_some() {
                    "give at least one file, folder or glob, or list the source in ingest.push.sources to take pushes only"
                } else {
                    "give at least one file, folder or glob (or configure [ingest.push] for a source that only takes pushes)"
                };
                return Err(invalid(&field("paths"), message.into()));
            }
            let env = Env::parse(&s.env).ok_or_else(|| {
                invalid(
                    &field("env"),
                    format!("{:?}: use prod, sandbox or test", s.env),
                )
            })?;
            let start_at_end = match s.start_at.as_str() {
                "beginning" => false,
                "end" => true,
                other => {
                    return Err(invalid(
                        &field("start_at"),
                        format!("{other:?}: use beginning or end"),
                    ))
                }
            };
            let paths = s
                .paths
                .iter()
                .map(|p| {
                    let path = Path::new(p);
                    if path.is_relative() {
                        base_dir.join(path).to_string_lossy().into_owned()
                    } else {
                        p.clone()
                    }
                })
                .collect();
            let tenant_from = s
                .tenant_from
                .as_deref()
                .map(TenantFrom::parse)
                .transpose()
                .map_err(|m| invalid(&field("tenant_from"), m))?;
            let app_version_from = s
                .app_version_from
                .as_deref()
                .map(VersionFrom::parse)
                .transpose()
                .map_err(|m| invalid(&field("app_version_from"), m))?;
            if let Some(unknown) = s
                .fields
                .keys()
                .find(|k| !MAPPABLE_FIELDS.contains(&k.as_str()))
            {
                return Err(invalid(
                    &field(&format!("fields.{unknown}")),
                    format!(
                        "not a field scopewatch reads; known: {}",
                        MAPPABLE_FIELDS.join(", ")
                    ),
                ));
            }
            if s.authorize_paths.iter().any(|p| !p.starts_with('/')) {
                return Err(invalid(
                    &field("authorize_paths"),
                    "each path starts with `/`".into(),
                ));
            }
            sources.push(Source {
                name: s.name,
                format: s.format,
                paths,
                tenant: s.tenant,
                env,
                start_at_end,
                options: SourceOptions {
                    tenant_from,
                    tenant_map: s.tenant_map,
                    app_version_from,
                    authorize_paths: s.authorize_paths,
                    fields: s.fields,
                },
            });
        }
        let push = push_section
            .map(|p| validate_push(p, &sources, ingest.max_line_bytes))
            .transpose()
            .map_err(|(f, m)| invalid(&format!("ingest.push.{f}"), m))?;
        Ok(Config {
            ingest,
            sources,
            push,
            data_dir: self
                .data_dir
                .map(resolve)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            registry: self.registry.map(resolve),
            rules: self.rules.map(resolve),
            fhir_base,
            observation_window_days: self.analysis.observation_window_days,
            stale_after_days: self.analysis.stale_after_days,
            analysis_limits,
        })
    }
}

/// `[ingest.push]` against the validated sources; errors are (field, message).
fn validate_push(
    p: PushSection,
    sources: &[Source],
    max_line_bytes: usize,
) -> Result<PushConfig, (String, String)> {
    let err = |f: &str, m: String| (f.to_string(), m);
    let listen: SocketAddr = p.listen.parse().map_err(|_| {
        err(
            "listen",
            format!("{:?}: use IP:port, e.g. 127.0.0.1:9899", p.listen),
        )
    })?;
    let known = |name: &str| sources.iter().any(|s| s.name == name);
    let names = match p.sources {
        Some(names) => {
            if names.is_empty() {
                return Err(err(
                    "sources",
                    "name at least one [[source]] (or leave it out: every source)".into(),
                ));
            }
            if let Some(unknown) = names.iter().find(|n| !known(n)) {
                return Err(err(
                    "sources",
                    format!("{unknown:?} is not the name of a [[source]]"),
                ));
            }
            let mut unique: Vec<String> = Vec::new();
            for n in names {
                if !unique.contains(&n) {
                    unique.push(n);
                }
            }
            unique
        }
        None => sources.iter().map(|s| s.name.clone()).collect(),
    };
    if names.is_empty() {
        return Err(err(
            "sources",
            "no [[source]] to push to: add one (it may have no paths)".into(),
        ));
    }
    let key = match (p.key_env, p.key) {
        (Some(_), Some(_)) => {
            return Err(err(
                "key",
                "give key_env or key, not both (key_env is preferred)".into(),
            ))
        }
        (Some(name), None) => {
            if !is_env_name(&name) {
                return Err(err(
                    "key_env",
                    format!("{name:?} is not an environment variable name"),
                ));
            }
            Some(KeySource::Env(name))
        }
        (None, Some(secret)) => {
            if secret.0.chars().count() < MIN_PUSH_KEY_CHARS {
                return Err(err(
                    "key",
                    format!("shorter than {MIN_PUSH_KEY_CHARS} characters"),
                ));
            }
            Some(KeySource::Literal(secret))
        }
        (None, None) => None,
    };
    let mut source_keys = BTreeMap::new();
    for (source, var) in p.source_key_env {
        if !names.contains(&source) {
            return Err(err(
                &format!("source_key_env.{source}"),
                "not a source that takes pushes".into(),
            ));
        }
        if !is_env_name(&var) {
            return Err(err(
                &format!("source_key_env.{source}"),
                format!("{var:?} is not an environment variable name"),
            ));
        }
        source_keys.insert(source, KeySource::Env(var));
    }
    if key.is_none() {
        if let Some(without) = names.iter().find(|n| !source_keys.contains_key(*n)) {
            return Err(err(
                "key_env",
                format!(
                    "source {without:?} has no key: set key_env (or key), or give it one in source_key_env"
                ),
            ));
        }
    }
    if !(1024..=(1 << 30)).contains(&p.max_body_bytes) {
        return Err(err(
            "max_body_bytes",
            format!("{} bytes: use 1024 to 1073741824", p.max_body_bytes),
        ));
    }
    if p.dedup_bodies > 65_536 {
        return Err(err(
            "dedup_bodies",
            format!("{}: use 0 to 65536", p.dedup_bodies),
        ));
    }
    if !(1..=4096).contains(&p.max_concurrent_requests) {
        return Err(err(
            "max_concurrent_requests",
            format!("{}: use 1 to 4096", p.max_concurrent_requests),
        ));
    }
    Ok(PushConfig {
        listen,
        key,
        source_keys,
        sources: names,
        max_body_bytes: p.max_body_bytes,
        max_line_bytes,
        dedup_bodies: p.dedup_bodies,
        max_concurrent_requests: p.max_concurrent_requests,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_relative_paths() {
        let c = Config::from_toml_str("registry = \"reg.toml\"\n", "x.toml", Path::new("/etc/sw"))
            .unwrap();
        assert_eq!(c.registry, Some(PathBuf::from("/etc/sw/reg.toml")));
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.observation_window_days, 90);
        assert!(c.fhir_base.is_auto());
        assert_eq!(c.analysis_limits.memory_limit_mib, 2048);
        assert!((1..=8).contains(&c.analysis_limits.threads));
        assert_eq!(c.analysis_limits, Config::default().analysis_limits);
    }

    #[test]
    fn analysis_limits_are_read_and_validated() {
        let c = Config::from_toml_str(
            "[analysis]\nmemory_limit_mib = 512\nthreads = 3\n",
            "sw.toml",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(
            c.analysis_limits,
            AnalysisLimits {
                memory_limit_mib: 512,
                threads: 3
            }
        );
        let c = Config::from_toml_str(
            "[analysis]\nmemory_limit_mib = 64\nthreads = 64\n",
            "sw.toml",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(c.analysis_limits.memory_limit_mib, 64);
        assert_eq!(c.analysis_limits.threads, 64);
        for (bad, field) in [
            ("memory_limit_mib = 63", "analysis.memory_limit_mib"),
            ("memory_limit_mib = 0", "analysis.memory_limit_mib"),
            ("threads = 0", "analysis.threads"),
            ("threads = 65", "analysis.threads"),
            ("threads = -1", "threads"),
            ("memory_limit_mib = \"2GB\"", "memory_limit_mib"),
        ] {
            let e =
                Config::from_toml_str(&format!("[analysis]\n{bad}\n"), "sw.toml", Path::new("."))
                    .unwrap_err()
                    .to_string();
            assert!(e.contains(field), "{bad}: {e}");
        }
    }

    #[test]
    fn sources_are_validated() {
        let text = "[[source]]\nname = \"kc\"\npaths = [\"logs/*.log\"]\ntenant = \"north\"\n";
        let c = Config::from_toml_str(text, "sw.toml", Path::new("/etc/sw")).unwrap();
        assert_eq!(c.sources[0].paths, vec!["/etc/sw/logs/*.log".to_string()]);
        assert_eq!(c.sources[0].format, "scopewatch");
        assert_eq!(c.sources[0].env, Env::Prod);
        assert_eq!(c.sources[0].options.tenant_from, None);
        let text = r#"[[source]]
name = "gw"
format = "nginx"
paths = ["x"]
tenant_from = "claim:iss"
app_version_from = 'user_agent:CardioApp/([0-9.]+)'
tenant_map = { "https://auth.example.org/realms/n1" = "north" }
[source.fields]
method = "request_method"
"#;
        let c = Config::from_toml_str(text, "sw.toml", Path::new("/etc/sw")).unwrap();
        let o = &c.sources[0].options;
        assert_eq!(o.tenant_from, Some(TenantFrom::Claim("iss".into())));
        assert_eq!(
            o.tenant_name("https://auth.example.org/realms/n1")
                .as_deref(),
            Some("north")
        );
        assert_eq!(
            o.tenant_name("https://auth.example.org/realms/south/")
                .as_deref(),
            Some("south")
        );
        assert_eq!(o.fields["method"], "request_method");
        let v = o.app_version_from.as_ref().unwrap();
        assert_eq!(
            v.from_user_agent("CardioApp/2.4.1 (iOS 18.1)").as_deref(),
            Some("2.4.1")
        );
        assert!(o.is_authorize_path("/realms/north/protocol/openid-connect/auth?scope=openid"));
        assert!(!o.is_authorize_path("/fhir/r4/Patient/1"));
        for (bad, field) in [
            ("[[source]]\nname = \"a b\"\npaths = [\"x\"]\n", "source[0].name"),
            ("[[source]]\nname = \"a\"\npaths = []\n", "source[0].paths"),
            ("[[source]]\nname = \"a\"\npaths = [\"x\"]\nenv = \"staging\"\n", "source[0].env"),
            ("[[source]]\nname = \"a\"\npaths = [\"x\"]\nstart_at = \"middle\"\n", "source[0].start_at"),
            ("[[source]]\nname = \"a\"\npaths = [\"x\"]\ntenant_from = \"path:0\"\n", "source[0].tenant_from"),
            ("[[source]]\nname = \"a\"\npaths = [\"x\"]\napp_version_from = \"user_agent:App/[0-9]+\"\n", "source[0].app_version_from"),
            ("[[source]]\nname = \"a\"\npaths = [\"x\"]\n[source.fields]\nverb = \"request_method\"\n", "source[0].fields.verb"),
            ("[[source]]\nname = \"a\"\npaths = [\"x\"]\n[[source]]\nname = \"a\"\npaths = [\"y\"]\n", "source[1].name"),
            ("[ingest]\nmax_line_bytes = 10\n", "ingest.max_line_bytes"),
        ] {
            let e = Config::from_toml_str(bad, "sw.toml", Path::new(".")).unwrap_err().to_string();
            assert!(e.contains(field), "{bad}: {e}");
        }
    }

    #[test]
    fn push_is_validated_into_runtime_types() {
        let text = r#"
[ingest]
max_line_bytes = 4096
[ingest.push]
listen = "127.0.0.1:9899"
key_env = "SCOPEWATCH_PUSH_KEY"
source_key_env = { shipper = "SHIPPER_KEY" }
max_body_bytes = 65536

[[source]]
name = "gw"
paths = ["x"]

[[source]]
name = "shipper"
"#;
        let c = Config::from_toml_str(text, "sw.toml", Path::new("/etc/sw")).unwrap();
        assert!(c.ingest.push.is_none(), "moved to Config::push");
        let p = c.push.unwrap();
        assert_eq!(p.listen, "127.0.0.1:9899".parse().unwrap());
        assert_eq!(p.sources, vec!["gw".to_string(), "shipper".to_string()]);
        assert_eq!(p.key, Some(KeySource::Env("SCOPEWATCH_PUSH_KEY".into())));
        assert_eq!(
            p.source_keys["shipper"],
            KeySource::Env("SHIPPER_KEY".into())
        );
        assert_eq!(p.max_body_bytes, 65536);
        assert_eq!(p.max_line_bytes, 4096);
        assert_eq!(p.dedup_bodies, 1024);
        assert!(c.sources[1].paths.is_empty(), "push-only source");
        // Keys resolve through the given lookup; errors name the variable only.
        let env = |name: &str| (name == "SHIPPER_KEY").then(|| "k-0123456789abcdef".to_string());
        assert_eq!(
            p.source_keys["shipper"].resolve(env).unwrap().expose(),
            "k-0123456789abcdef"
        );
        let e = p.key.as_ref().unwrap().resolve(env).unwrap_err();
        assert!(e.contains("SCOPEWATCH_PUSH_KEY"), "{e}");
        let short = |_: &str| Some("short".to_string());
        let e = p.source_keys["shipper"].resolve(short).unwrap_err();
        assert!(e.contains("SHIPPER_KEY is shorter than 16"), "{e}");

        // A literal key never shows in Debug output.
        let text = "[ingest.push]\nlisten = \"127.0.0.1:0\"\nkey = \"literal-key-0123456789\"\n[[source]]\nname = \"a\"\n";
        let c = Config::from_toml_str(text, "sw.toml", Path::new(".")).unwrap();
        let p = c.push.as_ref().unwrap();
        assert_eq!(
            p.key.as_ref().unwrap().resolve(|_| None).unwrap().expose(),
            "literal-key-0123456789"
        );
        assert!(!format!("{c:?}").contains("literal-key"));

        // Only the listed sources take pushes; the others still need paths.
        let text = "[ingest.push]\nlisten = \"127.0.0.1:0\"\nkey_env = \"K\"\nsources = [\"b\"]\n[[source]]\nname = \"a\"\n[[source]]\nname = \"b\"\n";
        let e = Config::from_toml_str(text, "sw.toml", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("source[0].paths") && e.contains("ingest.push.sources"),
            "{e}"
        );

        let push = |extra: &str| {
            format!("[ingest.push]\nlisten = \"127.0.0.1:9899\"\n{extra}\n[[source]]\nname = \"a\"\npaths = [\"x\"]\n")
        };
        for (extra, field) in [
            ("key_env = \"K\"\nlisten_port = 1", "listen_port"),
            ("", "ingest.push.key_env"),
            (
                "key_env = \"K\"\nkey = \"0123456789abcdefg\"",
                "ingest.push.key",
            ),
            ("key = \"too-short\"", "ingest.push.key"),
            ("key_env = \"NOT A NAME\"", "ingest.push.key_env"),
            (
                "key_env = \"K\"\nsources = [\"nope\"]",
                "ingest.push.sources",
            ),
            ("key_env = \"K\"\nsources = []", "ingest.push.sources"),
            (
                "key_env = \"K\"\nsource_key_env = { nope = \"X\" }",
                "ingest.push.source_key_env.nope",
            ),
            (
                "key_env = \"K\"\nmax_body_bytes = 10",
                "ingest.push.max_body_bytes",
            ),
            (
                "key_env = \"K\"\ndedup_bodies = 1000000",
                "ingest.push.dedup_bodies",
            ),
            (
                "key_env = \"K\"\nmax_concurrent_requests = 0",
                "ingest.push.max_concurrent_requests",
            ),
        ] {
            let e = Config::from_toml_str(&push(extra), "sw.toml", Path::new("."))
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{extra}: {e}");
        }
        let bad_listen = "[ingest.push]\nlisten = \"localhost:9899\"\nkey_env = \"K\"\n[[source]]\nname = \"a\"\n";
        let e = Config::from_toml_str(bad_listen, "sw.toml", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ingest.push.listen"), "{e}");
    }

    #[test]
    fn environment_overrides_the_file_and_names_bad_variables() {
        let text = "registry = \"reg.toml\"\n[analysis]\nstale_after_days = 30\nthreads = 2\n";
        let file = || Config::from_toml_str(text, "sw.toml", Path::new("/etc/sw")).unwrap();
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        // Nothing set: the file's values stay.
        let mut c = file();
        assert!(c.apply_env(|_| None).unwrap().is_empty());
        assert_eq!(c.stale_after_days, 30);
        assert_eq!(c.registry, Some(PathBuf::from("/etc/sw/reg.toml")));

        let mut c = file();
        let applied = c
            .apply_env(env(&[
                ("SCOPEWATCH_REGISTRY", "other/registry.toml"),
                ("SCOPEWATCH_RULES", "/srv/rules.toml"),
                ("SCOPEWATCH_OBSERVATION_WINDOW_DAYS", "30"),
                ("SCOPEWATCH_STALE_AFTER_DAYS", " 120 "),
                ("SCOPEWATCH_MEMORY_LIMIT_MIB", "512"),
                ("SCOPEWATCH_THREADS", "4"),
                ("SCOPEWATCH_METRICS_LISTEN", "127.0.0.1:9898"),
            ]))
            .unwrap();
        assert_eq!(applied.len(), ENV_OVERRIDES.len());
        assert_eq!(c.registry, Some(PathBuf::from("other/registry.toml")));
        assert_eq!(c.rules, Some(PathBuf::from("/srv/rules.toml")));
        assert_eq!(c.observation_window_days, 30);
        assert_eq!(c.stale_after_days, 120);
        assert_eq!(c.analysis_limits.memory_limit_mib, 512);
        assert_eq!(c.analysis_limits.threads, 4);
        assert_eq!(
            c.ingest.metrics_listen,
            Some("127.0.0.1:9898".parse().unwrap())
        );

        for (var, bad) in [
            ("SCOPEWATCH_OBSERVATION_WINDOW_DAYS", "0"),
            ("SCOPEWATCH_OBSERVATION_WINDOW_DAYS", "90d"),
            ("SCOPEWATCH_STALE_AFTER_DAYS", "3661"),
            ("SCOPEWATCH_MEMORY_LIMIT_MIB", "63"),
            ("SCOPEWATCH_THREADS", "65"),
            ("SCOPEWATCH_THREADS", "-1"),
            ("SCOPEWATCH_METRICS_LISTEN", "localhost:9898"),
            ("SCOPEWATCH_REGISTRY", " "),
        ] {
            let mut c = file();
            let e = c
                .apply_env(|name: &str| (name == var).then(|| bad.to_string()))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!("environment variable {var}: ")),
                "{var}={bad}: {e}"
            );
            assert_eq!(c.stale_after_days, 30, "{var}={bad} is not applied");
        }
    }

    #[test]
    fn unknown_and_bad_fields_are_named() {
        let e = Config::from_toml_str("registy = \"x\"\n", "sw.toml", Path::new(".")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("sw.toml") && msg.contains("registy"), "{msg}");
        let e = Config::from_toml_str(
            "[analysis]\nobservation_window_days = 0\n",
            "sw.toml",
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("analysis.observation_window_days"), "{e}");
        let e = Config::from_toml_str(
            "[ingest]\nmetrics_listen = \"localhost:9898\"\n",
            "sw.toml",
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sw.toml") && e.contains("metrics_listen"), "{e}");
        let c = Config::from_toml_str(
            "[fhir]\nbase_paths = [\"/fhir/r4/{tenant}\"]\n",
            "sw.toml",
            Path::new("."),
        )
        .unwrap();
        assert!(!c.fhir_base.is_auto());
    }
}
