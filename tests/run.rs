//! `scopewatch run` as a user starts it first: no config, in a folder with
//! the bundled samples. It ingests them with the streaming rules, serves
//! the dashboard, prints the first-run credential, and stops cleanly on
//! SIGTERM.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{bin, repo, sigterm};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A plain HTTP/1.1 GET: the status line and headers.
fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn run_without_a_config_serves_the_samples_and_their_alerts() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("sample-logs"), &dir.path().join("sample-logs"));
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = bin()
        .current_dir(dir.path())
        .args(["run", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let alerts = loop {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no alerts within a minute"
        );
        std::thread::sleep(Duration::from_millis(300));
        let out = Command::new(env!("CARGO_BIN_EXE_scopewatch"))
            .args([
                "--data",
                dir.path().join("scopewatch-data").to_str().unwrap(),
            ])
            .args(["alerts", "list", "--format", "json"])
            .output()
            .unwrap();
        let n = String::from_utf8_lossy(&out.stdout).lines().count();
        if n >= 10 {
            break n;
        }
    };
    assert!(alerts >= 10);
    let health = get(port, "/healthz").expect("the dashboard answers");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let alerts_page = get(port, "/alerts").unwrap();
    assert!(
        alerts_page.starts_with("HTTP/1.1 303"),
        "login first: {alerts_page}"
    );
    assert!(alerts_page.contains("location: /login"), "{alerts_page}");
    sigterm(&child);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("username: admin"), "{stdout}");
    assert!(stdout.contains("password: "), "{stdout}");
    // The data went where the samples' config says: ./scopewatch-data.
    assert!(dir.path().join("scopewatch-data/lake/access").is_dir());
}
