//! Access recertification: a campaign for a period (a quarter, say) lists
//! every app x tenant with its evidence, a reviewer records keep / narrow /
//! revoke with a required justification, the campaign shows its progress,
//! and once every row is decided it exports the decisions (CSV, JSON) and a
//! registry patch that applies them.
//!
//! Storage, under `<data>/dashboard/recert/`:
//! - `<id>.json`: the campaign's definition and its rows, FROZEN at
//!   creation (the scope matrix over the period as it was then: a decision
//!   is judged against the evidence the reviewer saw, not against whatever
//!   the lake says later). Written aside, fsynced, renamed.
//! - `<id>.decisions.jsonl`: every decision, appended and fsynced one line
//!   at a time, never rewritten ([`crate::jsonl`]). The newest line for a
//!   row is its decision; the older ones are its history. A torn last line
//!   (a crash mid-append) is ignored on read and cut off before the next
//!   append.
//!
//! Both files are the owner's only (0600, in a 0700 directory).
//!
//! Ids are `rc-` and 16 hex digits; anything else is answered 404 before a
//! path is built from it. One process-wide lock serialises the store (only
//! the dashboard writes it); a decisions file is also `flock`ed while
//! appending.
//!
//! Who sees what: a campaign created by a user limited to some tenants
//! covers only those tenants (`tenants` in the file). A user limited to
//! tenants sees a campaign when it covers one of their tenants (or every
//! tenant), and then only its rows of their tenants: the progress, the
//! pages, the API and every export count and list those rows only; another
//! tenant's row or campaign answers 404, as an unknown one does.
//!
//! Narrowing policy: a narrowed scope list must stay within what the
//! registry approved for the app in that tenant (as frozen in the row):
//! each scope is listed there or covered by an approved resource scope
//! (`patient/Observation.r` under `patient/Observation.rs`; a `?filter`
//! narrowing of an approved scope also counts). Anything else is REFUSED
//! with a 400 naming the scopes: recertification only takes access away;
//! widening access is a registry change with its own review.
//!
//! Routes:
//! - `GET /recert` (ViewRecertification), `POST /recert` (Recertify; form
//!   `csrf`, `name`, `from`, `to`)
//! - `GET /recert/{id}`, `POST /recert/{id}/decisions` (Recertify; form
//!   `csrf`, `client_id`, `tenant`, `decision`, `scopes`, `justification`)
//! - exports, once complete for the caller's rows (else 409):
//!   `GET /recert/{id}/decisions.csv`, `/decisions.json`, `/registry-patch`
//! - `GET /api/recert`, `POST /api/recert` (`{"name","from","to"}`),
//!   `GET /api/recert/{id}`, `POST /api/recert/{id}/decisions`
//!   (`{"client_id","tenant","decision","scopes","justification"}`, scopes
//!   a list or a space-separated string)

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use maud::{html, Markup};
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use scopewatch_analytics::matrix::{AppTenant, MatrixQuery, ScopeClass, ScopeRow};
use scopewatch_analytics::report::csv_line;
use scopewatch_model::registry::{scope_approved, Registry};
use scopewatch_model::scope::{ResourceScope, Scope};

use crate::audit::{now_rfc3339_secs, Outcome};
use crate::auth::{CurrentUser, Permission};
use crate::http::{attachment, json_body, parse_day};
use crate::layout::{csrf_field, page, when_to, Precision};
use crate::{AppError, AppState, DashboardError};

/// Longest justification accepted (characters, after trimming).
pub const MAX_JUSTIFICATION_CHARS: usize = 2000;
/// Longest campaign name.
const MAX_NAME_CHARS: usize = 200;
/// Most scopes in one narrowing, and the longest one.
const MAX_SCOPES: usize = 200;
const MAX_SCOPE_CHARS: usize = 500;
/// Longest period a campaign may cover.
const MAX_PERIOD_DAYS: i64 = 3660;

/// Serialises every read and write of the campaign store in this process.
static STORE: Mutex<()> = Mutex::new(());

/// The routes of this module, merged by [`crate::pages::routes`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/recert", get(list_page).post(create_form))
        .route("/recert/{id}", get(detail_page))
        .route("/recert/{id}/decisions", post(decision_form))
        .route("/recert/{id}/decisions.csv", get(export_csv))
        .route("/recert/{id}/decisions.json", get(export_json))
        .route("/recert/{id}/registry-patch", get(export_patch))
        .route("/api/recert", get(api_list).post(api_create))
        .route("/api/recert/{id}", get(api_get))
        .route("/api/recert/{id}/decisions", post(api_decide))
}

// ---------------------------------------------------------------------------
// The stored data
// ---------------------------------------------------------------------------

/// A campaign as stored: its definition and its frozen rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Campaign {
    pub id: String,
    pub name: String,
    /// The period, `YYYY-MM-DD`, both days included.
    pub from: String,
    pub to: String,
    pub created_by: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// The tenants covered; `None`: every tenant (the creator had no limit).
    pub tenants: Option<Vec<String>>,
    pub stale_after_days: u32,
    /// Why the registry could not be read when the evidence was frozen.
    #[serde(default)]
    pub registry_problem: Option<String>,
    /// Every app x tenant of the period, sorted by app then tenant.
    pub rows: Vec<Row>,
}

/// One app in one tenant, with its evidence as of the campaign's creation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub client_id: String,
    pub tenant: String,
    /// Registered name and owner; `None` for an app the registry does not know.
    pub name: Option<String>,
    pub owner: Option<String>,
    pub registered: bool,
    pub status: Option<String>,
    /// The registry's approved scopes for this tenant.
    pub approved: Vec<String>,
    pub granted: Vec<String>,
    /// Scopes that covered allowed calls in the period.
    pub used: Vec<String>,
    /// Granted and never used in the period.
    pub unused: Vec<String>,
    /// Requested or granted without the registry's approval.
    pub unapproved: Vec<String>,
    /// Needed by refused calls and held by no grant.
    pub denied: Vec<String>,
    pub calls: u64,
    pub denied_calls: u64,
    pub patients: u64,
    pub last_call: Option<String>,
    pub stale: bool,
    pub too_new_to_judge: bool,
    pub creep_score: u8,
    pub creep_band: String,
    /// The least-privilege suggestion: the smallest scope set covering the use.
    pub suggestion: Vec<String>,
}

/// What the reviewer decided for a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Keep,
    Narrow,
    Revoke,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Keep => "keep",
            Verdict::Narrow => "narrow",
            Verdict::Revoke => "revoke",
        }
    }

    fn parse(s: &str) -> Option<Verdict> {
        match s.trim() {
            "keep" => Some(Verdict::Keep),
            "narrow" => Some(Verdict::Narrow),
            "revoke" => Some(Verdict::Revoke),
            _ => None,
        }
    }

    /// A badge class of the stylesheet with a fitting colour.
    fn badge(self) -> &'static str {
        match self {
            Verdict::Keep => "badge st-resolved",
            Verdict::Narrow => "badge st-acknowledged",
            Verdict::Revoke => "badge st-open",
        }
    }
}

/// One line of the decisions file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decision {
    pub client_id: String,
    pub tenant: String,
    pub decision: Verdict,
    /// The scopes to keep (narrow only; empty otherwise).
    #[serde(default)]
    pub scopes: Vec<String>,
    pub justification: String,
    pub decided_by: String,
    /// RFC 3339, UTC.
    pub decided_at: String,
}

fn store_dir(state: &AppState) -> PathBuf {
    state.config.state_dir().join("recert")
}

fn valid_id(id: &str) -> bool {
    id.strip_prefix("rc-")
        .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

fn campaign_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

fn decisions_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.decisions.jsonl"))
}

fn invalid_data(path: &Path, e: impl std::fmt::Display) -> DashboardError {
    DashboardError::io(
        path,
        std::io::Error::new(ErrorKind::InvalidData, e.to_string()),
    )
}

/// Writes the campaign file (0600, in a 0700 directory) aside, fsyncs it,
/// renames it into place and fsyncs the directory: it appears whole or not
/// at all.
fn write_campaign(dir: &Path, c: &Campaign) -> Result<(), DashboardError> {
    crate::users::ensure_private_dir(dir)?;
    let path = campaign_path(dir, &c.id);
    let bytes = serde_json::to_vec_pretty(c).map_err(|e| invalid_data(&path, e))?;
    crate::users::write_private_atomic(&path, &bytes)
}

/// What a campaign file looked like when it was parsed: length, mtime and
/// inode (a campaign is replaced by a rename, so a rewrite is a new inode).
type FileStamp = (u64, Option<std::time::SystemTime>, u64, u64);

fn file_stamp(m: &fs::Metadata) -> FileStamp {
    use std::os::unix::fs::MetadataExt;
    (m.len(), m.modified().ok(), m.dev(), m.ino())
}

/// Parsed campaigns by file, with the file as it was when parsed: a list
/// or a page parses a campaign again only when its file changed. Used
/// under [`STORE`].
static PARSED: Mutex<Option<HashMap<PathBuf, (FileStamp, Arc<Campaign>)>>> = Mutex::new(None);

/// Campaigns kept parsed at most; past that the cache starts over.
const MAX_PARSED: usize = 256;

fn read_campaign(dir: &Path, id: &str) -> Result<Option<Arc<Campaign>>, DashboardError> {
    if !valid_id(id) {
        return Ok(None);
    }
    let path = campaign_path(dir, id);
    let mut parsed = PARSED.lock().unwrap_or_else(PoisonError::into_inner);
    let parsed = parsed.get_or_insert_with(HashMap::new);
    // Stamped before reading: a change in between is caught next time.
    let stamp = match fs::metadata(&path) {
        Ok(m) => file_stamp(&m),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            parsed.remove(&path);
            return Ok(None);
        }
        Err(e) => return Err(DashboardError::io(&path, e)),
    };
    if let Some((seen, c)) = parsed.get(&path) {
        if *seen == stamp {
            return Ok(Some(c.clone()));
        }
    }
    let c: Arc<Campaign> = match fs::read(&path) {
        Ok(bytes) => Arc::new(serde_json::from_slice(&bytes).map_err(|e| invalid_data(&path, e))?),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            parsed.remove(&path);
            return Ok(None);
        }
        Err(e) => return Err(DashboardError::io(&path, e)),
    };
    if parsed.len() >= MAX_PARSED {
        parsed.clear();
    }
    parsed.insert(path, (stamp, c.clone()));
    Ok(Some(c))
}

/// Every campaign, newest first.
fn list_campaigns(dir: &Path) -> Result<Vec<Arc<Campaign>>, DashboardError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(DashboardError::io(dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DashboardError::io(dir, e))?;
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
            continue;
        };
        if let Some(c) = read_campaign(dir, id)? {
            out.push(c);
        }
    }
    out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// The decisions of a campaign in the order they were made (a torn last
/// line is ignored: [`crate::jsonl::read_all`]).
fn read_decisions(dir: &Path, id: &str) -> Result<Vec<Decision>, DashboardError> {
    crate::jsonl::read_all(&decisions_path(dir, id))
}

/// Appends one decision durably ([`crate::jsonl::append`]: a torn last line
/// is cut off first, so the new one starts a line of its own).
fn append_decision(dir: &Path, id: &str, d: &Decision) -> Result<(), DashboardError> {
    crate::jsonl::append(&decisions_path(dir, id), d)
}

/// Runs `f` under the store lock, off the async threads.
async fn with_store<T, F>(f: F) -> Result<T, DashboardError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, DashboardError> + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let _guard = STORE.lock().unwrap_or_else(PoisonError::into_inner);
        f()
    })
    .await
    .map_err(|e| DashboardError::Task(e.to_string()))?
}

// ---------------------------------------------------------------------------
// What a user may see
// ---------------------------------------------------------------------------

/// Whether `user` may see the campaign at all.
fn campaign_visible(user: &CurrentUser, c: &Campaign) -> bool {
    match (&c.tenants, user.tenant_filter()) {
        (_, None) | (None, Some(_)) => true,
        (Some(covered), Some(_)) => covered.iter().any(|t| user.sees_tenant(t)),
    }
}

fn row_visible(user: &CurrentUser, r: &Row) -> bool {
    user.sees_tenant(&r.tenant) && user.sees_app(&r.client_id)
}

/// A campaign cut down to what one user may see: its rows of the user's
/// tenants and their decisions, nothing else.
#[derive(Debug, Clone)]
struct Seen {
    campaign: Campaign,
    decisions: Vec<Decision>,
    /// Visible rows with a decision (computed once).
    decided: usize,
    /// The whole campaign, every row (the registry patch needs each app's
    /// tenants); never shown as such.
    full: Arc<Campaign>,
}

impl Seen {
    fn new(user: &CurrentUser, full: Arc<Campaign>, decisions: Vec<Decision>) -> Seen {
        let mut campaign = Campaign {
            id: full.id.clone(),
            name: full.name.clone(),
            from: full.from.clone(),
            to: full.to.clone(),
            created_by: full.created_by.clone(),
            created_at: full.created_at.clone(),
            tenants: full.tenants.clone(),
            stale_after_days: full.stale_after_days,
            registry_problem: full.registry_problem.clone(),
            rows: full
                .rows
                .iter()
                .filter(|r| row_visible(user, r))
                .cloned()
                .collect(),
        };
        let keys: BTreeSet<(&str, &str)> = campaign
            .rows
            .iter()
            .map(|r| (r.client_id.as_str(), r.tenant.as_str()))
            .collect();
        let decisions: Vec<Decision> = decisions
            .into_iter()
            .filter(|d| keys.contains(&(d.client_id.as_str(), d.tenant.as_str())))
            .collect();
        if user.tenant_filter().is_some() {
            // The tenants shown: the user's share of what the campaign covers.
            let covered: Vec<String> = match &campaign.tenants {
                Some(ts) => ts.iter().filter(|t| user.sees_tenant(t)).cloned().collect(),
                None => user.tenant_filter().unwrap_or_default().to_vec(),
            };
            campaign.tenants = Some(covered);
        }
        let decided_keys: BTreeSet<(&str, &str)> = decisions
            .iter()
            .map(|d| (d.client_id.as_str(), d.tenant.as_str()))
            .collect();
        let decided = campaign
            .rows
            .iter()
            .filter(|r| decided_keys.contains(&(r.client_id.as_str(), r.tenant.as_str())))
            .count();
        Seen {
            campaign,
            decisions,
            decided,
            full,
        }
    }

    /// Every decision of each row, oldest first.
    fn history(&self) -> HashMap<(&str, &str), Vec<&Decision>> {
        let mut map: HashMap<(&str, &str), Vec<&Decision>> = HashMap::new();
        for d in &self.decisions {
            map.entry((d.client_id.as_str(), d.tenant.as_str()))
                .or_default()
                .push(d);
        }
        map
    }

    /// The rows with their current decision and history.
    fn rows(&self) -> Vec<RowOut<'_>> {
        let mut history = self.history();
        self.campaign
            .rows
            .iter()
            .map(|row| {
                let h = history
                    .remove(&(row.client_id.as_str(), row.tenant.as_str()))
                    .unwrap_or_default();
                RowOut {
                    row,
                    decision: h.last().copied(),
                    history: h,
                }
            })
            .collect()
    }

    /// (decided, total) over the visible rows.
    fn progress(&self) -> (usize, usize) {
        (self.decided, self.campaign.rows.len())
    }

    fn complete(&self) -> bool {
        let (decided, total) = self.progress();
        decided == total
    }

    fn summary(&self) -> Summary {
        let (decided, total) = self.progress();
        let c = &self.campaign;
        Summary {
            id: c.id.clone(),
            name: c.name.clone(),
            from: c.from.clone(),
            to: c.to.clone(),
            tenants: c.tenants.clone(),
            created_by: c.created_by.clone(),
            created_at: c.created_at.clone(),
            total,
            decided,
            complete: decided == total,
            percent: percent(decided, total),
        }
    }
}

/// A campaign as lists and the API show it.
#[derive(Debug, Clone, Serialize)]
struct Summary {
    id: String,
    name: String,
    from: String,
    to: String,
    /// Covered tenants (the caller's share); `null`: every tenant.
    tenants: Option<Vec<String>>,
    created_by: String,
    created_at: String,
    /// Rows the caller may see, and how many of them are decided.
    total: usize,
    decided: usize,
    complete: bool,
    percent: usize,
}

/// A row with its decision, as the API and the JSON export give it.
#[derive(Debug, Clone, Serialize)]
struct RowOut<'a> {
    #[serde(flatten)]
    row: &'a Row,
    /// The current (newest) decision, `null` while undecided.
    decision: Option<&'a Decision>,
    /// Every decision of the row, oldest first (the last is `decision`).
    history: Vec<&'a Decision>,
}

fn percent(decided: usize, total: usize) -> usize {
    // Nothing to decide counts as done.
    (decided * 100).checked_div(total).unwrap_or(100)
}

/// The campaign as `user` may see it; `None` when unknown or not theirs.
async fn load_seen(
    state: &AppState,
    user: &CurrentUser,
    id: String,
) -> Result<Option<Seen>, DashboardError> {
    let dir = store_dir(state);
    let user = user.clone();
    with_store(move || {
        let Some(c) = read_campaign(&dir, &id)? else {
            return Ok(None);
        };
        if !campaign_visible(&user, &c) {
            return Ok(None);
        }
        let decisions = read_decisions(&dir, &id)?;
        Ok(Some(Seen::new(&user, c, decisions)))
    })
    .await
}

async fn load_all_seen(state: &AppState, user: &CurrentUser) -> Result<Vec<Seen>, DashboardError> {
    let dir = store_dir(state);
    let user = user.clone();
    with_store(move || {
        let mut out = Vec::new();
        for c in list_campaigns(&dir)? {
            if campaign_visible(&user, &c) {
                let decisions = read_decisions(&dir, &c.id)?;
                out.push(Seen::new(&user, c, decisions));
            }
        }
        Ok(out)
    })
    .await
}

// ---------------------------------------------------------------------------
// Creating a campaign
// ---------------------------------------------------------------------------

/// Checks a new campaign's fields: a name, and a period of whole days.
fn check_new(name: &str, from: &str, to: &str) -> Result<(String, Date, Date), String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("Give the campaign a name (e.g. \"2026 Q4\").".into());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!(
            "The name is too long (at most {MAX_NAME_CHARS} characters)."
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("The name must be one line of text.".into());
    }
    let from = parse_day("From", from)?;
    let to = parse_day("To", to)?;
    if from > to {
        return Err(format!(
            "The period is inverted: {from} is after {to}; the first day comes first."
        ));
    }
    if (to - from).whole_days() >= MAX_PERIOD_DAYS {
        return Err(format!(
            "The period is too long (at most {MAX_PERIOD_DAYS} days)."
        ));
    }
    Ok((name.to_string(), from, to))
}

fn row_of(a: &AppTenant, registry: &Registry) -> Row {
    let app = registry.app(&a.client_id);
    let pick = |f: fn(&ScopeRow) -> bool| -> Vec<String> {
        a.scopes
            .iter()
            .filter(|s| f(s))
            .map(|s| s.scope.clone())
            .collect()
    };
    Row {
        client_id: a.client_id.clone(),
        tenant: a.tenant.clone(),
        name: a.name.clone().or_else(|| app.map(|x| x.name.clone())),
        owner: app.map(|x| x.owner.clone()),
        registered: a.registered,
        status: a.status.clone(),
        approved: app
            .map(|x| {
                x.approved_scopes_for(&a.tenant)
                    .iter()
                    .map(|s| s.raw().to_string())
                    .collect()
            })
            .unwrap_or_default(),
        granted: pick(|s| s.granted),
        used: pick(|s| s.calls > 0),
        unused: pick(|s| s.class == ScopeClass::Unused),
        unapproved: pick(|s| s.class == ScopeClass::Unapproved),
        denied: pick(|s| s.class == ScopeClass::Denied),
        calls: a.calls,
        denied_calls: a.denied_calls,
        patients: a.patients,
        last_call: a.last_call.clone(),
        stale: a.stale,
        too_new_to_judge: a.too_new_to_judge,
        creep_score: a.creep.score,
        creep_band: a.creep.band.to_string(),
        suggestion: a.suggestion.scopes.clone(),
    }
}

/// Freezes the evidence of `from..=to` into a new campaign for `user`'s
/// tenants, and audits it.
async fn create_campaign(
    state: &AppState,
    user: &CurrentUser,
    name: &str,
    from: &str,
    to: &str,
) -> Result<Campaign, AppError> {
    if !user.can(Permission::Recertify) {
        return Err(AppError::Forbidden);
    }
    let (name, from, to) = check_new(name, from, to).map_err(AppError::BadRequest)?;
    let insights = state.insights.clone();
    let stale_after_days = insights.settings().stale_after_days;
    let (rows, registry_problem) = state
        .insights
        .with_lake(move |lake| {
            let (registry, problem) = insights.load_registry();
            let query = MatrixQuery {
                from,
                to,
                tenant: None,
                app: None,
                stale_after_days,
            };
            let matrix = lake.scope_matrix(&registry, &query)?;
            let rows: Vec<Row> = matrix.apps.iter().map(|a| row_of(a, &registry)).collect();
            Ok((rows, problem))
        })
        .await?;
    let mut rows: Vec<Row> = rows.into_iter().filter(|r| row_visible(user, r)).collect();
    rows.sort_by(|a, b| (&a.client_id, &a.tenant).cmp(&(&b.client_id, &b.tenant)));
    let campaign = Campaign {
        id: format!("rc-{}", crate::users::random_hex(8)),
        name,
        from: from.to_string(),
        to: to.to_string(),
        created_by: user.username.clone(),
        created_at: now_rfc3339_secs(),
        tenants: user.tenant_filter().map(<[String]>::to_vec),
        stale_after_days,
        registry_problem,
        rows,
    };
    let dir = store_dir(state);
    let stored = campaign.clone();
    let written = with_store(move || write_campaign(&dir, &stored)).await;
    state
        .audited(
            user,
            "recert_create",
            &format!("recert/{}", campaign.id),
            written,
        )
        .await?;
    Ok(campaign)
}

// ---------------------------------------------------------------------------
// Recording a decision
// ---------------------------------------------------------------------------

/// A decision as submitted (form or JSON).
#[derive(Debug, Clone)]
struct DecisionInput {
    client_id: String,
    tenant: String,
    decision: String,
    scopes: Vec<String>,
    justification: String,
}

/// Splits a scope list as typed: one per line, or separated by spaces or commas.
fn split_scopes(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether `scope` stays within `approved`: listed, covered by an approved
/// resource scope, or a `?filter` narrowing of one of those.
///
/// Deliberately wider than the model's [`scope_approved`], which it builds
/// on: that one answers "did the registry approve what the app asks for?"
/// (the matrix, the report, `App::approves`), where a filtered scope counts
/// only when the registry lists it, because the app asking for a filter the
/// registry does not name is a registration gap to report. Here a reviewer
/// narrows access: adding a `?filter` to an approved scope only takes
/// access away, so it stays within what was approved. Folding this into
/// `scope_approved` would change the matrix and report findings.
fn within_approved(approved: &[Scope], scope: &Scope) -> bool {
    if scope_approved(approved, scope) {
        return true;
    }
    match scope.resource() {
        Some(r) if r.filter.is_some() => {
            let unfiltered = Scope::from_resource(ResourceScope {
                filter: None,
                ..r.clone()
            });
            scope_approved(approved, &unfiltered)
        }
        _ => false,
    }
}

/// Checks a narrowing against the row's approved scopes; returns the
/// scopes to keep (duplicates by meaning dropped), or why not.
fn check_narrowing(row: &Row, raw: &[String]) -> Result<Vec<String>, String> {
    if raw.is_empty() {
        return Err(
            "Narrow needs the scopes to keep: list them (one per line). To take every scope away, choose revoke."
                .into(),
        );
    }
    if raw.len() > MAX_SCOPES {
        return Err(format!("Too many scopes (at most {MAX_SCOPES})."));
    }
    let approved: Vec<Scope> = row.approved.iter().map(|s| Scope::parse(s)).collect();
    let mut seen = BTreeSet::new();
    let mut keep = Vec::new();
    let mut outside = Vec::new();
    for s in raw {
        if s.chars().count() > MAX_SCOPE_CHARS {
            return Err(format!(
                "A scope is too long (at most {MAX_SCOPE_CHARS} characters)."
            ));
        }
        let scope = Scope::parse(s);
        if let Some(reason) = scope.error() {
            return Err(format!("{s:?} is not a valid SMART scope: {reason}."));
        }
        if !seen.insert(scope.normalised()) {
            continue;
        }
        if !within_approved(&approved, &scope) {
            outside.push(s.clone());
        }
        keep.push(s.clone());
    }
    if !outside.is_empty() {
        return Err(format!(
            "Not approved for {} in {}: {}. A narrowing keeps or narrows what the registry approves ({}); widening access is a registry change, not a recertification.",
            row.client_id,
            row.tenant,
            outside.join(", "),
            if row.approved.is_empty() { "nothing".to_string() } else { row.approved.join(" ") },
        ));
    }
    Ok(keep)
}

/// Checks and records a decision for `user` and audits it. The permission
/// is checked before anything is looked up, so a 403 tells nothing; an
/// unknown campaign or row, or one of another tenant, is a 404.
async fn decide(
    state: &AppState,
    user: &CurrentUser,
    id: String,
    input: DecisionInput,
) -> Result<Decision, AppError> {
    if !user.can(Permission::Recertify) {
        return Err(AppError::Forbidden);
    }
    let dir = store_dir(state);
    let who = user.clone();
    let target = format!("recert/{id}/{}/{}", input.client_id, input.tenant);
    let result = with_store(move || {
        let Some(c) = read_campaign(&dir, &id)? else {
            return Ok(Err(AppError::NotFound));
        };
        let row = c
            .rows
            .iter()
            .find(|r| r.client_id == input.client_id && r.tenant == input.tenant);
        let row = match row {
            Some(r) if campaign_visible(&who, &c) && row_visible(&who, r) => r,
            _ => return Ok(Err(AppError::NotFound)),
        };
        let Some(verdict) = Verdict::parse(&input.decision) else {
            return Ok(Err(AppError::BadRequest(
                "Choose a decision: keep, narrow or revoke.".into(),
            )));
        };
        let justification = input.justification.trim();
        if justification.is_empty() {
            return Ok(Err(AppError::BadRequest(
                "A justification is required: say why access is kept, narrowed or revoked.".into(),
            )));
        }
        if justification.chars().count() > MAX_JUSTIFICATION_CHARS {
            return Ok(Err(AppError::BadRequest(format!(
                "The justification is too long (at most {MAX_JUSTIFICATION_CHARS} characters)."
            ))));
        }
        let scopes = match verdict {
            Verdict::Narrow => match check_narrowing(row, &input.scopes) {
                Ok(s) => s,
                Err(m) => return Ok(Err(AppError::BadRequest(m))),
            },
            Verdict::Keep | Verdict::Revoke => Vec::new(),
        };
        let d = Decision {
            client_id: row.client_id.clone(),
            tenant: row.tenant.clone(),
            decision: verdict,
            scopes,
            justification: justification.to_string(),
            decided_by: who.username.clone(),
            decided_at: now_rfc3339_secs(),
        };
        append_decision(&dir, &c.id, &d)?;
        Ok(Ok(d))
    })
    .await;
    let result = result.unwrap_or_else(|e| Err(e.into()));
    state
        .audited(user, "recert_decision", &target, result)
        .await
}

// ---------------------------------------------------------------------------
// Pages
// ---------------------------------------------------------------------------

fn campaign_href(id: &str) -> String {
    // Ids are checked to be `rc-<hex>` before any use; nothing to encode.
    format!("/recert/{id}")
}

fn tenants_text(tenants: &Option<Vec<String>>) -> String {
    match tenants {
        None => "every tenant".into(),
        Some(ts) if ts.is_empty() => "none".into(),
        Some(ts) => ts.join(", "),
    }
}

/// The first day of this quarter up to today: the creation form's default.
fn default_period() -> (Date, Date) {
    let today = OffsetDateTime::now_utc().date();
    let first_month = (u8::from(today.month()) - 1) / 3 * 3 + 1;
    let from = time::Month::try_from(first_month)
        .ok()
        .and_then(|m| Date::from_calendar_date(today.year(), m, 1).ok())
        .unwrap_or(today);
    (from, today)
}

struct NewForm<'a> {
    name: &'a str,
    from: &'a str,
    to: &'a str,
    error: Option<&'a str>,
}

fn list_body(user: &CurrentUser, seen: &[Seen], form: &NewForm<'_>) -> Markup {
    html! {
        p.muted {
            "A campaign freezes the evidence of every app in every tenant over its period; "
            "reviewers keep, narrow or revoke each one with a justification. "
            "When every row is decided, the decisions export as CSV and JSON, with a registry patch that applies them."
        }
        @if seen.is_empty() {
            p #no-campaigns { "No campaigns yet." }
        } @else {
            table #campaigns {
                thead { tr {
                    th { "Campaign" } th { "Period" } th { "Tenants" } th { "Created by" }
                    th { "Created (UTC)" } th { "Progress" } th { "State" }
                } }
                tbody {
                    @for s in seen {
                        @let sum = s.summary();
                        tr {
                            td { a href=(campaign_href(&sum.id)) { (sum.name) } br; code { (sum.id) } }
                            td.nowrap { (sum.from) " – " (sum.to) }
                            td { (tenants_text(&sum.tenants)) }
                            td { (sum.created_by) }
                            td.nowrap { (when_to(&sum.created_at, Precision::Minute)) }
                            td.nowrap {
                                progress value=(sum.decided) max=(sum.total.max(1)) { (sum.percent) " %" }
                                " " span.progress-text { (sum.decided) " / " (sum.total) }
                            }
                            td {
                                @if sum.complete { span.badge.st-resolved { "complete" } }
                                @else { span.badge.st-acknowledged { "in progress" } }
                            }
                        }
                    }
                }
            }
        }
        @if user.can(Permission::Recertify) {
            div.card {
                h2 { "New campaign" }
                @if let Some(e) = form.error { p.error #form-error { (e) } }
                p.muted {
                    "Covers "
                    @match user.tenant_filter() {
                        None => { "every tenant" }
                        Some(t) => { "your tenants (" (t.join(", ")) ")" }
                    }
                    ". The evidence is the scope matrix over the period, frozen when the campaign is created."
                }
                form #new-campaign method="post" action="/recert" {
                    (csrf_field(user))
                    label for="c-name" { "Name" }
                    input #c-name type="text" name="name" required maxlength=(MAX_NAME_CHARS) value=(form.name) placeholder="2026 Q4";
                    label for="c-from" { "From (first day)" }
                    input #c-from type="date" name="from" required value=(form.from);
                    label for="c-to" { "To (last day)" }
                    input #c-to type="date" name="to" required value=(form.to);
                    div { button #create-campaign type="submit" { "Create campaign" } }
                }
            }
        }
    }
}

/// `GET /recert`
async fn list_page(State(state): State<AppState>, user: CurrentUser) -> Result<Response, AppError> {
    user.require(Permission::ViewRecertification)?;
    let seen = load_all_seen(&state, &user).await?;
    let (from, to) = default_period();
    let (from, to) = (from.to_string(), to.to_string());
    let form = NewForm {
        name: "",
        from: &from,
        to: &to,
        error: None,
    };
    let body = list_body(&user, &seen, &form);
    Ok(Html(page("Recertification", &user, body).into_string()).into_response())
}

#[derive(Debug, Deserialize)]
struct CreateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

/// `POST /recert`: creates a campaign and shows it.
async fn create_form(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<CreateForm>,
) -> Result<Response, AppError> {
    match create_campaign(&state, &user, &form.name, &form.from, &form.to).await {
        Ok(c) => Ok(Redirect::to(&campaign_href(&c.id)).into_response()),
        Err(AppError::BadRequest(message)) => {
            let seen = load_all_seen(&state, &user).await?;
            let f = NewForm {
                name: &form.name,
                from: &form.from,
                to: &form.to,
                error: Some(&message),
            };
            let body = list_body(&user, &seen, &f);
            Ok((
                StatusCode::BAD_REQUEST,
                Html(page("Recertification", &user, body).into_string()),
            )
                .into_response())
        }
        Err(other) => Err(other),
    }
}

fn scope_list(id: &str, scopes: &[String]) -> Markup {
    html! {
        @if scopes.is_empty() { span.muted { "none" } }
        @else {
            span.scopes id=(id) { @for (i, s) in scopes.iter().enumerate() { @if i > 0 { " " } code { (s) } } }
        }
    }
}

fn verdict_badge(d: Option<&Decision>) -> Markup {
    html! {
        @match d {
            Some(d) => span class=(d.decision.badge()) { (d.decision.as_str()) },
            None => span.badge { "undecided" },
        }
    }
}

/// The scopes a narrowing form starts with: the least-privilege suggestion,
/// minus what the registry does not approve (a narrowing cannot add).
fn suggested_narrowing(row: &Row) -> Vec<String> {
    let approved: Vec<Scope> = row.approved.iter().map(|s| Scope::parse(s)).collect();
    row.suggestion
        .iter()
        .filter(|s| within_approved(&approved, &Scope::parse(s)))
        .cloned()
        .collect()
}

fn decision_fields(user: &CurrentUser, id: &str, i: usize, row: &Row) -> Markup {
    let radio = |v: Verdict, text: &str| {
        html! {
            label {
                input type="radio" name="decision" value=(v.as_str()) id={ "d" (i) "-" (v.as_str()) } required;
                " " (text)
            }
        }
    };
    html! {
        form.decision id={ "decide-" (i) } method="post" action={ (campaign_href(id)) "/decisions" } {
            (csrf_field(user))
            input type="hidden" name="client_id" value=(row.client_id);
            input type="hidden" name="tenant" value=(row.tenant);
            fieldset {
                legend { "Decision" }
                (radio(Verdict::Keep, "Keep: access stays as approved"))
                (radio(Verdict::Narrow, "Narrow: keep only the scopes below"))
                (radio(Verdict::Revoke, "Revoke: no access in this tenant"))
            }
            label for={ "s" (i) } { "Scopes to keep (narrow only; one per line; within the approved ones)" }
            textarea id={ "s" (i) } name="scopes" rows="4" {
                (suggested_narrowing(row).join("\n"))
            }
            label for={ "j" (i) } { "Justification (required)" }
            textarea id={ "j" (i) } name="justification" rows="3" required maxlength=(MAX_JUSTIFICATION_CHARS) {}
            div { button type="submit" { "Record decision" } }
        }
    }
}

fn row_card(user: &CurrentUser, id: &str, i: usize, r: &RowOut<'_>) -> Markup {
    let row = r.row;
    html! {
        section.card.recert-row id={ "row-" (i) } data-client=(row.client_id) data-tenant=(row.tenant) {
            h2 {
                (row.name.as_deref().unwrap_or("(unregistered app)")) " "
                code { (row.client_id) } " · tenant " strong { (row.tenant) } " "
                (verdict_badge(r.decision))
            }
            dl.facts {
                dt { "Owner" } dd { (row.owner.as_deref().unwrap_or("— (not in the registry)")) }
                dt { "Status" } dd { (row.status.as_deref().unwrap_or("unregistered")) }
                dt { "Calls" } dd { (row.calls) " allowed, " (row.denied_calls) " denied, " (row.patients) " distinct patients" }
                dt { "Last call (UTC)" } dd { (row.last_call.as_deref().map(|t| when_to(t, Precision::Minute)).unwrap_or_else(|| "none in the period".into())) }
                dt { "Scope creep" } dd { (row.creep_score) " / 100 (" (row.creep_band) ")"
                    @if row.stale { " · " span.badge.st-open { "stale" } }
                    @if row.too_new_to_judge { " · " span.badge { "too new to judge" } } }
                dt { "Approved" } dd { (scope_list(&format!("approved-{i}"), &row.approved)) }
                dt { "Granted" } dd { (scope_list(&format!("granted-{i}"), &row.granted)) }
                dt { "Used" } dd { (scope_list(&format!("used-{i}"), &row.used)) }
                dt { "Granted, never used" } dd { (scope_list(&format!("unused-{i}"), &row.unused)) }
                dt { "Not approved" } dd { (scope_list(&format!("unapproved-{i}"), &row.unapproved)) }
                dt { "Denied" } dd { (scope_list(&format!("denied-{i}"), &row.denied)) }
                dt { "Least privilege" } dd { (scope_list(&format!("suggestion-{i}"), &row.suggestion)) }
            }
            @if let Some(d) = r.decision {
                div.current-decision {
                    p {
                        strong { "Decided: " } (verdict_badge(Some(d)))
                        @if d.decision == Verdict::Narrow { " to " code { (d.scopes.join(" ")) } }
                        " by " (d.decided_by) " at " (when_to(&d.decided_at, Precision::Minute)) " UTC"
                    }
                    p.comment { (d.justification) }
                }
                @if r.history.len() > 1 {
                    details {
                        summary { "History (" (r.history.len()) " decisions)" }
                        table.history {
                            thead { tr { th { "When (UTC)" } th { "By" } th { "Decision" } th { "Scopes" } th { "Justification" } } }
                            tbody {
                                @for h in &r.history {
                                    tr {
                                        td.nowrap { (when_to(&h.decided_at, Precision::Minute)) }
                                        td { (h.decided_by) }
                                        td { (verdict_badge(Some(h))) }
                                        td { code { (h.scopes.join(" ")) } }
                                        td.comment { (h.justification) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if user.can(Permission::Recertify) {
                @if r.decision.is_some() {
                    details.redecide {
                        summary { "Change the decision" }
                        (decision_fields(user, id, i, row))
                    }
                } @else {
                    (decision_fields(user, id, i, row))
                }
            }
        }
    }
}

fn detail_body(user: &CurrentUser, seen: &Seen, error: Option<&str>) -> Markup {
    let c = &seen.campaign;
    let sum = seen.summary();
    let rows = seen.rows();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &rows {
        if let Some(d) = r.decision {
            *counts.entry(d.decision.as_str()).or_default() += 1;
        }
    }
    html! {
        p { a href="/recert" { "← All campaigns" } }
        dl.facts #campaign-facts {
            dt { "Campaign id" } dd { code { (c.id) } }
            dt { "Period" } dd { (c.from) " – " (c.to) }
            dt { "Tenants" } dd { (tenants_text(&c.tenants)) }
            dt { "Created" } dd { (when_to(&c.created_at, Precision::Minute)) " UTC by " (c.created_by) }
            dt { "Evidence" } dd { "The scope matrix over the period, frozen at creation; stale after " (c.stale_after_days) " days without activity." }
            @if let Some(p) = &c.registry_problem { dt { "Registry" } dd.error { (p) } }
        }
        div.card #progress-card {
            h2 { "Progress" }
            progress #recert-progress value=(sum.decided) max=(sum.total.max(1)) { (sum.percent) " %" }
            p #progress-text {
                (sum.decided) " of " (sum.total) " decided (" (sum.percent) " %)"
                @for (k, n) in &counts { " · " (n) " " (k) }
            }
            @if sum.complete {
                p #exports {
                    "Export: "
                    a #export-csv href={ (campaign_href(&c.id)) "/decisions.csv" } { "decisions (CSV)" } " · "
                    a #export-json href={ (campaign_href(&c.id)) "/decisions.json" } { "decisions (JSON)" } " · "
                    a #export-patch href={ (campaign_href(&c.id)) "/registry-patch" } { "registry patch (TOML)" }
                }
            } @else {
                p.muted #exports-pending { "The exports open when every row is decided." }
            }
        }
        @if let Some(e) = error { p.error #form-error { (e) } }
        @if rows.is_empty() {
            p #no-rows { "This campaign has no app in your tenants." }
        }
        @for (i, r) in rows.iter().enumerate() {
            (row_card(user, &c.id, i, r))
        }
    }
}

/// `GET /recert/{id}`
async fn detail_page(
    State(state): State<AppState>,
    user: CurrentUser,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, AppError> {
    user.require(Permission::ViewRecertification)?;
    let seen = load_seen(&state, &user, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let title = format!("Recertification: {}", seen.campaign.name);
    let body = detail_body(&user, &seen, None);
    Ok(Html(page(&title, &user, body).into_string()).into_response())
}

#[derive(Debug, Deserialize)]
struct DecisionFormData {
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    scopes: String,
    #[serde(default)]
    justification: String,
}

/// `POST /recert/{id}/decisions` (the CSRF field is checked by the middleware).
async fn decision_form(
    State(state): State<AppState>,
    user: CurrentUser,
    UrlPath(id): UrlPath<String>,
    Form(form): Form<DecisionFormData>,
) -> Result<Response, AppError> {
    let input = DecisionInput {
        client_id: form.client_id,
        tenant: form.tenant,
        decision: form.decision,
        scopes: split_scopes(&form.scopes),
        justification: form.justification,
    };
    match decide(&state, &user, id.clone(), input).await {
        Ok(_) => Ok(Redirect::to(&campaign_href(&id)).into_response()),
        Err(AppError::BadRequest(message)) => {
            let Some(seen) = load_seen(&state, &user, id).await? else {
                return Err(AppError::NotFound);
            };
            let title = format!("Recertification: {}", seen.campaign.name);
            let body = detail_body(&user, &seen, Some(&message));
            Ok((
                StatusCode::BAD_REQUEST,
                Html(page(&title, &user, body).into_string()),
            )
                .into_response())
        }
        Err(other) => Err(other),
    }
}

// ---------------------------------------------------------------------------
// Exports
// ---------------------------------------------------------------------------

/// The campaign for an export, audited; a 409 page when rows are undecided.
async fn for_export(
    state: &AppState,
    user: &CurrentUser,
    id: String,
    action: &str,
) -> Result<Result<Seen, Response>, AppError> {
    user.require(Permission::ViewRecertification)?;
    let seen = load_seen(state, user, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let target = format!("recert/{}", seen.campaign.id);
    if !seen.complete() {
        state
            .audit(&user.username, action, &target, Outcome::Failure, &user.ip)
            .await?;
        let (decided, total) = seen.progress();
        let body = html! {
            p #not-complete {
                "This campaign is not complete: " (decided) " of " (total)
                " rows are decided. Its exports list every decision, so they open once the last row is decided."
            }
            p { a href=(campaign_href(&seen.campaign.id)) { "Back to the campaign" } }
        };
        let page = page("Not complete yet", user, body).into_string();
        return Ok(Err((StatusCode::CONFLICT, Html(page)).into_response()));
    }
    state
        .audit(&user.username, action, &target, Outcome::Success, &user.ip)
        .await?;
    Ok(Ok(seen))
}

/// The CSV: one line per row with its current decision and evidence counts.
fn decisions_csv(seen: &Seen) -> String {
    let c = &seen.campaign;
    let period = format!("{}..{}", c.from, c.to);
    let header = [
        "campaign_id",
        "campaign",
        "period",
        "client_id",
        "tenant",
        "app_name",
        "owner",
        "decision",
        "scopes",
        "justification",
        "decided_by",
        "decided_at",
        "status",
        "approved_count",
        "granted_count",
        "used_count",
        "unused_count",
        "unapproved_count",
        "denied_count",
        "calls",
        "denied_calls",
        "patients",
        "last_call",
        "creep_score",
    ];
    let mut out = csv_line(header);
    for r in seen.rows() {
        let row = r.row;
        let d = r.decision;
        let fields: Vec<String> = vec![
            c.id.clone(),
            c.name.clone(),
            period.clone(),
            row.client_id.clone(),
            row.tenant.clone(),
            row.name.clone().unwrap_or_default(),
            row.owner.clone().unwrap_or_default(),
            d.map(|d| d.decision.as_str().to_string())
                .unwrap_or_default(),
            d.map(|d| d.scopes.join(" ")).unwrap_or_default(),
            d.map(|d| d.justification.clone()).unwrap_or_default(),
            d.map(|d| d.decided_by.clone()).unwrap_or_default(),
            d.map(|d| d.decided_at.clone()).unwrap_or_default(),
            row.status.clone().unwrap_or_else(|| "unregistered".into()),
            row.approved.len().to_string(),
            row.granted.len().to_string(),
            row.used.len().to_string(),
            row.unused.len().to_string(),
            row.unapproved.len().to_string(),
            row.denied.len().to_string(),
            row.calls.to_string(),
            row.denied_calls.to_string(),
            row.patients.to_string(),
            row.last_call.clone().unwrap_or_default(),
            row.creep_score.to_string(),
        ];
        out.push_str(&csv_line(fields));
    }
    out
}

/// `GET /recert/{id}/decisions.csv`
async fn export_csv(
    State(state): State<AppState>,
    user: CurrentUser,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, AppError> {
    let seen = match for_export(&state, &user, id, "recert_export_csv").await? {
        Ok(s) => s,
        Err(refused) => return Ok(refused),
    };
    let name = format!("{}-decisions.csv", seen.campaign.id);
    Ok(attachment(
        "text/csv; charset=utf-8",
        &name,
        decisions_csv(&seen),
    ))
}

#[derive(Serialize)]
struct JsonExport<'a> {
    campaign: Summary,
    exported_by: &'a str,
    exported_at: String,
    rows: Vec<RowOut<'a>>,
}

/// `GET /recert/{id}/decisions.json`
async fn export_json(
    State(state): State<AppState>,
    user: CurrentUser,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, AppError> {
    let seen = match for_export(&state, &user, id, "recert_export_json").await? {
        Ok(s) => s,
        Err(refused) => return Ok(refused),
    };
    let export = JsonExport {
        campaign: seen.summary(),
        exported_by: &user.username,
        exported_at: now_rfc3339_secs(),
        rows: seen.rows(),
    };
    let body = serde_json::to_string_pretty(&export)
        .map_err(|e| AppError::Internal(invalid_data(Path::new("recert export"), e)))?;
    let name = format!("{}-decisions.json", seen.campaign.id);
    Ok(attachment("application/json", &name, body))
}

/// `GET /recert/{id}/registry-patch`: the registry with the decisions applied.
async fn export_patch(
    State(state): State<AppState>,
    user: CurrentUser,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, AppError> {
    let seen = match for_export(&state, &user, id, "recert_export_registry_patch").await? {
        Ok(s) => s,
        Err(refused) => return Ok(refused),
    };
    let Some(path) = state.insights.settings().registry.clone() else {
        let body = html! {
            p #no-registry { "No app registry is configured, so there is nothing to patch. The decisions are in the CSV and JSON exports." }
        };
        let page = page("No registry", &user, body).into_string();
        return Ok((StatusCode::CONFLICT, Html(page)).into_response());
    };
    let read_path = path.clone();
    let text = tokio::task::spawn_blocking(move || fs::read_to_string(&read_path))
        .await
        .map_err(AppError::task)?
        .map_err(|e| AppError::Internal(DashboardError::io(&path, e)))?;
    // The campaign's tenants per app, over every row (not only the caller's):
    // an app's status changes only when all of them are revoked.
    let all_rows = seen.full.clone();
    let mut app_tenants: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in &all_rows.rows {
        app_tenants
            .entry(r.client_id.clone())
            .or_default()
            .insert(r.tenant.clone());
    }
    let rows = seen.rows();
    let decided: Vec<(&Row, &Decision)> = rows
        .iter()
        .filter_map(|r| r.decision.map(|d| (r.row, d)))
        .collect();
    let input = PatchInput {
        campaign: &seen.campaign,
        covers_every_tenant: all_rows.tenants.is_none(),
        app_tenants: &app_tenants,
        decisions: &decided,
        limit: user.tenant_filter(),
        today: OffsetDateTime::now_utc().date(),
        exported_by: &user.username,
        exported_at: &now_rfc3339_secs(),
    };
    let file = path.display().to_string();
    match registry_patch(&text, &file, &input) {
        Ok(patched) => {
            let name = format!("registry-{}.toml", seen.campaign.id);
            Ok(attachment(
                "application/toml; charset=utf-8",
                &name,
                patched,
            ))
        }
        Err(PatchError::Registry(message)) => {
            let body = html! {
                p #registry-problem { "The app registry cannot be patched as it is:" }
                pre.error { (message) }
                p { "Fix the registry; the decisions are in the CSV and JSON exports meanwhile." }
            };
            let page = page("Registry problem", &user, body).into_string();
            Ok((StatusCode::CONFLICT, Html(page)).into_response())
        }
        Err(PatchError::Bug(message)) => Err(AppError::Internal(DashboardError::Config(format!(
            "registry patch of {}: {message}",
            seen.campaign.id
        )))),
    }
}

// ---------------------------------------------------------------------------
// The registry patch
// ---------------------------------------------------------------------------

/// What [`registry_patch`] applies.
#[derive(Debug)]
pub struct PatchInput<'a> {
    pub campaign: &'a Campaign,
    /// Whether the campaign covers every tenant (its creator had no limit).
    pub covers_every_tenant: bool,
    /// Every tenant the campaign has a row for, per app (all rows, seen or not).
    pub app_tenants: &'a BTreeMap<String, BTreeSet<String>>,
    /// The current decision of every row being exported.
    pub decisions: &'a [(&'a Row, &'a Decision)],
    /// The exporter's tenants; `Some`: the parts of the registry about other
    /// tenants are left out of the output.
    pub limit: Option<&'a [String]>,
    /// The day a revocation takes effect (`status_since`).
    pub today: Date,
    pub exported_by: &'a str,
    pub exported_at: &'a str,
}

#[derive(Debug)]
pub enum PatchError {
    /// The registry itself does not read or validate.
    Registry(String),
    /// The patched text does not validate: a bug here.
    Bug(String),
}

/// One line of a TOML comment: control characters (a newline would end the
/// comment and let text become TOML) turned into spaces.
fn comment_text(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn toml_date(d: Date) -> toml_edit::Datetime {
    toml_edit::Datetime {
        date: Some(toml_edit::Date {
            year: d.year() as u16,
            month: u8::from(d.month()),
            day: d.day(),
        }),
        time: None,
        offset: None,
    }
}

/// Adds a comment line to a decor's prefix, after what is there already.
fn add_comment(decor: &mut toml_edit::Decor, default_prefix: &str, line: &str) {
    let before = decor
        .prefix()
        .and_then(|p| p.as_str())
        .unwrap_or(default_prefix)
        .to_string();
    decor.set_prefix(format!("{before}# {}\n", comment_text(line)));
}

fn app_table<'d>(
    doc: &'d mut toml_edit::DocumentMut,
    id: &str,
) -> Option<&'d mut toml_edit::Table> {
    doc.get_mut("app")?
        .as_array_of_tables_mut()?
        .iter_mut()
        .find(|t| t.get("client_id").and_then(|v| v.as_str()) == Some(id))
}

/// Sets `[app.tenant.<tenant>] approved_scopes` of one app, with a comment.
fn set_override(
    app: &mut toml_edit::Table,
    tenant: &str,
    scopes: &[String],
    comment: &str,
) -> Result<(), String> {
    use toml_edit::{Item, Table};
    let item = app.entry("tenant").or_insert_with(|| {
        let mut t = Table::new();
        t.set_implicit(true);
        Item::Table(t)
    });
    if !item.is_table() {
        let taken = std::mem::take(item);
        *item = Item::Table(
            taken
                .into_table()
                .map_err(|_| "`tenant` of the app is not a table".to_string())?,
        );
    }
    let tenants = item.as_table_mut().ok_or("`tenant` is not a table")?;
    let list: toml_edit::Array = scopes.iter().map(String::as_str).collect();
    match tenants.get_mut(tenant) {
        Some(existing) => {
            if !existing.is_table() {
                let taken = std::mem::take(existing);
                *existing = Item::Table(
                    taken
                        .into_table()
                        .map_err(|_| format!("`tenant.{tenant}` of the app is not a table"))?,
                );
            }
            let t = existing.as_table_mut().ok_or("not a table")?;
            t["approved_scopes"] = toml_edit::value(list);
            add_comment(t.decor_mut(), "\n", comment);
        }
        None => {
            let mut t = Table::new();
            t["approved_scopes"] = toml_edit::value(list);
            t.decor_mut()
                .set_prefix(format!("\n# {}\n", comment_text(comment)));
            tenants.insert(tenant, Item::Table(t));
        }
    }
    Ok(())
}

/// Leaves out of `doc` every app not deployed in `limit`'s tenants, and the
/// other tenants of the rest (their `tenants` entries and overrides).
fn redact(doc: &mut toml_edit::DocumentMut, registry: &Registry, limit: &[String]) {
    let Some(apps) = doc.get_mut("app").and_then(|i| i.as_array_of_tables_mut()) else {
        return;
    };
    apps.retain(|t| {
        let id = t.get("client_id").and_then(|v| v.as_str()).unwrap_or("");
        registry
            .app(id)
            .is_some_and(|a| a.tenants.is_empty() || a.tenants.iter().any(|x| limit.contains(x)))
    });
    for t in apps.iter_mut() {
        if let Some(list) = t.get_mut("tenants").and_then(|i| i.as_array_mut()) {
            list.retain(|v| v.as_str().is_some_and(|s| limit.iter().any(|x| x == s)));
            list.fmt();
        }
        if let Some(overrides) = t.get_mut("tenant").and_then(|i| i.as_table_like_mut()) {
            let gone: Vec<String> = overrides
                .iter()
                .map(|(k, _)| k.to_string())
                .filter(|k| !limit.contains(k))
                .collect();
            for k in gone {
                overrides.remove(&k);
            }
        }
    }
}

/// The registry `text` with the decisions applied, preserving everything
/// else (comments included), under a header comment listing every change:
///
/// - narrow: `[app.tenant.<tenant>] approved_scopes = [the kept scopes]`;
/// - revoke: the same with `[]` (the registry's status is per app), and
///   when the app is revoked in every tenant it is deployed in (its
///   `tenants`, or when it lists none, every tenant the campaign found it
///   in, provided the campaign covers every tenant): `status = "revoked"`,
///   `status_since` = today, `status_reason` = the campaign's name;
/// - keep: no scope change;
/// - an app decided in every such tenant and not revoked everywhere gets
///   `last_certified` = the campaign's last day.
///
/// A tenant the registry does not deploy the app in, or an app it does not
/// list, gets no change (noted in the header). With `limit`, the output
/// holds only the exporter's tenants and says it is not the whole file.
pub fn registry_patch(
    text: &str,
    file: &str,
    input: &PatchInput<'_>,
) -> Result<String, PatchError> {
    let registry =
        Registry::from_toml_str(text, file).map_err(|e| PatchError::Registry(e.to_string()))?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| PatchError::Registry(e.to_string()))?;
    let c = input.campaign;
    let mut changes: Vec<String> = Vec::new();
    let mut unchanged: Vec<String> = Vec::new();

    let mut by_app: BTreeMap<&str, Vec<(&Row, &Decision)>> = BTreeMap::new();
    for (row, d) in input.decisions {
        by_app
            .entry(row.client_id.as_str())
            .or_default()
            .push((*row, *d));
    }
    for (app_id, mut decisions) in by_app {
        decisions.sort_by(|a, b| a.0.tenant.cmp(&b.0.tenant));
        let Some(app) = registry.app(app_id) else {
            let what: Vec<String> = decisions
                .iter()
                .map(|(r, d)| format!("{} in {}", d.decision.as_str(), r.tenant))
                .collect();
            unchanged.push(format!(
                "{app_id}: not in the registry, nothing to change ({}); register it or block it at the authorization server",
                what.join(", ")
            ));
            continue;
        };
        let Some(table) = app_table(&mut doc, app_id) else {
            return Err(PatchError::Bug(format!("no [[app]] table for {app_id}")));
        };
        let mut verdicts: BTreeMap<&str, Verdict> = BTreeMap::new();
        for (row, d) in &decisions {
            let t = row.tenant.as_str();
            let by = format!(
                "{} on {}",
                d.decided_by,
                d.decided_at.get(..10).unwrap_or("")
            );
            if !app.deployed_in(t) {
                unchanged.push(format!(
                    "{app_id}, tenant {t}: {} decided, but the registry does not deploy the app there; nothing to change",
                    d.decision.as_str()
                ));
                verdicts.insert(t, d.decision);
                continue;
            }
            // The registry may have changed since the campaign froze its
            // evidence: a narrowing is applied only if it still narrows.
            let widens: Vec<&str> = d
                .scopes
                .iter()
                .filter(|s| !within_approved(app.approved_scopes_for(t), &Scope::parse(s)))
                .map(String::as_str)
                .collect();
            match d.decision {
                Verdict::Narrow if !widens.is_empty() => unchanged.push(format!(
                    "{app_id}, tenant {t}: narrow not applied: the registry no longer approves {} (it changed after the campaign began); decide again",
                    widens.join(", ")
                )),
                Verdict::Narrow => {
                    set_override(
                        table,
                        t,
                        &d.scopes,
                        &format!(
                            "narrowed by recertification {} ({}), decided by {by}",
                            c.id, c.name
                        ),
                    )
                    .map_err(PatchError::Bug)?;
                    changes.push(format!(
                        "{app_id}, tenant {t}: approved_scopes narrowed to [{}] (decided by {by})",
                        d.scopes.join(", ")
                    ));
                }
                Verdict::Revoke => {
                    set_override(
                        table,
                        t,
                        &[],
                        &format!(
                            "revoked in {t} by recertification {} ({}), decided by {by}: the registry's status is per app, so this tenant approves no scope",
                            c.id, c.name
                        ),
                    )
                    .map_err(PatchError::Bug)?;
                    changes.push(format!(
                        "{app_id}, tenant {t}: revoked: approved_scopes = [] for this tenant (decided by {by})"
                    ));
                }
                Verdict::Keep => changes.push(format!(
                    "{app_id}, tenant {t}: kept, scopes unchanged (decided by {by})"
                )),
            }
            verdicts.insert(t, d.decision);
        }
        // The tenants the app is in: as the registry lists them, or, when it
        // lists none (every tenant), as the campaign found them, which is all
        // of them only if the campaign covers every tenant.
        let tenants: Option<BTreeSet<&str>> = if !app.tenants.is_empty() {
            Some(app.tenants.iter().map(String::as_str).collect())
        } else if input.covers_every_tenant {
            input
                .app_tenants
                .get(app_id)
                .map(|ts| ts.iter().map(String::as_str).collect())
        } else {
            None
        };
        let tenants = tenants.filter(|ts| !ts.is_empty());
        let all_decided = tenants
            .as_ref()
            .is_some_and(|ts| ts.iter().all(|t| verdicts.contains_key(t)));
        let all_revoked = all_decided
            && tenants
                .as_ref()
                .is_some_and(|ts| ts.iter().all(|t| verdicts.get(t) == Some(&Verdict::Revoke)));
        if all_revoked {
            if app.status.as_str() == "revoked" {
                unchanged.push(format!(
                    "{app_id}: already revoked ({}); status unchanged",
                    app.status
                ));
            } else {
                table["status"] = toml_edit::value("revoked");
                if let Some(mut key) = table.key_mut("status") {
                    add_comment(
                        key.leaf_decor_mut(),
                        "",
                        &format!("revoked in every tenant by recertification {}", c.id),
                    );
                }
                table["status_since"] = toml_edit::value(toml_date(input.today));
                table["status_reason"] = toml_edit::value(c.name.as_str());
                changes.push(format!(
                    "{app_id}: status = \"revoked\", status_since = {}, status_reason = the campaign's name (revoked in every tenant it is deployed in)",
                    input.today
                ));
            }
        } else if all_decided {
            let day = Date::parse(
                &c.to,
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .map_err(|e| PatchError::Bug(format!("campaign end {:?}: {e}", c.to)))?;
            table["last_certified"] = toml_edit::value(toml_date(day));
            changes.push(format!("{app_id}: last_certified = {day}"));
        } else {
            unchanged.push(format!(
                "{app_id}: last_certified and status unchanged: not every tenant of the app is decided in this export"
            ));
        }
    }

    if let Some(limit) = input.limit {
        redact(&mut doc, &registry, limit);
    }

    let mut head = Vec::new();
    head.push(
        "# ---------------------------------------------------------------------------".to_string(),
    );
    head.push(format!(
        "# Registry patch from scopewatch recertification campaign {:?} ({})",
        comment_text(&c.name),
        c.id
    ));
    head.push(format!(
        "# Period {} .. {}; exported {} by {}.",
        c.from,
        c.to,
        input.exported_at,
        comment_text(input.exported_by)
    ));
    if let Some(limit) = input.limit {
        head.push(format!(
            "# LIMITED to tenants {}: apps and tenants outside them are left out, so this",
            comment_text(&limit.join(", "))
        ));
        head.push(
            "# is NOT the whole registry. Carry the changes below into the registry by hand."
                .into(),
        );
    } else {
        head.push("# Review the changes, then replace the registry file with this one.".into());
    }
    head.push(format!("# Changes ({}):", changes.len()));
    if changes.is_empty() {
        head.push("#   none".into());
    }
    for line in &changes {
        head.push(format!("#   - {}", comment_text(line)));
    }
    if !unchanged.is_empty() {
        head.push("# Not applied:".into());
        for line in &unchanged {
            head.push(format!("#   - {}", comment_text(line)));
        }
    }
    head.push(
        "# ---------------------------------------------------------------------------".into(),
    );
    let mut out = head.join("\n");
    out.push_str("\n\n");
    out.push_str(&doc.to_string());
    Registry::from_toml_str(&out, "registry patch")
        .map_err(|e| PatchError::Bug(format!("the patched registry does not validate: {e}")))?;
    Ok(out)
}

// ---------------------------------------------------------------------------
// JSON API
// ---------------------------------------------------------------------------

fn api_refused(e: AppError) -> Response {
    e.into_api("no such campaign or row")
}

/// `GET /api/recert`: the campaigns the caller may see, newest first.
async fn api_list(State(state): State<AppState>, user: CurrentUser) -> Response {
    if !user.can(Permission::ViewRecertification) {
        return api_refused(AppError::Forbidden);
    }
    match load_all_seen(&state, &user).await {
        Ok(seen) => Json(seen.iter().map(Seen::summary).collect::<Vec<_>>()).into_response(),
        Err(e) => api_refused(e.into()),
    }
}

#[derive(Debug, Deserialize)]
struct CreateBody {
    name: String,
    from: String,
    to: String,
}

/// `POST /api/recert` with `{"name", "from", "to"}`; answers the new
/// campaign's summary (201).
async fn api_create(State(state): State<AppState>, user: CurrentUser, body: Bytes) -> Response {
    if !user.can(Permission::Recertify) {
        return api_refused(AppError::Forbidden);
    }
    let body: CreateBody = match json_body(&body, r#"{"name", "from", "to"}"#) {
        Ok(b) => b,
        Err(e) => return api_refused(e),
    };
    match create_campaign(&state, &user, &body.name, &body.from, &body.to).await {
        Ok(c) => {
            let seen = Seen::new(&user, Arc::new(c), Vec::new());
            (StatusCode::CREATED, Json(seen.summary())).into_response()
        }
        Err(r) => api_refused(r),
    }
}

#[derive(Serialize)]
struct CampaignOut<'a> {
    campaign: Summary,
    evidence: EvidenceNote<'a>,
    rows: Vec<RowOut<'a>>,
}

#[derive(Serialize)]
struct EvidenceNote<'a> {
    stale_after_days: u32,
    registry_problem: Option<&'a str>,
}

/// `GET /api/recert/{id}`: the campaign, its rows the caller may see, with
/// their decisions and history.
async fn api_get(
    State(state): State<AppState>,
    user: CurrentUser,
    UrlPath(id): UrlPath<String>,
) -> Response {
    if !user.can(Permission::ViewRecertification) {
        return api_refused(AppError::Forbidden);
    }
    match load_seen(&state, &user, id).await {
        Ok(Some(seen)) => Json(CampaignOut {
            campaign: seen.summary(),
            evidence: EvidenceNote {
                stale_after_days: seen.campaign.stale_after_days,
                registry_problem: seen.campaign.registry_problem.as_deref(),
            },
            rows: seen.rows(),
        })
        .into_response(),
        Ok(None) => api_refused(AppError::NotFound),
        Err(e) => api_refused(e.into()),
    }
}

/// Scopes in a JSON decision: a list, or one space-separated string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ScopesIn {
    List(Vec<String>),
    Text(String),
}

#[derive(Debug, Deserialize)]
struct DecisionBody {
    client_id: String,
    tenant: String,
    decision: String,
    #[serde(default)]
    scopes: Option<ScopesIn>,
    #[serde(default)]
    justification: String,
}

/// `POST /api/recert/{id}/decisions`; answers the recorded decision.
async fn api_decide(
    State(state): State<AppState>,
    user: CurrentUser,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Response {
    if !user.can(Permission::Recertify) {
        return api_refused(AppError::Forbidden);
    }
    let body: DecisionBody = match json_body(
        &body,
        r#"{"client_id", "tenant", "decision", "scopes", "justification"}"#,
    ) {
        Ok(b) => b,
        Err(e) => return api_refused(e),
    };
    let scopes = match body.scopes {
        None => Vec::new(),
        Some(ScopesIn::Text(t)) => split_scopes(&t),
        Some(ScopesIn::List(l)) => l.iter().flat_map(|s| split_scopes(s)).collect(),
    };
    let input = DecisionInput {
        client_id: body.client_id,
        tenant: body.tenant,
        decision: body.decision,
        scopes,
        justification: body.justification,
    };
    match decide(&state, &user, id, input).await {
        Ok(d) => Json(d).into_response(),
        Err(r) => api_refused(r),
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::io::Write;

    use super::*;

    const SAMPLE: &str = include_str!("../../sample-logs/registry.toml");

    fn row(client_id: &str, tenant: &str, approved: &[&str]) -> Row {
        Row {
            client_id: client_id.into(),
            tenant: tenant.into(),
            name: None,
            owner: None,
            registered: true,
            status: Some("active".into()),
            approved: approved.iter().map(|s| s.to_string()).collect(),
            granted: vec![],
            used: vec![],
            unused: vec![],
            unapproved: vec![],
            denied: vec![],
            calls: 0,
            denied_calls: 0,
            patients: 0,
            last_call: None,
            stale: false,
            too_new_to_judge: false,
            creep_score: 0,
            creep_band: "low".into(),
            suggestion: vec![],
        }
    }

    fn decision(r: &Row, v: Verdict, scopes: &[&str]) -> Decision {
        Decision {
            client_id: r.client_id.clone(),
            tenant: r.tenant.clone(),
            decision: v,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            justification: "because\nreasons".into(),
            decided_by: "carol".into(),
            decided_at: "2026-12-01T10:00:00Z".into(),
        }
    }

    fn campaign(rows: Vec<Row>) -> Campaign {
        Campaign {
            id: "rc-0123456789abcdef".into(),
            name: "Q4\nversion = 2".into(),
            from: "2026-10-01".into(),
            to: "2026-12-31".into(),
            created_by: "carol".into(),
            created_at: "2026-12-01T09:00:00Z".into(),
            tenants: None,
            stale_after_days: 90,
            registry_problem: None,
            rows,
        }
    }

    #[test]
    fn a_campaign_is_parsed_again_only_when_its_file_changed() {
        let dir = tempfile::tempdir().unwrap();
        let c = campaign(vec![row("cardio-insight", "north", &["launch"])]);
        write_campaign(dir.path(), &c).unwrap();
        let first = read_campaign(dir.path(), &c.id).unwrap().unwrap();
        let again = read_campaign(dir.path(), &c.id).unwrap().unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "an unchanged file was parsed again"
        );
        assert_eq!(list_campaigns(dir.path()).unwrap().len(), 1);

        // Rewritten (by this process or another): read again.
        let mut changed = c.clone();
        changed.rows.push(row("sleep-view", "south", &[]));
        write_campaign(dir.path(), &changed).unwrap();
        let after = read_campaign(dir.path(), &c.id).unwrap().unwrap();
        assert_eq!(after.rows.len(), 2);

        std::fs::remove_file(campaign_path(dir.path(), &c.id)).unwrap();
        assert!(read_campaign(dir.path(), &c.id).unwrap().is_none());
        assert!(list_campaigns(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn seen_counts_the_decided_rows_of_the_user_and_keeps_the_whole_campaign() {
        let rows = vec![
            row("cardio-insight", "north", &["launch"]),
            row("cardio-insight", "south", &["launch"]),
            row("sleep-view", "north", &["launch"]),
        ];
        let ds = vec![
            decision(&rows[0], Verdict::Keep, &[]),
            decision(&rows[1], Verdict::Revoke, &[]),
            decision(&rows[0], Verdict::Revoke, &[]),
        ];
        let north = crate::users::User {
            username: "nina".into(),
            password_hash: String::new(),
            roles: vec![crate::users::Role::Compliance],
            tenants: vec!["north".into()],
            owned_apps: vec![],
            disabled: false,
            must_change_password: false,
            api_tokens: vec![],
            created: String::new(),
        };
        let user = CurrentUser::from_user(
            &north,
            crate::auth::AuthMethod::Session,
            None,
            String::new(),
        );
        let seen = Seen::new(&user, Arc::new(campaign(rows)), ds);
        assert_eq!(seen.progress(), (1, 2));
        assert!(!seen.complete());
        assert_eq!(seen.summary().percent, 50);
        assert_eq!(seen.decisions.len(), 2);
        assert_eq!(seen.rows()[0].history.len(), 2);
        assert_eq!(seen.full.rows.len(), 3);
    }

    #[test]
    fn patch_applies_narrow_revoke_and_keep() {
        let cardio: Vec<Row> = ["north", "south", "east"]
            .iter()
            .map(|t| {
                row(
                    "cardio-insight",
                    t,
                    &["launch", "openid", "fhirUser", "patient/Patient.r"],
                )
            })
            .collect();
        let sleep = row("sleep-view", "south", &["launch"]);
        let ghost = row("ghost-app", "north", &[]);
        let mut rows = cardio.clone();
        rows.extend([sleep.clone(), ghost.clone()]);
        let c = campaign(rows.clone());
        let ds = [
            decision(
                &cardio[0],
                Verdict::Narrow,
                &["launch", "patient/Patient.r"],
            ),
            decision(&cardio[1], Verdict::Revoke, &[]),
            decision(&cardio[2], Verdict::Keep, &[]),
            decision(&sleep, Verdict::Revoke, &[]),
            decision(&ghost, Verdict::Revoke, &[]),
        ];
        let pairs: Vec<(&Row, &Decision)> = [&cardio[0], &cardio[1], &cardio[2], &sleep, &ghost]
            .into_iter()
            .zip(ds.iter())
            .collect();
        let mut app_tenants = BTreeMap::new();
        for r in &rows {
            app_tenants
                .entry(r.client_id.clone())
                .or_insert_with(BTreeSet::new)
                .insert(r.tenant.clone());
        }
        let today = Date::from_calendar_date(2026, time::Month::December, 6).unwrap();
        let input = PatchInput {
            campaign: &c,
            covers_every_tenant: true,
            app_tenants: &app_tenants,
            decisions: &pairs,
            limit: None,
            today,
            exported_by: "carol",
            exported_at: "2026-12-06T00:00:00Z",
        };
        let out = registry_patch(SAMPLE, "registry.toml", &input).unwrap();
        let reg = Registry::from_toml_str(&out, "patched").unwrap();
        let cardio_app = reg.app("cardio-insight").unwrap();
        let north: Vec<&str> = cardio_app
            .approved_scopes_for("north")
            .iter()
            .map(Scope::raw)
            .collect();
        assert_eq!(north, ["launch", "patient/Patient.r"]);
        assert!(cardio_app.approved_scopes_for("south").is_empty());
        assert_eq!(cardio_app.approved_scopes_for("east").len(), 7);
        assert!(cardio_app.status.is_active());
        assert_eq!(
            cardio_app.last_certified.map(|d| d.to_string()).as_deref(),
            Some("2026-12-31")
        );
        let sleep_app = reg.app("sleep-view").unwrap();
        assert_eq!(sleep_app.status.as_str(), "revoked");
        assert_eq!(sleep_app.status.since(), Some(today));
        // The name's newline did not escape the comment or the string.
        assert_eq!(sleep_app.status_reason.as_deref(), Some("Q4\nversion = 2"));
        assert!(reg.app("ghost-app").is_none());
        assert!(out.contains("ghost-app: not in the registry"));
        // The rest of the file is kept, comments included.
        assert!(out.contains("# App registry of a generated ecosystem"));
        assert_eq!(
            reg.apps.len(),
            Registry::from_toml_str(SAMPLE, "s").unwrap().apps.len()
        );
        assert_eq!(
            reg.app("vax-sync").unwrap().status_reason.as_deref(),
            Some("vendor contract ended")
        );
    }

    #[test]
    fn a_limited_patch_leaves_other_tenants_out() {
        let r = row("cardio-insight", "north", &["launch"]);
        let mut rows = vec![r.clone()];
        rows.push(row("cardio-insight", "south", &["launch"]));
        let mut c = campaign(rows);
        c.tenants = None;
        let d = decision(&r, Verdict::Revoke, &[]);
        let pairs = [(&r, &d)];
        let app_tenants = BTreeMap::new();
        let limit = vec!["north".to_string()];
        let input = PatchInput {
            campaign: &c,
            covers_every_tenant: true,
            app_tenants: &app_tenants,
            decisions: &pairs,
            limit: Some(&limit),
            today: Date::from_calendar_date(2026, time::Month::December, 6).unwrap(),
            exported_by: "nora",
            exported_at: "2026-12-06T00:00:00Z",
        };
        let out = registry_patch(SAMPLE, "registry.toml", &input).unwrap();
        let reg = Registry::from_toml_str(&out, "patched").unwrap();
        // sleep-view and peds-companion live in south only.
        assert!(reg.app("sleep-view").is_none() && reg.app("peds-companion").is_none());
        let cardio = reg.app("cardio-insight").unwrap();
        assert_eq!(cardio.tenants, ["north"]);
        assert!(cardio.approved_scopes_for("north").is_empty());
        assert!(cardio.status.is_active(), "south is not decided here");
        assert!(!out.contains("south"), "{out}");
    }

    #[test]
    fn a_narrowing_the_registry_no_longer_approves_is_not_applied() {
        // Decided against wider approvals than the registry holds at export.
        let r = row("cardio-insight", "north", &["launch", "patient/Device.rs"]);
        let c = campaign(vec![r.clone()]);
        let d = decision(&r, Verdict::Narrow, &["patient/Device.rs"]);
        let pairs = [(&r, &d)];
        let app_tenants = BTreeMap::new();
        let input = PatchInput {
            campaign: &c,
            covers_every_tenant: true,
            app_tenants: &app_tenants,
            decisions: &pairs,
            limit: None,
            today: Date::from_calendar_date(2026, time::Month::December, 6).unwrap(),
            exported_by: "ada",
            exported_at: "2026-12-06T00:00:00Z",
        };
        let out = registry_patch(SAMPLE, "registry.toml", &input).unwrap();
        let reg = Registry::from_toml_str(&out, "patched").unwrap();
        let cardio = reg.app("cardio-insight").unwrap();
        assert!(
            !cardio
                .approved_scopes_for("north")
                .iter()
                .any(|s| s.raw() == "patient/Device.rs"),
            "the patch must not widen what the registry approves"
        );
        assert!(out.contains("narrow not applied"), "{out}");
    }

    #[test]
    fn narrowing_stays_within_the_approved_scopes() {
        let r = row(
            "a",
            "north",
            &["launch", "patient/Observation.rs", "openid"],
        );
        let ok = check_narrowing(
            &r,
            &split_scopes("launch patient/Observation.r,\npatient/Observation.rs?category=laboratory patient/Observation.read"),
        )
        .unwrap();
        // `.r`, `.rs?category=...` and `.read` (= `.rs`) are three scopes.
        assert_eq!(
            ok,
            [
                "launch",
                "patient/Observation.r",
                "patient/Observation.rs?category=laboratory",
                "patient/Observation.read"
            ]
        );
        let dup = check_narrowing(
            &r,
            &split_scopes("patient/Observation.rs patient/Observation.read"),
        )
        .unwrap();
        assert_eq!(dup, ["patient/Observation.rs"]);
        let wider = check_narrowing(&r, &split_scopes("launch patient/Patient.r")).unwrap_err();
        assert!(wider.contains("patient/Patient.r"), "{wider}");
        let bad = check_narrowing(&r, &split_scopes("patient/Observation.xyz")).unwrap_err();
        assert!(bad.contains("not a valid SMART scope"), "{bad}");
        assert!(check_narrowing(&r, &[]).is_err());
    }

    #[test]
    fn new_campaigns_need_a_name_and_an_ordered_period() {
        assert!(check_new("Q4", "2026-10-01", "2026-12-31").is_ok());
        assert!(check_new("Q4", "2026-10-01", "2026-10-01").is_ok());
        assert!(check_new(" ", "2026-10-01", "2026-12-31").is_err());
        assert!(check_new("Q4", "2026-12-31", "2026-10-01")
            .unwrap_err()
            .contains("inverted"));
        assert!(check_new("Q4", "2026-13-01", "2026-12-31").is_err());
        assert!(check_new("a\nb", "2026-10-01", "2026-12-31").is_err());
    }

    #[test]
    fn torn_lines_are_ignored_and_cut_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let id = "rc-0123456789abcdef";
        let r = row("a", "north", &[]);
        let d = decision(&r, Verdict::Keep, &[]);
        append_decision(dir.path(), id, &d).unwrap();
        let path = decisions_path(dir.path(), id);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"client_id\":\"a\",\"ten").unwrap();
        drop(f);
        assert_eq!(read_decisions(dir.path(), id).unwrap().len(), 1);
        let d2 = decision(&r, Verdict::Revoke, &[]);
        append_decision(dir.path(), id, &d2).unwrap();
        let all = read_decisions(dir.path(), id).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].decision, Verdict::Revoke);
    }

    #[test]
    fn ids_are_checked_before_paths_are_built() {
        assert!(valid_id("rc-0123456789abcdef"));
        assert!(!valid_id("rc-../../etc/passwd"));
        assert!(!valid_id("rc-0123456789ABCDEF"));
        assert!(!valid_id("0123456789abcdef"));
    }
}
