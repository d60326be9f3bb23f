//! Append-only JSON Lines logs (the incidents log, the recertification
//! decisions): one JSON object per line, appended and fsynced one line at a
//! time, never rewritten.
//!
//! Appending ([`append`]): the directory is created private (0700) if
//! missing, the file 0600 with `O_APPEND`; the file is locked (`flock`,
//! exclusive) for the append; the line goes out in one write and is
//! fsynced; a file just created also has its directory fsynced, so the
//! file itself survives a crash and not only its contents.
//!
//! Torn lines: a record counts once its newline is on disk. A crash in the
//! middle of an append can leave a partial last line without its newline
//! (never a newline inside a record: JSON escapes them in strings). Reading
//! ([`read_all`]) ignores those bytes after the last newline, and every
//! record before them is returned; the next [`append`] cuts them off, under
//! the lock, before writing, so the new record starts a line of its own and
//! the torn bytes never end up in the middle of the log. A complete line
//! that does not parse is NOT skipped: it cannot come from a crash, so it
//! is an error naming the file and the line, and nothing is guessed.

use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::DashboardError;

/// An IO error on `path`, saying what was being done and what to check.
fn io_error(path: &Path, doing: &str, e: io::Error) -> DashboardError {
    let hint = match e.kind() {
        ErrorKind::PermissionDenied => "; the dashboard's user must own the file and its directory",
        ErrorKind::StorageFull => "; free some disk space and retry",
        _ => "",
    };
    DashboardError::io(
        path,
        io::Error::new(e.kind(), format!("{doing}: {e}{hint}")),
    )
}

/// Record `line` (1-based) of the log at `path` does not parse.
fn bad_line(path: &Path, line: usize, e: serde_json::Error) -> DashboardError {
    DashboardError::io(
        path,
        io::Error::new(
            ErrorKind::InvalidData,
            format!(
                "line {line} is not a valid record ({e}); this log is only ever appended to, \
                 so the file was edited or damaged: restore it from a backup, or remove \
                 that line by hand if losing that one record is acceptable"
            ),
        ),
    )
}

/// Creates `dir` and its missing parents, each 0700, and fsyncs the
/// directory that holds each one created, so the new entries are durable.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.as_os_str().is_empty() && !d.exists() {
        missing.push(d);
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    for created in missing {
        sync_dir(created.parent().unwrap_or(Path::new(".")))?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

/// Opens `path` for appending (and reading, to find a torn tail), creating
/// it 0600 if missing; also says whether this call created it.
fn open_append(path: &Path) -> io::Result<(File, bool)> {
    let mut opts = OpenOptions::new();
    opts.read(true).append(true).mode(0o600);
    loop {
        match opts.clone().create_new(true).open(path) {
            Ok(f) => return Ok((f, true)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        match opts.open(path) {
            Ok(f) => return Ok((f, false)),
            // Removed between the two opens: create it after all.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Cuts off the bytes after the last newline of `file` (a torn append),
/// if any; returns how many were cut.
fn cut_torn_tail(file: &mut File) -> io::Result<u64> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(0);
    }
    let mut all = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut all)?;
    let keep = all.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    file.set_len(keep as u64)?;
    Ok(all.len() as u64 - keep as u64)
}

/// Appends `record` to the log at `path` as one line, durably (see the
/// module documentation). Blocking; callers serialise their own writers
/// too, the file lock keeps out any other process.
pub(crate) fn append(path: &Path, record: &impl Serialize) -> Result<(), DashboardError> {
    let mut line = serde_json::to_vec(record).map_err(|e| {
        DashboardError::io(
            path,
            io::Error::new(
                ErrorKind::InvalidData,
                format!("could not encode a record for this log (a bug): {e}"),
            ),
        )
    })?;
    line.push(b'\n');
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir).map_err(|e| io_error(dir, "creating the log's directory", e))?;
    let (mut file, created) =
        open_append(path).map_err(|e| io_error(path, "opening the log to append", e))?;
    file.lock()
        .map_err(|e| io_error(path, "locking the log to append", e))?;
    let result = (|| {
        let cut = cut_torn_tail(&mut file)?;
        if cut > 0 {
            tracing::warn!(path = %path.display(), bytes = cut, "cut a torn last line off a log (a crash mid-append); no complete record is lost");
        }
        // One write with O_APPEND: the line lands whole at the end.
        file.write_all(&line)?;
        file.sync_data()
    })();
    let _ = file.unlock();
    result.map_err(|e| io_error(path, "appending to the log", e))?;
    if created {
        sync_dir(dir).map_err(|e| io_error(dir, "syncing the directory of a new log", e))?;
    }
    Ok(())
}

/// Every complete record of the log at `path`, in order; a missing file
/// has none. Bytes after the last newline are a torn append and are
/// ignored (see the module documentation); a complete line that does not
/// parse is an error.
pub(crate) fn read_all<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, DashboardError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(path, "reading the log", e)),
    };
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let mut out = Vec::new();
    for (n, line) in bytes[..complete].split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        out.push(serde_json::from_slice(line).map_err(|e| bad_line(path, n + 1, e))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Rec {
        n: u32,
        text: String,
    }

    fn rec(n: u32) -> Rec {
        Rec {
            n,
            text: format!("record {n}\nwith a newline inside"),
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn appended_records_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/log.jsonl");
        assert!(read_all::<Rec>(&path).unwrap().is_empty());
        for n in 1..=5 {
            append(&path, &rec(n)).unwrap();
        }
        let back: Vec<Rec> = read_all(&path).unwrap();
        assert_eq!(back, (1..=5).map(rec).collect::<Vec<_>>());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 5);
        assert!(text.ends_with("}\n"));
    }

    #[test]
    fn the_directory_and_the_file_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/log.jsonl");
        append(&path, &rec(1)).unwrap();
        assert_eq!(mode(&dir.path().join("new")), 0o700);
        assert_eq!(mode(&path), 0o600);
        // Appending to an existing file leaves it as it is.
        append(&path, &rec(2)).unwrap();
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn a_torn_last_line_is_ignored_then_cut_and_earlier_records_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        append(&path, &rec(1)).unwrap();
        append(&path, &rec(2)).unwrap();
        // A crash mid-append: part of a line, no newline.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"n\":3,\"te").unwrap();
        drop(f);
        assert_eq!(read_all::<Rec>(&path).unwrap(), [rec(1), rec(2)]);
        // Even a whole object without its newline was never acknowledged.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"xt\":\"x\"}").unwrap();
        drop(f);
        assert_eq!(read_all::<Rec>(&path).unwrap(), [rec(1), rec(2)]);

        append(&path, &rec(4)).unwrap();
        assert_eq!(read_all::<Rec>(&path).unwrap(), [rec(1), rec(2), rec(4)]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(!text.contains("\"te{"));
    }

    #[test]
    fn a_file_of_only_a_torn_line_reads_empty_and_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        std::fs::write(&path, b"{\"n\":1").unwrap();
        assert!(read_all::<Rec>(&path).unwrap().is_empty());
        append(&path, &rec(2)).unwrap();
        assert_eq!(read_all::<Rec>(&path).unwrap(), [rec(2)]);
    }

    #[test]
    fn a_bad_complete_line_is_an_error_naming_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        append(&path, &rec(1)).unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"not json\n").unwrap();
        drop(f);
        append(&path, &rec(3)).unwrap();
        let err = read_all::<Rec>(&path).unwrap_err().to_string();
        assert!(err.contains("log.jsonl"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("backup"), "{err}");
    }
}
