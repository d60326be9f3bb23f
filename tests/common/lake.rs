//! The lake read back with DuckDB, as the tests check it.

use std::path::Path;

use scopewatch_analytics::{EngineLimits, Lake};

/// The lake under `data`, with small limits (tests run side by side).
pub fn open_lake(data: &Path) -> Lake {
    Lake::open(
        data,
        &EngineLimits {
            memory_limit_mib: 256,
            threads: 1,
        },
    )
    .unwrap()
}

/// (rows, distinct event ids, distinct `bytes`) of the access stream: the
/// tests' lines carry a sequence number in `bytes`.
pub fn access_counts(data: &Path) -> (u64, u64, u64) {
    let lake = open_lake(data);
    // Hold the lake's read lock like every scopewatch reader: tests call
    // this while ingest runs, and compaction must not swap files under the
    // query.
    let _guard = lake.read_guard().unwrap();
    lake.connection()
        .query_row(
            "SELECT count(*), count(DISTINCT event_id), count(DISTINCT bytes) FROM access",
            [],
            |r| {
                let n = |i: usize| r.get::<_, i64>(i).map(|v| v as u64);
                Ok((n(0)?, n(1)?, n(2)?))
            },
        )
        .unwrap()
}

/// Every string value in every Parquet file of the lake, decoded, one per
/// line (the files are zstd-compressed, so grepping their bytes would
/// prove nothing).
pub fn lake_text(data: &Path) -> String {
    let lake = open_lake(data);
    let mut text = String::new();
    for view in ["auth", "access"] {
        let mut stmt = lake
            .connection()
            .prepare(&format!("SELECT CAST(COLUMNS(*) AS VARCHAR) FROM {view}"))
            .unwrap();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            // Every column is VARCHAR here; the first index past the end errs.
            let mut i = 0;
            while let Ok(v) = row.get::<_, Option<String>>(i) {
                if let Some(v) = v {
                    text.push_str(&v);
                    text.push('\n');
                }
                i += 1;
            }
            assert!(i > 1, "the view has columns");
        }
    }
    text
}
