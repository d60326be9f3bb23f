//! Helpers shared by the end-to-end tests of the binary.

#![allow(dead_code)]

pub mod alerting;
pub mod http;
pub mod lake;
pub mod lines;

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The built binary, with none of the caller's scopewatch settings.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_scopewatch"));
    c.env_remove("SCOPEWATCH_CONFIG")
        .env_remove("SCOPEWATCH_DATA")
        .env_remove("SCOPEWATCH_LISTEN")
        .env_remove("SCOPEWATCH_PSEUDONYM_KEY")
        .env("SCOPEWATCH_LOG", "warn");
    for (var, _) in scopewatch_model::config::ENV_OVERRIDES {
        c.env_remove(var);
    }
    c
}

/// The checkout the tests run from (read at run time: a test binary reused
/// from the shared target directory must find its own checkout).
pub fn repo() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run under cargo test"))
}

/// The bundled samples' config.
pub fn samples_config() -> PathBuf {
    repo().join("sample-logs/scopewatch.toml")
}

/// Runs `cmd`, fails the test with its stderr unless it succeeds, and
/// returns its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `cmd` as [`run_ok`] does and parses the last line it printed (a
/// summary) as JSON.
pub fn run_json(cmd: &mut Command) -> Value {
    let stdout = run_ok(cmd);
    let last = stdout.lines().last().expect("a summary line");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON: {last}: {e}"))
}

/// What a finished command wrote on stderr, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One JSON value per line of `text` (`--format json` output).
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

/// Backfills `config`'s sources into `data`; returns the ingest summary.
pub fn ingest(config: &Path, data: &Path) -> Value {
    run_json(bin().args([
        "--config",
        config.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "ingest",
        "--once",
        "--quiet",
    ]))
}

/// Appends `lines` to `path` in one write, as a logger would.
pub fn append(path: &Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut buf = String::new();
    for l in lines {
        buf.push_str(l);
        buf.push('\n');
    }
    f.write_all(buf.as_bytes()).unwrap();
}

/// SIGKILL: no handler runs, nothing is flushed.
pub fn kill9(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// SIGTERM: the process commits and stops.
pub fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// Where `needle` first occurs in `hay`.
pub fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Whether `needle` occurs in `hay` (a secret in a file's raw bytes).
pub fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    find_bytes(hay, needle).is_some()
}

/// The raw bytes of every file under `dir`, Parquet included.
pub fn all_file_bytes(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            all_file_bytes(&path, out);
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
}

/// A free loopback port (the SMTP support's, so there is one way to pick
/// ports).
pub fn free_port() -> u16 {
    alerting::smtp::free_port()
}

/// Waits until `done` gives a value, or fails after `limit` saying `what`
/// (formatted only then: see [`ChildLog::explain`]).
pub fn wait_for<T>(
    limit: Duration,
    what: impl fmt::Display,
    mut done: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = done() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `done` holds, or fails after `limit` saying `what`.
pub fn wait_until(limit: Duration, what: impl fmt::Display, mut done: impl FnMut() -> bool) {
    wait_for(limit, what, || done().then_some(()))
}

/// Now, as RFC 3339 (the `ts` of a line a live system writes now).
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// The log (stderr) of a spawned `scopewatch`, kept in a file of the test's
/// temp dir so that a failure can say what the process said.
pub struct ChildLog {
    path: PathBuf,
}

impl ChildLog {
    pub fn new(path: PathBuf) -> ChildLog {
        ChildLog { path }
    }

    /// For `Command::stderr`. It appends: after a restart, the new process's
    /// log follows the one before it.
    pub fn stdio(&self) -> Stdio {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .unwrap_or_else(|e| panic!("{}: {e}", self.path.display()))
            .into()
    }

    /// Everything logged so far.
    pub fn read(&self) -> String {
        std::fs::read_to_string(&self.path).unwrap_or_default()
    }

    /// `what`, followed by the log as it is when this is displayed: for
    /// assertion messages, which are formatted only when they fail.
    pub fn explain<'a, D: fmt::Display + 'a>(&'a self, what: D) -> impl fmt::Display + 'a {
        Explained { what, log: self }
    }
}

struct Explained<'a, D> {
    what: D,
    log: &'a ChildLog,
}

impl<D: fmt::Display> fmt::Display for Explained<'_, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}\n--- the process's log ({}) ---\n{}",
            self.what,
            self.log.path.display(),
            self.log.read()
        )
    }
}
