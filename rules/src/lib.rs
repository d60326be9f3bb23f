//! Rules: detection rules declared in a config file (threshold, distinct,
//! new value, spike, sequence), evaluated on every batch ingest commits and
//! over history (`backtest`) with the same results; alert deduplication and
//! delivery by email and webhook. Rules judge events; they own no database.

pub mod alert;
pub mod config;
pub mod deliver;
pub mod engine;
pub mod eval;
pub mod event;
pub mod matcher;
pub mod store;
pub mod stream;
