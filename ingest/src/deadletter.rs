//! Lines no adapter could parse are kept, scrubbed, in
//! `<data>/deadletter/YYYY-MM-DD.ndjson` (UTC day of recording), one JSON
//! object per line:
//!
//! ```json
//! {"ts":"2026-11-23T10:00:01.5Z","source":"gateway","file":"/var/log/kong/access.log","offset":18342,"reason":"field `status`: expected a number, found string","line":"{\"stream\":\"access\",\"status\":\"200\",\"patient\":\"p_1f0c9a7e3b2d4c5a\"...","line_bytes":412}
//! ```
//!
//! `line` is the line as lossy UTF-8, cut to its first 4 KiB and passed
//! through [`Pseudonymiser::redact_text`]; `line_bytes` is its full length.
//! The pipeline calls [`DeadLetters::flush_durable`] before it commits a
//! checkpoint past a dead line, so a dead letter is never lost.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::privacy::Pseudonymiser;

/// How much of a dead line is kept.
pub const MAX_LINE_BYTES: usize = 4096;

/// The folder below the data directory.
pub const DEADLETTER_DIR: &str = "deadletter";

/// The dead-letter files of one data directory.
#[derive(Debug)]
pub struct DeadLetters {
    dir: PathBuf,
    privacy: Pseudonymiser,
    /// The open day file: its date and writer.
    current: Option<(String, BufWriter<File>)>,
    /// Written since the last fsync.
    dirty: bool,
    /// A file was created since the last fsync (the folder needs one too).
    created: bool,
    counts: BTreeMap<String, u64>,
    /// Length of each file written by this instance as of the last flush,
    /// keyed by its path relative to the data directory.
    lengths: BTreeMap<String, u64>,
}

#[derive(Serialize)]
struct Entry<'a> {
    ts: String,
    source: &'a str,
    file: Option<&'a str>,
    offset: Option<u64>,
    reason: String,
    line: String,
    line_bytes: usize,
}

impl DeadLetters {
    /// Prepares `<data_dir>/deadletter/` (created if missing). Files are
    /// opened on the first record of each day, append-only, mode 0600.
    pub fn open(data_dir: &Path, privacy: &Pseudonymiser) -> io::Result<DeadLetters> {
        let dir = data_dir.join(DEADLETTER_DIR);
        fs::create_dir_all(&dir)?;
        Ok(DeadLetters {
            dir,
            privacy: privacy.clone(),
            current: None,
            dirty: false,
            created: false,
            counts: BTreeMap::new(),
            lengths: BTreeMap::new(),
        })
    }

    /// The folder the files are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Keeps one dead line: `reason` (scrubbed of tokens and references,
    /// though adapters never put raw values in it) and the line (scrubbed
    /// with [`Pseudonymiser::redact_text`], first 4 KiB).
    pub fn record(
        &mut self,
        source: &str,
        file: Option<&str>,
        offset: Option<u64>,
        reason: &str,
        line: &[u8],
    ) -> io::Result<()> {
        let now = OffsetDateTime::now_utc();
        let kept = &line[..line.len().min(MAX_LINE_BYTES)];
        let entry = Entry {
            ts: now.format(&Rfc3339).unwrap_or_default(),
            source,
            file,
            offset,
            reason: self.privacy.redact_reason(reason),
            line: self.privacy.redact_text(&String::from_utf8_lossy(kept)),
            line_bytes: line.len(),
        };
        let mut json = serde_json::to_vec(&entry).map_err(io::Error::other)?;
        json.push(b'\n');
        let writer = self.writer(&now.date().to_string())?;
        writer.write_all(&json)?;
        self.dirty = true;
        *self.counts.entry(source.to_string()).or_insert(0) += 1;
        Ok(())
    }

    /// The writer for `date`, rotating (and syncing the previous day's file).
    fn writer(&mut self, date: &str) -> io::Result<&mut BufWriter<File>> {
        if self.current.as_ref().is_some_and(|(d, _)| d != date) {
            if let Some((old_date, mut old)) = self.current.take() {
                old.flush()?;
                old.get_ref().sync_data()?;
                let len = old.get_ref().metadata()?.len();
                self.lengths
                    .insert(format!("{DEADLETTER_DIR}/{old_date}.ndjson"), len);
            }
        }
        if self.current.is_none() {
            let path = self.dir.join(format!("{date}.ndjson"));
            self.created |= !path.exists();
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&path)?;
            self.current = Some((date.to_string(), BufWriter::with_capacity(64 * 1024, file)));
        }
        Ok(&mut self.current.as_mut().expect("opened above").1)
    }

    /// Writes out and fsyncs what was recorded (and the folder, when a file
    /// was created), so it survives a crash. The pipeline calls this before
    /// committing a checkpoint.
    pub fn flush_durable(&mut self) -> io::Result<()> {
        if let Some((date, w)) = self.current.as_mut() {
            if self.dirty {
                w.flush()?;
                w.get_ref().sync_data()?;
                let len = w.get_ref().metadata()?.len();
                self.lengths
                    .insert(format!("{DEADLETTER_DIR}/{date}.ndjson"), len);
            }
        }
        self.dirty = false;
        if self.created {
            File::open(&self.dir)?.sync_all()?;
            self.created = false;
        }
        Ok(())
    }

    /// Durable length of each file written, relative to the data directory,
    /// as of the last [`DeadLetters::flush_durable`]: the lake journal keeps
    /// it so a crash before the next commit cuts later entries off (their
    /// lines are read again).
    pub fn lengths(&self) -> &BTreeMap<String, u64> {
        &self.lengths
    }

    /// Dead letters recorded by this instance, per source.
    pub fn counts(&self) -> &BTreeMap<String, u64> {
        &self.counts
    }

    /// All dead letters recorded by this instance.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_scrubbed_counted_and_durable() {
        let dir = tempfile::tempdir().unwrap();
        let p = Pseudonymiser::from_key([3; 32]);
        let mut dl = DeadLetters::open(dir.path(), &p).unwrap();
        let line = br#"{"stream":"access","patient":"pat-777","token":"Bearer s3cr3t-0paque-t0ken-value-123"#;
        dl.record(
            "gw",
            Some("/var/log/gw.log"),
            Some(10),
            "truncated JSON at column 80",
            line,
        )
        .unwrap();
        dl.record("gw", None, None, "invalid UTF-8 at byte 1", b"\xff\xfe")
            .unwrap();
        dl.record(
            "kc",
            Some("/k"),
            Some(0),
            "unknown stream `x`",
            &vec![b'a'; 10_000],
        )
        .unwrap();
        dl.flush_durable().unwrap();
        assert_eq!(dl.counts()["gw"], 2);
        assert_eq!(dl.counts()["kc"], 1);
        assert_eq!(dl.total(), 3);
        let files: Vec<_> = fs::read_dir(dl.dir()).unwrap().collect();
        assert_eq!(files.len(), 1);
        let path = files[0].as_ref().unwrap().path();
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains("pat-777"), "{text}");
        assert!(!text.contains("s3cr3t"), "{text}");
        let entries: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0]["source"], "gw");
        assert_eq!(entries[0]["offset"], 10);
        assert_eq!(entries[0]["reason"], "truncated JSON at column 80");
        assert_eq!(entries[1]["file"], serde_json::Value::Null);
        assert_eq!(entries[2]["line_bytes"], 10_000);
        assert!(entries[2]["line"].as_str().unwrap().len() <= MAX_LINE_BYTES + 64);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0);
    }
}
