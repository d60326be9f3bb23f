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
        Ok(())
    }

    pub fn state_dir(&self) -> PathBuf {
        self.data_dir.join("dashboard")
    }
}
