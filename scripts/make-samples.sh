#!/usr/bin/env bash
# Regenerates sample-logs/ with `scopewatch generate` and the arguments in
# sample-logs.args. The committed samples must be exactly this output:
# tests/samples.rs regenerates them and compares, so after changing the
# generator run this script and commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo build --release --locked --bin scopewatch
rm -rf sample-logs
# shellcheck disable=SC2046 # the args file holds words, not one string
"$SCOPEWATCH_BIN" generate --out sample-logs $(cat sample-logs.args)
