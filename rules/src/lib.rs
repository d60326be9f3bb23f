//! Rules: detection rules declared in a config file (threshold, distinct,
//! new value, spike, sequence), evaluated on every batch ingest commits and
//! over history (`backtest`) with the same results; alert deduplication and
//! delivery by email and webhook. Rules judge events; they own no database.
