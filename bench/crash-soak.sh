#!/usr/bin/env bash
# The SIGKILL crash test at length: hundreds of kills of `scopewatch ingest`
# while lines arrive, then a check with DuckDB that the lake holds every line
# exactly once. The test suite runs the same test with 24 kills.
#
# usage: bench/crash-soak.sh [KILLS]     (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
export SCOPEWATCH_CRASH_KILLS=${1:-300}
start=$(date +%s)
cargo test --release --locked --test ingest sigkill -- --nocapture
echo "crash soak: $SCOPEWATCH_CRASH_KILLS kills, nothing lost or duplicated, $(( $(date +%s) - start )) s"
