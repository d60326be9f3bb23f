#!/usr/bin/env bash
# The first command: builds scopewatch and runs everything in one process on
# the bundled samples (sample-logs/: a generated three-hospital ecosystem in
# every supported log format, its app registry and config): ingest follows
# every log into ./scopewatch-data with the streaming detection rules, and
# the dashboard serves on http://127.0.0.1:8080/. It runs in the foreground
# until Ctrl-C (or SIGTERM), which stops it cleanly: what was read is
# committed and checkpointed, unsent alert messages stay in the outbox.
#
# usage: scripts/run.sh [scopewatch run options]
#   e.g. scripts/run.sh --listen 0.0.0.0:8080
#        scripts/run.sh --config my/scopewatch.toml  (your own logs; see
#        examples/scopewatch.toml)
# SCOPEWATCH_* variables apply too (scopewatch --help lists them).
# scripts/tour.sh runs a batch tour of the other commands instead.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/setup.sh

cargo build --release --workspace --locked

# The admin's one-time password is printed by the first run only.
data="${SCOPEWATCH_DATA:-scopewatch-data}"
if [ $# -eq 0 ] && [ -z "${SCOPEWATCH_CONFIG:-}" ] && [ -e "$data/dashboard/users.json" ]; then
  echo "scopewatch: $data has the dashboard's users already: log in as before (a" \
    "forgotten admin password: $SCOPEWATCH_BIN --data $data user reset admin)" >&2
fi
echo "scopewatch: starting; Ctrl-C stops it" >&2
exec "$SCOPEWATCH_BIN" run "$@"
