#!/usr/bin/env bash
# Runs every test: formatting, then the whole workspace in the release
# profile (the same profile as scripts/run.sh, so DuckDB is built once).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/setup.sh

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check

echo "== cargo test --release (target dir: $CARGO_TARGET_DIR)" >&2
start=$(date +%s)
cargo test --release --workspace --locked "$@"
echo "== all tests passed in $(( $(date +%s) - start )) s" >&2
