//! The bundled samples are what the generator writes with the arguments in
//! `sample-logs.args` (so they stay in step with the generator and the
//! adapters), and the same seed always writes the same bytes.

use std::collections::BTreeMap;
use std::path::Path;

mod common;
use common::{all_file_bytes, bin, repo};

/// Every file under `root` by its path relative to `root`, with its bytes.
fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut all = Vec::new();
    all_file_bytes(root, &mut all);
    all.into_iter()
        .map(|(p, bytes)| {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            (rel, bytes)
        })
        .collect()
}

fn generate(out: &Path) {
    let args = std::fs::read_to_string(repo().join("sample-logs.args")).unwrap();
    let status = bin()
        .args(["generate", "--out", out.to_str().unwrap()])
        .args(args.split_whitespace())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn the_bundled_samples_are_the_generators_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("samples");
    generate(&out);
    let want = files(&out);
    let have = files(&repo().join("sample-logs"));
    assert_eq!(
        have.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "sample-logs/ holds other files than the generator writes: run scripts/make-samples.sh"
    );
    for (name, bytes) in &want {
        assert!(
            have[name] == *bytes,
            "sample-logs/{name} differs from the generator's output: run scripts/make-samples.sh"
        );
    }
    // Determinism: a second run writes the same bytes.
    let again = dir.path().join("again");
    generate(&again);
    assert!(files(&again) == want, "the same seed wrote different bytes");
}
