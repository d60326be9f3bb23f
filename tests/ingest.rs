//! `scopewatch ingest` run as a user runs it: SIGKILLed at random moments
//! while it follows a growing log, and fed raw tokens and patient ids. The
//! lake is read back with DuckDB.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

mod common;
use common::lake::{access_counts, lake_text};
use common::{all_file_bytes, append, bin, contains_bytes, kill9, sigterm, stderr, wait_until};

/// A JWT with a `jti`, issued to `dr-who-7`.
fn jwt(jti: &str, patient: &str) -> String {
    common::lines::jwt(jti, "dr-who-7", patient)
}

/// One canonical access line; `seq` goes into `bytes` so each line is
/// recognisable in the lake.
fn access_line(seq: u64, patient: &str, token: &str) -> String {
    format!(
        r#"{{"stream":"access","ts":"2026-11-20T10:{:02}:{:02}.000Z","tenant":"north","env":"prod","client_id":"cardio-insight","token":"{token}","method":"GET","path":"/fhir/Patient/{patient}/Observation?category=laboratory","status":200,"bytes":{seq},"latency_ms":12,"ip":"10.0.0.7","patient":"{patient}"}}"#,
        (seq / 60) % 60,
        seq % 60
    )
}

fn write_config(dir: &Path, logs: &Path, data: &Path) -> PathBuf {
    let config = dir.join("scopewatch.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = {data:?}

[ingest]
max_rows_per_file = 300
max_file_age_ms = 30

[[source]]
name = "gateway"
paths = [{glob:?}]
"#,
            data = data.to_str().unwrap(),
            glob = logs.join("*.ndjson").to_str().unwrap(),
        ),
    )
    .unwrap();
    config
}

#[test]
fn sigkill_at_random_moments_loses_nothing_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&logs).unwrap();
    let config = write_config(dir.path(), &logs, &data);
    let log = logs.join("gateway.ndjson");
    let token = jwt("tok-crash", "PAT-CRASH-1");

    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5c0e);
    let mut written = 0u64;
    // bench/crash-soak.sh runs this with hundreds of kills.
    let kills: u32 = std::env::var("SCOPEWATCH_CRASH_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(24);
    for _ in 0..kills {
        let mut child = bin()
            .args(["--config", config.to_str().unwrap(), "ingest"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Lines keep arriving while it runs, in bursts of random size.
        let until = Instant::now() + Duration::from_millis(rng.random_range(40..400));
        while Instant::now() < until {
            let n = rng.random_range(1..400);
            let lines: Vec<String> = (written..written + n)
                .map(|s| access_line(s, "PAT-CRASH-1", &token))
                .collect();
            append(&log, &lines);
            written += n;
            std::thread::sleep(Duration::from_millis(rng.random_range(1..30)));
        }
        kill9(&mut child);
    }

    // One last clean run catches up; SIGTERM commits what is buffered.
    let mut child = bin()
        .args(["--config", config.to_str().unwrap(), "ingest"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let (rows, _, _) = access_counts(&data);
        if rows >= written || Instant::now() > deadline {
            break;
        }
    }
    sigterm(&child);
    let status = child.wait().unwrap();
    assert!(status.success(), "clean stop after SIGTERM: {status}");

    let (rows, ids, seqs) = access_counts(&data);
    assert_eq!(
        seqs, written,
        "every written line is in the lake ({kills} kills)"
    );
    assert_eq!(rows, written, "and none twice");
    assert_eq!(ids, written, "event ids are unique");
}

#[test]
fn no_raw_token_or_patient_id_reaches_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&logs).unwrap();
    let token = jwt("jti-4471", "PAT-SECRET-0042");
    let opaque = "opaque-bearer-Zx81QpL0vYt2";
    let lines = vec![
        access_line(1, "PAT-SECRET-0042", &token),
        access_line(2, "PAT-SECRET-0077", opaque),
        format!(
            r#"{{"stream":"auth","ts":"2026-11-20T10:00:00Z","tenant":"north","kind":"token","client_id":"cardio-insight","user":"dr-who-7","patient":"PAT-SECRET-0042","token":"{token}","refresh_token":"refresh-Qq93kd81","scopes_granted":"launch patient/Observation.rs"}}"#
        ),
        // Malformed lines carrying secrets go to the dead-letter file, redacted.
        format!(
            r#"{{"stream":"access","ts":"2026-11-20T10:00:00Z","patient":"PAT-SECRET-0099","token":"{token}""#
        ),
        format!("GET /fhir/Patient/PAT-SECRET-0123 Authorization: Bearer {opaque}"),
    ];
    append(&logs.join("gw.ndjson"), &lines);
    let out = bin()
        .args([
            "--data",
            data.to_str().unwrap(),
            "ingest",
            "--once",
            "--quiet",
            "--tenant",
            "north",
        ])
        .arg(logs.to_str().unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["events"]["access"], 2);
    assert_eq!(summary["events"]["auth"], 1);
    assert_eq!(summary["dead_lettered"], 2);

    let secrets = [
        token.as_str(),
        token.split('.').nth(1).unwrap(), // the claims alone are a credential's body
        opaque,
        "refresh-Qq93kd81",
        "PAT-SECRET-0042",
        "PAT-SECRET-0077",
        "PAT-SECRET-0099",
        "PAT-SECRET-0123",
        "dr-who-7",
    ];
    let mut files = Vec::new();
    all_file_bytes(&data, &mut files);
    assert!(files
        .iter()
        .any(|(p, _)| p.to_string_lossy().contains("deadletter")));
    let decoded = lake_text(&data);
    assert!(
        decoded.contains("jti:jti-4471"),
        "the token id is kept: {decoded}"
    );
    for secret in secrets {
        for (path, bytes) in &files {
            let hit = contains_bytes(bytes, secret.as_bytes());
            assert!(!hit, "{secret:?} found in {}", path.display());
        }
        assert!(
            !decoded.contains(secret),
            "{secret:?} found in the lake's values"
        );
        assert!(!stderr(&out).contains(secret), "{secret:?} in the logs");
    }
}

/// A tmpfs of `size` mounted on `dir` for the test's lifetime (the test runs
/// as root, as CI does here; a real full disk, not a simulated one).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                dir.to_str().unwrap(),
            ])
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "this test mounts a small tmpfs to fill it up and needs root (CI runs as root)"
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_pauses_ingest_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&logs).unwrap();
    let _fs = Tmpfs::mount(&data, "4m");
    let config = write_config(dir.path(), &logs, &data);
    let log = logs.join("gateway.ndjson");
    let token = jwt("tok-full", "PAT-FULL-1");
    append(
        &log,
        &(0..50)
            .map(|s| access_line(s, "PAT-FULL-1", &token))
            .collect::<Vec<_>>(),
    );

    let mut child = bin()
        .args(["--config", config.to_str().unwrap(), "ingest"])
        .env("SCOPEWATCH_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let wait_for = |rx: &std::sync::mpsc::Receiver<String>, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
                if line.contains(what) {
                    return line;
                }
            }
        }
        panic!("no log line containing {what:?} within 30 s");
    };
    wait_until(Duration::from_secs(30), "the first lines to land", || {
        access_counts(&data).0 >= 50
    });

    // Fill the disk to the last byte, then let more lines arrive.
    let filler = data.join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let small = [0u8; 512];
        while f.write_all(&small).is_ok() {}
        let _ = f.flush();
    }
    append(
        &log,
        &(50..2050)
            .map(|s| access_line(s, "PAT-FULL-1", &token))
            .collect::<Vec<_>>(),
    );
    let line = wait_for(&rx, "disk full");
    assert!(
        line.contains("paused"),
        "the log line says what happens: {line}"
    );
    assert!(!line.contains("PAT-FULL-1"));

    // Space returns: ingest resumes on its own.
    std::fs::remove_file(&filler).unwrap();
    wait_for(&rx, "resumed");
    wait_until(
        Duration::from_secs(30),
        "ingest to catch up after space returned",
        || access_counts(&data).0 >= 2050,
    );
    sigterm(&child);
    assert!(child.wait().unwrap().success());
    let (rows, ids, seqs) = access_counts(&data);
    assert_eq!((rows, ids, seqs), (2050, 2050, 2050), "every line once");
}
