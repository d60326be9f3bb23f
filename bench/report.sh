#!/usr/bin/env bash
# Quarterly report speed: a lake of N access events (default 50 million)
# over the 91 days up to the samples' last day, built by replicating the ingested sample lake (each copy
# shifted in time, with its own event ids and patients), then the full
# quarterly report (JSON and HTML) and the per-app matrix query timed with
# peak RSS. Not a test: it prints figures.
#
# usage: bench/report.sh [ACCESS_EVENTS]     (needs ~3 GB in $BENCH_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
N=${1:-50000000}
work=${BENCH_DIR:-/tmp/scopewatch-bench}
mkdir -p "$work"
cargo build --release --workspace --locked >&2
if [ ! -x "$work/venv/bin/python" ]; then
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install -q duckdb==2.0.0
fi

samples="$work/sample-data"
rm -rf "$samples"
"$SCOPEWATCH_BIN" --config sample-logs/scopewatch.toml --data "$samples" ingest --once --quiet > /dev/null

lake="$work/report-lake-$N"
if [ ! -f "$lake/.done" ]; then
  rm -rf "$lake"
  mkdir -p "$lake/lake"
  "$work/venv/bin/python" - "$samples/lake" "$lake/lake" "$N" <<'PY'
import sys, duckdb
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
con = duckdb.connect()
con.execute("SET threads = 2; SET preserve_insertion_order = false")
rows = con.execute(f"SELECT count(*) FROM read_parquet('{src}/access/*/*.parquet')").fetchone()[0]
copies = -(-n // rows)
for stream in ("access", "auth"):
    # Copy i is shifted back by (i % 7) * 13 days: 14 sample days become 91.
    con.execute(f"""
      COPY (
        SELECT * REPLACE (
                 s.ts - to_days(CAST((c.i % 7) * 13 AS INTEGER)) AS ts,
                 s.event_id || ':' || c.i AS event_id,
                 CASE WHEN s.patient IS NULL THEN NULL
                      ELSE 'p_' || substr(md5(s.patient || CAST(c.i % 2000 AS VARCHAR)), 1, 16) END AS patient),
               CAST(timezone('UTC', s.ts - to_days(CAST((c.i % 7) * 13 AS INTEGER))) AS DATE) AS date
        FROM read_parquet('{src}/{stream}/*/*.parquet', hive_partitioning = false) s,
             range({copies}) c(i)
        {"LIMIT " + str(n) if stream == "access" else ""}
      ) TO '{dst}/{stream}' (FORMAT parquet, PARTITION_BY (date), COMPRESSION zstd)
    """)
for stream in ("access", "auth"):
    c = con.execute(f"SELECT count(*), min(date), max(date) FROM read_parquet('{dst}/{stream}/*/*.parquet')").fetchone()
    print(f"{stream}: {c[0]} rows, {c[1]} .. {c[2]}", file=sys.stderr)
PY
  touch "$lake/.done"
fi
du -sh "$lake/lake" >&2

timed() { # label, then the command; prints label seconds peak_MB
  local label=$1; shift
  /usr/bin/time -f '%e %M' -o "$work/$label.time" "$@" > "$work/$label.out"
  read -r s kib < "$work/$label.time"
  printf '%-34s %8.2f s %8d MB\n' "$label" "$s" $((kib / 1024))
}
sw=("$SCOPEWATCH_BIN" --data "$lake")
range=(--from 2026-08-22 --to 2026-11-20 --registry sample-logs/registry.toml)
echo "lake: $N access events over 91 days (2 cores)"
timed "report json (full quarter)" "${sw[@]}" report "${range[@]}" --format json --out "$work/q.json"
timed "report html (full quarter)" "${sw[@]}" report "${range[@]}" --format html --out "$work/q.html"
timed "report json (one tenant)" "${sw[@]}" report "${range[@]}" --tenant north --format json --out "$work/q-north.json"
timed "per-app matrix query (sql)" "${sw[@]}" sql --format json \
  "SELECT tenant, client_id, app_version, required, outcome, count(*) AS calls, count(DISTINCT patient) AS patients FROM access WHERE ts >= TIMESTAMPTZ '2026-08-22 00:00:00+00' AND ts < TIMESTAMPTZ '2026-11-21 00:00:00+00' GROUP BY ALL"
