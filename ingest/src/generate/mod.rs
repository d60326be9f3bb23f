//! `scopewatch generate`: a realistic multi-tenant SMART ecosystem written
//! as the logs of its identity provider and gateways, with the app registry
//! that governs it, a config that ingests it, and `ground-truth.json`: the
//! true scope matrix per app and tenant and every injected incident, so
//! analytics and rules can be tested against truth.
//!
//! What is simulated, per day and tenant: clinician apps launched from the
//! EHR (authorization code, patient context), patient-facing apps (with
//! refresh tokens), backend services (client credentials, system scopes);
//! daily and weekly rhythm; honest denied calls (a call outside the token's
//! scopes gets 403). Drift: some apps are granted a scope their approval does
//! not list, some never use a scope they were approved, one app's new version
//! asks for more, one goes stale, one is revoked and keeps calling.
//! Incidents: refresh-token replay (rotation enforced: a
//! `REFRESH_TOKEN_ERROR` reuse; not enforced: the same refresh token consumed
//! twice), one token from many IPs, a token used after expiry and after
//! revocation, a token of one tenant used in another, bulk patient
//! enumeration, a burst of denied calls, a request spike, an unapproved scope
//! granted, calls by a revoked app.
//!
//! The same seed gives byte-identical output.

mod write;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::Serialize;
use time::{Date, Duration, OffsetDateTime, Weekday};

use write::{Call, Claims, GatewayLine, IdpEvent, Record};

/// Formats `generate` writes (the adapters' names).
pub const FORMATS: &[&str] = &[
    "keycloak",
    "nginx",
    "kong",
    "envoy",
    "fhir-auditevent",
    "scopewatch",
];

/// Formats that can carry FHIR API calls, in the order tenants take them.
const CALL_FORMATS: &[&str] = &["nginx", "kong", "envoy", "fhir-auditevent", "scopewatch"];
/// Formats that can carry the authorize requests (a gateway in front of
/// the identity provider).
const IDP_GATEWAY_FORMATS: &[&str] = &["nginx", "kong", "envoy"];

const TENANT_NAMES: &[&str] = &[
    "north", "south", "east", "west", "central", "research", "harbor", "valley", "summit",
    "lakeside", "meadow", "river",
];

const APP_WORDS: &[&str] = &[
    "cardio",
    "medrec",
    "glucose",
    "sleep",
    "renal",
    "onco",
    "derm",
    "peds",
    "vax",
    "asthma",
    "lipid",
    "neuro",
    "ortho",
    "maternity",
    "pharm",
    "triage",
    "wound",
    "rehab",
    "sepsis",
    "billing",
];
const APP_SUFFIXES: &[&str] = &["insight", "companion", "sync", "view", "tracker", "link"];

/// Resource types apps read, all in the patient compartment.
const TYPES: &[&str] = &[
    "Observation",
    "Condition",
    "MedicationRequest",
    "AllergyIntolerance",
    "Encounter",
    "Procedure",
    "Immunization",
    "DiagnosticReport",
    "CarePlan",
    "DocumentReference",
];

/// What `scopewatch generate` is asked for.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub out: PathBuf,
    pub seed: u64,
    pub days: u32,
    pub tenants: usize,
    pub apps: usize,
    pub events_per_day: u64,
    pub formats: Vec<String>,
    /// The last day generated (its events are in the past of `now` only if
    /// it is before today).
    pub end: Date,
    /// `data_dir` of the written config, relative to it.
    pub config_data_dir: String,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("{0}")]
    Invalid(String),
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What was written.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub out: PathBuf,
    pub auth_events: u64,
    pub access_events: u64,
    pub incidents: usize,
    pub files: BTreeMap<String, u64>,
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum AppKind {
    Clinician,
    Patient,
    Backend,
}

#[derive(Debug, Clone)]
struct GenApp {
    client_id: String,
    name: String,
    kind: AppKind,
    tenants: Vec<usize>,
    /// Resource types it calls.
    types: Vec<&'static str>,
    /// Approved but never called.
    unused: Option<&'static str>,
    /// A scope it requests and is granted, not approved (drift).
    unapproved: Option<String>,
    /// (version, first day it is used, an extra scope it asks for).
    versions: Vec<(String, u32, Option<String>)>,
    stale_after_day: Option<u32>,
    revoked_on_day: Option<u32>,
    weight: f64,
}

impl GenApp {
    fn context(&self) -> &'static str {
        match self.kind {
            AppKind::Backend => "system",
            _ => "patient",
        }
    }

    fn base_scopes(&self) -> Vec<String> {
        match self.kind {
            AppKind::Clinician => vec!["launch".into(), "openid".into(), "fhirUser".into()],
            AppKind::Patient => vec![
                "launch/patient".into(),
                "openid".into(),
                "fhirUser".into(),
                "offline_access".into(),
            ],
            AppKind::Backend => Vec::new(),
        }
    }

    /// The registry's approved set.
    fn approved(&self) -> Vec<String> {
        let ctx = self.context();
        let mut s = self.base_scopes();
        if self.kind != AppKind::Backend {
            s.push(format!("{ctx}/Patient.r"));
        }
        for t in self.types.iter().chain(self.unused.iter()) {
            s.push(format!("{ctx}/{t}.rs"));
        }
        s
    }

    /// What version `day` runs, and the scopes it requests.
    fn on_day(&self, day: u32) -> (&str, Vec<String>) {
        let (version, _, extra) = self
            .versions
            .iter()
            .rev()
            .find(|(_, from, _)| *from <= day)
            .unwrap_or(&self.versions[0]);
        let mut scopes = self.approved();
        scopes.extend(self.unapproved.iter().cloned());
        scopes.extend(extra.iter().cloned());
        (version, scopes)
    }
}

/// The true scope matrix cell of one app in one tenant.
#[derive(Debug, Clone, Default, Serialize)]
struct Cell {
    client_id: String,
    tenant: String,
    approved: Vec<String>,
    /// `None` when no chosen format logs authorize requests.
    requested: Option<BTreeSet<String>>,
    granted: BTreeSet<String>,
    /// The permission (SMART v2 scope) each allowed call needed.
    used: BTreeSet<String>,
    versions: BTreeSet<String>,
    calls: u64,
    denied: u64,
    last_seen: Option<String>,
}

/// An injected incident, as `ground-truth.json` lists it (what rules are
/// scored against).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Incident {
    /// e.g. `refresh_token_replay`, `request_spike`.
    pub kind: std::borrow::Cow<'static, str>,
    /// Empty when the incident is about the app in every tenant.
    pub tenant: String,
    pub client_id: String,
    /// Token ids as the lake holds them (`jti:<jti>`).
    pub token_ids: Vec<String>,
    /// RFC 3339.
    pub first_ts: String,
    pub last_ts: String,
    /// Injected events; 0 for incidents of the ecosystem's configuration
    /// (an unapproved scope, a revoked app) that span the whole period.
    pub events: u64,
    pub detail: String,
}

/// Where each kind of record is written.
struct Layout {
    idp_format: &'static str,
    idp_gateway: Option<&'static str>,
    /// The formats that log FHIR calls: the calls of app `a` in tenant `t`
    /// go through `call_formats[(t + a) % len]` (a tenant runs several
    /// gateways, one per API product), so every format gets traffic.
    call_formats: Vec<&'static str>,
}

impl Layout {
    fn call_format(&self, tenant: usize, app: usize) -> &'static str {
        self.call_formats[(tenant + app) % self.call_formats.len()]
    }
}

/// Writes the ecosystem under `opts.out`.
pub fn generate(opts: &GenerateOptions) -> Result<Summary, GenerateError> {
    let layout = validate(opts)?;
    let mut sim = Sim::new(opts, layout);
    sim.run()?;
    sim.finish()
}

fn validate(opts: &GenerateOptions) -> Result<Layout, GenerateError> {
    let bad = |m: String| Err(GenerateError::Invalid(m));
    if opts.tenants == 0 || opts.tenants > TENANT_NAMES.len() {
        return bad(format!("--tenants must be 1..={}", TENANT_NAMES.len()));
    }
    if opts.apps < 3 || opts.apps > APP_WORDS.len() * APP_SUFFIXES.len() {
        return bad(format!(
            "--apps must be 3..={} (one of each kind: clinician, patient, backend)",
            APP_WORDS.len() * APP_SUFFIXES.len()
        ));
    }
    if opts.days == 0 {
        return bad("--days must be at least 1".into());
    }
    if opts.events_per_day < 100 {
        return bad("--events-per-day must be at least 100".into());
    }
    for f in &opts.formats {
        if !FORMATS.contains(&f.as_str()) {
            return bad(format!(
                "unknown format `{f}`; known: {}",
                FORMATS.join(", ")
            ));
        }
    }
    let has = |f: &str| opts.formats.iter().any(|x| x == f);
    let idp_format = if has("keycloak") {
        "keycloak"
    } else if has("scopewatch") {
        "scopewatch"
    } else {
        return bad("identity-provider events need `keycloak` or `scopewatch` in --formats".into());
    };
    let calls: Vec<&'static str> = CALL_FORMATS.iter().copied().filter(|f| has(f)).collect();
    if calls.is_empty() {
        return bad(format!(
            "API calls need one of {} in --formats",
            CALL_FORMATS.join(", ")
        ));
    }
    let idp_gateway = IDP_GATEWAY_FORMATS
        .iter()
        .copied()
        .find(|f| has(f))
        .or_else(|| has("scopewatch").then_some("scopewatch"));
    Ok(Layout {
        idp_format,
        idp_gateway,
        call_formats: calls,
    })
}

/// Output files, kept open; lines of one day are sorted by time per file.
struct Files {
    out: PathBuf,
    open: BTreeMap<String, BufWriter<File>>,
    /// The day's records per file, formatted when the day is written.
    day: BTreeMap<String, Vec<(i64, Line)>>,
    lines: BTreeMap<String, u64>,
    bytes: u64,
}

impl Files {
    fn push(&mut self, rel: &str, ts_ms: i64, line: Line) {
        self.day
            .entry(rel.to_string())
            .or_default()
            .push((ts_ms, line));
    }

    fn flush_day(&mut self) -> Result<(), GenerateError> {
        for (rel, mut records) in std::mem::take(&mut self.day) {
            records.sort_by_key(|(ts, _)| *ts);
            // Formatting is most of the work: spread it over the cores.
            let lines: Vec<String> = records.par_iter().map(|(_, l)| l.format()).collect();
            let path = self.out.join(&rel);
            let io_err = |source| GenerateError::Io {
                path: path.clone(),
                source,
            };
            if !self.open.contains_key(&rel) {
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir).map_err(io_err)?;
                }
                let f = File::create(&path).map_err(io_err)?;
                self.open
                    .insert(rel.clone(), BufWriter::with_capacity(1 << 20, f));
            }
            let w = self.open.get_mut(&rel).expect("opened above");
            for line in &lines {
                w.write_all(line.as_bytes()).map_err(io_err)?;
                w.write_all(b"\n").map_err(io_err)?;
                self.bytes += line.len() as u64 + 1;
            }
            *self.lines.entry(rel).or_default() += lines.len() as u64;
        }
        Ok(())
    }

    fn write_whole(&mut self, rel: &str, text: &str) -> Result<(), GenerateError> {
        let path = self.out.join(rel);
        fs::write(&path, text).map_err(|source| GenerateError::Io { path, source })?;
        self.bytes += text.len() as u64;
        Ok(())
    }
}

/// A record and the format its file is in.
enum Line {
    Keycloak { event: IdpEvent, realm_id: String },
    Canonical(Record),
    Gateway(&'static str, Record),
    Audit(Call),
}

impl Line {
    fn format(&self) -> String {
        match self {
            Line::Keycloak { event, realm_id } => write::keycloak(event, realm_id),
            Line::Canonical(r) => write::canonical(r),
            Line::Gateway(fmt, r) => gateway_line(fmt, r),
            Line::Audit(c) => write::audit_event(c, &format!("fhir-{}", c.tenant)),
        }
    }
}

/// An issued access token.
#[derive(Debug, Clone)]
struct Token {
    jti: String,
    jwt: std::sync::Arc<str>,
    exp_ms: i64,
    scopes: Vec<String>,
    client_id: String,
    user: Option<String>,
    patient: Option<String>,
    tenant: usize,
    version: String,
}

struct Sim<'a> {
    opts: &'a GenerateOptions,
    layout: Layout,
    rng: StdRng,
    apps: Vec<GenApp>,
    tenants: Vec<String>,
    realm_ids: Vec<String>,
    cells: BTreeMap<(String, String), Cell>,
    incidents: Vec<Incident>,
    files: Files,
    start: Date,
    counter: u64,
    auth_events: u64,
    access_events: u64,
    /// Patients per tenant (raw ids).
    patients_per_tenant: u32,
}

const DAY_MS: i64 = 86_400_000;

/// The User-Agent apps send: `Name/1.2.3 (SMART client)`; the generated
/// config reads app versions from it.
const APP_UA_SUFFIX: &str = "(SMART client)";

impl<'a> Sim<'a> {
    fn new(opts: &'a GenerateOptions, layout: Layout) -> Sim<'a> {
        let mut rng = StdRng::seed_from_u64(opts.seed);
        let tenants: Vec<String> = TENANT_NAMES[..opts.tenants]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let realm_ids = (0..opts.tenants).map(|_| uuid_like(&mut rng)).collect();
        let apps = make_apps(&mut rng, opts);
        let start = opts.end - Duration::days(i64::from(opts.days) - 1);
        Sim {
            opts,
            layout,
            rng,
            apps,
            tenants,
            realm_ids,
            cells: BTreeMap::new(),
            incidents: Vec::new(),
            files: Files {
                out: opts.out.clone(),
                open: BTreeMap::new(),
                day: BTreeMap::new(),
                lines: BTreeMap::new(),
                bytes: 0,
            },
            start,
            counter: 0,
            auth_events: 0,
            access_events: 0,
            patients_per_tenant: (opts.events_per_day / 10).clamp(200, 200_000) as u32,
        }
    }

    fn next_id(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}{:x}{:04x}", self.counter, self.rng.random::<u16>())
    }

    fn cell(&mut self, app: usize, tenant: usize) -> &mut Cell {
        let a = &self.apps[app];
        let key = (a.client_id.clone(), self.tenants[tenant].clone());
        let requested_logged = self.layout.idp_gateway.is_some();
        self.cells.entry(key).or_insert_with(|| Cell {
            client_id: a.client_id.clone(),
            tenant: self.tenants[tenant].clone(),
            approved: a.approved(),
            requested: requested_logged.then(BTreeSet::new),
            ..Cell::default()
        })
    }

    fn run(&mut self) -> Result<(), GenerateError> {
        for d in 0..self.opts.days {
            let date = self.start + Duration::days(i64::from(d));
            let day_start_ms = date.midnight().assume_utc().unix_timestamp() * 1000;
            let weekend = matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday);
            let budget = self.opts.events_per_day as f64 * if weekend { 0.45 } else { 1.0 };
            // About 12 events per session.
            let sessions = (budget / 12.0).max(1.0) as u64;
            let total_weight: f64 = self
                .apps
                .iter()
                .map(|a| a.weight * a.tenants.len() as f64)
                .sum();
            for app in 0..self.apps.len() {
                let a = &self.apps[app];
                if a.stale_after_day.is_some_and(|s| d > s) {
                    continue;
                }
                let revoked = a.revoked_on_day.is_some_and(|r| d >= r);
                for ti in 0..a.tenants.len() {
                    let tenant = self.apps[app].tenants[ti];
                    // A revoked app keeps calling only where it was not
                    // switched off: its first tenant, at a trickle.
                    if revoked && ti > 0 {
                        continue;
                    }
                    let share = self.apps[app].weight / total_weight;
                    let mut n = (sessions as f64 * share).round() as u64;
                    if revoked {
                        n = n.div_ceil(10).max(1);
                    }
                    for _ in 0..n {
                        let ts = day_start_ms + self.time_of_day(self.apps[app].kind);
                        self.session(app, tenant, d, ts);
                    }
                }
            }
            self.incidents_on_day(d, day_start_ms);
            self.files.flush_day()?;
        }
        Ok(())
    }

    /// Milliseconds into the day, following the app kind's rhythm.
    fn time_of_day(&mut self, kind: AppKind) -> i64 {
        // Relative activity per UTC hour.
        const CLINIC: [u8; 24] = [
            1, 1, 1, 1, 1, 2, 4, 8, 12, 14, 14, 12, 10, 12, 14, 13, 11, 8, 5, 3, 2, 2, 1, 1,
        ];
        const PATIENT: [u8; 24] = [
            2, 1, 1, 1, 1, 2, 3, 5, 6, 6, 6, 6, 7, 6, 6, 6, 7, 9, 11, 12, 11, 9, 6, 3,
        ];
        const BACKEND: [u8; 24] = [
            12, 14, 14, 12, 8, 4, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 6, 10,
        ];
        let table = match kind {
            AppKind::Clinician => &CLINIC,
            AppKind::Patient => &PATIENT,
            AppKind::Backend => &BACKEND,
        };
        let total: u32 = table.iter().map(|&w| u32::from(w)).sum();
        let mut pick = self.rng.random_range(0..total);
        let mut hour = 0;
        for (h, &w) in table.iter().enumerate() {
            if pick < u32::from(w) {
                hour = h;
                break;
            }
            pick -= u32::from(w);
        }
        // Sessions that start late may run past midnight: keep them inside.
        let hour = hour.min(22) as i64;
        hour * 3_600_000 + self.rng.random_range(0..3_600_000)
    }

    fn ip(&mut self) -> String {
        format!(
            "10.{}.{}.{}",
            self.rng.random_range(0..4),
            self.rng.random_range(0..256),
            self.rng.random_range(1..255)
        )
    }

    fn patient(&mut self, tenant: usize) -> String {
        let n = self.rng.random_range(0..self.patients_per_tenant);
        format!("{}{:06}", &self.tenants[tenant][..1], n)
    }

    fn user(&mut self) -> String {
        uuid_like(&mut self.rng)
    }

    // The token's parts are all different kinds of id: a struct would only
    // rename the arguments.
    #[allow(clippy::too_many_arguments)]
    fn issue(
        &mut self,
        app: usize,
        tenant: usize,
        ts_ms: i64,
        scopes: &[String],
        version: &str,
        user: Option<String>,
        patient: Option<String>,
    ) -> Token {
        let jti = self.next_id("at-");
        let a = &self.apps[app];
        let iss = format!("https://auth.example.org/realms/{}", self.tenants[tenant]);
        let aud = format!(
            "https://fhir.{0}.example.org/fhir/r4/{0}",
            self.tenants[tenant]
        );
        let scope = scopes.join(" ");
        let jwt = write::jwt(&Claims {
            jti: &jti,
            client_id: &a.client_id,
            scope: &scope,
            sub: user.as_deref(),
            patient: patient.as_deref(),
            iss: &iss,
            aud: &aud,
            iat: ts_ms / 1000,
            exp: ts_ms / 1000 + 3600,
            software_version: version,
        });
        Token {
            jti,
            jwt: jwt.into(),
            exp_ms: ts_ms + 3_600_000,
            scopes: scopes.to_vec(),
            client_id: a.client_id.clone(),
            user,
            patient,
            tenant,
            version: version.to_string(),
        }
    }

    fn record(&mut self, r: Record) {
        let tenant_of = |t: &str, tenants: &[String]| {
            tenants
                .iter()
                .position(|x| x == t)
                .expect("records name generated tenants")
        };
        match &r {
            Record::Authorize { .. } => {
                let Some(fmt) = self.layout.idp_gateway else {
                    return;
                };
                self.auth_events += 1;
                let rel = if fmt == "scopewatch" {
                    "scopewatch/auth.ndjson".to_string()
                } else {
                    format!("{fmt}/idp.log")
                };
                let ts = r.ts_ms();
                self.files.push(&rel, ts, Line::Gateway(fmt, r));
            }
            Record::Idp(e) => {
                self.auth_events += 1;
                let ts = r.ts_ms();
                let (rel, line) = if self.layout.idp_format == "keycloak" {
                    let t = tenant_of(&e.tenant, &self.tenants);
                    let realm_id = self.realm_ids[t].clone();
                    let Record::Idp(event) = r else {
                        unreachable!("matched above")
                    };
                    ("keycloak/keycloak.log", Line::Keycloak { event, realm_id })
                } else {
                    ("scopewatch/auth.ndjson", Line::Canonical(r))
                };
                self.files.push(rel, ts, line);
            }
            Record::Call(c) => {
                self.access_events += 1;
                let t = tenant_of(&c.tenant, &self.tenants);
                let a = self
                    .apps
                    .iter()
                    .position(|a| a.client_id == c.client_id)
                    .expect("calls are made by generated apps");
                let fmt = self.layout.call_format(t, a);
                let ts = r.ts_ms();
                let (rel, line) = match fmt {
                    "fhir-auditevent" => {
                        let rel = format!("fhir-auditevent/audit-{}.ndjson", c.tenant);
                        let Record::Call(call) = r else {
                            unreachable!("matched above")
                        };
                        (rel, Line::Audit(call))
                    }
                    "scopewatch" => (
                        format!("scopewatch/fhir-{}.ndjson", c.tenant),
                        Line::Canonical(r),
                    ),
                    gw => (format!("{gw}/fhir-{}.log", c.tenant), Line::Gateway(gw, r)),
                };
                self.files.push(&rel, ts, line);
            }
        }
    }
}

/// A gateway's line for an authorize request or a FHIR call.
fn gateway_line(fmt: &str, r: &Record) -> String {
    if fmt == "scopewatch" {
        return write::canonical(r);
    }
    let (ts_ms, method, target, host, status, bytes, latency, ip, ua, auth, rid);
    let owned_target;
    let owned_host;
    match r {
        Record::Authorize {
            ts_ms: t,
            tenant,
            client_id,
            scopes,
            ip: i,
            user_agent,
            state,
        } => {
            owned_target = write::authorize_target(tenant, client_id, scopes, state);
            ts_ms = *t;
            method = "GET";
            target = owned_target.as_str();
            owned_host = "auth.example.org".to_string();
            host = owned_host.as_str();
            status = 302;
            bytes = 0;
            latency = 12.0;
            ip = i.as_str();
            ua = user_agent.as_str();
            auth = None;
            rid = state.as_str();
        }
        Record::Call(c) => {
            owned_host = format!("fhir.{}.example.org", c.tenant);
            ts_ms = c.ts_ms;
            method = c.method;
            target = c.target.as_str();
            host = owned_host.as_str();
            status = c.status;
            bytes = c.bytes;
            latency = c.latency_ms;
            ip = c.ip.as_str();
            ua = c.user_agent.as_str();
            auth = Some(&*c.jwt);
            rid = c.request_id.as_str();
        }
        Record::Idp(_) => unreachable!("identity-provider events are not gateway lines"),
    }
    let g = GatewayLine {
        ts_ms,
        method,
        target,
        host,
        status,
        bytes,
        latency_ms: latency,
        ip,
        user_agent: ua,
        authorization: auth,
        request_id: rid,
    };
    match fmt {
        "nginx" => write::nginx_json(&g),
        "kong" => write::kong(&g),
        "envoy" => write::envoy_json(&g),
        other => unreachable!("not a gateway format: {other}"),
    }
}

impl Sim<'_> {
    /// One session of an app in a tenant from `ts`: authorize, token, calls,
    /// maybe a refresh and more calls.
    fn session(&mut self, app: usize, tenant: usize, day: u32, ts: i64) {
        let (version, requested) = {
            let (v, s) = self.apps[app].on_day(day);
            (v.to_string(), s)
        };
        let kind = self.apps[app].kind;
        let client_id = self.apps[app].client_id.clone();
        let tname = self.tenants[tenant].clone();
        let ip = self.ip();
        let ua = format!(
            "{}/{version} {APP_UA_SUFFIX}",
            self.apps[app].name.replace(' ', "")
        );
        let mut t = ts;
        let (user, patient) = match kind {
            AppKind::Backend => (None, None),
            _ => (Some(self.user()), Some(self.patient(tenant))),
        };
        let session_id = (kind != AppKind::Backend).then(|| uuid_like(&mut self.rng));
        // A patient may decline offline access on the consent screen.
        let mut granted = requested.clone();
        if kind == AppKind::Patient && self.rng.random_bool(0.1) {
            granted.retain(|s| s != "offline_access");
        }
        let token = self.issue(
            app,
            tenant,
            t,
            &granted,
            &version,
            user.clone(),
            patient.clone(),
        );
        let mut refresh_id = None;
        if kind == AppKind::Backend {
            self.record(Record::Idp(IdpEvent {
                ts_ms: t,
                tenant: tname.clone(),
                kind: "CLIENT_LOGIN",
                client_id: client_id.clone(),
                user: None,
                session: None,
                ip: ip.clone(),
                details: vec![
                    ("token_id", token.jti.clone()),
                    ("grant_type", "client_credentials".into()),
                    ("scope", granted.join(" ")),
                    ("client_auth_method", "client-jwt".into()),
                ],
                error: None,
            }));
        } else {
            let state = self.next_id("st-");
            self.record(Record::Authorize {
                ts_ms: t,
                tenant: tname.clone(),
                client_id: client_id.clone(),
                scopes: requested.clone(),
                ip: ip.clone(),
                user_agent: ua.clone(),
                state,
            });
            t += self.rng.random_range(3_000..20_000);
            let code_id = uuid_like(&mut self.rng);
            self.record(Record::Idp(IdpEvent {
                ts_ms: t,
                tenant: tname.clone(),
                kind: "LOGIN",
                client_id: client_id.clone(),
                user: user.clone(),
                session: session_id.clone(),
                ip: ip.clone(),
                details: vec![
                    ("auth_method", "openid-connect".into()),
                    ("auth_type", "code".into()),
                    ("code_id", code_id),
                ],
                error: None,
            }));
            t += self.rng.random_range(200..1_500);
            let mut details = vec![
                ("token_id", token.jti.clone()),
                ("grant_type", "authorization_code".into()),
                ("scope", granted.join(" ")),
            ];
            if granted.iter().any(|s| s == "offline_access") {
                let r = self.next_id("rt-");
                details.push(("refresh_token_id", r.clone()));
                details.push(("refresh_token_type", "Offline".into()));
                refresh_id = Some(r);
            }
            details.push(("client_auth_method", "client-secret".into()));
            self.record(Record::Idp(IdpEvent {
                ts_ms: t,
                tenant: tname.clone(),
                kind: "CODE_TO_TOKEN",
                client_id: client_id.clone(),
                user: user.clone(),
                session: session_id.clone(),
                ip: ip.clone(),
                details,
                error: None,
            }));
            let cell = self.cell(app, tenant);
            if let Some(r) = cell.requested.as_mut() {
                r.extend(requested.iter().cloned());
            }
        }
        {
            let date = day_string(t);
            let cell = self.cell(app, tenant);
            cell.granted.extend(granted.iter().cloned());
            cell.last_seen = Some(date);
        }
        let calls = self.rng.random_range(4..24);
        t = self.calls(app, &token, t, calls, &ip, &ua);
        // A patient app comes back later on its refresh token.
        if let Some(consumed) = refresh_id {
            if self.rng.random_bool(0.4) {
                t += self.rng.random_range(600_000..3_000_000);
                let renewed = self.issue(app, tenant, t, &granted, &version, user, patient);
                let new_refresh = self.next_id("rt-");
                self.record(Record::Idp(IdpEvent {
                    ts_ms: t,
                    tenant: tname.clone(),
                    kind: "REFRESH_TOKEN",
                    client_id: client_id.clone(),
                    user: renewed.user.clone(),
                    session: session_id.clone(),
                    ip: ip.clone(),
                    details: vec![
                        ("token_id", renewed.jti.clone()),
                        ("grant_type", "refresh_token".into()),
                        ("refresh_token_id", consumed),
                        ("updated_refresh_token_id", new_refresh),
                        ("scope", granted.join(" ")),
                    ],
                    error: None,
                }));
                let calls = self.rng.random_range(2..10);
                self.calls(app, &renewed, t, calls, &ip, &ua);
            }
        }
    }

    /// `n` calls with `token` after `t`; returns the time of the last.
    fn calls(&mut self, app: usize, token: &Token, mut t: i64, n: u32, ip: &str, ua: &str) -> i64 {
        for _ in 0..n {
            t += self.rng.random_range(300..20_000);
            // Most calls use a granted type; a few honestly fail on one
            // that is not granted.
            let types = self.apps[app].types.clone();
            let unapproved_type = self.apps[app]
                .unapproved
                .as_deref()
                .and_then(scope_type)
                .map(str::to_string);
            let ty: String = if self.rng.random_bool(0.03) {
                "Coverage".into()
            } else if let Some(u) = unapproved_type.filter(|_| self.rng.random_bool(0.15)) {
                u
            } else {
                types[self.rng.random_range(0..types.len())].to_string()
            };
            self.call(app, token, t, &ty, ip, ua, None);
        }
        t
    }

    /// One call on `ty` (`Patient` for a read of the patient itself).
    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        app: usize,
        token: &Token,
        t: i64,
        ty: &str,
        ip: &str,
        ua: &str,
        status_override: Option<u16>,
    ) {
        let a = &self.apps[app];
        let ctx = a.context();
        let tname = self.tenants[token.tenant].clone();
        let base = format!("/fhir/r4/{tname}");
        let patient = token.patient.clone();
        let roll: f64 = self.rng.random();
        let (target, letter, what, code) = match (&patient, roll) {
            (Some(p), r) if r < 0.15 => (
                format!("{base}/Patient/{p}"),
                ("Patient", 'r'),
                Some(format!("Patient/{p}")),
                "read",
            ),
            (Some(p), r) if r < 0.75 => (
                format!("{base}/{ty}?patient={p}&_count=50"),
                (ty, 's'),
                Some(format!("Patient/{p}")),
                "search-type",
            ),
            (None, r) if r < 0.6 => (
                format!("{base}/{ty}?_lastUpdated=gt2026-01-01&_count=100"),
                (ty, 's'),
                None,
                "search-type",
            ),
            _ => {
                let id = self.next_id("");
                (
                    format!("{base}/{ty}/{id}"),
                    (ty, 'r'),
                    Some(format!("{ty}/{id}")),
                    "read",
                )
            }
        };
        let (ty_used, letter) = letter;
        let required = format!("{ctx}/{ty_used}.{letter}");
        let covered = token.scopes.iter().any(|s| {
            s == &format!("{ctx}/{ty_used}.rs")
                || s == &format!("{ctx}/{ty_used}.{letter}")
                || s == &format!("{ctx}/*.rs")
        });
        let status = status_override.unwrap_or(if covered { 200 } else { 403 });
        let bytes = if status == 200 {
            self.rng.random_range(800..60_000)
        } else {
            180
        };
        let latency = f64::from(self.rng.random_range(5u32..400)) + 0.5;
        let request_id = self.next_id("req-");
        let client_id = token.client_id.clone();
        let version = token.version.clone();
        self.record(Record::Call(Call {
            ts_ms: t,
            tenant: tname,
            method: "GET",
            target,
            status,
            bytes,
            latency_ms: latency,
            ip: ip.to_string(),
            user_agent: ua.to_string(),
            jwt: token.jwt.clone(),
            client_id,
            user: token.user.clone(),
            jti: token.jti.clone(),
            request_id,
            what,
            interaction_code: code,
        }));
        let date = day_string(t);
        let cell = self.cell(app, token.tenant);
        cell.calls += 1;
        // The config reads versions from the apps' own User-Agent only.
        if ua.ends_with(APP_UA_SUFFIX) {
            cell.versions.insert(version);
        }
        cell.last_seen = Some(date);
        if status < 400 {
            cell.used.insert(required);
        } else {
            cell.denied += 1;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn incident(
        &mut self,
        kind: &'static str,
        app: usize,
        tenant: usize,
        tokens: &[&Token],
        first: i64,
        last: i64,
        events: u64,
        detail: String,
    ) {
        self.incidents.push(Incident {
            kind: kind.into(),
            tenant: self.tenants[tenant].clone(),
            client_id: self.apps[app].client_id.clone(),
            token_ids: tokens.iter().map(|t| format!("jti:{}", t.jti)).collect(),
            first_ts: iso(first),
            last_ts: iso(last),
            events,
            detail,
        });
    }

    /// Injects each kind of incident once, spread over the period.
    fn incidents_on_day(&mut self, d: u32, day_ms: i64) {
        let days = self.opts.days;
        let when = |k: u32| (k * days / 10).min(days - 1);
        let patient_app = self.app_of(AppKind::Patient);
        let clinic_app = self.app_of(AppKind::Clinician);
        let backend_app = self.app_of(AppKind::Backend);
        let tenant0 = self.apps[patient_app].tenants[0];
        let at = |h: i64| day_ms + h * 3_600_000;

        if d == when(1) {
            // Refresh-token replay, rotation enforced: the server refuses
            // the second use.
            let t = at(20);
            let tok = self.patient_token(patient_app, tenant0, t);
            let r1 = self.next_id("rt-");
            let r2 = self.next_id("rt-");
            let renewed = self.patient_token(patient_app, tenant0, t + 60_000);
            let tn = self.tenants[tenant0].clone();
            let cid = self.apps[patient_app].client_id.clone();
            let ip1 = self.ip();
            self.record(Record::Idp(IdpEvent {
                ts_ms: t + 60_000,
                tenant: tn.clone(),
                kind: "REFRESH_TOKEN",
                client_id: cid.clone(),
                user: tok.user.clone(),
                session: None,
                ip: ip1,
                details: vec![
                    ("token_id", renewed.jti.clone()),
                    ("grant_type", "refresh_token".into()),
                    ("refresh_token_id", r1.clone()),
                    ("updated_refresh_token_id", r2),
                    ("scope", tok.scopes.join(" ")),
                ],
                error: None,
            }));
            let ip2 = format!("198.51.100.{}", self.rng.random_range(1..255));
            self.record(Record::Idp(IdpEvent {
                ts_ms: t + 420_000,
                tenant: tn,
                kind: "REFRESH_TOKEN_ERROR",
                client_id: cid,
                user: tok.user.clone(),
                session: None,
                ip: ip2,
                details: vec![
                    ("grant_type", "refresh_token".into()),
                    ("refresh_token_id", r1.clone()),
                    (
                        "reason",
                        "Maximum allowed refresh token reuse exceeded".into(),
                    ),
                ],
                error: Some("invalid_token".into()),
            }));
            let scopes = tok.scopes.clone();
            self.cell(patient_app, tenant0).granted.extend(scopes);
            self.incidents.push(Incident {
                kind: "refresh_token_replay".into(),
                tenant: self.tenants[tenant0].clone(),
                client_id: self.apps[patient_app].client_id.clone(),
                token_ids: vec![format!("jti:{r1}")],
                first_ts: iso(t + 60_000),
                last_ts: iso(t + 420_000),
                events: 2,
                detail: "refresh token used twice; rotation enforced (REFRESH_TOKEN_ERROR)".into(),
            });
        }
        if d == when(2) {
            // Refresh-token replay where rotation is not enforced: the same
            // refresh token is consumed twice, from two networks.
            let t = at(21);
            let tok = self.patient_token(patient_app, tenant0, t);
            let r1 = self.next_id("rt-");
            let tn = self.tenants[tenant0].clone();
            let cid = self.apps[patient_app].client_id.clone();
            for (k, ip) in [
                self.ip(),
                format!("203.0.113.{}", self.rng.random_range(1..255)),
            ]
            .into_iter()
            .enumerate()
            {
                let renewed = self.patient_token(patient_app, tenant0, t);
                self.record(Record::Idp(IdpEvent {
                    ts_ms: t + k as i64 * 900_000,
                    tenant: tn.clone(),
                    kind: "REFRESH_TOKEN",
                    client_id: cid.clone(),
                    user: tok.user.clone(),
                    session: None,
                    ip,
                    details: vec![
                        ("token_id", renewed.jti.clone()),
                        ("grant_type", "refresh_token".into()),
                        ("refresh_token_id", r1.clone()),
                        ("scope", tok.scopes.join(" ")),
                    ],
                    error: None,
                }));
            }
            let scopes = tok.scopes.clone();
            self.cell(patient_app, tenant0).granted.extend(scopes);
            self.incidents.push(Incident {
                kind: "refresh_token_replay".into(),
                tenant: tn,
                client_id: cid,
                token_ids: vec![format!("jti:{r1}")],
                first_ts: iso(t),
                last_ts: iso(t + 900_000),
                events: 2,
                detail: "the same refresh token consumed twice; rotation not enforced".into(),
            });
        }
        if d == when(3) {
            // One access token used from many IPs.
            let t = at(10);
            let tok = self.patient_token(clinic_app, self.apps[clinic_app].tenants[0], t);
            let ua = "Mozilla/5.0".to_string();
            for k in 0..15 {
                let ip = format!("192.0.2.{}", 10 + k % 12);
                self.call(
                    clinic_app,
                    &tok,
                    t + k * 30_000,
                    "Observation",
                    &ip,
                    &ua,
                    None,
                );
            }
            let tenant = tok.tenant;
            self.incident(
                "token_many_ips",
                clinic_app,
                tenant,
                &[&tok],
                t,
                t + 14 * 30_000,
                15,
                "one access token used from 12 IP addresses within 7 minutes".into(),
            );
        }
        if d == when(4) {
            // A token used after it expired (the gateway refuses with 401).
            let t = at(9);
            let tok = self.patient_token(clinic_app, self.apps[clinic_app].tenants[0], t);
            let late = tok.exp_ms + 2 * 3_600_000;
            let ip = self.ip();
            for k in 0..3 {
                self.call(
                    clinic_app,
                    &tok,
                    late + k * 10_000,
                    "Observation",
                    &ip,
                    "curl/8.5.0",
                    Some(401),
                );
            }
            let tenant = tok.tenant;
            self.incident(
                "token_after_expiry",
                clinic_app,
                tenant,
                &[&tok],
                late,
                late + 20_000,
                3,
                "access token presented two hours after it expired".into(),
            );
        }
        if d == when(5) {
            // A token used after its grant was revoked (the gateway does not
            // introspect, so the calls succeed).
            let t = at(11);
            let tenant = self.apps[clinic_app].tenants[0];
            let tok = self.patient_token(clinic_app, tenant, t);
            let ip = self.ip();
            self.record(Record::Idp(IdpEvent {
                ts_ms: t,
                tenant: self.tenants[tenant].clone(),
                kind: "REVOKE_GRANT",
                client_id: tok.client_id.clone(),
                user: tok.user.clone(),
                session: None,
                ip: ip.clone(),
                details: vec![("token_id", tok.jti.clone())],
                error: None,
            }));
            let ty = self.apps[clinic_app].types[0];
            for k in 0..4 {
                self.call(
                    clinic_app,
                    &tok,
                    t + 600_000 + k * 20_000,
                    ty,
                    &ip,
                    "CardioApp",
                    None,
                );
            }
            self.incident(
                "token_after_revocation",
                clinic_app,
                tenant,
                &[&tok],
                t,
                t + 660_000,
                5,
                "calls with a token after its grant was revoked".into(),
            );
        }
        if d == when(6) && self.tenants.len() > 1 {
            // A token issued in one tenant presented to another's API.
            let t = at(14);
            let home = self.apps[backend_app].tenants[0];
            let other = (home + 1) % self.tenants.len();
            let mut tok = self.patient_token(backend_app, home, t);
            let ip = self.ip();
            // The home realm logs the grant: how the token's tenant is known
            // when the calls go through a gateway that does not log the JWT.
            self.record(Record::Idp(IdpEvent {
                ts_ms: t - 5_000,
                tenant: self.tenants[home].clone(),
                kind: "CLIENT_LOGIN",
                client_id: tok.client_id.clone(),
                user: None,
                session: None,
                ip: ip.clone(),
                details: vec![
                    ("token_id", tok.jti.clone()),
                    ("grant_type", "client_credentials".into()),
                    ("scope", tok.scopes.join(" ")),
                    ("client_auth_method", "client-jwt".into()),
                ],
                error: None,
            }));
            let scopes = tok.scopes.clone();
            self.cell(backend_app, home).granted.extend(scopes);
            tok.tenant = other;
            for k in 0..5 {
                self.call(
                    backend_app,
                    &tok,
                    t + k * 15_000,
                    "Observation",
                    &ip,
                    "python-requests/2.32",
                    None,
                );
            }
            self.incident(
                "cross_tenant_token",
                backend_app,
                other,
                &[&tok],
                t,
                t + 60_000,
                5,
                format!(
                    "token issued by realm {} used against tenant {}",
                    self.tenants[home], self.tenants[other]
                ),
            );
        }
        if d == when(7) {
            // Bulk patient enumeration: one token reads hundreds of patients.
            let t = at(2);
            let tenant = self.apps[clinic_app].tenants[0];
            let tok = self.patient_token(clinic_app, tenant, t);
            let ip = self.ip();
            let base = format!("/fhir/r4/{}", self.tenants[tenant]);
            let n = 400;
            for k in 0..n {
                let p = format!("{}{:06}", &self.tenants[tenant][..1], k);
                let rid = self.next_id("req-");
                self.record(Record::Call(Call {
                    ts_ms: t + k * 700,
                    tenant: self.tenants[tenant].clone(),
                    method: "GET",
                    target: format!("{base}/Patient/{p}"),
                    status: 200,
                    bytes: 2_400,
                    latency_ms: 20.5,
                    ip: ip.clone(),
                    user_agent: "python-requests/2.32".into(),
                    jwt: tok.jwt.clone(),
                    client_id: tok.client_id.clone(),
                    user: tok.user.clone(),
                    jti: tok.jti.clone(),
                    request_id: rid,
                    what: Some(format!("Patient/{p}")),
                    interaction_code: "read",
                }));
            }
            let last = day_string(t + (n - 1) * 700);
            let cell = self.cell(clinic_app, tenant);
            cell.calls += n as u64;
            cell.used.insert("patient/Patient.r".into());
            cell.last_seen = Some(last);
            self.incident(
                "bulk_patient_enumeration",
                clinic_app,
                tenant,
                &[&tok],
                t,
                t + (n - 1) * 700,
                n as u64,
                format!("{n} distinct patients read with one token in under 5 minutes"),
            );
        }
        if d == when(8) {
            // A burst of denied calls.
            let t = at(15);
            let tenant = self.apps[patient_app].tenants[0];
            let tok = self.patient_token(patient_app, tenant, t);
            let ip = self.ip();
            for k in 0..50 {
                self.call(
                    patient_app,
                    &tok,
                    t + k * 2_000,
                    "Coverage",
                    &ip,
                    "PatientApp",
                    Some(403),
                );
            }
            self.incident(
                "denied_burst",
                patient_app,
                tenant,
                &[&tok],
                t,
                t + 98_000,
                50,
                "50 calls refused with 403 within 100 seconds".into(),
            );
        }
        if d == when(9) {
            // A request spike: ten times an app's usual calls in one hour.
            let t = at(13);
            let tenant = self.apps[backend_app].tenants[0];
            let tok = self.patient_token(backend_app, tenant, t);
            let ip = self.ip();
            let n = (self.opts.events_per_day / 10).clamp(300, 20_000) as i64;
            for k in 0..n {
                let ty = self.apps[backend_app].types[0];
                self.call(
                    backend_app,
                    &tok,
                    t + k * (3_600_000 / n),
                    ty,
                    &ip,
                    "etl/1.0",
                    None,
                );
            }
            self.incident(
                "request_spike",
                backend_app,
                tenant,
                &[&tok],
                t,
                t + 3_600_000,
                n as u64,
                format!("{n} calls in one hour"),
            );
        }
    }

    fn app_of(&self, kind: AppKind) -> usize {
        self.apps
            .iter()
            .position(|a| {
                a.kind == kind && a.revoked_on_day.is_none() && a.stale_after_day.is_none()
            })
            .or_else(|| self.apps.iter().position(|a| a.kind == kind))
            .expect("make_apps makes every kind")
    }

    /// A token for an incident (its grant is not logged: the incident is
    /// about what is done with it).
    fn patient_token(&mut self, app: usize, tenant: usize, t: i64) -> Token {
        let (version, scopes) = {
            let (v, s) = self.apps[app].on_day(0);
            (v.to_string(), s)
        };
        let (user, patient) = match self.apps[app].kind {
            AppKind::Backend => (None, None),
            _ => (Some(self.user()), Some(self.patient(tenant))),
        };
        self.issue(app, tenant, t, &scopes, &version, user, patient)
    }

    /// The first and last millisecond of the generated period.
    fn period_start_ms(&self) -> i64 {
        self.start.midnight().assume_utc().unix_timestamp() * 1000
    }

    fn period_end_ms(&self) -> i64 {
        self.opts.end.midnight().assume_utc().unix_timestamp() * 1000 + DAY_MS - 1
    }

    /// An `unapproved_scope_granted` incident for each tenant of `app`
    /// where `scope` was granted.
    fn unapproved_grants(
        &mut self,
        app: &GenApp,
        scope: &str,
        first: i64,
        last: i64,
        detail: &str,
    ) {
        for &t in &app.tenants {
            let key = (app.client_id.clone(), self.tenants[t].clone());
            if self
                .cells
                .get(&key)
                .is_some_and(|c| c.granted.contains(scope))
            {
                self.incidents.push(Incident {
                    kind: "unapproved_scope_granted".into(),
                    tenant: self.tenants[t].clone(),
                    client_id: app.client_id.clone(),
                    token_ids: Vec::new(),
                    first_ts: iso(first),
                    last_ts: iso(last),
                    events: 0,
                    detail: detail.to_string(),
                });
            }
        }
    }

    fn finish(mut self) -> Result<Summary, GenerateError> {
        self.files.flush_day()?;
        for (rel, w) in &mut self.files.open {
            w.flush().map_err(|source| GenerateError::Io {
                path: self.opts.out.join(rel),
                source,
            })?;
        }
        // Incidents derived from the ecosystem's configuration.
        for a in self.apps.clone().iter() {
            if let Some(s) = &a.unapproved {
                let (first, last) = (self.period_start_ms(), self.period_end_ms());
                let detail = format!("granted `{s}`, which the registry does not approve");
                self.unapproved_grants(a, s, first, last, &detail);
            }
            // A new version asking for a scope the previous did not: scope
            // creep, and (never approved) an unapproved grant per tenant.
            for (version, from, extra) in &a.versions {
                let Some(s) = extra else { continue };
                // Only a version that ran (a stale app's later versions never do).
                let ran = self
                    .cells
                    .values()
                    .any(|c| c.client_id == a.client_id && c.versions.contains(version.as_str()));
                if !ran {
                    continue;
                }
                let first = (self.start + Duration::days(i64::from(*from)))
                    .midnight()
                    .assume_utc()
                    .unix_timestamp()
                    * 1000;
                let last = self.period_end_ms();
                self.incidents.push(Incident {
                    kind: "new_scope_requested".into(),
                    tenant: String::new(),
                    client_id: a.client_id.clone(),
                    token_ids: Vec::new(),
                    first_ts: iso(first),
                    last_ts: iso(last),
                    events: 0,
                    detail: format!(
                        "version {version} requests `{s}`, which earlier versions did not"
                    ),
                });
                let detail = format!(
                    "granted `{s}` (asked by version {version}), which the registry does not approve"
                );
                self.unapproved_grants(a, s, first, last, &detail);
            }
            if let Some(r) = a.revoked_on_day {
                let t = a.tenants[0];
                let from = (self.start + Duration::days(i64::from(r)))
                    .midnight()
                    .assume_utc()
                    .unix_timestamp()
                    * 1000;
                self.incidents.push(Incident {
                    kind: "revoked_app_calls".into(),
                    tenant: self.tenants[t].clone(),
                    client_id: a.client_id.clone(),
                    token_ids: Vec::new(),
                    first_ts: iso(from),
                    last_ts: iso(self.period_end_ms()),
                    events: 0,
                    detail: format!("app {} keeps calling after it was revoked", a.client_id),
                });
            }
        }
        let registry = self.registry_toml();
        self.files.write_whole("registry.toml", &registry)?;
        let config = self.config_toml();
        self.files.write_whole("scopewatch.toml", &config)?;
        let truth = self.truth();
        self.files.write_whole(
            "ground-truth.json",
            &serde_json::to_string_pretty(&truth).expect("truth serialises"),
        )?;
        Ok(Summary {
            out: self.opts.out.clone(),
            auth_events: self.auth_events,
            access_events: self.access_events,
            incidents: self.incidents.len(),
            files: self.files.lines.clone(),
            bytes: self.files.bytes,
        })
    }

    fn truth(&self) -> serde_json::Value {
        let apps: Vec<serde_json::Value> = self
            .apps
            .iter()
            .map(|a| {
                serde_json::json!({
                    "client_id": a.client_id, "name": a.name, "kind": a.kind,
                    "tenants": a.tenants.iter().map(|&t| &self.tenants[t]).collect::<Vec<_>>(),
                    "approved": a.approved(),
                    "approved_versions": [format!("{}.*", major_minor(&a.versions[0].0))],
                    "versions": a.versions.iter().map(|(v, from, extra)| serde_json::json!({
                        "version": v, "from": (self.start + Duration::days(i64::from(*from))).to_string(),
                        "extra_scope": extra,
                    })).collect::<Vec<_>>(),
                    "unused_scope": a.unused.map(|t| format!("{}/{t}.rs", a.context())),
                    "unapproved_scope": a.unapproved,
                    "stale_since": a.stale_after_day.map(|d| (self.start + Duration::days(i64::from(d) + 1)).to_string()),
                    "revoked_since": a.revoked_on_day.map(|d| (self.start + Duration::days(i64::from(d))).to_string()),
                })
            })
            .collect();
        serde_json::json!({
            "seed": self.opts.seed,
            "start": self.start.to_string(),
            "end": self.opts.end.to_string(),
            "tenants": self.tenants,
            "formats": self.opts.formats,
            "call_formats": self.cells.values().map(|c| {
                let t = self.tenants.iter().position(|x| *x == c.tenant).expect("known tenant");
                let a = self.apps.iter().position(|a| a.client_id == c.client_id).expect("known app");
                (format!("{} {}", c.client_id, c.tenant), self.layout.call_format(t, a))
            }).collect::<BTreeMap<_, _>>(),
            "events": {"auth": self.auth_events, "access": self.access_events},
            "apps": apps,
            "matrix": self.cells.values().collect::<Vec<_>>(),
            "incidents": self.incidents,
        })
    }

    fn registry_toml(&self) -> String {
        let mut s = String::from(
            "# App registry of a generated ecosystem (scopewatch generate).\n# Some grants drift from these approvals on purpose: see ground-truth.json.\nversion = 1\n",
        );
        for a in &self.apps {
            let q = |v: &str| serde_json::Value::from(v).to_string();
            let list = |v: &[String]| v.iter().map(|x| q(x)).collect::<Vec<_>>().join(", ");
            let tier = match a.kind {
                AppKind::Clinician => 2,
                AppKind::Patient => 3,
                AppKind::Backend => 1,
            };
            s.push_str(&format!(
                "\n[[app]]\nclient_id = {}\nname = {}\nowner = {}\ncontact = {}\ntier = {tier}\n",
                q(&a.client_id),
                q(&a.name),
                q(&format!("{} team", a.name)),
                q(&format!("{}@vendor.example.com", a.client_id)),
            ));
            match a.revoked_on_day {
                Some(d) => s.push_str(&format!(
                    "status = \"revoked\"\nstatus_since = {}\nstatus_reason = \"vendor contract ended\"\n",
                    self.start + Duration::days(i64::from(d))
                )),
                None => s.push_str("status = \"active\"\n"),
            }
            let tenants: Vec<String> = a.tenants.iter().map(|&t| self.tenants[t].clone()).collect();
            s.push_str(&format!("tenants = [{}]\n", list(&tenants)));
            s.push_str(&format!("approved_scopes = [{}]\n", list(&a.approved())));
            s.push_str(&format!(
                "approved_versions = [{}]\n",
                q(&format!("{}.*", major_minor(&a.versions[0].0)))
            ));
            if a.kind == AppKind::Patient {
                s.push_str("offline_access = { justified = true, reason = \"patients stay signed in between visits\" }\n");
            }
            s.push_str(&format!(
                "registered = {}\n",
                self.start - Duration::days(200)
            ));
        }
        s
    }

    fn config_toml(&self) -> String {
        let mut s = String::from(
            "# Ingests the generated ecosystem (scopewatch generate). Paths are\n# relative to this file.\n",
        );
        s.push_str(&format!(
            "data_dir = {}\nregistry = \"registry.toml\"\n\n[fhir]\nbase_paths = [\"/fhir/r4/{{tenant}}\"]\n",
            serde_json::Value::from(self.opts.config_data_dir.as_str())
        ));
        let version =
            "app_version_from = 'user_agent:^[^/ ]+/([0-9][0-9.]*) \\(SMART client\\)$'\n";
        if self.layout.idp_format == "keycloak" {
            s.push_str("\n# The identity provider's event log; the realm is the tenant.\n[[source]]\nname = \"keycloak\"\nformat = \"keycloak\"\npaths = [\"keycloak/*.log\"]\n");
        }
        if let Some(g) = self.layout.idp_gateway.filter(|g| *g != "scopewatch") {
            s.push_str(&format!(
                "\n# The gateway in front of the identity provider: authorize requests\n# carry the requested scopes.\n[[source]]\nname = \"idp-{g}\"\nformat = \"{g}\"\npaths = [\"{g}/idp.log\"]\ntenant_from = \"realm\"\n{version}"
            ));
        }
        let gateways = self
            .layout
            .call_formats
            .iter()
            .filter(|f| ["nginx", "kong", "envoy"].contains(f));
        for g in gateways {
            s.push_str(&format!(
                "\n# FHIR API gateways: the tenant is the path segment after /fhir/r4.\n[[source]]\nname = \"fhir-{g}\"\nformat = \"{g}\"\npaths = [\"{g}/fhir-*.log\"]\ntenant_from = \"path:3\"\n{version}"
            ));
        }
        for t in &self.tenants {
            if self.layout.call_formats.contains(&"fhir-auditevent") {
                s.push_str(&format!(
                    "\n# The FHIR server of tenant {t} writes AuditEvents (IHE BALP).\n[[source]]\nname = \"audit-{t}\"\nformat = \"fhir-auditevent\"\npaths = [\"fhir-auditevent/audit-{t}.ndjson\"]\ntenant = \"{t}\"\n"
                ));
            }
        }
        if self.opts.formats.iter().any(|f| f == "scopewatch") {
            s.push_str(&format!("\n# Our own NDJSON (each line names its tenant).\n[[source]]\nname = \"canonical\"\nformat = \"scopewatch\"\npaths = [\"scopewatch/*.ndjson\"]\n{version}"));
        }
        s
    }
}

/// Apps of every kind with drift and lifecycle cases spread among them.
fn make_apps(rng: &mut StdRng, opts: &GenerateOptions) -> Vec<GenApp> {
    let kinds = [AppKind::Clinician, AppKind::Patient, AppKind::Backend];
    let mut apps = Vec::with_capacity(opts.apps);
    for i in 0..opts.apps {
        let kind = kinds[i % 3];
        let word = APP_WORDS[i % APP_WORDS.len()];
        let suffix = APP_SUFFIXES[(i / APP_WORDS.len() + i) % APP_SUFFIXES.len()];
        let client_id = format!("{word}-{suffix}");
        let name = format!("{}{}", capitalise(word), capitalise(suffix));
        let n_types = rng.random_range(2..=4);
        let mut pool: Vec<&'static str> = TYPES.to_vec();
        let mut types = Vec::new();
        for _ in 0..n_types {
            let k = rng.random_range(0..pool.len());
            types.push(pool.remove(k));
        }
        let unused = (i % 4 == 1).then(|| pool.remove(rng.random_range(0..pool.len())));
        let ctx = if kind == AppKind::Backend {
            "system"
        } else {
            "patient"
        };
        let unapproved = (i % 5 == 2).then(|| {
            let t = pool.remove(rng.random_range(0..pool.len()));
            format!("{ctx}/{t}.rs")
        });
        let major = rng.random_range(1..6);
        let minor = rng.random_range(0..10);
        let mut versions = vec![(format!("{major}.{minor}.0"), 0, None)];
        if opts.days >= 2 {
            versions.push((format!("{major}.{minor}.1"), opts.days / 3, None));
        }
        if i % 6 == 4 && opts.days >= 2 {
            // A new major version that asks for one more scope.
            let t = pool.remove(rng.random_range(0..pool.len()));
            versions.push((
                format!("{}.0.0", major + 1),
                opts.days / 2,
                Some(format!("{ctx}/{t}.rs")),
            ));
        }
        let tenants: Vec<usize> = if i % 4 == 3 && opts.tenants > 1 {
            (0..opts.tenants).filter(|t| t % 2 == i % 2).collect()
        } else {
            (0..opts.tenants).collect()
        };
        apps.push(GenApp {
            client_id,
            name,
            kind,
            tenants,
            types,
            unused,
            unapproved,
            versions,
            stale_after_day: None,
            revoked_on_day: None,
            weight: match kind {
                AppKind::Clinician => 1.0,
                AppKind::Patient => 0.8,
                AppKind::Backend => 0.5,
            } * (0.5 + rng.random::<f64>()),
        });
    }
    // The last two apps: one goes stale, one is revoked (days permitting).
    if opts.days >= 3 {
        let n = apps.len();
        apps[n - 2].stale_after_day = Some(opts.days / 3);
        apps[n - 1].revoked_on_day = Some(opts.days / 2);
    }
    apps
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

fn major_minor(v: &str) -> String {
    v.rsplit_once('.').map_or(v, |(head, _)| head).to_string()
}

/// The resource type of a resource scope (`patient/Observation.rs`).
fn scope_type(scope: &str) -> Option<&str> {
    scope.split_once('/')?.1.split_once('.').map(|(t, _)| t)
}

fn uuid_like(rng: &mut StdRng) -> String {
    let a: u128 = rng.random();
    let h = format!("{a:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn iso(ts_ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ts_ms) * 1_000_000)
        .expect("generated times are in range")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formats")
}

fn day_string(ts_ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ts_ms) * 1_000_000)
        .expect("generated times are in range")
        .date()
        .to_string()
}

/// Today's date in UTC, the default last day.
pub fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

/// Relative paths of the files written, for a summary.
pub fn describe(out: &Path, summary: &Summary) -> String {
    format!(
        "{}: {} auth + {} access events, {} incidents, {} files, {} MB",
        out.display(),
        summary.auth_events,
        summary.access_events,
        summary.incidents,
        summary.files.len(),
        summary.bytes / 1_000_000
    )
}
