//! Streaming detection: the events of each batch ingest commits are judged
//! at once, in event-time order, and new alerts are handed to delivery.
//!
//! Order. While ingest is still catching up (a backfill, or a restart with
//! unread lines), sources are read at different speeds, so their events
//! are held and judged in one time-ordered pass once ingest has caught up
//! (or the buffer is full); from then on each commit is judged as it lands.
//! That is what makes streaming and backtest agree.
//!
//! Restarts. The engine's state and the last event judged are saved under
//! `<data>/alerts/` after every pass (written aside, fsynced, renamed); at
//! start the caller replays the lake's events after that point
//! ([`Detector::resume_after`]), and folding by stable alert id makes a
//! replayed event that already counted change nothing. A raised alert is
//! handed to delivery before it is made durable, so a crash in between
//! delivers it on replay (the outbox takes a notification once).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use scopewatch_model::events::Timestamp;
use scopewatch_model::registry::Registry;

use crate::alert::Alert;
use crate::config::{Rule, Rules};
use crate::engine::{Engine, Snapshot};
use crate::event::Event;
use crate::store::{AlertStore, StoreError};

/// Where new alerts are handed for delivery (the outbox); an error stops
/// the pass before anything is made durable, so it is retried.
pub type Notifier = Box<dyn FnMut(&Alert, &Rule) -> Result<(), String> + Send>;

/// Events held while ingest catches up, at most (then judged anyway).
pub const MAX_HELD_EVENTS: usize = 500_000;

/// `<data>/alerts`.
pub fn alerts_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("alerts")
}

/// Streaming detection failed.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {doing} the rules' saved state failed: {message}")]
    State {
        path: PathBuf,
        doing: &'static str,
        message: String,
    },
    #[error("queueing the notification of alert {alert} failed: {message}")]
    Notify { alert: String, message: String },
}

#[derive(Debug)]
pub struct Detector {
    engine: Engine,
    store: AlertStore,
    held: Vec<Event>,
    state_path: PathBuf,
}

impl Detector {
    /// Opens the alert store and the saved state under `<data>/alerts/`.
    pub fn open(
        data_dir: &Path,
        rules: Arc<Rules>,
        registry: Option<Arc<Registry>>,
    ) -> Result<Detector, DetectError> {
        let dir = alerts_dir(data_dir);
        let store = AlertStore::open(&dir.join("alerts.jsonl"))?;
        let state_path = dir.join("engine-state.json");
        let mut engine = Engine::new(rules, registry);
        match std::fs::read(&state_path) {
            Ok(bytes) => {
                let snapshot: Snapshot =
                    serde_json::from_slice(&bytes).map_err(|e| DetectError::State {
                        path: state_path.clone(),
                        doing: "reading",
                        message: format!("{e}; delete the file to start the rules afresh"),
                    })?;
                let fresh = engine.restore(snapshot);
                if !fresh.is_empty() {
                    tracing::info!(
                        rules = fresh.join(","),
                        "rules new or changed since the last run start with empty state"
                    );
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(DetectError::State {
                    path: state_path,
                    doing: "reading",
                    message: e.to_string(),
                })
            }
        }
        Ok(Detector {
            engine,
            store,
            held: Vec::new(),
            state_path,
        })
    }

    /// Events after this were not judged before the last stop: replay them
    /// from the lake (see the module docs).
    pub fn resume_after(&self) -> Option<(Timestamp, String)> {
        self.engine.watermark().cloned()
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn store(&self) -> &AlertStore {
        &self.store
    }

    pub fn store_mut(&mut self) -> &mut AlertStore {
        &mut self.store
    }

    /// Takes the events of one commit. `caught_up`: ingest has read all
    /// there is to read. Judges what it may (see the module docs), hands
    /// each new alert to `notify`, then makes alerts and state durable.
    /// Returns the alerts raised.
    pub fn offer(
        &mut self,
        events: Vec<Event>,
        caught_up: bool,
        notify: &mut dyn FnMut(&Alert, &Rule) -> Result<(), String>,
    ) -> Result<Vec<Alert>, DetectError> {
        self.held.extend(events);
        if self.held.is_empty() || !(caught_up || self.held.len() >= MAX_HELD_EVENTS) {
            return Ok(Vec::new());
        }
        // Status changes made meanwhile by another process (the dashboard)
        // decide whether a hit folds or opens a new alert.
        self.store.refresh()?;
        let mut batch = std::mem::take(&mut self.held);
        batch.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        let late_before = self.engine.late;
        let raised = self.engine.judge_into(&batch, &mut self.store);
        let late = self.engine.late - late_before;
        if late > 0 {
            tracing::warn!(
                late,
                "events arrived after later ones were judged; they were judged late (a slow source?)"
            );
        }
        let mut out = Vec::new();
        for id in raised {
            let alert = self
                .store
                .get(&id)
                .expect("raised alerts are stored")
                .clone();
            let rule = self
                .engine
                .rules()
                .rule(&alert.rule)
                .expect("alerts name loaded rules");
            notify(&alert, rule).map_err(|message| DetectError::Notify {
                alert: id.clone(),
                message,
            })?;
            out.push(alert);
        }
        self.store.flush()?;
        self.save_state()?;
        Ok(out)
    }

    fn save_state(&self) -> Result<(), DetectError> {
        let err = |doing, message: String| DetectError::State {
            path: self.state_path.clone(),
            doing,
            message,
        };
        let bytes = serde_json::to_vec(&self.engine.snapshot())
            .map_err(|e| err("encoding", e.to_string()))?;
        let tmp = self.state_path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.state_path)
        };
        write().map_err(|e| err("writing", e.to_string()))
    }
}
