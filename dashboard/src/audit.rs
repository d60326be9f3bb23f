//! The dashboard's audit trail: `<data>/dashboard/audit.jsonl`, one JSON
//! object per line, appended through [`crate::jsonl::append`] (locked,
//! fsynced, a torn last line cut off first so the next entry starts its own
//! line), never rewritten.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use scopewatch_analytics::report::csv_line;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::{DashboardError, Result};

/// Now, RFC 3339, UTC, with the clock's fraction of a second.
pub fn now_rfc3339() -> String {
    rfc3339(OffsetDateTime::now_utc())
}

/// Now, RFC 3339 to the second, UTC: fixed width, so times sort as text
/// (and decisions, incidents and exports read better without nanoseconds).
pub fn now_rfc3339_secs() -> String {
    let now = OffsetDateTime::now_utc();
    rfc3339(now.replace_nanosecond(0).unwrap_or(now))
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// Whether the action happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEntry {
    /// RFC 3339, UTC.
    pub time: String,
    /// Who acted; `-` before anyone is known (a failed login of an unknown name).
    pub user: String,
    /// What they did, a stable snake_case verb: `login`, `logout`,
    /// `password_change`, `user_disable`, `token_create`, ...
    pub action: String,
    /// What it was done to (a username, an alert id, an export), or empty.
    pub target: String,
    pub outcome: Outcome,
    /// The client address as the server saw it; `cli` for the command line.
    pub ip: String,
}

impl AuditEntry {
    pub fn new(user: &str, action: &str, target: &str, outcome: Outcome, ip: &str) -> Self {
        Self {
            time: now_rfc3339(),
            user: user.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            outcome,
            ip: ip.to_string(),
        }
    }
}

#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    /// One writer at a time in this process (the file lock keeps out others).
    writer: Mutex<()>,
}

impl AuditLog {
    pub fn open(dir: &Path) -> Result<Self> {
        crate::users::ensure_private_dir(dir)?;
        let path = dir.join("audit.jsonl");
        // Created now, so that reading an empty trail works.
        OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| DashboardError::io(&path, e))?;
        Ok(Self {
            path,
            writer: Mutex::new(()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry and fsyncs it. Blocking.
    pub fn record(&self, entry: &AuditEntry) -> Result<()> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        crate::jsonl::append(&self.path, entry)
    }

    /// Every entry, oldest first; lines that do not parse are skipped and
    /// counted (they would be a sign of tampering or a torn write).
    pub fn read_all(&self) -> Result<(Vec<AuditEntry>, usize)> {
        let file = File::open(&self.path).map_err(|e| DashboardError::io(&self.path, e))?;
        let mut entries = Vec::new();
        let mut bad = 0;
        for line in BufReader::new(file).lines() {
            let line = line.map_err(|e| DashboardError::io(&self.path, e))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(&line) {
                Ok(e) => entries.push(e),
                Err(_) => bad += 1,
            }
        }
        Ok((entries, bad))
    }
}

/// RFC 4180 CSV of the entries, with a header row. A cell that a
/// spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR) gets a
/// leading `'`: audit data comes partly from what users typed.
pub fn to_csv(entries: &[AuditEntry]) -> String {
    let mut out = csv_line(["time", "user", "action", "target", "outcome", "ip"]);
    for e in entries {
        out.push_str(&csv_line([
            e.time.as_str(),
            &e.user,
            &e.action,
            &e.target,
            e.outcome.as_str(),
            &e.ip,
        ]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let e = AuditEntry::new("a,b", "login", "=cmd()", Outcome::Success, "\"x\"");
        let csv = to_csv(&[e]);
        let row = csv.lines().nth(1).unwrap();
        assert!(row.contains("\"a,b\""));
        assert!(row.contains(",'=cmd(),"));
        assert!(row.ends_with(",\"\"\"x\"\"\""));
    }

    #[test]
    fn entries_are_appended_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        log.record(&AuditEntry::new(
            "u",
            "login",
            "",
            Outcome::Failure,
            "1.2.3.4",
        ))
        .unwrap();
        log.record(&AuditEntry::new(
            "u",
            "login",
            "",
            Outcome::Success,
            "1.2.3.4",
        ))
        .unwrap();
        let (entries, bad) = log.read_all().unwrap();
        assert_eq!((entries.len(), bad), (2, 0));
        assert_eq!(entries[1].outcome, Outcome::Success);
    }

    #[test]
    fn an_entry_after_a_torn_write_is_kept_whole() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        let entry = |outcome| AuditEntry::new("u", "login", "", outcome, "1.2.3.4");
        log.record(&entry(Outcome::Failure)).unwrap();
        // A crash mid-append left half a line.
        let mut f = OpenOptions::new().append(true).open(log.path()).unwrap();
        f.write_all(br#"{"ts":"2026-12-06T00:00:00Z","user":"#)
            .unwrap();
        log.record(&entry(Outcome::Success)).unwrap();
        let (entries, bad) = log.read_all().unwrap();
        assert_eq!(
            (entries.len(), bad),
            (2, 0),
            "the torn half-line is gone, the new entry whole"
        );
        assert_eq!(entries[1].outcome, Outcome::Success);
    }
}
