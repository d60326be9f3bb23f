//! Newline search and the batch a read hands out: one buffer for all line
//! bytes plus a small entry per line, so reading costs no allocation per line.

use std::path::{Path, PathBuf};

/// Index of the first `\n` in `hay`. Word-at-a-time (SWAR) scan, several
/// times faster than a byte loop; `memchr` is not a dependency of this crate.
pub(crate) fn find_newline(hay: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = 0x0a0a_0a0a_0a0a_0a0a;
    // Nonzero iff a byte of `w` is zero; the lowest flagged byte is exact.
    #[inline(always)]
    fn zero_bytes(w: u64) -> u64 {
        w.wrapping_sub(LO) & !w & HI
    }
    let mut chunks = hay.chunks_exact(16);
    let mut base = 0usize;
    for c in &mut chunks {
        let a = u64::from_le_bytes(c[..8].try_into().expect("8 bytes")) ^ NL;
        let b = u64::from_le_bytes(c[8..].try_into().expect("8 bytes")) ^ NL;
        let (za, zb) = (zero_bytes(a), zero_bytes(b));
        if (za | zb) != 0 {
            return Some(if za != 0 {
                base + (za.trailing_zeros() / 8) as usize
            } else {
                base + 8 + (zb.trailing_zeros() / 8) as usize
            });
        }
        base += 16;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'\n')
        .map(|p| base + p)
}

/// One line, owning its bytes (see [`Batch::into_lines`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The file's logical identity (stable across rename, copy, gzip).
    pub file_key: String,
    /// Where it was read from.
    pub path: PathBuf,
    /// Byte offset of the line's start (decompressed bytes for `.gz`).
    pub offset: u64,
    /// Offset after its newline: where the next line starts.
    pub end: u64,
    /// The line without its newline and trailing `\r`; at most
    /// `max_line_bytes` long.
    pub bytes: Vec<u8>,
    /// The line was longer than `max_line_bytes` and `bytes` is its start.
    pub oversized: bool,
    /// The full length of the line (without newline and `\r`).
    pub full_len: u64,
}

/// One line, borrowed from a [`Batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineRef<'a> {
    pub file_key: &'a str,
    pub path: &'a Path,
    pub offset: u64,
    pub end: u64,
    pub bytes: &'a [u8],
    pub oversized: bool,
    pub full_len: u64,
}

impl LineRef<'_> {
    pub fn to_line(&self) -> Line {
        Line {
            file_key: self.file_key.to_string(),
            path: self.path.to_path_buf(),
            offset: self.offset,
            end: self.end,
            bytes: self.bytes.to_vec(),
            oversized: self.oversized,
            full_len: self.full_len,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub file: u32,
    pub offset: u64,
    pub end: u64,
    pub start: usize,
    pub len: usize,
    pub oversized: bool,
    pub full_len: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct FileRef {
    pub key: String,
    pub path: PathBuf,
}

/// The complete lines one [`Tailer::read_available`](super::Tailer::read_available)
/// call found, in file order and, within a file, in offset order.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub(crate) data: Vec<u8>,
    pub(crate) files: Vec<FileRef>,
    pub(crate) lines: Vec<Entry>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The `i`-th line.
    pub fn get(&self, i: usize) -> Option<LineRef<'_>> {
        self.lines.get(i).map(|e| self.view(e))
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = LineRef<'_>> + '_ {
        self.lines.iter().map(move |e| self.view(e))
    }

    /// Total bytes of line content in the batch.
    pub fn content_bytes(&self) -> usize {
        self.lines.iter().map(|e| e.len).sum()
    }

    /// Copies every line out into owned [`Line`]s.
    pub fn into_lines(self) -> Vec<Line> {
        self.iter().map(|l| l.to_line()).collect()
    }

    fn view<'a>(&'a self, e: &Entry) -> LineRef<'a> {
        let f = &self.files[e.file as usize];
        LineRef {
            file_key: &f.key,
            path: &f.path,
            offset: e.offset,
            end: e.end,
            bytes: &self.data[e.start..e.start + e.len],
            oversized: e.oversized,
            full_len: e.full_len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_newlines_everywhere() {
        for len in 0..70 {
            for at in 0..len {
                let mut v = vec![b'a'; len];
                v[at] = b'\n';
                if at + 1 < len {
                    v[len - 1] = b'\n';
                }
                assert_eq!(find_newline(&v), Some(at), "len {len} at {at}");
            }
            assert_eq!(find_newline(&vec![b'a'; len]), None);
        }
        // Bytes that trip naive SWAR checks (0x8a, 0x0b, 0x09) are not newlines.
        let v = [
            0x8a, 0x0b, 0x09, 0xff, 0x00, 0x8a, 0x0a, 0x0a, 1, 2, 3, 4, 5, 6, 7, 8, 9,
        ];
        assert_eq!(find_newline(&v), Some(6));
    }
}
