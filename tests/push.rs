//! The HTTP push endpoint of `scopewatch ingest`, driven as a shipper drives
//! it: NDJSON posted plain and gzip-compressed, acknowledged only once
//! durable (checked by SIGKILLing right after the answer), retries written
//! once, bad requests refused with clear errors and nothing written, and no
//! raw token or patient id anywhere under the data directory. The lake is
//! read back with DuckDB.

use std::io::{BufRead, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::http::{request, Response};
use common::lake::{access_counts, lake_text, open_lake};
use common::{all_file_bytes, bin, contains_bytes, kill9, sigterm, wait_until};

const KEY_ENV: &str = "SCOPEWATCH_TEST_PUSH_KEY";
const KEY: &str = "push-key-Vb7qLx02mZr9TgW4";

/// A JWT with a `jti`, issued to `dr-who-9`.
fn jwt(jti: &str, patient: &str) -> String {
    common::lines::jwt(jti, "dr-who-9", patient)
}

/// One canonical access line; `seq` goes into `bytes` so each line is
/// recognisable in the lake.
fn access_line(seq: u64, patient: &str, token: &str) -> String {
    format!(
        r#"{{"stream":"access","ts":"2026-11-20T11:{:02}:{:02}.000Z","env":"prod","client_id":"cardio-insight","token":"{token}","method":"GET","path":"/fhir/Patient/{patient}/Observation?category=laboratory","status":200,"bytes":{seq},"latency_ms":9,"ip":"10.0.0.8"}}"#,
        (seq / 60) % 60,
        seq % 60
    )
}

fn ndjson(lines: &[String]) -> Vec<u8> {
    let mut body = String::new();
    for l in lines {
        body.push_str(l);
        body.push('\n');
    }
    body.into_bytes()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A config with a push-only source `shipper` and a tailed source
/// `gateway` (so both paths run in one process). `key` is either
/// `key_env = ...` or `key = ...`.
fn write_config(dir: &Path, data: &Path, key: &str) -> PathBuf {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let config = dir.join("scopewatch.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = {data:?}

[ingest]
max_file_age_ms = 200
max_line_bytes = 2048

[ingest.push]
listen = "127.0.0.1:0"
{key}
max_body_bytes = 65536

[[source]]
name = "shipper"
tenant = "north"

[[source]]
name = "gateway"
paths = [{glob:?}]
tenant = "north"
"#,
            data = data.to_str().unwrap(),
            glob = logs.join("*.ndjson").to_str().unwrap(),
        ),
    )
    .unwrap();
    config
}

/// `scopewatch ingest` running, its stderr collected.
struct Running {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Running {
    fn start(config: &Path, env: &[(&str, &str)]) -> Running {
        let mut cmd = bin();
        // At info, it logs the address it listens on.
        cmd.env("SCOPEWATCH_LOG", "info")
            .args(["--config", config.to_str().unwrap(), "ingest"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().unwrap().push_str(&line);
                sink.lock().unwrap().push('\n');
                let _ = tx.send(line);
            }
        });
        // The address is logged once the listener is bound.
        let marker = "listening on http://";
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            assert!(
                Instant::now() < deadline,
                "no `{marker}` log line within 30 s:\n{}",
                log.lock().unwrap()
            );
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
                if let Some(i) = line.find(marker) {
                    let rest = &line[i + marker.len()..];
                    let end = rest.find([' ', ')']).unwrap_or(rest.len());
                    break rest[..end].parse::<SocketAddr>().unwrap();
                }
            }
        };
        // ... and accepts connections.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "{addr} never accepted");
            std::thread::sleep(Duration::from_millis(20));
        }
        Running { child, addr, log }
    }

    /// NDJSON posted as a shipper posts it, on its own connection.
    fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let mut all = vec![("Content-Type", "application/x-ndjson")];
        all.extend_from_slice(headers);
        request(self.addr, "POST", path, &all, body)
    }

    fn kill9(mut self) {
        kill9(&mut self.child);
    }

    /// SIGTERM and a clean exit; returns the log.
    fn stop(mut self) -> String {
        sigterm(&self.child);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "clean stop after SIGTERM: {status}");
        // The reader thread ends with the pipe; give it a moment.
        std::thread::sleep(Duration::from_millis(100));
        let log = self.log.lock().unwrap().clone();
        log
    }
}

fn bearer() -> String {
    format!("Bearer {KEY}")
}

#[test]
fn acknowledged_pushes_survive_sigkill_and_retries_are_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = write_config(dir.path(), &data, &format!("key_env = {KEY_ENV:?}"));
    let token = jwt("jti-push-1", "PAT-PUSH-1");
    let plain = ndjson(
        &(0..50)
            .map(|s| access_line(s, "PAT-PUSH-1", &token))
            .collect::<Vec<_>>(),
    );
    // Blank lines are skipped; CRLF is fine.
    let mut lines: Vec<String> = (50..120)
        .map(|s| access_line(s, "PAT-PUSH-1", &token))
        .collect();
    lines.insert(10, String::new());
    lines[20].push('\r');
    let compressed = gzip(&ndjson(&lines));

    let run = Running::start(&config, &[(KEY_ENV, KEY)]);
    let a = run.post("/ingest/shipper", &[("Authorization", &bearer())], &plain);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json()["accepted"], 50);
    assert_eq!(a.json()["duplicate"], false);
    let a = run.post(
        "/ingest/shipper",
        &[("Authorization", &bearer()), ("Content-Encoding", "gzip")],
        &compressed,
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json()["accepted"], 70);
    // Killed the moment the answer is in: what was acknowledged is durable.
    run.kill9();
    assert_eq!(
        access_counts(&data),
        (120, 120, 120),
        "acknowledged = in the lake"
    );

    // A restart; the shipper, which lost the answer, sends the body again.
    let run = Running::start(&config, &[(KEY_ENV, KEY)]);
    let a = run.post(
        "/ingest/shipper",
        &[("Authorization", &bearer()), ("Content-Encoding", "gzip")],
        &compressed,
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json()["accepted"], 70);
    assert_eq!(
        a.json()["duplicate"],
        true,
        "a retried body is not written again"
    );
    // The tailed source still works beside the endpoint.
    std::fs::write(
        dir.path().join("logs/gw.ndjson"),
        ndjson(&[access_line(1000, "PAT-TAIL-1", "opaque-tail-token")]),
    )
    .unwrap();
    wait_until(Duration::from_secs(30), "the tailed line to land", || {
        access_counts(&data).0 >= 121
    });
    run.stop();

    assert_eq!(
        access_counts(&data),
        (121, 121, 121),
        "every acknowledged event exactly once"
    );
    let lake = open_lake(&data);
    let (pushed, lineage_ok, tenant_ok): (i64, i64, i64) = lake
        .connection()
        .query_row(
            "SELECT count(*), count(*) FILTER (WHERE source_file = 'push' AND source_offset IS NOT NULL AND event_id LIKE 'shipper:push-%'), count(*) FILTER (WHERE tenant = 'north') FROM access WHERE source = 'shipper'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((pushed, lineage_ok, tenant_ok), (120, 120, 120));
}

#[test]
fn bad_requests_get_clear_errors_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = write_config(dir.path(), &data, &format!("key = {KEY:?}"));
    let run = Running::start(&config, &[]);
    let auth = bearer();
    let good = ndjson(&[access_line(1, "PAT-BAD-1", "opaque-abc-123456")]);
    let a = run.post("/ingest/shipper", &[("Authorization", &auth)], &good);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(access_counts(&data).0, 1);

    // No key, a wrong key, another scheme.
    let a = run.post("/ingest/shipper", &[], &good);
    assert_eq!(a.status, 401, "{a:?}");
    assert!(
        a.head
            .to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{a:?}"
    );
    let a = run.post(
        "/ingest/shipper",
        &[("Authorization", "Bearer push-key-Vb7qLx02mZr9TgW5")],
        &good,
    );
    assert_eq!(a.status, 401, "{a:?}");
    assert!(a
        .head
        .to_ascii_lowercase()
        .contains("www-authenticate: bearer"));
    let a = run.post(
        "/ingest/shipper",
        &[("Authorization", &format!("Basic {KEY}"))],
        &good,
    );
    assert_eq!(a.status, 401, "{a:?}");

    // Line 3 is not JSON: the whole request is refused, naming the line
    // and never quoting it.
    let mut lines = vec![
        access_line(2, "PAT-BAD-2", "opaque-abc-123456"),
        access_line(3, "PAT-BAD-3", "opaque-abc-123456"),
        r#"{"stream":"access","patient":"PAT-BAD-SECRET-4","status":"#.to_string(),
        access_line(5, "PAT-BAD-5", "opaque-abc-123456"),
    ];
    let a = run.post(
        "/ingest/shipper",
        &[("Authorization", &auth)],
        &ndjson(&lines),
    );
    assert_eq!(a.status, 400, "{a:?}");
    assert_eq!(a.json()["line"], 3, "{a:?}");
    assert!(
        a.json()["error"].as_str().unwrap().contains("line 3"),
        "{a:?}"
    );
    assert!(!a.body.contains("PAT-BAD-SECRET-4"), "{a:?}");
    // A wrong field type, too.
    lines[2] = access_line(4, "PAT-BAD-4", "opaque-abc-123456")
        .replace(r#""status":200"#, r#""status":"two hundred""#);
    let a = run.post(
        "/ingest/shipper",
        &[("Authorization", &auth)],
        &ndjson(&lines),
    );
    assert_eq!(a.status, 400, "{a:?}");
    assert_eq!(a.json()["line"], 3, "{a:?}");
    assert!(
        a.json()["reason"].as_str().unwrap().contains("status"),
        "{a:?}"
    );

    // Over max_body_bytes (64 KiB) as sent, and only once decompressed.
    let big: Vec<String> = (0..400)
        .map(|s| access_line(s, "PAT-BIG-1", "opaque-abc-123456"))
        .collect();
    let big = ndjson(&big);
    assert!(big.len() > 65536);
    let a = run.post("/ingest/shipper", &[("Authorization", &auth)], &big);
    assert_eq!(a.status, 413, "{a:?}");
    let bomb = gzip(&vec![b' '; 8 << 20]);
    let a = run.post(
        "/ingest/shipper",
        &[("Authorization", &auth), ("Content-Encoding", "gzip")],
        &bomb,
    );
    assert_eq!(a.status, 413, "{a:?}");
    assert!(a.body.contains("decompressed"), "{a:?}");
    // A line over max_line_bytes (2048).
    let long = format!(
        "{}\n{}\n",
        access_line(6, "PAT-BAD-6", "opaque-abc-123456"),
        access_line(7, "PAT-BAD-7", &"x".repeat(3000))
    );
    let a = run.post(
        "/ingest/shipper",
        &[("Authorization", &auth)],
        long.as_bytes(),
    );
    assert_eq!(a.status, 413, "{a:?}");
    assert_eq!(a.json()["line"], 2, "{a:?}");
    // Bad gzip; an encoding it does not speak.
    let a = run.post(
        "/ingest/shipper",
        &[("Authorization", &auth), ("Content-Encoding", "gzip")],
        &good,
    );
    assert_eq!(a.status, 400, "{a:?}");
    let a = run.post(
        "/ingest/shipper",
        &[("Authorization", &auth), ("Content-Encoding", "br")],
        &good,
    );
    assert_eq!(a.status, 415, "{a:?}");
    // A source nobody configured, and one that exists only without a key.
    let a = run.post("/ingest/nosuch", &[("Authorization", &auth)], &good);
    assert_eq!(a.status, 404, "{a:?}");
    let a = run.post("/ingest/nosuch", &[], &good);
    assert_eq!(
        a.status, 401,
        "unauthenticated callers learn nothing: {a:?}"
    );
    let a = run.post("/elsewhere", &[("Authorization", &auth)], &good);
    assert_eq!(a.status, 404, "{a:?}");

    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(access_counts(&data).0, 1, "nothing refused was written");
    let log = run.stop();
    assert_eq!(access_counts(&data).0, 1, "nothing refused was written");
    assert!(log.contains("push refused"), "{log}");
    assert!(!log.contains(KEY), "the key is never logged");
    assert!(!log.contains("PAT-BAD-SECRET-4"), "{log}");
}

#[test]
fn pushed_raw_tokens_and_patient_ids_reach_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = write_config(dir.path(), &data, &format!("key_env = {KEY_ENV:?}"));
    let token = jwt("jti-push-secret", "PAT-PUSH-SECRET-0042");
    let opaque = "opaque-bearer-Qm81ZpL0vYt7";
    let lines = vec![
        access_line(1, "PAT-PUSH-SECRET-0042", &token),
        access_line(2, "PAT-PUSH-SECRET-0077", &format!("Bearer {opaque}")),
        format!(
            r#"{{"stream":"auth","ts":"2026-11-20T10:00:00Z","kind":"token","client_id":"cardio-insight","user":"dr-who-9","patient":"PAT-PUSH-SECRET-0042","token":"{token}","refresh_token":"refresh-Rr41kd93","scopes_granted":"launch patient/Observation.rs"}}"#
        ),
    ];
    let mut cmd_env = vec![(KEY_ENV, KEY)];
    cmd_env.push(("SCOPEWATCH_LOG", "debug"));
    let run = Running::start(&config, &cmd_env);
    let a = run.post(
        "/ingest/shipper",
        &[("Authorization", &bearer()), ("Content-Encoding", "gzip")],
        &gzip(&ndjson(&lines)),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json()["events"], 3);
    // A refused request carrying secrets leaves no trace either.
    let bad = format!(
        "{}\n{{\"stream\":\"access\",\"patient\":\"PAT-PUSH-SECRET-0099\",\"token\":\"{token}\"\n",
        lines[0]
    );
    let a = run.post(
        "/ingest/shipper",
        &[("Authorization", &bearer())],
        bad.as_bytes(),
    );
    assert_eq!(a.status, 400, "{a:?}");
    for secret in ["PAT-PUSH-SECRET", token.as_str(), opaque] {
        assert!(!a.body.contains(secret), "{secret:?} in the answer: {a:?}");
    }
    let log = run.stop();

    let decoded = lake_text(&data);
    assert!(
        decoded.contains("jti:jti-push-secret"),
        "the token id is kept: {decoded}"
    );
    let secrets = [
        token.as_str(),
        token.split('.').nth(1).unwrap(),
        opaque,
        "refresh-Rr41kd93",
        "PAT-PUSH-SECRET-0042",
        "PAT-PUSH-SECRET-0077",
        "PAT-PUSH-SECRET-0099",
        "dr-who-9",
        KEY,
    ];
    let mut files = Vec::new();
    all_file_bytes(&data, &mut files);
    assert!(files
        .iter()
        .any(|(p, _)| p.extension().is_some_and(|e| e == "parquet")));
    for secret in secrets {
        for (path, bytes) in &files {
            let hit = contains_bytes(bytes, secret.as_bytes());
            assert!(!hit, "{secret:?} found in {}", path.display());
        }
        assert!(!decoded.contains(secret), "{secret:?} in the lake's values");
        assert!(!log.contains(secret), "{secret:?} in the logs");
    }
}
