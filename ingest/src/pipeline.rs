//! The ingest loop: every source's tailer feeds its adapter, events go to the
//! lake writer, and each commit carries the positions of exactly the lines
//! whose events it holds. Dead letters are fsynced before that commit.
//!
//! Pushed requests ([`crate::push`]) arrive parsed, as [`PushBatch`]es on a
//! queue the loop drains between polls; they are committed at once (with
//! whatever the tailers read, and the tailers' positions) and answered only
//! after that commit returned. The journal's checkpoint also remembers the
//! hashes of recently committed push bodies, so a retried body is answered
//! without being written twice.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use rayon::prelude::*;
use scopewatch_model::config::{Config, PushConfig, Source as SourceConfig};
use scopewatch_model::request::FhirBase;
use tokio::sync::oneshot;

use crate::adapter::{Adapter, LineContext, Parsed};
use crate::deadletter::DeadLetters;
use crate::formats;
use crate::lake::{DayBatches, FinishedBatches, LakeConfig, LakeError, LakeWriter};
use crate::privacy::{PrivacyError, Pseudonymiser};
use crate::push::{PushAck, PushBatch, PushIntake, PushParser, PushRefused};
use crate::tail::{Checkpoints, LineRef, StartAt, TailConfig, TailError, Tailer};

/// Why ingest stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("source `{source_name}`: unknown format `{format}`; known formats: {known}")]
    UnknownFormat {
        source_name: String,
        format: String,
        known: String,
    },
    #[error("source `{source_name}`: {error}")]
    Tail {
        source_name: String,
        #[source]
        error: TailError,
    },
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Privacy(#[from] PrivacyError),
    #[error("dead-letter file under {dir}: {source}")]
    DeadLetter {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the checkpoint in the lake journal is damaged: {0}; move the data directory aside to start over")]
    Checkpoint(String),
    #[error(
        "no sources to read: add [[source]] tables to the config, or give paths to `ingest --once`"
    )]
    NoSources,
    #[error("ingest.push: source `{0}` is not a configured source with a known format")]
    PushSource(String),
}

/// Totals since start, per source and overall.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IngestStats {
    pub lines: u64,
    pub bytes: u64,
    pub auth_events: u64,
    pub access_events: u64,
    pub dead_lettered: u64,
    pub commits: u64,
    pub per_source: BTreeMap<String, SourceStats>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SourceStats {
    pub lines: u64,
    pub bytes: u64,
    pub events: u64,
    pub dead_lettered: u64,
    /// Push requests taken (their lines, bytes and events count above too).
    pub pushes: u64,
}

struct SourceRuntime {
    config: SourceConfig,
    adapter: Box<dyn Adapter>,
    /// `None` for a source that only takes pushes (no paths).
    tailer: Option<Tailer>,
    /// The restored positions of a source without a tailer, carried on
    /// unchanged so adding paths back later resumes where it was.
    kept_positions: Option<serde_json::Value>,
}

/// What the loop knows of pushes: the bodies committed lately (per source,
/// oldest first, as hash prefixes) and those accepted since the last
/// commit, with the replies owed once it is durable.
#[derive(Default)]
struct PushLedger {
    /// Bodies remembered per source; `None` until push is enabled (a
    /// restored record is then carried on unchanged).
    limit: Option<usize>,
    committed: BTreeMap<String, VecDeque<String>>,
    /// (source, body hash) accepted since the last commit.
    pending: Vec<(String, String)>,
    waiters: Vec<(oneshot::Sender<Result<PushAck, PushRefused>>, bool)>,
}

impl PushLedger {
    /// The record as it will be once the pending bodies are committed.
    fn record_after_commit(&self) -> BTreeMap<String, VecDeque<String>> {
        let mut record = self.committed.clone();
        if let Some(limit) = self.limit {
            for (source, hash) in &self.pending {
                let q = record.entry(source.clone()).or_default();
                q.push_back(hash.clone());
                while q.len() > limit {
                    q.pop_front();
                }
            }
            record.retain(|_, q| !q.is_empty());
        }
        record
    }

    fn is_committed(&self, source: &str, hash: &str) -> bool {
        self.committed
            .get(source)
            .is_some_and(|q| q.iter().any(|h| h == hash))
    }

    fn is_pending(&self, source: &str, hash: &str) -> bool {
        self.pending.iter().any(|(s, h)| s == source && h == hash)
    }

    /// The commit went through: remember its bodies, answer its pushes.
    fn committed(&mut self, record: BTreeMap<String, VecDeque<String>>) {
        self.committed = record;
        self.pending.clear();
        for (reply, duplicate) in self.waiters.drain(..) {
            let _ = reply.send(Ok(PushAck { duplicate }));
        }
    }

    /// The commit failed: nothing pending is durable; tell the pushers.
    fn failed(&mut self, why: &str) {
        self.pending.clear();
        for (reply, _) in self.waiters.drain(..) {
            let _ = reply.send(Err(PushRefused(why.to_string())));
        }
    }
}

/// Settings of one ingest process beyond the config file.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub data_dir: PathBuf,
    pub lake: LakeConfig,
    pub max_line_bytes: usize,
    pub poll_interval: Duration,
    pub fhir_base: FhirBase,
    pub pseudonym_key: Option<String>,
}

impl IngestOptions {
    /// The options a validated config gives.
    pub fn from_config(config: &Config) -> IngestOptions {
        IngestOptions {
            data_dir: config.data_dir.clone(),
            lake: LakeConfig {
                max_rows: config.ingest.max_rows_per_file,
                max_age: Duration::from_millis(config.ingest.max_file_age_ms),
                ..LakeConfig::default()
            },
            max_line_bytes: config.ingest.max_line_bytes,
            poll_interval: Duration::from_millis(250),
            fhir_base: config.fhir_base.clone(),
            pseudonym_key: config.ingest.pseudonym_key.clone(),
        }
    }
}

/// A running ingest: sources, the lake writer, dead letters and stats.
pub struct Ingest {
    sources: Vec<SourceRuntime>,
    writer: LakeWriter,
    dead: DeadLetters,
    privacy: Pseudonymiser,
    fhir_base: FhirBase,
    stats: IngestStats,
    data_dir: PathBuf,
    /// Lines read since the last commit, and when the first of them was:
    /// a line that only dead-letters must still move the checkpoint.
    uncommitted_lines: u64,
    uncommitted_since: Option<Instant>,
    max_age: Duration,
    push: PushLedger,
    /// Threads of rayon's pool, where lines are parsed and Parquet encoded
    /// (its threads live as long as the process, so their per-thread caches
    /// of tokens and scope lists stay warm).
    threads: usize,
    /// Called with every commit's batches once they are durable.
    on_commit: Option<CommitHook>,
}

/// Sees each commit's batches once they are durable, as `(stream, batch)`,
/// and whether ingest has caught up (nothing left to read): how streaming
/// rules get their events.
pub type CommitHook = Box<dyn FnMut(Vec<(&'static str, RecordBatch)>, bool) + Send>;

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("sources", &self.sources.len())
            .field("data_dir", &self.data_dir)
            .finish()
    }
}

/// What became of one line.
enum Outcome {
    /// It gave this many events (already in the chunk's batches).
    Events(usize),
    /// It goes to the dead letters, for this reason.
    Dead(String),
}

/// Parses lines of one source; runs on a parser thread.
fn parse_lines(
    lines: &[LineRef<'_>],
    source: &SourceRuntime,
    privacy: &Pseudonymiser,
    fhir_base: &FhirBase,
) -> (FinishedBatches, Vec<Outcome>) {
    use std::fmt::Write;
    let name = source.config.name.as_str();
    let mut events = DayBatches::with_capacity(lines.len());
    // One line's events, applied only when the whole line parsed.
    let mut scratch: Vec<Parsed> = Vec::new();
    let mut outcomes = Vec::with_capacity(lines.len());
    let mut event_id = String::new();
    for line in lines {
        if line.oversized {
            outcomes.push(Outcome::Dead(format!(
                "line of {} bytes exceeds max_line_bytes ({})",
                line.full_len,
                line.bytes.len()
            )));
            continue;
        }
        event_id.clear();
        let _ = write!(event_id, "{name}:{}:{}", line.file_key, line.offset);
        let path = line.path.to_string_lossy();
        let ctx = LineContext {
            source: name,
            event_id: &event_id,
            source_file: Some(&path),
            offset: Some(line.offset),
            tenant: source.config.tenant.as_deref(),
            env: source.config.env,
            privacy,
            fhir_base,
            options: &source.config.options,
        };
        scratch.clear();
        match source.adapter.parse_line(line.bytes, &ctx, &mut scratch) {
            Ok(()) => {
                for parsed in &scratch {
                    match parsed {
                        Parsed::Auth(e) => events.push_auth(e),
                        Parsed::Access(e) => events.push_access(e),
                    }
                }
                outcomes.push(Outcome::Events(scratch.len()));
            }
            Err(reason) => outcomes.push(Outcome::Dead(reason.to_string())),
        }
    }
    // Finished here, on the parser thread, not by the writer in line order.
    (events.into_finished(), outcomes)
}

/// Bytes a tailer's files hold beyond what it has read.
fn lag(tailer: Option<&Tailer>) -> u64 {
    tailer.map_or(0, |t| {
        t.file_stats()
            .iter()
            .map(|f| f.size.saturating_sub(f.offset))
            .sum()
    })
}

fn dead_letter_error(data_dir: &Path, source: std::io::Error) -> IngestError {
    IngestError::DeadLetter {
        dir: scopewatch_model::lake::dead_letter_dir(data_dir),
        source,
    }
}

/// The checkpoint the journal carries: each source's tailer positions, and
/// (when there are any) the push bodies remembered per source.
fn checkpoint_json(
    sources: &[SourceRuntime],
    push_record: &BTreeMap<String, VecDeque<String>>,
) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = sources
        .iter()
        .filter_map(|s| {
            let positions = match &s.tailer {
                Some(t) => serde_json::from_str(&t.positions().to_json())
                    .expect("tailer checkpoints are JSON"),
                None => s.kept_positions.clone()?,
            };
            Some((s.config.name.clone(), positions))
        })
        .collect();
    let mut checkpoint = serde_json::json!({ "version": 1, "sources": map });
    if !push_record.is_empty() {
        checkpoint["push"] = serde_json::json!(push_record);
    }
    checkpoint
}

/// The push record of a restored checkpoint.
fn restore_push_record(
    checkpoint: &serde_json::Value,
) -> Result<BTreeMap<String, VecDeque<String>>, IngestError> {
    match checkpoint.get("push") {
        None | Some(serde_json::Value::Null) => Ok(BTreeMap::new()),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| IngestError::Checkpoint(format!("push record: {e}"))),
    }
}

impl Ingest {
    /// Opens the lake (recovering from a crash), restores every source's
    /// position from the last commit, and starts its tailer.
    pub fn open(sources: &[SourceConfig], options: IngestOptions) -> Result<Ingest, IngestError> {
        if sources.is_empty() {
            return Err(IngestError::NoSources);
        }
        let writer = LakeWriter::open(&options.data_dir, options.lake.clone())?;
        let privacy =
            Pseudonymiser::load_or_create(&options.data_dir, options.pseudonym_key.as_deref())?;
        let dead = DeadLetters::open(&options.data_dir, &privacy)
            .map_err(|e| dead_letter_error(&options.data_dir, e))?;
        let restored = writer.checkpoint().clone();
        let mut runtimes = Vec::new();
        for source in sources {
            let adapter =
                formats::by_name(&source.format).ok_or_else(|| IngestError::UnknownFormat {
                    source_name: source.name.clone(),
                    format: source.format.clone(),
                    known: formats::NAMES.join(", "),
                })?;
            let restored_positions = restored.get("sources").and_then(|s| s.get(&source.name));
            if source.paths.is_empty() {
                // Takes pushes only: no tailer.
                runtimes.push(SourceRuntime {
                    config: source.clone(),
                    adapter,
                    tailer: None,
                    kept_positions: restored_positions.cloned(),
                });
                continue;
            }
            let positions = match restored_positions {
                Some(v) => Checkpoints::from_json(&v.to_string()).map_err(|e| {
                    IngestError::Checkpoint(format!("source `{}`: {e}", source.name))
                })?,
                None => Checkpoints::empty(),
            };
            let tail = TailConfig {
                paths: source.paths.clone(),
                start_at: if source.start_at_end {
                    StartAt::End
                } else {
                    StartAt::Beginning
                },
                max_line_bytes: options.max_line_bytes,
                poll_interval: options.poll_interval,
                ..TailConfig::default()
            };
            let tailer = Tailer::new(tail, positions).map_err(|error| IngestError::Tail {
                source_name: source.name.clone(),
                error,
            })?;
            runtimes.push(SourceRuntime {
                config: source.clone(),
                adapter,
                tailer: Some(tailer),
                kept_positions: None,
            });
        }
        let push = PushLedger {
            committed: restore_push_record(&restored)?,
            ..PushLedger::default()
        };
        let threads = rayon::current_num_threads();
        Ok(Ingest {
            sources: runtimes,
            writer,
            dead,
            privacy,
            fhir_base: options.fhir_base,
            stats: IngestStats::default(),
            data_dir: options.data_dir,
            uncommitted_lines: 0,
            uncommitted_since: None,
            max_age: options.lake.max_age,
            push,
            threads,
            on_commit: None,
        })
    }

    /// Prepares to take pushes for `config.sources`: remembers up to
    /// `config.dedup_bodies` committed bodies per source, and returns the
    /// parser the HTTP side uses (same adapters and pseudonymiser as the
    /// tailed lines). Feed its batches through
    /// [`Ingest::follow_with_push`].
    pub fn enable_push(&mut self, config: &PushConfig) -> Result<PushParser, IngestError> {
        let configs: Vec<SourceConfig> = self.sources.iter().map(|s| s.config.clone()).collect();
        let parser = PushParser::new(
            &configs,
            config,
            self.privacy.clone(),
            self.fhir_base.clone(),
        )
        .map_err(IngestError::PushSource)?;
        self.push.limit = Some(config.dedup_bodies);
        Ok(parser)
    }

    /// Takes one parsed push: its events join the buffer and its reply
    /// waits for the next commit. A body already committed (a retry) is
    /// answered at once and written nothing; one already pending waits for
    /// the same commit and is written nothing either.
    pub fn accept_push(&mut self, batch: PushBatch) {
        let PushBatch {
            source,
            body_hash,
            lines,
            bytes,
            event_count,
            events,
            reply,
        } = batch;
        let dedup = self.push.limit.is_some_and(|l| l > 0);
        if dedup && self.push.is_committed(&source, &body_hash) {
            tracing::info!(source = %source, lines, "push of a body already committed: answered without writing it again");
            let _ = reply.send(Ok(PushAck { duplicate: true }));
            return;
        }
        if dedup && self.push.is_pending(&source, &body_hash) {
            self.push.waiters.push((reply, true));
            return;
        }
        self.writer.push_batches(events);
        self.push.pending.push((source.clone(), body_hash));
        self.push.waiters.push((reply, false));
        let per = self.stats.per_source.entry(source).or_default();
        per.lines += lines;
        per.bytes += bytes;
        per.events += event_count;
        per.pushes += 1;
        self.uncommitted_lines += lines;
    }

    /// Pushes are waiting for a commit.
    pub fn push_waiting(&self) -> bool {
        !self.push.waiters.is_empty()
    }

    /// Hands every commit's events to `hook` once they are durable.
    pub fn on_commit(&mut self, hook: CommitHook) {
        self.on_commit = Some(hook);
    }

    pub fn stats(&self) -> &IngestStats {
        &self.stats
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Bytes each source still has to read (file sizes minus positions).
    pub fn lag_bytes(&self) -> u64 {
        self.sources.iter().map(|s| lag(s.tailer.as_ref())).sum()
    }

    /// Reads what every source has now, parses it and buffers the events.
    /// Returns the number of lines read.
    pub fn poll(&mut self) -> Result<u64, IngestError> {
        let mut read = 0;
        for source in &mut self.sources {
            let Some(tailer) = source.tailer.as_mut() else {
                continue;
            };
            let batch = tailer.read_available().map_err(|error| IngestError::Tail {
                source_name: source.config.name.clone(),
                error,
            })?;
            if batch.is_empty() {
                continue;
            }
            self.uncommitted_since.get_or_insert_with(Instant::now);
            let lines: Vec<LineRef<'_>> = batch.iter().collect();
            // Parsing (JSON, JWT claims, HMAC, FHIR paths) is the costly part:
            // spread it over the cores, then apply the results in line order.
            // Parsing (JSON, JWT claims, HMAC, FHIR paths, Arrow builders)
            // is the costly part: spread it over the pool, then apply the
            // results in line order.
            let chunks = if lines.len() >= 4096 {
                4 * self.threads
            } else {
                1
            };
            let chunk = lines.len().div_ceil(chunks);
            let parse =
                |part: &[LineRef<'_>]| parse_lines(part, source, &self.privacy, &self.fhir_base);
            let parsed: Vec<(FinishedBatches, Vec<Outcome>)> = if chunks == 1 {
                vec![parse(&lines)]
            } else {
                lines.par_chunks(chunk).map(parse).collect()
            };
            let name = source.config.name.as_str();
            let per = self.stats.per_source.entry(name.to_string()).or_default();
            let mut line_iter = lines.iter();
            for (events, outcomes) in parsed {
                self.writer.push_finished(events);
                for outcome in outcomes {
                    let line = line_iter.next().expect("one outcome per line");
                    read += 1;
                    per.lines += 1;
                    per.bytes += line.full_len + 1;
                    match outcome {
                        Outcome::Events(n) => per.events += n as u64,
                        Outcome::Dead(reason) => {
                            let path = line.path.to_string_lossy();
                            self.dead
                                .record(name, Some(&path), Some(line.offset), &reason, line.bytes)
                                .map_err(|e| dead_letter_error(&self.data_dir, e))?;
                            per.dead_lettered += 1;
                        }
                    }
                }
            }
        }
        self.uncommitted_lines += read;
        Ok(read)
    }

    /// True when the buffered events (or lines that only dead-lettered)
    /// should be committed now.
    pub fn should_commit(&self) -> bool {
        self.writer.should_commit()
            || self
                .uncommitted_since
                .is_some_and(|t| t.elapsed() >= self.max_age)
    }

    /// Makes everything read so far durable with its checkpoint. A full disk
    /// pauses here, retrying until space returns or `stop` is set (then the
    /// error is returned and nothing read since the last commit is lost: the
    /// lines are read again at the next start).
    ///
    /// Pushes taken since the last commit are answered here: Ok once the
    /// commit returned, else with the error (their events are dropped; the
    /// shipper retries).
    pub fn commit(&mut self, stop: &AtomicBool) -> Result<(), IngestError> {
        let result = self.commit_inner(stop);
        if let Err(e) = &result {
            self.push.failed(&commit_failure(e));
        }
        result
    }

    fn commit_inner(&mut self, stop: &AtomicBool) -> Result<(), IngestError> {
        self.dead
            .flush_durable()
            .map_err(|e| dead_letter_error(&self.data_dir, e))?;
        let push_record = self.push.record_after_commit();
        let checkpoint = checkpoint_json(&self.sources, &push_record);
        let dead_lengths = self.dead.lengths().clone();
        let batches = self.writer.take_batches();
        let started = Instant::now();
        let mut paused_since: Option<Instant> = None;
        loop {
            match self
                .writer
                .commit_batches(&batches, checkpoint.clone(), dead_lengths.clone())
            {
                Ok(stats) => {
                    if let Some(t) = paused_since {
                        tracing::warn!(
                            paused_s = t.elapsed().as_secs(),
                            "disk space is back: ingest resumed, nothing was lost"
                        );
                    }
                    self.stats.auth_events += stats.auth_rows as u64;
                    self.stats.access_events += stats.access_rows as u64;
                    self.stats.commits += 1;
                    tracing::debug!(
                        files = stats.files,
                        auth = stats.auth_rows,
                        access = stats.access_rows,
                        lines = self.uncommitted_lines,
                        ms = started.elapsed().as_millis() as u64,
                        "committed"
                    );
                    self.uncommitted_lines = 0;
                    self.uncommitted_since = None;
                    self.push.committed(push_record);
                    self.refresh_totals();
                    if let Some(hook) = self.on_commit.as_mut() {
                        let caught_up = self.sources.iter().all(|s| lag(s.tailer.as_ref()) == 0);
                        let committed = batches
                            .iter()
                            .flat_map(|(stream, _, parts)| {
                                parts.iter().map(|b| (*stream, b.clone()))
                            })
                            .collect();
                        hook(committed, caught_up);
                    }
                    metrics::counter!("scopewatch_ingest_commits_total").increment(1);
                    metrics::gauge!("scopewatch_ingest_last_commit_timestamp_seconds").set(
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_secs_f64())
                            .unwrap_or_default(),
                    );
                    return Ok(());
                }
                Err(e) if e.is_disk_full() && !stop.load(Ordering::Relaxed) => {
                    if paused_since.is_none() {
                        tracing::error!(
                            lake = %self.writer.lake_dir().display(),
                            "disk full while writing the lake: ingest is paused and retries every 2 s; free space under the data directory, nothing is lost"
                        );
                        paused_since = Some(Instant::now());
                    }
                    std::thread::sleep(Duration::from_secs(2));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Compacts the small files of past days (see [`LakeWriter::compact`]).
    pub fn compact(&mut self) -> Result<usize, IngestError> {
        let today = time::OffsetDateTime::now_utc().date().to_string();
        let replaced = self.writer.compact(&today, 2)?;
        if replaced > 0 {
            tracing::info!(files = replaced, "compacted small files of past days");
        }
        Ok(replaced)
    }

    /// One log line per source: what it read, wrote and how far behind it is.
    pub fn log_sources(&self) {
        for s in &self.sources {
            let st = self
                .stats
                .per_source
                .get(&s.config.name)
                .cloned()
                .unwrap_or_default();
            tracing::info!(
                source = %s.config.name,
                lines = st.lines,
                bytes = st.bytes,
                events = st.events,
                dead_lettered = st.dead_lettered,
                lag_bytes = lag(s.tailer.as_ref()),
                commits = self.stats.commits,
                "source status"
            );
        }
    }

    fn refresh_totals(&mut self) {
        let mut lines = 0;
        let mut bytes = 0;
        let mut dead = 0;
        for (name, s) in &self.stats.per_source {
            lines += s.lines;
            bytes += s.bytes;
            dead += s.dead_lettered;
            metrics::gauge!("scopewatch_source_lines_read", "source" => name.clone())
                .set(s.lines as f64);
            metrics::gauge!("scopewatch_source_bytes_read", "source" => name.clone())
                .set(s.bytes as f64);
            metrics::gauge!("scopewatch_source_events", "source" => name.clone())
                .set(s.events as f64);
            metrics::gauge!("scopewatch_source_dead_lettered", "source" => name.clone())
                .set(s.dead_lettered as f64);
        }
        for s in &self.sources {
            metrics::gauge!("scopewatch_source_lag_bytes", "source" => s.config.name.clone())
                .set(lag(s.tailer.as_ref()) as f64);
        }
        self.stats.lines = lines;
        self.stats.bytes = bytes;
        self.stats.dead_lettered = dead;
    }

    /// Reads until every source is at its end, committing as the buffer
    /// fills, then commits the rest (`ingest --once`).
    pub fn run_to_end(
        &mut self,
        stop: &AtomicBool,
        mut progress: impl FnMut(&IngestStats),
    ) -> Result<(), IngestError> {
        loop {
            let read = self.poll()?;
            if self.writer.should_commit() {
                self.commit(stop)?;
            }
            progress(&self.stats);
            if read == 0 || stop.load(Ordering::Relaxed) {
                self.commit(stop)?;
                progress(&self.stats);
                self.compact()?;
                return Ok(());
            }
        }
    }

    /// Follows every source until `stop` is set, then commits what is
    /// buffered (`scopewatch ingest` with a config).
    pub fn follow(&mut self, stop: &AtomicBool) -> Result<(), IngestError> {
        self.follow_with_push(stop, None)
    }

    /// [`Ingest::follow`], also taking the pushes that arrive on `intake`:
    /// each round drains the queue and commits at once when pushes wait
    /// (pushes arriving during a commit share the next one). When nothing
    /// was read it waits on the queue (a bounded wait) rather than
    /// sleeping, so a push is never kept waiting by an idle loop. At stop,
    /// what is queued is committed and answered with the rest; pushes that
    /// arrive later find the intake gone (the caller drops it) and get 503.
    pub fn follow_with_push(
        &mut self,
        stop: &AtomicBool,
        intake: Option<&PushIntake>,
    ) -> Result<(), IngestError> {
        let mut last_report = Instant::now();
        let mut last_compaction: Option<Instant> = None;
        let mut woken: Option<PushBatch> = None;
        while !stop.load(Ordering::Relaxed) {
            if last_report.elapsed() >= Duration::from_secs(60) {
                self.log_sources();
                last_report = Instant::now();
            }
            if last_compaction.is_none_or(|t| t.elapsed() >= Duration::from_secs(600)) {
                self.compact()?;
                last_compaction = Some(Instant::now());
            }
            let read = self.poll()?;
            let mut pushed = 0;
            if let Some(batch) = woken.take() {
                self.accept_push(batch);
                pushed += 1;
            }
            if let Some(intake) = intake {
                while let Some(batch) = intake.try_recv() {
                    self.accept_push(batch);
                    pushed += 1;
                }
            }
            if self.push_waiting() || self.should_commit() {
                self.commit(stop)?;
            }
            if read == 0 && pushed == 0 {
                let tailer = self.sources.iter_mut().find_map(|s| s.tailer.as_mut());
                match (intake, tailer) {
                    // Appended lines are read at the next round anyway; a
                    // short wait keeps their latency low without notify.
                    (Some(intake), Some(_)) => woken = intake.recv_timeout(PUSH_WAIT_TAILING),
                    (Some(intake), None) => woken = intake.recv_timeout(PUSH_WAIT_IDLE),
                    (None, Some(tailer)) => tailer.wait(Duration::from_millis(100)),
                    (None, None) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        }
        if let Some(batch) = woken.take() {
            self.accept_push(batch);
        }
        if let Some(intake) = intake {
            while let Some(batch) = intake.try_recv() {
                self.accept_push(batch);
            }
        }
        self.commit(stop)
    }
}

/// How long an idle loop waits on the push queue while it also tails files.
const PUSH_WAIT_TAILING: Duration = Duration::from_millis(25);
/// ... and when it only takes pushes.
const PUSH_WAIT_IDLE: Duration = Duration::from_millis(100);

/// What a pusher is told when the commit of its events failed (no paths or
/// values: the error's kind only).
fn commit_failure(e: &IngestError) -> String {
    match e {
        IngestError::Lake(l) if l.is_disk_full() => "the disk is full".into(),
        IngestError::Lake(_) => "writing the lake failed".into(),
        IngestError::DeadLetter { .. } => "writing dead letters failed".into(),
        _ => "ingest failed".into(),
    }
}
