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
}

impl Snapshot {
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
