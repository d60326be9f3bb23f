//! The alert store: every alert with its status and history, folded from
//! rule hits. Streaming keeps it in `<data>/alerts/alerts.jsonl`, an
//! append-only log of changes (fsynced per batch, a torn last line from a
//! crash is dropped at open, compacted when it grows); backtest keeps it in
//! memory. Both fold hits the same way, so both give the same alerts.
//!
//! Several processes may share the file (`scopewatch ingest` raising alerts,
//! `scopewatch serve` changing their status): every append happens under an
//! exclusive lock on `alerts.lock` after taking up what the others appended
//! ([`AlertStore::refresh`]), and compaction, which replaces the file, is
//! seen by the others as a new file and read again whole.

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
    /// Held exclusively while appending or compacting.
    lock_path: PathBuf,
    records: usize,
    /// How much of the file has been applied, and the file's identity.
    read_len: u64,
    inode: u64,
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
        let mut store = AlertStore {
            log: Some(Log {
                path: path.to_path_buf(),
                lock_path: path.with_extension("lock"),
                records: 0,
                read_len: 0,
                inode: 0,
            }),
            ..AlertStore::default()
        };
        {
            let _lock = store.lock()?;
            let log = store.log.as_ref().expect("set above");
            if !log.path.exists() {
                File::create(&log.path).map_err(io(&log.path, "creating"))?;
            }
            let (torn, _) = store.read_new()?;
            if let Some(good_len) = torn {
                // A crash mid-append leaves a torn last line: drop it.
                let log = store.log.as_ref().expect("set above");
                tracing::warn!(path = %log.path.display(), "dropped a torn last line of the alert store (a crash mid-write); nothing committed is lost");
                OpenOptions::new()
                    .write(true)
                    .open(&log.path)
                    .and_then(|f| f.set_len(good_len))
                    .map_err(io(&log.path, "truncating"))?;
            }
            let records = store.log.as_ref().map_or(0, |l| l.records);
            if records > 4 * store.alerts.len() + 1000 {
                store.compact()?;
            }
        }
        Ok(store)
    }

    /// The exclusive lock all writers of the file take.
    fn lock(&self) -> Result<Option<File>, StoreError> {
        let Some(log) = self.log.as_ref() else {
            return Ok(None);
        };
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&log.lock_path)
            .map_err(io(&log.lock_path, "opening the lock of"))?;
        f.lock().map_err(io(&log.lock_path, "locking"))?;
        Ok(Some(f))
    }

    /// Takes up what other processes appended since the last read (and
    /// reads the file again whole if it was replaced by a compaction).
    pub fn refresh(&mut self) -> Result<(), StoreError> {
        if self.log.is_none() {
            return Ok(());
        }
        self.read_new().map(|_| ())
    }

    /// Applies the complete lines after `read_len`. Returns the length of
    /// the good part when the file ends in a torn line, and whether the
    /// file was read again whole.
    fn read_new(&mut self) -> Result<(Option<u64>, bool), StoreError> {
        use std::io::{Seek, SeekFrom};
        use std::os::unix::fs::MetadataExt;
        let log = self.log.as_mut().expect("a file-backed store");
        let path = log.path.clone();
        let meta = fs::metadata(&path).map_err(io(&path, "reading"))?;
        let reloaded = meta.ino() != log.inode || meta.len() < log.read_len;
        if reloaded {
            // New, or replaced: read it whole.
            log.inode = meta.ino();
            log.read_len = 0;
            log.records = 0;
            self.alerts.clear();
            self.latest.clear();
        }
        let log = self.log.as_ref().expect("a file-backed store");
        if meta.len() == log.read_len {
            return Ok((None, reloaded));
        }
        let mut f = File::open(&path).map_err(io(&path, "opening"))?;
        f.seek(SeekFrom::Start(log.read_len))
            .map_err(io(&path, "reading"))?;
        let mut reader = BufReader::new(f);
        let mut line = String::new();
        let mut good = log.read_len;
        let mut records = 0;
        let mut first_line = log.records + 1;
        loop {
            line.clear();
            let read = reader.read_line(&mut line).map_err(io(&path, "reading"))?;
            if read == 0 {
                break;
            }
            if !line.ends_with('\n') {
                let log = self.log.as_mut().expect("a file-backed store");
                log.read_len = good;
                log.records += records;
                return Ok((Some(good), reloaded));
            }
            let r: Record =
                serde_json::from_str(line.trim_end()).map_err(|e| StoreError::Corrupt {
                    path: path.clone(),
                    line: first_line,
                    message: e.to_string(),
                })?;
            self.apply(r);
            records += 1;
            first_line += 1;
            good += read as u64;
        }
        let log = self.log.as_mut().expect("a file-backed store");
        log.read_len = good;
        log.records += records;
        Ok((None, reloaded))
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
        // Another process may have changed it: start from the file.
        self.refresh()?;
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

    /// Makes every change so far durable (one append and fsync), after
    /// taking up what other processes appended.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        if self.log.is_none() {
            self.pending.clear();
            return Ok(());
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let _lock = self.lock()?;
        let pending = std::mem::take(&mut self.pending);
        // Records of others first; ours are already applied here, unless
        // the file was replaced (compacted) and read again whole.
        let (_, reloaded) = self.read_new()?;
        if reloaded {
            for r in pending.iter().cloned() {
                self.apply(r);
            }
        }
        let mut buf = Vec::new();
        for r in &pending {
            serde_json::to_writer(&mut buf, r).expect("records serialise");
            buf.push(b'\n');
        }
        let log = self.log.as_mut().expect("checked above");
        let path = log.path.clone();
        let written = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io(&path, "opening"))
            .and_then(|mut file| {
                file.write_all(&buf).map_err(io(&path, "appending to"))?;
                file.sync_data().map_err(io(&path, "syncing"))
            });
        if let Err(e) = written {
            // What failed to reach the file must not live on here: read
            // the file again whole at the next refresh.
            log.inode = 0;
            return Err(e);
        }
        log.read_len += buf.len() as u64;
        log.records += pending.len();
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
        {
            use std::os::unix::fs::MetadataExt;
            let meta = fs::metadata(&log.path).map_err(io(&log.path, "reading"))?;
            log.inode = meta.ino();
            log.read_len = meta.len();
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Rules;

    fn rule() -> Rules {
        Rules::from_toml_str(
            "version = 1\n[[rule]]\nid = 'r'\ntitle = 'r'\ntype = 'threshold'\nseverity = 'high'\n\
             window_secs = 60\nthreshold = 1\ngroup_by = ['client_id']\ndedup_secs = 3600\n",
            "test",
        )
        .unwrap()
    }

    fn hit(secs: i64, event: &str) -> Hit {
        Hit {
            group: vec![("client_id".into(), "app".into())],
            ts: Timestamp(secs * 1_000_000),
            evidence: vec![(Timestamp(secs * 1_000_000), event.into())],
            detail: "d".into(),
        }
    }

    #[test]
    fn two_processes_share_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.jsonl");
        let rules = rule();
        let r = &rules.rules[0];
        let mut detector = AlertStore::open(&path).unwrap();
        let mut dashboard = AlertStore::open(&path).unwrap();
        let Folded::Raised(id) = detector.fold(r, hit(0, "e1")) else {
            panic!("raised")
        };
        detector.flush().unwrap();
        dashboard.refresh().unwrap();
        assert_eq!(dashboard.get(&id).unwrap().count, 1);
        dashboard
            .set_status(
                &id,
                AlertStatus::Resolved,
                "alice",
                Some("fixed".into()),
                Timestamp(5),
            )
            .unwrap();
        // The detector sees the resolution: a repeat opens a new alert.
        detector.refresh().unwrap();
        assert_eq!(detector.get(&id).unwrap().status, AlertStatus::Resolved);
        assert!(matches!(detector.fold(r, hit(10, "e2")), Folded::Raised(_)));
        detector.flush().unwrap();
        // A third reader builds the same from the file.
        let reader = AlertStore::open(&path).unwrap();
        assert_eq!(reader.len(), 2);
        assert_eq!(reader.get(&id).unwrap().history.len(), 1);
        dashboard.refresh().unwrap();
        assert_eq!(dashboard.len(), 2);
        assert_eq!(dashboard.get(&id).unwrap().history.len(), 1);
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_a_replaced_file_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.jsonl");
        let rules = rule();
        let mut a = AlertStore::open(&path).unwrap();
        a.fold(&rules.rules[0], hit(0, "e1"));
        a.flush().unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"op\":\"raise\",\"alert\":{\"id\"").unwrap();
        let b = AlertStore::open(&path).unwrap();
        assert_eq!(b.len(), 1);
        assert!(fs::read_to_string(&path).unwrap().ends_with('\n'));
        // Replaced by another process (as compaction does): read whole.
        let mut c = AlertStore::open(&path).unwrap();
        fs::write(&path, "").unwrap();
        let tmp = path.with_extension("new");
        fs::write(&tmp, "").unwrap();
        fs::rename(&tmp, &path).unwrap();
        c.refresh().unwrap();
        assert_eq!(c.len(), 0);
    }
}
