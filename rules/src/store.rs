//! The alert store: every alert with its status and history, folded from
//! rule hits. Streaming keeps it in `<data>/alerts/alerts.jsonl`, an
//! append-only log of changes (fsynced per batch, a torn last line from a
//! crash is dropped at open, compacted when it grows); backtest keeps it in
//! memory. Both fold hits the same way, so both give the same alerts.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use scopewatch_model::events::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::alert::{Alert, AlertStatus, StatusChange, MAX_EVIDENCE};
use crate::config::Rule;
use crate::eval::Hit;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {doing} the alert store failed: {source}; check the data directory's permissions and free space")]
    Io {
        path: PathBuf,
        doing: &'static str,
        source: std::io::Error,
    },
    #[error("{path} line {line}: the alert store is damaged ({message}); move the file aside to start a new one")]
    Corrupt {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("no alert has the id `{0}`")]
    NoSuchAlert(String),
}

/// One line of the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Record {
    Raise {
        alert: Alert,
    },
    Fold {
        id: String,
        first_seen: Timestamp,
        last_seen: Timestamp,
        count: u64,
        added: Vec<String>,
        detail: String,
    },
    Status {
        id: String,
        change: StatusChange,
    },
}

/// What folding a hit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Folded {
    /// A new alert: notify.
    Raised(String),
    /// Evidence added to an alert already raised.
    Grew(String),
    /// Nothing new (every event was already evidence).
    Unchanged(String),
}

#[derive(Debug)]
struct Log {
    path: PathBuf,
    file: File,
    records: usize,
}

#[derive(Debug, Default)]
pub struct AlertStore {
    alerts: BTreeMap<String, Alert>,
    /// `(rule, group)` -> the newest alert of it.
    latest: HashMap<String, String>,
    log: Option<Log>,
    pending: Vec<Record>,
}

fn group_key(rule: &str, group: &BTreeMap<String, String>) -> String {
    let mut k = rule.to_string();
    for (f, v) in group {
        k.push('\u{1f}');
        k.push_str(f);
        k.push('=');
        k.push_str(v);
    }
    k
}

/// The stable id of an alert: its rule, group and first evidence.
pub fn alert_id(rule: &str, group: &BTreeMap<String, String>, first_event: &str) -> String {
    let mut h = Sha256::new();
    h.update(group_key(rule, group).as_bytes());
    h.update([0]);
    h.update(first_event.as_bytes());
    format!("al-{}", hex::encode(&h.finalize()[..8]))
}

fn io<'a>(path: &'a Path, doing: &'static str) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        doing,
        source,
    }
}

impl AlertStore {
    /// A store that lives in memory only (backtest).
    pub fn in_memory() -> AlertStore {
        AlertStore::default()
    }

    /// Opens (or creates) the store at `path`, replaying its log.
    pub fn open(path: &Path) -> Result<AlertStore, StoreError> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io(dir, "creating the folder of"))?;
        }
        let mut store = AlertStore::default();
        let mut records = 0;
        let mut good_len: u64 = 0;
        let mut torn = false;
        if path.exists() {
            let f = File::open(path).map_err(io(path, "opening"))?;
            let mut reader = BufReader::new(f);
            let mut line = String::new();
            let mut n = 0;
            loop {
                line.clear();
                let read = reader.read_line(&mut line).map_err(io(path, "reading"))?;
                if read == 0 {
                    break;
                }
                n += 1;
                let complete = line.ends_with('\n');
                match serde_json::from_str::<Record>(line.trim_end()) {
                    Ok(r) if complete => {
                        store.apply(r);
                        records += 1;
                        good_len += read as u64;
                    }
                    // A crash mid-append leaves a torn last line: drop it.
                    _ if !complete => {
                        torn = true;
                        break;
                    }
                    Ok(_) => unreachable!(),
                    Err(e) => {
                        return Err(StoreError::Corrupt {
                            path: path.to_path_buf(),
                            line: n,
                            message: e.to_string(),
                        })
                    }
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io(path, "opening"))?;
        if torn {
            tracing::warn!(path = %path.display(), "dropped a torn last line of the alert store (a crash mid-write); nothing committed is lost");
            file.set_len(good_len).map_err(io(path, "truncating"))?;
        }
        store.log = Some(Log {
            path: path.to_path_buf(),
            file,
            records,
        });
        if records > 4 * store.alerts.len() + 1000 {
            store.compact()?;
        }
        Ok(store)
    }

    fn apply(&mut self, r: Record) {
        match r {
            Record::Raise { alert } => {
                self.latest
                    .insert(group_key(&alert.rule, &alert.group), alert.id.clone());
                self.alerts.insert(alert.id.clone(), alert);
            }
            Record::Fold {
                id,
                first_seen,
                last_seen,
                count,
                added,
                detail,
            } => {
                if let Some(a) = self.alerts.get_mut(&id) {
                    a.first_seen = first_seen;
                    a.last_seen = last_seen;
                    a.count = count;
                    a.detail = detail;
                    for e in added {
                        if a.evidence.len() < MAX_EVIDENCE {
                            a.evidence.push(e);
                        }
                    }
                }
            }
            Record::Status { id, change } => {
                if let Some(a) = self.alerts.get_mut(&id) {
                    a.status = change.to;
                    a.history.push(change);
                }
            }
        }
    }

    /// Folds a hit of `rule` into its open alert (same rule and group, last
    /// evidence within the dedup window, not resolved), else raises one.
    pub fn fold(&mut self, rule: &Rule, hit: Hit) -> Folded {
        let group: BTreeMap<String, String> = hit.group.into_iter().collect();
        let key = group_key(&rule.id, &group);
        let open = self
            .latest
            .get(&key)
            .and_then(|id| self.alerts.get(id))
            .filter(|a| a.status.is_active() && hit.ts.0 <= a.last_seen.0 + rule.dedup_us);
        let first_event = hit
            .evidence
            .first()
            .map(|(_, id)| id.clone())
            .unwrap_or_default();
        let id = match open {
            Some(a) => a.id.clone(),
            None => alert_id(&rule.id, &group, &first_event),
        };
        let Some(alert) = self.alerts.get_mut(&id) else {
            let first_seen = hit.evidence.first().map_or(hit.ts, |(t, _)| *t);
            let last_seen = hit.evidence.iter().map(|(t, _)| *t).max().unwrap_or(hit.ts);
            let mut evidence: Vec<String> = hit.evidence.into_iter().map(|(_, e)| e).collect();
            evidence.dedup();
            let alert = Alert {
                id: id.clone(),
                rule: rule.id.clone(),
                title: rule.title.clone(),
                severity: rule.severity,
                group,
                first_seen,
                last_seen,
                count: evidence.len() as u64,
                evidence: evidence.into_iter().take(MAX_EVIDENCE).collect(),
                detail: hit.detail,
                status: AlertStatus::Open,
                history: Vec::new(),
            };
            self.latest.insert(key, id.clone());
            self.alerts.insert(id.clone(), alert.clone());
            self.pending.push(Record::Raise { alert });
            return Folded::Raised(id);
        };
        let mut added = Vec::new();
        for (t, e) in hit.evidence {
            if alert.evidence.contains(&e) || added.contains(&e) {
                continue;
            }
            alert.count += 1;
            alert.first_seen = alert.first_seen.min(t);
            alert.last_seen = alert.last_seen.max(t);
            if alert.evidence.len() < MAX_EVIDENCE {
                alert.evidence.push(e.clone());
                added.push(e);
            }
        }
        if added.is_empty() {
            return Folded::Unchanged(id);
        }
        alert.detail = hit.detail;
        self.pending.push(Record::Fold {
            id: id.clone(),
            first_seen: alert.first_seen,
            last_seen: alert.last_seen,
            count: alert.count,
            added,
            detail: alert.detail.clone(),
        });
        Folded::Grew(id)
    }

    /// Changes an alert's status, recording who and why.
    pub fn set_status(
        &mut self,
        id: &str,
        to: AlertStatus,
        by: &str,
        comment: Option<String>,
        at: Timestamp,
    ) -> Result<&Alert, StoreError> {
        let alert = self
            .alerts
            .get_mut(id)
            .ok_or_else(|| StoreError::NoSuchAlert(id.to_string()))?;
        let change = StatusChange {
            at,
            by: by.to_string(),
            from: alert.status,
            to,
            comment,
        };
        alert.status = to;
        alert.history.push(change.clone());
        self.pending.push(Record::Status {
            id: id.to_string(),
            change,
        });
        self.flush()?;
        Ok(&self.alerts[id])
    }

    /// Makes every change so far durable (one append and fsync).
    pub fn flush(&mut self) -> Result<(), StoreError> {
        let Some(log) = self.log.as_mut() else {
            self.pending.clear();
            return Ok(());
        };
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for r in &self.pending {
            serde_json::to_writer(&mut buf, r).expect("records serialise");
            buf.push(b'\n');
        }
        log.file
            .write_all(&buf)
            .map_err(io(&log.path, "appending to"))?;
        log.file.sync_data().map_err(io(&log.path, "syncing"))?;
        log.records += self.pending.len();
        self.pending.clear();
        Ok(())
    }

    /// Rewrites the log as one record per alert (written aside, fsynced,
    /// renamed).
    fn compact(&mut self) -> Result<(), StoreError> {
        let Some(log) = self.log.as_mut() else {
            return Ok(());
        };
        let tmp = log.path.with_extension("jsonl.tmp");
        let mut buf = Vec::new();
        for alert in self.alerts.values() {
            serde_json::to_writer(
                &mut buf,
                &Record::Raise {
                    alert: alert.clone(),
                },
            )
            .expect("records serialise");
            buf.push(b'\n');
        }
        {
            let mut f = File::create(&tmp).map_err(io(&tmp, "writing"))?;
            f.write_all(&buf).map_err(io(&tmp, "writing"))?;
            f.sync_all().map_err(io(&tmp, "syncing"))?;
        }
        fs::rename(&tmp, &log.path).map_err(io(&log.path, "replacing"))?;
        log.file = OpenOptions::new()
            .append(true)
            .open(&log.path)
            .map_err(io(&log.path, "opening"))?;
        log.records = self.alerts.len();
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<&Alert> {
        self.alerts.get(id)
    }

    /// Every alert, ordered by id.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.values()
    }

    pub fn len(&self) -> usize {
        self.alerts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty()
    }
}
