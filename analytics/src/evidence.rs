//! Evidence for people working an alert: the events an alert names (by
//! `event_id`, from both streams) and the timeline of one token (issued,
//! refreshed, used, revoked). Values are what the lake holds: pseudonyms
//! and token ids, never PHI or tokens.
//!
//! Ids and the token id are bound as parameters (a `VARCHAR[]` list for the
//! ids). Both queries take an optional time window, which also restricts the
//! `date` partitions read, so a look-up on a large lake reads a few days.

use duckdb::params;
use duckdb::types::Value;
use serde::Serialize;
use time::macros::format_description;
use time::OffsetDateTime;

use crate::matrix::iso;
use crate::{duck, AnalyticsError, Lake};

const EVENTS_SQL: &str = include_str!("../sql/evidence_events.sql");
const TIMELINE_SQL: &str = include_str!("../sql/evidence_timeline.sql");

/// Which part of the lake a look-up reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventScope {
    /// Only events with `from_us <= ts < to_us` (µs since the epoch); the
    /// `date` partitions outside it (with a day's margin) are not read.
    /// `None`: the whole lake.
    pub window: Option<(i64, i64)>,
    /// Only events of these tenants; `None`: every tenant.
    pub tenants: Option<Vec<String>>,
}

/// One event of either stream, with the columns an analyst needs; a column
/// the stream lacks is `None`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvidenceEvent {
    /// `auth` or `access`.
    pub stream: String,
    pub event_id: String,
    /// RFC 3339, UTC, to the microsecond.
    pub ts: String,
    #[serde(skip)]
    pub ts_us: i64,
    pub tenant: String,
    pub env: String,
    pub client_id: Option<String>,
    pub app_version: Option<String>,
    /// Pseudonym.
    pub user: Option<String>,
    /// Pseudonym.
    pub patient: Option<String>,
    /// Auth events: authorize, token, refresh, revoke, ...
    pub kind: Option<String>,
    /// Auth: success / failure; access: allowed / denied / error.
    pub outcome: String,
    pub error: Option<String>,
    pub grant_type: Option<String>,
    pub scopes_requested: Option<Vec<String>>,
    pub scopes_granted: Option<Vec<String>>,
    pub token_id: Option<String>,
    pub refresh_token_id: Option<String>,
    pub parent_token_id: Option<String>,
    /// RFC 3339.
    pub expires_at: Option<String>,
    /// Access events: the FHIR call.
    pub method: Option<String>,
    /// Ids pseudonymised.
    pub path: Option<String>,
    pub interaction: Option<String>,
    pub resource_type: Option<String>,
    /// The permission the call needed, e.g. `patient/Observation.r`.
    pub required: Option<String>,
    pub status: Option<i32>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The configured source that delivered it.
    pub source: String,
}

impl EvidenceEvent {
    /// The CSV header matching [`EvidenceEvent::csv_values`].
    pub const CSV_COLUMNS: &'static [&'static str] = &[
        "stream",
        "event_id",
        "ts",
        "tenant",
        "env",
        "client_id",
        "app_version",
        "user",
        "patient",
        "kind",
        "outcome",
        "error",
        "grant_type",
        "scopes_requested",
        "scopes_granted",
        "token_id",
        "refresh_token_id",
        "parent_token_id",
        "expires_at",
        "method",
        "path",
        "interaction",
        "resource_type",
        "required",
        "status",
        "ip",
        "user_agent",
        "source",
    ];

    /// The values in [`EvidenceEvent::CSV_COLUMNS`] order, unquoted; a
    /// missing value is empty, scope lists are space-separated (as OAuth
    /// writes them).
    pub fn csv_values(&self) -> Vec<String> {
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        let l = |v: &Option<Vec<String>>| v.as_ref().map(|s| s.join(" ")).unwrap_or_default();
        vec![
            self.stream.clone(),
            self.event_id.clone(),
            self.ts.clone(),
            self.tenant.clone(),
            self.env.clone(),
            o(&self.client_id),
            o(&self.app_version),
            o(&self.user),
            o(&self.patient),
            o(&self.kind),
            self.outcome.clone(),
            o(&self.error),
            o(&self.grant_type),
            l(&self.scopes_requested),
            l(&self.scopes_granted),
            o(&self.token_id),
            o(&self.refresh_token_id),
            o(&self.parent_token_id),
            o(&self.expires_at),
            o(&self.method),
            o(&self.path),
            o(&self.interaction),
            o(&self.resource_type),
            o(&self.required),
            self.status.map(|s| s.to_string()).unwrap_or_default(),
            o(&self.ip),
            o(&self.user_agent),
            self.source.clone(),
        ]
    }

    /// The token ids this event names (access token, refresh token issued
    /// or consumed), without repeats.
    pub fn token_ids(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for t in [
            &self.token_id,
            &self.refresh_token_id,
            &self.parent_token_id,
        ]
        .into_iter()
        .flatten()
        {
            if !t.is_empty() && !out.contains(&t.as_str()) {
                out.push(t);
            }
        }
        out
    }
}

/// One event in a token's life.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    /// `auth` or `access`.
    pub stream: String,
    pub event_id: String,
    /// RFC 3339, UTC.
    pub ts: String,
    #[serde(skip)]
    pub ts_us: i64,
    pub tenant: String,
    pub client_id: Option<String>,
    /// The auth event's kind, or `call` for a FHIR call.
    pub kind: String,
    pub outcome: String,
    pub error: Option<String>,
    /// Where the token appears: `token_id` (the access token issued, acted
    /// on or used), `refresh_token_id` (the refresh token issued) or
    /// `parent_token_id` (the refresh token redeemed).
    pub role: String,
    /// In words: "access token issued", "refresh token redeemed", "used", ...
    pub what: String,
    pub token_id: Option<String>,
    pub refresh_token_id: Option<String>,
    pub parent_token_id: Option<String>,
    pub scopes_granted: Option<Vec<String>>,
    pub expires_at: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub status: Option<i32>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A token's timeline, oldest first, and how much was left out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenTimeline {
    pub token_id: String,
    pub entries: Vec<TimelineEntry>,
    /// Events found in all (within the scope asked for).
    pub total: u64,
    /// `total` minus the entries returned (the limit cut them).
    pub left_out: u64,
}

/// What an auth event did to the token, in words.
fn what(kind: &str, role: &str, outcome: &str) -> String {
    let base = match (kind, role) {
        ("call", _) => "used".to_string(),
        ("refresh", "parent_token_id") => "refresh token redeemed".into(),
        ("refresh", "refresh_token_id") | ("token", "refresh_token_id") => {
            "refresh token issued".into()
        }
        ("refresh", _) => "access token issued by refresh".into(),
        ("token" | "client_credentials" | "token_exchange", _) => "access token issued".into(),
        ("revoke", _) => "revoked".into(),
        ("introspect", _) => "introspected".into(),
        (other, _) => other.replace('_', " "),
    };
    if outcome == "failure" {
        format!("{base} (failed)")
    } else {
        base
    }
}

/// A TIMESTAMPTZ literal for a bound parameter, µs precision, clamped to
/// years 1..=9999.
fn ts_param(us: i64) -> String {
    const MIN: &str = "0001-01-01 00:00:00+00";
    const MAX: &str = "9999-12-31 23:59:59.999999+00";
    let Ok(t) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000) else {
        return if us < 0 { MIN } else { MAX }.to_string();
    };
    if t.year() < 1 {
        return MIN.into();
    }
    if t.year() > 9999 {
        return MAX.into();
    }
    t.format(format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:6]+00"
    ))
    .unwrap_or_else(|_| MIN.into())
}

/// The UTC day of `us` moved by `days`, as a DATE literal (clamped).
fn date_param(us: i64, days: i64) -> String {
    let day = OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .ok()
        .map(|t| t.date())
        .and_then(|d| d.checked_add(time::Duration::days(days)));
    match day {
        Some(d) if (1..=9999).contains(&d.year()) => d.to_string(),
        _ if us < 0 || days < 0 => "0001-01-01".into(),
        _ => "9999-12-31".into(),
    }
}

/// The bound values of a scope: ts from, ts to, date from, date to, all
/// tenants, tenant list.
fn scope_params(scope: &EventScope) -> (String, String, String, String, bool, Value) {
    let (from_ts, to_ts, from_day, to_day) = match scope.window {
        Some((from, to)) => (
            ts_param(from),
            ts_param(to),
            // A day's margin: a partition is the UTC day of `ts`, but a
            // writer's clock at midnight should not hide an event.
            date_param(from, -1),
            date_param(to, 1),
        ),
        None => (
            "0001-01-01 00:00:00+00".into(),
            "9999-12-31 23:59:59.999999+00".into(),
            "0001-01-01".into(),
            "9999-12-31".into(),
        ),
    };
    let (all, tenants) = match &scope.tenants {
        None => (true, Value::List(Vec::new())),
        Some(t) => (
            false,
            Value::List(t.iter().map(|t| Value::Text(t.clone())).collect()),
        ),
    };
    (from_ts, to_ts, from_day, to_day, all, tenants)
}

fn strings(v: Value) -> Option<Vec<String>> {
    match v {
        Value::List(items) | Value::Array(items) => Some(
            items
                .into_iter()
                .filter_map(|i| match i {
                    Value::Text(s) => Some(s),
                    _ => None,
                })
                .collect(),
        ),
        _ => None,
    }
}

impl Lake {
    /// The events with these ids (from either stream) within `scope`,
    /// oldest first. An id the lake does not hold (or outside the scope) is
    /// simply missing from the result.
    pub fn events_by_id(
        &self,
        ids: &[String],
        scope: &EventScope,
    ) -> Result<Vec<EvidenceEvent>, AnalyticsError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let _guard = self.read_guard()?;
        let list = Value::List(ids.iter().map(|i| Value::Text(i.clone())).collect());
        let (from_ts, to_ts, from_day, to_day, all, tenants) = scope_params(scope);
        let mut stmt = self
            .connection()
            .prepare(EVENTS_SQL)
            .map_err(duck("preparing evidence_events.sql"))?;
        let rows = stmt
            .query_map(
                params![list, from_ts, to_ts, from_day, to_day, all, tenants],
                |r| {
                    let ts_us: i64 = r.get(2)?;
                    let expires: Option<i64> = r.get(18)?;
                    Ok(EvidenceEvent {
                        stream: r.get(0)?,
                        event_id: r.get(1)?,
                        ts: iso(ts_us),
                        ts_us,
                        tenant: r.get(3)?,
                        env: r.get(4)?,
                        client_id: r.get(5)?,
                        app_version: r.get(6)?,
                        user: r.get(7)?,
                        patient: r.get(8)?,
                        kind: r.get(9)?,
                        outcome: r.get(10)?,
                        error: r.get(11)?,
                        grant_type: r.get(12)?,
                        scopes_requested: strings(r.get(13)?),
                        scopes_granted: strings(r.get(14)?),
                        token_id: r.get(15)?,
                        refresh_token_id: r.get(16)?,
                        parent_token_id: r.get(17)?,
                        expires_at: expires.map(iso),
                        method: r.get(19)?,
                        path: r.get(20)?,
                        interaction: r.get(21)?,
                        resource_type: r.get(22)?,
                        required: r.get(23)?,
                        status: r.get(24)?,
                        ip: r.get(25)?,
                        user_agent: r.get(26)?,
                        source: r.get(27)?,
                    })
                },
            )
            .map_err(duck("running evidence_events.sql"))?;
        rows.collect::<Result<_, _>>()
            .map_err(duck("reading evidence_events.sql"))
    }

    /// The life of one token within `scope`: where it was issued (as
    /// access or refresh token), redeemed, introspected, revoked and used,
    /// oldest first, at most `limit` entries (`left_out` says how many more
    /// there were).
    pub fn token_timeline(
        &self,
        token_id: &str,
        scope: &EventScope,
        limit: usize,
    ) -> Result<TokenTimeline, AnalyticsError> {
        let _guard = self.read_guard()?;
        let (from_ts, to_ts, from_day, to_day, all, tenants) = scope_params(scope);
        let limit_param = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self
            .connection()
            .prepare(TIMELINE_SQL)
            .map_err(duck("preparing evidence_timeline.sql"))?;
        let mut total: u64 = 0;
        let rows = stmt
            .query_map(
                params![
                    token_id,
                    from_ts,
                    to_ts,
                    from_day,
                    to_day,
                    all,
                    tenants,
                    limit_param
                ],
                |r| {
                    let ts_us: i64 = r.get(2)?;
                    let expires: Option<i64> = r.get(13)?;
                    let kind: String = r.get(5)?;
                    let outcome: String = r.get(6)?;
                    let role: String = r.get(8)?;
                    let total: i64 = r.get(19)?;
                    Ok((
                        TimelineEntry {
                            stream: r.get(0)?,
                            event_id: r.get(1)?,
                            ts: iso(ts_us),
                            ts_us,
                            tenant: r.get(3)?,
                            client_id: r.get(4)?,
                            what: what(&kind, &role, &outcome),
                            kind,
                            outcome,
                            error: r.get(7)?,
                            role,
                            token_id: r.get(9)?,
                            refresh_token_id: r.get(10)?,
                            parent_token_id: r.get(11)?,
                            scopes_granted: strings(r.get(12)?),
                            expires_at: expires.map(iso),
                            method: r.get(14)?,
                            path: r.get(15)?,
                            status: r.get(16)?,
                            ip: r.get(17)?,
                            user_agent: r.get(18)?,
                        },
                        total.max(0) as u64,
                    ))
                },
            )
            .map_err(duck("running evidence_timeline.sql"))?;
        let mut entries = Vec::new();
        for row in rows {
            let (entry, n) = row.map_err(duck("reading evidence_timeline.sql"))?;
            total = n;
            entries.push(entry);
        }
        let returned = entries.len() as u64;
        Ok(TokenTimeline {
            token_id: token_id.to_string(),
            entries,
            total: total.max(returned),
            left_out: total.saturating_sub(returned),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::path::Path;

    use parquet::arrow::ArrowWriter;
    use scopewatch_model::events::{
        AccessBatchBuilder, AccessEvent, AccessOutcome, AuthBatchBuilder, AuthEvent, AuthKind,
        AuthOutcome, Env, Timestamp,
    };

    use super::*;
    use crate::EngineLimits;

    fn auth(id: &str, ts: &str, tenant: &str, kind: AuthKind) -> AuthEvent {
        AuthEvent {
            event_id: id.into(),
            ts: Timestamp::parse_rfc3339(ts).unwrap(),
            tenant: tenant.into(),
            env: Env::Prod,
            kind,
            outcome: AuthOutcome::Success,
            error: None,
            client_id: Some("cardio".into()),
            app_version: None,
            user: Some("u_1".into()),
            session_id: None,
            patient: Some("p_1".into()),
            encounter: None,
            scopes_requested: None,
            scopes_granted: Some(vec!["launch".into(), "patient/Observation.rs".into()]),
            grant_type: None,
            token_id: None,
            refresh_token_id: None,
            parent_token_id: None,
            expires_at: None,
            ip: Some("10.0.0.1".into()),
            user_agent: Some("ua \"x\" <y>".into()),
            source: "kc".into(),
            source_file: None,
            source_offset: None,
        }
    }

    fn access(id: &str, ts: &str, tenant: &str, token: &str) -> AccessEvent {
        AccessEvent {
            event_id: id.into(),
            ts: Timestamp::parse_rfc3339(ts).unwrap(),
            tenant: tenant.into(),
            env: Env::Prod,
            client_id: Some("cardio".into()),
            app_version: None,
            user: None,
            token_id: Some(token.into()),
            expires_at: None,
            token_tenant: None,
            method: "GET".into(),
            path: "/fhir/r4/north/Observation?patient=p_1".into(),
            interaction: None,
            resource_type: Some("Observation".into()),
            compartment: None,
            patient: Some("p_1".into()),
            required: Some("patient/Observation.rs".into()),
            granted_covered: Some(true),
            status: Some(200),
            outcome: AccessOutcome::Allowed,
            bytes: None,
            latency_ms: None,
            ip: Some("10.0.0.2".into()),
            user_agent: None,
            source: "gw".into(),
            source_file: None,
            source_offset: None,
        }
    }

    fn write(path: &Path, batch: &arrow_array::RecordBatch) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut w =
            ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), None).unwrap();
        w.write(batch).unwrap();
        w.close().unwrap();
    }

    /// A lake over two days: token T issued with refresh R1, used twice,
    /// refreshed (R1 redeemed, R2 issued), revoked; a south call with T.
    fn lake() -> (tempfile::TempDir, Lake) {
        let dir = tempfile::tempdir().unwrap();
        let lake_dir = scopewatch_model::lake::lake_dir(dir.path());
        let mut issued = auth("a1", "2026-11-07T10:00:00Z", "north", AuthKind::Token);
        issued.token_id = Some("T".into());
        issued.refresh_token_id = Some("R1".into());
        let mut refresh = auth("a2", "2026-11-08T09:00:00Z", "north", AuthKind::Refresh);
        refresh.token_id = Some("T2".into());
        refresh.refresh_token_id = Some("R2".into());
        refresh.parent_token_id = Some("R1".into());
        let mut revoke = auth("a3", "2026-11-08T10:00:00Z", "north", AuthKind::Revoke);
        revoke.token_id = Some("T".into());
        revoke.outcome = AuthOutcome::Failure;
        let other = auth("a4", "2026-11-08T11:00:00Z", "north", AuthKind::Authorize);
        for (day, events) in [
            ("2026-11-07", vec![issued]),
            ("2026-11-08", vec![refresh, revoke, other]),
        ] {
            let mut b = AuthBatchBuilder::default();
            for e in &events {
                b.push(e);
            }
            write(
                &lake_dir.join(format!("auth/date={day}/p.parquet")),
                &b.finish(),
            );
        }
        let mut b = AccessBatchBuilder::default();
        b.push(&access("c1", "2026-11-07T10:05:00Z", "north", "T"));
        b.push(&access("c2", "2026-11-07T10:06:00Z", "north", "T"));
        b.push(&access("c3", "2026-11-07T10:07:00Z", "south", "T"));
        b.push(&access("c4", "2026-11-07T10:08:00Z", "north", "other"));
        write(
            &lake_dir.join("access/date=2026-11-07/p.parquet"),
            &b.finish(),
        );
        let lake = Lake::open(dir.path(), &EngineLimits::default()).unwrap();
        (dir, lake)
    }

    fn us(ts: &str) -> i64 {
        Timestamp::parse_rfc3339(ts).unwrap().0
    }

    #[test]
    fn events_by_id_reads_both_streams_in_time_order() {
        let (_dir, lake) = lake();
        let ids: Vec<String> = ["a2", "c1", "nope", "a1", "c1", "x' OR 1=1 --"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let got = lake.events_by_id(&ids, &EventScope::default()).unwrap();
        let got_ids: Vec<&str> = got.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(got_ids, ["a1", "c1", "a2"]);
        assert_eq!(got[0].stream, "auth");
        assert_eq!(got[0].kind.as_deref(), Some("token"));
        assert_eq!(
            got[0].scopes_granted.as_deref(),
            Some(&["launch".to_string(), "patient/Observation.rs".to_string()][..])
        );
        assert_eq!(got[0].token_ids(), ["T", "R1"]);
        assert_eq!(got[1].stream, "access");
        assert_eq!(got[1].status, Some(200));
        assert_eq!(got[1].ts, "2026-11-07T10:05:00Z");
        assert_eq!(got[2].token_ids(), ["T2", "R2", "R1"]);
        let row = got[0].csv_values();
        assert_eq!(row.len(), EvidenceEvent::CSV_COLUMNS.len());
        assert_eq!(row[14], "launch patient/Observation.rs");
    }

    #[test]
    fn scope_limits_time_and_tenants() {
        let (_dir, lake) = lake();
        let ids: Vec<String> = ["a1", "a2", "c1", "c3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let day7 = EventScope {
            window: Some((us("2026-11-07T00:00:00Z"), us("2026-11-08T00:00:00Z"))),
            tenants: None,
        };
        let got: Vec<String> = lake
            .events_by_id(&ids, &day7)
            .unwrap()
            .into_iter()
            .map(|e| e.event_id)
            .collect();
        assert_eq!(got, ["a1", "c1", "c3"]);
        let south = EventScope {
            window: None,
            tenants: Some(vec!["south".into()]),
        };
        let got: Vec<String> = lake
            .events_by_id(&ids, &south)
            .unwrap()
            .into_iter()
            .map(|e| e.event_id)
            .collect();
        assert_eq!(got, ["c3"]);
    }

    #[test]
    fn timeline_follows_the_token_and_counts_what_the_limit_cut() {
        let (_dir, lake) = lake();
        let t = lake
            .token_timeline("T", &EventScope::default(), 100)
            .unwrap();
        let seen: Vec<(&str, &str)> = t
            .entries
            .iter()
            .map(|e| (e.event_id.as_str(), e.what.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                ("a1", "access token issued"),
                ("c1", "used"),
                ("c2", "used"),
                ("c3", "used"),
                ("a3", "revoked (failed)"),
            ]
        );
        assert_eq!((t.total, t.left_out), (5, 0));

        let r1 = lake
            .token_timeline("R1", &EventScope::default(), 100)
            .unwrap();
        let seen: Vec<(&str, &str)> = r1
            .entries
            .iter()
            .map(|e| (e.event_id.as_str(), e.what.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                ("a1", "refresh token issued"),
                ("a2", "refresh token redeemed")
            ]
        );

        let cut = lake
            .token_timeline(
                "T",
                &EventScope {
                    window: None,
                    tenants: Some(vec!["north".into()]),
                },
                2,
            )
            .unwrap();
        assert_eq!(cut.entries.len(), 2);
        assert_eq!((cut.total, cut.left_out), (4, 2));

        let none = lake
            .token_timeline("nothing", &EventScope::default(), 10)
            .unwrap();
        assert_eq!((none.entries.len(), none.total, none.left_out), (0, 0, 0));
    }

    #[test]
    fn params_are_clamped_literals() {
        assert_eq!(ts_param(0), "1970-01-01 00:00:00.000000+00");
        assert_eq!(ts_param(i64::MAX), "9999-12-31 23:59:59.999999+00");
        assert_eq!(date_param(0, -1), "1969-12-31");
        assert_eq!(date_param(i64::MIN, -1), "0001-01-01");
    }
}
