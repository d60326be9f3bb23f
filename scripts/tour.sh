#!/usr/bin/env bash
# A batch tour of scopewatch on the bundled samples (a generated
# three-hospital ecosystem in every supported log format, sample-logs/),
# one command of each kind: validates the app registry, ingests every log
# into ./scopewatch-data (a second run adds nothing: every line is in the
# lake exactly once), writes the quarterly scope report (HTML), shows what the
# detection rules find in the samples (scored against their ground truth),
# asks the lake a question in SQL, and tries the scope verbs. It exits when
# done; scripts/run.sh starts everything as a service instead.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/setup.sh

cargo build --release --workspace --locked
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
