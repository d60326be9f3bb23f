//! The HTTP push endpoint of `scopewatch ingest`: shippers such as Vector or
//! Fluent Bit `POST /ingest/<source>` a body of lines (NDJSON for the
//! canonical format; one entry a line for any other configured format),
//! optionally `Content-Encoding: gzip`, with `Authorization: Bearer <key>`.
//!
//! A request is all or nothing. Its body is read (at most `max_body_bytes`,
//! as sent and once decompressed), every line is parsed by the source's
//! adapter with the process's pseudonymiser (blank lines are skipped), and
//! only when every line parsed are the events handed, as a [`PushBatch`],
//! to the ingest loop that owns the lake writer
//! ([`crate::pipeline::Ingest::follow_with_push`]). The loop commits them
//! (with the tailers' checkpoints, in the same journaled step) and replies;
//! the handler answers 200 only after that commit returned, so a shipper
//! that gets anything else retries and nothing is lost.
//!
//! | status | when | body |
//! |---|---|---|
//! | 200 | the events are durable (or were already: a retried body) | `{"accepted":N,"events":E,"duplicate":false}` |
//! | 400 | a line does not parse; bad gzip; unreadable body | `{"error":"...","line":3,"reason":"..."}` (`line`, `reason` for a bad line) |
//! | 401 | no or wrong bearer key (with `WWW-Authenticate: Bearer`) | `{"error":"..."}` |
//! | 404 | `<source>` is not a source that takes pushes | `{"error":"..."}` |
//! | 413 | body over `max_body_bytes` (as sent or decompressed), or a line over `max_line_bytes` (then with `line`) | `{"error":"...","limit_bytes":L}` |
//! | 415 | a `Content-Encoding` other than gzip or identity | `{"error":"..."}` |
//! | 503 | busy (`Retry-After`), the commit failed, or ingest is stopping | `{"error":"..."}` |
//!
//! Nothing of a 4xx or 503 request is written. Error texts never quote a
//! value from the body (an adapter's [`crate::adapter::ParseError`] does
//! not), and the key is never logged.
//!
//! **Ids and retries.** An event's id is
//! `<source>:push-<first 16 hex digits of SHA-256(decompressed body)>:<byte
//! offset of its line>`, its `source_file` is `push` and its
//! `source_offset` the line's offset in the decompressed body, so the same
//! body always gives the same ids. The ingest loop also remembers the
//! SHA-256 of the last `dedup_bodies` committed bodies of each source in the
//! lake journal's checkpoint (committed atomically with the events): a
//! retried body (say, after the answer was lost when scopewatch was
//! SIGKILLed just after its commit) is answered 200 with `"duplicate":true`
//! and written nothing, so retries are exactly once. With
//! `dedup_bodies = 0`, or a retry older than the remembered window, the
//! events are written again under the same ids (at least once; duplicates
//! are detectable by `event_id`).

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use scopewatch_model::config::{KeySource, PushConfig, Source as SourceConfig};
use scopewatch_model::request::FhirBase;
use sha2::{Digest, Sha256};
use tokio::sync::{oneshot, Semaphore};

use crate::adapter::{Adapter, LineContext, Parsed};
use crate::formats;
use crate::lake::DayBatches;
use crate::privacy::Pseudonymiser;

/// The `source_file` of pushed events.
pub const SOURCE_FILE: &str = "push";

/// Hex digits of the body's SHA-256 in event ids.
const ID_HASH_HEX: usize = 16;
/// Hex digits of the body's SHA-256 remembered for retries.
pub(crate) const DEDUP_HASH_HEX: usize = 32;

/// Why the push endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("ingest.push: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("ingest.push: {0}")]
    Key(String),
    #[error("ingest.push: starting the HTTP runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// One parsed request, handed from the HTTP side to the ingest loop.
pub struct PushBatch {
    pub source: String,
    /// The first [`DEDUP_HASH_HEX`] hex digits of SHA-256 of the body.
    pub body_hash: String,
    /// Non-blank lines.
    pub lines: u64,
    /// Bytes of the (decompressed) body.
    pub bytes: u64,
    pub event_count: u64,
    pub events: DayBatches,
    /// Answered once the events are durable, or with why not.
    pub reply: oneshot::Sender<Result<PushAck, PushRefused>>,
}

impl fmt::Debug for PushBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushBatch")
            .field("source", &self.source)
            .field("body_hash", &self.body_hash)
            .field("lines", &self.lines)
            .field("event_count", &self.event_count)
            .finish()
    }
}

/// The events of a push are durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushAck {
    /// The same body had been committed before: nothing was written again.
    pub duplicate: bool,
}

/// The events of a push were not made durable (the shipper should retry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRefused(pub String);

/// The HTTP side's end of the queue to the ingest loop.
#[derive(Debug, Clone)]
pub struct PushQueue {
    tx: mpsc::SyncSender<PushBatch>,
}

/// The ingest loop's end of the queue.
#[derive(Debug)]
pub struct PushIntake {
    rx: mpsc::Receiver<PushBatch>,
}

/// A bounded queue from the HTTP handlers to the ingest loop.
pub fn queue(capacity: usize) -> (PushQueue, PushIntake) {
    let (tx, rx) = mpsc::sync_channel(capacity.max(1));
    (PushQueue { tx }, PushIntake { rx })
}

impl PushIntake {
    /// A batch waiting now, if any.
    pub fn try_recv(&self) -> Option<PushBatch> {
        self.rx.try_recv().ok()
    }

    /// Waits up to `timeout` for a batch. When the HTTP side is gone it
    /// just sleeps, so a caller's loop keeps its pace.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<PushBatch> {
        match self.rx.recv_timeout(timeout) {
            Ok(b) => Some(b),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(timeout);
                None
            }
        }
    }
}

/// Why a body was refused before it reached the ingest loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Over `max_body_bytes`, as sent or once decompressed.
    TooLarge {
        limit: usize,
        decompressed: bool,
    },
    /// A line over `max_line_bytes` (1-based line number).
    LineTooLong {
        line: usize,
        limit: usize,
    },
    BadGzip,
    /// Gzip bytes sent without `Content-Encoding: gzip`.
    LooksGzip,
    /// The first line that does not parse (1-based), and why (never
    /// quoting a value).
    BadLine {
        line: usize,
        reason: String,
    },
}

impl BodyError {
    fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } | BodyError::LineTooLong { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn label(&self) -> &'static str {
        match self {
            BodyError::TooLarge { .. } | BodyError::LineTooLong { .. } => "too_large",
            BodyError::BadGzip | BodyError::LooksGzip => "bad_encoding",
            BodyError::BadLine { .. } => "bad_line",
        }
    }

    fn body(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            BodyError::TooLarge {
                limit,
                decompressed,
            } => json!({
                "error": format!(
                    "request body over max_body_bytes ({limit} bytes){}; nothing was written",
                    if *decompressed { " once decompressed" } else { "" }
                ),
                "limit_bytes": limit,
            }),
            BodyError::LineTooLong { line, limit } => json!({
                "error": format!("line {line} is over max_line_bytes ({limit} bytes); nothing was written"),
                "line": line,
                "limit_bytes": limit,
            }),
            BodyError::BadGzip => json!({
                "error": "the body is not valid gzip (Content-Encoding: gzip); nothing was written",
            }),
            BodyError::LooksGzip => json!({
                "error": "the body looks gzip-compressed: send Content-Encoding: gzip; nothing was written",
            }),
            BodyError::BadLine { line, reason } => json!({
                "error": format!("line {line}: {reason}; nothing was written"),
                "line": line,
                "reason": reason,
            }),
        }
    }
}

struct PushSource {
    config: SourceConfig,
    adapter: Box<dyn Adapter>,
}

/// Parses pushed bodies with the sources' adapters and the process's
/// pseudonymiser. `Send + Sync`: the HTTP side shares one.
pub struct PushParser {
    sources: HashMap<String, PushSource>,
    privacy: Pseudonymiser,
    fhir_base: FhirBase,
    max_line_bytes: usize,
    max_body_bytes: usize,
}

impl fmt::Debug for PushParser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.sources.keys().collect();
        names.sort();
        f.debug_struct("PushParser")
            .field("sources", &names)
            .field("max_line_bytes", &self.max_line_bytes)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

/// What a whole body gave.
#[derive(Debug)]
pub struct ParsedBody {
    pub body_hash: String,
    pub lines: u64,
    pub bytes: u64,
    pub event_count: u64,
    pub events: DayBatches,
}

impl PushParser {
    /// A parser for `config.sources`, whose configs are among `sources`.
    /// Returns the name of a source it cannot serve (unknown, or with an
    /// unknown format).
    pub fn new(
        sources: &[SourceConfig],
        config: &PushConfig,
        privacy: Pseudonymiser,
        fhir_base: FhirBase,
    ) -> Result<PushParser, String> {
        let mut map = HashMap::new();
        for name in &config.sources {
            let source = sources
                .iter()
                .find(|s| &s.name == name)
                .ok_or_else(|| name.clone())?;
            let adapter = formats::by_name(&source.format).ok_or_else(|| name.clone())?;
            map.insert(
                name.clone(),
                PushSource {
                    config: source.clone(),
                    adapter,
                },
            );
        }
        Ok(PushParser {
            sources: map,
            privacy,
            fhir_base,
            max_line_bytes: config.max_line_bytes,
            max_body_bytes: config.max_body_bytes,
        })
    }

    /// Whether `source` takes pushes.
    pub fn has_source(&self, source: &str) -> bool {
        self.sources.contains_key(source)
    }

    /// The body as sent, gunzipped when `gzip`, within `max_body_bytes`.
    pub fn decode(&self, body: Vec<u8>, gzip: bool) -> Result<Vec<u8>, BodyError> {
        let limit = self.max_body_bytes;
        if body.len() > limit {
            return Err(BodyError::TooLarge {
                limit,
                decompressed: false,
            });
        }
        if !gzip {
            if body.starts_with(&[0x1f, 0x8b]) {
                return Err(BodyError::LooksGzip);
            }
            return Ok(body);
        }
        let mut out = Vec::with_capacity((body.len() * 4).min(limit));
        // One byte past the limit tells "too large" from "exactly the limit".
        flate2::read::MultiGzDecoder::new(body.as_slice())
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|_| BodyError::BadGzip)?;
        if out.len() > limit {
            return Err(BodyError::TooLarge {
                limit,
                decompressed: true,
            });
        }
        Ok(out)
    }

    /// Parses every line of `body` for `source` (which must take pushes).
    /// All or nothing: the first line that is too long or does not parse
    /// refuses the whole body.
    pub fn parse(&self, source: &str, body: &[u8]) -> Result<ParsedBody, BodyError> {
        use std::fmt::Write;
        let Some(src) = self.sources.get(source) else {
            return Err(BodyError::BadLine {
                line: 0,
                reason: "not a push source".into(),
            });
        };
        let digest = hex::encode(Sha256::digest(body));
        let id_hash = &digest[..ID_HASH_HEX];
        let mut events = DayBatches::with_capacity(body.len() / 256 + 1);
        let mut scratch: Vec<Parsed> = Vec::new();
        let mut event_id = String::new();
        let (mut lines, mut event_count) = (0u64, 0u64);
        let mut start = 0usize;
        let mut number = 0usize;
        while start < body.len() {
            let end = body[start..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(body.len(), |i| start + i);
            number += 1;
            let mut line = &body[start..end];
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            let offset = start;
            start = end + 1;
            if line.len() > self.max_line_bytes {
                return Err(BodyError::LineTooLong {
                    line: number,
                    limit: self.max_line_bytes,
                });
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            event_id.clear();
            let _ = write!(event_id, "{source}:push-{id_hash}:{offset}");
            let ctx = LineContext {
                source,
                event_id: &event_id,
                source_file: Some(SOURCE_FILE),
                offset: Some(offset as u64),
                tenant: src.config.tenant.as_deref(),
                env: src.config.env,
                privacy: &self.privacy,
                fhir_base: &self.fhir_base,
                options: &src.config.options,
            };
            scratch.clear();
            src.adapter
                .parse_line(line, &ctx, &mut scratch)
                .map_err(|e| BodyError::BadLine {
                    line: number,
                    reason: e.to_string(),
                })?;
            for parsed in &scratch {
                match parsed {
                    Parsed::Auth(e) => events.push_auth(e),
                    Parsed::Access(e) => events.push_access(e),
                }
            }
            lines += 1;
            event_count += scratch.len() as u64;
        }
        Ok(ParsedBody {
            body_hash: digest[..DEDUP_HASH_HEX].to_string(),
            lines,
            bytes: body.len() as u64,
            event_count,
            events,
        })
    }
}

type KeyDigest = [u8; 32];

/// The bearer keys, kept as SHA-256 digests and compared in constant time.
struct Keys {
    shared: Option<KeyDigest>,
    per_source: HashMap<String, KeyDigest>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keys(<redacted>)")
    }
}

fn digest(bytes: &[u8]) -> KeyDigest {
    Sha256::digest(bytes).into()
}

/// Equal digests, in time independent of where they differ.
fn ct_eq(a: &KeyDigest, b: &KeyDigest) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl Keys {
    fn resolve(
        config: &PushConfig,
        env: impl Fn(&str) -> Option<String> + Copy,
    ) -> Result<Keys, PushError> {
        let one = |k: &KeySource, whose: &str| {
            k.resolve(env)
                .map(|s| digest(s.expose().as_bytes()))
                .map_err(|m| PushError::Key(format!("{whose}: {m}")))
        };
        let shared = config.key.as_ref().map(|k| one(k, "the key")).transpose()?;
        let mut per_source = HashMap::new();
        for (source, k) in &config.source_keys {
            per_source.insert(source.clone(), one(k, &format!("source {source}'s key"))?);
        }
        Ok(Keys { shared, per_source })
    }

    /// Whether `presented` is `source`'s key; for a source that takes no
    /// pushes, whether it is any configured key (so a caller without a key
    /// learns nothing about which sources exist).
    fn accepts(&self, source: Option<&str>, presented: &str) -> bool {
        let d = digest(presented.as_bytes());
        match source {
            Some(s) => match self.per_source.get(s).or(self.shared.as_ref()) {
                Some(k) => ct_eq(k, &d),
                None => false,
            },
            None => self
                .shared
                .iter()
                .chain(self.per_source.values())
                .fold(false, |acc, k| acc | ct_eq(k, &d)),
        }
    }
}

struct AppState {
    parser: Arc<PushParser>,
    keys: Keys,
    queue: PushQueue,
    permits: Arc<Semaphore>,
    max_body_bytes: usize,
}

/// The running endpoint: a tokio runtime on its own thread.
#[derive(Debug)]
pub struct PushServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<Duration>>,
    thread: Option<JoinHandle<()>>,
}

impl PushServer {
    /// Resolves the keys (environment variables named in the config), binds
    /// `config.listen` and starts serving on a thread of its own. Batches go
    /// to `queue`, whose intake the ingest loop must drain.
    pub fn start(
        config: &PushConfig,
        parser: PushParser,
        queue: PushQueue,
    ) -> Result<PushServer, PushError> {
        let keys = Keys::resolve(config, |name| std::env::var(name).ok())?;
        let listener =
            std::net::TcpListener::bind(config.listen).map_err(|source| PushError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| PushError::Bind {
            addr: config.listen,
            source,
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| PushError::Bind { addr, source })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("scopewatch-push")
            .enable_io()
            .enable_time()
            .build()
            .map_err(PushError::Runtime)?;
        let state = Arc::new(AppState {
            parser: Arc::new(parser),
            keys,
            queue,
            permits: Arc::new(Semaphore::new(config.max_concurrent_requests)),
            max_body_bytes: config.max_body_bytes,
        });
        let app = Router::new()
            .route("/ingest/{source}", post(handle))
            .fallback(not_found)
            .with_state(state);
        let (stop_tx, stop_rx) = oneshot::channel::<Duration>();
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener)
                .map_err(|source| PushError::Bind { addr, source })?
        };
        let thread = std::thread::Builder::new()
            .name("scopewatch-push".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let (graceful_tx, graceful_rx) = oneshot::channel::<()>();
                    let server = tokio::spawn(async move {
                        axum::serve(listener, app)
                            .with_graceful_shutdown(async {
                                let _ = graceful_rx.await;
                            })
                            .await
                    });
                    let grace = stop_rx.await.unwrap_or(Duration::ZERO);
                    let _ = graceful_tx.send(());
                    match tokio::time::timeout(grace, server).await {
                        Ok(Ok(Ok(()))) => {}
                        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "push endpoint failed"),
                        Ok(Err(e)) => tracing::warn!(error = %e, "push endpoint task failed"),
                        Err(_) => tracing::warn!(
                            grace_ms = grace.as_millis() as u64,
                            "push endpoint: connections still open after the grace period; closing them"
                        ),
                    }
                });
                runtime.shutdown_timeout(Duration::from_millis(200));
            })
            .map_err(PushError::Runtime)?;
        Ok(PushServer {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The address it listens on (the actual port when `listen` gave 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests in progress finish for up to `grace`,
    /// then closes the rest, and waits for the thread. Drop the
    /// [`PushIntake`] first: requests still waiting for the ingest loop then
    /// get 503 at once.
    pub fn stop(mut self, grace: Duration) {
        self.shutdown(grace);
    }

    fn shutdown(&mut self, grace: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(grace);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for PushServer {
    fn drop(&mut self) {
        self.shutdown(Duration::ZERO);
    }
}

/// A JSON answer.
fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    answer(status, serde_json::json!({ "error": message }))
}

fn unauthorized(message: &str, presented: bool) -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, message);
    let challenge = if presented {
        "Bearer realm=\"scopewatch\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"scopewatch\""
    };
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    r
}

fn retry_later(message: &str) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not found: POST /ingest/<source> to push lines",
    )
}

/// Counts a refused request and logs it (never with a value from it).
fn refused(source: &str, reason: &'static str, status: StatusCode, response: Response) -> Response {
    metrics::counter!("scopewatch_push_requests_total", "source" => source.to_string(), "status" => status.as_u16().to_string()).increment(1);
    metrics::counter!("scopewatch_push_rejected_total", "source" => source.to_string(), "reason" => reason).increment(1);
    tracing::info!(source, status = status.as_u16(), reason, "push refused");
    response
}

/// The bearer key of an `Authorization` header, if it has one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, key) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| key.trim())
        .filter(|k| !k.is_empty())
}

async fn handle(
    State(state): State<Arc<AppState>>,
    UrlPath(source): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let known = state.parser.has_source(&source);
    // A name nobody configured must not become a metric label.
    let label = if known { source.as_str() } else { "(unknown)" };
    let presented = bearer(&headers);
    let Some(key) = presented else {
        let had_header = headers.contains_key(header::AUTHORIZATION);
        return refused(
            label,
            "unauthorized",
            StatusCode::UNAUTHORIZED,
            unauthorized(
                "send the push key as `Authorization: Bearer <key>`",
                had_header,
            ),
        );
    };
    if !state.keys.accepts(known.then_some(source.as_str()), key) {
        return refused(
            label,
            "unauthorized",
            StatusCode::UNAUTHORIZED,
            unauthorized("wrong push key", true),
        );
    }
    if !known {
        return refused(
            label,
            "unknown_source",
            StatusCode::NOT_FOUND,
            error(
                StatusCode::NOT_FOUND,
                "no such source: the path names a [[source]] that takes pushes",
            ),
        );
    }
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("identity") => false,
        Some("gzip") | Some("x-gzip") => true,
        Some(_) => {
            return refused(
                label,
                "bad_encoding",
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported Content-Encoding: send gzip or nothing",
                ),
            )
        }
    };
    let limit = state.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        let e = BodyError::TooLarge {
            limit,
            decompressed: false,
        };
        return refused(label, e.label(), e.status(), answer(e.status(), e.body()));
    }
    let Ok(_permit) = Arc::clone(&state.permits).try_acquire_owned() else {
        return refused(
            label,
            "busy",
            StatusCode::SERVICE_UNAVAILABLE,
            retry_later("too many pushes at once; retry"),
        );
    };
    metrics::gauge!("scopewatch_push_in_flight").increment(1.0);
    let response = receive(&state, &source, body, gzip).await;
    metrics::gauge!("scopewatch_push_in_flight").decrement(1.0);
    match response {
        Ok((parsed, ack)) => {
            let status = StatusCode::OK;
            metrics::counter!("scopewatch_push_requests_total", "source" => source.clone(), "status" => "200").increment(1);
            if ack.duplicate {
                metrics::counter!("scopewatch_push_duplicates_total", "source" => source.clone())
                    .increment(1);
            } else {
                metrics::counter!("scopewatch_push_accepted_lines_total", "source" => source.clone())
                    .increment(parsed.0);
                metrics::counter!("scopewatch_push_accepted_events_total", "source" => source.clone())
                    .increment(parsed.1);
            }
            tracing::debug!(
                source = %source,
                lines = parsed.0,
                events = parsed.1,
                duplicate = ack.duplicate,
                ms = started.elapsed().as_millis() as u64,
                "push committed"
            );
            answer(
                status,
                serde_json::json!({
                    "accepted": parsed.0,
                    "events": parsed.1,
                    "duplicate": ack.duplicate,
                }),
            )
        }
        Err((reason, status, response)) => refused(label, reason, status, response),
    }
}

type Refusal = (&'static str, StatusCode, Response);

/// Reads, decodes and parses the body, hands it to the ingest loop and
/// waits for the commit. Ok: (lines, events) and the loop's answer.
async fn receive(
    state: &Arc<AppState>,
    source: &str,
    body: Body,
    gzip: bool,
) -> Result<((u64, u64), PushAck), Refusal> {
    use http_body_util::BodyExt;
    let limit = state.max_body_bytes;
    let bytes = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            let e = BodyError::TooLarge {
                limit,
                decompressed: false,
            };
            return Err((e.label(), e.status(), answer(e.status(), e.body())));
        }
        Err(_) => {
            return Err((
                "bad_body",
                StatusCode::BAD_REQUEST,
                error(
                    StatusCode::BAD_REQUEST,
                    "could not read the request body; nothing was written",
                ),
            ))
        }
    };
    let parser = Arc::clone(&state.parser);
    let name = source.to_string();
    let parsed = tokio::task::spawn_blocking(move || {
        let body = parser.decode(bytes.to_vec(), gzip)?;
        parser.parse(&name, &body)
    })
    .await;
    let parsed = match parsed {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return Err((e.label(), e.status(), answer(e.status(), e.body()))),
        Err(_) => {
            return Err((
                "internal",
                StatusCode::INTERNAL_SERVER_ERROR,
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "parsing failed unexpectedly; nothing was written",
                ),
            ))
        }
    };
    let counts = (parsed.lines, parsed.event_count);
    if parsed.lines == 0 {
        // Nothing to make durable (an empty body, or only blank lines).
        return Ok((counts, PushAck { duplicate: false }));
    }
    let (reply, answer_rx) = oneshot::channel();
    let batch = PushBatch {
        source: source.to_string(),
        body_hash: parsed.body_hash,
        lines: parsed.lines,
        bytes: parsed.bytes,
        event_count: parsed.event_count,
        events: parsed.events,
        reply,
    };
    let unavailable = |message: &str| -> Refusal {
        (
            "unavailable",
            StatusCode::SERVICE_UNAVAILABLE,
            retry_later(message),
        )
    };
    match state.queue.tx.try_send(batch) {
        Ok(()) => {}
        Err(mpsc::TrySendError::Full(_)) => {
            return Err(unavailable("ingest is busy; retry"));
        }
        Err(mpsc::TrySendError::Disconnected(_)) => {
            return Err(unavailable("ingest is stopping; retry"));
        }
    }
    match answer_rx.await {
        Ok(Ok(ack)) => Ok((counts, ack)),
        Ok(Err(PushRefused(why))) => Err(unavailable(&format!(
            "the events could not be made durable ({why}); nothing was acknowledged, retry"
        ))),
        Err(_) => Err(unavailable(
            "ingest stopped before the events were durable; retry",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scopewatch_model::config::Secret;
    use scopewatch_model::events::Env;

    fn config(max_line_bytes: usize, max_body_bytes: usize) -> (Vec<SourceConfig>, PushConfig) {
        let source = SourceConfig {
            name: "ship".into(),
            format: "scopewatch".into(),
            paths: vec![],
            tenant: Some("north".into()),
            env: Env::Prod,
            start_at_end: false,
            options: Default::default(),
        };
        let push = PushConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            key: Some(KeySource::Literal(Secret::new("shared-key-0123456789"))),
            source_keys: Default::default(),
            sources: vec!["ship".into()],
            max_body_bytes,
            max_line_bytes,
            dedup_bodies: 8,
            max_concurrent_requests: 4,
        };
        (vec![source], push)
    }

    fn parser(max_line_bytes: usize, max_body_bytes: usize) -> PushParser {
        let (sources, push) = config(max_line_bytes, max_body_bytes);
        PushParser::new(
            &sources,
            &push,
            Pseudonymiser::from_key([3; 32]),
            FhirBase::auto(),
        )
        .unwrap()
    }

    const LINE: &str = r#"{"stream":"access","ts":"2026-11-20T10:00:00Z","client_id":"app","method":"GET","path":"/fhir/Patient/PAT-RAW-1","status":200}"#;

    #[test]
    fn ids_are_deterministic_and_blank_lines_skipped() {
        let p = parser(4096, 1 << 20);
        let body = format!("{LINE}\n\n  \r\n{LINE}\r\n");
        let a = p.parse("ship", body.as_bytes()).unwrap();
        let b = p.parse("ship", body.as_bytes()).unwrap();
        assert_eq!(a.lines, 2);
        assert_eq!(a.event_count, 2);
        assert_eq!(a.body_hash, b.body_hash);
        assert_eq!(a.body_hash.len(), DEDUP_HASH_HEX);
        let other = p.parse("ship", format!("{LINE}\n").as_bytes()).unwrap();
        assert_ne!(a.body_hash, other.body_hash);
    }

    #[test]
    fn the_first_bad_line_is_named_without_its_value() {
        let p = parser(4096, 1 << 20);
        let body = format!("{LINE}\n{{\"stream\":\"access\",\"status\":\"PAT-RAW-2\"\n{LINE}\n");
        match p.parse("ship", body.as_bytes()) {
            Err(BodyError::BadLine { line, reason }) => {
                assert_eq!(line, 2);
                assert!(!reason.contains("PAT-RAW-2"), "{reason}");
                let text = BodyError::BadLine { line, reason }.body().to_string();
                assert!(text.contains("line 2"), "{text}");
                assert!(!text.contains("PAT-RAW"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        let long = format!("{LINE}\n{}\n", "x".repeat(5000));
        assert_eq!(
            p.parse("ship", long.as_bytes()).unwrap_err(),
            BodyError::LineTooLong {
                line: 2,
                limit: 4096
            }
        );
    }

    #[test]
    fn gzip_is_limited_after_decompression() {
        use std::io::Write;
        let p = parser(4096, 4096);
        let gz = |data: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        };
        let small = format!("{LINE}\n");
        assert_eq!(
            p.decode(gz(small.as_bytes()), true).unwrap(),
            small.as_bytes()
        );
        // 1 MiB of zeros compresses to about 1 KiB: under the limit as sent,
        // far over it once decompressed.
        let bomb = gz(&vec![b'0'; 1 << 20]);
        assert!(bomb.len() < 4096);
        assert_eq!(
            p.decode(bomb, true).unwrap_err(),
            BodyError::TooLarge {
                limit: 4096,
                decompressed: true
            }
        );
        assert_eq!(
            p.decode(b"not gzip".to_vec(), true).unwrap_err(),
            BodyError::BadGzip
        );
        assert_eq!(p.decode(gz(b"x"), false).unwrap_err(), BodyError::LooksGzip);
        assert_eq!(
            p.decode(vec![b'a'; 5000], false).unwrap_err(),
            BodyError::TooLarge {
                limit: 4096,
                decompressed: false
            }
        );
    }

    #[test]
    fn keys_are_checked_per_source() {
        let (_, mut push) = config(4096, 4096);
        push.source_keys.insert(
            "own".into(),
            KeySource::Literal(Secret::new("own-key-0123456789ab")),
        );
        let keys = Keys::resolve(&push, |_| None).unwrap();
        assert!(keys.accepts(Some("ship"), "shared-key-0123456789"));
        assert!(!keys.accepts(Some("ship"), "shared-key-012345678"));
        assert!(keys.accepts(Some("own"), "own-key-0123456789ab"));
        assert!(!keys.accepts(Some("own"), "shared-key-0123456789"));
        assert!(keys.accepts(None, "own-key-0123456789ab"));
        assert!(!keys.accepts(None, "nobody's key at all"));
        push.key = Some(KeySource::Env("SW_TEST_UNSET_PUSH_KEY".into()));
        let e = Keys::resolve(&push, |_| None).unwrap_err().to_string();
        assert!(e.contains("SW_TEST_UNSET_PUSH_KEY"), "{e}");
    }

    #[test]
    fn bearer_header_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer  abc "),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
    }
}
