//! The end-to-end test of `scopewatch run`, the binary driven as a user
//! drives it: a generated ecosystem's logs, a config that adds a live log
//! and email to a real SMTP server on loopback, and new lines appended while
//! it runs, a refresh-token replay among them. The events must reach the
//! lake, the replay alert the dashboard's API and the mail server (once),
//! and the report must count the appended calls; after a SIGKILL and a
//! restart nothing may be lost or counted twice.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::alerting::{outbox_pending, start_smtp, write_rules_mailing_secops, SmtpSink};
use common::http::{get_with_token, parse_response};
use common::lines::refresh_line;
use common::{
    append, bin, free_port, json_lines, kill9, now_rfc3339, run_ok, sigterm, wait_for, ChildLog,
};

/// The running `scopewatch run`, with what it printed on stdout; its log
/// goes to `log`.
struct Running {
    child: Child,
    stdout: Arc<Mutex<String>>,
}

impl Running {
    fn start(config: &Path, port: u16, log: &ChildLog) -> Running {
        let mut child = bin()
            .args(["--config", config.to_str().unwrap(), "run"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::piped())
            .stderr(log.stdio())
            .spawn()
            .unwrap();
        let stdout = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let sink = Arc::clone(&stdout);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        wait_for(
            Duration::from_secs(20),
            log.explain("the dashboard to listen"),
            || TcpStream::connect(("127.0.0.1", port)).ok(),
        );
        Running { child, stdout }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }
}

/// `scopewatch sql` over the lake, one JSON object per row.
fn sql(config: &Path, query: &str) -> Vec<Value> {
    json_lines(&run_ok(bin().args([
        "--config",
        config.to_str().unwrap(),
        "sql",
        "--format",
        "json",
        query,
    ])))
}

/// Rows, distinct event ids and rows of the live source, per stream.
fn live_counts(config: &Path) -> BTreeMap<String, (u64, u64)> {
    sql(
        config,
        "SELECT 'access' AS stream, count(*) AS n, count(DISTINCT event_id) AS ids FROM access \
         WHERE source = 'live' UNION ALL \
         SELECT 'auth', count(*), count(DISTINCT event_id) FROM auth WHERE source = 'live'",
    )
    .into_iter()
    .map(|r| {
        (
            r["stream"].as_str().unwrap().to_string(),
            (r["n"].as_u64().unwrap(), r["ids"].as_u64().unwrap()),
        )
    })
    .collect()
}

/// Rows and distinct event ids per stream and source, over the whole lake.
fn lake_by_source(config: &Path) -> Vec<(String, String, u64, u64)> {
    let mut rows: Vec<(String, String, u64, u64)> = sql(
        config,
        "SELECT 'access' AS stream, source, count(*) AS n, count(DISTINCT event_id) AS ids \
         FROM access GROUP BY source UNION ALL \
         SELECT 'auth', source, count(*), count(DISTINCT event_id) FROM auth GROUP BY source",
    )
    .into_iter()
    .map(|r| {
        (
            r["stream"].as_str().unwrap().to_string(),
            r["source"].as_str().unwrap().to_string(),
            r["n"].as_u64().unwrap(),
            r["ids"].as_u64().unwrap(),
        )
    })
    .collect();
    rows.sort();
    rows
}

/// The alert ids the messages at the SMTP server link to, one per message.
fn mailed_alert_ids(mail: &SmtpSink) -> Vec<String> {
    mail.messages()
        .iter()
        .map(|m| {
            let raw = m["raw"].as_str().unwrap();
            let at = raw.find("/alerts/al-").expect("a link to the alert") + "/alerts/".len();
            raw[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect()
        })
        .collect()
}

/// An app the generated registry lists as active in `tenant`.
fn active_app(registry: &str, tenant: &str) -> String {
    registry
        .split("[[app]]")
        .skip(1)
        .find(|block| {
            block.contains("status = \"active\"") && block.contains(&format!("\"{tenant}\""))
        })
        .and_then(|block| {
            let line = block.lines().find(|l| l.starts_with("client_id = "))?;
            Some(line.split('"').nth(1)?.to_string())
        })
        .expect("an active app in the generated registry")
}

struct Live {
    log: PathBuf,
    client: String,
    lines: u64,
    calls: u64,
    denied: u64,
    refreshes: u64,
    seq: u64,
}

impl Live {
    /// `n` FHIR calls of the app, every eighth one refused (too few for the
    /// denied-burst rule).
    fn calls(&mut self, n: u64) {
        let mut lines = Vec::new();
        for _ in 0..n {
            self.seq += 1;
            let denied = self.seq.is_multiple_of(8);
            lines.push(
                json!({
                    "stream": "access", "ts": now_rfc3339(),
                    "tenant": "north", "client_id": self.client,
                    "token_id": format!("at-live-{}", self.seq / 10),
                    "method": "GET",
                    "path": format!("/fhir/r4/north/Observation?patient=live-{}", self.seq % 7),
                    "status": if denied { 403 } else { 200 },
                    "bytes": 512, "latency_ms": 12.5, "ip": "10.9.0.1",
                    "user_agent": "LiveApp/1.0.0 (SMART client)",
                })
                .to_string(),
            );
            self.calls += 1;
            self.denied += u64::from(denied);
        }
        self.write(&lines);
    }

    /// A successful refresh consuming `consumed` and issuing `issued`.
    fn refresh(&mut self, consumed: &str, issued: &str, ip: &str) {
        let line = refresh_line(&self.client, "live-user-7", consumed, issued, ip);
        self.refreshes += 1;
        self.write(&[line]);
    }

    fn write(&mut self, lines: &[String]) {
        append(&self.log, lines);
        self.lines += lines.len() as u64;
    }
}

const STOLEN: &str = "rt-live-9f8e7d6c5b4a39281706f5e4d3c2b1a0";

#[test]
fn run_ingests_alerts_mails_reports_and_survives_sigkill() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let eco = dir.path().join("eco");
    let data = dir.path().join("data");
    let live_dir = dir.path().join("live");
    std::fs::create_dir_all(&live_dir).unwrap();

    // A small generated ecosystem, every format, ending yesterday: today
    // holds only what this test appends.
    run_ok(bin().args([
        "generate",
        "--out",
        eco.to_str().unwrap(),
        "--seed",
        "9",
        "--days",
        "3",
        "--tenants",
        "2",
        "--apps",
        "4",
        "--events-per-day",
        "300",
        "--config-data-dir",
        data.to_str().unwrap(),
    ]));

    // The built-in rules, mailing high and critical alerts to the loopback
    // server; the generated config plus a live log and quick commits.
    let (smtp_port, mail) = start_smtp(dir.path());
    let port = free_port();
    let rules = dir.path().join("rules.toml");
    write_rules_mailing_secops(&rules, &format!("http://127.0.0.1:{port}"), smtp_port);
    let generated = std::fs::read_to_string(eco.join("scopewatch.toml")).unwrap();
    let config = eco.join("live.toml");
    std::fs::write(
        &config,
        format!(
            "rules = {rules:?}\n{generated}\n[ingest]\nmax_file_age_ms = 200\n\n\
             [[source]]\nname = \"live\"\nformat = \"scopewatch\"\npaths = [{glob:?}]\n",
            rules = rules.to_str().unwrap(),
            glob = live_dir.join("*.ndjson").to_str().unwrap(),
        ),
    )
    .unwrap();
    let registry = std::fs::read_to_string(eco.join("registry.toml")).unwrap();
    let mut live = Live {
        log: live_dir.join("gateway.ndjson"),
        client: active_app(&registry, "north"),
        lines: 0,
        calls: 0,
        denied: 0,
        refreshes: 0,
        seq: 0,
    };
    // The live system was already writing before scopewatch started.
    live.calls(20);

    // Its log goes to a file, shown when an assertion about it fails.
    let log = ChildLog::new(dir.path().join("scopewatch.stderr"));
    let mut run = Running::start(&config, port, &log);
    let engine_state = data.join("alerts/engine-state.json");
    wait_for(
        Duration::from_secs(40),
        log.explain("the generated logs to be ingested and judged"),
        || engine_state.exists().then_some(()),
    );

    // (a) Appended lines reach the lake, each once.
    live.calls(30);
    live.refresh("rt-live-0", STOLEN, "10.9.0.1");
    let want = live.lines;
    wait_for(
        Duration::from_secs(15),
        log.explain("the live lines in the lake"),
        || {
            let c = live_counts(&config);
            (c["access"].0 + c["auth"].0 == want).then_some(())
        },
    );

    // The refresh token is used again, from elsewhere: a replay.
    live.refresh(STOLEN, "rt-live-2", "10.9.0.1");
    live.refresh(STOLEN, "rt-live-3", "203.0.113.50");

    // (b) The alert is in the dashboard's API, with the live events as
    // evidence. API tokens belong to a user: a security analyst's.
    let stdout = run.stdout();
    assert!(
        stdout.contains("username: admin") && stdout.contains("password: "),
        "{}",
        log.explain(format!(
            "the first run prints the admin credential: {stdout:?}"
        ))
    );
    let data_arg = ["--data", data.to_str().unwrap()];
    run_ok(
        bin()
            .args(data_arg)
            .args(["user", "add", "sec", "--role", "security"]),
    );
    let token = run_ok(bin().args(data_arg).args(["user", "token", "sec"]))
        .trim()
        .to_string();
    let refused = get_with_token(port, "/api/alerts", "swt_not-a-token");
    assert_eq!(
        refused.status, 401,
        "the API needs a valid token: {refused:?}"
    );
    let replay = wait_for(
        Duration::from_secs(15),
        log.explain("the replay alert in /api/alerts"),
        || {
            let answer = get_with_token(port, "/api/alerts?rule=refresh-token-replay", &token);
            if answer.status != 200 {
                return None;
            }
            let alerts: Vec<Value> = serde_json::from_str(&answer.body).unwrap();
            alerts.into_iter().find(|a| {
                a["evidence"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e.as_str().unwrap().starts_with("live:"))
            })
        },
    );
    let replay_id = replay["id"].as_str().unwrap().to_string();
    assert_eq!(replay["severity"], "critical");
    assert_eq!(replay["group"]["client_id"], live.client.as_str());
    // Its evidence is events of the lake.
    for id in replay["evidence"].as_array().unwrap() {
        let rows = sql(
            &config,
            &format!(
                "SELECT count(*) AS n FROM auth WHERE event_id = '{}'",
                id.as_str().unwrap().replace('\'', "")
            ),
        );
        assert_eq!(rows[0]["n"], 1, "evidence {id} is one event of the lake");
    }

    // (c) One email for it at the SMTP server.
    wait_for(
        Duration::from_secs(15),
        log.explain("the replay email"),
        || mailed_alert_ids(&mail).contains(&replay_id).then_some(()),
    );
    let raw: Vec<String> = mail
        .messages()
        .iter()
        .map(|m| m["raw"].as_str().unwrap().to_string())
        .collect();
    let ours: Vec<&String> = raw
        .iter()
        .filter(|r| r.contains(&format!("/alerts/{replay_id}")))
        .collect();
    assert_eq!(ours.len(), 1, "{}", log.explain("one email for the replay"));
    assert!(ours[0].contains("Refresh token replayed"), "{}", ours[0]);
    assert!(
        !ours[0].contains(STOLEN),
        "the raw refresh token is in the email"
    );
    assert!(
        !ours[0].contains("live-user-7"),
        "the raw user id is in the email"
    );

    // (d) The report counts the appended calls.
    let today = {
        let t = time::OffsetDateTime::now_utc().date();
        format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
    };
    let report = |live: &Live| {
        let out = dir.path().join("report.json");
        run_ok(bin().args([
            "--config",
            config.to_str().unwrap(),
            "report",
            "--from",
            &today,
            "--to",
            &today,
            "--format",
            "json",
            "--out",
            out.to_str().unwrap(),
        ]));
        let r: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(r["summary"]["calls"], live.calls, "{:#}", r["summary"]);
        assert_eq!(
            r["summary"]["denied_calls"], live.denied,
            "{:#}",
            r["summary"]
        );
        let ours: Vec<&Value> = r["daily_calls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["client_id"] == live.client.as_str())
            .collect();
        let allowed: u64 = ours.iter().map(|d| d["allowed"].as_u64().unwrap()).sum();
        let denied: u64 = ours.iter().map(|d| d["denied"].as_u64().unwrap()).sum();
        assert_eq!((allowed, denied), (live.calls - live.denied, live.denied));
        assert_eq!(
            r["summary"]["refreshes"], live.refreshes,
            "{:#}",
            r["summary"]
        );
    };
    wait_for(
        Duration::from_secs(10),
        log.explain("the replay lines in the lake"),
        || {
            let c = live_counts(&config);
            (c["access"].0 + c["auth"].0 == live.lines).then_some(())
        },
    );
    report(&live);

    // Everything mailed so far has left the outbox; then more lines, and a
    // SIGKILL while they are being read.
    wait_for(
        Duration::from_secs(15),
        log.explain("the outbox to drain"),
        || (outbox_pending(&data) == 0).then_some(()),
    );
    let before_kill = lake_by_source(&config);
    let mailed_before = mailed_alert_ids(&mail);
    live.calls(40);
    std::thread::sleep(Duration::from_millis(150));
    kill9(&mut run.child);

    // Restarted: it picks up where it was; the dashboard's users stay.
    let mut run = Running::start(&config, port, &log);
    live.calls(25);
    // The stolen token once more: folds into the alert, mailed no more.
    live.refresh(STOLEN, "rt-live-4", "198.51.100.7");
    let want = live.lines;
    wait_for(
        Duration::from_secs(20),
        log.explain("every live line in the lake after the restart"),
        || {
            let c = live_counts(&config);
            (c["access"].0 + c["auth"].0 >= want).then_some(())
        },
    );
    let count = replay["count"].as_u64().unwrap();
    wait_for(
        Duration::from_secs(15),
        log.explain("the repeat to fold into the alert"),
        || {
            let answer = get_with_token(port, &format!("/api/alerts/{replay_id}"), &token);
            let a: Value = serde_json::from_str(&answer.body).ok()?;
            (a["count"].as_u64()? == count + 1).then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(1));

    // Nothing lost, nothing twice: every live line is one event with its
    // own id, and the generated sources hold what they held before.
    let c = live_counts(&config);
    assert_eq!(
        c["access"],
        (live.calls, live.calls),
        "{}",
        log.explain("live access rows, ids")
    );
    assert_eq!(
        c["auth"],
        (live.refreshes, live.refreshes),
        "{}",
        log.explain("live auth rows, ids")
    );
    let after = lake_by_source(&config);
    for (stream, source, n, ids) in &after {
        assert_eq!(
            n,
            ids,
            "{}",
            log.explain(format!("{stream} {source}: an event id twice"))
        );
        if source != "live" {
            assert!(
                before_kill.contains(&(stream.clone(), source.clone(), *n, *ids)),
                "{}",
                log.explain(format!(
                    "{stream} {source}: {n} rows after the restart, before: {before_kill:?}"
                ))
            );
        }
    }
    assert_eq!(
        after.iter().filter(|r| r.1 != "live").count(),
        before_kill.iter().filter(|r| r.1 != "live").count()
    );
    report(&live);

    // One replay alert, mailed once; no alert mailed twice.
    let alerts: Vec<Value> = serde_json::from_str(
        &get_with_token(port, "/api/alerts?rule=refresh-token-replay", &token).body,
    )
    .unwrap();
    let live_replays: Vec<&Value> = alerts
        .iter()
        .filter(|a| {
            a["evidence"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e.as_str().unwrap().starts_with("live:"))
        })
        .collect();
    assert_eq!(
        live_replays.len(),
        1,
        "{}",
        log.explain(format!("{live_replays:#?}"))
    );
    assert_eq!(live_replays[0]["id"], replay_id.as_str());
    let mailed = mailed_alert_ids(&mail);
    let unique: BTreeSet<&String> = mailed.iter().collect();
    assert_eq!(
        unique.len(),
        mailed.len(),
        "{}",
        log.explain(format!("an alert mailed twice: {mailed:?}"))
    );
    assert_eq!(
        mailed.iter().filter(|id| **id == replay_id).count(),
        1,
        "{}",
        log.explain("the replay was mailed again after the restart")
    );
    assert!(mailed_before.iter().all(|id| mailed.contains(id)));
    assert!(
        !run.stdout().contains("password: "),
        "a restart prints no new credential"
    );

    sigterm(&run.child);
    let status = run.child.wait().unwrap();
    assert!(
        status.success(),
        "{}",
        log.explain(format!("exit 0 on SIGTERM, not {status}"))
    );
    eprintln!(
        "end-to-end: {} live lines ({} calls, {} denied, {} refreshes); lake {after:?}; \
         replay alert {replay_id} (count {}); {} emails for alerts {mailed:?}; {:?}",
        live.lines,
        live.calls,
        live.denied,
        live.refreshes,
        count + 1,
        mailed.len(),
        started.elapsed()
    );
}

/// The test client decodes chunked answers on bytes: a chunk may end inside
/// a multibyte character (as a streamed JSON body with names in any
/// language does), and a chunk size counts bytes, not characters.
#[test]
fn the_test_client_decodes_chunks_that_split_characters() {
    let text = "[{\"name\":\"Zoë Müller ✓ 患者\"}]";
    let bytes = text.as_bytes();
    // Cuts inside `ë` (2 bytes), `✓` (3) and `患` (3).
    let at_e = text.find('ë').unwrap() + 1;
    let at_check = text.find('✓').unwrap() + 2;
    let at_kanji = text.find('患').unwrap() + 1;
    let mut raw = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                    Transfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    let mut from = 0;
    for to in [at_e, at_check, at_kanji, bytes.len()] {
        raw.extend_from_slice(format!("{:x}\r\n", to - from).as_bytes());
        raw.extend_from_slice(&bytes[from..to]);
        raw.extend_from_slice(b"\r\n");
        from = to;
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let answer = parse_response(&raw);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, text);
    assert_eq!(answer.json()[0]["name"], "Zoë Müller ✓ 患者");

    // Not chunked: the body as sent.
    let plain = format!(
        "HTTP/1.1 401 Unauthorized\r\ncontent-length: {}\r\n\r\n{text}",
        bytes.len()
    );
    let answer = parse_response(plain.as_bytes());
    assert_eq!((answer.status, answer.body.as_str()), (401, text));
}
