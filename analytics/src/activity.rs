//! Activity over time and per source, for the dashboard's charts and its
//! ingest status: events per day, tenant, app and stream, and the newest
//! event each source delivered.

use duckdb::params;
use serde::Serialize;
use time::Date;

use crate::matrix::{day_start, iso};
use crate::report::epoch_day;
use crate::{duck, AnalyticsError, Lake};

const DAILY_ACTIVITY_SQL: &str = include_str!("../sql/daily_activity.sql");
const SOURCE_STATUS_SQL: &str = include_str!("../sql/source_status.sql");

/// Events of one stream, app and tenant on one UTC day.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DailyActivity {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    /// `auth` or `access`.
    pub stream: String,
    pub events: u64,
    /// Access calls refused, or auth events that did not succeed.
    pub denied: u64,
}

/// What one source delivered to one stream for one tenant.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SourceStatus {
    pub source: Option<String>,
    pub stream: String,
    pub tenant: Option<String>,
    pub events: u64,
    /// Time of the newest event (RFC 3339), and as µs since the epoch.
    pub last_event: Option<String>,
    #[serde(skip)]
    pub last_event_us: Option<i64>,
}

impl Lake {
    /// Events per day, tenant, app and stream from `from` to `to` (inclusive).
    pub fn daily_activity(
        &self,
        from: Date,
        to: Date,
    ) -> Result<Vec<DailyActivity>, AnalyticsError> {
        let _guard = self.read_guard()?;
        let (start, end) = (day_start(from), day_start(to.next_day().unwrap_or(to)));
        let mut stmt = self
            .connection()
            .prepare(DAILY_ACTIVITY_SQL)
            .map_err(duck("preparing daily_activity.sql"))?;
        let rows = stmt
            .query_map(params![start, end], |r| {
                Ok(DailyActivity {
                    date: epoch_day(r.get(0)?).to_string(),
                    tenant: r.get(1)?,
                    client_id: r.get(2)?,
                    stream: r.get(3)?,
                    events: r.get::<_, i64>(4)?.max(0) as u64,
                    denied: r.get::<_, i64>(5)?.max(0) as u64,
                })
            })
            .map_err(duck("running daily_activity.sql"))?;
        rows.collect::<Result<_, _>>()
            .map_err(duck("reading daily_activity.sql"))
    }

    /// Per source, stream and tenant: events and the newest event time.
    pub fn source_status(&self) -> Result<Vec<SourceStatus>, AnalyticsError> {
        let _guard = self.read_guard()?;
        let mut stmt = self
            .connection()
            .prepare(SOURCE_STATUS_SQL)
            .map_err(duck("preparing source_status.sql"))?;
        let rows = stmt
            .query_map([], |r| {
                let last: Option<i64> = r.get(4)?;
                Ok(SourceStatus {
                    source: r.get(0)?,
                    stream: r.get(1)?,
                    tenant: r.get(2)?,
                    events: r.get::<_, i64>(3)?.max(0) as u64,
                    last_event: last.map(iso),
                    last_event_us: last,
                })
            })
            .map_err(duck("running source_status.sql"))?;
        rows.collect::<Result<_, _>>()
            .map_err(duck("reading source_status.sql"))
    }
}
