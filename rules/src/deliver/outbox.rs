//! The durable outbox. Layout of its directory:
//!
//! ```text
//! msg/<id>.json                      a message waiting to be sent (one alert, or a
//!                                    digest, for one destination), with its retry state
//! digest/<destination>/<start>/<id>.json
//!                                    a low-severity alert waiting for the digest of the
//!                                    period starting at <start> (Unix seconds)
//! sent/<ms>-<id>.json                the last 1000 delivered messages (<ms>: when)
//! failed/<ms>-<id>.json              messages given up (max_attempts reached, destination
//!                                    removed) or unreadable; the last 1000 are kept
//! ```
//!
//! Every file is written aside, fsynced and renamed, and its directory
//! fsynced, so a crash leaves a file whole or absent. A message is moved to
//! `sent/` by one rename once the server accepted it.
//!
//! **Once, and at worst twice.** On the normal path each notification is
//! sent once: its id is derived from the alert id and the destination (or,
//! for a digest, from the destination, period and alerts), queueing an id
//! that is waiting or among the kept `sent/` entries is a no-op, and after
//! a restart the outbox resumes from its files. A crash after the server
//! accepted a message but before the rename sends it again after the
//! restart, with the same id: emails carry `Message-ID: <id@sender-domain>`
//! and webhooks `Idempotency-Key: <id>`, so the receiver can drop the
//! repeat. One process owns an outbox directory at a time.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use scopewatch_model::events::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::config::{Delivery, Destination};
use super::email::{Email, EmailSender};
use super::message::{self, AlertNotice, DigestPeriod};
use super::webhook::WebhookSender;
use super::DeliverError;
use crate::alert::Alert;

/// Delivered messages kept in `sent/` (they also stop a re-queued alert
/// from being sent again).
pub const KEEP_SENT: usize = 1000;
/// Given-up messages kept in `failed/`.
pub const KEEP_FAILED: usize = 1000;
/// Longest error text kept with a message.
const MAX_ERROR_CHARS: usize = 500;
const FORMAT: u32 = 1;

/// The outbox: queues notifications durably and sends them with retries.
///
/// A cheap handle (clone it freely): [`enqueue`](Outbox::enqueue) never
/// waits for the network, even while [`deliver_due`](Outbox::deliver_due)
/// is talking to a slow server. Both block on file IO (fsync), so call
/// them off async threads.
#[derive(Debug, Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    delivery: Delivery,
    email: Option<EmailSender>,
    webhook: WebhookSender,
    state: Mutex<State>,
    /// Held for a whole `deliver_due`: one sender at a time.
    sending: Mutex<()>,
    wake: Mutex<bool>,
    woken: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Messages waiting, by id.
    pending: BTreeMap<String, Record>,
    /// Digest entries by (destination, period start): notification id -> alert.
    buckets: BTreeMap<(String, u64), BTreeMap<String, AlertNotice>>,
    /// Notification ids waiting in a message or a digest bucket.
    queued: HashSet<String>,
    /// Files in `sent/`, oldest first, with the ids each covers.
    sent: VecDeque<(String, Vec<String>)>,
    sent_ids: HashSet<String>,
    /// Files in `failed/`, oldest first.
    failed: VecDeque<String>,
    /// Destinations not tried again before this time (Unix ms): after a
    /// failure, the rest of a destination's queue waits for the same retry
    /// instead of each message meeting the same outage.
    blocked_until: HashMap<String, u64>,
}

/// A message file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    format: u32,
    id: String,
    destination: String,
    created_unix_ms: u64,
    attempts: u32,
    /// 0: due at once.
    next_attempt_unix_ms: u64,
    /// Scrubbed of configured secrets.
    last_error: Option<String>,
    /// Notification ids this message delivers (its own id, or a digest's
    /// entries).
    covers: Vec<String>,
    payload: Payload,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Payload {
    Alert {
        alert: AlertNotice,
    },
    Digest {
        period_start_unix_secs: u64,
        period_end_unix_secs: u64,
        alerts: Vec<AlertNotice>,
    },
}

/// What one [`Outbox::deliver_due`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Messages the server accepted.
    pub sent: usize,
    /// Attempts that failed and are scheduled again.
    pub failed: usize,
    /// Messages moved to `failed/` (attempts exhausted, destination gone).
    pub gave_up: usize,
    /// Digest messages made from ended periods.
    pub digests_made: usize,
    /// Still waiting afterwards: messages plus digest entries.
    pub pending: usize,
}

/// Counts of what the outbox holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStatus {
    /// Messages waiting to be sent (or retried).
    pub messages: usize,
    /// Alerts waiting for their digest.
    pub digest_entries: usize,
    /// Entries kept in `sent/`.
    pub sent_kept: usize,
    /// Entries kept in `failed/`.
    pub failed_kept: usize,
}

/// A message waiting in the outbox, as [`Outbox::queued`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// Also the Message-ID's local part and the Idempotency-Key.
    pub id: String,
    pub destination: String,
    pub digest: bool,
    /// The alerts it is about.
    pub alert_ids: Vec<String>,
    /// Failed attempts so far.
    pub attempts: u32,
    pub next_attempt: SystemTime,
    pub last_error: Option<String>,
}

/// The id of the notification of `alert_id` to `destination`: stable, so
/// queueing the same alert twice queues it once.
pub fn notification_id(alert_id: &str, destination: &str) -> String {
    short_hash(&["scopewatch notification v1", alert_id, destination])
}

fn digest_id(destination: &str, period_start: u64, covers: &[String]) -> String {
    let start = period_start.to_string();
    let mut parts = vec!["scopewatch digest v1", destination, &start];
    parts.extend(covers.iter().map(String::as_str));
    short_hash(&parts)
}

fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    hex::encode(&h.finalize()[..16])
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn rfc3339_secs(secs: u64) -> String {
    Timestamp((secs as i64).saturating_mul(1_000_000)).to_string()
}

/// Replaces every configured secret in an error text and cuts it short.
fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut s = text.to_string();
    for secret in secrets {
        s = s.replace(secret, "<redacted>");
    }
    if s.chars().count() > MAX_ERROR_CHARS {
        s = s.chars().take(MAX_ERROR_CHARS).collect::<String>() + "...";
    }
    s
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DeliverError {
    let path = path.to_path_buf();
    move |source| DeliverError::Io {
        action,
        path,
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<(), DeliverError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", dir))
}

/// Creates `dir` (and parents) durably: each new directory is recorded in
/// its parent.
fn ensure_dir(dir: &Path) -> Result<(), DeliverError> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent_of = |d: &Path| -> PathBuf {
        match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    };
    // The highest missing ancestor.
    let mut top = dir.to_path_buf();
    loop {
        let p = parent_of(&top);
        if p.is_dir() || p == top {
            break;
        }
        top = p;
    }
    fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let mut d = dir.to_path_buf();
    loop {
        let p = parent_of(&d);
        sync_dir(&p)?;
        if d == top || p == d {
            return Ok(());
        }
        d = p;
    }
}

/// Writes `dir/name` whole or not at all.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), DeliverError> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(io_err("write", &tmp))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(io_err("rename into place", &path))?;
    sync_dir(dir)
}

fn list_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>, DeliverError> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let e = e.map_err(io_err("list", dir))?;
        if let Some(name) = e.file_name().to_str() {
            out.push((name.to_string(), e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// `<ms>-<id>.json` -> `id`.
fn id_of_kept(name: &str) -> Option<&str> {
    name.strip_suffix(".json")?
        .split_once('-')
        .map(|(_, id)| id)
}

enum SendError {
    /// Worth retrying.
    Failed(String),
    /// Cannot ever succeed with this configuration.
    Gone(String),
}

impl Outbox {
    /// `digest/<destination>/<period start>/`: a digest's pending entries.
    fn digest_period_dir(&self, dest: &str, start: u64) -> PathBuf {
        self.inner
            .dir
            .join("digest")
            .join(dest)
            .join(start.to_string())
    }

    /// Opens (creating it if needed) the outbox in `dir` and loads what a
    /// previous run left: waiting messages keep their retry schedule.
    pub fn open(dir: &Path, delivery: Delivery) -> Result<Outbox, DeliverError> {
        for sub in ["msg", "digest", "sent", "failed"] {
            ensure_dir(&dir.join(sub))?;
        }
        let email = delivery.smtp.as_ref().map(EmailSender::new).transpose()?;
        let mut st = State::default();

        // Leftovers of writes a crash interrupted.
        for sub in ["msg", "sent", "failed"] {
            for (name, path) in list_dir(&dir.join(sub))? {
                if name.ends_with(".tmp") {
                    let _ = fs::remove_file(path);
                }
            }
        }

        for (name, path) in list_dir(&dir.join("sent"))? {
            let Some(id) = id_of_kept(&name) else {
                continue;
            };
            let covers = fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
                .map(|r| r.covers)
                .unwrap_or_default();
            st.sent_ids.insert(id.to_string());
            st.sent_ids.extend(covers.iter().cloned());
            st.sent.push_back((name, covers));
        }
        st.failed = list_dir(&dir.join("failed"))?
            .into_iter()
            .map(|(n, _)| n)
            .collect();

        let failed_dir = dir.join("failed");
        for (name, path) in list_dir(&dir.join("msg"))? {
            if !name.ends_with(".json") {
                continue;
            }
            let record = fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Record>(&b).map_err(|e| e.to_string()));
            match record {
                Ok(r) if st.sent_ids.contains(&r.id) => {
                    let _ = fs::remove_file(&path);
                }
                Ok(r) => {
                    st.queued.extend(r.covers.iter().cloned());
                    st.pending.insert(r.id.clone(), r);
                }
                Err(e) => {
                    let kept = format!("{:013}-{name}.corrupt", unix_ms(SystemTime::now()));
                    tracing::error!(file = %path.display(), error = %e, moved_to = %failed_dir.join(&kept).display(), "unreadable outbox message set aside");
                    fs::rename(&path, failed_dir.join(&kept))
                        .map_err(io_err("move aside", &path))?;
                    st.failed.push_back(kept);
                }
            }
        }

        let digest_dir = dir.join("digest");
        for (dest, dest_path) in list_dir(&digest_dir)? {
            if !dest_path.is_dir() {
                continue;
            }
            for (start, period_path) in list_dir(&dest_path)? {
                let Ok(start) = start.parse::<u64>() else {
                    continue;
                };
                for (name, path) in list_dir(&period_path)? {
                    let Some(nid) = name.strip_suffix(".json") else {
                        if name.ends_with(".tmp") {
                            let _ = fs::remove_file(&path);
                        }
                        continue;
                    };
                    let notice = fs::read(&path)
                        .ok()
                        .and_then(|b| serde_json::from_slice::<AlertNotice>(&b).ok());
                    match notice {
                        // Already in a digest message (a crash came between
                        // writing it and removing the entries).
                        _ if st.sent_ids.contains(nid) || st.queued.contains(nid) => {
                            let _ = fs::remove_file(&path);
                        }
                        Some(n) => {
                            st.queued.insert(nid.to_string());
                            st.buckets
                                .entry((dest.clone(), start))
                                .or_default()
                                .insert(nid.to_string(), n);
                        }
                        None => {
                            tracing::error!(file = %path.display(), "unreadable digest entry dropped");
                            let _ = fs::remove_file(&path);
                        }
                    }
                }
                // Only succeeds once empty.
                let _ = fs::remove_dir(&period_path);
            }
        }

        let outbox = Outbox {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                delivery,
                email,
                webhook: WebhookSender::new(),
                state: Mutex::new(st),
                sending: Mutex::new(()),
                wake: Mutex::new(false),
                woken: Condvar::new(),
            }),
        };
        let s = outbox.status();
        tracing::info!(
            dir = %dir.display(),
            messages = s.messages,
            digest_entries = s.digest_entries,
            "alert outbox opened"
        );
        Ok(outbox)
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn delivery(&self) -> &Delivery {
        &self.inner.delivery
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere leaves the state consistent enough to go on:
        // every change is one map update after its file write.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues the notifications of a newly raised alert, now. See
    /// [`enqueue_at`](Outbox::enqueue_at).
    pub fn enqueue(
        &self,
        alert: &Alert,
        rule_destinations: &[String],
    ) -> Result<usize, DeliverError> {
        self.enqueue_at(alert, rule_destinations, SystemTime::now())
    }

    /// Queues the notifications of a newly raised alert: one per destination
    /// (the rule's own, then those of matching routes, each once). An alert
    /// below the digest severity waits for the digest of the period `now`
    /// falls in. Durable when it returns; returns how many notifications
    /// were queued. A notification already waiting or recently sent is not
    /// queued again, so calling this twice for an alert (say after a
    /// restart replayed events) is harmless; so is retrying after an error.
    pub fn enqueue_at(
        &self,
        alert: &Alert,
        rule_destinations: &[String],
        now: SystemTime,
    ) -> Result<usize, DeliverError> {
        let delivery = &self.inner.delivery;
        let destinations =
            delivery.destinations_for(&alert.rule, alert.severity, rule_destinations);
        if destinations.is_empty() {
            return Ok(0);
        }
        let notice = AlertNotice::from_alert(alert);
        let digest = delivery
            .digest
            .filter(|_| delivery.goes_to_digest(alert.severity));
        let msg_dir = self.inner.dir.join("msg");
        let mut st = self.state();
        let mut queued = 0;
        for dest in destinations {
            let nid = notification_id(&alert.id, &dest);
            if st.queued.contains(&nid) || st.sent_ids.contains(&nid) {
                tracing::debug!(alert = %alert.id, destination = %dest, "notification already queued or sent");
                continue;
            }
            let bytes;
            if let Some(d) = digest {
                let now_secs = unix_ms(now) / 1000;
                let start = now_secs - now_secs % d.interval_secs;
                let period_dir = self.digest_period_dir(&dest, start);
                ensure_dir(&period_dir)?;
                bytes = serde_json::to_vec_pretty(&notice).expect("an alert notice serializes");
                write_atomic(&period_dir, &format!("{nid}.json"), &bytes)?;
                st.buckets
                    .entry((dest.clone(), start))
                    .or_default()
                    .insert(nid.clone(), notice.clone());
            } else {
                let record = Record {
                    format: FORMAT,
                    id: nid.clone(),
                    destination: dest.clone(),
                    created_unix_ms: unix_ms(now),
                    attempts: 0,
                    next_attempt_unix_ms: 0,
                    last_error: None,
                    covers: vec![nid.clone()],
                    payload: Payload::Alert {
                        alert: notice.clone(),
                    },
                };
                bytes = serde_json::to_vec_pretty(&record).expect("a record serializes");
                write_atomic(&msg_dir, &format!("{nid}.json"), &bytes)?;
                st.pending.insert(nid.clone(), record);
            }
            tracing::info!(
                alert = %alert.id,
                rule = %alert.rule,
                destination = %dest,
                notification = %nid,
                digest = digest.is_some(),
                "alert notification queued"
            );
            st.queued.insert(nid);
            queued += 1;
        }
        drop(st);
        if queued > 0 {
            self.wake();
        }
        Ok(queued)
    }

    /// Turns digest periods that ended by `now` into messages.
    fn make_digests(&self, st: &mut State, now: SystemTime, report: &mut DeliveryReport) {
        let now_secs = unix_ms(now) / 1000;
        // Without [delivery.digest] (removed since the entries were queued)
        // every period is due.
        let interval = self.inner.delivery.digest.map(|d| d.interval_secs);
        let due: Vec<(String, u64)> = st
            .buckets
            .keys()
            .filter(|(_, start)| interval.is_none_or(|i| start + i <= now_secs))
            .cloned()
            .collect();
        let msg_dir = self.inner.dir.join("msg");
        for key in due {
            let (dest, start) = key.clone();
            let entries = st.buckets.remove(&key).unwrap_or_default();
            let covers: Vec<String> = entries.keys().cloned().collect();
            let id = digest_id(&dest, start, &covers);
            if !st.sent_ids.contains(&id) && !st.pending.contains_key(&id) {
                let mut alerts: Vec<AlertNotice> = entries.values().cloned().collect();
                alerts.sort_by(|a, b| (&a.first_seen, &a.id).cmp(&(&b.first_seen, &b.id)));
                let record = Record {
                    format: FORMAT,
                    id: id.clone(),
                    destination: dest.clone(),
                    created_unix_ms: unix_ms(now),
                    attempts: 0,
                    next_attempt_unix_ms: 0,
                    last_error: None,
                    covers: covers.clone(),
                    payload: Payload::Digest {
                        period_start_unix_secs: start,
                        period_end_unix_secs: match interval {
                            Some(i) => start + i,
                            None => now_secs.max(start),
                        },
                        alerts,
                    },
                };
                let bytes = serde_json::to_vec_pretty(&record).expect("a record serializes");
                if let Err(e) = write_atomic(&msg_dir, &format!("{id}.json"), &bytes) {
                    tracing::error!(error = %e, destination = %dest, "cannot write a digest message; will try again");
                    st.buckets.insert(key, entries);
                    return;
                }
                tracing::info!(destination = %dest, notification = %id, alerts = covers.len(), "digest made");
                st.pending.insert(id.clone(), record);
                report.digests_made += 1;
            } else if st.sent_ids.contains(&id) {
                for c in &covers {
                    st.queued.remove(c);
                    st.sent_ids.insert(c.clone());
                }
            }
            let period_dir = self.digest_period_dir(&dest, start);
            for nid in &covers {
                let _ = fs::remove_file(period_dir.join(format!("{nid}.json")));
            }
            let _ = fs::remove_dir(&period_dir);
        }
    }

    /// Sends every message that is due at `now` (making due digests first),
    /// one attempt each, and returns what happened. A failed attempt is
    /// scheduled again after the configured backoff, persisted in its file;
    /// the destination's other messages wait for that retry too.
    pub fn deliver_due(&self, now: SystemTime) -> DeliveryReport {
        let _sending = self
            .inner
            .sending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now_ms = unix_ms(now);
        let mut report = DeliveryReport::default();
        let due: Vec<Record> = {
            let mut st = self.state();
            self.make_digests(&mut st, now, &mut report);
            let mut due: Vec<Record> = st
                .pending
                .values()
                .filter(|r| {
                    r.next_attempt_unix_ms <= now_ms
                        && st
                            .blocked_until
                            .get(&r.destination)
                            .is_none_or(|&t| t <= now_ms)
                })
                .cloned()
                .collect();
            due.sort_by(|a, b| {
                (a.next_attempt_unix_ms, a.created_unix_ms, &a.id).cmp(&(
                    b.next_attempt_unix_ms,
                    b.created_unix_ms,
                    &b.id,
                ))
            });
            due
        };
        let mut failed_now: HashSet<String> = HashSet::new();
        for record in due {
            if failed_now.contains(&record.destination) {
                continue;
            }
            let result = self.send(&record);
            let mut st = self.state();
            match result {
                Ok(()) => {
                    st.blocked_until.remove(&record.destination);
                    tracing::info!(
                        destination = %record.destination,
                        notification = %record.id,
                        attempts = record.attempts + 1,
                        "alert notification delivered"
                    );
                    self.keep(&mut st, record, now_ms, true);
                    report.sent += 1;
                }
                Err(SendError::Gone(why)) => {
                    tracing::error!(destination = %record.destination, notification = %record.id, reason = %why, "alert notification given up");
                    let mut record = record;
                    record.last_error = Some(why);
                    self.keep(&mut st, record, now_ms, false);
                    report.gave_up += 1;
                }
                Err(SendError::Failed(why)) => {
                    failed_now.insert(record.destination.clone());
                    let mut record = record;
                    record.attempts += 1;
                    record.last_error = Some(scrub(&why, &self.inner.delivery.secrets()));
                    let retry = &self.inner.delivery.retry;
                    if retry.gives_up_after(record.attempts) {
                        tracing::error!(
                            destination = %record.destination,
                            notification = %record.id,
                            attempts = record.attempts,
                            error = record.last_error.as_deref().unwrap_or(""),
                            "alert notification given up after its last attempt"
                        );
                        self.keep(&mut st, record, now_ms, false);
                        report.gave_up += 1;
                        continue;
                    }
                    let wait = retry.backoff(record.attempts);
                    record.next_attempt_unix_ms = now_ms + wait.as_millis() as u64;
                    tracing::warn!(
                        destination = %record.destination,
                        notification = %record.id,
                        attempts = record.attempts,
                        retry_in_secs = wait.as_secs_f64(),
                        error = record.last_error.as_deref().unwrap_or(""),
                        "alert notification failed; will retry"
                    );
                    let bytes = serde_json::to_vec_pretty(&record).expect("a record serializes");
                    if let Err(e) = write_atomic(
                        &self.inner.dir.join("msg"),
                        &format!("{}.json", record.id),
                        &bytes,
                    ) {
                        // The schedule holds in memory; a restart retries at once.
                        tracing::error!(error = %e, "cannot persist the retry schedule");
                    }
                    st.blocked_until
                        .insert(record.destination.clone(), record.next_attempt_unix_ms);
                    st.pending.insert(record.id.clone(), record);
                    report.failed += 1;
                }
            }
        }
        let st = self.state();
        report.pending = st.pending.len() + st.buckets.values().map(BTreeMap::len).sum::<usize>();
        report
    }

    /// Moves a message out of the queue: into `sent/` (delivered) or
    /// `failed/` (given up), keeping only the newest entries of each.
    fn keep(&self, st: &mut State, record: Record, now_ms: u64, delivered: bool) {
        let msg_path = self
            .inner
            .dir
            .join("msg")
            .join(format!("{}.json", record.id));
        let sub = if delivered { "sent" } else { "failed" };
        let dir = self.inner.dir.join(sub);
        let name = format!("{now_ms:013}-{}.json", record.id);
        let moved = if delivered {
            fs::rename(&msg_path, dir.join(&name)).map_err(io_err("move", &msg_path))
        } else {
            // The file gets the final attempt count and error.
            let bytes = serde_json::to_vec_pretty(&record).expect("a record serializes");
            write_atomic(&dir, &name, &bytes)
                .and_then(|_| fs::remove_file(&msg_path).map_err(io_err("remove", &msg_path)))
        };
        let synced = moved
            .and_then(|_| sync_dir(&dir))
            .and_then(|_| sync_dir(&self.inner.dir.join("msg")));
        if let Err(e) = synced {
            // Memory moves on regardless; after a restart a delivered message
            // whose move failed is sent again (with the same id).
            tracing::error!(error = %e, notification = %record.id, "cannot move the message in the outbox");
        }
        st.pending.remove(&record.id);
        for c in &record.covers {
            st.queued.remove(c);
        }
        if delivered {
            st.sent_ids.insert(record.id.clone());
            st.sent_ids.extend(record.covers.iter().cloned());
            st.sent.push_back((name, record.covers));
            while st.sent.len() > KEEP_SENT {
                if let Some((old, covers)) = st.sent.pop_front() {
                    let _ = fs::remove_file(dir.join(&old));
                    if let Some(id) = id_of_kept(&old) {
                        st.sent_ids.remove(id);
                    }
                    for c in covers {
                        st.sent_ids.remove(&c);
                    }
                }
            }
        } else {
            st.failed.push_back(name);
            while st.failed.len() > KEEP_FAILED {
                if let Some(old) = st.failed.pop_front() {
                    let _ = fs::remove_file(dir.join(old));
                }
            }
        }
    }

    fn send(&self, record: &Record) -> Result<(), SendError> {
        let delivery = &self.inner.delivery;
        let Some(dest) = delivery.destinations.get(&record.destination) else {
            return Err(SendError::Gone(format!(
                "destination `{}` is no longer configured",
                record.destination
            )));
        };
        let link = |id: &str| message::alert_link(delivery.dashboard_url.as_deref(), id);
        let period = |start: u64, end: u64| (rfc3339_secs(start), rfc3339_secs(end));
        match dest {
            Destination::Email { to } => {
                let Some(sender) = &self.inner.email else {
                    return Err(SendError::Gone("no [delivery.smtp] is configured".into()));
                };
                let (subject, text, html) = match &record.payload {
                    Payload::Alert { alert } => {
                        let l = link(&alert.id);
                        (
                            message::email_subject(alert),
                            message::email_text(alert, l.as_deref()),
                            message::email_html(alert, l.as_deref()),
                        )
                    }
                    Payload::Digest {
                        period_start_unix_secs,
                        period_end_unix_secs,
                        alerts,
                    } => {
                        let (start, end) = period(*period_start_unix_secs, *period_end_unix_secs);
                        let p = DigestPeriod {
                            start: &start,
                            end: &end,
                        };
                        (
                            message::digest_subject(alerts),
                            message::digest_text(alerts, p, link),
                            message::digest_html(alerts, p, link),
                        )
                    }
                };
                tracing::debug!(server = sender.server(), notification = %record.id, "sending email");
                sender
                    .send(&Email {
                        id: &record.id,
                        to,
                        subject,
                        text,
                        html,
                    })
                    .map_err(SendError::Failed)
            }
            Destination::Webhook(target) => {
                let body = match &record.payload {
                    Payload::Alert { alert } => message::webhook_alert_body(alert, link(&alert.id)),
                    Payload::Digest {
                        period_start_unix_secs,
                        period_end_unix_secs,
                        alerts,
                    } => {
                        let (start, end) = period(*period_start_unix_secs, *period_end_unix_secs);
                        message::webhook_digest_body(
                            alerts,
                            DigestPeriod {
                                start: &start,
                                end: &end,
                            },
                            link,
                        )
                    }
                };
                let bytes = serde_json::to_vec(&body).expect("JSON serializes");
                self.inner
                    .webhook
                    .send(target, &record.id, &bytes)
                    .map_err(SendError::Failed)
            }
        }
    }

    /// Messages plus digest entries waiting.
    pub fn pending(&self) -> usize {
        let s = self.status();
        s.messages + s.digest_entries
    }

    pub fn status(&self) -> OutboxStatus {
        let st = self.state();
        OutboxStatus {
            messages: st.pending.len(),
            digest_entries: st.buckets.values().map(BTreeMap::len).sum(),
            sent_kept: st.sent.len(),
            failed_kept: st.failed.len(),
        }
    }

    /// The messages waiting, oldest first.
    pub fn queued(&self) -> Vec<QueuedMessage> {
        let st = self.state();
        let mut out: Vec<QueuedMessage> = st
            .pending
            .values()
            .map(|r| QueuedMessage {
                id: r.id.clone(),
                destination: r.destination.clone(),
                digest: matches!(r.payload, Payload::Digest { .. }),
                alert_ids: match &r.payload {
                    Payload::Alert { alert } => vec![alert.id.clone()],
                    Payload::Digest { alerts, .. } => alerts.iter().map(|a| a.id.clone()).collect(),
                },
                attempts: r.attempts,
                next_attempt: UNIX_EPOCH + Duration::from_millis(r.next_attempt_unix_ms),
                last_error: r.last_error.clone(),
            })
            .collect();
        out.sort_by(|a, b| (a.next_attempt, &a.id).cmp(&(b.next_attempt, &b.id)));
        out
    }

    /// Wakes the deliverer thread (enqueue does this itself).
    pub fn wake(&self) {
        let mut flag = self
            .inner
            .wake
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *flag = true;
        self.inner.woken.notify_all();
    }

    /// Waits until woken or `timeout` passed.
    pub(crate) fn wait_for_work(&self, timeout: Duration) {
        let flag = self
            .inner
            .wake
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (mut flag, _) = self
            .inner
            .woken
            .wait_timeout_while(flag, timeout, |woken| !*woken)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *flag = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(notification_id("a1", "chat"), notification_id("a1", "chat"));
        assert_ne!(notification_id("a1", "chat"), notification_id("a1", "mail"));
        assert_ne!(notification_id("a1", "chat"), notification_id("a", "1chat"));
        assert_eq!(notification_id("a1", "chat").len(), 32);
        let c = vec!["x".to_string()];
        assert_ne!(digest_id("chat", 0, &c), digest_id("chat", 3600, &c));
    }

    #[test]
    fn scrub_removes_secrets_and_cuts() {
        let s = scrub(
            "auth failed for hunter2 at https://h/x/tok",
            &["https://h/x/tok", "hunter2"],
        );
        assert_eq!(s, "auth failed for <redacted> at <redacted>");
        assert_eq!(
            scrub(&"x".repeat(900), &[]).chars().count(),
            MAX_ERROR_CHARS + 3
        );
    }

    #[test]
    fn ensure_dir_creates_nested_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("a/b/c");
        ensure_dir(&d).unwrap();
        assert!(d.is_dir());
        ensure_dir(&d).unwrap();
    }

    #[test]
    fn kept_names_give_ids() {
        assert_eq!(id_of_kept("0001700000000-abcd.json"), Some("abcd"));
        assert_eq!(id_of_kept("junk"), None);
    }
}
