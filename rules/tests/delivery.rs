//! Alert delivery against real servers on loopback: an SMTP server
//! (aiosmtpd, started from tests/smtp_sink.py; `scripts/setup.sh` installs
//! it) and a small HTTP server in this file. Time is driven through
//! `deliver_due(now)`, so retries need no sleeping.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use scopewatch_model::events::Timestamp;
use scopewatch_rules::alert::{Alert, AlertStatus, Severity, StatusChange};
use scopewatch_rules::deliver::{notification_id, spawn_deliverer, Delivery, DeliveryFile, Outbox};
use serde_json::Value;

#[path = "support/smtp.rs"]
mod smtp;
use smtp::{free_port, SmtpSink};

// Planted where a message must never look: the status history.
const PLANTED_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.PLANTED-RAW-TOKEN";
const PLANTED_PATIENT: &str = "MRN-4455667";
const DASHBOARD: &str = "http://127.0.0.1:8080";

fn at(rfc3339: &str) -> SystemTime {
    let t = Timestamp::parse_rfc3339(rfc3339).expect("test time");
    UNIX_EPOCH + Duration::from_micros(t.0 as u64)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn alert(id: &str, severity: Severity) -> Alert {
    let mut group = BTreeMap::new();
    group.insert("client_id".to_string(), "medrec-companion".to_string());
    group.insert("tenant".to_string(), "north".to_string());
    group.insert("token_id".to_string(), "jti:9c1e77".to_string());
    Alert {
        id: id.to_string(),
        rule: "refresh-token-replay".to_string(),
        title: "Refresh token replayed".to_string(),
        severity,
        group,
        first_seen: Timestamp::parse_rfc3339("2026-11-23T10:00:00Z").unwrap(),
        last_seen: Timestamp::parse_rfc3339("2026-11-23T10:04:12Z").unwrap(),
        count: 14,
        evidence: (0..14).map(|i| format!("auth-evt-{i:03}")).collect(),
        detail: "refresh token used again 14 times after it was consumed".to_string(),
        status: AlertStatus::Open,
        history: vec![StatusChange {
            at: Timestamp(0),
            by: "analyst-bob".to_string(),
            from: AlertStatus::Open,
            to: AlertStatus::Acknowledged,
            comment: Some(format!(
                "patient {PLANTED_PATIENT} had token Bearer {PLANTED_TOKEN}"
            )),
        }],
    }
}

fn delivery(toml_text: &str) -> Delivery {
    let file: DeliveryFile = toml::from_str(toml_text).expect("test config parses");
    file.validate().expect("test config is valid")
}

/// `[delivery]` with an SMTP server on `smtp_port` (plain, loopback) and a
/// webhook at `hook_url`, plus `extra` TOML.
fn config(smtp_port: u16, hook_url: &str, extra: &str) -> Delivery {
    delivery(&format!(
        r#"
dashboard_url = "{DASHBOARD}"
[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
from = "scopewatch <alerts@example.org>"
timeout_secs = 5
[[destination]]
name = "secops-email"
type = "email"
to = ["secops@example.org"]
[[destination]]
name = "chat"
type = "webhook"
url = "{hook_url}"
headers = {{ "Authorization" = "Bearer hook-secret-77", "X-Path" = "env:PATH" }}
timeout_secs = 5
[retry]
initial_backoff_secs = 1
max_backoff_secs = 4
{extra}
"#
    ))
}

// ---------------------------------------------------------------- SMTP ---

fn assert_no_phi(what: &str, text: &str) {
    for planted in [
        PLANTED_TOKEN,
        PLANTED_PATIENT,
        "analyst-bob",
        "hook-secret-77",
    ] {
        assert!(
            !text.contains(planted),
            "{what} contains `{planted}`:\n{text}"
        );
    }
}

#[test]
fn email_reaches_the_smtp_server_once_and_carries_no_phi() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = SmtpSink::start(port, &tmp.path().join("mail"));
    let d = config(port, "http://127.0.0.1:9/unused", "");
    let outbox = Outbox::open(&tmp.path().join("outbox"), d.clone()).unwrap();
    let a = alert("alert-mail-1", Severity::High);

    assert_eq!(
        outbox.enqueue(&a, &["secops-email".to_string()]).unwrap(),
        1
    );
    assert_eq!(outbox.pending(), 1);
    let now = SystemTime::now();
    let r = outbox.deliver_due(now);
    assert_eq!(
        (r.sent, r.failed, r.pending),
        (1, 0, 0),
        "{r:?} {:?}",
        outbox.queued()
    );

    let got = sink.wait_for(1);
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(
        m["subject"],
        "[scopewatch HIGH] Refresh token replayed: medrec-companion @ north"
    );
    assert_eq!(m["rcpt_tos"], serde_json::json!(["secops@example.org"]));
    assert!(
        m["to"].as_str().unwrap().contains("secops@example.org"),
        "{m}"
    );
    assert_eq!(m["from"], "scopewatch <alerts@example.org>");
    assert_eq!(m["mail_from"], "alerts@example.org");
    assert_eq!(
        m["message_id"],
        format!(
            "<{}@example.org>",
            notification_id("alert-mail-1", "secops-email")
        )
    );
    assert_eq!(m["auto_submitted"], "auto-generated");
    let text = m["text"].as_str().expect("a text/plain part");
    for want in [
        "refresh-token-replay",
        "Refresh token replayed",
        "medrec-companion",
        "north",
        "jti:9c1e77",
        "2026-11-23T10:00:00Z",
        "2026-11-23T10:04:12Z",
        "14",
        "refresh token used again 14 times",
        "auth-evt-000",
        "auth-evt-009",
        "http://127.0.0.1:8080/alerts/alert-mail-1",
    ] {
        assert!(text.contains(want), "text lacks `{want}`:\n{text}");
    }
    assert!(
        !text.contains("auth-evt-010"),
        "more than 10 evidence ids:\n{text}"
    );
    let html = m["html"].as_str().expect("a text/html part");
    assert!(
        html.contains("href=\"http://127.0.0.1:8080/alerts/alert-mail-1\""),
        "{html}"
    );
    assert_no_phi("text", text);
    assert_no_phi("html", html);
    assert_no_phi("raw message", m["raw"].as_str().unwrap());

    // Sent once: further passes, a repeated enqueue and a restart send nothing.
    for later in [0, 10, 3600] {
        assert_eq!(outbox.deliver_due(now + secs(later)).sent, 0);
    }
    assert_eq!(
        outbox.enqueue(&a, &["secops-email".to_string()]).unwrap(),
        0
    );
    drop(outbox);
    let outbox = Outbox::open(&tmp.path().join("outbox"), d).unwrap();
    assert_eq!(outbox.pending(), 0);
    assert_eq!(outbox.status().sent_kept, 1);
    assert_eq!(
        outbox.enqueue(&a, &["secops-email".to_string()]).unwrap(),
        0
    );
    assert_eq!(outbox.deliver_due(now + secs(7200)).sent, 0);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.messages().len(), 1);
}

#[test]
fn email_is_retried_until_the_server_is_up_and_arrives_once() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port(); // nothing listens yet
    let d = config(port, "http://127.0.0.1:9/unused", "");
    let dir = tmp.path().join("outbox");
    let outbox = Outbox::open(&dir, d.clone()).unwrap();
    let a = alert("alert-mail-2", Severity::Critical);
    assert_eq!(
        outbox.enqueue(&a, &["secops-email".to_string()]).unwrap(),
        1
    );

    let t0 = SystemTime::now();
    let r = outbox.deliver_due(t0);
    assert_eq!((r.sent, r.failed, r.pending), (0, 1, 1), "{r:?}");
    let q = outbox.queued();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].attempts, 1);
    assert_eq!(
        q[0].next_attempt,
        UNIX_EPOCH + Duration::from_millis(ms(t0) + 1000)
    );
    let err = q[0].last_error.clone().unwrap();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    // Not due before its backoff.
    let r = outbox.deliver_due(t0 + Duration::from_millis(500));
    assert_eq!((r.sent, r.failed), (0, 0), "{r:?}");

    // A restart keeps the schedule: it is in the message file.
    drop(outbox);
    let file = dir.join("msg").join(format!("{}.json", q[0].id));
    let on_disk: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(on_disk["attempts"], 1);
    assert!(on_disk["last_error"].as_str().is_some());
    let outbox = Outbox::open(&dir, d.clone()).unwrap();
    assert_eq!(outbox.queued(), q);

    // Still down: the wait doubles.
    let r = outbox.deliver_due(t0 + secs(1));
    assert_eq!((r.sent, r.failed), (0, 1), "{r:?}");
    let q = outbox.queued();
    assert_eq!(q[0].attempts, 2);
    assert_eq!(
        q[0].next_attempt,
        UNIX_EPOCH + Duration::from_millis(ms(t0) + 3000)
    );

    // The server comes back: the message arrives at the next retry, once.
    let sink = SmtpSink::start(port, &tmp.path().join("mail"));
    assert_eq!(outbox.deliver_due(t0 + secs(2)).sent, 0);
    let r = outbox.deliver_due(t0 + secs(3));
    assert_eq!(
        (r.sent, r.failed, r.pending),
        (1, 0, 0),
        "{r:?} {:?}",
        outbox.queued()
    );
    let got = sink.wait_for(1);
    assert_eq!(
        got[0]["subject"],
        "[scopewatch CRITICAL] Refresh token replayed: medrec-companion @ north"
    );
    for later in [4, 60, 600] {
        assert_eq!(outbox.deliver_due(t0 + secs(later)).sent, 0);
    }
    drop(outbox);
    let outbox = Outbox::open(&dir, d).unwrap();
    assert_eq!(outbox.deliver_due(t0 + secs(700)).sent, 0);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.messages().len(), 1);
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

#[test]
fn low_alerts_go_out_as_one_digest_per_period() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = SmtpSink::start(port, &tmp.path().join("mail"));
    let d = config(
        port,
        "http://127.0.0.1:9/unused",
        "[digest]\nbelow_severity = \"medium\"\ninterval_secs = 3600\n\
         [[route]]\nmin_severity = \"low\"\nrules = [\"refresh-token-replay\"]\ndestinations = [\"secops-email\"]\n",
    );
    let dir = tmp.path().join("outbox");
    let outbox = Outbox::open(&dir, d.clone()).unwrap();
    let t = at("2026-11-23T10:10:00Z");
    for i in 0..3 {
        let a = alert(&format!("low-{i}"), Severity::Low);
        // No rule destinations: the route sends them.
        assert_eq!(outbox.enqueue_at(&a, &[], t + secs(i * 60)).unwrap(), 1);
    }
    let high = alert("high-1", Severity::High);
    assert_eq!(outbox.enqueue_at(&high, &[], t).unwrap(), 1);
    assert_eq!(outbox.status().digest_entries, 3);

    let r = outbox.deliver_due(t + secs(180));
    assert_eq!((r.sent, r.digests_made, r.pending), (1, 0, 3), "{r:?}");
    // Still in the period at 10:59:59; the entries survive a restart.
    assert_eq!(outbox.deliver_due(at("2026-11-23T10:59:59Z")).sent, 0);
    drop(outbox);
    let outbox = Outbox::open(&dir, d).unwrap();
    assert_eq!(outbox.status().digest_entries, 3);
    assert_eq!(
        outbox
            .enqueue_at(&alert("low-1", Severity::Low), &[], t)
            .unwrap(),
        0
    );

    let r = outbox.deliver_due(at("2026-11-23T11:00:00Z"));
    assert_eq!((r.sent, r.digests_made, r.pending), (1, 1, 0), "{r:?}");
    assert_eq!(outbox.deliver_due(at("2026-11-23T12:00:00Z")).sent, 0);

    let got = sink.wait_for(2);
    assert_eq!(got.len(), 2);
    assert!(got[0]["subject"]
        .as_str()
        .unwrap()
        .starts_with("[scopewatch HIGH]"));
    let digest = &got[1];
    assert_eq!(
        digest["subject"],
        "[scopewatch digest] 3 alerts (up to low)"
    );
    let text = digest["text"].as_str().unwrap();
    for i in 0..3 {
        let link = format!("{DASHBOARD}/alerts/low-{i}");
        assert!(text.contains(&link), "digest lacks {link}:\n{text}");
    }
    assert!(
        text.contains("2026-11-23T10:00:00Z") && text.contains("2026-11-23T11:00:00Z"),
        "{text}"
    );
    assert!(!text.contains("high-1"), "{text}");
    assert_no_phi("digest", digest["raw"].as_str().unwrap());
    // Its alerts were delivered: queueing one again does nothing.
    assert_eq!(
        outbox
            .enqueue_at(
                &alert("low-2", Severity::Low),
                &[],
                at("2026-11-23T12:00:00Z")
            )
            .unwrap(),
        0
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(sink.messages().len(), 2);
}

// ------------------------------------------------------------- webhook ---

#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// An HTTP/1.1 server on loopback that records requests and answers with
/// the queued statuses (then 200).
struct HookServer {
    url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HookServer {
    fn start(statuses: &[u16]) -> HookServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!(
            "http://{}/hooks/T0-SECRET-PATH",
            listener.local_addr().unwrap()
        );
        let requests = Arc::new(Mutex::new(Vec::new()));
        let statuses = Arc::new(Mutex::new(
            statuses.iter().copied().collect::<VecDeque<_>>(),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s, st) = (requests.clone(), statuses.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => serve(conn, &r, &s),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        });
        HookServer {
            url,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    fn wait_for(&self, n: usize) -> Vec<Request> {
        let deadline = Instant::now() + secs(10);
        while self.requests().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.requests()
    }
}

impl Drop for HookServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut conn: TcpStream, requests: &Mutex<Vec<Request>>, statuses: &Mutex<VecDeque<u16>>) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(secs(5))).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    requests.lock().unwrap().push(Request {
        method,
        path,
        headers,
        body,
    });
    let status = statuses.lock().unwrap().pop_front().unwrap_or(200);
    let text = if status == 200 {
        "ok"
    } else {
        "busy, try later"
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = conn.flush();
}

#[test]
fn webhook_is_retried_after_503_and_delivered_once() {
    let tmp = tempfile::tempdir().unwrap();
    let hook = HookServer::start(&[503]);
    let d = config(free_port(), &hook.url, "");
    let dir = tmp.path().join("outbox");
    let outbox = Outbox::open(&dir, d.clone()).unwrap();
    let a = alert("alert-hook-1", Severity::High);
    assert_eq!(outbox.enqueue(&a, &["chat".to_string()]).unwrap(), 1);

    let t0 = SystemTime::now();
    let r = outbox.deliver_due(t0);
    assert_eq!((r.sent, r.failed), (0, 1), "{r:?}");
    let err = outbox.queued()[0].last_error.clone().unwrap();
    assert!(
        err.contains("503") && err.contains("busy, try later"),
        "{err}"
    );
    assert!(
        !err.contains("T0-SECRET-PATH") && !err.contains("hook-secret-77"),
        "{err}"
    );

    let r = outbox.deliver_due(t0 + secs(1));
    assert_eq!((r.sent, r.failed, r.pending), (1, 0, 0), "{r:?}");
    for later in [2, 60, 3600] {
        assert_eq!(outbox.deliver_due(t0 + secs(later)).sent, 0);
    }
    drop(outbox);
    let outbox = Outbox::open(&dir, d).unwrap();
    assert_eq!(outbox.deliver_due(t0 + secs(7200)).sent, 0);
    std::thread::sleep(Duration::from_millis(200));

    let reqs = hook.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    let key = notification_id("alert-hook-1", "chat");
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/hooks/T0-SECRET-PATH");
        assert_eq!(r.headers["idempotency-key"], key);
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(r.headers["authorization"], "Bearer hook-secret-77");
        assert_eq!(r.headers["x-path"], std::env::var("PATH").unwrap());
    }
    assert_eq!(reqs[0].body, reqs[1].body);
    let body_text = String::from_utf8(reqs[1].body.clone()).unwrap();
    assert_no_phi("webhook body", &body_text.replace("hook-secret-77", ""));
    assert!(!body_text.contains(PLANTED_TOKEN) && !body_text.contains(PLANTED_PATIENT));
    let v: Value = serde_json::from_str(&body_text).unwrap();
    assert_eq!(v["id"], "alert-hook-1");
    assert_eq!(v["rule"], "refresh-token-replay");
    assert_eq!(v["title"], "Refresh token replayed");
    assert_eq!(v["severity"], "high");
    assert_eq!(v["status"], "open");
    assert_eq!(
        v["group"],
        serde_json::json!({"client_id": "medrec-companion", "tenant": "north", "token_id": "jti:9c1e77"})
    );
    assert_eq!(v["first_seen"], "2026-11-23T10:00:00Z");
    assert_eq!(v["last_seen"], "2026-11-23T10:04:12Z");
    assert_eq!(v["count"], 14);
    assert_eq!(
        v["detail"],
        "refresh token used again 14 times after it was consumed"
    );
    assert_eq!(v["evidence"].as_array().unwrap().len(), 10);
    assert_eq!(v["evidence"][0], "auth-evt-000");
    assert_eq!(v["url"], "http://127.0.0.1:8080/alerts/alert-hook-1");
    assert_eq!(
        v["text"],
        "[scopewatch HIGH] Refresh token replayed: medrec-companion @ north"
    );
}

#[test]
fn webhook_digest_lists_the_alerts() {
    let tmp = tempfile::tempdir().unwrap();
    let hook = HookServer::start(&[]);
    let d = config(
        free_port(),
        &hook.url,
        "[digest]\nbelow_severity = \"high\"\ninterval_secs = 600\n",
    );
    let outbox = Outbox::open(&tmp.path().join("outbox"), d).unwrap();
    let t = at("2026-11-23T10:01:00Z");
    let chat = ["chat".to_string()];
    outbox
        .enqueue_at(&alert("m-1", Severity::Medium), &chat, t)
        .unwrap();
    outbox
        .enqueue_at(&alert("l-1", Severity::Low), &chat, t + secs(30))
        .unwrap();
    // The next period: a digest of its own.
    outbox
        .enqueue_at(
            &alert("l-2", Severity::Low),
            &chat,
            at("2026-11-23T10:10:00Z"),
        )
        .unwrap();
    assert_eq!(outbox.deliver_due(at("2026-11-23T10:09:59Z")).sent, 0);
    let r = outbox.deliver_due(at("2026-11-23T10:10:00Z"));
    assert_eq!((r.sent, r.digests_made, r.pending), (1, 1, 1), "{r:?}");
    let reqs = hook.wait_for(1);
    assert_eq!(reqs.len(), 1);
    let v: Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert_eq!(v["digest"], true);
    assert_eq!(v["period_start"], "2026-11-23T10:00:00Z");
    assert_eq!(v["period_end"], "2026-11-23T10:10:00Z");
    let ids: Vec<&str> = v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&"m-1") && ids.contains(&"l-1"), "{ids:?}");
    assert_eq!(
        v["alerts"][0]["url"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap(),
        ids[0]
    );
    assert!(!String::from_utf8_lossy(&reqs[0].body).contains(PLANTED_PATIENT));
    let r = outbox.deliver_due(at("2026-11-23T10:20:00Z"));
    assert_eq!((r.sent, r.digests_made, r.pending), (1, 1, 0), "{r:?}");
    assert_eq!(hook.wait_for(2).len(), 2);
}

#[test]
fn a_message_is_given_up_after_max_attempts() {
    let tmp = tempfile::tempdir().unwrap();
    let hook = HookServer::start(&[500, 500, 500]);
    let d = config(free_port(), &hook.url, "max_attempts = 2\n");
    let outbox = Outbox::open(&tmp.path().join("outbox"), d).unwrap();
    outbox
        .enqueue(&alert("doomed", Severity::High), &["chat".to_string()])
        .unwrap();
    let t0 = SystemTime::now();
    assert_eq!(outbox.deliver_due(t0).failed, 1);
    let r = outbox.deliver_due(t0 + secs(1));
    assert_eq!((r.gave_up, r.pending), (1, 0), "{r:?}");
    let s = outbox.status();
    assert_eq!((s.messages, s.failed_kept), (0, 1));
    assert_eq!(outbox.deliver_due(t0 + secs(100)).sent, 0);
    assert_eq!(hook.requests().len(), 2);
    let failed: Vec<_> = std::fs::read_dir(tmp.path().join("outbox/failed"))
        .unwrap()
        .collect();
    let text = std::fs::read_to_string(failed[0].as_ref().unwrap().path()).unwrap();
    assert!(
        text.contains("\"attempts\": 2") && text.contains("500"),
        "{text}"
    );
    assert!(
        !text.contains("T0-SECRET-PATH") && !text.contains("hook-secret-77"),
        "{text}"
    );
}

#[test]
fn a_removed_destination_is_given_up_not_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("outbox");
    let d = config(free_port(), "http://127.0.0.1:9/down", "");
    let outbox = Outbox::open(&dir, d).unwrap();
    outbox
        .enqueue(&alert("orphan", Severity::High), &["chat".to_string()])
        .unwrap();
    drop(outbox);
    let outbox = Outbox::open(&dir, Delivery::default()).unwrap();
    assert_eq!(outbox.pending(), 1);
    let r = outbox.deliver_due(SystemTime::now());
    assert_eq!((r.sent, r.gave_up, r.pending), (0, 1, 0), "{r:?}");
}

#[test]
fn tls_is_required_where_configured() {
    // A server without STARTTLS and a plain-HTTP server behind an https URL:
    // both sends fail (and are retried) instead of going out in clear text.
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = SmtpSink::start(port, &tmp.path().join("mail"));
    let hook = HookServer::start(&[]);
    let https_url = hook.url.replace("http://", "https://");
    let d = delivery(&format!(
        r#"
[smtp]
host = "127.0.0.1"
port = {port}
security = "starttls"
from = "alerts@example.org"
[[destination]]
name = "mail"
type = "email"
to = ["secops@example.org"]
[[destination]]
name = "chat"
type = "webhook"
url = "{https_url}"
"#
    ));
    let outbox = Outbox::open(&tmp.path().join("outbox"), d).unwrap();
    let dests = ["mail".to_string(), "chat".to_string()];
    assert_eq!(
        outbox
            .enqueue(&alert("tls-1", Severity::High), &dests)
            .unwrap(),
        2
    );
    let r = outbox.deliver_due(SystemTime::now());
    assert_eq!((r.sent, r.failed, r.pending), (0, 2, 2), "{r:?}");
    for q in outbox.queued() {
        let err = q.last_error.unwrap();
        assert!(!err.contains("T0-SECRET-PATH"), "{err}");
        eprintln!("{}: {err}", q.destination);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(sink.messages().is_empty());
    // The TLS ClientHello reached the plain server, which recorded no request.
    assert!(hook.requests().iter().all(|r| r.method != "POST"));
}

#[test]
fn unreadable_files_are_set_aside_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("outbox");
    drop(Outbox::open(&dir, Delivery::default()).unwrap());
    std::fs::write(dir.join("msg/0123.json"), b"{ not json").unwrap();
    std::fs::write(dir.join("msg/.0456.json.tmp"), b"half a write").unwrap();
    let outbox = Outbox::open(&dir, Delivery::default()).unwrap();
    let s = outbox.status();
    assert_eq!((s.messages, s.failed_kept), (0, 1), "{s:?}");
    assert!(!dir.join("msg/.0456.json.tmp").exists());
    assert!(!dir.join("msg/0123.json").exists());
}

#[test]
fn an_empty_config_queues_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(&tmp.path().join("outbox"), Delivery::default()).unwrap();
    assert_eq!(
        outbox
            .enqueue(&alert("x", Severity::Critical), &[])
            .unwrap(),
        0
    );
    assert_eq!(outbox.deliver_due(SystemTime::now()), Default::default());
}

#[test]
fn the_deliverer_thread_sends_within_a_second_of_enqueue() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = SmtpSink::start(port, &tmp.path().join("mail"));
    let hook = HookServer::start(&[]);
    let d = config(port, &hook.url, "");
    let outbox = Outbox::open(&tmp.path().join("outbox"), d).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let thread = spawn_deliverer(outbox.clone(), stop.clone()).unwrap();
    // Let the thread settle into its wait, so the wake-up is what is timed.
    std::thread::sleep(Duration::from_millis(300));

    let start = Instant::now();
    let dests = ["secops-email".to_string(), "chat".to_string()];
    assert_eq!(
        outbox
            .enqueue(&alert("fast-1", Severity::Critical), &dests)
            .unwrap(),
        2
    );
    let got = sink.wait_for(1);
    let mail_latency = start.elapsed();
    let reqs = hook.wait_for(1);
    let hook_latency = start.elapsed();
    assert_eq!((got.len(), reqs.len()), (1, 1));
    eprintln!("enqueue -> SMTP server: {mail_latency:?}; -> webhook: {hook_latency:?}");
    // Typically tens of milliseconds; the bound leaves room for a busy machine.
    assert!(
        mail_latency < secs(2) && hook_latency < secs(2),
        "{mail_latency:?} {hook_latency:?}"
    );

    stop.store(true, Ordering::Release);
    outbox.wake();
    thread.join().unwrap();
    assert_eq!(outbox.pending(), 0);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.messages().len(), 1);
    assert_eq!(hook.requests().len(), 1);
}
