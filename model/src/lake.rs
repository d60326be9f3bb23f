//! Where things live under the data directory. Paths only, no IO: the lake
//! writer (ingest) and its readers (analytics) agree through these.

use std::path::{Path, PathBuf};

/// `<data>/lake`: Hive-partitioned Parquet, `<stream>/date=YYYY-MM-DD/*.parquet`.
pub fn lake_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("lake")
}

/// `<data>/state`: journal, checkpoints, key, lock.
pub fn state_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("state")
}

/// The advisory lock file: readers hold it shared during a query, the
/// writer exclusively while it swaps files (commit renames, compaction).
pub fn lock_file(data_dir: &Path) -> PathBuf {
    state_dir(data_dir).join("lake.lock")
}

/// `<data>/deadletter`: lines that could not be read, redacted.
pub fn dead_letter_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("deadletter")
}
