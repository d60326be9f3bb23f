//! Runtime settings of the dashboard, validated once (no IO here).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{DashboardError, Result};

/// Whether the session cookie carries `Secure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecureCookies {
    /// `Secure` unless the listen address is loopback: browsers send a
    /// `Secure` cookie over plain HTTP only to localhost, and a dashboard
    /// on a real interface is expected behind TLS.
    #[default]
    Auto,
    Always,
    Never,
}

impl SecureCookies {
    pub fn resolve(self, listen: SocketAddr) -> bool {
        match self {
            Self::Auto => !listen.ip().is_loopback(),
            Self::Always => true,
            Self::Never => false,
        }
    }
}

impl std::str::FromStr for SecureCookies {
    type Err = DashboardError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "always" | "true" => Ok(Self::Always),
            "never" | "false" => Ok(Self::Never),
            other => Err(DashboardError::Config(format!(
                "secure_cookies {other:?}: use auto, always or never"
            ))),
        }
    }
}

/// The dashboard's settings. Build with [`DashboardConfig::new`], adjust
/// fields, then [`DashboardConfig::validate`] (done by `AppState::open`).
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// The scopewatch data directory; the dashboard keeps its state in
    /// `<data_dir>/dashboard/`.
    pub data_dir: PathBuf,
    /// `Secure` attribute on the session cookie, already resolved against
    /// the listen address.
    pub secure_cookies: bool,
    /// A session unused this long is over.
    pub idle_timeout: Duration,
    /// A session is over this long after login, however busy.
    pub absolute_timeout: Duration,
    /// Failed logins per username, and per client IP, within
    /// `login_window` before further attempts get 429.
    pub login_max_failures: u32,
    pub login_window: Duration,
    /// What the data pages compute over.
    pub analysis: AnalysisSettings,
}

/// What the data pages (overview, apps, tenants, reports, recertification)
/// are computed from: the lake under `data_dir`, the registry, and the
/// deployment's analysis settings.
#[derive(Debug, Clone)]
pub struct AnalysisSettings {
    /// The app registry TOML; `None`: every app shows as unregistered.
    pub registry: Option<PathBuf>,
    /// Configured sources as (name, format), for the reports' method section.
    pub sources: Vec<(String, String)>,
    /// The pages' default window: this many days up to today.
    pub observation_window_days: u32,
    /// No call and no grant for this many days: stale.
    pub stale_after_days: u32,
    /// DuckDB's memory limit (MiB) and threads for the dashboard's queries.
    pub memory_limit_mib: u32,
    pub threads: u16,
    /// The pages show figures at most this old; a newer lake is read in
    /// the background while the previous figures are served.
    pub refresh_after: Duration,
}

impl AnalysisSettings {
    /// The settings a validated scopewatch config gives.
    pub fn from_config(config: &scopewatch_model::config::Config) -> Self {
        Self {
            registry: config.registry.clone(),
            sources: config.source_formats(),
            observation_window_days: config.observation_window_days,
            stale_after_days: config.stale_after_days,
            memory_limit_mib: config.analysis_limits.memory_limit_mib,
            threads: config.analysis_limits.threads,
            ..Self::default()
        }
    }
}

impl Default for AnalysisSettings {
    fn default() -> Self {
        Self {
            registry: None,
            sources: Vec::new(),
            observation_window_days: 90,
            stale_after_days: 90,
            memory_limit_mib: 1024,
            threads: 2,
            refresh_after: Duration::from_secs(15),
        }
    }
}

impl DashboardConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            secure_cookies: true,
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 3600),
            login_max_failures: 5,
            login_window: Duration::from_secs(5 * 60),
            analysis: AnalysisSettings::default(),
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(DashboardError::Config(m.to_string()));
        if self.idle_timeout.is_zero() || self.absolute_timeout.is_zero() {
            return bad("session timeouts must be positive");
        }
        if self.idle_timeout > self.absolute_timeout {
            return bad("idle_timeout must not exceed absolute_timeout");
        }
        if self.login_max_failures == 0 || self.login_window.is_zero() {
            return bad("login_max_failures and login_window must be positive");
        }
        let a = &self.analysis;
        if a.observation_window_days == 0 || a.observation_window_days > 3660 {
            return bad("observation_window_days must be 1 to 3660");
        }
        if a.stale_after_days == 0 || a.stale_after_days > 3660 {
            return bad("stale_after_days must be 1 to 3660");
        }
        if a.memory_limit_mib < 64 || a.threads == 0 {
            return bad("the dashboard's DuckDB needs memory_limit_mib >= 64 and threads >= 1");
        }
        Ok(())
    }

    pub fn state_dir(&self) -> PathBuf {
        self.data_dir.join("dashboard")
    }
}
