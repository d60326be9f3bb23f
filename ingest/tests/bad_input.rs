//! Bad lines through the whole pipeline: each goes to the dead-letter file
//! with its offset and reason, is counted, and never stops the source.

use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use scopewatch_ingest::lake::LakeConfig;
use scopewatch_ingest::pipeline::{Ingest, IngestOptions};
use scopewatch_model::config::Source;
use scopewatch_model::events::Env;
use scopewatch_model::request::FhirBase;

fn good(seq: u32) -> Vec<u8> {
    format!(
        r#"{{"stream":"access","ts":"2026-11-20T10:00:00Z","client_id":"app","method":"GET","path":"/fhir/Observation?patient=p1","status":200,"bytes":{seq}}}"#
    )
    .into_bytes()
}

#[test]
fn every_kind_of_bad_line_is_dead_lettered_and_the_rest_lands() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("in.ndjson");
    let oversized = format!(
        r#"{{"stream":"access","ts":"2026-11-20T10:00:00Z","path":"/fhir/Patient/PAT-BIG","pad":"{}"}}"#,
        "x".repeat(5000)
    );
    let bad: Vec<(Vec<u8>, &str)> = vec![
        (b"{\"stream\":\"access\",\"ts\":\"2026-11-20T10:00:00Z\",\"path\":\"/fhir/Patient/1\xff\xfe\"}".to_vec(), "UTF-8"),
        (br#"{"stream":"access","ts":"2026-11-20T10:00:00Z","method":"GET","pa"#.to_vec(), "truncated"),
        (br#"{"stream":"metrics","ts":"2026-11-20T10:00:00Z"}"#.to_vec(), "stream"),
        (br#"{"stream":"auth","ts":"2026-11-20T10:00:00Z","kind":"teleport"}"#.to_vec(), "kind"),
        (br#"{"stream":"access","ts":"2026-11-20T10:00:00Z","method":"GET","path":"/fhir/Patient","status":"two hundred"}"#.to_vec(), "status"),
        (br#"{"stream":"access","method":"GET","path":"/fhir/Patient"}"#.to_vec(), "ts"),
        (oversized.into_bytes(), "exceeds max_line_bytes"),
    ];
    let mut f = std::fs::File::create(&log).unwrap();
    let mut seq = 0;
    for (line, _) in &bad {
        f.write_all(&good(seq)).unwrap();
        f.write_all(b"\n").unwrap();
        seq += 1;
        f.write_all(line).unwrap();
        f.write_all(b"\n").unwrap();
    }
    f.write_all(&good(seq)).unwrap();
    f.write_all(b"\n").unwrap();
    drop(f);

    let data = dir.path().join("data");
    let source = Source {
        name: "gw".into(),
        format: "scopewatch".into(),
        paths: vec![log.to_string_lossy().into_owned()],
        tenant: Some("north".into()),
        env: Env::Prod,
        start_at_end: false,
        options: Default::default(),
    };
    let options = IngestOptions {
        data_dir: data.clone(),
        lake: LakeConfig::default(),
        max_line_bytes: 4096,
        poll_interval: Duration::ZERO,
        fhir_base: FhirBase::auto(),
        pseudonym_key: None,
    };
    let mut ingest = Ingest::open(std::slice::from_ref(&source), options.clone()).unwrap();
    ingest.run_to_end(&AtomicBool::new(false), |_| {}).unwrap();
    let stats = ingest.stats().clone();
    assert_eq!(
        stats.access_events,
        bad.len() as u64 + 1,
        "every good line landed"
    );
    assert_eq!(stats.dead_lettered, bad.len() as u64);
    assert_eq!(stats.per_source["gw"].dead_lettered, bad.len() as u64);

    let mut entries = Vec::new();
    for f in std::fs::read_dir(data.join("deadletter"))
        .unwrap()
        .flatten()
    {
        for line in std::fs::read_to_string(f.path()).unwrap().lines() {
            entries.push(serde_json::from_str::<serde_json::Value>(line).unwrap());
        }
    }
    entries.sort_by_key(|e| e["offset"].as_u64());
    assert_eq!(entries.len(), bad.len());
    for (entry, (_, why)) in entries.iter().zip(&bad) {
        let reason = entry["reason"].as_str().unwrap();
        assert!(
            reason.contains(why),
            "reason {reason:?} should mention {why:?}"
        );
        assert_eq!(entry["source"], "gw");
        assert!(entry["offset"].as_u64().is_some());
        assert!(entry["file"].as_str().unwrap().ends_with("in.ndjson"));
    }
    let all = entries.iter().map(|e| e.to_string()).collect::<String>();
    assert!(!all.contains("PAT-BIG"), "dead letters are redacted: {all}");

    // Reading again adds nothing: the checkpoint moved past the bad lines too.
    drop(ingest);
    let mut again = Ingest::open(&[source], options).unwrap();
    again.run_to_end(&AtomicBool::new(false), |_| {}).unwrap();
    assert_eq!(again.stats().lines, 0);
    let after: usize = std::fs::read_dir(data.join("deadletter"))
        .unwrap()
        .flatten()
        .map(|f| std::fs::read_to_string(f.path()).unwrap().lines().count())
        .sum();
    assert_eq!(after, bad.len(), "no line dead-lettered twice");
}
