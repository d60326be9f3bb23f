//! The lake writer: events buffered into Arrow batches per stream and day,
//! written as zstd Parquet under `<data>/lake/<stream>/date=YYYY-MM-DD/`.
//!
//! Exactly-once rests on one journal, `<data>/state/journal.json`, written
//! aside, fsynced and renamed. A commit goes:
//!
//! 1. every new Parquet file is written as `part-<seq>-<n>.parquet.tmp` and fsynced;
//! 2. the journal is replaced by one naming those files, the source
//!    checkpoint that covers exactly their lines, and the dead-letter length;
//! 3. the files are renamed into place and their folders fsynced.
//!
//! A crash before 2 leaves orphan `.tmp` files (deleted on restart) and the
//! old checkpoint, so the lines are read again. A crash after 2 is rolled
//! forward on restart: the fsynced `.tmp` files are renamed. Either way each
//! line lands once. A reader never sees a `.tmp` (the glob is `*.parquet`).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::parquet_sink::ParquetSink;
use arrow_array::RecordBatch;
use parquet::basic::Encoding;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;
use scopewatch_model::events::{
    AccessBatchBuilder, AccessEvent, AuthBatchBuilder, AuthEvent, Timestamp,
};
use serde::{Deserialize, Serialize};

/// The journal format this build writes and reads.
pub const JOURNAL_VERSION: u32 = 1;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Parquet files smaller than this are merged by compaction.
const SMALL_FILE_BYTES: u64 = 16 << 20;

/// Compaction copies row groups of at least this many rows undecoded.
const COPY_ROW_GROUP_ROWS: usize = 32 * 1024;

/// When a buffered file is closed and committed.
#[derive(Debug, Clone)]
pub struct LakeConfig {
    /// Commit once this many events are buffered.
    pub max_rows: usize,
    /// Commit once the oldest buffered event waited this long; keeps a tailed
    /// event queryable within about two seconds.
    pub max_age: Duration,
    /// zstd level of the Parquet pages.
    pub zstd_level: i32,
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            max_rows: 200_000,
            max_age: Duration::from_millis(1000),
            zstd_level: 3,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("{doing} {path}: {source}")]
    Io {
        doing: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing Parquet {path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("journal {path}: {message}; the data directory may be from another version or damaged: move it aside, or restore it from a backup")]
    Journal { path: PathBuf, message: String },
}

impl LakeError {
    /// True when the failure is the disk being full: the caller pauses and
    /// retries the same commit instead of giving up.
    pub fn is_disk_full(&self) -> bool {
        let io_err = match self {
            LakeError::Io { source, .. } => Some(source),
            LakeError::Parquet {
                source: parquet::errors::ParquetError::External(e),
                ..
            } => e.downcast_ref::<io::Error>(),
            _ => None,
        };
        if let Some(e) = io_err {
            return e.raw_os_error() == Some(28) || e.kind() == io::ErrorKind::StorageFull;
        }
        // parquet wraps some IO errors as General strings
        matches!(self, LakeError::Parquet { source, .. } if source.to_string().contains("No space left"))
    }
}

fn io_err<'a>(doing: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LakeError + 'a {
    move |source| LakeError::Io {
        doing,
        path: path.to_path_buf(),
        source,
    }
}

/// What the journal holds between commits.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Journal {
    pub version: u32,
    /// Sequence number of the last commit; file names carry it.
    pub seq: u64,
    /// Files of the last commit: (`.tmp` path, final path), relative to the lake.
    pub pending: Vec<(String, String)>,
    /// The sources' positions after the lines of this commit (opaque JSON
    /// owned by the tailer).
    pub checkpoint: serde_json::Value,
    /// Committed length of each dead-letter file (relative path -> bytes);
    /// longer files are cut back on restart so a re-read line is not
    /// dead-lettered twice.
    #[serde(default)]
    pub dead_letters: BTreeMap<String, u64>,
    /// Files a compaction replaced (relative to the lake); deleted once the
    /// compacted file is in place.
    #[serde(default)]
    pub removals: Vec<String>,
}

/// Buffers events and commits them with their checkpoint.
pub struct LakeWriter {
    data_dir: PathBuf,
    lake: PathBuf,
    journal_path: PathBuf,
    config: LakeConfig,
    props: WriterProperties,
    journal: Journal,
    /// Events pushed one by one, not yet in a batch.
    loose: DayBatches,
    /// Finished batches per stream and UTC day (days since the epoch), in
    /// the order they were pushed.
    batches: BTreeMap<(&'static str, i64), Vec<RecordBatch>>,
    rows: usize,
    oldest: Option<Instant>,
}

/// Events sorted into Arrow builders by stream and UTC day: what a parser
/// thread fills, so the writer receives finished batches.
#[derive(Debug, Default)]
pub struct DayBatches {
    auth: BTreeMap<i64, AuthBatchBuilder>,
    access: BTreeMap<i64, AccessBatchBuilder>,
    rows: usize,
    /// Rows to make room for in a new access builder (growing one by
    /// doubling copies it over and over).
    capacity: usize,
}

impl DayBatches {
    /// Room for about `rows` access events of one day.
    pub fn with_capacity(rows: usize) -> DayBatches {
        DayBatches {
            capacity: rows,
            ..DayBatches::default()
        }
    }

    pub fn push_auth(&mut self, event: &AuthEvent) {
        let day = event.ts.0.div_euclid(MICROS_PER_DAY);
        self.auth
            .entry(day)
            .or_insert_with(|| AuthBatchBuilder::with_capacity(1024))
            .push(event);
        self.rows += 1;
    }

    pub fn push_access(&mut self, event: &AccessEvent) {
        let day = event.ts.0.div_euclid(MICROS_PER_DAY);
        self.access
            .entry(day)
            .or_insert_with(|| AccessBatchBuilder::with_capacity(self.capacity.max(1024)))
            .push(event);
        self.rows += 1;
    }

    /// Events pushed so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The finished batches, ready for [`LakeWriter::push_finished`]: what a
    /// parser thread hands over, so the writer's thread does not finish
    /// builders while the pool waits.
    pub fn into_finished(mut self) -> FinishedBatches {
        let rows = self.rows;
        FinishedBatches {
            rows,
            batches: if rows == 0 { Vec::new() } else { self.finish() },
        }
    }

    /// The batches, one per stream and day, as `(stream, day, batch)`.
    fn finish(&mut self) -> Vec<(&'static str, i64, RecordBatch)> {
        self.rows = 0;
        let auth = std::mem::take(&mut self.auth)
            .into_iter()
            .map(|(day, mut b)| (AuthEvent::STREAM, day, b.finish()));
        let access = std::mem::take(&mut self.access)
            .into_iter()
            .map(|(day, mut b)| (AccessEvent::STREAM, day, b.finish()));
        auth.chain(access).collect()
    }
}

/// [`DayBatches`] finished: one record batch per stream and day.
#[derive(Debug, Default)]
pub struct FinishedBatches {
    rows: usize,
    batches: Vec<(&'static str, i64, RecordBatch)>,
}

impl std::fmt::Debug for LakeWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeWriter")
            .field("lake", &self.lake)
            .field("seq", &self.journal.seq)
            .field("rows", &self.rows)
            .finish()
    }
}

/// What one commit wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitStats {
    pub files: usize,
    pub auth_rows: usize,
    pub access_rows: usize,
}

impl LakeWriter {
    /// Opens the lake under `data_dir`, finishing or discarding whatever a
    /// crash left half done. The recovered journal's checkpoint is where the
    /// sources resume.
    pub fn open(data_dir: &Path, config: LakeConfig) -> Result<LakeWriter, LakeError> {
        let lake = scopewatch_model::lake::lake_dir(data_dir);
        let state = scopewatch_model::lake::state_dir(data_dir);
        for dir in [&lake, &state] {
            fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        }
        let journal_path = state.join("journal.json");
        let journal = match fs::read(&journal_path) {
            Ok(bytes) => {
                let j: Journal =
                    serde_json::from_slice(&bytes).map_err(|e| LakeError::Journal {
                        path: journal_path.clone(),
                        message: format!("not a journal ({e})"),
                    })?;
                if j.version != JOURNAL_VERSION {
                    return Err(LakeError::Journal {
                        path: journal_path.clone(),
                        message: format!(
                            "journal version {} (this build reads {JOURNAL_VERSION})",
                            j.version
                        ),
                    });
                }
                j
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Journal {
                version: JOURNAL_VERSION,
                ..Journal::default()
            },
            Err(e) => return Err(io_err("reading", &journal_path)(e)),
        };
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(config.zstd_level).unwrap_or_default(),
            ))
            .set_writer_version(WriterVersion::PARQUET_2_0)
            .set_max_row_group_row_count(Some(128 * 1024))
            // Min/max per column chunk is what readers prune with; per-page
            // statistics of string columns cost more to compute than they save.
            .set_statistics_enabled(EnabledStatistics::Chunk);
        // Columns unique (or nearly) per row: a dictionary never pays off, and
        // trying one first costs a hash per value. Ids share long prefixes and
        // numbers rise with the log, which the delta encodings exploit.
        for (column, encoding) in [
            ("event_id", Encoding::DELTA_BYTE_ARRAY),
            ("ts", Encoding::DELTA_BINARY_PACKED),
            ("source_offset", Encoding::DELTA_BINARY_PACKED),
        ] {
            let path = ColumnPath::from(column);
            props = props
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_encoding(path, encoding);
        }
        let props = props.build();
        let mut writer = LakeWriter {
            data_dir: data_dir.to_path_buf(),
            lake,
            journal_path,
            config,
            props,
            journal,
            loose: DayBatches::default(),
            batches: BTreeMap::new(),
            rows: 0,
            oldest: None,
        };
        writer.recover()?;
        Ok(writer)
    }

    /// Rolls the last journaled commit forward and removes orphans.
    fn recover(&mut self) -> Result<(), LakeError> {
        let mut dirs = Vec::new();
        for (tmp, fin) in &self.journal.pending {
            let (tmp, fin) = (self.lake.join(tmp), self.lake.join(fin));
            if tmp.exists() {
                fs::rename(&tmp, &fin).map_err(io_err("renaming", &tmp))?;
                dirs.push(fin.parent().unwrap_or(&self.lake).to_path_buf());
            } else if !fin.exists() {
                return Err(LakeError::Journal {
                    path: self.journal_path.clone(),
                    message: format!(
                        "committed file {} is missing (neither it nor its .tmp exists)",
                        fin.display()
                    ),
                });
            }
        }
        for rel in &self.journal.removals {
            let path = self.lake.join(rel);
            match fs::remove_file(&path) {
                Ok(()) => dirs.push(path.parent().unwrap_or(&self.lake).to_path_buf()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("removing compacted", &path)(e)),
            }
        }
        for dir in dirs {
            sync_dir(&dir)?;
        }
        // Orphans: files written by a commit that never reached the journal.
        for stream in [AuthEvent::STREAM, AccessEvent::STREAM] {
            let Ok(days) = fs::read_dir(self.lake.join(stream)) else {
                continue;
            };
            for day in days.flatten() {
                let Ok(files) = fs::read_dir(day.path()) else {
                    continue;
                };
                for f in files.flatten() {
                    if f.file_name().to_string_lossy().ends_with(".parquet.tmp") {
                        fs::remove_file(f.path()).map_err(io_err("removing orphan", &f.path()))?;
                    }
                }
            }
        }
        // Dead letters written after the last commit describe lines that
        // will be read again: cut them off.
        for (rel, len) in &self.journal.dead_letters {
            let path = self.data_dir.join(rel);
            if let Ok(meta) = fs::metadata(&path) {
                if meta.len() > *len {
                    let f = fs::OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(io_err("opening", &path))?;
                    f.set_len(*len).map_err(io_err("truncating", &path))?;
                    f.sync_all().map_err(io_err("syncing", &path))?;
                }
            }
        }
        Ok(())
    }

    /// The checkpoint of the last durable commit (`null` on a new lake).
    pub fn checkpoint(&self) -> &serde_json::Value {
        &self.journal.checkpoint
    }

    /// Committed dead-letter lengths, as recovered.
    pub fn dead_letter_lengths(&self) -> &BTreeMap<String, u64> {
        &self.journal.dead_letters
    }

    pub fn lake_dir(&self) -> &Path {
        &self.lake
    }

    /// Buffered, uncommitted events.
    pub fn buffered_rows(&self) -> usize {
        self.rows
    }

    /// True when the buffer is full or old enough to commit.
    pub fn should_commit(&self) -> bool {
        self.rows >= self.config.max_rows
            || self
                .oldest
                .is_some_and(|t| t.elapsed() >= self.config.max_age)
    }

    fn touch(&mut self) {
        self.rows += 1;
        self.oldest.get_or_insert_with(Instant::now);
    }

    pub fn push_auth(&mut self, event: &AuthEvent) {
        self.loose.push_auth(event);
        self.touch();
    }

    pub fn push_access(&mut self, event: &AccessEvent) {
        self.loose.push_access(event);
        self.touch();
    }

    /// Takes in events a parser thread already sorted into batches.
    pub fn push_batches(&mut self, events: DayBatches) {
        self.push_finished(events.into_finished());
    }

    /// Takes in batches a parser thread already finished.
    pub fn push_finished(&mut self, events: FinishedBatches) {
        let rows = events.rows;
        if rows == 0 {
            return;
        }
        self.rows += rows;
        self.oldest.get_or_insert_with(Instant::now);
        for (stream, day, batch) in events.batches {
            self.batches.entry((stream, day)).or_default().push(batch);
        }
    }

    /// Takes the buffered rows, grouped by stream and day, as
    /// `(stream, YYYY-MM-DD, batches)`: one file each.
    pub fn take_batches(&mut self) -> Vec<(&'static str, String, Vec<RecordBatch>)> {
        for (stream, day, batch) in self.loose.finish() {
            self.batches.entry((stream, day)).or_default().push(batch);
        }
        self.rows = 0;
        self.oldest = None;
        std::mem::take(&mut self.batches)
            .into_iter()
            .map(|((stream, day), batches)| {
                let date = Timestamp(day * MICROS_PER_DAY).date_string();
                (stream, date, batches)
            })
            .collect()
    }

    /// Makes `batches` durable together with `checkpoint` and the dead-letter
    /// lengths. On error nothing is visible and the journal is unchanged; the
    /// same call may be retried (for example once disk space returns).
    pub fn commit_batches(
        &mut self,
        batches: &[(&'static str, String, Vec<RecordBatch>)],
        checkpoint: serde_json::Value,
        dead_letters: BTreeMap<String, u64>,
    ) -> Result<CommitStats, LakeError> {
        let seq = self.journal.seq + 1;
        let mut pending = Vec::new();
        let mut stats = CommitStats::default();
        // Files not written since the last commit keep their committed length.
        let mut all_dead_letters = self.journal.dead_letters.clone();
        all_dead_letters.extend(dead_letters);
        let dead_letters = all_dead_letters;
        let result = (|| {
            for (n, (stream, date, parts)) in batches.iter().enumerate() {
                let rows: usize = parts.iter().map(RecordBatch::num_rows).sum();
                if rows == 0 {
                    continue;
                }
                let dir_rel = format!("{stream}/date={date}");
                let dir = self.lake.join(&dir_rel);
                fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
                let name = format!("part-{seq:012}-{n:03}.parquet");
                let tmp_rel = format!("{dir_rel}/{name}.tmp");
                let tmp = self.lake.join(&tmp_rel);
                // Registered before writing so a failure cleans it up.
                pending.push((tmp_rel, format!("{dir_rel}/{name}")));
                self.write_parquet(&tmp, parts)?;
                if *stream == AuthEvent::STREAM {
                    stats.auth_rows += rows;
                } else {
                    stats.access_rows += rows;
                }
                stats.files += 1;
            }
            let journal = Journal {
                version: JOURNAL_VERSION,
                seq,
                pending: pending.clone(),
                checkpoint,
                dead_letters,
                removals: Vec::new(),
            };
            write_atomic(
                &self.journal_path,
                &serde_json::to_vec(&journal).expect("journal serialises"),
            )?;
            Ok(journal)
        })();
        let journal = match result {
            Ok(j) => j,
            Err(e) => {
                for (tmp, _) in &pending {
                    let _ = fs::remove_file(self.lake.join(tmp));
                }
                return Err(e);
            }
        };
        // The commit point has passed: from here a failure is finished by
        // recovery at the next start.
        self.apply(&journal)?;
        self.journal = journal;
        Ok(stats)
    }

    /// Renames a journaled commit's files into place and removes what it
    /// replaced, holding the lake lock so no reader sees half of it.
    fn apply(&self, journal: &Journal) -> Result<(), LakeError> {
        let _guard = LakeLock::exclusive(&self.data_dir)?;
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (tmp, fin) in &journal.pending {
            let (tmp, fin) = (self.lake.join(tmp), self.lake.join(fin));
            fs::rename(&tmp, &fin).map_err(io_err("renaming", &tmp))?;
            let dir = fin.parent().unwrap_or(&self.lake).to_path_buf();
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        for rel in &journal.removals {
            let path = self.lake.join(rel);
            fs::remove_file(&path).map_err(io_err("removing compacted", &path))?;
        }
        for dir in &dirs {
            sync_dir(dir)?;
        }
        Ok(())
    }

    /// Compacts the small files of each past day (before `today`, a
    /// `YYYY-MM-DD`) into one file per stream and day. The new file and the
    /// removal of the old ones are one journaled step applied under the
    /// lake lock, so a reader holding [`LakeLock::shared`] sees either the
    /// small files or the big one, never both and never neither. Call it
    /// between commits (nothing buffered is touched). Returns the number of
    /// files replaced.
    pub fn compact(&mut self, today: &str, min_files: usize) -> Result<usize, LakeError> {
        let mut replaced = 0;
        for stream in [AuthEvent::STREAM, AccessEvent::STREAM] {
            let Ok(days) = fs::read_dir(self.lake.join(stream)) else {
                continue;
            };
            let mut days: Vec<String> = days
                .flatten()
                .map(|d| d.file_name().to_string_lossy().into_owned())
                .filter(|d| d.strip_prefix("date=").is_some_and(|date| date < today))
                .collect();
            days.sort();
            for day in days {
                let dir_rel = format!("{stream}/{day}");
                // Only small files are merged: rewriting files that are
                // already large would cost a second encoding for nothing.
                let mut files: Vec<String> = fs::read_dir(self.lake.join(&dir_rel))
                    .map_err(io_err("listing", &self.lake.join(&dir_rel)))?
                    .flatten()
                    .filter(|f| f.metadata().is_ok_and(|m| m.len() < SMALL_FILE_BYTES))
                    .map(|f| f.file_name().to_string_lossy().into_owned())
                    .filter(|f| f.ends_with(".parquet"))
                    .collect();
                // Files written before a column was added keep their old
                // schema; they are left as they are (readers fill the
                // missing columns with nulls), not merged with new ones.
                let current = if stream == AuthEvent::STREAM {
                    AuthEvent::schema()
                } else {
                    AccessEvent::schema()
                };
                let dir = self.lake.join(&dir_rel);
                files.retain(|f| has_schema(&dir.join(f), &current));
                if files.len() < min_files.max(2) {
                    continue;
                }
                files.sort();
                replaced += files.len();
                self.compact_day(&dir_rel, &files)?;
            }
        }
        Ok(replaced)
    }

    fn compact_day(&mut self, dir_rel: &str, files: &[String]) -> Result<(), LakeError> {
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let seq = self.journal.seq + 1;
        let name = format!("part-{seq:012}-compact.parquet");
        let tmp_rel = format!("{dir_rel}/{name}.tmp");
        let tmp = self.lake.join(&tmp_rel);
        let result = (|| {
            let out = File::create(&tmp).map_err(io_err("creating", &tmp))?;
            let tmp_err = |source| LakeError::Parquet {
                path: tmp.clone(),
                source,
            };
            let mut sink: Option<ParquetSink> = None;
            let mut out = Some(out);
            for f in files {
                let path = self.lake.join(dir_rel).join(f);
                let parquet_err = |source| LakeError::Parquet {
                    path: path.clone(),
                    source,
                };
                let file = File::open(&path).map_err(io_err("opening", &path))?;
                let builder = ParquetRecordBatchReaderBuilder::try_new(
                    file.try_clone().map_err(io_err("opening", &path))?,
                )
                .map_err(parquet_err)?;
                let meta = Arc::clone(builder.metadata());
                if sink.is_none() {
                    let s = ParquetSink::create(
                        out.take().expect("created above"),
                        Arc::clone(builder.schema()),
                        &self.props,
                    )
                    .map_err(tmp_err)?;
                    sink = Some(s);
                }
                let sink = sink.as_mut().expect("set above");
                // Row groups already large are copied as they are (no second
                // encoding); small ones, from commits of a followed log, are
                // decoded and merged into large ones.
                let (large, small): (Vec<usize>, Vec<usize>) = (0..meta.num_row_groups())
                    .partition(|&i| meta.row_group(i).num_rows() as usize >= COPY_ROW_GROUP_ROWS);
                for &i in &large {
                    sink.copy_row_group(&file, &meta, i).map_err(tmp_err)?;
                }
                if small.is_empty() {
                    continue;
                }
                let reader = builder
                    .with_row_groups(small)
                    .build()
                    .map_err(parquet_err)?;
                for batch in reader {
                    let batch = batch.map_err(|e| LakeError::Parquet {
                        path: path.clone(),
                        source: e.into(),
                    })?;
                    sink.write(&batch).map_err(tmp_err)?;
                }
            }
            let Some(sink) = sink else {
                return Err(LakeError::Journal {
                    path: self.journal_path.clone(),
                    message: format!("nothing to compact in {dir_rel}"),
                });
            };
            let file = sink.finish().map_err(tmp_err)?;
            file.sync_all().map_err(io_err("syncing", &tmp))?;
            let journal = Journal {
                version: JOURNAL_VERSION,
                seq,
                pending: vec![(tmp_rel.clone(), format!("{dir_rel}/{name}"))],
                checkpoint: self.journal.checkpoint.clone(),
                dead_letters: self.journal.dead_letters.clone(),
                removals: files.iter().map(|f| format!("{dir_rel}/{f}")).collect(),
            };
            write_atomic(
                &self.journal_path,
                &serde_json::to_vec(&journal).expect("journal serialises"),
            )?;
            Ok(journal)
        })();
        let journal = match result {
            Ok(j) => j,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        self.apply(&journal)?;
        self.journal = journal;
        Ok(())
    }

    /// Commits everything buffered with `checkpoint`.
    pub fn commit(
        &mut self,
        checkpoint: serde_json::Value,
        dead_letters: BTreeMap<String, u64>,
    ) -> Result<CommitStats, LakeError> {
        let batches = self.take_batches();
        self.commit_batches(&batches, checkpoint, dead_letters)
    }

    /// Writes `batches` (one schema, at least one batch) as one file.
    fn write_parquet(&self, path: &Path, batches: &[RecordBatch]) -> Result<(), LakeError> {
        let file = File::create(path).map_err(io_err("creating", path))?;
        let parquet_err = |source| LakeError::Parquet {
            path: path.to_path_buf(),
            source,
        };
        let mut sink =
            ParquetSink::create(file, batches[0].schema(), &self.props).map_err(parquet_err)?;
        for batch in batches {
            sink.write(batch).map_err(parquet_err)?;
        }
        let file = sink.finish().map_err(parquet_err)?;
        file.sync_all().map_err(io_err("syncing", path))?;
        Ok(())
    }
}

/// Whether the Parquet file at `path` holds exactly the columns (names and
/// types) of `schema`.
fn has_schema(path: &Path, schema: &arrow_schema::Schema) -> bool {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let Ok(file) = File::open(path) else {
        return false;
    };
    let Ok(builder) = ParquetRecordBatchReaderBuilder::try_new(file) else {
        return false;
    };
    let found = builder.schema();
    found.fields().len() == schema.fields().len()
        && found
            .fields()
            .iter()
            .zip(schema.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type())
}

/// The lake's reader/writer lock (`<data>/state/lake.lock`, an advisory
/// `flock`). Readers that must see a consistent lake while compaction runs
/// hold it shared for the duration of a query; the writer holds it
/// exclusively only for the instant of renaming files into place.
#[derive(Debug)]
pub struct LakeLock {
    file: File,
}

impl LakeLock {
    fn open(data_dir: &Path) -> Result<File, LakeError> {
        let path = scopewatch_model::lake::lock_file(data_dir);
        fs::create_dir_all(path.parent().unwrap_or(data_dir))
            .map_err(io_err("creating", data_dir))?;
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("opening", &path))
    }

    /// Held by readers; many at once.
    pub fn shared(data_dir: &Path) -> Result<LakeLock, LakeError> {
        let file = Self::open(data_dir)?;
        file.lock_shared().map_err(io_err("locking", data_dir))?;
        Ok(LakeLock { file })
    }

    /// Held by the writer while it swaps files.
    pub fn exclusive(data_dir: &Path) -> Result<LakeLock, LakeError> {
        let file = Self::open(data_dir)?;
        file.lock().map_err(io_err("locking", data_dir))?;
        Ok(LakeLock { file })
    }
}

impl Drop for LakeLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// Writes `bytes` to `path` atomically: aside, fsync, rename, fsync the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LakeError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io_err("creating", &tmp))?;
    f.write_all(bytes).map_err(io_err("writing", &tmp))?;
    f.sync_all().map_err(io_err("syncing", &tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err("renaming", &tmp))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn sync_dir(dir: &Path) -> Result<(), LakeError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing folder", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use scopewatch_model::events::{AuthKind, AuthOutcome, Env};

    fn event(id: &str, ts: &str) -> AuthEvent {
        AuthEvent {
            event_id: id.into(),
            ts: Timestamp::parse_rfc3339(ts).unwrap(),
            tenant: "north".into(),
            env: Env::Prod,
            kind: AuthKind::Token,
            outcome: AuthOutcome::Success,
            error: None,
            client_id: Some("app".into()),
            app_version: None,
            user: None,
            session_id: None,
            patient: None,
            encounter: None,
            scopes_requested: None,
            scopes_granted: None,
            grant_type: None,
            token_id: None,
            refresh_token_id: None,
            parent_token_id: None,
            expires_at: None,
            ip: None,
            user_agent: None,
            source: "t".into(),
            source_file: None,
            source_offset: None,
        }
    }

    /// Every event id in the lake's auth stream, by walking the folders.
    fn lake_ids(data: &Path) -> Vec<String> {
        let mut ids = Vec::new();
        let auth = data.join("lake/auth");
        let Ok(days) = fs::read_dir(&auth) else {
            return ids;
        };
        for day in days.flatten() {
            for f in fs::read_dir(day.path()).unwrap().flatten() {
                if !f.file_name().to_string_lossy().ends_with(".parquet") {
                    continue;
                }
                let reader =
                    ParquetRecordBatchReaderBuilder::try_new(File::open(f.path()).unwrap())
                        .unwrap()
                        .build()
                        .unwrap();
                for batch in reader {
                    for e in AuthEvent::from_batch(&batch.unwrap()).unwrap() {
                        ids.push(e.event_id);
                    }
                }
            }
        }
        ids.sort();
        ids
    }

    #[test]
    fn commits_partition_by_day_and_carry_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LakeWriter::open(dir.path(), LakeConfig::default()).unwrap();
        assert!(w.checkpoint().is_null());
        w.push_auth(&event("a", "2026-11-22T23:59:59Z"));
        w.push_auth(&event("b", "2026-11-23T00:00:00Z"));
        let stats = w
            .commit(serde_json::json!({"pos": 2}), BTreeMap::new())
            .unwrap();
        assert_eq!(
            stats,
            CommitStats {
                files: 2,
                auth_rows: 2,
                access_rows: 0
            }
        );
        assert!(dir.path().join("lake/auth/date=2026-11-22").is_dir());
        assert!(dir.path().join("lake/auth/date=2026-11-23").is_dir());
        drop(w);
        let w = LakeWriter::open(dir.path(), LakeConfig::default()).unwrap();
        assert_eq!(w.checkpoint(), &serde_json::json!({"pos": 2}));
        assert_eq!(lake_ids(dir.path()), vec!["a", "b"]);
    }

    #[test]
    fn a_crash_after_the_journal_is_rolled_forward() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LakeWriter::open(dir.path(), LakeConfig::default()).unwrap();
        w.push_auth(&event("a", "2026-11-22T10:00:00Z"));
        w.commit(serde_json::json!(1), BTreeMap::new()).unwrap();
        // Put the lake back in the state a crash between the journal and
        // the rename leaves: the journaled file still under its .tmp name.
        let (tmp, fin) = w.journal.pending[0].clone();
        fs::rename(
            dir.path().join("lake").join(&fin),
            dir.path().join("lake").join(&tmp),
        )
        .unwrap();
        drop(w);
        assert!(lake_ids(dir.path()).is_empty());
        let w = LakeWriter::open(dir.path(), LakeConfig::default()).unwrap();
        assert_eq!(w.checkpoint(), &serde_json::json!(1));
        assert_eq!(lake_ids(dir.path()), vec!["a"]);
    }

    #[test]
    fn a_crash_before_the_journal_leaves_nothing_visible() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LakeWriter::open(dir.path(), LakeConfig::default()).unwrap();
        w.push_auth(&event("a", "2026-11-22T10:00:00Z"));
        w.commit(serde_json::json!(1), BTreeMap::new()).unwrap();
        // A second commit that wrote its file but died before the journal.
        w.push_auth(&event("b", "2026-11-22T10:00:01Z"));
        let batches = w.take_batches();
        let orphan = dir
            .path()
            .join("lake/auth/date=2026-11-22/part-000000000002-000.parquet.tmp");
        w.write_parquet(&orphan, &batches[0].2).unwrap();
        drop(w);
        let w = LakeWriter::open(dir.path(), LakeConfig::default()).unwrap();
        assert!(!orphan.exists(), "orphan removed");
        assert_eq!(
            w.checkpoint(),
            &serde_json::json!(1),
            "checkpoint did not move"
        );
        assert_eq!(lake_ids(dir.path()), vec!["a"]);
    }

    #[test]
    fn dead_letters_after_the_last_commit_are_cut_back() {
        let dir = tempfile::tempdir().unwrap();
        let dl = dir.path().join("deadletter/2026-11-22.ndjson");
        fs::create_dir_all(dl.parent().unwrap()).unwrap();
        fs::write(&dl, "committed\n").unwrap();
        let mut w = LakeWriter::open(dir.path(), LakeConfig::default()).unwrap();
        let lengths = BTreeMap::from([("deadletter/2026-11-22.ndjson".to_string(), 10u64)]);
        w.commit(serde_json::json!(1), lengths).unwrap();
        fs::write(&dl, "committed\nuncommitted\n").unwrap();
        drop(w);
        let _w = LakeWriter::open(dir.path(), LakeConfig::default()).unwrap();
        assert_eq!(fs::read_to_string(&dl).unwrap(), "committed\n");
    }

    #[test]
    fn a_failed_commit_changes_nothing_and_can_be_retried() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LakeWriter::open(dir.path(), LakeConfig::default()).unwrap();
        w.push_auth(&event("a", "2026-11-22T10:00:00Z"));
        let batches = w.take_batches();
        // Make the partition folder impossible to create: a file in its place.
        fs::create_dir_all(dir.path().join("lake/auth")).unwrap();
        fs::write(dir.path().join("lake/auth/date=2026-11-22"), "not a folder").unwrap();
        assert!(w
            .commit_batches(&batches, serde_json::json!(1), BTreeMap::new())
            .is_err());
        assert!(w.checkpoint().is_null());
        fs::remove_file(dir.path().join("lake/auth/date=2026-11-22")).unwrap();
        w.commit_batches(&batches, serde_json::json!(1), BTreeMap::new())
            .unwrap();
        assert_eq!(lake_ids(dir.path()), vec!["a"]);
    }

    #[test]
    fn compaction_replaces_small_files_of_past_days_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LakeWriter::open(dir.path(), LakeConfig::default()).unwrap();
        for i in 0..5 {
            w.push_auth(&event(&format!("old{i}"), "2026-11-20T10:00:00Z"));
            w.commit(serde_json::json!(i), BTreeMap::new()).unwrap();
        }
        w.push_auth(&event("today", "2026-11-23T10:00:00Z"));
        w.commit(serde_json::json!(9), BTreeMap::new()).unwrap();
        assert_eq!(w.compact("2026-11-23", 2).unwrap(), 5);
        let files: Vec<_> = fs::read_dir(dir.path().join("lake/auth/date=2026-11-20"))
            .unwrap()
            .flatten()
            .map(|f| f.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(files[0].ends_with("-compact.parquet"));
        assert_eq!(
            w.checkpoint(),
            &serde_json::json!(9),
            "checkpoint unchanged"
        );
        let mut want: Vec<String> = (0..5).map(|i| format!("old{i}")).collect();
        want.push("today".into());
        assert_eq!(lake_ids(dir.path()), want);
        // a crash after the compaction's journal is rolled forward too
        drop(w);
        let mut w = LakeWriter::open(dir.path(), LakeConfig::default()).unwrap();
        assert_eq!(
            w.compact("2026-11-23", 2).unwrap(),
            0,
            "one file left: nothing to do"
        );
        assert_eq!(lake_ids(dir.path()), want);
    }

    #[test]
    fn compaction_copies_large_row_groups_and_merges_small_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LakeWriter::open(dir.path(), LakeConfig::default()).unwrap();
        let mut want = Vec::new();
        // A backfill-sized commit (its row group is copied undecoded), then
        // two small ones (decoded and merged into one row group).
        for (commit, rows) in [(0, COPY_ROW_GROUP_ROWS + 7), (1, 3), (2, 4)] {
            let mut batch = DayBatches::with_capacity(rows);
            for i in 0..rows {
                let id = format!("c{commit}-{i:06}");
                batch.push_auth(&event(&id, "2026-11-20T10:00:00Z"));
                want.push(id);
            }
            w.push_batches(batch);
            w.commit(serde_json::json!(commit), BTreeMap::new())
                .unwrap();
        }
        assert_eq!(w.compact("2026-11-23", 2).unwrap(), 3);
        want.sort();
        assert_eq!(lake_ids(dir.path()), want);
        let day = dir.path().join("lake/auth/date=2026-11-20");
        let files: Vec<_> = fs::read_dir(&day).unwrap().flatten().collect();
        assert_eq!(files.len(), 1);
        let meta = ParquetRecordBatchReaderBuilder::try_new(File::open(files[0].path()).unwrap())
            .unwrap()
            .metadata()
            .clone();
        let groups: Vec<i64> = meta.row_groups().iter().map(|g| g.num_rows()).collect();
        assert_eq!(groups, [COPY_ROW_GROUP_ROWS as i64 + 7, 7]);
        // The copied file keeps the embedded Arrow schema (column docs).
        let schema = ParquetRecordBatchReaderBuilder::try_new(File::open(files[0].path()).unwrap())
            .unwrap()
            .schema()
            .clone();
        assert!(schema
            .field_with_name("event_id")
            .unwrap()
            .metadata()
            .contains_key("description"));
    }

    #[test]
    fn a_crash_inside_compaction_leaves_the_rows_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LakeWriter::open(dir.path(), LakeConfig::default()).unwrap();
        for i in 0..3 {
            w.push_auth(&event(&format!("old{i}"), "2026-11-20T10:00:00Z"));
            w.commit(serde_json::json!(i), BTreeMap::new()).unwrap();
        }
        w.compact("2026-11-23", 2).unwrap();
        // Rewind to the state just after the compaction's journal: the big
        // file still .tmp and the small files back in place.
        let (tmp, fin) = w.journal.pending[0].clone();
        let lake = dir.path().join("lake");
        fs::rename(lake.join(&fin), lake.join(&tmp)).unwrap();
        for (i, rel) in w.journal.removals.clone().iter().enumerate() {
            let mut b = AuthBatchBuilder::default();
            b.push(&event(&format!("old{i}"), "2026-11-20T10:00:00Z"));
            w.write_parquet(&lake.join(rel), &[b.finish()]).unwrap();
        }
        drop(w);
        let _w = LakeWriter::open(dir.path(), LakeConfig::default()).unwrap();
        assert_eq!(lake_ids(dir.path()), vec!["old0", "old1", "old2"]);
    }

    #[test]
    fn an_unknown_journal_version_stops_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("state")).unwrap();
        fs::write(
            dir.path().join("state/journal.json"),
            r#"{"version":99,"seq":1,"pending":[],"checkpoint":null}"#,
        )
        .unwrap();
        let err = LakeWriter::open(dir.path(), LakeConfig::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("journal version 99"), "{err}");
    }
}
