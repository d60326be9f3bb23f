//! The figures behind the data pages, computed once and shared: one DuckDB
//! over the lake per process, and a snapshot (scope matrix, daily activity,
//! source status, the registry) rebuilt in the background when it is older
//! than `analysis.refresh_after`. Pages filter the snapshot per user
//! ([`Snapshot::visible_apps`] and friends), so a page view costs no query
//! and every page applies the same tenant and app limits.
//!
//! Anything else that needs the lake (evidence events, a token's timeline,
//! a report for download) runs through [`Insights::with_lake`], off the
//! async threads.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use scopewatch_analytics::activity::{DailyActivity, SourceStatus};
use scopewatch_analytics::matrix::{AppTenant, MatrixQuery, ScopeMatrix};
use scopewatch_analytics::report::{Report, ReportContext};
use scopewatch_analytics::{AnalyticsError, EngineLimits, Lake};
use scopewatch_model::registry::Registry;
use time::{Date, OffsetDateTime};

use crate::audit::now_rfc3339;
use crate::auth::CurrentUser;
use crate::config::AnalysisSettings;
use crate::error::DashboardError;

/// Everything the data pages show, as of `built_at`.
#[derive(Debug)]
pub struct Snapshot {
    /// The window: `from`..=`to` (UTC days); `to` is today, or the day of
    /// the lake's newest event when that is earlier.
    pub from: Date,
    pub to: Date,
    /// RFC 3339, UTC.
    pub built_at: String,
    pub registry: Arc<Registry>,
    /// Why the registry could not be read (the pages say so); the snapshot
    /// then judges against an empty registry.
    pub registry_problem: Option<String>,
    /// Every app x tenant over the window.
    pub matrix: ScopeMatrix,
    pub daily: Vec<DailyActivity>,
    pub sources: Vec<SourceStatus>,
    /// The overview's chart as drawn for each view (see [`View`]), the
    /// most recent last; at most [`MAX_CHARTS`]. Part of the snapshot, so
    /// a rebuilt snapshot starts without any.
    charts: Mutex<Vec<(View, Arc<str>)>>,
}

/// Charts kept per snapshot (one per distinct view in use; a few).
const MAX_CHARTS: usize = 8;

/// What decides which rows of the snapshot a user sees
/// ([`Snapshot::visible_daily`] and friends): their tenant limit and, for a
/// pure product owner, their apps. Users with the same view see the same
/// figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// Sorted; `None`: every tenant.
    tenants: Option<Vec<String>>,
    /// Sorted; `None`: every app.
    apps: Option<Vec<String>>,
}

impl View {
    pub fn of(user: &CurrentUser) -> View {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v.dedup();
            v
        };
        View {
            tenants: user.tenant_filter().map(sorted),
            apps: (!user.sees_every_app()).then(|| sorted(user.owned_apps())),
        }
    }
}

impl Snapshot {
    /// The overview chart for `user`'s view: drawn by `draw` the first
    /// time this snapshot is asked for that view, then kept.
    pub fn overview_chart(&self, user: &CurrentUser, draw: impl FnOnce() -> String) -> Arc<str> {
        let view = View::of(user);
        let cached = |charts: &Vec<(View, Arc<str>)>| {
            charts
                .iter()
                .find(|(v, _)| *v == view)
                .map(|(_, c)| c.clone())
        };
        if let Some(c) = cached(&self.charts.lock().unwrap_or_else(PoisonError::into_inner)) {
            return c;
        }
        // Drawn without the lock: two first requests may both draw, the
        // same chart.
        let chart: Arc<str> = draw().into();
        let mut charts = self.charts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = cached(&charts) {
            return c;
        }
        if charts.len() >= MAX_CHARTS {
            charts.remove(0);
        }
        charts.push((view, chart.clone()));
        chart
    }

    /// The app x tenant rows `user` may see (tenant limits, own apps).
    pub fn visible_apps<'a>(
        &'a self,
        user: &'a CurrentUser,
    ) -> impl Iterator<Item = &'a AppTenant> + 'a {
        self.matrix
            .apps
            .iter()
            .filter(move |a| user.sees_tenant(&a.tenant) && user.sees_app(&a.client_id))
    }

    /// Daily activity rows `user` may see. Rows without a tenant are shown
    /// only to users without a tenant limit; rows without an app only to
    /// users who see every app.
    pub fn visible_daily<'a>(
        &'a self,
        user: &'a CurrentUser,
    ) -> impl Iterator<Item = &'a DailyActivity> + 'a {
        self.daily
            .iter()
            .filter(move |d| sees(user, d.tenant.as_deref(), d.client_id.as_deref()))
    }

    /// Source status rows of the tenants `user` may see.
    pub fn visible_sources<'a>(
        &'a self,
        user: &'a CurrentUser,
    ) -> impl Iterator<Item = &'a SourceStatus> + 'a {
        self.sources
            .iter()
            .filter(move |s| sees(user, s.tenant.as_deref(), None))
    }
}

/// Whether `user` may see a row of `tenant` and `app` (either unknown).
pub fn sees(user: &CurrentUser, tenant: Option<&str>, app: Option<&str>) -> bool {
    let tenant_ok = match tenant {
        Some(t) => user.sees_tenant(t),
        None => user.tenant_filter().is_none(),
    };
    let app_ok = match app {
        Some(a) => user.sees_app(a),
        None => user.sees_app(""),
    };
    tenant_ok && app_ok
}

/// The lake, the registry and the cached snapshot.
#[derive(Debug)]
pub struct Insights {
    data_dir: PathBuf,
    settings: AnalysisSettings,
    /// Opened on first use (a dashboard on an empty data directory starts
    /// without one); DuckDB's connection is not `Sync`, hence the lock.
    lake: Arc<Mutex<Option<Lake>>>,
    cache: Mutex<Cache>,
    /// Held by whoever builds the snapshot, so concurrent requests do not
    /// each run the same queries.
    building: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct Cache {
    snapshot: Option<(Arc<Snapshot>, Instant)>,
    refreshing: bool,
}

impl Insights {
    pub fn new(data_dir: PathBuf, settings: AnalysisSettings) -> Self {
        Self {
            data_dir,
            settings,
            lake: Arc::new(Mutex::new(None)),
            cache: Mutex::new(Cache::default()),
            building: tokio::sync::Mutex::new(()),
        }
    }

    pub fn settings(&self) -> &AnalysisSettings {
        &self.settings
    }

    /// The current snapshot. A fresh one is returned at once; a stale one
    /// too, while a rebuild starts in the background; with none yet, this
    /// waits for the first build.
    pub async fn snapshot(self: &Arc<Self>) -> Result<Arc<Snapshot>, DashboardError> {
        let stale = {
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            match &cache.snapshot {
                Some((snap, at)) if at.elapsed() < self.settings.refresh_after => {
                    return Ok(snap.clone())
                }
                Some((snap, _)) => {
                    let snap = snap.clone();
                    let start = !cache.refreshing;
                    cache.refreshing = true;
                    Some((snap, start))
                }
                None => None,
            }
        };
        match stale {
            Some((snap, start)) => {
                if start {
                    let this = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = this.rebuild().await {
                            tracing::error!(error = %e, "refreshing the dashboard's figures failed; the previous ones are shown");
                        }
                        this.cache
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .refreshing = false;
                    });
                }
                Ok(snap)
            }
            None => self.rebuild().await,
        }
    }

    /// Drops the cached snapshot so the next page reads the lake again
    /// (after a change the pages must show at once, e.g. a registry patch).
    pub fn invalidate(&self) {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .snapshot = None;
    }

    /// Builds a snapshot (one builder at a time; a request that waited for
    /// another's build takes its result).
    async fn rebuild(self: &Arc<Self>) -> Result<Arc<Snapshot>, DashboardError> {
        let asked = Instant::now();
        let _building = self.building.lock().await;
        if let Some((snap, at)) = &self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .snapshot
        {
            if *at >= asked {
                return Ok(snap.clone());
            }
        }
        let this = self.clone();
        let started = Instant::now();
        let snap = tokio::task::spawn_blocking(move || this.build())
            .await
            .map_err(|e| DashboardError::Task(e.to_string()))??;
        let snap = Arc::new(snap);
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            apps = snap.matrix.apps.len(),
            "dashboard figures rebuilt"
        );
        metrics::histogram!("scopewatch_dashboard_snapshot_seconds")
            .record(started.elapsed().as_secs_f64());
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .snapshot = Some((snap.clone(), Instant::now()));
        Ok(snap)
    }

    /// The registry as the config names it, or an empty one and the reason.
    pub fn load_registry(&self) -> (Registry, Option<String>) {
        let empty = || {
            Registry::from_toml_str("version = 1\n", "(no registry)")
                .expect("an empty registry is valid")
        };
        match &self.settings.registry {
            None => (
                empty(),
                Some("no app registry is configured: every app shows as unregistered".into()),
            ),
            Some(path) => match Registry::load(path) {
                Ok(r) => (r, None),
                Err(e) => (
                    empty(),
                    Some(format!("the app registry could not be read: {e}")),
                ),
            },
        }
    }

    /// The configured window ending today.
    pub fn window(&self) -> (Date, Date) {
        let to = OffsetDateTime::now_utc().date();
        let days = i64::from(self.settings.observation_window_days.max(1)) - 1;
        (to - time::Duration::days(days), to)
    }

    fn build(&self) -> Result<Snapshot, DashboardError> {
        let (registry, registry_problem) = self.load_registry();
        let stale_after_days = self.settings.stale_after_days;
        let (default_from, today) = self.window();
        let days = today - default_from;
        let (matrix, daily, sources, from, to) = self.with_lake_blocking(|lake| {
            let sources = lake.source_status()?;
            // A lake whose newest event is older than today (ingest
            // stopped, or a replayed history) is shown up to that event,
            // not as a window of nothing.
            let newest = sources.iter().filter_map(|s| s.last_event_us).max();
            let to = newest.map(|us| day_of_us(us).min(today)).unwrap_or(today);
            let from = to - days;
            let query = MatrixQuery {
                from,
                to,
                tenant: None,
                app: None,
                stale_after_days,
            };
            Ok((
                lake.scope_matrix(&registry, &query)?,
                lake.daily_activity(from, to)?,
                sources,
                from,
                to,
            ))
        })?;
        Ok(Snapshot {
            from,
            to,
            built_at: now_rfc3339(),
            registry: Arc::new(registry),
            registry_problem,
            matrix,
            daily,
            sources,
            charts: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` on the lake (views refreshed first), on this thread.
    fn with_lake_blocking<T>(
        &self,
        f: impl FnOnce(&Lake) -> Result<T, AnalyticsError>,
    ) -> Result<T, DashboardError> {
        let mut slot = self.lake.lock().unwrap_or_else(PoisonError::into_inner);
        let lake = match slot.take() {
            Some(lake) => {
                lake.refresh_views()?;
                lake
            }
            None => Lake::open(
                &self.data_dir,
                &EngineLimits {
                    memory_limit_mib: self.settings.memory_limit_mib,
                    threads: self.settings.threads,
                },
            )?,
        };
        let result = f(&lake);
        *slot = Some(lake);
        Ok(result?)
    }

    /// Runs `f` on the lake off the async threads: for evidence look-ups,
    /// timelines and downloads. Bind every user-supplied value as a query
    /// parameter inside `f`.
    pub async fn with_lake<T, F>(self: &Arc<Self>, f: F) -> Result<T, DashboardError>
    where
        T: Send + 'static,
        F: FnOnce(&Lake) -> Result<T, AnalyticsError> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.with_lake_blocking(f))
            .await
            .map_err(|e| DashboardError::Task(e.to_string()))?
    }

    /// The quarterly report over `from..=to` for one tenant (`None`: every
    /// tenant; the caller decides whether the user may have that) and
    /// optionally one app.
    pub async fn report(
        self: &Arc<Self>,
        from: Date,
        to: Date,
        tenant: Option<String>,
        app: Option<String>,
    ) -> Result<Report, DashboardError> {
        let (registry, _) = self.load_registry();
        let ctx = ReportContext {
            registry_path: self
                .settings
                .registry
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(none configured)".into()),
            sources: self.settings.sources.clone(),
            observation_window_days: self.settings.observation_window_days,
            generated_at: now_rfc3339(),
        };
        let query = MatrixQuery {
            from,
            to,
            tenant,
            app,
            stale_after_days: self.settings.stale_after_days,
        };
        self.with_lake(move |lake| lake.report(&registry, &ctx, &query))
            .await
    }
}

/// The UTC day of a time in µs since the epoch.
pub fn day_of_us(us: i64) -> Date {
    OffsetDateTime::from_unix_timestamp(us.div_euclid(1_000_000))
        .map(|t| t.date())
        .unwrap_or(Date::MIN)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::auth::AuthMethod;
    use crate::users::{Role, User};

    fn user(roles: Vec<Role>, tenants: &[&str], apps: &[&str]) -> CurrentUser {
        let u = User {
            username: "u".into(),
            password_hash: String::new(),
            roles,
            tenants: tenants.iter().map(|t| t.to_string()).collect(),
            owned_apps: apps.iter().map(|a| a.to_string()).collect(),
            disabled: false,
            must_change_password: false,
            api_tokens: vec![],
            created: String::new(),
        };
        CurrentUser::from_user(&u, AuthMethod::Session, None, String::new())
    }

    fn snapshot() -> Snapshot {
        let day = Date::from_calendar_date(2026, time::Month::December, 1).unwrap();
        Snapshot {
            from: day,
            to: day,
            built_at: String::new(),
            registry: Arc::new(Registry::from_toml_str("version = 1\n", "(test)").unwrap()),
            registry_problem: None,
            matrix: ScopeMatrix {
                from: String::new(),
                to: String::new(),
                stale_after_days: 30,
                apps: vec![],
            },
            daily: vec![],
            sources: vec![],
            charts: Mutex::new(Vec::new()),
        }
    }

    #[test]
    fn the_overview_chart_is_drawn_once_per_view_and_kept_bounded() {
        let snap = snapshot();
        let draws = Cell::new(0);
        let chart = |u: &CurrentUser, what: &str| {
            snap.overview_chart(u, || {
                draws.set(draws.get() + 1);
                what.to_string()
            })
        };
        let all = user(vec![Role::Security], &[], &[]);
        let north_south = user(vec![Role::Viewer], &["north", "south"], &[]);
        let south_north = user(vec![Role::Security], &["south", "north", "north"], &[]);
        let north = user(vec![Role::Viewer], &["north"], &[]);
        let owner = user(vec![Role::ProductOwner], &["north"], &["app-a"]);

        assert_eq!(&*chart(&all, "all"), "all");
        assert_eq!(&*chart(&all, "again"), "all");
        assert_eq!(&*chart(&north_south, "ns"), "ns");
        // The same tenants in another order, another role: the same view.
        assert_eq!(&*chart(&south_north, "sn"), "ns");
        assert_eq!(&*chart(&north, "n"), "n");
        // The same tenant, but only their own apps: another view.
        assert_eq!(&*chart(&owner, "own"), "own");
        assert_eq!(draws.get(), 4);

        for i in 0..MAX_CHARTS + 3 {
            let t = format!("t{i}");
            chart(&user(vec![Role::Viewer], &[t.as_str()], &[]), &t);
        }
        assert_eq!(snap.charts.lock().unwrap().len(), MAX_CHARTS);
        // A new snapshot starts without any.
        assert!(snapshot().charts.lock().unwrap().is_empty());
    }
}
