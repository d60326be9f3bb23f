//! The quarterly scope report: a [`ScopeMatrix`] with a header (window,
//! filters, the log sources seen, when it was made) and what the registry
//! says about each app, rendered three ways:
//!
//! - HTML: one self-contained, printable page for compliance officers (no
//!   script, no external font, style sheet or image; charts are inline SVG
//!   drawn with plotters). Every value that came from logs or the registry
//!   goes through maud's escaping (and plotters' in the charts).
//! - CSV: one row per app x tenant x scope, the app's columns repeated
//!   (RFC 4180).
//! - JSON: the same data for scripts.
//!
//! The facts beyond the matrix (sources, daily calls, names) come from named
//! SQL in `analytics/sql/`, every user filter bound as a parameter.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use maud::{html, Markup, PreEscaped, DOCTYPE};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Serialize;
use time::Date;

use scopewatch_model::registry::{App, Registry};

use crate::matrix::{iso, AppTenant, MatrixQuery, ScopeClass, ScopeMatrix, StagedWindow};
use crate::{duck, AnalyticsError, Lake};

const SOURCES_SQL: &str = include_str!("../sql/sources.sql");
const DAILY_CALLS_SQL: &str = include_str!("../sql/daily_calls.sql");
const NAMES_SQL: &str = include_str!("../sql/names.sql");

/// Why a report could not be rendered or written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot draw the {chart} chart: {message}")]
    Chart {
        chart: &'static str,
        message: String,
    },
    #[error("cannot write the report: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot encode the report as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// One log source that delivered events to the report's window.
#[derive(Debug, Clone, Serialize)]
pub struct SourceSeen {
    /// The source's name (the `[[source]]` `name`, the lake's `source`).
    pub source: String,
    /// Its log format, when the configuration names the source.
    pub format: Option<String>,
    /// `auth` or `access`.
    pub stream: String,
    pub events: u64,
    pub first_event: Option<String>,
    pub last_event: Option<String>,
}

/// FHIR calls of one app on one UTC day.
#[derive(Debug, Clone, Serialize)]
pub struct DailyCalls {
    pub date: String,
    pub client_id: String,
    pub allowed: u64,
    pub denied: u64,
}

/// What the report is about and how it was made.
#[derive(Debug, Clone, Serialize)]
pub struct ReportHeader {
    /// First day (inclusive, UTC), `YYYY-MM-DD`.
    pub from: String,
    /// Last day (inclusive, UTC).
    pub to: String,
    /// Days in the window.
    pub days: u32,
    /// `--tenant`, `None` for every tenant.
    pub tenant: Option<String>,
    /// `--app`, `None` for every app.
    pub app: Option<String>,
    /// When the report was made (RFC 3339, UTC).
    pub generated_at: String,
    /// The scopewatch version that made it.
    pub generator: String,
    /// The registry file the approvals come from.
    pub registry: String,
    /// An app with no call and no grant this many days before the window's
    /// end is stale.
    pub stale_after_days: u32,
    /// The configured observation window (`analysis.observation_window_days`).
    pub observation_window_days: u32,
    /// The log sources that delivered events to the window.
    pub sources: Vec<SourceSeen>,
    /// Configured sources that delivered nothing to the window.
    pub sources_without_events: Vec<String>,
}

/// What the registry says about an app in the report.
#[derive(Debug, Clone, Serialize)]
pub struct RegistryEntry {
    pub client_id: String,
    pub name: String,
    pub owner: String,
    pub contact: String,
    pub tier: u8,
    pub status: String,
    pub status_since: Option<String>,
    pub status_reason: Option<String>,
    pub last_certified: Option<String>,
    pub registered: Option<String>,
    /// `None`: any version is approved.
    pub approved_versions: Option<Vec<String>>,
    pub offline_access_justified: bool,
}

impl RegistryEntry {
    pub fn from_app(app: &App) -> RegistryEntry {
        RegistryEntry {
            client_id: app.client_id.clone(),
            name: app.name.clone(),
            owner: app.owner.clone(),
            contact: app.contact.clone(),
            tier: app.tier.get(),
            status: app.status.as_str().to_string(),
            status_since: app.status.since().map(|d| d.to_string()),
            status_reason: app.status_reason.clone(),
            last_certified: app.last_certified.map(|d| d.to_string()),
            registered: app.registered.map(|d| d.to_string()),
            approved_versions: app
                .approved_versions
                .as_ref()
                .map(|v| v.iter().map(|p| p.as_str().to_string()).collect()),
            offline_access_justified: app.offline_access_justified(),
        }
    }
}

/// Scope rows per class.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ClassCounts {
    pub unapproved: u64,
    pub denied: u64,
    pub used: u64,
    pub unused: u64,
    pub not_granted: u64,
    pub unknown: u64,
}

impl ClassCounts {
    fn add(&mut self, class: ScopeClass) {
        *self.get_mut(class) += 1;
    }

    fn get_mut(&mut self, class: ScopeClass) -> &mut u64 {
        match class {
            ScopeClass::Unapproved => &mut self.unapproved,
            ScopeClass::Denied => &mut self.denied,
            ScopeClass::Used => &mut self.used,
            ScopeClass::Unused => &mut self.unused,
            ScopeClass::NotGranted => &mut self.not_granted,
            ScopeClass::Unknown => &mut self.unknown,
        }
    }

    /// The count of one class.
    pub fn get(&self, class: ScopeClass) -> u64 {
        let mut c = *self;
        *c.get_mut(class)
    }

    fn of(app: &AppTenant) -> ClassCounts {
        let mut c = ClassCounts::default();
        for row in &app.scopes {
            c.add(row.class);
        }
        c
    }
}

/// An app in a tenant, for the summary's lists.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct AppRef {
    pub client_id: String,
    pub tenant: String,
}

/// A creep score in the summary's ranking.
#[derive(Debug, Clone, Serialize)]
pub struct CreepRank {
    pub client_id: String,
    pub tenant: String,
    pub score: u8,
    pub band: &'static str,
}

/// A version that requested scopes its predecessor did not, or that the
/// registry does not approve.
#[derive(Debug, Clone, Serialize)]
pub struct VersionDrift {
    pub client_id: String,
    pub tenant: String,
    pub version: String,
    pub calls: u64,
    pub new_scopes: Vec<String>,
    pub approved_version: Option<bool>,
}

/// The quarter at a glance, computed from the matrix.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Distinct apps (client ids).
    pub apps: usize,
    /// Distinct tenants.
    pub tenants: usize,
    /// App x tenant pairs (rows of the matrix).
    pub app_tenants: usize,
    pub calls: u64,
    pub denied_calls: u64,
    pub grants: u64,
    pub refreshes: u64,
    /// Scope rows per class over every app and tenant.
    pub scopes_by_class: ClassCounts,
    /// The ten highest creep scores, highest first.
    pub top_creep: Vec<CreepRank>,
    /// Apps seen in the logs that the registry does not list.
    pub unregistered: Vec<AppRef>,
    pub stale: Vec<AppRef>,
    pub offline_without_refresh: Vec<AppRef>,
    pub grants_without_calls: Vec<AppRef>,
    /// Suspended or revoked apps with calls in the window.
    pub not_active_with_calls: Vec<AppRef>,
    /// No source records what these apps request.
    pub requested_unknown: Vec<AppRef>,
    pub too_new_to_judge: Vec<AppRef>,
    pub version_drift: Vec<VersionDrift>,
}

impl Summary {
    pub fn of(matrix: &ScopeMatrix) -> Summary {
        let mut scopes_by_class = ClassCounts::default();
        let refs = |pred: &dyn Fn(&AppTenant) -> bool| -> Vec<AppRef> {
            matrix
                .apps
                .iter()
                .filter(|a| pred(a))
                .map(|a| AppRef {
                    client_id: a.client_id.clone(),
                    tenant: a.tenant.clone(),
                })
                .collect()
        };
        for a in &matrix.apps {
            for row in &a.scopes {
                scopes_by_class.add(row.class);
            }
        }
        let mut top: Vec<&AppTenant> = matrix.apps.iter().collect();
        top.sort_by(|a, b| {
            b.creep
                .score
                .cmp(&a.creep.score)
                .then_with(|| a.client_id.cmp(&b.client_id))
                .then_with(|| a.tenant.cmp(&b.tenant))
        });
        let top_creep = top
            .iter()
            .filter(|a| a.scopes.iter().any(|r| r.granted))
            .take(10)
            .map(|a| CreepRank {
                client_id: a.client_id.clone(),
                tenant: a.tenant.clone(),
                score: a.creep.score,
                band: a.creep.band,
            })
            .collect();
        let version_drift = matrix
            .apps
            .iter()
            .flat_map(|a| {
                a.versions
                    .iter()
                    .filter(|v| !v.new_scopes.is_empty() || v.approved_version == Some(false))
                    .map(move |v| VersionDrift {
                        client_id: a.client_id.clone(),
                        tenant: a.tenant.clone(),
                        version: v.version.clone(),
                        calls: v.calls,
                        new_scopes: v.new_scopes.clone(),
                        approved_version: v.approved_version,
                    })
            })
            .collect();
        Summary {
            apps: distinct(matrix.apps.iter().map(|a| a.client_id.as_str())),
            tenants: distinct(matrix.apps.iter().map(|a| a.tenant.as_str())),
            app_tenants: matrix.apps.len(),
            calls: matrix.apps.iter().map(|a| a.calls).sum(),
            denied_calls: matrix.apps.iter().map(|a| a.denied_calls).sum(),
            grants: matrix.apps.iter().map(|a| a.grants).sum(),
            refreshes: matrix.apps.iter().map(|a| a.refreshes).sum(),
            scopes_by_class,
            top_creep,
            unregistered: refs(&|a| !a.registered),
            stale: refs(&|a| a.stale),
            offline_without_refresh: refs(&|a| a.offline_without_refresh),
            grants_without_calls: refs(&|a| a.grants_without_calls),
            not_active_with_calls: refs(&|a| {
                a.calls > 0 && a.status.as_deref().is_some_and(|s| s != "active")
            }),
            requested_unknown: refs(&|a| !a.requested_known),
            too_new_to_judge: refs(&|a| a.too_new_to_judge),
            version_drift,
        }
    }
}

fn distinct<'a>(it: impl Iterator<Item = &'a str>) -> usize {
    it.collect::<BTreeSet<_>>().len()
}

/// Everything a report shows; its JSON form is the `--format json` output.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub header: ReportHeader,
    pub summary: Summary,
    /// The registry's entries for the apps in the matrix.
    pub registry: Vec<RegistryEntry>,
    pub daily_calls: Vec<DailyCalls>,
    pub matrix: ScopeMatrix,
}

impl Report {
    pub fn new(
        header: ReportHeader,
        registry: &Registry,
        daily_calls: Vec<DailyCalls>,
        matrix: ScopeMatrix,
    ) -> Report {
        let clients: BTreeSet<&str> = matrix.apps.iter().map(|a| a.client_id.as_str()).collect();
        let registry = registry
            .apps
            .iter()
            .filter(|a| clients.contains(a.client_id.as_str()))
            .map(RegistryEntry::from_app)
            .collect();
        Report {
            header,
            summary: Summary::of(&matrix),
            registry,
            daily_calls,
            matrix,
        }
    }

    fn registry_entry(&self, client_id: &str) -> Option<&RegistryEntry> {
        self.registry.iter().find(|e| e.client_id == client_id)
    }
}

/// What a report needs besides the lake and the window: where its
/// approvals come from and which sources the deployment configured.
#[derive(Debug, Clone)]
pub struct ReportContext {
    /// The registry file, named in the report's method section.
    pub registry_path: String,
    /// Configured sources as (name, format): formats are named in the
    /// report, and sources that delivered nothing are listed.
    pub sources: Vec<(String, String)>,
    /// `analysis.observation_window_days`.
    pub observation_window_days: u32,
    /// When the report is made (RFC 3339, UTC).
    pub generated_at: String,
}

impl Lake {
    /// The whole report over `q`'s window: matrix, sources, daily calls
    /// and header. `scopewatch report` and the dashboard both make their
    /// reports here.
    pub fn report(
        &self,
        registry: &Registry,
        ctx: &ReportContext,
        q: &MatrixQuery,
    ) -> Result<Report, AnalyticsError> {
        let _guard = self.read_guard()?;
        let staged = self.stage_window(q)?;
        let matrix = self.matrix_of(&staged, registry, q)?;
        let mut sources = self.sources_seen(&staged)?;
        for s in &mut sources {
            s.format = ctx
                .sources
                .iter()
                .find(|(name, _)| *name == s.source)
                .map(|(_, format)| format.clone());
        }
        let seen: BTreeSet<&str> = sources.iter().map(|s| s.source.as_str()).collect();
        let sources_without_events = ctx
            .sources
            .iter()
            .filter(|(name, _)| !seen.contains(name.as_str()))
            .map(|(name, _)| name.clone())
            .collect();
        let daily = self.daily_calls(&staged)?;
        let header = ReportHeader {
            from: q.from.to_string(),
            to: q.to.to_string(),
            days: ((q.to - q.from).whole_days() + 1).max(0) as u32,
            tenant: q.tenant.clone(),
            app: q.app.clone(),
            generated_at: ctx.generated_at.clone(),
            generator: format!("scopewatch {}", env!("CARGO_PKG_VERSION")),
            registry: ctx.registry_path.clone(),
            stale_after_days: q.stale_after_days,
            observation_window_days: ctx.observation_window_days,
            sources,
            sources_without_events,
        };
        Ok(Report::new(header, registry, daily, matrix))
    }
}

// ---------------------------------------------------------------------------
// Facts from the lake
// ---------------------------------------------------------------------------

/// The tenants and apps (client ids) the lake holds events of.
#[derive(Debug, Clone, Default)]
pub struct LakeNames {
    pub tenants: BTreeSet<String>,
    pub apps: BTreeSet<String>,
}

impl Lake {
    /// The log sources that delivered events to a staged window.
    fn sources_seen(&self, _staged: &StagedWindow<'_>) -> Result<Vec<SourceSeen>, AnalyticsError> {
        let mut stmt = self
            .connection()
            .prepare(SOURCES_SQL)
            .map_err(duck("preparing sources.sql"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(SourceSeen {
                    source: r.get(0)?,
                    format: None,
                    stream: r.get(1)?,
                    events: r.get::<_, i64>(2)?.max(0) as u64,
                    first_event: r.get::<_, Option<i64>>(3)?.map(iso),
                    last_event: r.get::<_, Option<i64>>(4)?.map(iso),
                })
            })
            .map_err(duck("running sources.sql"))?;
        rows.collect::<Result<_, _>>()
            .map_err(duck("reading sources.sql"))
    }

    /// FHIR calls per UTC day and app in a staged window.
    fn daily_calls(&self, _staged: &StagedWindow<'_>) -> Result<Vec<DailyCalls>, AnalyticsError> {
        let mut stmt = self
            .connection()
            .prepare(DAILY_CALLS_SQL)
            .map_err(duck("preparing daily_calls.sql"))?;
        let rows = stmt
            .query_map([], |r| {
                let day: i64 = r.get(0)?;
                Ok(DailyCalls {
                    date: epoch_day(day).to_string(),
                    client_id: r.get(1)?,
                    allowed: r.get::<_, i64>(2)?.max(0) as u64,
                    denied: r.get::<_, i64>(3)?.max(0) as u64,
                })
            })
            .map_err(duck("running daily_calls.sql"))?;
        rows.collect::<Result<_, _>>()
            .map_err(duck("reading daily_calls.sql"))
    }

    /// Every tenant and app the lake holds events of, in any window.
    pub fn names(&self) -> Result<LakeNames, AnalyticsError> {
        let _guard = self.read_guard()?;
        let err = |doing: &'static str| {
            move |source| AnalyticsError::Duckdb {
                doing: doing.to_string(),
                source,
            }
        };
        let mut stmt = self
            .connection()
            .prepare(NAMES_SQL)
            .map_err(err("preparing names.sql"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(err("running names.sql"))?;
        let mut names = LakeNames::default();
        for row in rows {
            let (kind, name) = row.map_err(err("reading names.sql"))?;
            if kind == "tenant" {
                names.tenants.insert(name);
            } else {
                names.apps.insert(name);
            }
        }
        Ok(names)
    }
}

/// The date `day` days after 1970-01-01.
pub(crate) fn epoch_day(day: i64) -> Date {
    const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;
    i32::try_from(UNIX_EPOCH_JULIAN_DAY + day)
        .ok()
        .and_then(|j| Date::from_julian_day(j).ok())
        .unwrap_or(Date::MIN)
}

// ---------------------------------------------------------------------------
// JSON and CSV
// ---------------------------------------------------------------------------

/// The report as pretty-printed JSON (the shape is [`Report`]'s).
pub fn to_json(report: &Report) -> Result<String, ReportError> {
    let mut s = serde_json::to_string_pretty(report)?;
    s.push('\n');
    Ok(s)
}

/// The CSV columns, in order.
pub const CSV_COLUMNS: [&str; 38] = [
    "from",
    "to",
    "tenant",
    "client_id",
    "name",
    "registered",
    "status",
    "too_new_to_judge",
    "app_calls",
    "denied_calls",
    "app_patients",
    "grants",
    "refreshes",
    "last_call",
    "last_grant",
    "stale",
    "offline_without_refresh",
    "grants_without_calls",
    "requested_known",
    "creep_score",
    "creep_band",
    "suggested_scopes",
    "remove_from_approved",
    "add_to_approved",
    "remove_from_granted",
    "versions",
    "new_scopes_by_version",
    "scope",
    "class",
    "approved",
    "requested",
    "granted",
    "scope_calls",
    "scope_patients",
    "first_used",
    "last_used",
    "types_used",
    "letters_used",
];

/// Writes the report as CSV (RFC 4180, CRLF line ends): a header row, then
/// one row per app x tenant x scope with the app's columns repeated. An app
/// x tenant without any scope row gets one row with empty scope columns.
pub fn write_csv(report: &Report, out: &mut impl Write) -> Result<(), ReportError> {
    write_csv_row(out, CSV_COLUMNS.iter().map(|c| c.to_string()))?;
    let m = &report.matrix;
    for a in &m.apps {
        let versions: Vec<&str> = a.versions.iter().map(|v| v.version.as_str()).collect();
        let new_by_version: Vec<String> = a
            .versions
            .iter()
            .filter(|v| !v.new_scopes.is_empty())
            .map(|v| format!("{}: {}", v.version, v.new_scopes.join(" ")))
            .collect();
        let app_cols = vec![
            m.from.clone(),
            m.to.clone(),
            a.tenant.clone(),
            a.client_id.clone(),
            a.name.clone().unwrap_or_default(),
            a.registered.to_string(),
            a.status.clone().unwrap_or_default(),
            a.too_new_to_judge.to_string(),
            a.calls.to_string(),
            a.denied_calls.to_string(),
            a.patients.to_string(),
            a.grants.to_string(),
            a.refreshes.to_string(),
            a.last_call.clone().unwrap_or_default(),
            a.last_grant.clone().unwrap_or_default(),
            a.stale.to_string(),
            a.offline_without_refresh.to_string(),
            a.grants_without_calls.to_string(),
            a.requested_known.to_string(),
            a.creep.score.to_string(),
            a.creep.band.to_string(),
            a.suggestion.scopes.join(" "),
            a.suggestion.remove_from_approved.join(" "),
            a.suggestion.add_to_approved.join(" "),
            a.suggestion.remove_from_granted.join(" "),
            versions.join(" "),
            new_by_version.join("; "),
        ];
        if a.scopes.is_empty() {
            let mut row = app_cols.clone();
            row.resize(CSV_COLUMNS.len(), String::new());
            write_csv_row(out, row.into_iter())?;
        }
        for r in &a.scopes {
            let mut row = app_cols.clone();
            row.extend([
                r.scope.clone(),
                class_name(r.class).to_string(),
                r.approved.to_string(),
                r.requested.map(|b| b.to_string()).unwrap_or_default(),
                r.granted.to_string(),
                r.calls.to_string(),
                r.patients.to_string(),
                r.first_used.clone().unwrap_or_default(),
                r.last_used.clone().unwrap_or_default(),
                r.types_used.join(" "),
                r.letters_used.clone(),
            ]);
            write_csv_row(out, row.into_iter())?;
        }
    }
    Ok(())
}

fn write_csv_row(
    out: &mut impl Write,
    fields: impl Iterator<Item = String>,
) -> Result<(), ReportError> {
    out.write_all(csv_line(fields).as_bytes())?;
    Ok(())
}

/// One CSV record: the fields through [`csv_field`], comma-separated,
/// ending in CRLF (RFC 4180). Every CSV scopewatch writes is made of these.
pub fn csv_line<S: AsRef<str>>(fields: impl IntoIterator<Item = S>) -> String {
    let mut line = String::new();
    for (i, f) in fields.into_iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        line.push_str(&csv_field(f.as_ref()));
    }
    line.push_str("\r\n");
    line
}

/// One CSV field: quoted when it holds a comma, quote, CR or LF (quotes
/// doubled). A value that a spreadsheet would run as a formula (starting
/// with `=`, `+`, `-`, `@`, tab or CR) gets a leading `'`: client ids come
/// from logs, and a report is opened in spreadsheets.
pub fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

// ---------------------------------------------------------------------------
// Words for the classes
// ---------------------------------------------------------------------------

/// Every class, most serious first.
pub const CLASSES: [ScopeClass; 6] = [
    ScopeClass::Unapproved,
    ScopeClass::Denied,
    ScopeClass::Used,
    ScopeClass::Unused,
    ScopeClass::NotGranted,
    ScopeClass::Unknown,
];

/// The class as in JSON and CSV.
pub fn class_name(c: ScopeClass) -> &'static str {
    match c {
        ScopeClass::Unapproved => "unapproved",
        ScopeClass::Denied => "denied",
        ScopeClass::Used => "used",
        ScopeClass::Unused => "unused",
        ScopeClass::NotGranted => "not_granted",
        ScopeClass::Unknown => "unknown",
    }
}

pub fn class_label(c: ScopeClass) -> &'static str {
    match c {
        ScopeClass::Unapproved => "unapproved",
        ScopeClass::Denied => "denied",
        ScopeClass::Used => "used",
        ScopeClass::Unused => "unused",
        ScopeClass::NotGranted => "not granted",
        ScopeClass::Unknown => "unknown",
    }
}

pub fn class_meaning(c: ScopeClass) -> &'static str {
    match c {
        ScopeClass::Unapproved => {
            "requested or granted, but the registry does not approve it. Act: revoke the grant or record an approval."
        }
        ScopeClass::Denied => {
            "calls needed it and were refused, and no grant holds it. The app tried to reach data it may not see."
        }
        ScopeClass::Used => "granted and used by calls in the window.",
        ScopeClass::Unused => {
            "granted and not used by any call in the window: a candidate to remove."
        }
        ScopeClass::NotGranted => {
            "approved, but the logs show neither a grant nor a use of it in the window."
        }
        ScopeClass::Unknown => {
            "the logs cannot tell (e.g. the app was registered after the window started, or no source records its grants)."
        }
    }
}

fn class_color(c: ScopeClass) -> RGBColor {
    match c {
        ScopeClass::Unapproved => RGBColor(0xc6, 0x28, 0x28),
        ScopeClass::Denied => RGBColor(0xe6, 0x7e, 0x22),
        ScopeClass::Used => RGBColor(0x2e, 0x7d, 0x32),
        ScopeClass::Unused => RGBColor(0xf2, 0xc1, 0x1d),
        ScopeClass::NotGranted => RGBColor(0x90, 0xa4, 0xae),
        ScopeClass::Unknown => RGBColor(0xd5, 0xd5, 0xd5),
    }
}

fn band_color(band: &str) -> RGBColor {
    match band {
        "high" => RGBColor(0xc6, 0x28, 0x28),
        "medium" => RGBColor(0xe6, 0x7e, 0x22),
        _ => RGBColor(0x2e, 0x7d, 0x32),
    }
}

/// Colours of the activity chart's lines (Okabe-Ito, told apart by most
/// colour-blind readers), the last for "other apps".
const LINE_COLORS: [RGBColor; 8] = [
    RGBColor(0x00, 0x72, 0xb2),
    RGBColor(0xd5, 0x5e, 0x00),
    RGBColor(0x00, 0x9e, 0x73),
    RGBColor(0xcc, 0x79, 0xa7),
    RGBColor(0x56, 0xb4, 0xe9),
    RGBColor(0xe6, 0x9f, 0x00),
    RGBColor(0x33, 0x33, 0x33),
    RGBColor(0x99, 0x99, 0x99),
];

// ---------------------------------------------------------------------------
// Charts (inline SVG, plotters)
// ---------------------------------------------------------------------------

const FONT: &str = "sans-serif";
const CHART_WIDTH: u32 = 960;

fn chart_err<E: std::error::Error + Send + Sync>(
    chart: &'static str,
) -> impl Fn(DrawingAreaErrorKind<E>) -> ReportError {
    move |e| ReportError::Chart {
        chart,
        message: e.to_string(),
    }
}

/// A chart label: at most `max` characters, with an ellipsis when cut.
fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn app_label(a: &AppTenant) -> String {
    format!("{} · {}", short(&a.client_id, 30), short(&a.tenant, 14))
}

fn label_style(size: u32) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font()).color(&BLACK)
}

/// Stacked horizontal bars: each app x tenant's scopes by class.
pub fn scopes_by_class_svg(apps: &[AppTenant]) -> Result<String, ReportError> {
    const NAME: &str = "scopes by class";
    let n = apps.len().max(1);
    let height = 56 + 50 + 24 * n as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (CHART_WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err(NAME))?;
        let (legend, area) = root.split_vertically(44);
        draw_legend(
            &legend,
            CLASSES
                .iter()
                .map(|c| (class_label(*c).to_string(), class_color(*c))),
        )
        .map_err(chart_err(NAME))?;
        let max = apps
            .iter()
            .map(|a| a.scopes.len())
            .max()
            .unwrap_or(0)
            .max(1) as u32;
        let mut chart = ChartBuilder::on(&area)
            .margin_right(24)
            .margin_bottom(6)
            .x_label_area_size(40)
            .y_label_area_size(300)
            .build_cartesian_2d(0u32..max, (0..n as i32).into_segmented())
            .map_err(chart_err(NAME))?;
        let labels: Vec<String> = apps.iter().map(app_label).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|v| segment_label(v, &labels))
            .x_labels(max.min(20) as usize)
            .light_line_style(TRANSPARENT)
            .x_label_formatter(&|v| format!("{v}"))
            .x_desc("scopes (approved, requested, granted or needed)")
            .label_style(label_style(13))
            .axis_desc_style(label_style(13))
            .draw()
            .map_err(chart_err(NAME))?;
        let mut bars = Vec::new();
        for (i, a) in apps.iter().enumerate() {
            let y = (n - 1 - i) as i32;
            let counts = ClassCounts::of(a);
            let mut x = 0u32;
            for c in CLASSES {
                let k = counts.get(c) as u32;
                if k == 0 {
                    continue;
                }
                let mut r = Rectangle::new(
                    [
                        (x, SegmentValue::Exact(y)),
                        (x + k, SegmentValue::Exact(y + 1)),
                    ],
                    class_color(c).filled(),
                );
                r.set_margin(4, 4, 0, 1);
                bars.push(r);
                x += k;
            }
        }
        chart.draw_series(bars).map_err(chart_err(NAME))?;
        root.present().map_err(chart_err(NAME))?;
    }
    Ok(svg)
}

/// Horizontal bars: each app x tenant's creep score, 0-100, coloured by band.
pub fn creep_svg(apps: &[AppTenant]) -> Result<String, ReportError> {
    const NAME: &str = "creep score";
    let n = apps.len().max(1);
    let height = 56 + 50 + 24 * n as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (CHART_WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err(NAME))?;
        let (legend, area) = root.split_vertically(44);
        draw_legend(
            &legend,
            [
                ("low (0-19)".to_string(), band_color("low")),
                ("medium (20-49)".to_string(), band_color("medium")),
                ("high (50-100)".to_string(), band_color("high")),
            ]
            .into_iter(),
        )
        .map_err(chart_err(NAME))?;
        let mut chart = ChartBuilder::on(&area)
            .margin_right(24)
            .margin_bottom(6)
            .x_label_area_size(40)
            .y_label_area_size(300)
            .build_cartesian_2d(0u32..100u32, (0..n as i32).into_segmented())
            .map_err(chart_err(NAME))?;
        let labels: Vec<String> = apps.iter().map(app_label).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|v| segment_label(v, &labels))
            .x_labels(11)
            .light_line_style(TRANSPARENT)
            .x_desc("scope-creep score (0: uses exactly what it is granted)")
            .label_style(label_style(13))
            .axis_desc_style(label_style(13))
            .draw()
            .map_err(chart_err(NAME))?;
        // The band limits.
        for at in [20u32, 50] {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![
                        (at, SegmentValue::Exact(0)),
                        (at, SegmentValue::Exact(n as i32)),
                    ],
                    RGBColor(0x44, 0x44, 0x44).stroke_width(2),
                )))
                .map_err(chart_err(NAME))?;
        }
        let mut bars = Vec::new();
        let mut values = Vec::new();
        for (i, a) in apps.iter().enumerate() {
            let y = (n - 1 - i) as i32;
            let score = u32::from(a.creep.score);
            let mut r = Rectangle::new(
                [
                    (0, SegmentValue::Exact(y)),
                    (score.max(1), SegmentValue::Exact(y + 1)),
                ],
                band_color(a.creep.band).filled(),
            );
            r.set_margin(4, 4, 0, 0);
            bars.push(r);
            values.push(Text::new(
                format!("{} ({})", a.creep.score, a.creep.band),
                ((score + 1).min(88), SegmentValue::CenterOf(y)),
                label_style(12).pos(Pos::new(HPos::Left, VPos::Center)),
            ));
        }
        chart.draw_series(bars).map_err(chart_err(NAME))?;
        chart.draw_series(values).map_err(chart_err(NAME))?;
        root.present().map_err(chart_err(NAME))?;
    }
    Ok(svg)
}

/// Lines: allowed FHIR calls per day for the busiest apps (the rest summed).
pub fn daily_calls_svg(daily: &[DailyCalls], from: Date, to: Date) -> Result<String, ReportError> {
    let per_day = daily
        .iter()
        .map(|d| (d.client_id.as_str(), d.date.as_str(), d.allowed));
    lines_per_day_svg(
        per_day,
        from,
        to,
        "allowed FHIR calls",
        "no FHIR calls in the window",
    )
}

/// Lines per day: one per series name (the busiest six, the rest summed
/// into one), from `(series, YYYY-MM-DD, value)` rows; days outside
/// `from..=to` are ignored.
pub fn lines_per_day_svg<'a>(
    rows: impl IntoIterator<Item = (&'a str, &'a str, u64)>,
    from: Date,
    to: Date,
    y_desc: &str,
    empty: &str,
) -> Result<String, ReportError> {
    const NAME: &str = "calls per day";
    const MAX_LINES: usize = 7;
    let days = ((to - from).whole_days().max(0) + 1) as usize;
    let day_index = |d: &str| -> Option<usize> {
        let date =
            Date::parse(d, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
        let i = (date - from).whole_days();
        (0..days as i64).contains(&i).then_some(i as usize)
    };
    let mut by_app: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (series, date, value) in rows {
        if let Some(i) = day_index(date) {
            by_app.entry(series).or_insert_with(|| vec![0; days])[i] += value;
        }
    }
    let mut ranked: Vec<(&str, Vec<u64>)> = by_app.into_iter().collect();
    ranked.sort_by(|a, b| {
        b.1.iter()
            .sum::<u64>()
            .cmp(&a.1.iter().sum::<u64>())
            .then(a.0.cmp(b.0))
    });
    let mut lines: Vec<(String, Vec<u64>)> = Vec::new();
    if ranked.len() > MAX_LINES {
        let rest = ranked.split_off(MAX_LINES - 1);
        let mut other = vec![0; days];
        for (_, v) in &rest {
            for (o, x) in other.iter_mut().zip(v) {
                *o += x;
            }
        }
        lines.extend(ranked.into_iter().map(|(k, v)| (k.to_string(), v)));
        lines.push((format!("{} other apps", rest.len()), other));
    } else {
        lines.extend(ranked.into_iter().map(|(k, v)| (k.to_string(), v)));
    }
    let max = lines
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let height = 380;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (CHART_WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err(NAME))?;
        let (area, legend) = root.split_horizontally(CHART_WIDTH - 250);
        let last = days.saturating_sub(1).max(1) as u32;
        let mut chart = ChartBuilder::on(&area)
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(0u32..last, 0u64..(max + max / 10 + 1))
            .map_err(chart_err(NAME))?;
        chart
            .configure_mesh()
            .x_labels(days.min(12))
            .x_label_formatter(&|i| {
                from.checked_add(time::Duration::days(i64::from(*i)))
                    .map(|d| format!("{}-{:02}", u8::from(d.month()), d.day()))
                    .unwrap_or_default()
            })
            .x_desc("day (UTC, month-day)")
            .y_desc(y_desc)
            .label_style(label_style(13))
            .axis_desc_style(label_style(13))
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(chart_err(NAME))?;
        for (k, (_, values)) in lines.iter().enumerate() {
            let color = if k == MAX_LINES - 1 {
                LINE_COLORS[LINE_COLORS.len() - 1]
            } else {
                LINE_COLORS[k % (LINE_COLORS.len() - 1)]
            };
            chart
                .draw_series(LineSeries::new(
                    values.iter().enumerate().map(|(i, v)| (i as u32, *v)),
                    color.stroke_width(2),
                ))
                .map_err(chart_err(NAME))?;
            chart
                .draw_series(
                    values
                        .iter()
                        .enumerate()
                        .map(|(i, v)| Circle::new((i as u32, *v), 2, color.filled())),
                )
                .map_err(chart_err(NAME))?;
        }
        if lines.is_empty() {
            area.draw(&Text::new(empty, (220, 170), label_style(16)))
                .map_err(chart_err(NAME))?;
        }
        for (k, (name, _)) in lines.iter().enumerate() {
            let color = if k == MAX_LINES - 1 {
                LINE_COLORS[LINE_COLORS.len() - 1]
            } else {
                LINE_COLORS[k % (LINE_COLORS.len() - 1)]
            };
            let y = 24 + 24 * k as i32;
            legend
                .draw(&Rectangle::new([(8, y - 3), (30, y + 3)], color.filled()))
                .map_err(chart_err(NAME))?;
            legend
                .draw(&Text::new(
                    short(name, 30),
                    (38, y),
                    label_style(13).pos(Pos::new(HPos::Left, VPos::Center)),
                ))
                .map_err(chart_err(NAME))?;
        }
        root.present().map_err(chart_err(NAME))?;
    }
    Ok(svg)
}

fn segment_label(v: &SegmentValue<i32>, labels: &[String]) -> String {
    match v {
        SegmentValue::CenterOf(y) => {
            let n = labels.len() as i32;
            usize::try_from(n - 1 - *y)
                .ok()
                .and_then(|i| labels.get(i))
                .cloned()
                .unwrap_or_default()
        }
        _ => String::new(),
    }
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    items: impl Iterator<Item = (String, RGBColor)>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let mut x = 16;
    for (label, color) in items {
        area.draw(&Rectangle::new([(x, 14), (x + 16, 30)], color.filled()))?;
        area.draw(&Rectangle::new(
            [(x, 14), (x + 16, 30)],
            RGBColor(0x55, 0x55, 0x55).stroke_width(1),
        ))?;
        area.draw(&Text::new(
            label.clone(),
            (x + 22, 22),
            label_style(14).pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
        x += 22 + 9 * label.chars().count() as i32 + 26;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// HTML
// ---------------------------------------------------------------------------

const CSS: &str = r#"
:root { --ink: #1d232a; --muted: #5b6670; --rule: #d6dbe0; --band: #f4f6f8; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); margin: 0 auto; max-width: 1100px; padding: 24px 32px 48px; line-height: 1.45; font-size: 15px; }
h1 { font-size: 28px; margin: 0 0 4px; }
h2 { font-size: 21px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--ink); }
h3 { font-size: 17px; margin: 22px 0 6px; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 13px; }
.period { font-size: 18px; margin: 0 0 12px; }
.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0 0 12px; }
.meta dt { color: var(--muted); }
.meta dd { margin: 0; }
nav ol { margin: 4px 0; padding-left: 22px; columns: 2; }
.lead { font-size: 16px; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; margin: 12px 0; }
.figure { background: var(--band); border: 1px solid var(--rule); border-radius: 6px; padding: 8px 12px; }
.figure .n { font-size: 24px; font-weight: 700; display: block; }
.figure .l { color: var(--muted); font-size: 13px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 14px; font-size: 13.5px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--rule); vertical-align: top; }
th { background: var(--band); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
         white-space: nowrap; border: 1px solid rgba(0,0,0,.25); }
.c-unapproved { background: #c62828; color: #fff; }
.c-denied { background: #e67e22; color: #fff; }
.c-used { background: #2e7d32; color: #fff; }
.c-unused { background: #f2c11d; color: #1d232a; }
.c-not_granted { background: #90a4ae; color: #1d232a; }
.c-unknown { background: #d5d5d5; color: #1d232a; }
.b-low { background: #2e7d32; color: #fff; }
.b-medium { background: #e67e22; color: #fff; }
.b-high { background: #c62828; color: #fff; }
.flag { background: #fff4e5; color: #7a3e00; }
.flag-bad { background: #fdecea; color: #8e1b1b; }
.flag-info { background: #eef3f8; color: #24476b; }
.app { break-inside: avoid-page; page-break-inside: avoid; border-top: 1px solid var(--rule); padding-top: 4px; }
.app h3 .tenant { color: var(--muted); font-weight: 400; }
.facts { color: var(--muted); margin: 2px 0 6px; }
.facts b { color: var(--ink); font-weight: 600; }
.paste { background: var(--band); border: 1px solid var(--rule); border-radius: 4px; padding: 6px 10px;
         white-space: pre-wrap; word-break: break-all; margin: 4px 0 8px; }
.chart { margin: 10px 0 18px; break-inside: avoid; page-break-inside: avoid; }
.chart svg { width: 100%; height: auto; display: block; border: 1px solid var(--rule); }
.chart figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
.muted { color: var(--muted); }
.nowrap { white-space: nowrap; }
ul.findings li { margin: 3px 0; }
dl.classes { display: grid; grid-template-columns: max-content 1fr; gap: 6px 12px; align-items: baseline; }
dl.classes dt, dl.classes dd { margin: 0; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--rule); padding-top: 8px; }
@page { size: A4; margin: 14mm 12mm; }
@media print {
  body { max-width: none; padding: 0; font-size: 11.5px; }
  h2 { break-after: avoid; page-break-after: avoid; }
  h3 { break-after: avoid; page-break-after: avoid; }
  nav { display: none; }
  section { break-before: auto; }
  .badge, .figure, th, .c-unapproved, .c-denied, .c-used, .c-unused, .c-not_granted, .c-unknown
    { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  table { font-size: 10.5px; }
  tr { break-inside: avoid; page-break-inside: avoid; }
}
"#;

fn badge(c: ScopeClass) -> Markup {
    html! { span class={"badge c-" (class_name(c))} { (class_label(c)) } }
}

fn band_badge(score: u8, band: &str) -> Markup {
    html! { span class={"badge b-" (band)} { (score) " · " (band) } }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn plural(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

fn date_of(ts: &Option<String>) -> String {
    ts.as_deref()
        .map(|t| t.get(..10).unwrap_or(t).to_string())
        .unwrap_or_else(|| "never".into())
}

/// An RFC 3339 time to the minute, `2026-11-07 11:25 UTC`.
fn minute(ts: &Option<String>) -> String {
    match ts.as_deref() {
        Some(t) if t.len() >= 16 => format!("{} UTC", t[..16].replace('T', " ")),
        Some(t) => t.to_string(),
        None => String::new(),
    }
}

fn app_name(a: &AppTenant) -> String {
    a.name.clone().unwrap_or_else(|| "unregistered app".into())
}

fn app_anchor(i: usize) -> String {
    format!("app-{i}")
}

fn app_refs(report: &Report, refs: &[AppRef]) -> Markup {
    html! {
        @for (k, r) in refs.iter().enumerate() {
            @if k > 0 { ", " }
            @let i = report.matrix.apps.iter().position(|a| a.client_id == r.client_id && a.tenant == r.tenant);
            @match i {
                Some(i) => a href={"#" (app_anchor(i))} { code { (r.client_id) } " in " (r.tenant) },
                None => { code { (r.client_id) } " in " (r.tenant) },
            }
        }
    }
}

/// The report as one self-contained HTML page.
pub fn to_html(report: &Report) -> Result<String, ReportError> {
    let m = &report.matrix;
    let h = &report.header;
    let s = &report.summary;
    let from = Date::parse(
        &m.from,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .unwrap_or(Date::MIN);
    let to = Date::parse(
        &m.to,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .unwrap_or(from);
    let scopes_chart = scopes_by_class_svg(&m.apps)?;
    let creep_chart = creep_svg(&m.apps)?;
    let daily_chart = daily_calls_svg(&report.daily_calls, from, to)?;
    let source_names: BTreeSet<&str> = h.sources.iter().map(|x| x.source.as_str()).collect();
    let with_suggestion: Vec<(usize, &AppTenant)> = m
        .apps
        .iter()
        .enumerate()
        .filter(|(_, a)| {
            !a.suggestion.remove_from_approved.is_empty()
                || !a.suggestion.add_to_approved.is_empty()
                || !a.suggestion.remove_from_granted.is_empty()
        })
        .collect();
    let dormant: Vec<(usize, &AppTenant)> = m
        .apps
        .iter()
        .enumerate()
        .filter(|(_, a)| {
            a.stale
                || a.offline_without_refresh
                || a.grants_without_calls
                || (a.calls > 0 && a.status.as_deref().is_some_and(|st| st != "active"))
        })
        .collect();
    let unknown_rows: Vec<(&AppTenant, &str)> = m
        .apps
        .iter()
        .flat_map(|a| {
            a.scopes
                .iter()
                .filter(|r| r.class == ScopeClass::Unknown)
                .map(move |r| (a, r.scope.as_str()))
        })
        .collect();
    let unused_total = s.scopes_by_class.unused;
    let title = format!("Scope report {} to {}", m.from, m.to);

    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="generator" content=(h.generator);
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    h1 { "Quarterly scope report" }
                    p.period { b { (m.from) } " to " b { (m.to) } " (" (plural(h.days, "day", "days")) ", UTC)" }
                    dl.meta {
                        dt { "Tenants" } dd { @match &h.tenant { Some(t) => { "only " code { (t) } }, None => "all" } }
                        dt { "Apps" } dd { @match &h.app { Some(a) => { "only " code { (a) } }, None => "all" } }
                        dt { "Approvals from" } dd { code { (h.registry) } }
                        dt { "Log sources" } dd {
                            @if source_names.is_empty() { "none delivered events in this window" }
                            @for (k, n) in source_names.iter().enumerate() { @if k > 0 { ", " } code { (n) } }
                        }
                        dt { "Generated" } dd { (h.generated_at) " by " (h.generator) }
                    }
                    nav {
                        b { "Contents" }
                        ol {
                            li { a href="#summary" { "Summary" } }
                            li { a href="#matrix" { "Scopes per app and tenant" } }
                            li { a href="#suggestions" { "Least-privilege suggestions" } }
                            li { a href="#stale" { "Stale and dormant apps" } }
                            li { a href="#drift" { "Drift by version" } }
                            li { a href="#method" { "Method" } }
                        }
                    }
                }

                section #summary {
                    h2 { "1. Summary" }
                    p.lead {
                        (plural(s.apps as u64, "app", "apps")) " in " (plural(s.tenants as u64, "tenant", "tenants"))
                        " made " (s.calls) " FHIR calls (" (s.denied_calls) " denied) on "
                        (s.grants) " token grants (" (s.refreshes) " refreshes) between " (m.from) " and " (m.to) ". "
                        "Across " (plural(s.app_tenants as u64, "app and tenant pair", "app and tenant pairs")) ", "
                        (plural(s.scopes_by_class.unapproved, "scope is", "scopes are")) " held or asked for without approval and "
                        (plural(unused_total, "granted scope was", "granted scopes were")) " never used."
                    }
                    div.figures {
                        div.figure { span.n { (s.apps) } span.l { "apps" } }
                        div.figure { span.n { (s.tenants) } span.l { "tenants" } }
                        div.figure { span.n { (s.calls) } span.l { "FHIR calls" } }
                        div.figure { span.n { (s.denied_calls) } span.l { "denied calls" } }
                        div.figure { span.n { (s.grants) } span.l { "token grants" } }
                        div.figure { span.n { (s.stale.len()) } span.l { "stale app × tenant" } }
                    }
                    h3 { "Findings" }
                    ul.findings {
                        li {
                            span class="badge c-unapproved" { "unapproved" } " "
                            (plural(s.scopes_by_class.unapproved, "scope", "scopes")) " requested or granted without the registry's approval"
                            @let apps = m.apps.iter().filter(|a| a.scopes.iter().any(|r| r.class == ScopeClass::Unapproved))
                                .map(|a| AppRef { client_id: a.client_id.clone(), tenant: a.tenant.clone() }).collect::<Vec<_>>();
                            @if !apps.is_empty() { ": " (app_refs(report, &apps)) }
                            "."
                        }
                        li {
                            span class="badge c-denied" { "denied" } " "
                            (plural(s.scopes_by_class.denied, "permission", "permissions")) " that calls needed and were refused (" (s.denied_calls) " denied calls)."
                        }
                        li {
                            span class="badge c-unused" { "unused" } " "
                            (plural(unused_total, "granted scope", "granted scopes")) " not used by any call: see the suggestions."
                        }
                        li {
                            span class="badge flag-bad" { "stale" } " "
                            @if s.stale.is_empty() { "No stale app." }
                            @else { (plural(s.stale.len() as u64, "app × tenant", "app × tenant pairs")) " with no call and no grant in the last " (h.stale_after_days) " days: " (app_refs(report, &s.stale)) "." }
                        }
                        @if !s.not_active_with_calls.is_empty() {
                            li {
                                span class="badge flag-bad" { "not active" } " "
                                "Suspended or revoked apps with calls in the window (check the calls against the status date): "
                                (app_refs(report, &s.not_active_with_calls)) "."
                            }
                        }
                        @if !s.offline_without_refresh.is_empty() {
                            li {
                                span class="badge flag" { "offline, no refresh" } " "
                                "Granted " code { "offline_access" } " but never refreshed: " (app_refs(report, &s.offline_without_refresh)) "."
                            }
                        }
                        @if !s.unregistered.is_empty() {
                            li {
                                span class="badge flag-bad" { "unregistered" } " "
                                "Apps in the logs that the registry does not list: " (app_refs(report, &s.unregistered)) "."
                            }
                        }
                        li {
                            span class="badge flag" { "version drift" } " "
                            @let new = s.version_drift.iter().filter(|v| !v.new_scopes.is_empty()).count() as u64;
                            @let unapproved = s.version_drift.iter().filter(|v| v.approved_version == Some(false)).count() as u64;
                            (plural(new, "app version asks", "app versions ask")) " for scopes its predecessor did not; "
                            (plural(unapproved, "version is", "versions are")) " not approved."
                        }
                    }
                    h3 { "Scopes by class" }
                    table {
                        thead { tr { th { "Class" } th.num { "Scopes" } th { "Meaning" } } }
                        tbody {
                            @for c in CLASSES {
                                tr { td { (badge(c)) } td.num { (s.scopes_by_class.get(c)) } td { (class_meaning(c)) } }
                            }
                        }
                    }
                    h3 { "Highest scope-creep scores" }
                    @if s.top_creep.is_empty() { p.muted { "No app holds a grant in this window." } }
                    @else {
                        table {
                            thead { tr { th { "App" } th { "Tenant" } th { "Score" } } }
                            tbody {
                                @for c in &s.top_creep {
                                    tr { td { code { (c.client_id) } } td { (c.tenant) } td { (band_badge(c.score, c.band)) } }
                                }
                            }
                        }
                    }
                    figure.chart {
                        (PreEscaped(&scopes_chart))
                        figcaption { "Scopes of each app in each tenant, by class (the colours follow the legend; the tables below give every scope with its class in words)." }
                    }
                    figure.chart {
                        (PreEscaped(&creep_chart))
                        figcaption { "Scope-creep score of each app in each tenant: 0 means it uses exactly what it is granted; see Method." }
                    }
                    figure.chart {
                        (PreEscaped(&daily_chart))
                        figcaption { "Allowed FHIR calls per day for the busiest apps (all tenants of the report together)." }
                    }
                }

                section #matrix {
                    h2 { "2. Scopes per app and tenant" }
                    p.muted { "For each app in each tenant: every scope the registry approves, the app requested or was granted, or its calls needed, with its class. "
                        "“Requested: not recorded” means no log source records what the app asks for." }
                    @for (i, a) in m.apps.iter().enumerate() {
                        (app_section(report, i, a))
                    }
                }

                section #suggestions {
                    h2 { "3. Least-privilege suggestions" }
                    p.muted { "The smallest scope set that covers every call of the window, plus the launch and identity scopes the app needs "
                        "(and " code { "offline_access" } " when it refreshed). Paste it into the app's " code { "approved_scopes" } " in the registry once the owner agrees." }
                    @if with_suggestion.is_empty() { p { "Every app holds and is approved for exactly what it used." } }
                    @for (i, a) in &with_suggestion {
                        div.app {
                            h3 { a href={"#" (app_anchor(*i))} { (app_name(a)) } " " code { (a.client_id) } " " span.tenant { "in " (a.tenant) } }
                            @if a.too_new_to_judge { p { span class="badge flag-info" { "too new to judge" } " registered after the window started: its unused scopes are not judged." } }
                            p { "Suggested " code { "approved_scopes" } ":" }
                            div.paste.mono { (a.suggestion.scopes.join(" ")) }
                            table {
                                tbody {
                                    tr { th { "Remove from approved" } td { (scope_list(&a.suggestion.remove_from_approved)) } }
                                    tr { th { "Add to approved (used, not approved)" } td { (scope_list(&a.suggestion.add_to_approved)) } }
                                    tr { th { "Stop granting" } td { (scope_list(&a.suggestion.remove_from_granted)) } }
                                }
                            }
                        }
                    }
                }

                section #stale {
                    h2 { "4. Stale and dormant apps" }
                    p.muted { "Stale: no call and no grant in the " (h.stale_after_days) " days before the end of the window. "
                        "Offline without refresh: granted " code { "offline_access" } " and never refreshed. "
                        "Grants without calls: tokens issued, no FHIR call made." }
                    @if dormant.is_empty() { p { "No app is stale or dormant." } }
                    @else {
                        table {
                            thead { tr { th { "App" } th { "Tenant" } th { "Status" } th { "Last call" } th { "Last grant" } th { "Flags" } } }
                            tbody {
                                @for (i, a) in &dormant {
                                    tr {
                                        td { a href={"#" (app_anchor(*i))} { code { (a.client_id) } } }
                                        td { (a.tenant) }
                                        td { (a.status.as_deref().unwrap_or("unregistered")) }
                                        td { (date_of(&a.last_call)) }
                                        td { (date_of(&a.last_grant)) }
                                        td { (flags(a)) }
                                    }
                                }
                            }
                        }
                    }
                }

                section #drift {
                    h2 { "5. Drift by version" }
                    p.muted { "App versions that ask for scopes the version before did not, or that the registry does not approve." }
                    @if s.version_drift.is_empty() { p { "No version asks for new scopes, and every version seen is approved." } }
                    @else {
                        table {
                            thead { tr { th { "App" } th { "Tenant" } th { "Version" } th { "Approved version" } th.num { "Calls" } th { "New scopes" } } }
                            tbody {
                                @for v in &s.version_drift {
                                    tr {
                                        td { code { (v.client_id) } }
                                        td { (v.tenant) }
                                        td { code { (v.version) } }
                                        td { @match v.approved_version { Some(true) => "yes", Some(false) => span class="badge flag-bad" { "not approved" }, None => "unregistered app" } }
                                        td.num { (v.calls) }
                                        td { (scope_list(&v.new_scopes)) }
                                    }
                                }
                            }
                        }
                    }
                }

                section #method {
                    h2 { "6. Method" }
                    h3 { "Window" }
                    p {
                        "Every figure counts events from " (m.from) " 00:00 UTC up to " (m.to) " 24:00 UTC (" (plural(h.days, "day", "days")) "). "
                        "A granted scope is " i { "unused" } " when no allowed call in this window needed a permission it covers. "
                        "Staleness looks at all history before the end of the window."
                        @if h.days < h.observation_window_days {
                            " This window is shorter than the configured observation window (" (h.observation_window_days)
                            " days): a scope used less often than that may show as unused here."
                        }
                    }
                    h3 { "Sources" }
                    @if h.sources.is_empty() { p { "No log source delivered events in this window." } }
                    @else {
                        table {
                            thead { tr { th { "Source" } th { "Format" } th { "Stream" } th.num { "Events" } th { "First" } th { "Last" } } }
                            tbody {
                                @for x in &h.sources {
                                    tr {
                                        td { code { (x.source) } }
                                        td { (x.format.as_deref().unwrap_or("—")) }
                                        td { (if x.stream == "auth" { "authorization server" } else { "FHIR calls" }) }
                                        td.num { (x.events) }
                                        td { (minute(&x.first_event)) }
                                        td { (minute(&x.last_event)) }
                                    }
                                }
                            }
                        }
                    }
                    @if !h.sources_without_events.is_empty() {
                        p { "Configured sources with no event in this window: "
                            @for (k, n) in h.sources_without_events.iter().enumerate() { @if k > 0 { ", " } code { (n) } } "." }
                    }
                    p { "Approved scopes come from the registry " code { (h.registry) } "; requested scopes from authorize requests; "
                        "granted scopes from issued tokens; used permissions from the FHIR calls, each mapped to the SMART permission it needs "
                        "(read and vread need " code { "r" } ", search " code { "s" } ", create " code { "c" } ", update and patch " code { "u" } ", delete " code { "d" } ")." }
                    h3 { "Classes" }
                    dl.classes {
                        @for c in CLASSES { dt { (badge(c)) } dd { (class_meaning(c)) } }
                    }
                    h3 { "Scope-creep score" }
                    p {
                        "Each granted scope weighs 1, plus 1 for a wildcard resource type (" code { "*" } "), 1 for write letters ("
                        code { "c" } ", " code { "u" } ", " code { "d" } "), 1 for " code { "system/" } "; " code { "offline_access" } " weighs 2. "
                        "Its excess is the share of its permission letters no call used (a wildcard counts at least half: it reaches types no one listed); "
                        code { "offline_access" } " is all excess when the app never refreshed. "
                        "Score = 100 × Σ(weight × excess) / Σ(weight), so an app using exactly what it is granted scores 0. "
                        "Bands: low below 20, medium 20 to 49, high 50 and above."
                    }
                    h3 { "What the logs could not tell" }
                    ul {
                        li {
                            @if s.requested_unknown.is_empty() { "Every app's requested scopes are recorded by a source." }
                            @else { "No source records the scopes these apps request, so “requested” is not judged for them: " (app_refs(report, &s.requested_unknown)) "." }
                        }
                        li {
                            @if unknown_rows.is_empty() { "No scope is of class unknown." }
                            @else {
                                (plural(unknown_rows.len() as u64, "scope is", "scopes are")) " of class " (badge(ScopeClass::Unknown)) ": "
                                @for (k, (a, scope)) in unknown_rows.iter().enumerate() {
                                    @if k > 0 { "; " }
                                    code { (scope) } " of " code { (a.client_id) } " in " (a.tenant)
                                }
                                "."
                            }
                        }
                        @if !s.too_new_to_judge.is_empty() {
                            li { "Registered after the window started, so their unused scopes are not judged: " (app_refs(report, &s.too_new_to_judge)) "." }
                        }
                        li { "Where a source names a call's token but not its scopes (FHIR AuditEvents), the call's context (patient, user or system) is taken from the grant that covers it." }
                        li { "Calls and grants that no source logged are not in this report: it is as complete as the sources listed above." }
                    }
                }
                footer {
                    "scopewatch quarterly scope report · " (m.from) " to " (m.to) " · generated " (h.generated_at)
                    " · the same data as CSV and JSON: " code { "scopewatch report --format csv|json" }
                }
            }
        }
    };
    Ok(page.into_string())
}

fn scope_list(scopes: &[String]) -> Markup {
    html! {
        @if scopes.is_empty() { span.muted { "none" } }
        @for (k, sc) in scopes.iter().enumerate() { @if k > 0 { " " } code { (sc) } }
    }
}

fn flags(a: &AppTenant) -> Markup {
    html! {
        @if a.stale { span class="badge flag-bad" { "stale" } " " }
        @if a.calls > 0 && a.status.as_deref().is_some_and(|s| s != "active") {
            span class="badge flag-bad" { (a.status.as_deref().unwrap_or_default()) ", with calls" } " "
        }
        @if !a.registered { span class="badge flag-bad" { "unregistered" } " " }
        @if a.offline_without_refresh { span class="badge flag" { "offline, no refresh" } " " }
        @if a.grants_without_calls { span class="badge flag" { "grants without calls" } " " }
        @if a.too_new_to_judge { span class="badge flag-info" { "too new to judge" } " " }
        @if !a.requested_known { span class="badge flag-info" { "requests not recorded" } " " }
    }
}

fn app_section(report: &Report, i: usize, a: &AppTenant) -> Markup {
    let reg = report.registry_entry(&a.client_id);
    html! {
        div.app id=(app_anchor(i)) {
            h3 { (app_name(a)) " " code { (a.client_id) } " " span.tenant { "in " (a.tenant) } }
            p.facts {
                @if let Some(r) = reg {
                    "Owner " b { (r.owner) } " (" (r.contact) ") · tier " b { (r.tier) } " · "
                    b { (r.status) } @if let Some(since) = &r.status_since { " since " (since) } " · last certified "
                    b { (r.last_certified.as_deref().unwrap_or("never")) }
                    br;
                } @else {
                    b { "Not in the registry." } " "
                }
                b { (a.calls) } " calls (" (a.denied_calls) " denied) · " b { (a.patients) } " patients · "
                b { (a.grants) } " grants · " (a.refreshes) " refreshes · last call " b { (date_of(&a.last_call)) }
                " · last grant " b { (date_of(&a.last_grant)) } " · creep " (band_badge(a.creep.score, a.creep.band))
            }
            p { (flags(a)) }
            @if a.scopes.is_empty() { p.muted { "No scope approved, requested, granted or needed." } }
            @else {
                table {
                    thead {
                        tr {
                            th { "Scope" } th { "Class" } th { "Approved" } th { "Requested" } th { "Granted" }
                            th.num { "Calls" } th.num { "Patients" } th { "Last used" } th { "Letters used" }
                        }
                    }
                    tbody {
                        @for r in &a.scopes {
                            tr {
                                td { code { (r.scope) } }
                                td { (badge(r.class)) }
                                td { (yes_no(r.approved)) }
                                td { @match r.requested { Some(b) => (yes_no(b)), None => span.muted { "not recorded" } } }
                                td { (yes_no(r.granted)) }
                                td.num { (r.calls) }
                                td.num { (r.patients) }
                                td.nowrap { @if r.last_used.is_some() { (date_of(&r.last_used)) } }
                                td {
                                    @if !r.letters_used.is_empty() { code { "." (r.letters_used) } }
                                    @if !r.types_used.is_empty() { " on " (r.types_used.join(", ")) }
                                }
                            }
                        }
                    }
                }
            }
            @if !a.versions.is_empty() {
                p.facts {
                    "Versions: "
                    @for (k, v) in a.versions.iter().enumerate() {
                        @if k > 0 { ", " }
                        code { (v.version) } " (" (v.calls) " calls"
                        @if v.approved_version == Some(false) { ", " b { "not approved" } }
                        @if !v.new_scopes.is_empty() { ", asks for " (v.new_scopes.join(" ")) }
                        ")"
                    }
                }
            }
        }
    }
}
