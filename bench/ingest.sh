#!/usr/bin/env bash
# Ingest throughput: `scopewatch ingest --once` against DuckDB's own
# read_json -> COPY TO zstd Parquet, on the same generated gateway log, in the
# same run, with peak RSS. Run twice (N/5 and N events) so memory growth with
# input size shows. Not a test: it prints figures.
#
# usage: bench/ingest.sh [EVENTS]      (default 5000000; needs ~3 GB in $BENCH_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
N=${1:-5000000}
work=${BENCH_DIR:-/tmp/scopewatch-bench}
threads=$(nproc)
mkdir -p "$work"

cargo build --release --workspace --locked >&2
if [ ! -x "$work/venv/bin/python" ]; then
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install -q duckdb==2.0.0
fi

run() { # name, then the command; prints "seconds peak_kib"
  local name=$1; shift
  /usr/bin/time -f '%e %M' -o "$work/$name.time" "$@" > "$work/$name.out"
  cat "$work/$name.time"
}

printf '%-12s %10s %10s %12s %10s %10s %12s\n' tool events MB seconds events/s MB/s peak_RSS_MB
for n in $((N / 5)) "$N"; do
  input="$work/gateway-$n.ndjson"
  [ -f "$input" ] || python3 bench/gen_gateway.py "$n" "$input"
  bytes=$(stat -c %s "$input")
  cat "$input" > /dev/null # both read from the page cache
  rm -rf "$work/data" "$work/duck.parquet"
  read -r sw_s sw_kib < <(run scopewatch "$SCOPEWATCH_BIN" --data "$work/data" ingest --once --quiet --tenant north "$input")
  events=$(python3 -c "import json,sys; d=json.load(open('$work/scopewatch.out')); print(d['events']['access']+d['events']['auth'])")
  [ "$events" = "$n" ] || { echo "scopewatch wrote $events events, expected $n" >&2; exit 1; }
  read -r dk_s dk_kib < <(run duckdb "$work/venv/bin/python" bench/duckdb_baseline.py "$input" "$work/duck.parquet" "$threads")
  for row in "scopewatch $sw_s $sw_kib" "duckdb $dk_s $dk_kib"; do
    set -- $row
    python3 - "$1" "$n" "$bytes" "$2" "$3" <<'PY'
import sys
tool, n, b, s, kib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
s = max(s, 0.01)
print(f"{tool:<12} {n:>10} {b/1e6:>10.0f} {s:>12.2f} {n/s:>10.0f} {b/1e6/s:>10.0f} {kib/1024:>12.0f}")
PY
  done
done
echo "(input: bench/gen_gateway.py canonical access lines with a JWT each; $threads cores; DuckDB $("$work/venv/bin/python" -c 'import duckdb; print(duckdb.__version__)') with threads=$threads)"

# Adapter throughput: a generated ecosystem (about N/5 events), each format's
# files ingested on their own with `ingest --once --format F`.
eco="$work/eco-$((N / 5))"
if [ ! -f "$eco/ground-truth.json" ]; then
  rm -rf "$eco"
  "$SCOPEWATCH_BIN" generate --out "$eco" --seed 11 --days 10 --tenants 3 --apps 9 \
    --events-per-day $((N / 50)) --end 2026-11-20 > "$work/generate.out"
fi
echo
printf '%-16s %10s %10s %12s %10s %10s\n' format lines MB seconds lines/s MB/s
for format in scopewatch keycloak nginx kong envoy fhir-auditevent; do
  rm -rf "$work/data-$format"
  read -r s kib < <(run "adapter-$format" "$SCOPEWATCH_BIN" --data "$work/data-$format" ingest --once --quiet \
    --format "$format" --tenant north --source "bench-$format" "$eco/$format")
  python3 - "$format" "$work/adapter-$format.out" "$s" <<'PY'
import json, sys
fmt, out, s = sys.argv[1], sys.argv[2], max(float(sys.argv[3]), 0.01)
d = json.load(open(out))
print(f"{fmt:<16} {d['lines']:>10} {d['bytes']/1e6:>10.0f} {s:>12.2f} {d['lines']/s:>10.0f} {d['bytes']/1e6/s:>10.0f}")
if d['dead_lettered']:
    print(f"  ({d['dead_lettered']} lines dead-lettered)")
PY
done
python3 - "$work/generate.out" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"(generator: {d['auth_events'] + d['access_events']} events, {d['bytes'] / 1e6:.0f} MB "
      f"in {d['seconds']} s, {d['mb_per_s']} MB/s)")
PY
