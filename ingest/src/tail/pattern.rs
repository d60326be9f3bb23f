//! Which files a configured path stands for: a file, a directory (every
//! regular file in it) or a simple glob (`*` and `?` in the last component).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::error::TailError;

#[derive(Debug, Clone)]
pub(crate) enum Pattern {
    /// A file, or a directory when it is one at scan time.
    Path(PathBuf),
    /// Files in `dir` whose name matches `name`.
    Glob { dir: PathBuf, name: Vec<u8> },
}

impl Pattern {
    pub(crate) fn parse(s: &str) -> Result<Pattern, TailError> {
        if s.is_empty() {
            return Err(TailError::Config("an empty path was given".to_string()));
        }
        let path = PathBuf::from(s);
        let name = path.file_name().map(|n| n.as_bytes()).unwrap_or(b"");
        let dir = path.parent().unwrap_or(Path::new(""));
        if has_wildcard(dir.as_os_str().as_bytes()) {
            return Err(TailError::Config(format!(
                "path `{s}`: `*` and `?` are only supported in the last path component"
            )));
        }
        if has_wildcard(name) {
            let dir = if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir.to_path_buf()
            };
            Ok(Pattern::Glob {
                dir,
                name: name.to_vec(),
            })
        } else {
            Ok(Pattern::Path(path))
        }
    }

    /// Directories whose changes may concern this pattern (for notify).
    pub(crate) fn watch_dirs(&self) -> Vec<PathBuf> {
        match self {
            Pattern::Glob { dir, .. } => vec![dir.clone()],
            Pattern::Path(p) => {
                let mut v = vec![];
                if p.is_dir() {
                    v.push(p.clone());
                }
                match p.parent() {
                    Some(d) if !d.as_os_str().is_empty() => v.push(d.to_path_buf()),
                    _ => v.push(PathBuf::from(".")),
                }
                v
            }
        }
    }

    /// Whether a file at `path` would be found through this pattern.
    pub(crate) fn covers(&self, path: &Path) -> bool {
        match self {
            Pattern::Path(p) => {
                path == p || (path.parent() == Some(p.as_path()) && !is_hidden(path.file_name()))
            }
            Pattern::Glob { dir, name } => {
                path.parent().map(|d| same_dir(d, dir)).unwrap_or(false)
                    && path
                        .file_name()
                        .map(|n| glob_match(name, n.as_bytes()))
                        .unwrap_or(false)
            }
        }
    }

    /// Appends the regular files this pattern stands for now. Unreadable
    /// directories are reported once (through `warned`) and skipped.
    pub(crate) fn expand(&self, out: &mut Vec<(PathBuf, Metadata)>, warned: &mut HashSet<PathBuf>) {
        match self {
            Pattern::Path(p) => match fs::metadata(p) {
                Ok(m) if m.is_dir() => list_dir(p, |_| true, out, warned),
                Ok(m) if m.is_file() => out.push((p.clone(), m)),
                Ok(_) => {}
                Err(e) => note_error(p, &e, warned),
            },
            Pattern::Glob { dir, name } => {
                list_dir(dir, |n| glob_match(name, n.as_bytes()), out, warned)
            }
        }
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    let norm = |p: &Path| {
        if p.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            p.to_path_buf()
        }
    };
    norm(a) == norm(b)
}

fn has_wildcard(s: &[u8]) -> bool {
    s.iter().any(|&b| b == b'*' || b == b'?')
}

fn is_hidden(name: Option<&OsStr>) -> bool {
    name.map(|n| n.as_bytes().first() == Some(&b'.'))
        .unwrap_or(true)
}

fn note_error(path: &Path, e: &io::Error, warned: &mut HashSet<PathBuf>) {
    // A path that does not exist (yet) is normal: logs appear later.
    if e.kind() != io::ErrorKind::NotFound && warned.insert(path.to_path_buf()) {
        tracing::warn!(path = %path.display(), error = %e, "cannot look at a configured log path; skipping it until it becomes readable");
    }
}

fn list_dir(
    dir: &Path,
    keep: impl Fn(&OsStr) -> bool,
    out: &mut Vec<(PathBuf, Metadata)>,
    warned: &mut HashSet<PathBuf>,
) {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return note_error(dir, &e, warned),
    };
    let start = out.len();
    for entry in entries.flatten() {
        let name = entry.file_name();
        // Hidden files are skipped as a shell glob would: they are editor
        // swap files, our own `.tmp` files and the like, not logs.
        if is_hidden(Some(&name)) || !keep(&name) {
            continue;
        }
        let path = entry.path();
        // Follow symlinks: a link to a log is tailed as the log.
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => out.push((path, m)),
            Ok(_) => {}
            Err(e) => note_error(&path, &e, warned),
        }
    }
    // Directory order is arbitrary; sorting makes scans deterministic.
    out[start..].sort_by(|a, b| a.0.cmp(&b.0));
}

/// Shell-style match of `*` (any run) and `?` (one byte) against a name; a
/// leading `.` is only matched literally.
pub(crate) fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    if name.first() == Some(&b'.') && pattern.first() != Some(&b'.') {
        return false;
    }
    // Iterative matcher with one backtrack point: linear-ish, no recursion.
    let (mut p, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    while p < pattern.len() && pattern[p] == b'*' {
        p += 1;
    }
    p == pattern.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(b"*.log*", b"app.log"));
        assert!(glob_match(b"*.log*", b"app.log.2.gz"));
        assert!(!glob_match(b"*.log*", b"app.txt"));
        assert!(glob_match(b"app.log.?", b"app.log.1"));
        assert!(!glob_match(b"app.log.?", b"app.log.12"));
        assert!(glob_match(b"*", b"x"));
        assert!(!glob_match(b"*", b".hidden"));
        assert!(glob_match(b".*", b".hidden"));
        assert!(glob_match(b"a*b*c", b"aXXbYYc"));
        assert!(!glob_match(b"a*b*c", b"aXXbYY"));
    }

    #[test]
    fn parse_rejects_wildcards_in_directories() {
        assert!(matches!(
            Pattern::parse("/var/*/app.log"),
            Err(TailError::Config(_))
        ));
        assert!(matches!(
            Pattern::parse("/var/log/*.log"),
            Ok(Pattern::Glob { .. })
        ));
        assert!(matches!(Pattern::parse("app.log"), Ok(Pattern::Path(_))));
        let g = Pattern::parse("/var/log/kc/*.log*").unwrap();
        assert!(g.covers(Path::new("/var/log/kc/app.log.1.gz")));
        assert!(!g.covers(Path::new("/var/log/other/app.log")));
    }
}
