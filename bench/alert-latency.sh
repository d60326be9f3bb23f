#!/usr/bin/env bash
# Log-line-to-alert-email latency: `scopewatch ingest` follows a log with the
# built-in rules and email to a real SMTP server on loopback (aiosmtpd); a
# refresh-token replay is appended N times (a new token each time) and the
# time from the append to the message landing at the SMTP server is
# printed, with scopewatch's peak memory. Not a test: it prints figures.
#
# usage: bench/alert-latency.sh [TRIALS]     (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo build --release --workspace --locked >&2
py=/usr/bin/python3
"$py" -c 'import aiosmtpd' 2>/dev/null || py=python3
exec "$py" bench/alert_latency.py "$SCOPEWATCH_BIN" "${1:-20}"
