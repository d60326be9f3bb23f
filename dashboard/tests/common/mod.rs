//! A real dashboard server on a loopback port, on its own thread and
//! runtime, and a blocking HTTP client (ureq) that keeps cookies by hand so
//! tests can look at their attributes.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use scopewatch_dashboard::{AppState, DashboardConfig, NewUser, Role, SecureCookies};

pub struct Server {
    pub base: String,
    pub addr: SocketAddr,
    pub state: AppState,
    pub data: PathBuf,
    pub admin_password: String,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start() -> Server {
        Self::start_with(|_| None::<scopewatch_dashboard::AnalysisSettings>)
    }

    /// A server whose lake holds the committed samples (`sample-logs/`,
    /// ingested by the ingest library exactly as `scopewatch ingest --once`
    /// does) and whose registry is the samples' registry.
    pub fn start_with_samples() -> Server {
        Self::start_with(|data| {
            let repo = repo();
            let mut config =
                scopewatch_model::config::Config::load(&repo.join("sample-logs/scopewatch.toml"))
                    .expect("the samples' config is valid");
            config.data_dir = data.to_path_buf();
            let mut ingest = scopewatch_ingest::pipeline::Ingest::open(
                &config.sources,
                scopewatch_ingest::pipeline::IngestOptions::from_config(&config),
            )
            .expect("the samples open");
            ingest
                .run_to_end(&std::sync::atomic::AtomicBool::new(false), |_| {})
                .expect("the samples ingest");
            scopewatch_dashboard::AnalysisSettings::from_config(&config)
        })
    }

    /// A server on a fresh data directory; `prepare` fills it before the
    /// server opens it and says what the data pages compute over.
    pub fn start_with<F, A>(prepare: F) -> Server
    where
        F: FnOnce(&Path) -> A,
        A: Into<Option<scopewatch_dashboard::AnalysisSettings>>,
    {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let analysis: Option<scopewatch_dashboard::AnalysisSettings> = prepare(&data).into();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = DashboardConfig::new(&data);
        config.secure_cookies = SecureCookies::Auto.resolve(addr);
        if let Some(analysis) = analysis {
            config.analysis = analysis;
        }
        let (state, initial) = AppState::open(config).unwrap();
        let initial = initial.expect("a fresh data dir creates the admin");
        assert_eq!(initial.username, "admin");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            rt.block_on(scopewatch_dashboard::serve(listener, st, async {
                let _ = stopped.await;
            }))
            .unwrap();
        });
        Server {
            base: format!("http://{addr}"),
            addr,
            state,
            data,
            admin_password: initial.password,
            _dir: dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Adds a user through the library (as `scopewatch user add` does) and
    /// gives them a password of their own, so tests skip the forced change.
    pub fn add_user(&self, name: &str, roles: &[Role], tenants: &[&str], password: &str) {
        self.state
            .users
            .add(NewUser {
                username: name.into(),
                roles: roles.to_vec(),
                tenants: tenants.iter().map(|t| t.to_string()).collect(),
                owned_apps: vec![],
            })
            .unwrap();
        self.state
            .users
            .set_password(name, password, false)
            .unwrap();
    }

    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.data.join("dashboard/audit.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).expect("every audit line is JSON"))
            .collect()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The repository's root (tests read the committed samples from it).
pub fn repo() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .parent()
        .expect("dashboard/ is in the repository")
        .to_path_buf()
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    /// The value of a cookie this response sets.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookies().into_iter().find_map(|c| {
            let first = c.split(';').next()?;
            let (k, v) = first.split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    }
    pub fn location(&self) -> Option<&str> {
        self.header("location")
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .build()
        .into()
}

fn headers_of(resp: &ureq::http::Response<ureq::Body>) -> Vec<(String, String)> {
    resp.headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect()
}

/// A response with its body as text.
pub fn collect(resp: ureq::http::Response<ureq::Body>) -> Resp {
    let status = resp.status().as_u16();
    let headers = headers_of(&resp);
    let body = resp.into_body().read_to_string().unwrap_or_default();
    Resp {
        status,
        headers,
        body,
    }
}

pub fn get(url: &str, cookie: Option<&str>) -> Resp {
    let mut req = agent().get(url);
    if let Some(c) = cookie {
        req = req.header("Cookie", c);
    }
    collect(req.call().unwrap())
}

/// A GET whose body is kept as bytes (a download): status, headers, body.
pub fn get_bytes(url: &str, cookie: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let resp = agent().get(url).header("Cookie", cookie).call().unwrap();
    let status = resp.status().as_u16();
    let headers = headers_of(&resp);
    (status, headers, resp.into_body().read_to_vec().unwrap())
}

pub fn get_bearer(url: &str, token: &str) -> Resp {
    collect(
        agent()
            .get(url)
            .header("Authorization", format!("Bearer {token}"))
            .call()
            .unwrap(),
    )
}

pub fn post_form(url: &str, cookie: Option<&str>, fields: &[(&str, &str)]) -> Resp {
    let mut req = agent().post(url);
    if let Some(c) = cookie {
        req = req.header("Cookie", c);
    }
    collect(req.send_form(fields.iter().copied()).unwrap())
}

/// The `csrf` hidden field of the first form in a page.
pub fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().unwrap().to_string()
}

/// Logs in through the form; returns the login response and the session
/// cookie pair (`sw_session=...`) when one was set.
pub fn login(server: &Server, user: &str, password: &str) -> (Resp, Option<String>) {
    let form = get(&server.url("/login"), None);
    assert_eq!(form.status, 200);
    let pre = form.cookie("sw_login").expect("login page sets sw_login");
    let csrf = csrf_of(&form.body);
    let resp = post_form(
        &server.url("/login"),
        Some(&format!("sw_login={pre}")),
        &[("username", user), ("password", password), ("csrf", &csrf)],
    );
    let session = resp.cookie("sw_session").map(|v| format!("sw_session={v}"));
    (resp, session)
}

/// The password tests give the users they add.
pub const PW: &str = "a long enough passphrase";

/// Logs `user` in with [`PW`]; returns the session cookie pair.
pub fn session(s: &Server, user: &str) -> String {
    let (r, cookie) = login(s, user, PW);
    assert_eq!(r.status, 303, "{user} logs in");
    cookie.unwrap()
}

/// RFC 4180 records (quoted fields may hold commas, quotes, line breaks);
/// the text must end with CRLF.
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(field.is_empty() && row.is_empty(), "CSV ends with CRLF");
    rows
}

/// An open alert as the detector would raise it: `group` holds
/// `client_id`, and `tenant` when given; first seen a minute before last.
pub fn alert(
    id: &str,
    rule: &str,
    severity: scopewatch_rules::alert::Severity,
    client_id: &str,
    tenant: Option<&str>,
    last_seen: &str,
) -> scopewatch_rules::alert::Alert {
    use scopewatch_model::events::Timestamp;
    let last = Timestamp::parse_rfc3339(last_seen).expect("an RFC 3339 time");
    let mut group = std::collections::BTreeMap::new();
    group.insert("client_id".to_string(), client_id.to_string());
    if let Some(t) = tenant {
        group.insert("tenant".to_string(), t.to_string());
    }
    scopewatch_rules::alert::Alert {
        id: id.into(),
        rule: rule.into(),
        title: format!("Title of {rule}"),
        severity,
        group,
        first_seen: Timestamp(last.0 - 60_000_000),
        last_seen: last,
        count: 3,
        evidence: vec![format!("{id}-e1"), format!("{id}-e2"), format!("{id}-e3")],
        detail: format!("3 events of {client_id} within 60 s (threshold 2)"),
        status: scopewatch_rules::alert::AlertStatus::Open,
        history: vec![],
    }
}

impl Server {
    /// Appends raise records to `<data>/alerts/alerts.jsonl`, as another
    /// process (the detector) would: the dashboard must take them up.
    pub fn raise_alerts(&self, alerts: &[scopewatch_rules::alert::Alert]) {
        use std::io::Write;
        let path = self.data.join("alerts/alerts.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("the dashboard created the alert store");
        for a in alerts {
            let line = serde_json::json!({ "op": "raise", "alert": a });
            writeln!(f, "{line}").unwrap();
        }
        f.sync_all().unwrap();
    }

    /// The alert store as a fresh reader sees it.
    pub fn alert_store(&self) -> scopewatch_rules::store::AlertStore {
        scopewatch_rules::store::AlertStore::open(&self.data.join("alerts/alerts.jsonl")).unwrap()
    }
}

/// A POST with a JSON body and extra headers (`Authorization`, `Cookie`,
/// `X-CSRF-Token`, ...).
pub fn post_json(url: &str, headers: &[(&str, &str)], body: &serde_json::Value) -> Resp {
    let mut req = agent().post(url).header("Content-Type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    collect(req.send(body.to_string()).unwrap())
}

/// No inline script or style anywhere in a page: the only script is the
/// embedded `/static/app.js` (the CSP would block anything else).
pub fn assert_no_inline_code(body: &str) {
    let scripts = body.matches("<script").count();
    let ours = body
        .matches(r#"<script src="/static/app.js" defer></script>"#)
        .count();
    assert_eq!(scripts, ours, "an inline script");
    assert!(!body.contains("style="), "an inline style");
}
