//! `scopewatch rules` (check, backtest) and `scopewatch alerts` (list,
//! status changes), and the streaming detector `scopewatch ingest` runs on
//! every commit. The rule engine itself is `scopewatch_rules`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use arrow_array::RecordBatch;
use clap::{Args, Subcommand, ValueEnum};
use scopewatch_ingest::generate::Incident;
use scopewatch_ingest::replay;
use scopewatch_model::config::Config;
use scopewatch_model::events::{AccessEvent, AuthEvent, Timestamp};
use scopewatch_model::registry::Registry;
use scopewatch_rules::alert::{Alert, AlertStatus};
use scopewatch_rules::config::Rules;
use scopewatch_rules::engine::Engine;
use scopewatch_rules::event::Event;
use scopewatch_rules::store::AlertStore;
use scopewatch_rules::stream::{alerts_dir, Detector};
use serde_json::json;

use crate::report::parse_date;

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate a rule file and list its rules
    Check {
        /// The rule file [default: `rules` from the config, else the built-in rules]
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Print the built-in rule file (a starting point for your own)
    Defaults,
    /// Replay the lake in time order through the rules and print what
    /// would have fired (nothing is stored or sent)
    Backtest(BacktestArgs),
}

#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// First day, inclusive (YYYY-MM-DD, UTC)
    #[arg(long, value_name = "DATE")]
    pub from: String,
    /// Last day, inclusive (YYYY-MM-DD, UTC)
    #[arg(long, value_name = "DATE")]
    pub to: String,
    /// The rule file [default: `rules` from the config, else the built-in rules]
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// The app registry (for the rules that need it) [default: from the config]
    #[arg(long, value_name = "FILE")]
    pub registry: Option<PathBuf>,
    /// Output: an aligned table, or one JSON object per alert and a summary
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// A `ground-truth.json` written by `scopewatch generate`: also print
    /// precision and recall per rule, and false alerts per day
    #[arg(long, value_name = "FILE")]
    pub truth: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// List the alerts streaming detection raised
    List {
        /// Only alerts with this status (open, acknowledged, resolved, false_positive)
        #[arg(long)]
        status: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// Change an alert's status; the change and its author are kept in its history
    SetStatus {
        /// The alert id (`al-...`)
        id: String,
        /// open, acknowledged, resolved or false_positive
        status: String,
        /// Who makes the change
        #[arg(long)]
        by: String,
        /// Why
        #[arg(long)]
        comment: Option<String>,
    },
}

/// The rules the config names, or the built-in ones.
pub fn load_rules(config: &Config, file: Option<&Path>) -> Result<Rules> {
    match file.or(config.rules.as_deref()) {
        Some(path) => Ok(Rules::load(path)?),
        None => Ok(Rules::builtin()),
    }
}

/// The registry, when one is configured (rules that need it see nothing without).
pub fn load_registry(config: &Config, file: Option<&Path>) -> Result<Option<Registry>> {
    match file.or(config.registry.as_deref()) {
        Some(path) => Ok(Some(Registry::load(path).with_context(|| {
            format!(
                "the app registry {} is needed by the rules on app status and approved scopes",
                path.display()
            )
        })?)),
        None => Ok(None),
    }
}

pub fn run_rules(config: &Config, command: RulesCommand) -> Result<ExitCode> {
    match command {
        RulesCommand::Check { file } => {
            let rules = load_rules(config, file.as_deref())?;
            for r in &rules.rules {
                println!(
                    "{}",
                    json!({"id": r.id, "type": r.kind.name(), "severity": r.severity, "title": r.title,
                           "group_by": r.group_by, "destinations": r.destinations})
                );
            }
            eprintln!("{}: {} rules, valid", rules.origin, rules.rules.len());
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::Defaults => {
            print!("{}", scopewatch_rules::config::DEFAULT_RULES);
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::Backtest(args) => backtest(config, args),
    }
}

/// Events of one day of the lake, in the order rules judge them.
pub fn events_of_day(data_dir: &Path, day: &str) -> Result<Vec<Event>> {
    let (auth, access) = replay::read_day(data_dir, day)?;
    let mut events: Vec<Event> = auth
        .into_iter()
        .map(Event::Auth)
        .chain(access.into_iter().map(Event::Access))
        .collect();
    events.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    Ok(events)
}

fn backtest(config: &Config, args: BacktestArgs) -> Result<ExitCode> {
    let from = parse_date("--from", &args.from)?;
    let to = parse_date("--to", &args.to)?;
    if from > to {
        bail!("--from {from} is after --to {to}: give the earlier day as --from");
    }
    let rules = Arc::new(load_rules(config, args.rules.as_deref())?);
    let registry = load_registry(config, args.registry.as_deref())?.map(Arc::new);
    let started = std::time::Instant::now();
    let mut engine = Engine::new(Arc::clone(&rules), registry);
    let mut store = AlertStore::in_memory();
    let days: Vec<String> = replay::days(&config.data_dir)?
        .into_iter()
        .filter(|d| {
            d.as_str() >= from.to_string().as_str() && d.as_str() <= to.to_string().as_str()
        })
        .collect();
    if days.is_empty() {
        bail!(
            "the lake under {} holds no events from {from} to {to}; ingest logs first, or check --data",
            config.data_dir.display()
        );
    }
    for day in &days {
        let events = events_of_day(&config.data_dir, day)?;
        engine.judge_into(&events, &mut store);
    }
    let mut alerts: Vec<&Alert> = store.alerts().collect();
    alerts.sort_by(|a, b| (a.first_seen, &a.rule, &a.id).cmp(&(b.first_seen, &b.rule, &b.id)));
    let seconds = started.elapsed().as_secs_f64();
    let scores = match &args.truth {
        Some(path) => Some(score(&rules, &alerts, path, days.len())?),
        None => None,
    };
    match args.format {
        OutputFormat::Json => {
            for a in &alerts {
                println!("{}", serde_json::to_string(a)?);
            }
            println!(
                "{}",
                json!({"summary": {"days": days.len(), "events": engine.judged, "alerts": alerts.len(),
                        "seconds": (seconds * 1000.0).round() / 1000.0, "scores": scores}})
            );
        }
        OutputFormat::Table => {
            print_alert_table(&alerts);
            println!(
                "\n{} alerts from {} events over {} days in {:.2} s",
                alerts.len(),
                engine.judged,
                days.len(),
                seconds
            );
            if let Some(s) = &scores {
                print_scores(s);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn group_text(a: &Alert) -> String {
    a.group
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_alert_table(alerts: &[&Alert]) {
    let mut table = comfy_table::Table::new();
    table.load_style(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header(vec![
        "first seen",
        "last seen",
        "severity",
        "rule",
        "group",
        "count",
        "status",
        "id",
    ]);
    for a in alerts {
        table.add_row(vec![
            a.first_seen.to_string(),
            a.last_seen.to_string(),
            a.severity.to_string(),
            a.rule.clone(),
            group_text(a),
            a.count.to_string(),
            a.status.to_string(),
            a.id.clone(),
        ]);
    }
    println!("{table}");
}

#[derive(Debug, serde::Deserialize)]
struct Truth {
    incidents: Vec<Incident>,
}

/// The rule meant to catch each kind of injected incident.
const RULE_OF_KIND: &[(&str, &str)] = &[
    ("refresh_token_replay", "refresh-token-replay"),
    ("token_many_ips", "token-many-ips"),
    ("token_after_expiry", "token-after-expiry"),
    ("token_after_revocation", "token-after-revocation"),
    ("cross_tenant_token", "cross-tenant-token"),
    ("bulk_patient_enumeration", "bulk-patient-enumeration"),
    ("denied_burst", "denied-burst"),
    ("request_spike", "request-spike"),
    ("unapproved_scope_granted", "unapproved-scope-granted"),
    ("revoked_app_calls", "revoked-app-calls"),
    ("new_scope_requested", "new-scope-requested"),
];

/// Kinds whose incidents are about tokens (100% recall expected).
const TOKEN_KINDS: &[&str] = &[
    "refresh_token_replay",
    "token_many_ips",
    "token_after_expiry",
    "token_after_revocation",
    "cross_tenant_token",
];

#[derive(Debug, serde::Serialize)]
pub struct RuleScore {
    rule: String,
    incidents: usize,
    found: usize,
    recall: Option<f64>,
    alerts: usize,
    true_alerts: usize,
    precision: Option<f64>,
}

#[derive(Debug, serde::Serialize)]
pub struct Scores {
    rules: Vec<RuleScore>,
    /// Alerts that match no injected incident.
    false_alerts: usize,
    false_alerts_per_day: f64,
    token_rules_recall: Option<f64>,
    missed: Vec<String>,
}

fn parse_ts(s: &str) -> Result<Timestamp> {
    Timestamp::parse_rfc3339(s).with_context(|| format!("ground truth: {s:?} is not RFC 3339"))
}

/// Whether `alert` is evidence of `incident`: same app, tenant (when the
/// alert has one), token (when both name one) and overlapping time.
fn matches(alert: &Alert, incident: &Incident, first: Timestamp, last: Timestamp) -> bool {
    let g = |k: &str| alert.group.get(k).map(String::as_str);
    if g("client_id").is_some_and(|c| c != incident.client_id) {
        return false;
    }
    if g("tenant").is_some_and(|t| !incident.tenant.is_empty() && t != incident.tenant) {
        return false;
    }
    let token = g("token_id").or(g("parent_token_id"));
    if let Some(t) = token {
        if !incident.token_ids.is_empty() && !incident.token_ids.iter().any(|i| i == t) {
            return false;
        }
    }
    alert.first_seen <= last && alert.last_seen >= first
}

fn score(rules: &Rules, alerts: &[&Alert], truth_path: &Path, days: usize) -> Result<Scores> {
    let text = std::fs::read_to_string(truth_path)
        .with_context(|| format!("reading --truth {}", truth_path.display()))?;
    let truth: Truth = serde_json::from_str(&text).with_context(|| {
        format!(
            "--truth {}: not a ground-truth.json of `scopewatch generate`",
            truth_path.display()
        )
    })?;
    let incidents = truth.incidents;
    let mut true_alert = vec![false; alerts.len()];
    let mut per_rule: BTreeMap<&str, RuleScore> = BTreeMap::new();
    let mut missed = Vec::new();
    for r in &rules.rules {
        per_rule.insert(
            &r.id,
            RuleScore {
                rule: r.id.clone(),
                incidents: 0,
                found: 0,
                recall: None,
                alerts: alerts.iter().filter(|a| a.rule == r.id).count(),
                true_alerts: 0,
                precision: None,
            },
        );
    }
    let (mut token_incidents, mut token_found) = (0, 0);
    for inc in &incidents {
        let Some((_, rule)) = RULE_OF_KIND.iter().find(|(k, _)| *k == inc.kind) else {
            continue;
        };
        let (first, last) = (parse_ts(&inc.first_ts)?, parse_ts(&inc.last_ts)?);
        let mut found = false;
        for (i, a) in alerts.iter().enumerate() {
            // Another rule's alert on injected traffic is a true alert too
            // (a spike alert on an enumeration is right); recall counts the
            // rule meant for the kind.
            let relevant = a.rule == *rule || inc.events > 0;
            if relevant && matches(a, inc, first, last) {
                true_alert[i] = true;
                found |= a.rule == *rule;
            }
        }
        if let Some(s) = per_rule.get_mut(rule) {
            s.incidents += 1;
            s.found += usize::from(found);
        }
        if TOKEN_KINDS.contains(&inc.kind.as_ref()) {
            token_incidents += 1;
            token_found += usize::from(found);
        }
        if !found {
            missed.push(format!(
                "{} {} @ {} {}..{}",
                inc.kind, inc.client_id, inc.tenant, inc.first_ts, inc.last_ts
            ));
        }
    }
    for (a, t) in alerts.iter().zip(&true_alert) {
        if let Some(s) = per_rule.get_mut(a.rule.as_str()) {
            s.true_alerts += usize::from(*t);
        }
    }
    let ratio =
        |n: usize, d: usize| (d > 0).then(|| (n as f64 / d as f64 * 1000.0).round() / 1000.0);
    for s in per_rule.values_mut() {
        s.recall = ratio(s.found, s.incidents);
        s.precision = ratio(s.true_alerts, s.alerts);
    }
    let false_alerts = true_alert.iter().filter(|t| !**t).count();
    Ok(Scores {
        rules: per_rule.into_values().collect(),
        false_alerts,
        false_alerts_per_day: (false_alerts as f64 / days.max(1) as f64 * 100.0).round() / 100.0,
        token_rules_recall: ratio(token_found, token_incidents),
        missed,
    })
}

fn print_scores(s: &Scores) {
    let mut table = comfy_table::Table::new();
    table.load_style(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header(vec![
        "rule",
        "incidents",
        "found",
        "recall",
        "alerts",
        "true",
        "precision",
    ]);
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    for r in &s.rules {
        table.add_row(vec![
            r.rule.clone(),
            r.incidents.to_string(),
            r.found.to_string(),
            f(r.recall),
            r.alerts.to_string(),
            r.true_alerts.to_string(),
            f(r.precision),
        ]);
    }
    println!("\n{table}");
    println!(
        "token rules recall: {}; false alerts: {} ({} per day)",
        f(s.token_rules_recall),
        s.false_alerts,
        s.false_alerts_per_day
    );
    for m in &s.missed {
        println!("missed: {m}");
    }
}

pub fn run_alerts(config: &Config, command: AlertsCommand) -> Result<ExitCode> {
    let path = alerts_dir(&config.data_dir).join("alerts.jsonl");
    let mut store = AlertStore::open(&path)?;
    match command {
        AlertsCommand::List { status, format } => {
            let status = status
                .map(|s| {
                    AlertStatus::parse(&s).with_context(|| {
                        format!(
                            "--status {s:?}: use open, acknowledged, resolved or false_positive"
                        )
                    })
                })
                .transpose()?;
            let mut alerts: Vec<&Alert> = store
                .alerts()
                .filter(|a| status.is_none_or(|s| a.status == s))
                .collect();
            alerts.sort_by_key(|a| a.first_seen);
            match format {
                OutputFormat::Json => {
                    for a in alerts {
                        println!("{}", serde_json::to_string(a)?);
                    }
                }
                OutputFormat::Table => print_alert_table(&alerts),
            }
        }
        AlertsCommand::SetStatus {
            id,
            status,
            by,
            comment,
        } => {
            let to = AlertStatus::parse(&status).with_context(|| {
                format!("{status:?}: use open, acknowledged, resolved or false_positive")
            })?;
            let now = Timestamp::from_offset_datetime(time::OffsetDateTime::now_utc());
            let alert = store.set_status(&id, to, &by, comment, now)?;
            println!("{}", serde_json::to_string(alert)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What the ingest thread hands the detector after each commit.
pub struct Committed {
    pub batches: Vec<(&'static str, RecordBatch)>,
    pub caught_up: bool,
}

fn events_of(batches: Vec<(&'static str, RecordBatch)>) -> Result<Vec<Event>> {
    let mut out = Vec::new();
    for (stream, batch) in batches {
        if stream == AuthEvent::STREAM {
            out.extend(AuthEvent::from_batch(&batch)?.into_iter().map(Event::Auth));
        } else {
            out.extend(
                AccessEvent::from_batch(&batch)?
                    .into_iter()
                    .map(Event::Access),
            );
        }
    }
    Ok(out)
}

/// Judges what the lake holds after the detector's last judged event
/// (commits it did not see before a stop or crash).
pub fn catch_up(
    detector: &mut Detector,
    data_dir: &Path,
    notify: &mut dyn FnMut(&Alert, &scopewatch_rules::config::Rule) -> Result<(), String>,
) -> Result<usize> {
    let after = detector.resume_after();
    let first_day = after.as_ref().map(|(t, _)| t.date_string());
    let mut n = 0;
    for day in replay::days(data_dir)? {
        if first_day.as_ref().is_some_and(|f| day < *f) {
            continue;
        }
        let events: Vec<Event> = events_of_day(data_dir, &day)?
            .into_iter()
            .filter(|e| {
                after
                    .as_ref()
                    .is_none_or(|(t, id)| e.order_key() > (*t, id.as_str()))
            })
            .collect();
        n += events.len();
        // Days come in order and each is sorted: judge it at once rather
        // than hold the whole backlog.
        detector.offer(events, true, notify)?;
    }
    Ok(n)
}

/// Runs streaming detection on its own thread: takes commits from `rx`
/// until the sender is dropped.
pub fn spawn_detector(
    mut detector: Detector,
    rx: std::sync::mpsc::Receiver<Committed>,
    mut notify: scopewatch_rules::stream::Notifier,
) -> std::thread::JoinHandle<Result<Detector>> {
    std::thread::Builder::new()
        .name("rules".into())
        .spawn(move || {
            while let Ok(c) = rx.recv() {
                let events = events_of(c.batches)?;
                let (judged, late) = (detector.engine().judged, detector.engine().late);
                let raised = detector.offer(events, c.caught_up, notify.as_mut())?;
                metrics::counter!("scopewatch_rules_events_judged_total")
                    .increment(detector.engine().judged - judged);
                metrics::counter!("scopewatch_rules_late_events_total")
                    .increment(detector.engine().late - late);
                metrics::gauge!("scopewatch_rules_state_entries")
                    .set(detector.engine().state_size() as f64);
                for a in raised {
                    metrics::counter!("scopewatch_alerts_raised_total", "rule" => a.rule.clone(), "severity" => a.severity.as_str())
                        .increment(1);
                    tracing::warn!(
                        alert = %a.id, rule = %a.rule, severity = %a.severity,
                        group = %group_text(&a), "alert raised: {}", a.title
                    );
                }
            }
            Ok(detector)
        })
        .expect("spawning the rules thread")
}
