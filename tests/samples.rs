//! The bundled samples are what the generator writes with the arguments in
//! `sample-logs.args` (so they stay in step with the generator and the
//! adapters), and the same seed always writes the same bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn checkout() -> PathBuf {
    // Read at run time: a test binary from a shared target dir may be run
    // from another checkout.
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run under cargo test"))
}

fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn generate(out: &Path) {
    let args = std::fs::read_to_string(checkout().join("sample-logs.args")).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_scopewatch"))
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
    let have = files(&checkout().join("sample-logs"));
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
