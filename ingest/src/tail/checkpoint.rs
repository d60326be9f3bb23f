//! Tail positions as a small versioned JSON document.
//!
//! The tailer never writes this on its own: the caller stores it (with
//! [`Checkpoints::store_atomic`] or inside its own journal via
//! [`Checkpoints::to_json`]) only once the lines before each position are
//! durable. Nothing of a file's content is kept here, only its path and a
//! hash of its first line (the key).

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::TailError;

/// The format version [`Checkpoints::to_json`] writes and `from_json` accepts.
pub const CHECKPOINT_VERSION: u64 = 1;

/// The position in one logical log file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePosition {
    /// The file's logical identity: a truncated SHA-256 of its first line.
    /// Renamed, copied and compressed copies share it.
    pub key: String,
    /// The path the file was last seen at (informational, and used to tell
    /// which configured paths are resumed rather than new).
    pub path: String,
    /// Device and inode of the file the position was last advanced in
    /// (a stored offset beyond the end of that same inode means it was
    /// truncated; beyond the end of a copy, that the copy has nothing more).
    pub dev: u64,
    pub inode: u64,
    /// Byte offset after the last delivered line (decompressed bytes for a
    /// `.gz`).
    pub offset: u64,
    /// The position was last advanced in a gzip-compressed copy.
    pub gz: bool,
    /// A `.gz` copy was read to its end: nothing more will come of it.
    pub done: bool,
    /// Unix seconds since when no watched file has this key; the record is
    /// dropped once older than the retention period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gone_since: Option<u64>,
}

/// The positions of all known files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoints {
    /// One entry per key, sorted by key.
    pub files: Vec<FilePosition>,
}

#[derive(Serialize)]
struct DocOut<'a> {
    version: u64,
    files: &'a [FilePosition],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DocIn {
    #[allow(dead_code)]
    version: u64,
    files: Vec<FilePosition>,
}

impl Checkpoints {
    /// No positions: every file is new.
    pub fn empty() -> Checkpoints {
        Checkpoints::default()
    }

    /// The position recorded for `key`, if any.
    pub fn get(&self, key: &str) -> Option<&FilePosition> {
        self.files.iter().find(|f| f.key == key)
    }

    /// Serialises to the versioned JSON document. Pure: no IO.
    pub fn to_json(&self) -> String {
        let mut files = self.files.clone();
        files.sort_by(|a, b| a.key.cmp(&b.key));
        let doc = DocOut {
            version: CHECKPOINT_VERSION,
            files: &files,
        };
        // Plain strings and integers only: serialisation cannot fail.
        serde_json::to_string(&doc).expect("checkpoint serialises")
    }

    /// Parses a document written by [`Checkpoints::to_json`]. Pure: no IO.
    pub fn from_json(json: &str) -> Result<Checkpoints, TailError> {
        Self::parse(json, "JSON")
    }

    fn parse(json: &str, origin: &str) -> Result<Checkpoints, TailError> {
        let corrupt = |message: String| TailError::CheckpointCorrupt {
            origin: origin.to_string(),
            message,
        };
        // The version is checked before the shape, so that a newer format
        // is reported as such and not as corruption.
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| corrupt(format!("not JSON: {e}")))?;
        let version = value
            .get("version")
            .ok_or_else(|| corrupt("no `version` field".to_string()))?;
        if version.as_u64() != Some(CHECKPOINT_VERSION) {
            return Err(TailError::CheckpointVersion {
                origin: origin.to_string(),
                found: version.to_string(),
            });
        }
        let doc: DocIn = serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
        let mut keys = HashSet::new();
        for f in &doc.files {
            if f.key.is_empty() {
                return Err(corrupt("a file has an empty key".to_string()));
            }
            if !keys.insert(f.key.as_str()) {
                return Err(corrupt(format!("key {} appears twice", f.key)));
            }
        }
        Ok(Checkpoints { files: doc.files })
    }

    /// Reads the checkpoint file at `path`. A missing file is an empty
    /// checkpoint (first run); anything unreadable or invalid is an error,
    /// never silently empty, because that would re-read or skip everything.
    pub fn load(path: impl AsRef<Path>) -> Result<Checkpoints, TailError> {
        let path = path.as_ref();
        match fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Checkpoints::empty()),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(TailError::CheckpointCorrupt {
                origin: path.display().to_string(),
                message: "not UTF-8".to_string(),
            }),
            Err(source) => Err(TailError::CheckpointRead {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes the checkpoint so that `path` holds either the old or the new
    /// document after a crash: write `<path>.tmp`, fsync it, rename it over
    /// `path`, fsync the directory (so the rename itself is durable).
    pub fn store_atomic(&self, path: impl AsRef<Path>) -> Result<(), TailError> {
        let path = path.as_ref();
        let err = |source| TailError::CheckpointWrite {
            path: path.to_path_buf(),
            source,
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .map_err(err)?;
            f.write_all(self.to_json().as_bytes()).map_err(err)?;
            f.sync_all().map_err(err)?;
        }
        fs::rename(&tmp, path).map_err(err)?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
        Ok(())
    }
}
