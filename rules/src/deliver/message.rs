//! What a notification says, and how it reads as email and as webhook JSON.
//!
//! Only the alert's PHI-free fields are copied ([`AlertNotice`]): rule, title,
//! severity, the group values as the rule produced them (app, tenant,
//! pseudonyms, token ids), counts, times, the detail text, the first
//! [`MAX_EVIDENCE_IN_MESSAGE`] evidence event ids and the status. The status
//! history (free text typed by people) never leaves scopewatch.
//!
//! # Webhook body
//!
//! One alert, `Content-Type: application/json`:
//!
//! ```json
//! {
//!   "id": "a1b2...",                     // alert id
//!   "rule": "refresh-token-replay",
//!   "title": "Refresh token replayed",
//!   "severity": "high",                  // low | medium | high | critical
//!   "status": "open",                    // open | acknowledged | resolved | false_positive
//!   "group": { "client_id": "medrec-companion", "tenant": "north" },
//!   "first_seen": "2026-11-23T10:00:00Z", // RFC 3339, UTC
//!   "last_seen": "2026-11-23T10:04:12Z",
//!   "count": 3,                          // events folded into the alert
//!   "detail": "refresh token used 3 times",
//!   "evidence": ["evt-1", "evt-2"],      // first 10 event ids
//!   "evidence_total": 3,                 // event ids the alert keeps
//!   "url": "https://scopewatch.example.org/alerts/a1b2...", // null without dashboard_url
//!   "text": "[scopewatch HIGH] Refresh token replayed: medrec-companion @ north"
//! }
//! ```
//!
//! `text` is a one-line summary, so chat tools that show a `text` field
//! (Slack, Mattermost, Rocket.Chat incoming webhooks) need no adapter.
//! A digest:
//!
//! ```json
//! { "digest": true, "text": "...", "period_start": "...", "period_end": "...",
//!   "alerts": [ { ...one object per alert as above, without "text"... } ] }
//! ```
//!
//! Every request also carries an `Idempotency-Key` header (stable per
//! notification, see the outbox), so a receiver can drop a repeat.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};

use crate::alert::{Alert, AlertStatus, Severity};

/// A message lists at most this many evidence event ids (the dashboard has
/// them all).
pub const MAX_EVIDENCE_IN_MESSAGE: usize = 10;

/// A digest message lists at most this many alerts one by one (and counts
/// the rest).
pub const MAX_ALERTS_IN_DIGEST: usize = 200;

/// The PHI-free part of an alert that a notification carries, copied when
/// it is queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertNotice {
    pub id: String,
    pub rule: String,
    pub title: String,
    pub severity: Severity,
    pub status: AlertStatus,
    pub group: BTreeMap<String, String>,
    /// RFC 3339, UTC.
    pub first_seen: String,
    pub last_seen: String,
    pub count: u64,
    pub detail: String,
    /// The first [`MAX_EVIDENCE_IN_MESSAGE`] event ids.
    pub evidence: Vec<String>,
    /// How many event ids the alert keeps.
    pub evidence_total: usize,
}

impl AlertNotice {
    pub fn from_alert(alert: &Alert) -> AlertNotice {
        AlertNotice {
            id: alert.id.clone(),
            rule: alert.rule.clone(),
            title: alert.title.clone(),
            severity: alert.severity,
            status: alert.status,
            group: alert.group.clone(),
            first_seen: alert.first_seen.to_string(),
            last_seen: alert.last_seen.to_string(),
            count: alert.count,
            detail: alert.detail.clone(),
            evidence: alert
                .evidence
                .iter()
                .take(MAX_EVIDENCE_IN_MESSAGE)
                .cloned()
                .collect(),
            evidence_total: alert.evidence.len(),
        }
    }

    /// The app, when the rule groups by it.
    pub fn app(&self) -> Option<&str> {
        self.group.get("client_id").map(String::as_str)
    }

    pub fn tenant(&self) -> Option<&str> {
        self.group.get("tenant").map(String::as_str)
    }

    /// `Refresh token replayed: medrec-companion @ north`.
    pub fn headline(&self) -> String {
        let mut s = one_line(&self.title);
        match (self.app(), self.tenant()) {
            (Some(a), Some(t)) => write!(s, ": {} @ {}", one_line(a), one_line(t)),
            (Some(a), None) => write!(s, ": {}", one_line(a)),
            (None, Some(t)) => write!(s, ": @ {}", one_line(t)),
            (None, None) => Ok(()),
        }
        .expect("writing to a String");
        s
    }
}

/// Characters kept as they are in the alert id of a link.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `<dashboard_url>/alerts/<id>`, or None without a dashboard URL.
pub fn alert_link(dashboard_url: Option<&str>, alert_id: &str) -> Option<String> {
    dashboard_url.map(|base| {
        format!(
            "{base}/alerts/{}",
            utf8_percent_encode(alert_id, PATH_SEGMENT)
        )
    })
}

/// Control characters (line breaks included) become spaces: a value must not
/// start a new header line or forge lines in a message.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

pub fn email_subject(n: &AlertNotice) -> String {
    format!(
        "[scopewatch {}] {}",
        n.severity.as_str().to_ascii_uppercase(),
        n.headline()
    )
}

pub fn email_text(n: &AlertNotice, link: Option<&str>) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "{} (rule {})", one_line(&n.title), one_line(&n.rule));
    let _ = writeln!(
        w,
        "Severity: {}    Status: {}",
        n.severity.as_str().to_ascii_uppercase(),
        n.status
    );
    let _ = writeln!(w);
    if let Some(a) = n.app() {
        let _ = writeln!(w, "App:         {}", one_line(a));
    }
    if let Some(t) = n.tenant() {
        let _ = writeln!(w, "Tenant:      {}", one_line(t));
    }
    for (k, v) in &n.group {
        if k != "client_id" && k != "tenant" {
            let _ = writeln!(w, "{:<12} {}", format!("{}:", one_line(k)), one_line(v));
        }
    }
    let _ = writeln!(w, "First seen:  {}", n.first_seen);
    let _ = writeln!(w, "Last seen:   {}", n.last_seen);
    let _ = writeln!(w, "Events:      {}", n.count);
    let _ = writeln!(w, "Detail:      {}", one_line(&n.detail));
    if !n.evidence.is_empty() {
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "Evidence (event ids, {} of {}):",
            n.evidence.len(),
            n.evidence_total
        );
        for e in &n.evidence {
            let _ = writeln!(w, "  {}", one_line(e));
        }
    }
    let _ = writeln!(w);
    match link {
        Some(l) => {
            let _ = writeln!(w, "Open in scopewatch: {l}");
        }
        None => {
            let _ = writeln!(w, "Alert id: {}", one_line(&n.id));
        }
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "-- ");
    let _ = writeln!(
        w,
        "Sent by scopewatch. Holds no PHI: people and patients appear as pseudonyms."
    );
    s
}

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn html_row(out: &mut String, label: &str, value: &str) {
    let _ = write!(
        out,
        "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
        html_escape(label),
        html_escape(value)
    );
}

pub fn email_html(n: &AlertNotice, link: Option<&str>) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!doctype html><html><body><h2>{}</h2><p>Rule <code>{}</code>, severity <b>{}</b>, status {}</p><table>",
        html_escape(&n.headline()),
        html_escape(&n.rule),
        html_escape(&n.severity.as_str().to_ascii_uppercase()),
        html_escape(n.status.as_str())
    );
    for (k, v) in &n.group {
        html_row(&mut s, k, v);
    }
    html_row(&mut s, "first seen", &n.first_seen);
    html_row(&mut s, "last seen", &n.last_seen);
    html_row(&mut s, "events", &n.count.to_string());
    html_row(&mut s, "detail", &n.detail);
    s.push_str("</table>");
    if !n.evidence.is_empty() {
        let _ = write!(
            s,
            "<p>Evidence (event ids, {} of {}):</p><ul>",
            n.evidence.len(),
            n.evidence_total
        );
        for e in &n.evidence {
            let _ = write!(s, "<li><code>{}</code></li>", html_escape(e));
        }
        s.push_str("</ul>");
    }
    if let Some(l) = link {
        let _ = write!(
            s,
            "<p><a href=\"{}\">Open in scopewatch</a></p>",
            html_escape(l)
        );
    }
    s.push_str("<p><small>Sent by scopewatch. Holds no PHI: people and patients appear as pseudonyms.</small></p></body></html>");
    s
}

/// What a digest covers.
#[derive(Debug, Clone, Copy)]
pub struct DigestPeriod<'a> {
    /// RFC 3339.
    pub start: &'a str,
    pub end: &'a str,
}

pub fn digest_subject(alerts: &[AlertNotice]) -> String {
    let worst = alerts
        .iter()
        .map(|a| a.severity)
        .max()
        .unwrap_or(Severity::Low);
    format!(
        "[scopewatch digest] {} alert{} (up to {})",
        alerts.len(),
        if alerts.len() == 1 { "" } else { "s" },
        worst.as_str()
    )
}

pub fn digest_text(
    alerts: &[AlertNotice],
    period: DigestPeriod<'_>,
    link: impl Fn(&str) -> Option<String>,
) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(
        w,
        "{} lower-severity alert{} raised from {} to {}:",
        alerts.len(),
        if alerts.len() == 1 { "" } else { "s" },
        period.start,
        period.end
    );
    let _ = writeln!(w);
    for n in alerts.iter().take(MAX_ALERTS_IN_DIGEST) {
        let _ = writeln!(
            w,
            "- [{}] {} (rule {}, {} event{}, {} .. {})",
            n.severity.as_str().to_ascii_uppercase(),
            n.headline(),
            one_line(&n.rule),
            n.count,
            if n.count == 1 { "" } else { "s" },
            n.first_seen,
            n.last_seen
        );
        let _ = writeln!(w, "  {}", one_line(&n.detail));
        match link(&n.id) {
            Some(l) => {
                let _ = writeln!(w, "  {l}");
            }
            None => {
                let _ = writeln!(w, "  alert id {}", one_line(&n.id));
            }
        }
    }
    if alerts.len() > MAX_ALERTS_IN_DIGEST {
        let _ = writeln!(
            w,
            "... and {} more: see the dashboard.",
            alerts.len() - MAX_ALERTS_IN_DIGEST
        );
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "-- ");
    let _ = writeln!(
        w,
        "Sent by scopewatch. Holds no PHI: people and patients appear as pseudonyms."
    );
    s
}

pub fn digest_html(
    alerts: &[AlertNotice],
    period: DigestPeriod<'_>,
    link: impl Fn(&str) -> Option<String>,
) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!doctype html><html><body><h2>{}</h2><p>From {} to {}</p><ul>",
        html_escape(&digest_subject(alerts)),
        html_escape(period.start),
        html_escape(period.end)
    );
    for n in alerts.iter().take(MAX_ALERTS_IN_DIGEST) {
        let head = format!(
            "[{}] {}",
            n.severity.as_str().to_ascii_uppercase(),
            n.headline()
        );
        let head = match link(&n.id) {
            Some(l) => format!("<a href=\"{}\">{}</a>", html_escape(&l), html_escape(&head)),
            None => html_escape(&head),
        };
        let _ = write!(
            s,
            "<li>{head}<br>rule <code>{}</code>, {} events, {} .. {}<br>{}</li>",
            html_escape(&n.rule),
            n.count,
            html_escape(&n.first_seen),
            html_escape(&n.last_seen),
            html_escape(&n.detail)
        );
    }
    s.push_str("</ul>");
    if alerts.len() > MAX_ALERTS_IN_DIGEST {
        let _ = write!(
            s,
            "<p>... and {} more: see the dashboard.</p>",
            alerts.len() - MAX_ALERTS_IN_DIGEST
        );
    }
    s.push_str("<p><small>Sent by scopewatch. Holds no PHI: people and patients appear as pseudonyms.</small></p></body></html>");
    s
}

fn alert_json(n: &AlertNotice, link: Option<String>) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::{json, Value};
    let mut m = serde_json::Map::new();
    m.insert("id".into(), json!(n.id));
    m.insert("rule".into(), json!(n.rule));
    m.insert("title".into(), json!(n.title));
    m.insert("severity".into(), json!(n.severity));
    m.insert("status".into(), json!(n.status));
    m.insert("group".into(), json!(n.group));
    m.insert("first_seen".into(), json!(n.first_seen));
    m.insert("last_seen".into(), json!(n.last_seen));
    m.insert("count".into(), json!(n.count));
    m.insert("detail".into(), json!(n.detail));
    m.insert("evidence".into(), json!(n.evidence));
    m.insert("evidence_total".into(), json!(n.evidence_total));
    m.insert("url".into(), link.map(Value::String).unwrap_or(Value::Null));
    m
}

/// The webhook body for one alert (see the module docs).
pub fn webhook_alert_body(n: &AlertNotice, link: Option<String>) -> serde_json::Value {
    let mut m = alert_json(n, link);
    m.insert("text".into(), serde_json::Value::String(email_subject(n)));
    serde_json::Value::Object(m)
}

/// The webhook body for a digest (see the module docs).
pub fn webhook_digest_body(
    alerts: &[AlertNotice],
    period: DigestPeriod<'_>,
    link: impl Fn(&str) -> Option<String>,
) -> serde_json::Value {
    serde_json::json!({
        "digest": true,
        "text": digest_subject(alerts),
        "period_start": period.start,
        "period_end": period.end,
        "alerts": alerts
            .iter()
            .map(|n| serde_json::Value::Object(alert_json(n, link(&n.id))))
            .collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::StatusChange;
    use scopewatch_model::events::Timestamp;

    fn alert() -> Alert {
        let mut group = BTreeMap::new();
        group.insert("client_id".to_string(), "medrec-companion".to_string());
        group.insert("tenant".to_string(), "north".to_string());
        group.insert("token_id".to_string(), "jti:4f2a".to_string());
        Alert {
            id: "a/1 b".into(),
            rule: "refresh-token-replay".into(),
            title: "Refresh token replayed".into(),
            severity: Severity::High,
            group,
            first_seen: Timestamp::parse_rfc3339("2026-11-23T10:00:00Z").unwrap(),
            last_seen: Timestamp::parse_rfc3339("2026-11-23T10:04:12Z").unwrap(),
            count: 25,
            evidence: (0..25).map(|i| format!("evt-{i}")).collect(),
            detail: "refresh token used 25 times <b>".into(),
            status: AlertStatus::Open,
            history: vec![StatusChange {
                at: Timestamp(0),
                by: "alice".into(),
                from: AlertStatus::Open,
                to: AlertStatus::Acknowledged,
                comment: Some("patient MRN-998877 called".into()),
            }],
        }
    }

    #[test]
    fn subject_and_link() {
        let n = AlertNotice::from_alert(&alert());
        assert_eq!(
            email_subject(&n),
            "[scopewatch HIGH] Refresh token replayed: medrec-companion @ north"
        );
        assert_eq!(
            alert_link(Some("http://h:8080"), &n.id).as_deref(),
            Some("http://h:8080/alerts/a%2F1%20b")
        );
        assert_eq!(alert_link(None, &n.id), None);
        let mut a = alert();
        a.group.clear();
        a.title = "Evil\r\nBcc: x@y.org".into();
        assert_eq!(
            email_subject(&AlertNotice::from_alert(&a)),
            "[scopewatch HIGH] Evil  Bcc: x@y.org"
        );
    }

    #[test]
    fn only_safe_fields_and_ten_evidence_ids() {
        let n = AlertNotice::from_alert(&alert());
        assert_eq!(n.evidence.len(), MAX_EVIDENCE_IN_MESSAGE);
        assert_eq!(n.evidence_total, 25);
        let text = email_text(&n, Some("http://h/alerts/x"));
        assert!(text.contains("App:         medrec-companion"), "{text}");
        assert!(text.contains("Tenant:      north"), "{text}");
        assert!(text.contains("token_id:    jti:4f2a"), "{text}");
        assert!(text.contains("First seen:  2026-11-23T10:00:00Z"), "{text}");
        assert!(text.contains("evt-9") && !text.contains("evt-10"), "{text}");
        assert!(text.contains("http://h/alerts/x"), "{text}");
        let html = email_html(&n, Some("http://h/alerts/x?a=1&b=2"));
        let body = webhook_alert_body(&n, None).to_string();
        for out in [&text, &html, &body] {
            assert!(
                !out.contains("MRN-998877") && !out.contains("alice"),
                "{out}"
            );
        }
        assert!(html.contains("used 25 times &lt;b&gt;"), "{html}");
        assert!(
            html.contains("href=\"http://h/alerts/x?a=1&amp;b=2\""),
            "{html}"
        );
    }

    #[test]
    fn webhook_bodies_have_the_documented_fields() {
        let n = AlertNotice::from_alert(&alert());
        let v = webhook_alert_body(&n, Some("http://h/alerts/1".into()));
        for k in [
            "id",
            "rule",
            "title",
            "severity",
            "group",
            "first_seen",
            "last_seen",
            "count",
            "detail",
            "evidence",
            "url",
            "status",
            "text",
        ] {
            assert!(v.get(k).is_some(), "missing {k} in {v}");
        }
        assert_eq!(v["severity"], "high");
        assert_eq!(v["status"], "open");
        assert_eq!(v["group"]["tenant"], "north");
        assert_eq!(v["evidence"].as_array().unwrap().len(), 10);
        let period = DigestPeriod {
            start: "2026-11-23T10:00:00Z",
            end: "2026-11-23T11:00:00Z",
        };
        let d = webhook_digest_body(&[n.clone(), n], period, |_| None);
        assert_eq!(d["digest"], true);
        assert_eq!(d["alerts"].as_array().unwrap().len(), 2);
        assert!(d["alerts"][0]["url"].is_null());
    }
}
