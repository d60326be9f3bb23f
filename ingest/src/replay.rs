//! Reads committed events back out of the lake, a day at a time, for the
//! rules (backtest, and catching up after a restart). Files are listed and
//! opened under the lake's shared lock, so compaction never shows a day
//! twice or not at all; an open file stays readable after compaction
//! removes its name.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use scopewatch_model::events::{AccessEvent, AuthEvent};

use crate::lake::{LakeError, LakeLock};

/// Reading the lake back failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("{path}: cannot read it back: {message}")]
    File { path: PathBuf, message: String },
}

/// The days (`YYYY-MM-DD`) either stream holds, in order.
pub fn days(data_dir: &Path) -> Result<Vec<String>, ReplayError> {
    let lake = scopewatch_model::lake::lake_dir(data_dir);
    let mut out = Vec::new();
    for stream in [AuthEvent::STREAM, AccessEvent::STREAM] {
        let Ok(dir) = fs::read_dir(lake.join(stream)) else {
            continue;
        };
        for entry in dir.flatten() {
            if let Some(day) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("date="))
            {
                out.push(day.to_string());
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Every committed event of day `date` (`YYYY-MM-DD`), in file order.
pub fn read_day(
    data_dir: &Path,
    date: &str,
) -> Result<(Vec<AuthEvent>, Vec<AccessEvent>), ReplayError> {
    let lake = scopewatch_model::lake::lake_dir(data_dir);
    let open = |stream: &str| -> Result<Vec<(PathBuf, File)>, ReplayError> {
        let dir = lake.join(stream).join(format!("date={date}"));
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut names: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|p| {
                File::open(&p)
                    .map(|f| (p.clone(), f))
                    .map_err(|e| ReplayError::File {
                        path: p,
                        message: e.to_string(),
                    })
            })
            .collect()
    };
    let (auth_files, access_files) = {
        let _lock = LakeLock::shared(data_dir)?;
        (open(AuthEvent::STREAM)?, open(AccessEvent::STREAM)?)
    };
    let mut auth = Vec::new();
    for (path, file) in auth_files {
        for batch in batches(&path, file)? {
            auth.extend(
                AuthEvent::from_batch(&batch).map_err(|e| ReplayError::File {
                    path: path.clone(),
                    message: e.to_string(),
                })?,
            );
        }
    }
    let mut access = Vec::new();
    for (path, file) in access_files {
        for batch in batches(&path, file)? {
            access.extend(
                AccessEvent::from_batch(&batch).map_err(|e| ReplayError::File {
                    path: path.clone(),
                    message: e.to_string(),
                })?,
            );
        }
    }
    Ok((auth, access))
}

fn batches(path: &Path, file: File) -> Result<Vec<arrow_array::RecordBatch>, ReplayError> {
    let err = |message: String| ReplayError::File {
        path: path.to_path_buf(),
        message,
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| err(e.to_string()))?
        .with_batch_size(8192)
        .build()
        .map_err(|e| err(e.to_string()))?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))
}
