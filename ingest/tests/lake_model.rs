//! Model-based test of the whole ingest path: a tailed log goes through
//! random appends, rename rotations, copy-truncates, truncations, gzip
//! rotations, deletions and process restarts (an `Ingest` dropped without
//! committing, as a crash leaves it), and the lake must end with every
//! written line exactly once.
//!
//! Rule of the model: data is destroyed (truncation, deleting the only copy
//! of a line) only once it is durable in the lake, as a log rotation policy
//! long after the fact does; destroying unread data loses it inherently.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use scopewatch_ingest::lake::LakeConfig;
use scopewatch_ingest::pipeline::{Ingest, IngestOptions};
use scopewatch_model::config::Source;
use scopewatch_model::events::{AccessEvent, Env};
use scopewatch_model::request::FhirBase;

fn line(seq: u64) -> String {
    format!(
        r#"{{"stream":"access","ts":"2026-11-2{}T10:00:00Z","client_id":"app","method":"GET","path":"/fhir/Patient/p{seq}","status":200,"bytes":{seq}}}"#,
        seq % 3
    )
}

struct World {
    dir: PathBuf,
    data: PathBuf,
    logs: PathBuf,
    next_seq: u64,
    written: Vec<u64>,
    rotations: u32,
}

impl World {
    fn live(&self) -> PathBuf {
        self.logs.join("app.log")
    }

    fn append(&mut self, rng: &mut StdRng) {
        let n = rng.random_range(1..60);
        let mut text = String::new();
        for _ in 0..n {
            text.push_str(&line(self.next_seq));
            text.push('\n');
            self.written.push(self.next_seq);
            self.next_seq += 1;
        }
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.live())
            .unwrap();
        // Sometimes the last line arrives in two writes: the tailer must wait.
        if rng.random_bool(0.3) && text.len() > 10 {
            let cut = text.len() - 5;
            f.write_all(&text.as_bytes()[..cut]).unwrap();
            f.flush().unwrap();
            f.write_all(&text.as_bytes()[cut..]).unwrap();
        } else {
            f.write_all(text.as_bytes()).unwrap();
        }
    }

    fn rotated(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(&self.logs)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().unwrap().to_string_lossy() != "app.log")
            .collect();
        v.sort();
        v
    }
}

fn options(data: &Path) -> IngestOptions {
    IngestOptions {
        data_dir: data.to_path_buf(),
        lake: LakeConfig {
            max_rows: 50,
            max_age: Duration::from_secs(3600),
            zstd_level: 1,
        },
        max_line_bytes: 1 << 16,
        poll_interval: Duration::ZERO,
        fhir_base: FhirBase::auto(),
        pseudonym_key: Some("00".repeat(32)),
    }
}

fn open(world: &World) -> Ingest {
    let source = Source {
        name: "gw".into(),
        format: "scopewatch".into(),
        paths: vec![world.logs.join("app.log*").to_string_lossy().into_owned()],
        tenant: Some("north".into()),
        env: Env::Prod,
        start_at_end: false,
        options: Default::default(),
    };
    Ingest::open(&[source], options(&world.data)).unwrap()
}

/// Reads everything there is and commits it: afterwards every written line
/// is durable.
fn drain(ingest: &mut Ingest) {
    let stop = AtomicBool::new(false);
    while ingest.poll().unwrap() > 0 {}
    ingest.commit(&stop).unwrap();
}

fn lake_seqs(data: &Path) -> Vec<u64> {
    let mut seqs = Vec::new();
    let root = data.join("lake/access");
    let Ok(days) = fs::read_dir(&root) else {
        return seqs;
    };
    for day in days.flatten() {
        for f in fs::read_dir(day.path()).unwrap().flatten() {
            if !f.file_name().to_string_lossy().ends_with(".parquet") {
                continue;
            }
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(f.path()).unwrap())
                .unwrap()
                .build()
                .unwrap();
            for batch in reader {
                for e in AccessEvent::from_batch(&batch.unwrap()).unwrap() {
                    seqs.push(e.bytes.unwrap());
                }
            }
        }
    }
    seqs.sort_unstable();
    seqs
}

fn gzip(src: &Path, dst: &Path) {
    let data = fs::read(src).unwrap();
    let mut enc =
        flate2::write::GzEncoder::new(File::create(dst).unwrap(), flate2::Compression::fast());
    enc.write_all(&data).unwrap();
    enc.finish().unwrap();
}

fn run(seed: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let mut world = World {
        dir: tmp.path().to_path_buf(),
        data: tmp.path().join("data"),
        logs: tmp.path().join("logs"),
        next_seq: 0,
        written: Vec::new(),
        rotations: 0,
    };
    fs::create_dir_all(&world.logs).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let stop = AtomicBool::new(false);
    let mut ingest = open(&world);
    let mut ops = Vec::new();
    for _ in 0..40 {
        let op = rng.random_range(0..100);
        match op {
            0..=34 => {
                ops.push("append");
                world.append(&mut rng);
            }
            35..=49 => {
                ops.push("poll");
                ingest.poll().unwrap();
            }
            50..=57 => {
                ops.push("commit");
                ingest.poll().unwrap();
                ingest.commit(&stop).unwrap();
            }
            58..=67 => {
                ops.push("crash+restart");
                drop(ingest);
                ingest = open(&world);
            }
            68..=77 => {
                ops.push("rename-rotate");
                if world.live().exists() {
                    world.rotations += 1;
                    let to = world.logs.join(format!("app.log.{:03}", world.rotations));
                    fs::rename(world.live(), to).unwrap();
                    File::create(world.live()).unwrap();
                }
            }
            78..=83 => {
                ops.push("copy-truncate");
                if world.live().exists() {
                    world.rotations += 1;
                    let to = world.logs.join(format!("app.log.{:03}", world.rotations));
                    fs::copy(world.live(), to).unwrap();
                    fs::OpenOptions::new()
                        .write(true)
                        .open(world.live())
                        .unwrap()
                        .set_len(0)
                        .unwrap();
                }
            }
            84..=89 => {
                ops.push("gzip-rotated");
                // gzip a plain rotated file and delete it; sometimes before
                // its tail was read (the .gz must supply it)
                if let Some(p) = world
                    .rotated()
                    .into_iter()
                    .find(|p| !p.to_string_lossy().ends_with(".gz"))
                {
                    gzip(
                        &p,
                        &p.with_extension(format!(
                            "{}.gz",
                            p.extension().unwrap().to_string_lossy()
                        )),
                    );
                    fs::remove_file(&p).unwrap();
                }
            }
            90..=94 => {
                ops.push("delete-oldest (after drain)");
                drain(&mut ingest);
                if let Some(p) = world.rotated().into_iter().next() {
                    fs::remove_file(p).unwrap();
                }
            }
            _ => {
                ops.push("truncate (after drain)");
                drain(&mut ingest);
                if world.live().exists() {
                    fs::OpenOptions::new()
                        .write(true)
                        .open(world.live())
                        .unwrap()
                        .set_len(0)
                        .unwrap();
                }
            }
        }
    }
    drop(ingest);
    let mut ingest = open(&world);
    drain(&mut ingest);
    let got = lake_seqs(&world.data);
    let mut want = world.written.clone();
    want.sort_unstable();
    if got != want {
        let mut counts: BTreeMap<u64, i64> = BTreeMap::new();
        for s in &want {
            *counts.entry(*s).or_default() += 1;
        }
        for s in &got {
            *counts.entry(*s).or_default() -= 1;
        }
        let diff: Vec<_> = counts
            .into_iter()
            .filter(|(_, c)| *c != 0)
            .take(10)
            .collect();
        panic!(
            "seed {seed}: lake differs from the log (seq, written - in lake): {diff:?}\nops: {ops:?}\ndir: {}",
            world.dir.display()
        );
    }
}

#[test]
fn every_line_lands_exactly_once_through_rotation_and_crashes() {
    let seeds: u64 = std::env::var("LAKE_MODEL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    for seed in 0..seeds {
        run(seed);
    }
}
