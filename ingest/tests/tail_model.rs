//! Model-based test of the tailer: a real directory is driven through random
//! sequences of appends (empty lines, CRLF, long lines, partial lines
//! completed later), rename rotation, copy-truncate rotation, truncation,
//! gzip compression of rotated files, deletion, renames of rotated files,
//! reads, commits and process restarts. A simulated lake keeps the lines
//! delivered since the last commit as pending and makes them durable
//! together with the checkpoint on commit; a restart discards pending lines
//! and starts a new tailer from the last committed checkpoint.
//!
//! Checked at every line: it is a line that was written, with the right
//! content, offset and end; each generation of `app.log` has one key and
//! keys are not shared; lines of a key arrive contiguously (each starts where
//! the previous ended, or at the committed position after a restart); a
//! line re-read after a restart has the same key and offset. At every
//! commit: the positions equal the ends of the delivered lines, and the
//! checkpoint holds no content. At the end: the durable lines are every
//! written line, each exactly once (lines lost to a copy-truncate race, see
//! `RotateCopyTruncateRacy`, at most once).
//!
//! The rule the generator follows (inherent to tailing, not a tailer
//! choice): data is destroyed (truncation, deletion of a file that is the
//! only copy) only once it is durable. A line the tailer has read but not
//! committed is lost if its only copy is destroyed and the process restarts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flate2::write::GzEncoder;
use flate2::Compression;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use scopewatch_ingest::tail::{Checkpoints, LineRef, TailConfig, Tailer};

#[derive(Debug, Clone)]
enum Op {
    Append {
        n: u8,
        seed: u64,
    },
    Partial {
        seed: u64,
    },
    Complete,
    Read,
    Commit,
    Restart,
    RotateRename,
    RotateCopyTruncate,
    /// Copy-truncate with lines written between the copy and the truncate:
    /// they are in neither file afterwards, so they are delivered only if
    /// the tailer read them from the original in time (at most once).
    RotateCopyTruncateRacy {
        n: u8,
        seed: u64,
        read_between: bool,
    },
    Truncate,
    Compress {
        pick: u8,
        in_two_writes: bool,
    },
    DeleteRotated {
        pick: u8,
    },
    RenameRotated {
        pick: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..12, any::<u64>()).prop_map(|(n, seed)| Op::Append { n, seed }),
        2 => any::<u64>().prop_map(|seed| Op::Partial { seed }),
        1 => Just(Op::Complete),
        6 => Just(Op::Read),
        3 => Just(Op::Commit),
        2 => Just(Op::Restart),
        2 => Just(Op::RotateRename),
        2 => Just(Op::RotateCopyTruncate),
        1 => (1u8..4, any::<u64>(), any::<bool>()).prop_map(|(n, seed, read_between)| {
            Op::RotateCopyTruncateRacy { n, seed, read_between }
        }),
        1 => Just(Op::Truncate),
        2 => (any::<u8>(), any::<bool>())
            .prop_map(|(pick, in_two_writes)| Op::Compress { pick, in_two_writes }),
        2 => any::<u8>().prop_map(|pick| Op::DeleteRotated { pick }),
        1 => any::<u8>().prop_map(|pick| Op::RenameRotated { pick }),
    ]
}

#[derive(Debug, Clone)]
struct Setup {
    batch_bytes: usize,
    max_line_bytes: usize,
    rotate_wait: Duration,
    notify: bool,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        prop_oneof![Just(200usize), Just(4096), Just(1 << 20)],
        prop_oneof![Just(1000usize), Just(1 << 20)],
        prop_oneof![Just(Duration::ZERO), Just(Duration::from_secs(5))],
        any::<bool>(),
    )
        .prop_map(|(batch_bytes, max_line_bytes, rotate_wait, notify)| Setup {
            batch_bytes,
            max_line_bytes,
            rotate_wait,
            notify,
        })
}

/// One line written to the model.
#[derive(Debug)]
struct Written {
    content: String,
    generation: usize,
    offset: u64,
    end: u64,
}

/// One incarnation of `app.log`: what was written to it, by offset.
#[derive(Debug, Default)]
struct Generation {
    by_offset: BTreeMap<u64, usize>,
    len: u64,
}

/// A rotated file: a generation's first `len` bytes, plain or gzipped.
#[derive(Debug)]
struct Rotated {
    generation: usize,
    len: u64,
    gz: bool,
}

struct Harness {
    dir: tempfile::TempDir,
    live: PathBuf,
    cfg: TailConfig,
    tailer: Option<Tailer>,
    written: Vec<Written>,
    gens: Vec<Generation>,
    live_gen: Option<usize>,
    rotated: BTreeMap<String, Rotated>,
    next_rot: u32,
    /// Lines lost to a copy-truncate race: delivered at most once.
    racy: HashSet<usize>,
    /// A line of the live file written in part: its index and the rest.
    partial: Option<(usize, Vec<u8>)>,
    // The simulated lake.
    pending: Vec<usize>,
    durable: Vec<usize>,
    durable_set: HashSet<usize>,
    committed: String,
    // What the checker learnt.
    key_gen: HashMap<String, usize>,
    gen_key: HashMap<usize, String>,
    next: HashMap<String, u64>,
    first_seen: HashMap<usize, (String, u64)>,
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

/// The sequence number a line's content starts with (`line#N:`).
fn seq_of(bytes: &[u8]) -> Option<usize> {
    let rest = bytes.strip_prefix(b"line#")?;
    let colon = rest.iter().position(|&b| b == b':')?;
    std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()
}

impl Harness {
    fn new(s: &Setup) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("app.log");
        let cfg = TailConfig {
            paths: vec![dir.path().join("app.log*").display().to_string()],
            max_line_bytes: s.max_line_bytes,
            // Scan at every read: the test does not wait for the clock.
            poll_interval: Duration::ZERO,
            batch_bytes: s.batch_bytes,
            rotate_wait: s.rotate_wait,
            notify: s.notify,
            ..TailConfig::default()
        };
        let committed = Checkpoints::empty().to_json();
        let tailer = Tailer::new(cfg.clone(), Checkpoints::empty()).unwrap();
        Harness {
            dir,
            live,
            cfg,
            tailer: Some(tailer),
            written: Vec::new(),
            gens: Vec::new(),
            live_gen: None,
            rotated: BTreeMap::new(),
            next_rot: 1,
            racy: HashSet::new(),
            partial: None,
            pending: Vec::new(),
            durable: Vec::new(),
            durable_set: HashSet::new(),
            committed,
            key_gen: HashMap::new(),
            gen_key: HashMap::new(),
            next: HashMap::new(),
            first_seen: HashMap::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Registers a new line at the end of the live file and returns its
    /// bytes. The first line of a file is never empty: files are told apart
    /// by their first line.
    fn new_line(&mut self, rng: &mut StdRng) -> (usize, Vec<u8>) {
        let g = match self.live_gen {
            Some(g) => g,
            None => {
                self.gens.push(Generation::default());
                self.live_gen = Some(self.gens.len() - 1);
                self.gens.len() - 1
            }
        };
        let seq = self.written.len();
        let first = self.gens[g].len == 0;
        let content = if !first && rng.random_bool(0.12) {
            String::new()
        } else {
            let len = if rng.random_bool(0.05) {
                rng.random_range(900..3000)
            } else {
                rng.random_range(0..200)
            };
            let payload: String = (0..len)
                .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
                .collect();
            format!("line#{seq}:{payload}")
        };
        let mut bytes = content.clone().into_bytes();
        if rng.random_bool(0.1) {
            bytes.push(b'\r');
        }
        bytes.push(b'\n');
        let offset = self.gens[g].len;
        let end = offset + bytes.len() as u64;
        self.gens[g].len = end;
        self.gens[g].by_offset.insert(offset, seq);
        self.written.push(Written {
            content,
            generation: g,
            offset,
            end,
        });
        (seq, bytes)
    }

    fn complete(&mut self) {
        if let Some((_, rest)) = self.partial.take() {
            append_bytes(&self.live, &rest);
        }
    }

    fn all_durable(&self, generation: usize, len: u64) -> bool {
        self.gens[generation]
            .by_offset
            .values()
            .all(|&i| self.written[i].end > len || self.durable_set.contains(&i))
    }

    fn check(&mut self, l: LineRef<'_>) {
        let gen = match self.key_gen.get(l.file_key) {
            Some(&g) => g,
            None => {
                assert_eq!(l.offset, 0, "key {} first seen mid-file", l.file_key);
                let seq = seq_of(l.bytes).unwrap_or_else(|| {
                    panic!(
                        "first line of key {} is not a written first line",
                        l.file_key
                    )
                });
                let g = self.written[seq].generation;
                if let Some(k) = self.gen_key.get(&g) {
                    panic!("generation {g} has two keys: {k} and {}", l.file_key);
                }
                self.key_gen.insert(l.file_key.to_string(), g);
                self.gen_key.insert(g, l.file_key.to_string());
                g
            }
        };
        let seq = *self.gens[gen].by_offset.get(&l.offset).unwrap_or_else(|| {
            panic!(
                "no line was written at offset {} of generation {gen} (key {}, path {})",
                l.offset,
                l.file_key,
                l.path.display()
            )
        });
        let w = &self.written[seq];
        let max = self.cfg.max_line_bytes;
        let want = &w.content.as_bytes()[..w.content.len().min(max)];
        assert!(
            l.bytes == want,
            "line {seq} delivered as {:?}",
            String::from_utf8_lossy(l.bytes)
        );
        assert_eq!(l.end, w.end, "end of line {seq}");
        assert_eq!(
            l.oversized,
            w.content.len() > max,
            "oversized flag of line {seq}"
        );
        assert_eq!(
            l.full_len,
            w.content.len() as u64,
            "full length of line {seq}"
        );
        let expected = self.next.get(l.file_key).copied().unwrap_or(0);
        assert_eq!(
            l.offset, expected,
            "key {} not contiguous: line {seq} at {} but the previous line ended at {expected}",
            l.file_key, l.offset
        );
        self.next.insert(l.file_key.to_string(), l.end);
        let pos = (l.file_key.to_string(), l.offset);
        if let Some(prev) = self.first_seen.get(&seq) {
            assert_eq!(*prev, pos, "line {seq} re-read under another key or offset");
        } else {
            self.first_seen.insert(seq, pos);
        }
        self.pending.push(seq);
    }

    fn read(&mut self) -> usize {
        let batch = self.tailer.as_mut().unwrap().read_available().unwrap();
        for l in batch.iter() {
            self.check(l);
        }
        batch.len()
    }

    fn commit(&mut self) {
        let positions = self.tailer.as_ref().unwrap().positions();
        for (key, &end) in &self.next {
            let p = positions
                .get(key)
                .unwrap_or_else(|| panic!("no position for delivered key {key}"));
            assert_eq!(p.offset, end, "position of key {key}");
        }
        let json = positions.to_json();
        assert!(!json.contains("line#"), "checkpoint holds content: {json}");
        for &i in &self.pending {
            self.durable_set.insert(i);
        }
        self.durable.append(&mut self.pending);
        self.committed = json;
    }

    fn restart(&mut self) {
        self.tailer = None;
        self.pending.clear();
        let ck = Checkpoints::from_json(&self.committed).unwrap();
        self.next = ck.files.iter().map(|f| (f.key.clone(), f.offset)).collect();
        self.tailer = Some(Tailer::new(self.cfg.clone(), ck).unwrap());
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Append { n, seed } => {
                self.complete();
                let mut rng = StdRng::seed_from_u64(seed);
                let mut buf = Vec::new();
                for _ in 0..n {
                    buf.extend(self.new_line(&mut rng).1);
                }
                append_bytes(&self.live, &buf);
            }
            Op::Partial { seed } => {
                self.complete();
                let mut rng = StdRng::seed_from_u64(seed);
                let (seq, bytes) = self.new_line(&mut rng);
                let cut = rng.random_range(1..bytes.len().max(2)).min(bytes.len());
                append_bytes(&self.live, &bytes[..cut]);
                self.partial = Some((seq, bytes[cut..].to_vec()));
            }
            Op::Complete => self.complete(),
            Op::Read => {
                self.read();
            }
            Op::Commit => self.commit(),
            Op::Restart => self.restart(),
            Op::RotateRename => {
                self.complete();
                let Some(g) = self.live_gen else { return };
                let name = format!("app.log.{}", self.next_rot);
                self.next_rot += 1;
                fs::rename(&self.live, self.path(&name)).unwrap();
                let len = self.gens[g].len;
                self.rotated.insert(
                    name,
                    Rotated {
                        generation: g,
                        len,
                        gz: false,
                    },
                );
                self.live_gen = None;
            }
            Op::RotateCopyTruncate => {
                self.complete();
                let Some(g) = self.live_gen else { return };
                if self.gens[g].len == 0 {
                    return;
                }
                let name = format!("app.log.{}", self.next_rot);
                self.next_rot += 1;
                fs::copy(&self.live, self.path(&name)).unwrap();
                OpenOptions::new()
                    .write(true)
                    .open(&self.live)
                    .unwrap()
                    .set_len(0)
                    .unwrap();
                let len = self.gens[g].len;
                self.rotated.insert(
                    name,
                    Rotated {
                        generation: g,
                        len,
                        gz: false,
                    },
                );
                self.gens.push(Generation::default());
                self.live_gen = Some(self.gens.len() - 1);
            }
            Op::RotateCopyTruncateRacy {
                n,
                seed,
                read_between,
            } => {
                self.complete();
                let Some(g) = self.live_gen else { return };
                if self.gens[g].len == 0 {
                    return;
                }
                let name = format!("app.log.{}", self.next_rot);
                self.next_rot += 1;
                fs::copy(&self.live, self.path(&name)).unwrap();
                let len = self.gens[g].len;
                let mut rng = StdRng::seed_from_u64(seed);
                let mut buf = Vec::new();
                for _ in 0..n {
                    let (seq, bytes) = self.new_line(&mut rng);
                    self.racy.insert(seq);
                    buf.extend(bytes);
                }
                append_bytes(&self.live, &buf);
                if read_between {
                    self.read();
                }
                OpenOptions::new()
                    .write(true)
                    .open(&self.live)
                    .unwrap()
                    .set_len(0)
                    .unwrap();
                self.rotated.insert(
                    name,
                    Rotated {
                        generation: g,
                        len,
                        gz: false,
                    },
                );
                self.gens.push(Generation::default());
                self.live_gen = Some(self.gens.len() - 1);
            }
            Op::Truncate => {
                self.complete();
                let Some(g) = self.live_gen else { return };
                if !self.all_durable(g, self.gens[g].len) {
                    return;
                }
                OpenOptions::new()
                    .write(true)
                    .open(&self.live)
                    .unwrap()
                    .set_len(0)
                    .unwrap();
                self.gens.push(Generation::default());
                self.live_gen = Some(self.gens.len() - 1);
            }
            Op::Compress {
                pick,
                in_two_writes,
            } => {
                let plain: Vec<String> = self
                    .rotated
                    .iter()
                    .filter(|(_, r)| !r.gz)
                    .map(|(n, _)| n.clone())
                    .collect();
                if plain.is_empty() {
                    return;
                }
                let name = plain[pick as usize % plain.len()].clone();
                let gz = gzip(&fs::read(self.path(&name)).unwrap());
                let gz_name = format!("{name}.gz");
                if in_two_writes {
                    // gzip writes its output in place: the tailer may look
                    // at a half-written archive.
                    fs::write(self.path(&gz_name), &gz[..gz.len() / 2]).unwrap();
                    self.read();
                }
                fs::write(self.path(&gz_name), &gz).unwrap();
                fs::remove_file(self.path(&name)).unwrap();
                let mut r = self.rotated.remove(&name).unwrap();
                r.gz = true;
                self.rotated.insert(gz_name, r);
            }
            Op::DeleteRotated { pick } => {
                let done: Vec<String> = self
                    .rotated
                    .iter()
                    .filter(|(_, r)| self.all_durable(r.generation, r.len))
                    .map(|(n, _)| n.clone())
                    .collect();
                if done.is_empty() {
                    return;
                }
                let name = &done[pick as usize % done.len()];
                fs::remove_file(self.path(name)).unwrap();
                self.rotated.remove(name);
            }
            Op::RenameRotated { pick } => {
                if self.rotated.is_empty() {
                    return;
                }
                let names: Vec<String> = self.rotated.keys().cloned().collect();
                let name = names[pick as usize % names.len()].clone();
                let r = self.rotated.remove(&name).unwrap();
                let mut new_name = format!("app.log.{}", self.next_rot);
                self.next_rot += 1;
                if r.gz {
                    new_name.push_str(".gz");
                }
                fs::rename(self.path(&name), self.path(&new_name)).unwrap();
                self.rotated.insert(new_name, r);
            }
        }
    }

    fn finish(&mut self) {
        self.complete();
        let mut empty = 0;
        for _ in 0..1_000_000 {
            if self.read() == 0 && !self.tailer.as_ref().unwrap().more_available() {
                empty += 1;
                if empty >= 3 {
                    break;
                }
            } else {
                empty = 0;
            }
        }
        self.commit();

        let mut count = vec![0u32; self.written.len()];
        for &i in &self.durable {
            count[i] += 1;
        }
        for (i, &c) in count.iter().enumerate() {
            if c != 1 && !(c == 0 && self.racy.contains(&i)) {
                let w = &self.written[i];
                panic!(
                    "line {i} is durable {c} times (generation {}, offset {}, content {:?}); \
                     rotated files now: {:?}",
                    w.generation,
                    w.offset,
                    &w.content[..w.content.len().min(40)],
                    self.rotated
                );
            }
        }
    }
}

fn run(setup: &Setup, ops: &[Op]) {
    let mut h = Harness::new(setup);
    for op in ops {
        h.apply(op);
    }
    h.finish();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        // Regressions are reported in the failure message; no file is
        // written next to the test.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn nothing_lost_nothing_duplicated(
        setup in setup(),
        ops in prop::collection::vec(op(), 1..120),
    ) {
        run(&setup, &ops);
    }
}

/// A fixed scenario covering every operation in turn, so a regression in
/// one of them fails here even if the random cases miss it.
#[test]
fn every_operation_in_turn() {
    let setup = Setup {
        batch_bytes: 200,
        max_line_bytes: 1000,
        rotate_wait: Duration::ZERO,
        notify: false,
    };
    use Op::*;
    let ops = [
        Append { n: 5, seed: 1 },
        Read,
        Partial { seed: 2 },
        Read,
        Commit,
        Complete,
        RotateRename,
        Append { n: 3, seed: 3 },
        Compress {
            pick: 0,
            in_two_writes: true,
        },
        Restart,
        Read,
        Append { n: 4, seed: 4 },
        RotateCopyTruncate,
        Append { n: 2, seed: 5 },
        Compress {
            pick: 0,
            in_two_writes: false,
        },
        Read,
        Restart,
        Read,
        Read,
        Read,
        Commit,
        DeleteRotated { pick: 0 },
        RenameRotated { pick: 0 },
        Read,
        Read,
        Read,
        Commit,
        Truncate,
        Append { n: 3, seed: 6 },
        Restart,
    ];
    run(&setup, &ops);
}

/// Found by the model: the live file is copy-truncated, written again,
/// renamed, then compressed and deleted before the tailer looks. The open
/// descriptor of the old inode now shows the new content; it must be told
/// apart by its first line even though no path leads to it any more.
#[test]
fn regression_rewritten_inode_gone_before_the_next_scan() {
    let setup = Setup {
        batch_bytes: 4096,
        max_line_bytes: 1000,
        rotate_wait: Duration::ZERO,
        notify: false,
    };
    use Op::*;
    let ops = [
        Append {
            n: 1,
            seed: 12091811083871462,
        },
        Read,
        RotateCopyTruncate,
        Append {
            n: 2,
            seed: 5223730913484913317,
        },
        RotateRename,
        Compress {
            pick: 103,
            in_two_writes: false,
        },
    ];
    run(&setup, &ops);
}

/// The copy-truncate race: lines written between the copy and the truncate
/// are read from the original, so the position passes the copy's end. The
/// copy takes over there and has nothing more; after a restart it must not
/// be mistaken for a truncated file and re-read from 0.
#[test]
fn copy_truncate_race_then_restart() {
    let setup = Setup {
        batch_bytes: 1 << 20,
        max_line_bytes: 1 << 20,
        rotate_wait: Duration::ZERO,
        notify: false,
    };
    use Op::*;
    let ops = [
        Append { n: 3, seed: 7 },
        Read,
        RotateCopyTruncateRacy {
            n: 2,
            seed: 8,
            read_between: true,
        },
        Append { n: 1, seed: 9 },
        Read,
        Commit,
        Restart,
        Read,
    ];
    run(&setup, &ops);
}
