#!/usr/bin/env bash
# Builds scopewatch and runs it on the bundled samples (a generated
# three-hospital ecosystem in every supported log format, sample-logs/):
# validates its app registry, ingests every log into ./scopewatch-data (a
# second run adds nothing: every line is in the lake exactly once), and shows
# the quarterly scope report (HTML), what the detection rules find in the
# samples (scored against their ground truth), an ad-hoc SQL query, and the
# scope verbs. `scopewatch run` (everything in one process) is still to come.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/setup.sh

cargo build --release --locked --bin scopewatch
sw() { echo "\$ scopewatch $*" >&2; "$SCOPEWATCH_BIN" "$@"; }

sw --config sample-logs/scopewatch.toml registry check
sw --config sample-logs/scopewatch.toml ingest --once
sw --config sample-logs/scopewatch.toml report --from 2026-11-07 --to 2026-11-20 --out scopewatch-data/report.html
echo "report: scopewatch-data/report.html (open it in a browser)" >&2
sw --config sample-logs/scopewatch.toml rules backtest --from 2026-11-07 --to 2026-11-20 \
   --truth sample-logs/ground-truth.json
sw --config sample-logs/scopewatch.toml sql --format table \
   "SELECT client_id, tenant, count(*) AS calls, count(*) FILTER (WHERE outcome = 'denied') AS denied FROM access GROUP BY ALL ORDER BY calls DESC LIMIT 10"
sw scopes explain 'patient/*.read' 'patient/Observation.rs?category=laboratory' 'user/Patient.dus'
sw scopes check --granted "launch/patient patient/Observation.rs" \
   --request "GET /fhir/r4/north/Observation?patient=123&category=laboratory"
sw scopes minimise --used "patient/Observation.r patient/Observation.s patient/Condition.r launch"
echo >&2
echo "binary: $SCOPEWATCH_BIN  (try: $SCOPEWATCH_BIN --help)" >&2
