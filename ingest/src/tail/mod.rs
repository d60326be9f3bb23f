//! File tailing: follows log files, directories and globs, hands out new
//! complete lines, and keeps an exact position per file so that a restart
//! from the last committed [`Checkpoints`] re-delivers exactly the lines
//! after it (nothing lost, nothing duplicated).
//!
//! # Identity
//! A file is known by its *key*, a hash of its first line (see
//! `fingerprint`), and while it is open by its device and inode. The key
//! survives rename, copy and gzip, so a position carries over to any copy;
//! the caller builds event ids from key + offset. Two files must therefore
//! not start with the same line (real logs start with a timestamp); if they
//! do, the second is taken for a copy of the first.
//!
//! # Rules
//! * **Rename rotation**: the open file is followed by inode to its new name
//!   and read to its end; the new file at the old name is read from 0.
//!   Files are read in the order they were opened (within one scan: those
//!   continuing a known position first, then by mtime), so the old file's
//!   lines come first.
//! * **Copy-truncate**: while the original still has the key, a copy with
//!   the same key is left alone (the original has everything the copy has,
//!   and maybe more). Once the original is truncated (it shrank, or its
//!   first line changed) the copy, if watched, takes over the position; the
//!   original is a new file read from 0. When the original was read further
//!   than the copy holds (lines written between copy and truncate), the copy
//!   keeps that position and has nothing more to give, also after a restart:
//!   a record's device and inode are those of the file the position was
//!   *advanced* in. Lines written between copy and truncate and not read
//!   from the original in time are lost, inherently to copytruncate; a copy
//!   that is not watched loses what was not read before the truncation.
//! * **Truncation / replacement in place**: a file that shrank below the size
//!   it had, or whose first line changed, is a new file read from 0. After a
//!   restart, a stored offset beyond the end of the same inode means the
//!   same. Lines not yet read when a file is truncated are lost: nothing can
//!   read them any more.
//! * **Gone files**: a file no longer found (deleted, or renamed out of the
//!   watched paths) is still read through its open descriptor to its end,
//!   and closed once at its end and gone for `rotate_wait`; a copy with its
//!   key (say its `.gz`) waits meanwhile. It is checked for truncation
//!   through the descriptor too: rewritten, it gets the key of its new
//!   content, read from 0. Its position record is kept for `retain_gone`, so
//!   a `.gz` copy that shows up later resumes there.
//! * **Gzip**: a `*.gz` file is read through `MultiGzDecoder`, offsets in
//!   decompressed bytes, once to its end, then marked done. A stream cut
//!   short (still being written) is retried once the file changes. A final
//!   line without newline in a finished archive is delivered as is, since
//!   the archive can no longer grow.
//! * **Start**: `StartAt::End` applies only to files found by the first
//!   scan, with no stored position, through a configured path none of whose
//!   stored positions match (a path that is resumed gets its unknown files
//!   from 0: they appeared while scopewatch was down). Files that appear
//!   later are read from 0, or their first line would be lost to rotation.
//! * **Lines**: end with `\n`; a trailing `\r` is stripped; a partial last
//!   line waits for its newline. A line longer than `max_line_bytes` is
//!   delivered once, cut to that length, with `oversized` and its full
//!   length; its remainder is skipped without being buffered.
//!
//! Paths: a file; a directory, meaning its regular files (not recursive);
//! or a glob with `*` and `?` in the last component. Hidden files (leading
//! `.`) are skipped unless the glob names them, as a shell would.
//!
//! Notify wakes [`Tailer::wait`] early; every `poll_interval` the paths are
//! scanned anyway, so a missed or unsupported event only costs latency.

mod checkpoint;
mod error;
mod fingerprint;
mod pattern;
mod split;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flate2::bufread::MultiGzDecoder;
use notify::Watcher;

pub use checkpoint::{Checkpoints, FilePosition, CHECKPOINT_VERSION};
pub use error::TailError;
pub use split::{Batch, Line, LineRef};

use fingerprint::Fingerprint;
use pattern::Pattern;
use split::{find_newline, Entry, FileRef};

/// Bytes asked of the OS (or the decompressor) per read.
const BLOCK: usize = 1 << 20;
/// Compressed bytes buffered in front of the gzip decoder.
const GZ_INPUT_BUF: usize = 256 * 1024;

/// Where to start in a file seen for the first time (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    #[default]
    Beginning,
    End,
}

/// What to tail and how.
#[derive(Debug, Clone)]
pub struct TailConfig {
    /// Files, directories (every non-hidden regular file in them) or globs
    /// (`*` and `?` in the last component, e.g. `/var/log/kc/*.log*`).
    pub paths: Vec<String>,
    pub start_at: StartAt,
    /// Longer lines are cut to this length and flagged `oversized`.
    pub max_line_bytes: usize,
    /// How often paths are scanned for new, rotated and truncated files
    /// whatever notify says. Zero scans on every read.
    pub poll_interval: Duration,
    /// At most this many bytes are read per [`Tailer::read_available`].
    pub batch_bytes: usize,
    /// How long the position of a file that is gone is remembered.
    pub retain_gone: Duration,
    /// How long a file that is gone (renamed away, deleted) is kept open
    /// after it was read to its end, for late writes of its writer.
    pub rotate_wait: Duration,
    /// Use filesystem notifications to wake up early (polling stays on).
    pub notify: bool,
}

impl Default for TailConfig {
    fn default() -> Self {
        TailConfig {
            paths: Vec::new(),
            start_at: StartAt::Beginning,
            max_line_bytes: 1 << 20,
            poll_interval: Duration::from_millis(250),
            batch_bytes: 8 << 20,
            retain_gone: Duration::from_secs(24 * 3600),
            rotate_wait: Duration::from_secs(5),
            notify: true,
        }
    }
}

/// One open file, for telemetry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStat {
    pub path: PathBuf,
    pub file_key: String,
    /// Offset after the last delivered line.
    pub offset: u64,
    /// Size on disk at the last scan (compressed size for `.gz`, so `size -
    /// offset` is the lag only for plain files).
    pub size: u64,
    pub gz: bool,
    /// No longer found at any watched path; read to its end, then closed.
    pub gone: bool,
}

type InodeId = (u64, u64);
type Mtime = (i64, i64);

/// A file found by a scan.
#[derive(Debug)]
struct Found {
    path: PathBuf,
    id: InodeId,
    len: u64,
    mtime: Mtime,
    gz: bool,
    pattern: usize,
}

/// A fingerprint remembered for a file that is not open, valid while its
/// size and mtime are unchanged.
#[derive(Debug)]
struct Seen {
    len: u64,
    mtime: Mtime,
    fp: Option<Fingerprint>,
}

#[derive(Debug)]
struct Handle {
    key: String,
    path: PathBuf,
    id: InodeId,
    gz: bool,
    file: File,
    /// gz only; `None` until started and after the stream stalled.
    decoder: Option<MultiGzDecoder<BufReader<File>>>,
    fp_len: usize,
    /// After the last delivered line.
    offset: u64,
    /// Stream bytes consumed: `offset` + the pending partial line.
    read_pos: u64,
    /// gz with `StartAt::End`: decompress to the end, deliver nothing.
    skip_to_end: bool,
    /// The first `max_line_bytes` bytes of the partial line.
    pending: Vec<u8>,
    /// Full length of the partial line so far.
    pending_len: u64,
    /// Last byte of the partial line (for `\r` once its start was cut).
    last_byte: u8,
    /// The file had at least this many bytes: shrinking below is truncation.
    floor: u64,
    seen_len: u64,
    seen_mtime: Mtime,
    gone_since: Option<Instant>,
    at_eof: bool,
    /// Reading failed (cut-short gzip, IO error): wait until the file changes.
    stalled: bool,
}

enum Outcome {
    Eof,
    Budget,
    Failed(io::Error),
}

impl Handle {
    fn read_chunk(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let r = match &mut self.decoder {
                Some(d) => d.read(buf),
                None if self.gz => Err(io::Error::other("gzip stream not started")),
                None => self.file.read(buf),
            };
            match r {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }

    /// Notes the file's current size and mtime. Returns whether it is no
    /// longer the file it was keyed as (it shrank, or its first line
    /// changed; a gzip file never changes) and whether it changed at all.
    fn observe(&mut self, len: u64, mtime: Mtime) -> (bool, bool) {
        let changed = (len, mtime) != (self.seen_len, self.seen_mtime);
        self.seen_len = len;
        self.seen_mtime = mtime;
        let replaced = !self.gz
            && (len < self.floor
                || (changed
                    && !fingerprint::still_matches(&self.file, self.fp_len, &self.key)
                        .unwrap_or(true)));
        if !replaced {
            self.floor = self.floor.max(len);
        }
        (replaced, changed)
    }

    /// Positions the stream at `offset`, forgetting any partial line.
    fn restart(&mut self) -> io::Result<()> {
        self.pending.clear();
        self.pending_len = 0;
        self.last_byte = b'\n';
        self.stalled = false;
        self.at_eof = false;
        if self.gz {
            // A gzip stream cannot seek: decompress from the start and
            // discard up to `offset` (see `read`).
            self.decoder = None;
            self.file.seek(SeekFrom::Start(0))?;
            let input = BufReader::with_capacity(GZ_INPUT_BUF, self.file.try_clone()?);
            self.decoder = Some(MultiGzDecoder::new(input));
            self.read_pos = 0;
        } else {
            self.file.seek(SeekFrom::Start(self.offset))?;
            self.read_pos = self.offset;
        }
        Ok(())
    }

    /// Adds the line of `len` bytes (without its terminator of `term`
    /// bytes) starting at `start` in `out.data` and moves past it.
    #[allow(clippy::too_many_arguments)]
    fn push_line(
        &mut self,
        out: &mut Batch,
        file_idx: &mut Option<u32>,
        start: usize,
        len: u64,
        last: u8,
        term: u64,
        max_line: usize,
    ) {
        let cr = len > 0 && last == b'\r';
        let content = len - cr as u64;
        let idx = *file_idx.get_or_insert_with(|| {
            out.files.push(FileRef {
                key: self.key.clone(),
                path: self.path.clone(),
            });
            (out.files.len() - 1) as u32
        });
        out.lines.push(Entry {
            file: idx,
            offset: self.offset,
            end: self.offset + len + term,
            start,
            len: content.min(max_line as u64) as usize,
            oversized: content > max_line as u64,
            full_len: content,
        });
        self.offset += len + term;
    }

    /// Reads complete lines into `out` until the end of the file or of the
    /// budget.
    fn read(
        &mut self,
        out: &mut Batch,
        budget: &mut usize,
        max_line: usize,
        scratch: &mut Vec<u8>,
    ) -> Outcome {
        // gz: skip what was delivered before (decompressed, not returned).
        while self.gz && (self.read_pos < self.offset || self.skip_to_end) {
            if *budget == 0 {
                return Outcome::Budget;
            }
            let mut want = BLOCK.min(*budget);
            if !self.skip_to_end {
                want = want.min((self.offset - self.read_pos) as usize);
            }
            scratch.resize(want, 0);
            match self.read_chunk(&mut scratch[..want]) {
                Ok(0) if self.skip_to_end => {
                    self.offset = self.read_pos;
                    self.skip_to_end = false;
                    return Outcome::Eof;
                }
                // The archive is shorter than the position: it was made
                // before the original was read further. Nothing to add.
                Ok(0) => return Outcome::Eof,
                Ok(n) => {
                    self.read_pos += n as u64;
                    *budget = budget.saturating_sub(n);
                }
                Err(e) => return Outcome::Failed(e),
            }
        }

        let mut file_idx: Option<u32> = None;
        let mut line_start = out.data.len();
        out.data.extend_from_slice(&self.pending);
        self.pending.clear();
        let mut cur = self.pending_len;
        let mut last = self.last_byte;
        let outcome = loop {
            if *budget == 0 {
                break Outcome::Budget;
            }
            let want = BLOCK.min(*budget);
            let before = out.data.len();
            // Read straight into the batch buffer: lines become ranges of
            // it, no copy per line.
            out.data.resize(before + want, 0);
            let n = match self.read_chunk(&mut out.data[before..]) {
                Ok(n) => n,
                Err(e) => {
                    out.data.truncate(before);
                    break Outcome::Failed(e);
                }
            };
            out.data.truncate(before + n);
            if n == 0 {
                break Outcome::Eof;
            }
            self.read_pos += n as u64;
            if !self.gz {
                self.floor = self.floor.max(self.read_pos);
            }
            *budget = budget.saturating_sub(n);
            let mut pos = before;
            while let Some(i) = find_newline(&out.data[pos..]) {
                let nl = pos + i;
                cur += (nl - pos) as u64;
                if nl > pos {
                    last = out.data[nl - 1];
                }
                self.push_line(out, &mut file_idx, line_start, cur, last, 1, max_line);
                cur = 0;
                last = b'\n';
                pos = nl + 1;
                line_start = pos;
            }
            if pos < out.data.len() {
                cur += (out.data.len() - pos) as u64;
                last = out.data[out.data.len() - 1];
            }
            // An oversized line keeps only its first `max_line` bytes:
            // memory does not grow with the line.
            if out.data.len() - line_start > max_line {
                out.data.truncate(line_start + max_line);
            }
            // A short read of a regular file means its end for now; saves
            // one syscall per file and call.
            if !self.gz && n < want {
                break Outcome::Eof;
            }
        };

        // A finished archive's unterminated last line is complete: the
        // archive cannot grow.
        if self.gz && cur > 0 && matches!(outcome, Outcome::Eof) {
            self.push_line(out, &mut file_idx, line_start, cur, last, 0, max_line);
            cur = 0;
            line_start = out.data.len();
        }
        self.pending.extend_from_slice(&out.data[line_start..]);
        out.data.truncate(line_start);
        self.pending_len = cur;
        self.last_byte = last;
        outcome
    }
}

/// Wakes `wait` when notify reports a change.
#[derive(Debug, Default)]
struct Signal {
    changed: Mutex<bool>,
    cv: Condvar,
}

impl Signal {
    fn raise(&self) {
        *self.changed.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cv.notify_all();
    }

    fn take(&self) -> bool {
        std::mem::take(&mut *self.changed.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn wait(&self, limit: Duration) {
        let guard = self.changed.lock().unwrap_or_else(|e| e.into_inner());
        let _unused = self
            .cv
            .wait_timeout_while(guard, limit, |changed| !*changed)
            .unwrap_or_else(|e| e.into_inner());
    }
}

#[derive(Debug)]
struct Watch {
    watcher: notify::RecommendedWatcher,
    /// Directories watched so far; the others are retried at each scan
    /// (they may not exist yet).
    watched: HashSet<PathBuf>,
}

/// Follows the configured files. Used from one thread.
#[derive(Debug)]
pub struct Tailer {
    cfg: TailConfig,
    patterns: Vec<Pattern>,
    /// Per pattern: some restored position lies under it, so files unknown
    /// to the checkpoint are new since the last run (read from 0).
    resuming: Vec<bool>,
    records: HashMap<String, FilePosition>,
    /// Open files, oldest first (rotated files are finished first).
    handles: Vec<Handle>,
    seen: HashMap<InodeId, Seen>,
    warned_files: HashSet<InodeId>,
    warned_paths: HashSet<PathBuf>,
    first_scan: bool,
    last_scan: Option<Instant>,
    /// The last read stopped on the byte budget: more is there already.
    more: bool,
    scratch: Vec<u8>,
    signal: Arc<Signal>,
    watch: Option<Watch>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn is_gz(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// Offset after the last newline of a file of `len` bytes: where `End`
/// starts, so that a line being written is delivered whole.
fn end_of_last_line(file: &File, len: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut hi = len;
    while hi > 0 {
        let lo = hi.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(hi - lo) as usize];
        file.read_exact_at(chunk, lo)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(lo + i as u64 + 1);
        }
        hi = lo;
    }
    Ok(0)
}

/// Where to resume a file of `len` bytes found with the key of `r`.
fn resume_offset(r: &FilePosition, id: InodeId, len: u64, gz: bool) -> u64 {
    if !gz && (r.dev, r.inode) == id && len < r.offset {
        // The same inode shorter than the position, with the same first
        // line: truncated and rewritten while we were not looking.
        0
    } else {
        // Another inode may hold less than the position: a copy made
        // before the original was read further. Nothing to add then.
        r.offset
    }
}

/// Makes the position record of key `h.key` follow the open file `h`.
/// Device, inode and `gz` of an existing record stay those of the file the
/// position was reached in until `h` advances it: a copy opened beyond its
/// end must not look like that file truncated after a restart.
fn upsert_record(records: &mut HashMap<String, FilePosition>, h: &Handle) {
    let rec = records
        .entry(h.key.clone())
        .or_insert_with(|| FilePosition {
            key: h.key.clone(),
            path: String::new(),
            dev: h.id.0,
            inode: h.id.1,
            offset: h.offset,
            gz: h.gz,
            done: false,
            gone_since: None,
        });
    rec.path = h.path.to_string_lossy().into_owned();
    if rec.offset != h.offset {
        (rec.dev, rec.inode) = h.id;
        rec.offset = h.offset;
        rec.gz = h.gz;
    }
    rec.done = false;
    rec.gone_since = None;
}

impl Tailer {
    /// Starts tailing from `restored` positions (empty on a first run). Files
    /// are looked for at once; nothing is read until `read_available`.
    pub fn new(config: TailConfig, restored: Checkpoints) -> Result<Tailer, TailError> {
        if config.paths.is_empty() {
            return Err(TailError::Config("no paths to tail were given".to_string()));
        }
        if config.max_line_bytes == 0 {
            return Err(TailError::Config(
                "max_line_bytes must be at least 1".to_string(),
            ));
        }
        if config.batch_bytes == 0 {
            return Err(TailError::Config(
                "batch_bytes must be at least 1".to_string(),
            ));
        }
        let patterns = config
            .paths
            .iter()
            .map(|p| Pattern::parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        let resuming = patterns
            .iter()
            .map(|p| restored.files.iter().any(|f| p.covers(Path::new(&f.path))))
            .collect();
        let records = restored
            .files
            .into_iter()
            .map(|f| (f.key.clone(), f))
            .collect();
        let signal = Arc::new(Signal::default());
        let watch = if config.notify {
            let s = Arc::clone(&signal);
            let handler = move |res: notify::Result<notify::Event>| match res {
                // Our own opens and reads are access events: ignore them or
                // we would keep waking ourselves.
                Ok(ev) if matches!(ev.kind, notify::EventKind::Access(_)) => {}
                _ => s.raise(),
            };
            match notify::recommended_watcher(handler) {
                Ok(watcher) => Some(Watch {
                    watcher,
                    watched: HashSet::new(),
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "filesystem notifications unavailable; polling only");
                    None
                }
            }
        } else {
            None
        };
        let mut t = Tailer {
            cfg: config,
            patterns,
            resuming,
            records,
            handles: Vec::new(),
            seen: HashMap::new(),
            warned_files: HashSet::new(),
            warned_paths: HashSet::new(),
            first_scan: true,
            last_scan: None,
            more: false,
            scratch: Vec::new(),
            signal,
            watch,
        };
        t.scan();
        Ok(t)
    }

    /// Looks for new, rotated and truncated files when due, then reads the
    /// complete lines available now, at most `batch_bytes`. Never blocks
    /// waiting for data.
    pub fn read_available(&mut self) -> Result<Batch, TailError> {
        let changed = self.signal.take();
        let due = self
            .last_scan
            .is_none_or(|t| t.elapsed() >= self.cfg.poll_interval);
        if changed || due {
            self.scan();
        }
        let mut out = Batch::default();
        let mut budget = self.cfg.batch_bytes;
        let max_line = self.cfg.max_line_bytes;
        self.more = false;
        let mut finished = Vec::new();
        for idx in 0..self.handles.len() {
            if budget == 0 {
                self.more = true;
                break;
            }
            let h = &mut self.handles[idx];
            if h.stalled {
                continue;
            }
            let outcome = h.read(&mut out, &mut budget, max_line, &mut self.scratch);
            let rec = self
                .records
                .get_mut(&h.key)
                .expect("every open file has a record");
            if rec.offset != h.offset {
                rec.offset = h.offset;
                (rec.dev, rec.inode) = h.id;
                rec.gz = h.gz;
            }
            match outcome {
                Outcome::Eof => {
                    h.at_eof = true;
                    if h.gz {
                        rec.done = true;
                        finished.push(idx);
                    }
                }
                Outcome::Budget => {
                    h.at_eof = false;
                    self.more = true;
                }
                Outcome::Failed(e) => {
                    h.stalled = true;
                    h.decoder = None;
                    if h.gz && e.kind() == io::ErrorKind::UnexpectedEof {
                        tracing::debug!(path = %h.path.display(), "gzip file ends early (still being written?); retrying when it changes");
                    } else if self.warned_files.insert(h.id) {
                        tracing::warn!(path = %h.path.display(), error = %e, "cannot read log file; skipping it until it changes");
                    }
                }
            }
        }
        for idx in finished.into_iter().rev() {
            let h = self.handles.remove(idx);
            // Remembered so the next scans skip it without decompressing.
            self.seen.insert(
                h.id,
                Seen {
                    len: h.seen_len,
                    mtime: h.seen_mtime,
                    fp: Some(Fingerprint {
                        key: h.key,
                        len: h.fp_len,
                    }),
                },
            );
        }
        metrics::counter!("scopewatch_tail_lines_total").increment(out.lines.len() as u64);
        metrics::counter!("scopewatch_tail_bytes_total")
            .increment((self.cfg.batch_bytes - budget) as u64);
        metrics::gauge!("scopewatch_tail_open_files").set(self.handles.len() as f64);
        Ok(out)
    }

    /// Positions after everything returned so far: what to commit once
    /// those lines are durable.
    pub fn positions(&self) -> Checkpoints {
        let mut files: Vec<FilePosition> = self.records.values().cloned().collect();
        files.sort_by(|a, b| a.key.cmp(&b.key));
        Checkpoints { files }
    }

    /// Blocks until notify reports a change, `poll_interval` passed, or
    /// `timeout`, whichever comes first. Returns at once when the last read
    /// stopped on its byte budget.
    pub fn wait(&mut self, timeout: Duration) {
        if self.more {
            return;
        }
        let limit = timeout.min(self.cfg.poll_interval);
        if self.watch.is_some() {
            self.signal.wait(limit);
        } else {
            std::thread::sleep(limit);
        }
    }

    /// The last `read_available` stopped on its byte budget: more is
    /// available already, call it again without waiting.
    pub fn more_available(&self) -> bool {
        self.more
    }

    /// The open files and how far they were read.
    pub fn file_stats(&self) -> Vec<FileStat> {
        self.handles
            .iter()
            .map(|h| FileStat {
                path: h.path.clone(),
                file_key: h.key.clone(),
                offset: h.offset,
                size: h.seen_len,
                gz: h.gz,
                gone: h.gone_since.is_some(),
            })
            .collect()
    }

    fn warn_file(&mut self, id: InodeId, path: &Path, e: &io::Error) {
        if self.warned_files.insert(id) {
            tracing::warn!(path = %path.display(), error = %e, "cannot read log file; skipping it until it becomes readable");
        }
    }

    fn watch_dirs(&mut self) {
        let Some(w) = &mut self.watch else { return };
        for p in &self.patterns {
            for dir in p.watch_dirs() {
                if !w.watched.contains(&dir)
                    && w.watcher
                        .watch(&dir, notify::RecursiveMode::NonRecursive)
                        .is_ok()
                {
                    w.watched.insert(dir);
                }
            }
        }
    }

    /// The fingerprint of a file that is not open, from the cache while its
    /// size and mtime are unchanged.
    fn fingerprint_of(&mut self, f: &Found) -> Option<Fingerprint> {
        if let Some(s) = self.seen.get(&f.id) {
            if s.len == f.len && s.mtime == f.mtime {
                return s.fp.clone();
            }
        }
        let fp = File::open(&f.path).and_then(|file| {
            if f.gz {
                fingerprint::gz(&file)
            } else {
                fingerprint::plain(&file)
            }
        });
        let fp = match fp {
            Ok(fp) => fp,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                self.warn_file(f.id, &f.path, &e);
                // Cached as "nothing yet": retried once the file changes.
                None
            }
        };
        self.seen.insert(
            f.id,
            Seen {
                len: f.len,
                mtime: f.mtime,
                fp: fp.clone(),
            },
        );
        fp
    }

    fn open(
        &mut self,
        f: &Found,
        fp: &Fingerprint,
        offset: Option<u64>,
    ) -> io::Result<Option<Handle>> {
        let file = File::open(&f.path)?;
        let m = file.metadata()?;
        if (m.dev(), m.ino()) != f.id {
            // Replaced since it was listed: the next scan sees the new one.
            return Ok(None);
        }
        // The cached fingerprint may be stale: check the descriptor we keep.
        let now = if f.gz {
            fingerprint::gz(&file)?
        } else {
            fingerprint::plain(&file)?
        };
        if now.as_ref() != Some(fp) {
            return Ok(None);
        }
        let (offset, skip_to_end) = match offset {
            Some(o) => (o, false),
            None if f.gz => (0, true),
            None => (end_of_last_line(&file, m.len())?, false),
        };
        let mut h = Handle {
            key: fp.key.clone(),
            path: f.path.clone(),
            id: f.id,
            gz: f.gz,
            file,
            decoder: None,
            fp_len: fp.len,
            offset,
            read_pos: offset,
            skip_to_end,
            pending: Vec::new(),
            pending_len: 0,
            last_byte: b'\n',
            floor: m.len(),
            seen_len: f.len,
            seen_mtime: f.mtime,
            gone_since: None,
            at_eof: false,
            stalled: false,
        };
        h.restart()?;
        Ok(Some(h))
    }

    /// Gives the gone handle `i`, whose inode was truncated and rewritten,
    /// the key of its new content, read from the start (or from a position
    /// known for that key). False when it has no complete first line or
    /// another open file has that key: then it is closed.
    fn rekey(&mut self, i: usize) -> bool {
        let fp = match fingerprint::plain(&self.handles[i].file) {
            Ok(Some(fp)) => fp,
            _ => return false,
        };
        if self
            .handles
            .iter()
            .enumerate()
            .any(|(j, o)| j != i && o.key == fp.key)
        {
            return false;
        }
        let h = &mut self.handles[i];
        h.offset = self
            .records
            .get(&fp.key)
            .map_or(0, |r| resume_offset(r, h.id, h.seen_len, false));
        h.key = fp.key;
        h.fp_len = fp.len;
        h.floor = h.seen_len;
        if h.restart().is_err() {
            return false;
        }
        upsert_record(&mut self.records, h);
        true
    }

    fn scan(&mut self) {
        self.last_scan = Some(Instant::now());
        self.watch_dirs();
        let now = Instant::now();
        let now_unix = unix_now();

        let mut listed = Vec::new();
        let mut pattern_of = Vec::new();
        for (i, p) in self.patterns.iter().enumerate() {
            let before = listed.len();
            p.expand(&mut listed, &mut self.warned_paths);
            pattern_of.resize(listed.len(), i);
            debug_assert!(pattern_of.len() >= before);
        }
        // One entry per inode: a file matched twice (or hard-linked) is one file.
        let mut found = Vec::new();
        let mut by_inode: HashMap<InodeId, usize> = HashMap::new();
        for ((path, m), pattern) in listed.into_iter().zip(pattern_of) {
            let id = (m.dev(), m.ino());
            if by_inode.contains_key(&id) {
                continue;
            }
            by_inode.insert(id, found.len());
            found.push(Found {
                gz: is_gz(&path),
                path,
                id,
                len: m.len(),
                mtime: (m.mtime(), m.mtime_nsec()),
                pattern,
            });
        }

        // 1. Files already open: follow renames, notice truncation. Files
        // that are gone are checked through their descriptor: they may have
        // been truncated and rewritten before they went.
        let mut claimed: HashSet<InodeId> = HashSet::new();
        let mut i = 0;
        while i < self.handles.len() {
            let h = &mut self.handles[i];
            let here = by_inode.get(&h.id).map(|&fi| &found[fi]);
            let (len, mtime) = match here {
                Some(f) => (f.len, f.mtime),
                None => match h.file.metadata() {
                    Ok(m) => (m.len(), (m.mtime(), m.mtime_nsec())),
                    Err(_) => (h.seen_len, h.seen_mtime),
                },
            };
            let (replaced, changed) = h.observe(len, mtime);
            if let Some(f) = here {
                h.path.clone_from(&f.path);
                h.gone_since = None;
            }
            if replaced {
                tracing::info!(path = %h.path.display(), "log file was truncated or replaced in place; reading it from the start as a new file");
                // A file still found goes through step 2 as a new file; one
                // that is gone can only be read through our descriptor.
                if here.is_some() || !self.rekey(i) {
                    self.handles.remove(i);
                    continue;
                }
            }
            let h = &mut self.handles[i];
            if let Some(f) = here {
                if let Some(r) = self.records.get_mut(&h.key) {
                    r.path = f.path.to_string_lossy().into_owned();
                }
                if h.stalled && changed {
                    if let Err(e) = h.restart() {
                        let (id, path) = (h.id, h.path.clone());
                        self.handles.remove(i);
                        self.warn_file(id, &path, &e);
                        continue;
                    }
                }
                claimed.insert(h.id);
            } else {
                let since = match h.gone_since {
                    Some(t) => t,
                    None => {
                        // Must be read to its end after it went: its writer
                        // may have added lines since the last read.
                        h.at_eof = false;
                        *h.gone_since.insert(now)
                    }
                };
                let drained = h.stalled || (h.at_eof && (h.gz || len <= h.read_pos));
                if drained && now.duration_since(since) >= self.cfg.rotate_wait {
                    tracing::debug!(path = %h.path.display(), "closing log file that is gone");
                    self.handles.remove(i);
                    continue;
                }
            }
            i += 1;
        }

        // 2. Files not open: new ones, copies, archives.
        let mut present: HashSet<String> = self.handles.iter().map(|h| h.key.clone()).collect();
        let mut candidates = Vec::new();
        for f in &found {
            if claimed.contains(&f.id) {
                continue;
            }
            let f = Found {
                path: f.path.clone(),
                ..*f
            };
            if let Some(fp) = self.fingerprint_of(&f) {
                present.insert(fp.key.clone());
                candidates.push((f, fp));
            }
        }
        // Of several files with one key, open the one the position was
        // taken in, else a plain file before an archive; the others are
        // copies, left alone while it is open.
        candidates.sort_by(|(fa, pa), (fb, pb)| {
            let rank = |f: &Found, p: &Fingerprint| {
                let same = self
                    .records
                    .get(&p.key)
                    .is_some_and(|r| (r.dev, r.inode) == f.id);
                (!same, f.gz)
            };
            (&pa.key, rank(fa, pa), &fa.path).cmp(&(&pb.key, rank(fb, pb), &fb.path))
        });
        candidates.dedup_by(|b, a| a.1.key == b.1.key);
        // Files continuing a known position first, then oldest first: the
        // rotated files' lines come before the live file's.
        candidates.sort_by_cached_key(|(f, p)| {
            (!self.records.contains_key(&p.key), f.mtime, f.path.clone())
        });
        for (f, fp) in candidates {
            if self.handles.iter().any(|h| h.key == fp.key) {
                // A copy of a file still open under this key: the open one
                // has at least as much; this one takes over if it goes.
                continue;
            }
            let offset = match self.records.get(&fp.key) {
                Some(r) if r.done && f.gz => continue,
                Some(r) => Some(resume_offset(r, f.id, f.len, f.gz)),
                None if self.first_scan
                    && self.cfg.start_at == StartAt::End
                    && !self.resuming[f.pattern] =>
                {
                    None
                }
                None => Some(0),
            };
            match self.open(&f, &fp, offset) {
                Ok(Some(h)) => {
                    upsert_record(&mut self.records, &h);
                    self.seen.remove(&h.id);
                    self.handles.push(h);
                }
                // Changed since it was fingerprinted: forget the cached
                // fingerprint so the next scan looks again.
                Ok(None) => {
                    self.seen.remove(&f.id);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => self.warn_file(f.id, &f.path, &e),
            }
        }

        // 3. Positions of files no longer anywhere: kept for `retain_gone`.
        let retain = self.cfg.retain_gone.as_secs();
        for (key, r) in self.records.iter_mut() {
            if present.contains(key) {
                r.gone_since = None;
            } else if r.gone_since.is_none() {
                r.gone_since = Some(now_unix);
            }
        }
        self.records.retain(|_, r| {
            r.gone_since
                .is_none_or(|g| now_unix.saturating_sub(g) <= retain)
        });
        self.seen.retain(|id, _| by_inode.contains_key(id));
        self.first_scan = false;
    }
}
