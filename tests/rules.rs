//! Detection as a user runs it: `rules backtest` against the generator's
//! ground truth, streaming (`scopewatch ingest` following logs) against
//! backtest on the same data, and a live refresh-token replay that must
//! reach a real SMTP server on loopback within seconds, once, across a
//! SIGKILL and restart.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::alerting::{outbox_pending, start_smtp, write_rules_mailing_secops};
use common::lines::refresh_line;
use common::{
    append, bin, ingest, json_lines, repo, run_ok, samples_config, sigterm, wait_until, ChildLog,
};

/// The alerts' identity and content, for comparing two runs.
fn alert_keys(alerts: &[Value]) -> Vec<String> {
    let mut keys: Vec<String> = alerts
        .iter()
        .filter(|a| a.get("summary").is_none())
        .map(|a| {
            format!(
                "{} {} {} {} {} {} {}",
                a["id"],
                a["rule"],
                a["group"],
                a["first_seen"],
                a["last_seen"],
                a["count"],
                a["evidence"]
            )
        })
        .collect();
    keys.sort();
    keys
}

fn backtest(data: &Path) -> Vec<Value> {
    json_lines(&run_ok(
        bin().args([
            "--config",
            samples_config().to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "rules",
            "backtest",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-30",
            "--format",
            "json",
            "--truth",
            repo()
                .join("sample-logs/ground-truth.json")
                .to_str()
                .unwrap(),
        ]),
    ))
}

#[test]
fn backtest_finds_every_injected_incident_without_false_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ingest(&samples_config(), &data);
    let out = backtest(&data);
    let summary = &out.last().unwrap()["summary"];
    let scores = &summary["scores"];
    assert_eq!(scores["token_rules_recall"], 1.0, "{scores:#}");
    assert_eq!(scores["missed"], serde_json::json!([]), "{scores:#}");
    assert_eq!(scores["false_alerts"], 0, "{scores:#}");
    let truth: Value = serde_json::from_slice(
        &std::fs::read(repo().join("sample-logs/ground-truth.json")).unwrap(),
    )
    .unwrap();
    let kinds = truth["incidents"].as_array().unwrap().len();
    let found: u64 = scores["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["found"].as_u64().unwrap())
        .sum();
    assert_eq!(
        found as usize, kinds,
        "every incident of the truth is scored and found"
    );
    for r in scores["rules"].as_array().unwrap() {
        if r["incidents"].as_u64().unwrap() > 0 {
            assert_eq!(r["recall"], 1.0, "{r}");
        }
    }
}

fn alerts_list(data: &Path) -> Vec<Value> {
    json_lines(&run_ok(bin().args([
        "--data",
        data.to_str().unwrap(),
        "alerts",
        "list",
        "--format",
        "json",
    ])))
}

#[test]
fn streaming_gives_the_alerts_backtest_gives() {
    let dir = tempfile::tempdir().unwrap();
    let streamed = dir.path().join("streamed");
    let log = ChildLog::new(dir.path().join("ingest.stderr"));
    // Follow the samples as a live deployment would (from the start of
    // every file), judging each commit.
    let mut child = bin()
        .args([
            "--config",
            samples_config().to_str().unwrap(),
            "--data",
            streamed.to_str().unwrap(),
            "ingest",
        ])
        .stdout(Stdio::null())
        .stderr(log.stdio())
        .spawn()
        .unwrap();
    let state = streamed.join("alerts/engine-state.json");
    // Caught up: the state is written once everything read is judged; then
    // a stop commits and judges what is left.
    wait_until(
        Duration::from_secs(60),
        log.explain("the rules to judge the samples"),
        || state.exists(),
    );
    std::thread::sleep(Duration::from_millis(500));
    sigterm(&child);
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "{}",
        log.explain(format!("ingest ended with {status}"))
    );
    let streaming = alerts_list(&streamed);
    assert!(streaming.len() >= 10, "{} alerts", streaming.len());

    // The same data, replayed by backtest.
    let replayed = backtest(&streamed);
    assert_eq!(alert_keys(&streaming), alert_keys(&replayed));
}

const RAW_REFRESH_TOKEN: &str = "8xLOxBtZp8QZ3m7s0cVq2yW4kR9dE1fJ";

/// A refresh of the app `medrec` for the user `kc-user-42`, stamped now.
fn medrec_refresh(consumed: &str, issued: &str, ip: &str) -> String {
    refresh_line("medrec", "kc-user-42", consumed, issued, ip)
}

#[test]
fn a_live_refresh_token_replay_is_mailed_within_seconds_and_once() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let data = dir.path().join("data");
    let (port, mail) = start_smtp(dir.path());

    // The built-in rules, with email to the loopback server.
    let rules = dir.path().join("rules.toml");
    write_rules_mailing_secops(&rules, "http://127.0.0.1:8080", port);
    let config = dir.path().join("scopewatch.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {data:?}\nrules = {rules:?}\n\n[ingest]\nmax_file_age_ms = 50\n\n\
             [[source]]\nname = \"idp\"\npaths = [{glob:?}]\n",
            data = data.to_str().unwrap(),
            rules = rules.to_str().unwrap(),
            glob = logs.join("*.ndjson").to_str().unwrap(),
        ),
    )
    .unwrap();
    let log = logs.join("idp.ndjson");
    append(
        &log,
        &[medrec_refresh("rt-0", RAW_REFRESH_TOKEN, "10.0.0.1")],
    );
    // The process's log goes to a file, so a failed run says why.
    let stderr_log = ChildLog::new(dir.path().join("ingest.stderr"));
    let start = |config: &Path| {
        bin()
            .args(["--config", config.to_str().unwrap(), "ingest"])
            .stdout(Stdio::null())
            .stderr(stderr_log.stdio())
            .spawn()
            .unwrap()
    };
    let mut child = start(&config);
    wait_until(
        Duration::from_secs(30),
        stderr_log.explain("the first commit to be judged"),
        || data.join("alerts/engine-state.json").exists(),
    );

    // The refresh token consumed again, from elsewhere: a replay.
    let appended = Instant::now();
    append(
        &log,
        &[
            medrec_refresh(RAW_REFRESH_TOKEN, "rt-2", "10.0.0.1"),
            medrec_refresh(RAW_REFRESH_TOKEN, "rt-3", "203.0.113.9"),
        ],
    );
    let messages = mail.wait_for(1);
    let delay = appended.elapsed();
    assert_eq!(
        messages.len(),
        1,
        "{}",
        stderr_log.explain("one email for the replay")
    );
    assert!(
        delay < Duration::from_secs(10),
        "the alert email took {delay:?} from the line being appended"
    );
    let raw = messages[0]["raw"].as_str().unwrap();
    assert!(raw.contains("Refresh token replayed"), "{raw}");
    assert!(raw.contains("medrec"), "{raw}");
    assert!(raw.contains("http://127.0.0.1:8080/alerts/al-"), "{raw}");
    assert!(
        !raw.contains(RAW_REFRESH_TOKEN),
        "the raw refresh token is in the email"
    );
    assert!(
        !raw.contains("kc-user-42"),
        "the raw user id is in the email"
    );

    // Killed without warning once the outbox has noted the email as sent
    // (before that, a kill resends it with the same Message-ID: delivery
    // is at least once), then restarted: nothing is sent twice and the
    // alert is still one.
    wait_until(
        Duration::from_secs(15),
        stderr_log.explain("the outbox to note the email as sent"),
        || outbox_pending(&data) == 0,
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let mut child = start(&config);
    append(
        &log,
        &[medrec_refresh(RAW_REFRESH_TOKEN, "rt-4", "198.51.100.7")],
    );
    wait_until(
        Duration::from_secs(30),
        stderr_log.explain("the repeat to fold into the alert"),
        || {
            alerts_list(&data)
                .iter()
                .any(|a| a["rule"] == "refresh-token-replay" && a["count"] == 3)
        },
    );
    std::thread::sleep(Duration::from_secs(1));
    sigterm(&child);
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "{}",
        stderr_log.explain(format!("ingest ended with {status}"))
    );
    assert_eq!(
        mail.messages().len(),
        1,
        "a repeat within the dedup window is not mailed again"
    );
    let alerts = alerts_list(&data);
    let replays: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["rule"] == "refresh-token-replay")
        .collect();
    assert_eq!(replays.len(), 1, "{alerts:#?}");

    // Someone acknowledges it; the change and its author are kept.
    let id = replays[0]["id"].as_str().unwrap();
    let changed: Value = serde_json::from_str(&run_ok(bin().args([
        "--data",
        data.to_str().unwrap(),
        "alerts",
        "set-status",
        id,
        "acknowledged",
        "--by",
        "alice",
        "--comment",
        "calling the app owner",
    ])))
    .unwrap();
    assert_eq!(changed["status"], "acknowledged");
    let again = alerts_list(&data);
    let a = again.iter().find(|a| a["id"] == id).unwrap();
    assert_eq!(a["history"][0]["by"], "alice");
    assert_eq!(a["history"][0]["from"], "open");
}
