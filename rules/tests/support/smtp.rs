//! A real SMTP server on loopback for tests: aiosmtpd, started from
//! `rules/tests/smtp_sink.py` (scripts/setup.sh installs Debian's
//! python3-aiosmtpd). Shared by the delivery tests of `rules` and the
//! end-to-end tests of the binary (`#[path]`-included by both).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// `rules/tests/smtp_sink.py`, from either crate's tests.
fn script() -> PathBuf {
    let here = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
    );
    [
        here.join("tests/smtp_sink.py"),
        here.join("rules/tests/smtp_sink.py"),
    ]
    .into_iter()
    .find(|p| p.exists())
    .expect("rules/tests/smtp_sink.py")
}

/// The first python3 that can import aiosmtpd.
pub fn python_with_aiosmtpd() -> String {
    let mut candidates = Vec::new();
    if let Ok(p) = std::env::var("SCOPEWATCH_TEST_PYTHON") {
        candidates.push(p);
    }
    candidates.push("/usr/bin/python3".to_string());
    candidates.push("python3".to_string());
    for c in &candidates {
        let ok = Command::new(c)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return c.clone();
        }
    }
    panic!(
        "the delivery tests need a real SMTP server, aiosmtpd, and no python3 here has it \
         (tried {candidates:?}): run scripts/setup.sh (it installs Debian's python3-aiosmtpd), \
         or set SCOPEWATCH_TEST_PYTHON to a python3 that can `import aiosmtpd`"
    );
}

/// aiosmtpd on 127.0.0.1:`port`, saving what it receives into `dir`.
pub struct SmtpSink {
    child: Child,
    dir: PathBuf,
}

impl SmtpSink {
    pub fn start(port: u16, dir: &Path) -> SmtpSink {
        std::fs::create_dir_all(dir).unwrap();
        let script = script();
        let mut child = Command::new(python_with_aiosmtpd())
            .arg(&script)
            .arg(dir)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(secs(20)) {
            Ok(line) if line.trim() == "READY" => SmtpSink {
                child,
                dir: dir.to_path_buf(),
            },
            other => {
                let _ = child.kill();
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("the SMTP server (tests/smtp_sink.py) did not start on port {port}: {other:?}\n{err}");
            }
        }
    }

    /// Parsed messages received so far, in arrival order.
    pub fn messages(&self) -> Vec<Value> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| {
                let mut v: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
                let raw = std::fs::read_to_string(p.with_extension("eml")).unwrap();
                v["raw"] = Value::String(raw);
                v
            })
            .collect()
    }

    pub fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + secs(10);
        loop {
            let m = self.messages();
            if m.len() >= n || Instant::now() > deadline {
                return m;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
