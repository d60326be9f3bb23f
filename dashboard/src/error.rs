//! The dashboard's errors. Handlers turn them into a plain 500 page; the
//! detail goes to the log, never to the browser.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid users file: {source}")]
    UsersFile {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("invalid user: {0}")]
    InvalidUser(String),
    #[error("no user named {0:?}")]
    NoSuchUser(String),
    #[error("a user named {0:?} already exists")]
    UserExists(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("background task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Alerts(#[from] scopewatch_rules::store::StoreError),
    #[error(transparent)]
    Analytics(#[from] scopewatch_analytics::AnalyticsError),
}

impl DashboardError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = DashboardError> = std::result::Result<T, E>;
