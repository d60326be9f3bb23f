//! DuckDB over the lake. The lake is plain Hive-partitioned Parquet
//! (`<data>/lake/<stream>/date=YYYY-MM-DD/*.parquet`); this crate opens an
//! in-process DuckDB with one view per stream over it. Queries that take
//! user input bind it as parameters; only the operator's own data path is
//! written into SQL, quoted.

pub mod activity;
pub mod evidence;
pub mod matrix;
pub mod report;

use std::path::{Path, PathBuf};

use arrow_schema::{DataType, SchemaRef, TimeUnit};
use duckdb::Connection;
use scopewatch_model::events::{AccessEvent, AuthEvent};

/// A failure of the analytics layer, naming what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error("DuckDB failed while {doing}: {source}")]
    Duckdb {
        doing: String,
        #[source]
        source: duckdb::Error,
    },
    #[error("cannot look at the lake under {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "column `{column}` has Arrow type {data_type}, which the lake views cannot map to DuckDB"
    )]
    UnmappedType { column: String, data_type: String },
}

/// Maps a DuckDB error to ours, saying what was being done.
pub(crate) fn duck(doing: &'static str) -> impl Fn(duckdb::Error) -> AnalyticsError {
    move |source| AnalyticsError::Duckdb {
        doing: doing.to_string(),
        source,
    }
}

/// Resource limits of the embedded DuckDB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineLimits {
    /// DuckDB's `memory_limit`, in MiB.
    pub memory_limit_mib: u32,
    /// DuckDB's worker threads.
    pub threads: u16,
}

impl Default for EngineLimits {
    fn default() -> Self {
        EngineLimits {
            memory_limit_mib: 2048,
            threads: 2,
        }
    }
}

/// The lake's streams, each with its schema from `model`.
pub const STREAMS: [(&str, fn() -> SchemaRef); 2] = [
    (AuthEvent::STREAM, AuthEvent::schema),
    (AccessEvent::STREAM, AccessEvent::schema),
];

/// An in-process DuckDB with the views `auth` and `access` over the lake.
#[derive(Debug)]
pub struct Lake {
    conn: Connection,
    root: PathBuf,
    data_dir: PathBuf,
}

/// Held while a query runs: ingest's compaction waits for it before it
/// swaps files, so a query never sees rows twice or misses them.
#[derive(Debug)]
pub struct ReadGuard {
    file: Option<std::fs::File>,
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        if let Some(f) = &self.file {
            let _ = f.unlock();
        }
    }
}

impl Lake {
    /// Opens DuckDB in memory over `<data_dir>/lake`. A stream with no files
    /// yet gets an empty view of the same columns, so queries work on a new lake.
    pub fn open(data_dir: &Path, limits: &EngineLimits) -> Result<Lake, AnalyticsError> {
        let conn = Connection::open_in_memory().map_err(|source| AnalyticsError::Duckdb {
            doing: "opening an in-memory database".into(),
            source,
        })?;
        let settings = format!(
            "SET memory_limit = '{}MiB'; SET threads = {};",
            limits.memory_limit_mib, limits.threads
        );
        conn.execute_batch(&settings)
            .map_err(|source| AnalyticsError::Duckdb {
                doing: "applying memory and thread limits".into(),
                source,
            })?;
        let lake = Lake {
            conn,
            root: scopewatch_model::lake::lake_dir(data_dir),
            data_dir: data_dir.to_path_buf(),
        };
        lake.refresh_views()?;
        Ok(lake)
    }

    /// Re-creates the views, picking up partitions that appeared since.
    pub fn refresh_views(&self) -> Result<(), AnalyticsError> {
        // Creating a view reads every file's schema (union_by_name): under
        // the read lock, so compaction does not swap files meanwhile.
        let _guard = self.read_guard()?;
        for (stream, schema) in STREAMS {
            let dir = self.root.join(stream);
            let sql = if has_parquet(&dir)? {
                let glob = dir.join("date=*").join("*.parquet");
                format!(
                    "CREATE OR REPLACE VIEW {stream} AS SELECT * FROM read_parquet({}, hive_partitioning = true, union_by_name = true)",
                    sql_string(&glob.to_string_lossy())
                )
            } else {
                empty_view_sql(stream, &schema())?
            };
            self.conn
                .execute_batch(&sql)
                .map_err(|source| AnalyticsError::Duckdb {
                    doing: format!("creating the `{stream}` view over {}", dir.display()),
                    source,
                })?;
        }
        Ok(())
    }

    /// The connection, for queries. Hold [`Lake::read_guard`] across a
    /// query that must be consistent while ingest runs.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Takes the lake's shared lock (no lock file yet: nothing writes here).
    pub fn read_guard(&self) -> Result<ReadGuard, AnalyticsError> {
        let path = scopewatch_model::lake::lock_file(&self.data_dir);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ReadGuard { file: None })
            }
            Err(source) => return Err(AnalyticsError::Io { path, source }),
        };
        file.lock_shared()
            .map_err(|source| AnalyticsError::Io { path, source })?;
        Ok(ReadGuard { file: Some(file) })
    }

    /// Rows in one stream.
    pub fn row_count(&self, stream: &str) -> Result<u64, AnalyticsError> {
        let _guard = self.read_guard()?;
        let stream = STREAMS
            .iter()
            .map(|(s, _)| *s)
            .find(|s| *s == stream)
            .unwrap_or("auth");
        self.conn
            .query_row(&format!("SELECT count(*) FROM {stream}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n.max(0) as u64)
            .map_err(|source| AnalyticsError::Duckdb {
                doing: format!("counting rows of `{stream}`"),
                source,
            })
    }
}

fn has_parquet(dir: &Path) -> Result<bool, AnalyticsError> {
    let partitions = match std::fs::read_dir(dir) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(AnalyticsError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    for partition in partitions.flatten() {
        let name = partition.file_name();
        if !name.to_string_lossy().starts_with("date=") {
            continue;
        }
        let files = std::fs::read_dir(partition.path()).map_err(|source| AnalyticsError::Io {
            path: partition.path(),
            source,
        })?;
        if files
            .flatten()
            .any(|f| f.path().extension().is_some_and(|e| e == "parquet"))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A SQL string literal.
fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The DuckDB type DuckDB itself gives a Parquet column of this Arrow type.
fn duckdb_type(dt: &DataType) -> Option<String> {
    Some(match dt {
        DataType::Utf8 => "VARCHAR".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::UInt16 => "USMALLINT".into(),
        DataType::UInt64 => "UBIGINT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => "TIMESTAMP WITH TIME ZONE".into(),
        DataType::Timestamp(TimeUnit::Microsecond, None) => "TIMESTAMP".into(),
        DataType::List(field) => format!("{}[]", duckdb_type(field.data_type())?),
        _ => return None,
    })
}

/// An empty view with the stream's columns plus the `date` partition column.
fn empty_view_sql(stream: &str, schema: &SchemaRef) -> Result<String, AnalyticsError> {
    let mut columns = Vec::new();
    for field in schema.fields() {
        let ty = duckdb_type(field.data_type()).ok_or_else(|| AnalyticsError::UnmappedType {
            column: field.name().clone(),
            data_type: field.data_type().to_string(),
        })?;
        columns.push(format!("CAST(NULL AS {ty}) AS \"{}\"", field.name()));
    }
    columns.push("CAST(NULL AS DATE) AS \"date\"".into());
    Ok(format!(
        "CREATE OR REPLACE VIEW {stream} AS SELECT {} WHERE false",
        columns.join(", ")
    ))
}

// Ad-hoc queries (`scopewatch sql`): the lake locked down to reading, and
// results handed out as Arrow batches.

/// The Arrow crates DuckDB hands results in (`arrow::array`,
/// `arrow::datatypes`, `arrow::util::display`), for callers that format them.
pub use duckdb::arrow;

impl Lake {
    /// Confines this connection to reading the lake, once its views exist:
    /// DuckDB may then open files only under `<data>/lake/` (and its own
    /// private spill directory under the system temp dir), loads and
    /// installs no extension, and refuses every later `SET`, so none of
    /// this can be undone through the connection.
    ///
    /// What it does not do: it does not make SQL read-only (DuckDB's
    /// in-memory catalog still takes `CREATE TABLE`, and `COPY ... TO` a
    /// path under the lake would be allowed), so callers must still refuse
    /// statements that are not queries; it does not limit CPU time; and it
    /// does not hide anything inside the lake. [`Lake::refresh_views`]
    /// keeps working (the views read only the lake).
    pub fn restrict_to_lake(&self) -> Result<(), AnalyticsError> {
        let lake = if self.root.is_absolute() {
            self.root.clone()
        } else {
            std::env::current_dir()
                .map_err(|source| AnalyticsError::Io {
                    path: self.root.clone(),
                    source,
                })?
                .join(&self.root)
        };
        // A spill directory of our own instead of DuckDB's default `.tmp`
        // in the working directory; DuckDB creates it only when a query
        // spills and removes it when the connection closes.
        let spill = std::env::temp_dir().join(format!("scopewatch-sql-{}", std::process::id()));
        let settings = format!(
            "SET temp_directory = {spill}; \
             SET allowed_directories = [{lake}]; \
             SET autoinstall_known_extensions = false; \
             SET autoload_known_extensions = false; \
             SET enable_external_access = false; \
             SET lock_configuration = true;",
            spill = sql_string(&spill.to_string_lossy()),
            lake = sql_string(&lake.to_string_lossy()),
        );
        self.conn
            .execute_batch(&settings)
            .map_err(|source| AnalyticsError::Duckdb {
                doing: "restricting DuckDB to the lake".into(),
                source,
            })
    }

    /// Runs one statement and hands its result to `each`, a batch at a
    /// time, while holding the lake's read guard; `each` returns `false`
    /// to stop early. Returns the result's schema (also for zero rows).
    /// The caller decides what may run: this runs whatever it is given.
    pub fn query_batches(
        &self,
        sql: &str,
        mut each: impl FnMut(&SchemaRef, arrow::record_batch::RecordBatch) -> bool,
    ) -> Result<SchemaRef, AnalyticsError> {
        let _guard = self.read_guard()?;
        let failed = |source| AnalyticsError::Duckdb {
            doing: "running the query".into(),
            source,
        };
        let mut stmt = self.conn.prepare(sql).map_err(failed)?;
        let stream = stmt.stream_arrow([]).map_err(failed)?;
        let schema = stream.get_schema();
        for batch in stream {
            if !each(&schema, batch.map_err(failed)?) {
                break;
            }
        }
        Ok(schema)
    }
}
