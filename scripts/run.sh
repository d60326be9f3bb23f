#!/usr/bin/env bash
# Builds scopewatch and runs it on the bundled samples. Until the ingest and
# `scopewatch run` land, this validates the sample app registry and shows
# the scope verbs on it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/setup.sh

cargo build --release --locked --bin scopewatch
sw() { echo "\$ scopewatch $*" >&2; "$SCOPEWATCH_BIN" "$@"; }

sw registry check sample-logs/registry.toml
sw scopes explain 'patient/*.read' 'patient/Observation.rs?category=laboratory' 'user/Patient.dus'
sw scopes check --granted "launch/patient patient/Observation.rs" \
   --request "GET /fhir/r4/north/Observation?patient=123&category=laboratory"
sw scopes minimise --used "patient/Observation.r patient/Observation.s patient/Condition.r launch"
echo >&2
echo "binary: $SCOPEWATCH_BIN  (try: $SCOPEWATCH_BIN --help)" >&2
