//! The app registry: the TOML file the platform team keeps under version
//! control, describing every third-party SMART app (who owns it, how far it is
//! trusted, whether it may be called at all, which scopes and versions are
//! approved, whether offline access is justified, when it was last certified).
//!
//! Two steps, as for every configuration file of scopewatch:
//!
//! 1. [`RegistryFile`] and its parts mirror the TOML one to one (serde,
//!    unknown fields rejected, so a typo never silently drops a setting);
//! 2. [`RegistryFile::validate`] checks everything serde cannot (scopes parse,
//!    no duplicates, offline access justified, version patterns well formed,
//!    ...), collects *all* problems, and builds the runtime [`Registry`].
//!
//! No IO happens here except in [`Registry::load`], a convenience that reads
//! the file and calls [`Registry::from_toml_str`].
//!
//! The format, in short (`sample-logs/registry.toml` documents it in full):
//!
//! ```toml
//! version = 1
//!
//! [[app]]
//! client_id = "cardio-insight"
//! name = "Cardio Insight"
//! owner = "Cardiology IT"
//! contact = "cardio-it@north.example.org"
//! tier = 2                               # 1 (first-party) .. 5 (experimental)
//! status = "active"                      # active | suspended | revoked
//! status_since = 2025-03-01              # required unless active
//! tenants = ["north", "south"]           # absent or empty: every tenant
//! approved_scopes = ["launch", "openid", "fhirUser", "patient/Observation.rs"]
//! approved_versions = ["2.3.0", "2.4.*"] # absent: any version
//! offline_access = { justified = true, reason = "nightly sync" }
//! last_certified = 2026-07-01
//!
//! [app.tenant.south]                     # replaces approved_scopes for south
//! approved_scopes = ["launch", "openid", "fhirUser"]
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize, Serializer};
use time::Date;

use crate::scope::Scope;

/// The only registry format version this build understands.
pub const FORMAT_VERSION: u32 = 1;

// ---------------------------------------------------------------------------
// Step 1: the file as written (serde)
// ---------------------------------------------------------------------------

/// The registry file exactly as written, before validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFile {
    /// Format version of the file. Only `1` exists; it is required so that a
    /// later format can be told apart instead of misread.
    pub version: u32,
    /// Every app, one `[[app]]` table each. A registry without apps is valid
    /// (every app seen in the logs is then unregistered).
    #[serde(default, rename = "app")]
    pub apps: Vec<AppEntry>,
}

/// One `[[app]]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppEntry {
    /// The OAuth `client_id` the authorization server knows the app by;
    /// unique in the registry, non-empty, without whitespace.
    pub client_id: String,
    /// Human name of the app, as shown in reports.
    pub name: String,
    /// The product owner: the team or person answerable for the app.
    pub owner: String,
    /// How to reach the owner: an email address or an `http(s)://` URL.
    pub contact: String,
    /// Trust tier, 1 (first-party) .. 5 (experimental). Read as a plain
    /// integer so that an out-of-range value gets a readable problem.
    pub tier: i64,
    /// Lifecycle status: `active`, `suspended` or `revoked`.
    pub status: StatusEntry,
    /// The date the current status took effect (a TOML date, `2025-03-01`,
    /// or the same as a string). Required when suspended or revoked, allowed
    /// when active (e.g. the date of reinstatement).
    #[serde(default)]
    pub status_since: Option<DateEntry>,
    /// Why the app is suspended or revoked (free text, optional).
    #[serde(default)]
    pub status_reason: Option<String>,
    /// Tenants the app is deployed in. Absent or empty: every tenant.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// The default approved scope set, one SMART scope per entry. Required
    /// (may be empty, e.g. for a revoked app) so that "approves nothing" is
    /// always written down, never implied.
    pub approved_scopes: Vec<String>,
    /// Approved app versions: exact (`2.3.0`) or with `*` as the whole last
    /// dot-separated component (`2.4.*`, `*`). Absent: any version. An empty
    /// list is a problem (it would approve no version at all).
    #[serde(default)]
    pub approved_versions: Option<Vec<String>>,
    /// Whether offline access (refresh tokens) is justified and why. Required
    /// with `justified = true` and a reason when `offline_access` is approved.
    #[serde(default)]
    pub offline_access: Option<OfflineAccessEntry>,
    /// Date of the last access recertification (a TOML date).
    #[serde(default)]
    pub last_certified: Option<DateEntry>,
    /// Date the app was registered (onboarded), if known (a TOML date). Lets
    /// reports tell a young app from a stale one.
    #[serde(default)]
    pub registered: Option<DateEntry>,
    /// Per-tenant overrides, `[app.tenant.<tenant>]` tables, keyed by tenant.
    #[serde(default, rename = "tenant")]
    pub tenant_overrides: BTreeMap<String, TenantOverrideEntry>,
}

/// The `status` field as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusEntry {
    /// The app may be called.
    Active,
    /// Temporarily barred; calls from `status_since` on are abuse.
    Suspended,
    /// Permanently barred; calls from `status_since` on are abuse.
    Revoked,
}

/// The `offline_access = { justified = ..., reason = ... }` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfflineAccessEntry {
    /// Whether the platform team accepts that the app needs refresh tokens.
    pub justified: bool,
    /// Why (free text); required and non-empty when `justified = true`.
    #[serde(default)]
    pub reason: Option<String>,
}

/// One `[app.tenant.<tenant>]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantOverrideEntry {
    /// Replaces (does not extend) the app's `approved_scopes` in this tenant.
    pub approved_scopes: Vec<String>,
}

/// A calendar date as written: a TOML local date (`2025-03-01`) or a string
/// holding one (`"2025-03-01"`). A date-time or a time is rejected while
/// reading, with the line of the offending value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateEntry(pub Date);

impl<'de> Deserialize<'de> for DateEntry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DateVisitor;

        impl<'de> serde::de::Visitor<'de> for DateVisitor {
            type Value = DateEntry;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a date like 2025-03-01")
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<DateEntry, E> {
                parse_date(s).map(DateEntry).map_err(E::custom)
            }

            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                map: M,
            ) -> Result<DateEntry, M::Error> {
                use serde::de::Error;
                let dt = toml::value::Datetime::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                match (dt.date, dt.time, dt.offset) {
                    (Some(d), None, None) => Date::from_calendar_date(
                        i32::from(d.year),
                        time::Month::try_from(d.month).map_err(M::Error::custom)?,
                        d.day,
                    )
                    .map(DateEntry)
                    .map_err(M::Error::custom),
                    _ => Err(M::Error::custom(format!(
                        "expected a date like 2025-03-01, found `{dt}` (leave out the time of day)"
                    ))),
                }
            }
        }

        deserializer.deserialize_any(DateVisitor)
    }
}

fn parse_date(s: &str) -> Result<Date, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s.trim(), format)
        .map_err(|e| format!("expected a date like 2025-03-01, found {s:?} ({e})"))
}

// ---------------------------------------------------------------------------
// Step 2: runtime types
// ---------------------------------------------------------------------------

/// A validated app registry.
#[derive(Debug, Clone, Serialize)]
pub struct Registry {
    /// Format version of the file it was read from (always [`FORMAT_VERSION`]).
    pub version: u32,
    /// Every app, in file order. `client_id`s are unique.
    pub apps: Vec<App>,
    /// `client_id` -> index in `apps`, for [`Registry::app`].
    #[serde(skip)]
    index: HashMap<String, usize>,
}

/// One registered app, validated.
#[derive(Debug, Clone, Serialize)]
pub struct App {
    /// OAuth `client_id`; unique, non-empty, no whitespace.
    pub client_id: String,
    /// Human name.
    pub name: String,
    /// Product owner (team or person).
    pub owner: String,
    /// Email address or URL of the owner.
    pub contact: String,
    /// Trust tier.
    pub tier: Tier,
    /// Lifecycle status, with the date it took effect. Serialized flat, as
    /// `status` and `status_since`, like the TOML.
    #[serde(flatten)]
    pub status: AppStatus,
    /// Why the app is suspended or revoked, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// Tenants the app is deployed in; empty means every tenant.
    pub tenants: Vec<String>,
    /// The default approved scope set (every scope valid, no duplicates).
    #[serde(rename = "approved_scopes", serialize_with = "ser_scopes")]
    pub approved: Vec<Scope>,
    /// Per-tenant replacements of `approved`.
    #[serde(serialize_with = "ser_scope_map")]
    pub tenant_overrides: BTreeMap<String, Vec<Scope>>,
    /// Approved versions; `None` means any version.
    pub approved_versions: Option<Vec<VersionPattern>>,
    /// Offline access justification, when the registry states one.
    pub offline_access: Option<OfflineAccess>,
    /// Date of the last access recertification.
    #[serde(serialize_with = "ser_opt_date")]
    pub last_certified: Option<Date>,
    /// Date the app was registered, when known.
    #[serde(serialize_with = "ser_opt_date")]
    pub registered: Option<Date>,
}

/// Trust tier: 1 (first-party) .. 5 (experimental).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Tier(u8);

impl Tier {
    /// Most trusted: the platform's own apps.
    pub const FIRST_PARTY: Tier = Tier(1);
    /// Least trusted: pilots and experiments.
    pub const EXPERIMENTAL: Tier = Tier(5);

    /// The tier, if `n` is within 1..=5.
    pub fn new(n: u8) -> Option<Tier> {
        (1..=5).contains(&n).then_some(Tier(n))
    }

    /// The number, 1..=5.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Lifecycle status of an app and the date it took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum AppStatus {
    /// May be called. `since` is optional (e.g. the date of reinstatement).
    Active {
        #[serde(
            rename = "status_since",
            serialize_with = "ser_opt_date",
            skip_serializing_if = "Option::is_none"
        )]
        since: Option<Date>,
    },
    /// Temporarily barred from `since` on (inclusive).
    Suspended {
        #[serde(rename = "status_since", serialize_with = "ser_date")]
        since: Date,
    },
    /// Permanently barred from `since` on (inclusive).
    Revoked {
        #[serde(rename = "status_since", serialize_with = "ser_date")]
        since: Date,
    },
}

impl AppStatus {
    /// `active`, `suspended` or `revoked`, as in the TOML.
    pub fn as_str(&self) -> &'static str {
        match self {
            AppStatus::Active { .. } => "active",
            AppStatus::Suspended { .. } => "suspended",
            AppStatus::Revoked { .. } => "revoked",
        }
    }

    /// The date the status took effect, when known.
    pub fn since(&self) -> Option<Date> {
        match *self {
            AppStatus::Active { since } => since,
            AppStatus::Suspended { since } | AppStatus::Revoked { since } => Some(since),
        }
    }

    /// Whether the status is `active`.
    pub fn is_active(&self) -> bool {
        matches!(self, AppStatus::Active { .. })
    }
}

impl fmt::Display for AppStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())?;
        if let Some(since) = self.since() {
            write!(f, " since {}", fmt_date(since))?;
        }
        Ok(())
    }
}

/// Offline access (refresh tokens) justification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OfflineAccess {
    /// Whether the platform team accepts the need.
    pub justified: bool,
    /// Why; always non-empty when `justified`.
    pub reason: Option<String>,
}

/// An approved-version pattern: exact (`2.3.0`) or a prefix followed by `*`
/// as the whole last dot-separated component (`2.4.*`, or `*` alone).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VersionPattern {
    raw: String,
    /// For a wildcard pattern, everything before the `*` (`"2.4."`, or `""`
    /// for `*`); `None` for an exact pattern.
    prefix: Option<String>,
}

impl VersionPattern {
    /// Parses a pattern; the error says what is wrong with it.
    pub fn parse(raw: &str) -> Result<VersionPattern, String> {
        if raw.is_empty() {
            return Err("empty version pattern".into());
        }
        if raw.chars().any(char::is_whitespace) {
            return Err("whitespace in a version pattern".into());
        }
        let components: Vec<&str> = raw.split('.').collect();
        if components.iter().any(|c| c.is_empty()) {
            return Err("empty component (two dots in a row, or a leading or trailing dot)".into());
        }
        let (last, init) = components.split_last().expect("split yields one component");
        if init.iter().any(|c| c.contains('*')) || (last.contains('*') && *last != "*") {
            return Err("`*` may only be the whole last component, as in 2.4.*".into());
        }
        let prefix = (*last == "*").then(|| raw[..raw.len() - 1].to_string());
        Ok(VersionPattern {
            raw: raw.to_string(),
            prefix,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Whether this is a wildcard pattern.
    pub fn is_wildcard(&self) -> bool {
        self.prefix.is_some()
    }

    /// Whether `version` matches: exact patterns compare equal; `2.4.*`
    /// matches any version that starts with `2.4.` and has something after
    /// it (`2.4.0`, `2.4.12-rc1`, not `2.4` or `2.40.1`); `*` matches any
    /// non-empty version.
    pub fn matches(&self, version: &str) -> bool {
        match &self.prefix {
            None => version == self.raw,
            Some(prefix) => version.len() > prefix.len() && version.starts_with(prefix.as_str()),
        }
    }
}

impl fmt::Display for VersionPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl Serialize for VersionPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl Registry {
    /// Reads and validates a registry from TOML text. `file` names the source
    /// in error messages only.
    pub fn from_toml_str(text: &str, file: &str) -> Result<Registry, RegistryError> {
        match toml::from_str::<RegistryFile>(text) {
            Ok(parsed) => parsed.validate(file),
            Err(err) => {
                // A file of another format version may fail to deserialize
                // because its fields differ: say that, not "unknown field".
                if let Some(problem) = unsupported_version(text) {
                    return Err(RegistryError::Invalid {
                        file: file.to_string(),
                        problems: vec![problem],
                    });
                }
                let (line, column) = match err.span() {
                    Some(span) => line_column(text, span.start),
                    None => (None, None),
                };
                Err(RegistryError::Syntax {
                    file: file.to_string(),
                    message: err.message().to_string(),
                    line,
                    column,
                    detail: err.to_string().trim_end().to_string(),
                })
            }
        }
    }

    /// Reads the file at `path` and validates it.
    pub fn load(path: &Path) -> Result<Registry, RegistryError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RegistryError::Io {
            file: file.clone(),
            source,
        })?;
        Registry::from_toml_str(&text, &file)
    }

    /// The app with this `client_id`, if registered.
    pub fn app(&self, client_id: &str) -> Option<&App> {
        // `apps` is public; fall back to a scan if it was changed after load.
        match self.index.get(client_id).and_then(|&i| self.apps.get(i)) {
            Some(app) if app.client_id == client_id => Some(app),
            _ => self.apps.iter().find(|a| a.client_id == client_id),
        }
    }

    /// Every tenant named anywhere in the registry (in `tenants` or in an
    /// override), sorted.
    pub fn tenants(&self) -> BTreeSet<&str> {
        self.apps
            .iter()
            .flat_map(|a| {
                a.tenants
                    .iter()
                    .map(String::as_str)
                    .chain(a.tenant_overrides.keys().map(String::as_str))
            })
            .collect()
    }
}

impl App {
    /// The approved scopes in `tenant`: its override if there is one, else
    /// the default set.
    pub fn approved_scopes_for(&self, tenant: &str) -> &[Scope] {
        self.tenant_overrides
            .get(tenant)
            .map(Vec::as_slice)
            .unwrap_or(&self.approved)
    }

    /// Whether the app is deployed in `tenant` (`tenants` empty: everywhere).
    pub fn deployed_in(&self, tenant: &str) -> bool {
        self.tenants.is_empty() || self.tenants.iter().any(|t| t == tenant)
    }

    /// Whether `version` is approved: any version when `approved_versions` is
    /// absent, else when one pattern matches (see [`VersionPattern::matches`]).
    pub fn version_approved(&self, version: &str) -> bool {
        match &self.approved_versions {
            None => true,
            Some(patterns) => patterns.iter().any(|p| p.matches(version)),
        }
    }

    /// Whether the app may be called on day `on`: always when active; when
    /// suspended or revoked, only before the `since` date (calls on or after
    /// it are not allowed), so history is judged by the status of its day.
    pub fn is_callable(&self, on: Date) -> bool {
        match self.status {
            AppStatus::Active { .. } => true,
            AppStatus::Suspended { since } | AppStatus::Revoked { since } => on < since,
        }
    }

    /// Whether the registry approves `scope` for `tenant`: it is listed
    /// (normalised), or approved resource scopes cover everything it grants
    /// (`patient/Observation.rs` approves `patient/Observation.r`).
    pub fn approves(&self, tenant: &str, scope: &Scope) -> bool {
        scope_approved(self.approved_scopes_for(tenant), scope)
    }

    /// Whether offline access is justified (with a reason).
    pub fn offline_access_justified(&self) -> bool {
        self.offline_access.as_ref().is_some_and(|o| o.justified)
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a registry could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The file could not be read.
    #[error("{file}: cannot read the app registry: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    /// The file is not valid TOML, or does not fit the format (unknown or
    /// missing field, wrong type, bad date).
    #[error("{file}: {detail}\nfix the registry and run `scopewatch registry check {file}`")]
    Syntax {
        file: String,
        /// toml's message without the location, e.g. "unknown field `colour`,
        /// expected one of ...".
        message: String,
        /// 1-based line of the offending text, when known.
        line: Option<usize>,
        /// 1-based column (in characters) of the offending text, when known.
        column: Option<usize>,
        /// toml's full report: location, the offending line, the message.
        detail: String,
    },
    /// The file reads as a registry but breaks its rules; every problem is
    /// listed.
    #[error("{}", fmt_invalid(file, problems))]
    Invalid {
        file: String,
        problems: Vec<Problem>,
    },
}

impl RegistryError {
    /// The file the error is about.
    pub fn file(&self) -> &str {
        match self {
            RegistryError::Io { file, .. }
            | RegistryError::Syntax { file, .. }
            | RegistryError::Invalid { file, .. } => file,
        }
    }

    /// The validation problems (empty unless [`RegistryError::Invalid`]).
    pub fn problems(&self) -> &[Problem] {
        match self {
            RegistryError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

fn fmt_invalid(file: &str, problems: &[Problem]) -> String {
    let mut out = String::new();
    for p in problems {
        out.push_str(&format!("{file}: {p}\n"));
    }
    let n = problems.len();
    out.push_str(&format!(
        "{n} problem{} in {file}; fix the registry and run `scopewatch registry check {file}`",
        if n == 1 { "" } else { "s" }
    ));
    out
}

/// One validation problem: where (app and field) and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The app: its `client_id`, or `app[N]` (0-based position in the file)
    /// when the `client_id` is empty, invalid or a duplicate. `None` for the
    /// file as a whole.
    pub app: Option<String>,
    /// The field, as a path: `client_id`, `approved_scopes[2]`,
    /// `tenant.south.approved_scopes[0]`, `offline_access.reason`, ...
    pub field: String,
    /// What is wrong, and where useful, what to do.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.app {
            Some(app) if is_position_label(app) => write!(f, "{app}: ")?,
            Some(app) => write!(f, "app {app:?}: ")?,
            None => {}
        }
        write!(f, "field {}: {}", self.field, self.message)
    }
}

fn is_position_label(s: &str) -> bool {
    s.strip_prefix("app[")
        .and_then(|r| r.strip_suffix(']'))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

impl RegistryFile {
    /// Checks every rule serde cannot and builds the runtime registry, or
    /// reports every problem found. `file` names the source in messages.
    pub fn validate(self, file: &str) -> Result<Registry, RegistryError> {
        let mut problems = Vec::new();
        if self.version != FORMAT_VERSION {
            problems.push(version_problem(i64::from(self.version)));
        }

        // client_id -> position of its first use.
        let mut first_use: HashMap<String, usize> = HashMap::new();
        let mut apps = Vec::with_capacity(self.apps.len());
        for (i, entry) in self.apps.into_iter().enumerate() {
            let id_problem = client_id_problem(&entry.client_id);
            let duplicate_of = first_use.get(&entry.client_id).copied();
            let label = if id_problem.is_none() && duplicate_of.is_none() {
                entry.client_id.clone()
            } else {
                format!("app[{i}]")
            };
            let mut check = Checker {
                app: label,
                problems: &mut problems,
            };
            if let Some(message) = id_problem {
                check.problem("client_id", message);
            } else if let Some(j) = duplicate_of {
                check.problem(
                    "client_id",
                    format!(
                        "{:?} is already the client_id of app[{j}]; client_ids must be unique",
                        entry.client_id
                    ),
                );
            } else {
                first_use.insert(entry.client_id.clone(), i);
            }
            if let Some(app) = validate_app(entry, &mut check) {
                apps.push(app);
            }
        }

        if !problems.is_empty() {
            return Err(RegistryError::Invalid {
                file: file.to_string(),
                problems,
            });
        }
        let index = apps
            .iter()
            .enumerate()
            .map(|(i, a)| (a.client_id.clone(), i))
            .collect();
        Ok(Registry {
            version: self.version,
            apps,
            index,
        })
    }
}

struct Checker<'a> {
    app: String,
    problems: &'a mut Vec<Problem>,
}

impl Checker<'_> {
    fn problem(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            app: Some(self.app.clone()),
            field: field.into(),
            message: message.into(),
        });
    }

    fn non_empty(&mut self, field: &str, value: &str) {
        if value.trim().is_empty() {
            self.problem(field, "must not be empty");
        }
    }
}

fn version_problem(found: i64) -> Problem {
    Problem {
        app: None,
        field: "version".into(),
        message: format!(
            "unsupported registry format version {found}; this build of scopewatch reads version {FORMAT_VERSION}"
        ),
    }
}

/// A version problem, if the text has a `version` other than the supported
/// one (used when the file does not deserialize as this format).
fn unsupported_version(text: &str) -> Option<Problem> {
    let table: toml::Table = toml::from_str(text).ok()?;
    match table.get("version")? {
        toml::Value::Integer(v) if *v != i64::from(FORMAT_VERSION) => Some(version_problem(*v)),
        _ => None,
    }
}

fn client_id_problem(id: &str) -> Option<String> {
    if id.is_empty() {
        Some("must not be empty".into())
    } else if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some(format!("{id:?} contains whitespace or control characters"))
    } else {
        None
    }
}

/// Validates everything about one app except its `client_id` (checked by
/// the caller, which knows the other apps). Returns the app when its own
/// fields are fine; problems go to `check`.
fn validate_app(e: AppEntry, check: &mut Checker<'_>) -> Option<App> {
    let before = check.problems.len();

    check.non_empty("name", &e.name);
    check.non_empty("owner", &e.owner);
    if let Err(message) = check_contact(&e.contact) {
        check.problem("contact", message);
    }

    let tier = u8::try_from(e.tier).ok().and_then(Tier::new);
    if tier.is_none() {
        check.problem(
            "tier",
            format!(
                "{} is not a trust tier; use 1 (first-party) .. 5 (experimental)",
                e.tier
            ),
        );
    }

    let since = e.status_since.map(|d| d.0);
    let status = match (e.status, since) {
        (StatusEntry::Active, since) => Some(AppStatus::Active { since }),
        (StatusEntry::Suspended, Some(since)) => Some(AppStatus::Suspended { since }),
        (StatusEntry::Revoked, Some(since)) => Some(AppStatus::Revoked { since }),
        (s, None) => {
            let name = if s == StatusEntry::Suspended {
                "suspended"
            } else {
                "revoked"
            };
            check.problem(
                "status_since",
                format!(
                    "required when status is {name:?}: the date from which calls are not allowed, e.g. status_since = 2025-03-01"
                ),
            );
            None
        }
    };
    let status_reason = e.status_reason.filter(|r| !r.trim().is_empty());

    // Tenants.
    let mut seen_tenants = BTreeSet::new();
    for (i, t) in e.tenants.iter().enumerate() {
        if let Some(message) = tenant_name_problem(t) {
            check.problem(format!("tenants[{i}]"), message);
        } else if !seen_tenants.insert(t.as_str()) {
            check.problem(format!("tenants[{i}]"), format!("{t:?} is listed twice"));
        }
    }

    // Offline access justification.
    let offline_access = e.offline_access.map(|o| OfflineAccess {
        justified: o.justified,
        reason: o.reason.filter(|r| !r.trim().is_empty()),
    });
    if let Some(o) = &offline_access {
        if o.justified && o.reason.is_none() {
            check.problem(
                "offline_access.reason",
                "offline access is marked justified without a reason; say why the app needs refresh tokens",
            );
        }
    }
    let offline_justified = offline_access
        .as_ref()
        .is_some_and(|o| o.justified && o.reason.is_some());

    // Scope sets.
    let approved = check_scopes(
        check,
        "approved_scopes",
        &e.approved_scopes,
        offline_justified,
    );
    let mut tenant_overrides = BTreeMap::new();
    for (tenant, over) in e.tenant_overrides {
        let field = format!("tenant.{}", tenant_key(&tenant));
        if let Some(message) = tenant_name_problem(&tenant) {
            check.problem(field.clone(), message);
        } else if !e.tenants.is_empty() && !e.tenants.contains(&tenant) {
            check.problem(
                field.clone(),
                format!(
                    "override for tenant {tenant:?}, which is not in tenants {:?}; add it to tenants or remove [app.{field}]",
                    e.tenants
                ),
            );
        }
        let scopes = check_scopes(
            check,
            &format!("{field}.approved_scopes"),
            &over.approved_scopes,
            offline_justified,
        );
        tenant_overrides.insert(tenant, scopes);
    }

    // Versions.
    let approved_versions = e.approved_versions.map(|patterns| {
        if patterns.is_empty() {
            check.problem(
                "approved_versions",
                "empty list: it would approve no version at all; list versions, or remove the field to approve any version",
            );
        }
        let mut seen = BTreeSet::new();
        let mut out = Vec::with_capacity(patterns.len());
        for (i, raw) in patterns.iter().enumerate() {
            match VersionPattern::parse(raw) {
                Ok(p) => {
                    if !seen.insert(raw.as_str()) {
                        check.problem(
                            format!("approved_versions[{i}]"),
                            format!("{raw:?} is listed twice"),
                        );
                    }
                    out.push(p);
                }
                Err(reason) => check.problem(
                    format!("approved_versions[{i}]"),
                    format!("{raw:?}: {reason}; use an exact version (2.3.0) or a trailing wildcard (2.4.*)"),
                ),
            }
        }
        out
    });

    if check.problems.len() != before {
        return None;
    }
    Some(App {
        client_id: e.client_id,
        name: e.name,
        owner: e.owner,
        contact: e.contact,
        tier: tier?,
        status: status?,
        status_reason,
        tenants: e.tenants,
        approved,
        tenant_overrides,
        approved_versions,
        offline_access,
        last_certified: e.last_certified.map(|d| d.0),
        registered: e.registered.map(|d| d.0),
    })
}

/// The tenant as it would be written in a TOML table header.
fn tenant_key(tenant: &str) -> String {
    let bare = !tenant.is_empty()
        && tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        tenant.to_string()
    } else {
        format!("{tenant:?}")
    }
}

fn tenant_name_problem(t: &str) -> Option<String> {
    if t.is_empty() {
        Some("empty tenant name".into())
    } else if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some(format!("tenant {t:?} contains whitespace"))
    } else {
        None
    }
}

/// Parses a scope list, reporting invalid, whitespace-holding and duplicate
/// scopes, and `offline_access` without justification.
fn check_scopes(
    check: &mut Checker<'_>,
    field: &str,
    raw: &[String],
    offline_justified: bool,
) -> Vec<Scope> {
    // normalised (v2) rendering -> (index, raw) of its first occurrence, so
    // `patient/Observation.read` and `patient/Observation.rs` are one scope
    let mut seen: HashMap<String, (usize, &str)> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, s) in raw.iter().enumerate() {
        let at = format!("{field}[{i}]");
        if s.trim().chars().any(char::is_whitespace) {
            check.problem(
                at,
                format!("{s:?}: one scope per entry; split it into separate strings"),
            );
            continue;
        }
        let scope = Scope::parse(s);
        if !scope.is_valid() {
            let reason = scope.error().unwrap_or("not a valid SMART scope");
            check.problem(at, format!("{s:?}: {reason}"));
            continue;
        }
        let canonical = scope.normalised();
        if let Some((j, first)) = seen.get(&canonical) {
            let message = if *first == s.as_str() {
                format!("{s:?} is listed twice (first at {field}[{j}])")
            } else {
                format!("{s:?} is the same scope as {first:?} at {field}[{j}]")
            };
            check.problem(at, message);
            continue;
        }
        seen.insert(canonical, (i, s));
        if scope.is_offline_access() && !offline_justified {
            check.problem(
                at,
                "\"offline_access\" is approved but offline access is not justified; add offline_access = { justified = true, reason = \"...\" } or remove the scope",
            );
        }
        out.push(scope);
    }
    out
}

fn check_contact(contact: &str) -> Result<(), String> {
    let c = contact.trim();
    if c.is_empty() {
        return Err("must not be empty; give the owner's email address or a URL".into());
    }
    let bad = || {
        Err(format!(
            "{contact:?} is neither an email address (team@example.org) nor an http(s) URL"
        ))
    };
    if c.chars().any(char::is_whitespace) {
        return bad();
    }
    let email = c.strip_prefix("mailto:").unwrap_or(c);
    if let Some((local, domain)) = email.split_once('@') {
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@')
            && !domain.contains("..");
        return if !local.is_empty() && domain_ok {
            Ok(())
        } else {
            bad()
        };
    }
    for scheme in ["https://", "http://"] {
        if let Some(rest) = c.strip_prefix(scheme) {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            return if host.is_empty() { bad() } else { Ok(()) };
        }
    }
    bad()
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (Option<usize>, Option<usize>) {
    let Some(before) = text.get(..offset) else {
        return (None, None);
    };
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (Some(line), Some(column))
}

// ---------------------------------------------------------------------------
// Serialization helpers (JSON summaries)
// ---------------------------------------------------------------------------

fn fmt_date(d: Date) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    d.format(format).unwrap_or_else(|_| d.to_string())
}

fn ser_date<S: Serializer>(d: &Date, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&fmt_date(*d))
}

fn ser_opt_date<S: Serializer>(d: &Option<Date>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&fmt_date(*d)),
        None => s.serialize_none(),
    }
}

fn ser_scopes<S: Serializer>(scopes: &[Scope], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(scopes.iter().map(Scope::raw))
}

fn ser_scope_map<S: Serializer>(
    map: &BTreeMap<String, Vec<Scope>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(
        map.iter()
            .map(|(k, v)| (k, v.iter().map(Scope::raw).collect::<Vec<_>>())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_patterns() {
        let p = VersionPattern::parse("2.4.*").unwrap();
        assert!(p.matches("2.4.0") && p.matches("2.4.12-rc1"));
        assert!(!p.matches("2.4") && !p.matches("2.40.1") && !p.matches("2.5.0"));
        let any = VersionPattern::parse("*").unwrap();
        assert!(any.matches("0.1") && !any.matches(""));
        let exact = VersionPattern::parse("2.3.0").unwrap();
        assert!(exact.matches("2.3.0") && !exact.matches("2.3.0.1"));
        for bad in ["", "2.*.1", "2.4*", "2..4", ".2", "2.4.", " 2.4", "2.4.**"] {
            assert!(VersionPattern::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn contacts() {
        for ok in [
            "a@b.org",
            "mailto:team@north.example.org",
            "https://wiki.example.org/apps/x",
            "http://x.example",
        ] {
            assert!(check_contact(ok).is_ok(), "{ok:?} rejected");
        }
        for bad in [
            "",
            "someone",
            "a@b",
            "@b.org",
            "https://",
            "a b@c.org",
            "ftp://x.org",
        ] {
            assert!(check_contact(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn line_columns() {
        assert_eq!(line_column("ab\ncd", 4), (Some(2), Some(2)));
        assert_eq!(line_column("ab", 0), (Some(1), Some(1)));
    }

    #[test]
    fn position_labels() {
        assert!(is_position_label("app[3]"));
        assert!(!is_position_label("app[]") && !is_position_label("cardio"));
    }
}

/// Whether `approved` approves `scope`: listed (normalised), or approved
/// resource scopes without a filter cover everything it grants.
pub fn scope_approved(approved: &[Scope], scope: &Scope) -> bool {
    let norm = scope.normalised();
    if approved.iter().any(|a| a.normalised() == norm) {
        return true;
    }
    match scope.resource() {
        Some(r) => {
            let req = crate::scope::Required {
                context: r.context,
                resource: r.resource.clone(),
                perms: r.perms,
            };
            r.filter.is_none() && crate::scope::covers(approved, &req, None).as_bool() == Some(true)
        }
        None => false,
    }
}
