//! Errors of the tailer. Each message names the file concerned and says what
//! to do about it, because they end up in front of an operator.

use std::io;
use std::path::PathBuf;

use super::checkpoint::CHECKPOINT_VERSION;

/// What can go wrong while tailing or handling checkpoints.
///
/// Trouble with one log file (permissions, a vanished file, a corrupt
/// archive) is not an error of the tailer: it is reported once through
/// `tracing::warn!` and the file is skipped until it changes.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// The configuration cannot work; nothing was started.
    #[error("invalid tail configuration: {0}")]
    Config(String),

    /// The checkpoint file exists but could not be read.
    #[error(
        "cannot read checkpoint file {path}: {source}; check that it is readable \
         by the user scopewatch runs as"
    )]
    CheckpointRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The checkpoint is not valid JSON of the expected shape.
    #[error(
        "checkpoint {origin} is corrupt ({message}); restore it from a backup, or move \
         it away to start over (files are then read again from the configured start, \
         which may duplicate or skip lines)"
    )]
    CheckpointCorrupt { origin: String, message: String },

    /// The checkpoint was written by another version of scopewatch.
    #[error(
        "checkpoint {origin} has format version {found}, but this build reads version \
         {CHECKPOINT_VERSION}; run a scopewatch release that matches it, or move it \
         away to start over"
    )]
    CheckpointVersion { origin: String, found: String },

    /// Writing the checkpoint failed; the previous one is still in place.
    #[error(
        "cannot write checkpoint file {path}: {source}; check free space and \
         permissions of its directory (the previous checkpoint is left in place)"
    )]
    CheckpointWrite {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}
