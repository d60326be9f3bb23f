//! A file's logical identity: the SHA-256 of its first line (newline
//! included), or of its first 4096 bytes when that line is longer. Renamed,
//! copied and compressed copies share it; a truncated or replaced file gets
//! a new one as soon as its new first line is complete.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;

use flate2::bufread::MultiGzDecoder;
use sha2::{Digest, Sha256};

use super::split::find_newline;

/// At most this many leading bytes identify a file.
pub(crate) const FINGERPRINT_MAX: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    /// 16 hex digits (64 bits) of the SHA-256.
    pub key: String,
    /// How many leading bytes it covers.
    pub len: usize,
}

/// The fingerprint of a file starting with `prefix` (its first bytes, up to
/// `FINGERPRINT_MAX`), or `None` while its first line is incomplete.
pub(crate) fn of_prefix(prefix: &[u8]) -> Option<Fingerprint> {
    let prefix = &prefix[..prefix.len().min(FINGERPRINT_MAX)];
    let len = match find_newline(prefix) {
        Some(i) => i + 1,
        None if prefix.len() == FINGERPRINT_MAX => FINGERPRINT_MAX,
        None => return None,
    };
    Some(Fingerprint {
        key: hash(&prefix[..len]),
        len,
    })
}

fn hash(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}

/// Reads up to `n` bytes at offset 0 without moving the file's cursor.
fn read_head(file: &File, n: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// Fingerprint of a plain file (positional read: the cursor is untouched).
pub(crate) fn plain(file: &File) -> io::Result<Option<Fingerprint>> {
    Ok(of_prefix(&read_head(file, FINGERPRINT_MAX)?))
}

/// Whether the first `fp.len` bytes of `file` still hash to `fp.key`, i.e.
/// the file still starts with the same first line.
pub(crate) fn still_matches(file: &File, len: usize, key: &str) -> io::Result<bool> {
    let head = read_head(file, len)?;
    Ok(head.len() == len && hash(&head) == key)
}

/// Fingerprint of a gzip file over its decompressed content. Moves the
/// file's cursor; the caller seeks back before reading. A stream cut short
/// (still being written) yields what it decompressed so far.
pub(crate) fn gz(file: &File) -> io::Result<Option<Fingerprint>> {
    let mut dec = MultiGzDecoder::new(BufReader::with_capacity(16 * 1024, file));
    let mut buf = vec![0u8; FINGERPRINT_MAX];
    let mut got = 0;
    while got < FINGERPRINT_MAX {
        match dec.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => {
                got += k;
                if find_newline(&buf[..got]).is_some() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
    }
    Ok(of_prefix(&buf[..got]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_or_cap() {
        assert_eq!(of_prefix(b"abc"), None);
        let a = of_prefix(b"abc\ndef").unwrap();
        assert_eq!(a.len, 4);
        assert_eq!(a.key.len(), 16);
        assert_eq!(of_prefix(b"abc\nxyz\n").unwrap(), a);
        assert_ne!(of_prefix(b"abd\n").unwrap().key, a.key);
        let long = vec![b'x'; FINGERPRINT_MAX + 10];
        assert_eq!(of_prefix(&long).unwrap().len, FINGERPRINT_MAX);
        assert_eq!(of_prefix(&long[..FINGERPRINT_MAX - 1]), None);
    }
}
