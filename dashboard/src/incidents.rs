//! Incidents: a group of alerts that people work together, with a title, a
//! severity (the highest of its alerts'), an owner, a status (open,
//! investigating, contained, resolved, closed), notes and a history; and
//! the evidence bundle, a tar of the incident and every evidence event of
//! its alerts as JSON and CSV, with a SHA-256 manifest.
//!
//! Storage: `<data>/dashboard/incidents/incidents.jsonl`, an append-only log
//! of changes (created, alert added, owner set, status changed, note
//! added), one JSON object per line, fsynced per append ([`crate::jsonl`]:
//! a torn last line, from a crash mid-append, is ignored on read and cut
//! off before the next append). The folded state is kept in memory and the
//! log read again only when its file changed (length, mtime, inode), so
//! another process's appends are still seen. Readers and writers in this
//! process take [`BOOKS`]; the file is also `flock`ed while appending.
//!
//! Tenant limits: an incident's tenants are those of its alerts, recorded
//! when an alert joins. A user limited to tenants sees an incident only if
//! every one of its alerts is one they may see (the rule of
//! [`crate::alerts::visible`]); otherwise every route answers 404, as for
//! an unknown id. Adding an alert the user may not see is a 404 too.
//!
//! Routes (ViewIncidents to read, ManageIncidents to change; forms carry
//! the CSRF field):
//! - `GET /incidents` (`?status=`), `POST /incidents` (`title`, `alert`
//!   repeated and/or `alerts` as ids separated by spaces or commas)
//! - `GET /incidents/{id}`, `GET /incidents/{id}/bundle.tar`
//! - `POST /incidents/{id}/owner` (`owner`, empty = nobody),
//!   `/status` (`status`), `/notes` (`text`), `/alerts` (`alert`)
//! - `GET /api/incidents` (`?status=`), `GET /api/incidents/{id}`,
//!   `POST /api/incidents` (`{"title", "alerts": [...]}`), and
//!   `POST /api/incidents/{id}/status|notes|owner|alerts` with
//!   `{"status"}`, `{"text"}`, `{"owner"}` (null = nobody), `{"alert"}`

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Mutex, PoisonError};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use maud::{html, Markup};
use scopewatch_analytics::evidence::EvidenceEvent;
use scopewatch_analytics::report::csv_line;
use scopewatch_rules::alert::{Alert, Severity};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::alerts::{alert_href, group_list, severity_badge, status_badge};
use crate::audit::now_rfc3339_secs;
use crate::auth::{AuthMethod, CurrentUser, Permission};
use crate::http::{attachment, json_body};
use crate::layout::{csrf_field, page, seg, when, when_to, Precision};
use crate::{AppError, AppState, DashboardError};

/// Longest title accepted.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest note accepted.
pub const MAX_NOTE_CHARS: usize = 4000;
/// Most alerts one request may put into an incident.
const MAX_ALERTS_PER_REQUEST: usize = 100;
/// Longest alert id or username taken from a form.
const MAX_ID_CHARS: usize = 200;

/// Where an incident is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    Open,
    Investigating,
    Contained,
    Resolved,
    Closed,
}

impl IncidentStatus {
    pub const ALL: &'static [IncidentStatus] = &[
        IncidentStatus::Open,
        IncidentStatus::Investigating,
        IncidentStatus::Contained,
        IncidentStatus::Resolved,
        IncidentStatus::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Open => "open",
            IncidentStatus::Investigating => "investigating",
            IncidentStatus::Contained => "contained",
            IncidentStatus::Resolved => "resolved",
            IncidentStatus::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<IncidentStatus> {
        Self::ALL.iter().copied().find(|v| v.as_str() == s)
    }

    /// The badge colour, reusing the alert statuses' styles.
    fn badge_class(self) -> &'static str {
        match self {
            IncidentStatus::Open => "badge st-open",
            IncidentStatus::Investigating | IncidentStatus::Contained => "badge st-acknowledged",
            IncidentStatus::Resolved => "badge st-resolved",
            IncidentStatus::Closed => "badge st-false_positive",
        }
    }
}

/// An alert as an incident records it when the alert joins: enough to
/// decide who may see the incident and how severe it is, even if the alert
/// store is later compacted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRef {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub tenant: Option<String>,
    pub client_id: Option<String>,
}

impl AlertRef {
    fn of(a: &Alert) -> AlertRef {
        AlertRef {
            id: a.id.clone(),
            title: a.title.clone(),
            severity: a.severity,
            tenant: a.group.get("tenant").cloned(),
            client_id: a.group.get("client_id").cloned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    /// RFC 3339, UTC.
    pub at: String,
    pub author: String,
    pub text: String,
}

/// One change, as the history shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: String,
    pub by: String,
    /// `created`, `alert_added`, `owner_set`, `status_changed`, `note_added`.
    pub action: String,
    pub detail: String,
}

/// An incident as its log folds up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    pub id: String,
    pub title: String,
    /// The highest severity of its alerts.
    pub severity: Severity,
    pub status: IncidentStatus,
    /// A username; `None`: nobody yet.
    pub owner: Option<String>,
    /// The tenants of its alerts.
    pub tenants: Vec<String>,
    pub alerts: Vec<AlertRef>,
    pub notes: Vec<Note>,
    pub history: Vec<HistoryEntry>,
    pub created_at: String,
    pub created_by: String,
    pub updated_at: String,
}

/// An incident named on an alert's page.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentLink {
    pub id: String,
    pub title: String,
    pub status: IncidentStatus,
}

impl IncidentLink {
    pub fn href(&self) -> String {
        incident_href(&self.id)
    }
}

/// One line of the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    id: String,
    at: String,
    by: String,
    #[serde(flatten)]
    change: Change,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Change {
    Created {
        title: String,
        alerts: Vec<AlertRef>,
    },
    AlertAdded {
        alert: AlertRef,
    },
    OwnerSet {
        owner: Option<String>,
    },
    StatusChanged {
        from: IncidentStatus,
        to: IncidentStatus,
    },
    NoteAdded {
        text: String,
    },
}

impl Incident {
    fn derive(&mut self) {
        self.severity = self
            .alerts
            .iter()
            .map(|a| a.severity)
            .max()
            .unwrap_or(Severity::Low);
        let tenants: BTreeSet<&String> = self
            .alerts
            .iter()
            .filter_map(|a| a.tenant.as_ref())
            .collect();
        self.tenants = tenants.into_iter().cloned().collect();
    }

    fn link(&self) -> IncidentLink {
        IncidentLink {
            id: self.id.clone(),
            title: self.title.clone(),
            status: self.status,
        }
    }
}

/// Folds one record into the incidents; a change to an unknown incident
/// is skipped (cannot happen through this module).
fn apply(incidents: &mut BTreeMap<String, Incident>, r: Record) {
    let Record { id, at, by, change } = r;
    if let Change::Created { title, alerts } = change {
        let detail = format!(
            "created with {}",
            alerts
                .iter()
                .map(|a| a.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut inc = Incident {
            id: id.clone(),
            title,
            severity: Severity::Low,
            status: IncidentStatus::Open,
            owner: None,
            tenants: vec![],
            alerts,
            notes: vec![],
            history: vec![HistoryEntry {
                at: at.clone(),
                by: by.clone(),
                action: "created".into(),
                detail,
            }],
            created_at: at.clone(),
            created_by: by,
            updated_at: at,
        };
        inc.derive();
        incidents.insert(id, inc);
        return;
    }
    let Some(inc) = incidents.get_mut(&id) else {
        return;
    };
    let (action, detail) = match change {
        Change::Created { .. } => unreachable!("handled above"),
        Change::AlertAdded { alert } => {
            let detail = format!("added alert {}", alert.id);
            if !inc.alerts.iter().any(|a| a.id == alert.id) {
                inc.alerts.push(alert);
            }
            ("alert_added", detail)
        }
        Change::OwnerSet { owner } => {
            let detail = match &owner {
                Some(o) => format!("owner set to {o}"),
                None => "owner removed".into(),
            };
            inc.owner = owner;
            ("owner_set", detail)
        }
        Change::StatusChanged { from, to } => {
            inc.status = to;
            (
                "status_changed",
                format!("status {} → {}", from.as_str(), to.as_str()),
            )
        }
        Change::NoteAdded { text } => {
            inc.notes.push(Note {
                at: at.clone(),
                author: by.clone(),
                text,
            });
            ("note_added", "note added".to_string())
        }
    };
    inc.history.push(HistoryEntry {
        at: at.clone(),
        by,
        action: action.into(),
        detail,
    });
    inc.updated_at = at;
    inc.derive();
}

/// `<data>/dashboard/incidents/incidents.jsonl`.
fn log_path(data_dir: &FsPath) -> PathBuf {
    data_dir
        .join("dashboard")
        .join("incidents")
        .join("incidents.jsonl")
}

/// What a log file looked like when it was last folded: a change of any of
/// these (an append by another process, a restore, a removal) means the
/// file must be read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    exists: bool,
    len: u64,
    mtime: Option<std::time::SystemTime>,
    dev: u64,
    ino: u64,
}

impl Stamp {
    fn of(path: &FsPath) -> Result<Stamp, DashboardError> {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(path) {
            Ok(m) => Ok(Stamp {
                exists: true,
                len: m.len(),
                mtime: m.modified().ok(),
                dev: m.dev(),
                ino: m.ino(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Stamp {
                exists: false,
                len: 0,
                mtime: None,
                dev: 0,
                ino: 0,
            }),
            Err(e) => Err(DashboardError::io(path, e)),
        }
    }
}

/// The incidents of one data directory, folded from its log and kept in
/// [`BOOKS`] between requests; [`Book::refresh`] reads the log again only
/// when its file changed since (so another process's appends are seen),
/// and [`Book::commit`] folds this process's own appends in as it makes
/// them.
struct Book {
    path: PathBuf,
    incidents: BTreeMap<String, Incident>,
    /// The file as last folded; `None`: not folded yet, or unsure.
    seen: Option<Stamp>,
    /// How many times the log was read and folded (for the tests).
    loads: u64,
}

/// The books of the data directories this process serves (one in
/// production; the tests run several). Every read and write of an incident
/// log in this process holds it, so a read-check-append is one step
/// (AppState has no room for it).
static BOOKS: Mutex<Vec<Book>> = Mutex::new(Vec::new());

/// Books kept at most; past that the oldest is dropped (it is only a cache).
const MAX_BOOKS: usize = 8;

impl Book {
    fn new(data_dir: &FsPath) -> Book {
        Book {
            path: log_path(data_dir),
            incidents: BTreeMap::new(),
            seen: None,
            loads: 0,
        }
    }

    /// Reads and folds the log again if its file changed since last time.
    fn refresh(&mut self) -> Result<(), DashboardError> {
        // Stamped before reading: a change in between is caught next time.
        let now = Stamp::of(&self.path)?;
        if self.seen == Some(now) {
            return Ok(());
        }
        self.seen = None;
        let mut incidents = BTreeMap::new();
        for r in crate::jsonl::read_all::<Record>(&self.path)? {
            apply(&mut incidents, r);
        }
        self.incidents = incidents;
        self.seen = Some(now);
        self.loads += 1;
        Ok(())
    }

    /// Appends a change by `by` to incident `id` and folds it in.
    fn commit(&mut self, id: &str, by: &str, change: Change) -> Result<Incident, DashboardError> {
        let record = Record {
            id: id.to_string(),
            at: now_rfc3339_secs(),
            by: by.to_string(),
            change,
        };
        let before = self.seen.take();
        crate::jsonl::append(&self.path, &record)?;
        // The folded state still matches the file only if the file grew by
        // exactly this line: otherwise (another process appended too, a
        // torn tail was cut) the next refresh reads it again.
        let line = serde_json::to_vec(&record).map_or(0, |v| v.len() as u64 + 1);
        let before_len = before.map(|b| if b.exists { b.len } else { 0 });
        if let (Some(l), Ok(after)) = (before_len, Stamp::of(&self.path)) {
            if after.len == l + line {
                self.seen = Some(after);
            }
        }
        apply(&mut self.incidents, record);
        Ok(self.incidents[id].clone())
    }

    fn new_id(&self) -> String {
        loop {
            let id = format!("inc-{}", crate::users::random_hex(8));
            if !self.incidents.contains_key(&id) {
                return id;
            }
        }
    }
}

/// Runs `f` on the incidents of `data_dir`, up to date with its log,
/// holding [`BOOKS`]. Blocking.
fn with_book_at<T>(
    data_dir: &FsPath,
    f: impl FnOnce(&mut Book) -> Result<T, DashboardError>,
) -> Result<T, DashboardError> {
    let mut books = BOOKS.lock().unwrap_or_else(PoisonError::into_inner);
    let path = log_path(data_dir);
    let at = match books.iter().position(|b| b.path == path) {
        Some(i) => i,
        None => {
            if books.len() >= MAX_BOOKS {
                books.remove(0);
            }
            books.push(Book::new(data_dir));
            books.len() - 1
        }
    };
    let book = &mut books[at];
    book.refresh()?;
    f(book)
}

/// Runs `f` on the incidents of `state`'s data directory, off the async
/// threads (see [`with_book_at`]).
async fn with_book<T, F>(state: &AppState, f: F) -> Result<T, DashboardError>
where
    T: Send + 'static,
    F: FnOnce(&mut Book) -> Result<T, DashboardError> + Send + 'static,
{
    let data_dir = state.config.data_dir.clone();
    tokio::task::spawn_blocking(move || with_book_at(&data_dir, f))
        .await
        .map_err(|e| DashboardError::Task(e.to_string()))?
}

/// Whether `user` may see an alert as recorded in an incident (the rule of
/// [`crate::alerts::visible`]).
fn ref_visible(user: &CurrentUser, a: &AlertRef) -> bool {
    crate::alerts::sees_group(user, a.tenant.as_deref(), a.client_id.as_deref())
}

/// Whether `user` may see `inc`: every one of its alerts.
pub fn visible(user: &CurrentUser, inc: &Incident) -> bool {
    inc.alerts.iter().all(|a| ref_visible(user, a))
}

/// The incidents `user` may see that hold alert `alert_id`.
pub(crate) async fn holding(
    state: &AppState,
    user: &CurrentUser,
    alert_id: &str,
) -> Result<Vec<IncidentLink>, DashboardError> {
    let (user, alert_id) = (user.clone(), alert_id.to_string());
    with_book(state, move |book| {
        Ok(book
            .incidents
            .values()
            .filter(|i| i.alerts.iter().any(|a| a.id == alert_id) && visible(&user, i))
            .map(Incident::link)
            .collect())
    })
    .await
}

async fn visible_incident(
    state: &AppState,
    user: &CurrentUser,
    id: String,
) -> Result<Option<Incident>, DashboardError> {
    let user = user.clone();
    with_book(state, move |book| {
        Ok(book
            .incidents
            .get(&id)
            .filter(|i| visible(&user, i))
            .cloned())
    })
    .await
}

/// The incidents `user` may see with the status asked for (empty: any),
/// most recently changed first.
async fn listing(
    state: &AppState,
    user: &CurrentUser,
    status: &str,
) -> Result<Vec<Incident>, DashboardError> {
    let (user, status) = (user.clone(), status.to_string());
    with_book(state, move |book| {
        let mut out: Vec<Incident> = book
            .incidents
            .values()
            .filter(|i| visible(&user, i))
            .filter(|i| status.is_empty() || i.status.as_str() == status)
            .cloned()
            .collect();
        out.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.id.cmp(&b.id)));
        Ok(out)
    })
    .await
}

/// The alerts with these ids as the store holds them, each `None` when it
/// is missing or `user` may not see it.
async fn alerts_by_id(
    state: &AppState,
    user: &CurrentUser,
    ids: Vec<String>,
) -> Result<Vec<(String, Option<Alert>)>, DashboardError> {
    let user = user.clone();
    crate::alerts::with_store(state, move |store| {
        Ok(ids
            .into_iter()
            .map(|id| {
                let a = store
                    .get(&id)
                    .filter(|a| crate::alerts::visible(&user, a))
                    .cloned();
                (id, a)
            })
            .collect())
    })
    .await
}

/// Trimmed, non-empty, at most `max` characters, and (`one_line`) without
/// control characters.
fn required_text(what: &str, value: &str, max: usize, one_line: bool) -> Result<String, String> {
    let v = value.trim();
    if v.is_empty() {
        return Err(format!("The {what} is required."));
    }
    if v.chars().count() > max {
        return Err(format!(
            "The {what} is too long (at most {max} characters)."
        ));
    }
    let bad = |c: char| c.is_control() && (one_line || !matches!(c, '\n' | '\r' | '\t'));
    if v.chars().any(bad) {
        return Err(format!(
            "The {what} holds control characters{}.",
            if one_line {
                " (it must be one line)"
            } else {
                ""
            }
        ));
    }
    Ok(v.to_string())
}

/// The ids of a form's `alert` fields and `alerts` text, trimmed, without
/// repeats, in order.
fn alert_ids<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        for id in v.split(|c: char| c == ',' || c.is_whitespace()) {
            if !id.is_empty() && !out.iter().any(|o| o == id) {
                out.push(id.to_string());
            }
        }
    }
    out
}

/// Creates an incident of `ids` titled `title` for `user`.
async fn create(
    state: &AppState,
    user: &CurrentUser,
    title: &str,
    ids: Vec<String>,
) -> Result<Incident, AppError> {
    if !user.can(Permission::ManageIncidents) {
        return Err(AppError::Forbidden);
    }
    if ids.is_empty() {
        return Err(AppError::BadRequest("Name at least one alert.".into()));
    }
    if ids.len() > MAX_ALERTS_PER_REQUEST || ids.iter().any(|i| i.len() > MAX_ID_CHARS) {
        return Err(AppError::BadRequest(format!(
            "At most {MAX_ALERTS_PER_REQUEST} alert ids at a time."
        )));
    }
    let found = alerts_by_id(state, user, ids).await?;
    let mut refs = Vec::new();
    for (_, a) in found {
        // Unknown, or another tenant's: the same answer.
        refs.push(AlertRef::of(&a.ok_or(AppError::NotFound)?));
    }
    let title =
        required_text("title", title, MAX_TITLE_CHARS, true).map_err(AppError::BadRequest)?;
    let by = user.username.clone();
    let created = with_book(state, move |book| {
        let id = book.new_id();
        book.commit(
            &id,
            &by,
            Change::Created {
                title,
                alerts: refs,
            },
        )
    })
    .await;
    let id = created.as_ref().map(|i| i.id.clone()).unwrap_or_default();
    state
        .audited(user, "incident_create", &incident_target(&id), created)
        .await
}

/// What a change to an existing incident does.
enum Edit {
    Owner(Option<String>),
    Status(String),
    Note(String),
    AddAlert(String),
}

impl Edit {
    fn action(&self) -> &'static str {
        match self {
            Edit::Owner(_) => "incident_owner",
            Edit::Status(_) => "incident_status",
            Edit::Note(_) => "incident_note",
            Edit::AddAlert(_) => "incident_add_alert",
        }
    }
}

/// Whether `username` may own `inc`: an enabled user who may manage
/// incidents and sees every alert of it.
fn may_own(state: &AppState, username: &str, inc: &Incident) -> bool {
    state.users.get(username).is_some_and(|u| {
        let as_user = CurrentUser::from_user(&u, AuthMethod::Session, None, String::new());
        !u.disabled && as_user.can(Permission::ManageIncidents) && visible(&as_user, inc)
    })
}

/// Checks and applies `edit` to incident `id` for `user`, and audits it.
/// Permission first (403 says nothing about which incidents exist), then
/// visibility (404), then the input (400).
async fn change(
    state: &AppState,
    user: &CurrentUser,
    id: String,
    edit: Edit,
) -> Result<Incident, AppError> {
    if !user.can(Permission::ManageIncidents) {
        return Err(AppError::Forbidden);
    }
    let Some(current) = visible_incident(state, user, id.clone()).await? else {
        return Err(AppError::NotFound);
    };
    let action = edit.action();
    let change = match edit {
        Edit::Status(s) => match IncidentStatus::parse(s.trim()) {
            None => {
                return Err(AppError::BadRequest(
                    "Choose a status: open, investigating, contained, resolved or closed.".into(),
                ))
            }
            Some(to) if to == current.status => {
                return Err(AppError::BadRequest(format!(
                    "The incident is already {}.",
                    to.as_str()
                )))
            }
            Some(to) => Change::StatusChanged {
                from: current.status,
                to,
            },
        },
        Edit::Note(text) => Change::NoteAdded {
            text: required_text("note", &text, MAX_NOTE_CHARS, false)
                .map_err(AppError::BadRequest)?,
        },
        Edit::Owner(owner) => {
            let owner = owner
                .map(|o| o.trim().to_string())
                .filter(|o| !o.is_empty());
            if owner == current.owner {
                return Err(AppError::BadRequest("That is the owner already.".into()));
            }
            if let Some(o) = &owner {
                if o.len() > MAX_ID_CHARS || !may_own(state, o, &current) {
                    return Err(AppError::BadRequest(
                        "The owner must be an enabled user who manages incidents and sees all of this incident's tenants.".into(),
                    ));
                }
            }
            Change::OwnerSet { owner }
        }
        Edit::AddAlert(alert_id) => {
            let alert_id = alert_id.trim().to_string();
            if alert_id.is_empty() {
                return Err(AppError::BadRequest(
                    "Give the id of the alert to add.".into(),
                ));
            }
            if alert_id.len() > MAX_ID_CHARS {
                return Err(AppError::NotFound);
            }
            let found = alerts_by_id(state, user, vec![alert_id.clone()]).await?;
            let Some(alert) = found.into_iter().next().and_then(|(_, a)| a) else {
                return Err(AppError::NotFound);
            };
            if current.alerts.iter().any(|a| a.id == alert.id) {
                return Err(AppError::BadRequest(
                    "That alert is in this incident already.".into(),
                ));
            }
            Change::AlertAdded {
                alert: AlertRef::of(&alert),
            }
        }
    };
    let (by, viewer, key) = (user.username.clone(), user.clone(), id.clone());
    // Checked again under the lock: it may have changed since.
    let applied = with_book(state, move |book| {
        if !book
            .incidents
            .get(&key)
            .is_some_and(|i| visible(&viewer, i))
        {
            return Ok(Err(AppError::NotFound));
        }
        book.commit(&key, &by, change).map(Ok)
    })
    .await;
    let result = applied.unwrap_or_else(|e| Err(e.into()));
    state
        .audited(user, action, &incident_target(&id), result)
        .await
}

// ---------------------------------------------------------------------------
// The evidence bundle
// ---------------------------------------------------------------------------

/// The incident, its alerts and the evidence events `user` may see, as a
/// tar: `<id>/incident.json`, `<id>/events.json`, `<id>/events.csv` and
/// `<id>/manifest.sha256` (`sha256sum -c` format for the other three).
async fn bundle(
    state: &AppState,
    user: &CurrentUser,
    inc: Incident,
) -> Result<Vec<u8>, DashboardError> {
    let ids: Vec<String> = inc.alerts.iter().map(|a| a.id.clone()).collect();
    let alerts: Vec<Alert> = alerts_by_id(state, user, ids)
        .await?
        .into_iter()
        .filter_map(|(_, a)| a)
        .collect();
    let (viewer, for_lake) = (user.clone(), alerts.clone());
    let events = state
        .insights
        .with_lake(move |lake| {
            let mut by_id: BTreeMap<String, EvidenceEvent> = BTreeMap::new();
            for a in &for_lake {
                for e in crate::alerts::evidence_events(lake, &viewer, a)? {
                    by_id.entry(e.event_id.clone()).or_insert(e);
                }
            }
            let mut events: Vec<EvidenceEvent> = by_id.into_values().collect();
            events.sort_by(|a, b| a.ts_us.cmp(&b.ts_us).then(a.event_id.cmp(&b.event_id)));
            Ok(events)
        })
        .await?;
    let wanted: BTreeSet<&str> = alerts
        .iter()
        .flat_map(|a| a.evidence.iter().map(String::as_str))
        .collect();
    let found: BTreeSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    let not_included: Vec<&str> = wanted.difference(&found).copied().collect();
    let missing_alerts: Vec<&str> = inc
        .alerts
        .iter()
        .map(|r| r.id.as_str())
        .filter(|id| !alerts.iter().any(|a| a.id == *id))
        .collect();
    let exported_at = now_rfc3339_secs();
    let dir = seg(&inc.id);
    let incident_json = serde_json::to_vec_pretty(&serde_json::json!({
        "format": "scopewatch-incident-bundle/1",
        "exported_at": exported_at,
        "exported_by": user.username,
        "incident": &inc,
        "alerts": alerts,
        "alerts_not_in_store": missing_alerts,
        "evidence": {
            "event_ids": wanted.len(),
            "events_included": events.len(),
            "event_ids_not_included": not_included,
        },
    }))
    .map_err(|e| DashboardError::Task(format!("serialising the incident: {e}")))?;
    let events_json = serde_json::to_vec_pretty(&events)
        .map_err(|e| DashboardError::Task(format!("serialising the events: {e}")))?;
    let mut csv = csv_line(EvidenceEvent::CSV_COLUMNS);
    for e in &events {
        csv.push_str(&csv_line(e.csv_values()));
    }
    let files: [(&str, Vec<u8>); 3] = [
        ("incident.json", incident_json),
        ("events.json", events_json),
        ("events.csv", csv.into_bytes()),
    ];
    let mut manifest = String::new();
    for (name, data) in &files {
        manifest.push_str(&format!("{}  {name}\n", hex::encode(Sha256::digest(data))));
    }
    let mtime = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| -> std::io::Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(mtime);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        tar.append_data(&mut h, format!("{dir}/{name}"), data)
    };
    let io = |e| DashboardError::io("bundle.tar", e);
    for (name, data) in &files {
        add(name, &data[..]).map_err(io)?;
    }
    add("manifest.sha256", manifest.as_bytes()).map_err(io)?;
    tar.into_inner().map_err(io)
}

// ---------------------------------------------------------------------------
// Pages
// ---------------------------------------------------------------------------

fn incident_href(id: &str) -> String {
    format!("/incidents/{}", seg(id))
}

/// What the audit trail names an incident.
fn incident_target(id: &str) -> String {
    format!("incident/{id}")
}

fn status_badge_of(s: IncidentStatus) -> Markup {
    html! { span class=(s.badge_class()) { (s.as_str()) } }
}

#[derive(Debug, Default, Clone, Deserialize)]
struct ListFilter {
    #[serde(default)]
    status: String,
}

/// `GET /incidents`
async fn list_page(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(filter): Query<ListFilter>,
) -> Result<Response, AppError> {
    user.require(Permission::ViewIncidents)?;
    let incidents = listing(&state, &user, &filter.status).await?;
    let body = html! {
        form.filters #incident-filters method="get" action="/incidents" {
            div.field {
                label for="f-status" { "Status" }
                select #f-status name="status" {
                    option value="" selected[filter.status.is_empty()] { "any" }
                    @for s in IncidentStatus::ALL {
                        option value=(s.as_str()) selected[filter.status == s.as_str()] { (s.as_str()) }
                    }
                }
            }
            div.field.actions { button type="submit" { "Filter" } " " a href="/incidents" { "Clear" } }
        }
        p.muted #incident-count {
            (incidents.len()) @if incidents.len() == 1 { " incident." } @else { " incidents." }
        }
        @if incidents.is_empty() {
            p #no-incidents { "No incidents match." }
        } @else {
            table #incidents {
                thead { tr {
                    th { "Severity" } th { "Title" } th { "Status" } th { "Owner" } th { "Tenants" }
                    th.num { "Alerts" } th { "Updated (UTC)" }
                } }
                tbody {
                    @for i in &incidents {
                        tr {
                            td { (severity_badge(i.severity)) }
                            td { a href=(incident_href(&i.id)) { (i.title) } br; code { (i.id) } }
                            td { (status_badge_of(i.status)) }
                            td { (i.owner.as_deref().unwrap_or("-")) }
                            td { (i.tenants.join(", ")) }
                            td.num { (i.alerts.len()) }
                            td.nowrap { (when_to(&i.updated_at, Precision::Exact)) }
                        }
                    }
                }
            }
        }
        @if user.can(Permission::ManageIncidents) {
            div.card {
                h2 { "New incident" }
                form #new-incident method="post" action="/incidents" {
                    (csrf_field(&user))
                    label for="new-title" { "Title (required)" }
                    input #new-title type="text" name="title" required maxlength=(MAX_TITLE_CHARS);
                    label for="new-alerts" { "Alert ids (separated by spaces or commas)" }
                    textarea #new-alerts name="alerts" rows="2" required {}
                    div { button type="submit" { "Create" } }
                }
            }
        }
    };
    Ok(Html(page("Incidents", &user, body).into_string()).into_response())
}

fn detail_body(
    state: &AppState,
    user: &CurrentUser,
    inc: &Incident,
    alerts: &[(String, Option<Alert>)],
    error: Option<&str>,
) -> Markup {
    let href = incident_href(&inc.id);
    let owners: Vec<String> = if user.can(Permission::ManageIncidents) {
        state
            .users
            .list()
            .into_iter()
            .filter(|u| may_own(state, &u.username, inc))
            .map(|u| u.username)
            .collect()
    } else {
        vec![]
    };
    html! {
        p { a href="/incidents" { "← All incidents" } }
        @if let Some(e) = error { p.error #form-error { (e) } }
        dl.facts #incident-facts {
            dt { "Status" } dd #incident-status { (status_badge_of(inc.status)) }
            dt { "Severity" } dd { (severity_badge(inc.severity)) }
            dt { "Owner" } dd #incident-owner { (inc.owner.as_deref().unwrap_or("nobody yet")) }
            dt { "Tenants" } dd { (inc.tenants.join(", ")) }
            dt { "Incident id" } dd { code { (inc.id) } }
            dt { "Opened (UTC)" } dd { (when_to(&inc.created_at, Precision::Exact)) " by " (inc.created_by) }
            dt { "Updated (UTC)" } dd { (when_to(&inc.updated_at, Precision::Exact)) }
        }
        p { a #bundle href={ (href) "/bundle.tar" } { "Download the evidence bundle (tar: JSON, CSV, SHA-256 manifest)" } }
        h2 { "Alerts" }
        table #incident-alerts {
            thead { tr {
                th { "Severity" } th { "Rule" } th { "Group" } th { "First seen (UTC)" }
                th { "Last seen (UTC)" } th.num { "Count" } th { "Status" }
            } }
            tbody {
                @for (id, a) in alerts {
                    @match a {
                        Some(a) => {
                            tr {
                                td { (severity_badge(a.severity)) }
                                td { a href=(alert_href(&a.id)) { (a.title) } br; code { (a.id) } }
                                td { (group_list(a)) }
                                td.nowrap { (when(a.first_seen)) }
                                td.nowrap { (when(a.last_seen)) }
                                td.num { (a.count) }
                                td { (status_badge(a.status)) }
                            }
                        }
                        None => {
                            tr { td { } td { code { (id) } } td colspan="5" { span.muted { "no longer in the alert store" } } }
                        }
                    }
                }
            }
        }
        h2 { "Notes" }
        @if inc.notes.is_empty() {
            p.muted #no-notes { "No notes yet." }
        } @else {
            table #notes {
                thead { tr { th { "When (UTC)" } th { "Author" } th { "Note" } } }
                tbody {
                    @for n in &inc.notes {
                        tr { td.nowrap { (when_to(&n.at, Precision::Exact)) } td { (n.author) } td.comment { (n.text) } }
                    }
                }
            }
        }
        @if user.can(Permission::ManageIncidents) {
            div.card {
                h2 { "Work the incident" }
                form #note-form method="post" action={ (href) "/notes" } {
                    (csrf_field(user))
                    label for="note-text" { "Add a note (required)" }
                    textarea #note-text name="text" rows="3" required maxlength=(MAX_NOTE_CHARS) {}
                    div { button type="submit" { "Add note" } }
                }
                form #status-form method="post" action={ (href) "/status" } {
                    (csrf_field(user))
                    label for="incident-status-select" { "Status" }
                    select #incident-status-select name="status" {
                        @for s in IncidentStatus::ALL {
                            option value=(s.as_str()) selected[*s == inc.status] { (s.as_str()) }
                        }
                    }
                    div { button type="submit" { "Set status" } }
                }
                form #owner-form method="post" action={ (href) "/owner" } {
                    (csrf_field(user))
                    label for="owner-select" { "Owner" }
                    select #owner-select name="owner" {
                        option value="" selected[inc.owner.is_none()] { "nobody" }
                        @for o in &owners {
                            option value=(o) selected[inc.owner.as_deref() == Some(o.as_str())] { (o) }
                        }
                    }
                    div { button type="submit" { "Set owner" } }
                }
                form #add-alert-form method="post" action={ (href) "/alerts" } {
                    (csrf_field(user))
                    label for="add-alert" { "Add an alert by id" }
                    input #add-alert type="text" name="alert" required maxlength=(MAX_ID_CHARS);
                    div { button type="submit" { "Add alert" } }
                }
            }
        }
        h2 { "History" }
        table #incident-history {
            thead { tr { th { "When (UTC)" } th { "By" } th { "Change" } } }
            tbody {
                @for h in &inc.history {
                    tr { td.nowrap { (when_to(&h.at, Precision::Exact)) } td { (h.by) } td { (h.detail) } }
                }
            }
        }
    }
}

/// The detail page of `inc` (with `error` by the forms, answered with `code`).
async fn detail_response(
    state: &AppState,
    user: &CurrentUser,
    inc: Incident,
    error: Option<&str>,
    code: StatusCode,
) -> Result<Response, AppError> {
    let ids = inc.alerts.iter().map(|a| a.id.clone()).collect();
    let alerts = alerts_by_id(state, user, ids).await?;
    let title = format!("Incident: {}", inc.title);
    let body = detail_body(state, user, &inc, &alerts, error);
    Ok((code, Html(page(&title, user, body).into_string())).into_response())
}

/// `GET /incidents/{id}`
async fn detail_page(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    user.require(Permission::ViewIncidents)?;
    let inc = visible_incident(&state, &user, id)
        .await?
        .ok_or(AppError::NotFound)?;
    detail_response(&state, &user, inc, None, StatusCode::OK).await
}

/// `POST /incidents`: fields `title`, `alert` (repeatable), `alerts` (text).
async fn create_form(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let title = fields
        .iter()
        .find(|(k, _)| k == "title")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let ids = alert_ids(
        fields
            .iter()
            .filter(|(k, _)| k == "alert" || k == "alerts")
            .map(|(_, v)| v.as_str()),
    );
    match create(&state, &user, title, ids).await {
        Ok(i) => Ok(Redirect::to(&incident_href(&i.id)).into_response()),
        Err(e) => Err(e),
    }
}

#[derive(Debug, Deserialize)]
struct OwnerForm {
    #[serde(default)]
    owner: String,
}

#[derive(Debug, Deserialize)]
struct StatusForm {
    #[serde(default)]
    status: String,
}

#[derive(Debug, Deserialize)]
struct NoteForm {
    #[serde(default)]
    text: String,
}

#[derive(Debug, Deserialize)]
struct AlertForm {
    #[serde(default)]
    alert: String,
}

/// Applies a form's edit; answers a redirect to the incident, or the page
/// with the message.
async fn edit_form(
    state: AppState,
    user: CurrentUser,
    id: String,
    edit: Edit,
) -> Result<Response, AppError> {
    match change(&state, &user, id.clone(), edit).await {
        Ok(i) => Ok(Redirect::to(&incident_href(&i.id)).into_response()),
        Err(AppError::BadRequest(message)) => {
            let inc = visible_incident(&state, &user, id)
                .await?
                .ok_or(AppError::NotFound)?;
            detail_response(&state, &user, inc, Some(&message), StatusCode::BAD_REQUEST).await
        }
        Err(other) => Err(other),
    }
}

async fn owner_form(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Form(f): Form<OwnerForm>,
) -> Result<Response, AppError> {
    edit_form(state, user, id, Edit::Owner(Some(f.owner))).await
}

async fn status_form(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Form(f): Form<StatusForm>,
) -> Result<Response, AppError> {
    edit_form(state, user, id, Edit::Status(f.status)).await
}

async fn note_form(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Form(f): Form<NoteForm>,
) -> Result<Response, AppError> {
    edit_form(state, user, id, Edit::Note(f.text)).await
}

async fn alert_form(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Form(f): Form<AlertForm>,
) -> Result<Response, AppError> {
    edit_form(state, user, id, Edit::AddAlert(f.alert)).await
}

/// `GET /incidents/{id}/bundle.tar`
async fn bundle_download(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    user.require(Permission::ViewIncidents)?;
    let inc = visible_incident(&state, &user, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let id = inc.id.clone();
    let built = bundle(&state, &user, inc).await;
    let tar = state
        .audited(&user, "incident_export", &incident_target(&id), built)
        .await?;
    Ok(attachment(
        "application/x-tar",
        &format!("{id}-evidence.tar"),
        tar,
    ))
}

// ---------------------------------------------------------------------------
// JSON API
// ---------------------------------------------------------------------------

fn api_refused(e: AppError) -> Response {
    e.into_api("no such incident or alert")
}

/// `GET /api/incidents`
async fn api_list(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(filter): Query<ListFilter>,
) -> Response {
    if !user.can(Permission::ViewIncidents) {
        return api_refused(AppError::Forbidden);
    }
    match listing(&state, &user, &filter.status).await {
        Ok(l) => Json(l).into_response(),
        Err(e) => api_refused(e.into()),
    }
}

/// `GET /api/incidents/{id}`
async fn api_get(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Response {
    if !user.can(Permission::ViewIncidents) {
        return api_refused(AppError::Forbidden);
    }
    match visible_incident(&state, &user, id).await {
        Ok(Some(i)) => Json(i).into_response(),
        Ok(None) => api_refused(AppError::NotFound),
        Err(e) => api_refused(e.into()),
    }
}

#[derive(Debug, Deserialize)]
struct CreateBody {
    title: String,
    alerts: Vec<String>,
}

/// `POST /api/incidents` with `{"title": "...", "alerts": ["al-..."]}`;
/// answers 201 and the incident.
async fn api_create(State(state): State<AppState>, user: CurrentUser, body: Bytes) -> Response {
    if !user.can(Permission::ManageIncidents) {
        return api_refused(AppError::Forbidden);
    }
    let b: CreateBody = match json_body(&body, r#"{"title": "...", "alerts": ["..."]}"#) {
        Ok(b) => b,
        Err(e) => return api_refused(e),
    };
    let ids = alert_ids(b.alerts.iter().map(String::as_str));
    match create(&state, &user, &b.title, ids).await {
        Ok(i) => (StatusCode::CREATED, Json(i)).into_response(),
        Err(r) => api_refused(r),
    }
}

async fn api_edit(
    state: AppState,
    user: CurrentUser,
    id: String,
    edit: Result<Edit, AppError>,
) -> Response {
    if !user.can(Permission::ManageIncidents) {
        return api_refused(AppError::Forbidden);
    }
    let edit = match edit {
        Ok(e) => e,
        Err(e) => return api_refused(e),
    };
    match change(&state, &user, id, edit).await {
        Ok(i) => Json(i).into_response(),
        Err(r) => api_refused(r),
    }
}

#[derive(Debug, Deserialize)]
struct StatusBody {
    status: String,
}

#[derive(Debug, Deserialize)]
struct NoteBody {
    text: String,
}

#[derive(Debug, Deserialize)]
struct OwnerBody {
    owner: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AlertBody {
    alert: String,
}

async fn api_status(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let edit =
        json_body::<StatusBody>(&body, "{\"status\": \"...\"}").map(|b| Edit::Status(b.status));
    api_edit(state, user, id, edit).await
}

async fn api_note(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let edit = json_body::<NoteBody>(&body, "{\"text\": \"...\"}").map(|b| Edit::Note(b.text));
    api_edit(state, user, id, edit).await
}

async fn api_owner(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let edit =
        json_body::<OwnerBody>(&body, "{\"owner\": \"...\" or null}").map(|b| Edit::Owner(b.owner));
    api_edit(state, user, id, edit).await
}

async fn api_add_alert(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let edit =
        json_body::<AlertBody>(&body, "{\"alert\": \"...\"}").map(|b| Edit::AddAlert(b.alert));
    api_edit(state, user, id, edit).await
}

/// The incident routes, merged by [`crate::pages::routes`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/incidents", get(list_page).post(create_form))
        .route("/incidents/{id}", get(detail_page))
        .route("/incidents/{id}/bundle.tar", get(bundle_download))
        .route("/incidents/{id}/owner", post(owner_form))
        .route("/incidents/{id}/status", post(status_form))
        .route("/incidents/{id}/notes", post(note_form))
        .route("/incidents/{id}/alerts", post(alert_form))
        .route("/api/incidents", get(api_list).post(api_create))
        .route("/api/incidents/{id}", get(api_get))
        .route("/api/incidents/{id}/status", post(api_status))
        .route("/api/incidents/{id}/notes", post(api_note))
        .route("/api/incidents/{id}/owner", post(api_owner))
        .route("/api/incidents/{id}/alerts", post(api_add_alert))
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::io::Write;

    use super::*;

    fn aref(id: &str, sev: Severity, tenant: Option<&str>) -> AlertRef {
        AlertRef {
            id: id.into(),
            title: "t".into(),
            severity: sev,
            tenant: tenant.map(String::from),
            client_id: Some("app".into()),
        }
    }

    fn record(id: &str, change: Change) -> Record {
        Record {
            id: id.into(),
            at: "2026-11-20T10:00:00Z".into(),
            by: "sec".into(),
            change,
        }
    }

    #[test]
    fn the_log_folds_and_a_torn_line_is_ignored_then_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("incidents/incidents.jsonl");
        crate::jsonl::append(
            &path,
            &record(
                "inc-1",
                Change::Created {
                    title: "Replay".into(),
                    alerts: vec![aref("al-1", Severity::Medium, Some("north"))],
                },
            ),
        )
        .unwrap();
        crate::jsonl::append(
            &path,
            &record(
                "inc-1",
                Change::AlertAdded {
                    alert: aref("al-2", Severity::Critical, Some("south")),
                },
            ),
        )
        .unwrap();
        // A crash mid-append.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"id\":\"inc-1\",\"op\":\"note_ad").unwrap();
        drop(f);
        let fold = |path: &FsPath| {
            let mut m = BTreeMap::new();
            for r in crate::jsonl::read_all::<Record>(path).unwrap() {
                apply(&mut m, r);
            }
            m
        };
        let m = fold(&path);
        let inc = &m["inc-1"];
        assert_eq!(inc.severity, Severity::Critical);
        assert_eq!(inc.tenants, ["north", "south"]);
        assert_eq!(inc.history.len(), 2);
        assert!(inc.notes.is_empty());

        crate::jsonl::append(
            &path,
            &record(
                "inc-1",
                Change::NoteAdded {
                    text: "line one\nline two".into(),
                },
            ),
        )
        .unwrap();
        let m = fold(&path);
        assert_eq!(m["inc-1"].notes[0].text, "line one\nline two");
        assert!(std::fs::read_to_string(&path).unwrap().ends_with("\"}\n"));
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
    }

    #[test]
    fn the_folded_log_is_kept_and_read_again_only_when_the_file_changed() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let loads = || with_book_at(data, |b| Ok(b.loads)).unwrap();
        let count = || with_book_at(data, |b| Ok(b.incidents.len())).unwrap();
        assert_eq!(count(), 0);
        // Our own appends are folded in as they are made: no re-read.
        let id = with_book_at(data, |b| {
            let id = b.new_id();
            b.commit(
                &id,
                "sec",
                Change::Created {
                    title: "Replay".into(),
                    alerts: vec![aref("al-1", Severity::Medium, Some("north"))],
                },
            )?;
            b.commit(&id, "sec", Change::NoteAdded { text: "n".into() })?;
            Ok(id)
        })
        .unwrap();
        let after_own = loads();
        for _ in 0..3 {
            assert_eq!(count(), 1);
        }
        assert_eq!(loads(), after_own, "unchanged file read again");

        // Another process appends: seen on the next read.
        crate::jsonl::append(
            &log_path(data),
            &record(
                &id,
                Change::AlertAdded {
                    alert: aref("al-2", Severity::Critical, Some("south")),
                },
            ),
        )
        .unwrap();
        let inc = with_book_at(data, |b| Ok(b.incidents[&id].clone())).unwrap();
        assert_eq!(inc.alerts.len(), 2);
        assert_eq!(inc.severity, Severity::Critical);
        assert_eq!(loads(), after_own + 1);

        // Another process appends, then this one: both are there after.
        crate::jsonl::append(
            &log_path(data),
            &record(
                &id,
                Change::NoteAdded {
                    text: "theirs".into(),
                },
            ),
        )
        .unwrap();
        with_book_at(data, |b| {
            b.commit(
                &id,
                "sec",
                Change::NoteAdded {
                    text: "ours".into(),
                },
            )
        })
        .unwrap();
        let notes: Vec<String> = with_book_at(data, |b| {
            Ok(b.incidents[&id]
                .notes
                .iter()
                .map(|n| n.text.clone())
                .collect())
        })
        .unwrap();
        assert_eq!(notes, ["n", "theirs", "ours"]);

        // The file removed: nothing left.
        std::fs::remove_file(log_path(data)).unwrap();
        assert_eq!(count(), 0);
    }

    #[test]
    fn a_corrupt_middle_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("incidents.jsonl");
        std::fs::write(&path, "not json\n{}\n").unwrap();
        assert!(crate::jsonl::read_all::<Record>(&path).is_err());
    }

    #[test]
    fn text_rules() {
        assert!(required_text("title", "  ", 10, true).is_err());
        assert!(required_text("title", "a\nb", 10, true).is_err());
        assert_eq!(required_text("note", " a\nb ", 10, false).unwrap(), "a\nb");
        assert!(required_text("note", &"x".repeat(11), 10, false).is_err());
        assert_eq!(
            alert_ids(["al-1, al-2", "al-1", " al-3 "].into_iter()),
            ["al-1", "al-2", "al-3"]
        );
    }
}
