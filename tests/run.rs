//! `scopewatch run` as a user starts it first: no config, in a folder with
//! the bundled samples. It ingests them with the streaming rules, serves
//! the dashboard, prints the first-run credential, and stops cleanly on
//! SIGTERM.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

mod common;
use common::http::get;
use common::{bin, free_port, repo, sigterm, wait_for, ChildLog};

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

#[test]
fn run_without_a_config_serves_the_samples_and_their_alerts() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("sample-logs"), &dir.path().join("sample-logs"));
    let port = free_port();
    let log = ChildLog::new(dir.path().join("run.stderr"));
    let child = bin()
        .current_dir(dir.path())
        .args(["run", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(log.stdio())
        .spawn()
        .unwrap();
    let alerts = wait_for(
        Duration::from_secs(60),
        log.explain("ten alerts of the samples"),
        || {
            let out = bin()
                .args([
                    "--data",
                    dir.path().join("scopewatch-data").to_str().unwrap(),
                ])
                .args(["alerts", "list", "--format", "json"])
                .output()
                .unwrap();
            let n = String::from_utf8_lossy(&out.stdout).lines().count();
            (n >= 10).then_some(n)
        },
    );
    assert!(alerts >= 10);
    let health = get(port, "/healthz", &[]);
    assert!(health.head.starts_with("HTTP/1.1 200"), "{health:?}");
    let alerts_page = get(port, "/alerts", &[]);
    assert!(
        alerts_page.head.starts_with("HTTP/1.1 303"),
        "login first: {alerts_page:?}"
    );
    assert!(
        alerts_page.head.contains("location: /login"),
        "{alerts_page:?}"
    );
    sigterm(&child);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        log.explain(format!("exit 0 on SIGTERM, not {}", out.status))
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("username: admin"), "{stdout}");
    assert!(stdout.contains("password: "), "{stdout}");
    // The data went where the samples' config says: ./scopewatch-data.
    assert!(dir.path().join("scopewatch-data/lake/access").is_dir());
}
