//! Ingest: tails the authorization server's and the gateway's logs (and
//! takes pushed NDJSON), turns each line into `auth` or `access` events
//! through a format adapter, pseudonymises patient and user ids and reduces
//! tokens to ids, and writes the events into the Parquet lake with
//! checkpoints that advance only once the data is durable.
//!
//! The event types and their Arrow schema come from `scopewatch_model::events`.
pub mod adapter;
pub mod deadletter;
pub mod formats;
pub mod generate;
pub mod lake;
mod parquet_sink;
pub mod pipeline;
pub mod privacy;
pub mod push;
pub mod replay;
pub mod tail;
