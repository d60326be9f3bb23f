#!/usr/bin/env bash
# Every benchmark in one run, then their figures side by side:
#   ingest         scopewatch ingest --once against DuckDB's read_json ->
#                  Parquet on the same generated gateway log (bench/ingest.sh)
#   report         the quarterly report on a lake of REPORT_EVENTS access
#                  events over 91 days (bench/report.sh)
#   alert latency  a log line appended -> the alert email at a loopback SMTP
#                  server (bench/alert-latency.sh)
#   dashboard      requests/s and p99 latency of three pages under wrk load
#                  (bench/dashboard-load.sh)
# with the peak memory (RSS) of scopewatch in each. Each script's own full
# output is printed first and kept under $BENCH_DIR. Not a test: it prints
# figures.
#
# usage: bench/all.sh [INGEST_EVENTS] [REPORT_EVENTS] [ALERT_TRIALS] [LOAD_SECONDS]
#   defaults 5000000 50000000 20 20 (the figures in the README; the 50M lake
#   takes ~3 GB in $BENCH_DIR and a while to build the first time)
#   bench/all.sh --quick   the same at 200000 1000000 5 5, to check the scripts
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
if [ "${1:-}" = "--quick" ]; then
  set -- 200000 1000000 5 5
fi
INGEST_EVENTS=${1:-5000000}
REPORT_EVENTS=${2:-50000000}
ALERT_TRIALS=${3:-20}
LOAD_SECONDS=${4:-20}
work=${BENCH_DIR:-/tmp/scopewatch-bench}
mkdir -p "$work"
export BENCH_DIR="$work"

cargo build --release --workspace --locked >&2
started=$(date +%s)

step() { # name, script, args...
  local name=$1 script=$2; shift 2
  echo "== $name: $script $*" >&2
  local t0=$(date +%s)
  "$script" "$@" | tee "$work/all-$name.txt"
  echo "($name took $(( $(date +%s) - t0 )) s)" >&2
  echo >&2
}
step ingest bench/ingest.sh "$INGEST_EVENTS"
step report bench/report.sh "$REPORT_EVENTS"
step alert bench/alert-latency.sh "$ALERT_TRIALS"
step dashboard bench/dashboard-load.sh "$LOAD_SECONDS" 50

echo
echo "== scopewatch benchmarks, side by side ($(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GB RAM", $2 / 1048576 }' /proc/meminfo), $(date -u +%Y-%m-%d), $(( $(date +%s) - started )) s in all)"
python3 - "$work" "$INGEST_EVENTS" "$REPORT_EVENTS" <<'PY'
import re, sys
work, ingest_n, report_n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
read = lambda name: open(f"{work}/all-{name}.txt").read()
rows = []

# ingest: the larger of the two input sizes, scopewatch and DuckDB.
for line in read("ingest").splitlines():
    f = line.split()
    if len(f) == 7 and f[0] in ("scopewatch", "duckdb") and f[1] == str(ingest_n):
        tool = "scopewatch ingest --once" if f[0] == "scopewatch" else "DuckDB read_json -> Parquet"
        rows.append(("ingest", tool,
                     f"{int(f[1]):,} events, {f[2]} MB in {f[3]} s: {int(f[4]):,} events/s, {f[5]} MB/s",
                     f"{f[6]} MB"))

# report: every timed line.
for line in read("report").splitlines():
    m = re.match(r"(.+?)\s+([\d.]+) s\s+(\d+) MB$", line)
    if m:
        rows.append(("report", m.group(1).strip(), f"{m.group(2)} s on {report_n:,} access events", f"{m.group(3)} MB"))

# alert latency
text = read("alert")
m = re.search(r"min ([\d.]+) s\s+median ([\d.]+) s\s+p95 ([\d.]+) s\s+max ([\d.]+) s", text)
rss = re.search(r"peak RSS (\d+) MB", text)
n = re.search(r"(\d+) replays", text)
if m:
    rows.append(("alert latency", f"log line -> email ({n.group(1)} replays)",
                 f"median {m.group(2)} s, p95 {m.group(3)} s, max {m.group(4)} s",
                 f"{rss.group(1)} MB" if rss else "?"))

# dashboard
text = read("dashboard")
rss = re.search(r"peak RSS: (\d+) MB", text)
conn = re.search(r"(\d+) connections", text)
for line in text.splitlines():
    f = line.split()
    if len(f) == 6 and f[0].startswith("/"):
        rows.append(("dashboard", f"GET {f[0]} ({conn.group(1)} connections)",
                     f"{int(f[1]):,} requests/s, p50 {f[2]} ms, p99 {f[3]} ms" + (f", {f[5]} non-2xx" if f[5] != "0" else ""),
                     f"{rss.group(1)} MB (server)" if rss else "?"))

w = [max(len(r[i]) for r in rows) for i in range(4)]
print(f"{'benchmark':<{w[0]}}  {'what':<{w[1]}}  {'figure':<{w[2]}}  peak RSS")
for r in rows:
    print(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]}")
PY
