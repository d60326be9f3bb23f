//! Unit tests of the tailer on real temporary directories.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;

use super::*;

fn cfg(paths: &[&Path]) -> TailConfig {
    TailConfig {
        paths: paths.iter().map(|p| p.display().to_string()).collect(),
        // Scan on every read and do without notify: deterministic.
        poll_interval: Duration::ZERO,
        notify: false,
        ..TailConfig::default()
    }
}

fn append(path: &Path, s: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(s.as_bytes()).unwrap();
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Everything available now, over as many reads as it takes.
fn drain(t: &mut Tailer) -> Vec<Line> {
    let mut v = Vec::new();
    for _ in 0..10_000 {
        let b = t.read_available().unwrap();
        if b.is_empty() && !t.more {
            break;
        }
        v.extend(b.into_lines());
    }
    v
}

fn texts(v: &[Line]) -> Vec<String> {
    v.iter()
        .map(|l| String::from_utf8(l.bytes.clone()).unwrap())
        .collect()
}

fn offset_of(t: &Tailer, key: &str) -> u64 {
    t.positions().get(key).unwrap().offset
}

#[test]
fn tailer_is_send() {
    fn send<T: Send>() {}
    send::<Tailer>();
}

#[test]
fn partial_line_waits_for_its_newline() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "first\nsec");
    let mut t = Tailer::new(cfg(&[&p]), Checkpoints::empty()).unwrap();
    let got = drain(&mut t);
    assert_eq!(texts(&got), ["first"]);
    assert_eq!((got[0].offset, got[0].end), (0, 6));
    let key = got[0].file_key.clone();
    assert_eq!(offset_of(&t, &key), 6);
    append(&p, "ond");
    assert!(drain(&mut t).is_empty());
    assert_eq!(offset_of(&t, &key), 6);
    append(&p, "\n");
    let got = drain(&mut t);
    assert_eq!(texts(&got), ["second"]);
    assert_eq!((got[0].offset, got[0].end), (6, 13));
    assert_eq!(offset_of(&t, &key), 13);
}

#[test]
fn file_without_complete_first_line_is_not_read_yet() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "no newline yet");
    let mut t = Tailer::new(cfg(&[&p]), Checkpoints::empty()).unwrap();
    assert!(drain(&mut t).is_empty());
    assert!(t.positions().files.is_empty());
    append(&p, "\n");
    assert_eq!(texts(&drain(&mut t)), ["no newline yet"]);
}

#[test]
fn crlf_and_empty_lines() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "x\r\n\r\n\ny\rz\n");
    let mut t = Tailer::new(cfg(&[&p]), Checkpoints::empty()).unwrap();
    let got = drain(&mut t);
    assert_eq!(texts(&got), ["x", "", "", "y\rz"]);
    let spans: Vec<_> = got.iter().map(|l| (l.offset, l.end)).collect();
    assert_eq!(spans, [(0, 3), (3, 5), (5, 6), (6, 10)]);
}

#[test]
fn oversized_line_is_cut_flagged_and_skipped_without_buffering() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    let long = "a".repeat(100);
    append(&p, &format!("short\n{long}\r\n0123456789\nnext\n"));
    let mut c = cfg(&[&p]);
    c.max_line_bytes = 10;
    // A tiny budget splits the long line over many reads.
    c.batch_bytes = 7;
    let mut t = Tailer::new(c, Checkpoints::empty()).unwrap();
    let mut got = Vec::new();
    for _ in 0..1000 {
        got.extend(t.read_available().unwrap().into_lines());
        for h in &t.handles {
            assert!(
                h.pending.len() <= 10,
                "partial line buffered beyond the limit"
            );
        }
    }
    assert_eq!(texts(&got), ["short", "aaaaaaaaaa", "0123456789", "next"]);
    assert!(!got[0].oversized);
    assert!(got[1].oversized);
    assert_eq!(got[1].full_len, 100);
    assert_eq!((got[1].offset, got[1].end), (6, 108));
    // Exactly at the limit is not oversized.
    assert!(!got[2].oversized);
    assert_eq!(got[2].full_len, 10);
    assert_eq!(got[3].offset, 119);
}

#[test]
fn batches_respect_the_byte_budget_and_resume_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    let mut want = Vec::new();
    for i in 0..500 {
        let s = format!("line {i} {}", "x".repeat(i % 37));
        append(&p, &format!("{s}\n"));
        want.push(s);
    }
    let mut c = cfg(&[&p]);
    c.batch_bytes = 1000;
    let mut t = Tailer::new(c, Checkpoints::empty()).unwrap();
    let first = t.read_available().unwrap();
    assert!(first.content_bytes() <= 1000);
    assert!(t.more);
    let mut got = first.into_lines();
    got.extend(drain(&mut t));
    assert_eq!(texts(&got), want);
    for w in got.windows(2) {
        assert_eq!(w[0].end, w[1].offset);
    }
}

#[test]
fn start_at_end_applies_only_to_files_found_at_first_start() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "old1\nold2\npart");
    let glob = dir.path().join("*.log");
    let mut c = cfg(&[&glob]);
    c.start_at = StartAt::End;
    let mut t = Tailer::new(c.clone(), Checkpoints::empty()).unwrap();
    assert!(drain(&mut t).is_empty());
    // The line being written at startup is delivered whole.
    append(&p, "ial\nnew\n");
    // A file that appears later is read from its beginning.
    append(&dir.path().join("later.log"), "later1\n");
    let got = drain(&mut t);
    assert_eq!(texts(&got), ["partial", "new", "later1"]);
    let ck = t.positions();
    drop(t);

    // Resuming: a file that appeared while down is read from 0, not End.
    append(&dir.path().join("while-down.log"), "wd1\nwd2\n");
    append(&p, "after\n");
    let mut t = Tailer::new(c, ck).unwrap();
    let mut got = texts(&drain(&mut t));
    got.sort();
    assert_eq!(got, ["after", "wd1", "wd2"]);
}

#[test]
fn checkpoint_roundtrip_and_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ck_path = dir.path().join("tail.json");
    assert_eq!(Checkpoints::load(&ck_path).unwrap(), Checkpoints::empty());

    let log = dir.path().join("app.log");
    append(&log, "secret patient 123\nmore\n");
    let mut t = Tailer::new(cfg(&[&log]), Checkpoints::empty()).unwrap();
    drain(&mut t);
    let ck = t.positions();
    ck.store_atomic(&ck_path).unwrap();
    assert!(!dir.path().join("tail.json.tmp").exists());
    assert_eq!(Checkpoints::load(&ck_path).unwrap(), ck);
    let json = ck.to_json();
    assert_eq!(Checkpoints::from_json(&json).unwrap(), ck);
    assert!(json.contains("\"version\":1"));
    // No content, only the path and a hash.
    assert!(!json.contains("secret") && !json.contains("patient"));

    fs::write(&ck_path, r#"{"version":2,"files":[]}"#).unwrap();
    let e = Checkpoints::load(&ck_path).unwrap_err();
    assert!(matches!(e, TailError::CheckpointVersion { .. }), "{e}");
    assert!(e.to_string().contains("tail.json"), "{e}");

    fs::write(&ck_path, "{\"version\":1,\"files\":[{\"key\":").unwrap();
    let e = Checkpoints::load(&ck_path).unwrap_err();
    assert!(matches!(e, TailError::CheckpointCorrupt { .. }), "{e}");
    assert!(e.to_string().contains("tail.json"), "{e}");

    fs::write(&ck_path, r#"{"files":[]}"#).unwrap();
    assert!(matches!(
        Checkpoints::load(&ck_path),
        Err(TailError::CheckpointCorrupt { .. })
    ));
    fs::write(&ck_path, [0xff, 0xfe]).unwrap();
    assert!(matches!(
        Checkpoints::load(&ck_path),
        Err(TailError::CheckpointCorrupt { .. })
    ));
    let dup = r#"{"version":1,"files":[
        {"key":"k","path":"a","dev":1,"inode":2,"offset":3,"gz":false,"done":false},
        {"key":"k","path":"b","dev":1,"inode":2,"offset":3,"gz":false,"done":false}]}"#;
    assert!(matches!(
        Checkpoints::from_json(dup),
        Err(TailError::CheckpointCorrupt { .. })
    ));
}

#[test]
fn file_replaced_while_down_is_read_from_zero() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "a1\na2\na3\n");
    let mut t = Tailer::new(cfg(&[&p]), Checkpoints::empty()).unwrap();
    assert_eq!(drain(&mut t).len(), 3);
    let ck = t.positions();
    drop(t);
    // Replaced by a longer file: the stored offset is within it, but its
    // first line (and so its key) differs. The inode may well be reused.
    fs::remove_file(&p).unwrap();
    append(&p, "b1\nb2 is longer than before\n");
    let mut t = Tailer::new(cfg(&[&p]), ck).unwrap();
    let got = drain(&mut t);
    assert_eq!(texts(&got), ["b1", "b2 is longer than before"]);
    assert_eq!(got[0].offset, 0);
}

#[test]
fn inode_reused_in_place_is_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "a1\na2\n");
    let mut t = Tailer::new(cfg(&[&p]), Checkpoints::empty()).unwrap();
    let old = drain(&mut t);
    // Same inode rewritten with more bytes than were read: only the first
    // line tells it apart.
    fs::write(&p, "b1\nb2 b2 b2 b2\n").unwrap();
    let got = drain(&mut t);
    assert_eq!(texts(&got), ["b1", "b2 b2 b2 b2"]);
    assert_eq!(got[0].offset, 0);
    assert_ne!(got[0].file_key, old[0].file_key);
    // The same inode truncated while down, same first line: shorter than
    // the position, so a new file from 0.
    let ck = t.positions();
    drop(t);
    fs::write(&p, "b1\n").unwrap();
    let mut t = Tailer::new(cfg(&[&p]), ck).unwrap();
    assert_eq!(texts(&drain(&mut t)), ["b1"]);
}

#[test]
fn plain_truncation_reads_the_new_content_from_zero() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "a1\na2\n");
    let mut t = Tailer::new(cfg(&[&p]), Checkpoints::empty()).unwrap();
    let first = drain(&mut t);
    OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(0)
        .unwrap();
    assert!(drain(&mut t).is_empty());
    // The old key is remembered as gone.
    assert!(t
        .positions()
        .get(&first[0].file_key)
        .unwrap()
        .gone_since
        .is_some());
    append(&p, "c1\n");
    let got = drain(&mut t);
    assert_eq!(texts(&got), ["c1"]);
    assert_eq!(got[0].offset, 0);
}

#[test]
fn gone_file_rewritten_in_place_is_read_as_new_through_its_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "a1\na2\n");
    let mut t = Tailer::new(cfg(&[&p]), Checkpoints::empty()).unwrap();
    let old = drain(&mut t);
    // Truncated and rewritten, then deleted, all before the next scan: the
    // new lines exist only behind the descriptor the tailer holds.
    fs::write(&p, "b1\nb2 longer than a1+a2\n").unwrap();
    fs::remove_file(&p).unwrap();
    let got = drain(&mut t);
    assert_eq!(texts(&got), ["b1", "b2 longer than a1+a2"]);
    assert_eq!(got[0].offset, 0);
    assert_ne!(got[0].file_key, old[0].file_key);
}

#[test]
fn rename_rotation_finishes_the_old_file_first() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "a1\n");
    let glob = dir.path().join("app.log*");
    let mut t = Tailer::new(cfg(&[&glob]), Checkpoints::empty()).unwrap();
    let first = drain(&mut t);
    append(&p, "a2\n");
    fs::rename(&p, dir.path().join("app.log.1")).unwrap();
    append(&p, "b1\n");
    let got = drain(&mut t);
    assert_eq!(texts(&got), ["a2", "b1"]);
    assert_eq!(got[0].file_key, first[0].file_key);
    assert_eq!(got[0].offset, 3);
    assert!(got[0].path.ends_with("app.log.1"));
    assert_eq!(got[1].offset, 0);
}

#[test]
fn file_renamed_out_of_the_watched_paths_is_read_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "a1\n");
    let mut c = cfg(&[&p]);
    c.rotate_wait = Duration::ZERO;
    let mut t = Tailer::new(c, Checkpoints::empty()).unwrap();
    drain(&mut t);
    append(&p, "a2\n");
    fs::rename(&p, dir.path().join("elsewhere")).unwrap();
    append(&p, "b1\n");
    assert_eq!(texts(&drain(&mut t)), ["a2", "b1"]);
    // Closed once read to its end.
    drain(&mut t);
    assert_eq!(t.file_stats().len(), 1);
}

#[test]
fn copy_truncate_resumes_in_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "a1\n");
    let glob = dir.path().join("app.log*");
    let mut t = Tailer::new(cfg(&[&glob]), Checkpoints::empty()).unwrap();
    let first = drain(&mut t);
    append(&p, "a2\na3\n");
    fs::copy(&p, dir.path().join("app.log.1")).unwrap();
    // Before the truncation, the copy is left alone: the original has it all.
    let mid = drain(&mut t);
    assert_eq!(texts(&mid), ["a2", "a3"]);
    assert!(mid.iter().all(|l| l.path == p));
    OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&p, "b1\n");
    let got = drain(&mut t);
    assert_eq!(texts(&got), ["b1"]);
    assert_ne!(got[0].file_key, first[0].file_key);
    // The copy now holds the old key, at the old position.
    let rec = t.positions();
    let rec = rec.get(&first[0].file_key).unwrap();
    assert!(rec.path.ends_with("app.log.1"));
    assert_eq!(rec.offset, 9);
    assert_eq!(rec.gone_since, None);
}

#[test]
fn copy_truncate_before_reading_delivers_the_rest_from_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "a1\n");
    let glob = dir.path().join("app.log*");
    let mut t = Tailer::new(cfg(&[&glob]), Checkpoints::empty()).unwrap();
    let first = drain(&mut t);
    append(&p, "a2\na3\n");
    fs::copy(&p, dir.path().join("app.log.1")).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&p, "b1\n");
    let got = drain(&mut t);
    assert_eq!(texts(&got), ["a2", "a3", "b1"]);
    assert_eq!(got[0].file_key, first[0].file_key);
    assert_eq!((got[0].offset, got[1].offset), (3, 6));
    assert!(got[0].path.ends_with("app.log.1"));
}

#[test]
fn gz_copy_resumes_at_the_position_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "a1\na2\n");
    let glob = dir.path().join("app.log*");
    let mut t = Tailer::new(cfg(&[&glob]), Checkpoints::empty()).unwrap();
    let first = drain(&mut t);
    let ck = t.positions();
    drop(t);
    append(&p, "a3\na4\n");
    let rotated = dir.path().join("app.log.1");
    fs::rename(&p, &rotated).unwrap();
    fs::write(
        dir.path().join("app.log.1.gz"),
        gzip(&fs::read(&rotated).unwrap()),
    )
    .unwrap();
    fs::remove_file(&rotated).unwrap();
    let mut t = Tailer::new(cfg(&[&glob]), ck).unwrap();
    let got = drain(&mut t);
    assert_eq!(texts(&got), ["a3", "a4"]);
    assert_eq!(got[0].file_key, first[0].file_key);
    assert_eq!(got[0].offset, 6);
    let pos = t.positions();
    let rec = pos.get(&first[0].file_key).unwrap();
    assert!(rec.gz && rec.done);
    assert_eq!(rec.offset, 12);
    // Read once: later scans deliver nothing more.
    assert!(drain(&mut t).is_empty());
    assert!(t.file_stats().is_empty());
}

#[test]
fn gz_cut_short_is_retried_when_complete() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log.1.gz");
    let mut content = String::new();
    for i in 0..2000 {
        content.push_str(&format!("line {i} {}\n", i * 7919 % 10007));
    }
    let gz = gzip(content.as_bytes());
    fs::write(&p, &gz[..gz.len() / 2]).unwrap();
    let mut t = Tailer::new(cfg(&[&p]), Checkpoints::empty()).unwrap();
    let mut got = drain(&mut t);
    assert!(got.len() < 2000);
    fs::write(&p, &gz).unwrap();
    got.extend(drain(&mut t));
    let want: Vec<&str> = content.lines().collect();
    assert_eq!(texts(&got), want);
    for w in got.windows(2) {
        assert_eq!(w[0].end, w[1].offset);
    }
}

#[test]
fn gz_final_line_without_newline_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.gz");
    fs::write(&p, gzip(b"one\ntwo\r")).unwrap();
    let mut t = Tailer::new(cfg(&[&p]), Checkpoints::empty()).unwrap();
    let got = drain(&mut t);
    assert_eq!(texts(&got), ["one", "two"]);
    assert_eq!((got[1].offset, got[1].end), (4, 8));
}

#[test]
fn deleted_file_keeps_its_position_for_a_while() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "a1\n");
    let mut c = cfg(&[dir.path()]);
    c.rotate_wait = Duration::ZERO;
    let mut t = Tailer::new(c.clone(), Checkpoints::empty()).unwrap();
    let key = drain(&mut t)[0].file_key.clone();
    fs::remove_file(&p).unwrap();
    drain(&mut t);
    drain(&mut t);
    assert!(t.file_stats().is_empty());
    let rec = t.positions().get(&key).cloned().unwrap();
    assert!(rec.gone_since.is_some());
    assert_eq!(rec.offset, 3);
    // Past the retention period it is dropped.
    let mut ck = t.positions();
    ck.files[0].gone_since = Some(1);
    let mut t = Tailer::new(c, ck).unwrap();
    drain(&mut t);
    assert!(t.positions().files.is_empty());
}

#[test]
fn directory_means_every_visible_file() {
    let dir = tempfile::tempdir().unwrap();
    append(&dir.path().join("a.log"), "a\n");
    append(&dir.path().join("b.txt"), "b\n");
    append(&dir.path().join(".hidden"), "h\n");
    fs::create_dir(dir.path().join("sub")).unwrap();
    append(&dir.path().join("sub/c.log"), "c\n");
    let d: PathBuf = dir.path().to_path_buf();
    let mut t = Tailer::new(cfg(&[&d]), Checkpoints::empty()).unwrap();
    assert_eq!(texts(&drain(&mut t)), ["a", "b"]);
}

#[test]
fn config_errors() {
    assert!(matches!(
        Tailer::new(TailConfig::default(), Checkpoints::empty()),
        Err(TailError::Config(_))
    ));
    let c = TailConfig {
        paths: vec!["/var/*/x.log".into()],
        ..TailConfig::default()
    };
    assert!(matches!(
        Tailer::new(c, Checkpoints::empty()),
        Err(TailError::Config(_))
    ));
}

#[test]
fn wait_wakes_on_notify() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "a\n");
    let mut c = cfg(&[&p]);
    c.notify = true;
    c.poll_interval = Duration::from_secs(20);
    let mut t = Tailer::new(c, Checkpoints::empty()).unwrap();
    assert_eq!(texts(&t.read_available().unwrap().into_lines()), ["a"]);
    let p2 = p.clone();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        append(&p2, "b\n");
    });
    let start = Instant::now();
    t.wait(Duration::from_secs(10));
    writer.join().unwrap();
    // Without notify (some sandboxes lack inotify) this times out at 10 s;
    // it must never block longer than asked.
    assert!(start.elapsed() < Duration::from_secs(11));
    if t.watch.is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "notify did not wake wait"
        );
    }
    assert_eq!(texts(&t.read_available().unwrap().into_lines()), ["b"]);
}
