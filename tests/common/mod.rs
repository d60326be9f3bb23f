//! Helpers shared by the end-to-end tests of the binary.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

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

/// Backfills `config`'s sources into `data`; returns the ingest summary.
pub fn ingest(config: &Path, data: &Path) -> serde_json::Value {
    let stdout = run_ok(bin().args([
        "--config",
        config.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "ingest",
        "--once",
        "--quiet",
    ]));
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
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
