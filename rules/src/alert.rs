//! Alerts: what a rule raised, folded over its dedup window, with a status
//! that people change (and the history of who changed it).

use std::collections::BTreeMap;

use scopewatch_model::events::Timestamp;
use serde::{Deserialize, Serialize};

/// How urgent an alert is; also what routing and digests key on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: &'static [Severity] = &[
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.iter().copied().find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Open,
    Acknowledged,
    Resolved,
    FalsePositive,
}

impl AlertStatus {
    pub const ALL: &'static [AlertStatus] = &[
        AlertStatus::Open,
        AlertStatus::Acknowledged,
        AlertStatus::Resolved,
        AlertStatus::FalsePositive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Open => "open",
            AlertStatus::Acknowledged => "acknowledged",
            AlertStatus::Resolved => "resolved",
            AlertStatus::FalsePositive => "false_positive",
        }
    }

    pub fn parse(s: &str) -> Option<AlertStatus> {
        AlertStatus::ALL.iter().copied().find(|v| v.as_str() == s)
    }

    /// Open and acknowledged alerts still take repeats of their rule and
    /// group; resolved ones and false positives do not.
    pub fn is_active(self) -> bool {
        matches!(self, AlertStatus::Open | AlertStatus::Acknowledged)
    }
}

impl std::fmt::Display for AlertStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Timestamps as RFC 3339 text in alerts (files, JSON output, webhooks).
mod rfc3339 {
    use scopewatch_model::events::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(t)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time")))
    }
}

/// One change of an alert's status, by whom and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    #[serde(with = "rfc3339")]
    pub at: Timestamp,
    /// The user (or `scopewatch` for automatic changes).
    pub by: String,
    pub from: AlertStatus,
    pub to: AlertStatus,
    pub comment: Option<String>,
}

/// At most this many evidence event ids are kept per alert (the count goes
/// on beyond it).
pub const MAX_EVIDENCE: usize = 1000;

/// An alert: a rule fired for a group. Holds no PHI and no tokens: the
/// group values are app and tenant names, pseudonymous ids and token ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable: the same rule, group and first evidence give the same id, in
    /// streaming and in backtest.
    pub id: String,
    pub rule: String,
    /// The rule's one-line title, e.g. "Refresh token replayed".
    pub title: String,
    pub severity: Severity,
    /// The group-by fields of the rule and their values, e.g.
    /// `client_id = cardio-insight`, `tenant = north`, `token_id = jti:..`.
    pub group: BTreeMap<String, String>,
    /// Event time of the first and last evidence.
    #[serde(with = "rfc3339")]
    pub first_seen: Timestamp,
    #[serde(with = "rfc3339")]
    pub last_seen: Timestamp,
    /// Matching events folded into this alert (may exceed the evidence kept).
    pub count: u64,
    /// Ids of the events that are its evidence (the lake's `event_id`), in
    /// event-time order, at most [`MAX_EVIDENCE`].
    pub evidence: Vec<String>,
    /// What the rule measured, in words without PHI, e.g. "12 distinct ip
    /// within 600 s (threshold 5)".
    pub detail: String,
    pub status: AlertStatus,
    pub history: Vec<StatusChange>,
}
