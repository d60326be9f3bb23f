//! The login journey in real headless Chromium, driven over WebDriver
//! (Debian's chromium-driver) with plain HTTP + JSON: log in with the
//! first-run password, get sent to the password page, change it, land on
//! the overview, take a screenshot, then work an alert (list, detail,
//! acknowledge with a comment) and screenshot its page; read the apps and
//! an app's scope matrix, the tenants, and download a report, over a lake
//! of the committed samples.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{alert, Server};
use scopewatch_rules::alert::{AlertStatus, Severity};
use serde_json::{json, Value};

fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|n| {
        std::env::split_paths(&path)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    })
}

fn need(names: &[&str], package: &str) -> PathBuf {
    which(names).unwrap_or_else(|| {
        panic!(
            "{} is not installed, so the dashboard cannot be checked in a real browser: \
             run scripts/setup.sh (it installs Debian's {package}), then run the tests again",
            names[0]
        )
    })
}

/// chromedriver on a free loopback port; killed on drop.
struct Driver {
    child: Child,
    base: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    fn start(log: &Path) -> Driver {
        let exe = need(&["chromedriver"], "chromium-driver");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(exe)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(v) = driver.try_call("GET", "/status", None) {
                if v["value"]["ready"] == true {
                    return driver;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready in 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let agent = common::agent();
        let url = format!("{}{}", self.base, path);
        let resp = match (method, body) {
            ("GET", _) => agent.get(&url).call(),
            ("DELETE", _) => agent.delete(&url).call(),
            (_, body) => agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or(json!({})).to_string()),
        }
        .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let text = resp
            .into_body()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        if status != 200 {
            return Err(format!("{method} {path}: {status} {v}"));
        }
        Ok(v)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver: {e}"))
    }
}

struct Session<'a> {
    driver: &'a Driver,
    id: String,
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = self
            .driver
            .try_call("DELETE", &format!("/session/{}", self.id), None);
    }
}

impl Session<'_> {
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.driver
            .call(method, &format!("/session/{}{}", self.id, path), body)["value"]
            .clone()
    }

    fn url(&self) -> String {
        self.cmd("GET", "/url", None).as_str().unwrap().to_string()
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    /// The element matching `css`, waiting up to 20 s for it to appear.
    fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = self.driver.try_call(
                "POST",
                &format!("/session/{}/element", self.id),
                Some(json!({ "using": "css selector", "value": css })),
            );
            if let Ok(v) = r {
                // The W3C element key is a fixed, long name; take the one value.
                if let Some(id) = v["value"].as_object().and_then(|o| o.values().next()) {
                    return id.as_str().unwrap().to_string();
                }
            }
            assert!(
                Instant::now() < deadline,
                "no element {css} on {}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css);
        self.cmd(
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn click(&self, css: &str) {
        let el = self.find(css);
        self.cmd("POST", &format!("/element/{el}/click"), None);
    }

    /// The rendered text of the element matching `css`.
    fn text(&self, css: &str) -> String {
        let el = self.find(css);
        self.cmd("GET", &format!("/element/{el}/text"), None)
            .as_str()
            .unwrap()
            .to_string()
    }

    fn wait_for_path(&self, base: &str, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let want = format!("{base}{path}");
        while self.url() != want {
            assert!(
                Instant::now() < deadline,
                "expected {want}, still on {}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Whether a PNG has real content: decodes, and is not one flat colour.
fn assert_non_blank_png(bytes: &[u8]) {
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert!(
        info.width >= 400 && info.height >= 300,
        "{}x{}",
        info.width,
        info.height
    );
    let px = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(px).collect();
    let first = pixels[0];
    let differing = pixels.iter().filter(|p| *p != &first).count();
    assert!(
        differing * 50 > pixels.len(),
        "the screenshot is nearly one colour ({differing} of {} pixels differ)",
        pixels.len()
    );
    let distinct: std::collections::HashSet<&[u8]> = pixels.iter().copied().collect();
    assert!(distinct.len() > 20, "only {} colours", distinct.len());
}

/// Takes a screenshot, keeps it in `SCOPEWATCH_SCREENSHOT_DIR` when set,
/// and checks it shows something.
fn screenshot(session: &Session, tmp: &Path, name: &str) {
    let shot = session.cmd("GET", "/screenshot", None);
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot.as_str().unwrap())
        .unwrap();
    let path = tmp.join(name);
    std::fs::write(&path, &png).unwrap();
    if let Some(keep) = std::env::var_os("SCOPEWATCH_SCREENSHOT_DIR") {
        std::fs::copy(&path, Path::new(&keep).join(name)).unwrap();
    }
    assert_non_blank_png(&png);
}

/// Waits up to 60 s for a finished download in `dir` whose name contains
/// `part` and returns its path.
fn wait_for_download(dir: &Path, part: &str) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                // Chromium writes `.crdownload` until the file is whole.
                if name.contains(part)
                    && !name.ends_with(".crdownload")
                    && e.metadata().is_ok_and(|m| m.len() > 0)
                {
                    return e.path();
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no download in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The apps list, an app's matrix and suggestion, the tenants, and a
/// report downloaded through the form.
fn data_journey(session: &Session, server: &Server, tmp: &Path, downloads: &Path) {
    session.click("header.top nav a[href='/apps']");
    session.wait_for_path(&server.base, "/apps");
    session.find("table#apps");
    screenshot(session, tmp, "dashboard-apps.png");

    // Sort by name, then open the first app.
    session.click("table#apps thead a[href*='sort=name']");
    session.find("table#apps tbody tr");
    let link = session.find("table#apps tbody tr td a");
    let href = session
        .cmd("GET", &format!("/element/{link}/attribute/href"), None)
        .as_str()
        .unwrap()
        .to_string();
    session.cmd("POST", &format!("/element/{link}/click"), None);
    session.wait_for_path(&server.base, &href);
    session.find("table.matrix tbody tr");
    // The matrix names a class for every scope, as the API does.
    let client_id = session.text("#client-id");
    let classes = session.text("table.matrix tbody tr td:nth-child(2)");
    assert!(
        [
            "used",
            "unused",
            "unapproved",
            "denied",
            "not granted",
            "unknown"
        ]
        .contains(&classes.as_str()),
        "{client_id}: class {classes:?}"
    );
    session.find("button[data-copy]");
    screenshot(session, tmp, "dashboard-app.png");

    session.click("header.top nav a[href='/tenants']");
    session.wait_for_path(&server.base, "/tenants");
    session.find("table#tenants");
    screenshot(session, tmp, "dashboard-tenants.png");

    session.click("header.top nav a[href='/reports']");
    session.wait_for_path(&server.base, "/reports");
    screenshot(session, tmp, "dashboard-reports.png");
    session.click("#r-format option[value='csv']");
    session.click("#download");
    let file = wait_for_download(downloads, "scopewatch-report-");
    let csv = std::fs::read_to_string(&file).unwrap();
    let mut lines = csv.lines();
    assert!(
        lines.next().unwrap().starts_with("from,to,tenant,"),
        "a CSV header"
    );
    assert!(lines.count() > 10, "the report has rows");
}

/// A recertification campaign from creation to its CSV export: every row
/// decided in the browser (keep, with a justification), progress at 100 %.
fn recert_journey(session: &Session, server: &Server, tmp: &Path, downloads: &Path) {
    session.click("header.top nav a[href='/recert']");
    session.wait_for_path(&server.base, "/recert");
    session.type_into("#c-name", "2026 Q4 browser review");
    // Date inputs take typed text in the browser's locale; set the value.
    for (css, day) in [("#c-from", "2026-11-01"), ("#c-to", "2026-11-30")] {
        let el = session.find(css);
        session.cmd(
            "POST",
            "/execute/sync",
            Some(json!({
                "script": "arguments[0].value = arguments[1];",
                "args": [{ "element-6066-11e4-a52e-4f4ad7ac1c99": el }, day],
            })),
        );
    }
    session.click("#create-campaign");
    session.find("#recert-progress");
    screenshot(session, tmp, "dashboard-recert.png");
    let rows = session
        .cmd(
            "POST",
            "/elements",
            Some(json!({ "using": "css selector", "value": "section.recert-row" })),
        )
        .as_array()
        .unwrap()
        .len();
    assert!(rows > 5, "the samples give many app x tenant rows ({rows})");
    for i in 0..rows {
        session.click(&format!("#d{i}-keep"));
        session.type_into(&format!("#j{i}"), "Used as approved; owner confirmed.");
        session.click(&format!("#decide-{i} button[type=submit]"));
        // The page comes back with this row decided.
        session.find(&format!("#row-{i} details.redecide"));
    }
    assert!(
        session
            .text("#progress-text")
            .starts_with(&format!("{rows} of {rows} decided (100 %)")),
        "{}",
        session.text("#progress-text")
    );
    screenshot(session, tmp, "dashboard-recert-done.png");
    session.click("#export-csv");
    let file = wait_for_download(downloads, "decisions");
    let csv = std::fs::read_to_string(file).unwrap();
    assert_eq!(
        csv.lines().count(),
        rows + 1,
        "a header and one line per row"
    );
    assert_eq!(
        csv.matches("Used as approved; owner confirmed.").count(),
        rows
    );
}

/// Logged in as admin: open the alert list, open an alert, acknowledge it
/// with a comment, and read the new status and the history on the page.
fn alert_journey(session: &Session, server: &Server, tmp: &Path) {
    server.raise_alerts(&[
        alert(
            "al-browser1",
            "refresh_token_replay",
            Severity::High,
            "cardio-insight",
            Some("north"),
            "2026-03-02T10:00:00Z",
        ),
        alert(
            "al-browser2",
            "unapproved_scope",
            Severity::Medium,
            "<script>alert(1)</script>",
            Some("south"),
            "2026-03-01T09:00:00Z",
        ),
    ]);
    session.click("header.top nav a[href='/alerts']");
    session.wait_for_path(&server.base, "/alerts");
    session.find("table#alerts");
    let source = session.cmd("GET", "/source", None);
    let source = source.as_str().unwrap();
    assert!(source.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    // The crafted client_id ran nothing: no JavaScript dialog is open.
    assert!(session
        .driver
        .try_call("GET", &format!("/session/{}/alert/text", session.id), None)
        .is_err());
    screenshot(session, tmp, "dashboard-alerts.png");

    session.click("a.open[href='/alerts/al-browser1']");
    session.wait_for_path(&server.base, "/alerts/al-browser1");
    assert_eq!(
        session.cmd("GET", "/title", None),
        "Alert: Title of refresh_token_replay · scopewatch"
    );
    assert_eq!(session.text("#alert-status"), "open");
    session.find("#no-history");
    session.click("#status option[value='acknowledged']");
    session.type_into("#comment", "Asked the vendor about the replayed token.");
    session.click("#change-status");

    // Back on the same page after the redirect, now with a history.
    let row = session.find("#history tbody tr");
    assert_eq!(
        session.cmd("GET", &format!("/element/{row}/text"), None),
        format!(
            "{} admin open → acknowledged Asked the vendor about the replayed token.",
            session.text("#history tbody tr td")
        )
    );
    session.wait_for_path(&server.base, "/alerts/al-browser1");
    assert_eq!(session.text("#alert-status"), "acknowledged");
    screenshot(session, tmp, "dashboard-alert.png");

    let stored = server.alert_store();
    let a = stored.get("al-browser1").unwrap();
    assert_eq!(a.status, AlertStatus::Acknowledged);
    assert_eq!(a.history[0].by, "admin");
}

#[test]
fn login_journey_in_headless_chromium() {
    let chromium = need(&["chromium", "chromium-browser"], "chromium");
    let server = Server::start_with_samples();
    let tmp = tempfile::tempdir().unwrap();
    let downloads = tmp.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let driver = Driver::start(&tmp.path().join("chromedriver.log"));
    let profile = tmp.path().join("profile");
    let caps = json!({ "capabilities": { "alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium.to_string_lossy(),
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ],
            "prefs": {
                "download.default_directory": downloads.to_string_lossy(),
                "download.prompt_for_download": false,
            }
        }
    }}});
    let created = driver.call("POST", "/session", Some(caps));
    let session = Session {
        driver: &driver,
        id: created["value"]["sessionId"].as_str().unwrap().to_string(),
    };

    // Anonymous: the overview sends the browser to the login form.
    session.goto(&server.url("/"));
    session.wait_for_path(&server.base, "/login");
    session.type_into("#username", "admin");
    session.type_into("#password", &server.admin_password);
    session.click("#login");

    // First login with the one-time password: change it first.
    session.wait_for_path(&server.base, "/password");
    let new = "a browser-chosen passphrase";
    session.type_into("#current", &server.admin_password);
    session.type_into("#new", new);
    session.type_into("#confirm", new);
    session.click("#change");

    session.wait_for_path(&server.base, "/");
    session.find("#welcome");
    let title = session.cmd("GET", "/title", None);
    assert_eq!(title, "Overview · scopewatch");
    let source = session.cmd("GET", "/source", None);
    let source = source.as_str().unwrap();
    assert!(
        source.contains("Welcome, <strong>admin</strong>"),
        "{source}"
    );

    // The session cookie as the browser holds it.
    let cookie = session.cmd("GET", "/cookie/sw_session", None);
    assert_eq!(cookie["httpOnly"], true);
    assert_eq!(cookie["sameSite"], "Strict");
    assert_eq!(cookie["path"], "/");

    // The stylesheet applied (CSP allows 'self' styles): the header is dark.
    let header = session.find("header.top");
    let bg = session.cmd(
        "GET",
        &format!("/element/{header}/css/background-color"),
        None,
    );
    assert_eq!(bg, "rgba(19, 38, 58, 1)", "the embedded CSS did not apply");

    screenshot(&session, tmp.path(), "dashboard-overview.png");

    alert_journey(&session, &server, tmp.path());
    data_journey(&session, &server, tmp.path(), &downloads);
    recert_journey(&session, &server, tmp.path(), &downloads);

    // Log out with the button: back to the login form, session gone.
    session.click("header.top form button");
    session.wait_for_path(&server.base, "/login");
    session.goto(&server.url("/"));
    session.wait_for_path(&server.base, "/login");

    let actions: Vec<String> = server
        .audit_lines()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    for want in [
        "login",
        "password_change",
        "alert_status",
        "report_download",
        "recert_decision",
        "recert_export_csv",
        "logout",
    ] {
        assert!(
            actions.iter().any(|a| a == want),
            "audit lacks {want}: {actions:?}"
        );
    }
}
