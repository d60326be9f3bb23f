#!/usr/bin/env bash
# Dashboard under load: `scopewatch serve` on a lake of the bundled samples,
# a logged-in session (a user added with `scopewatch user add`, its one-time
# password changed through the forms, as a person would), then wrk with
# CONNECTIONS connections for SECONDS seconds against the overview `/`, the
# app list `/apps` and the busiest app's page `/apps/<client_id>`, one page
# after the other. Prints requests/s, p50 and p99 latency per page, and the
# server's peak memory. Not a test: it prints figures.
#
# usage: bench/dashboard-load.sh [SECONDS] [CONNECTIONS]   (default 20 50)
# Installs wrk (and GNU time) with apt-get when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
SECONDS_PER_PAGE=${1:-20}
CONNECTIONS=${2:-50}
work=${BENCH_DIR:-/tmp/scopewatch-bench}
mkdir -p "$work"

need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
[ -x /usr/bin/time ] || need+=(time)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  echo "dashboard-load: installing ${need[*]}" >&2
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >&2
fi

cargo build --release --workspace --locked >&2

# A lake of the samples (built once; reused by later runs).
data="$work/dashboard-data"
if [ ! -f "$data/.ingested" ]; then
  rm -rf "$data"
  "$SCOPEWATCH_BIN" --config sample-logs/scopewatch.toml --data "$data" ingest --once --quiet > /dev/null
  touch "$data/.ingested"
fi
sw=("$SCOPEWATCH_BIN" --config sample-logs/scopewatch.toml --data "$data")
app=$("${sw[@]}" sql --format csv "SELECT client_id FROM access GROUP BY ALL ORDER BY count(*) DESC LIMIT 1" | tail -n 1 | tr -d '\r')

# A user for the benchmark, with a fresh one-time password each run.
user=bench
if "${sw[@]}" user list 2>/dev/null | grep -q "\"username\":\"$user\""; then
  otp=$("${sw[@]}" user reset "$user" 2>/dev/null)
else
  otp=$("${sw[@]}" user add "$user" --role admin 2>/dev/null | tail -n 1)
fi
password="bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
SCOPEWATCH_LOG=warn /usr/bin/time -v -o "$work/dashboard.time" \
  "${sw[@]}" serve --listen "127.0.0.1:$port" > "$work/dashboard.out" 2> "$work/dashboard.err" &
timer=$!
# SIGTERM goes to scopewatch (time's child), so time sees it exit and
# reports its peak memory.
stop() {
  local pid
  pid=$(pgrep -P "$timer" || true)
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
  wait "$timer" 2>/dev/null || true
}
trap stop EXIT
for _ in $(seq 100); do
  curl -fs "$base/healthz" > /dev/null 2>&1 && break
  sleep 0.1
done

# Log in as a browser would: the login form's CSRF token, the login, then
# the forced password change with the session's CSRF token.
jar="$work/dashboard.cookies"
rm -f "$jar"
csrf() { sed -n 's/.*name="csrf" value="\([0-9a-f]*\)".*/\1/p' | head -n 1; }
token=$(curl -fs -c "$jar" -b "$jar" "$base/login" | csrf)
curl -fs -o /dev/null -c "$jar" -b "$jar" --data-urlencode "username=$user" \
  --data-urlencode "password=$otp" --data-urlencode "csrf=$token" "$base/login"
token=$(curl -fs -c "$jar" -b "$jar" "$base/password" | csrf)
curl -fs -o /dev/null -c "$jar" -b "$jar" --data-urlencode "current=$otp" \
  --data-urlencode "new=$password" --data-urlencode "confirm=$password" \
  --data-urlencode "csrf=$token" "$base/password"
session=$(awk '$6 == "sw_session" { print $7 }' "$jar")
[ -n "$session" ] || { echo "dashboard-load: the login failed" >&2; exit 1; }

pages=("/" "/apps" "/apps/$app")
for page in "${pages[@]}"; do
  code=$(curl -s -o "$work/page.html" -w '%{http_code}' -H "Cookie: sw_session=$session" "$base$page")
  if [ "$code" != 200 ]; then
    echo "dashboard-load: $page answered $code with the session, not 200" >&2
    exit 1
  fi
done

echo "dashboard under load: $CONNECTIONS connections, ${SECONDS_PER_PAGE}s per page, wrk with $(nproc) threads, $(nproc) cores; lake: the samples ($("${sw[@]}" sql --format csv "SELECT count(*) FROM access" | tail -n 1 | tr -d '\r') access events)"
printf '%-32s %10s %10s %10s %10s %8s\n' page requests/s p50_ms p99_ms max_ms non2xx
for page in "${pages[@]}"; do
  wrk -t "$(nproc)" -c "$CONNECTIONS" -d "${SECONDS_PER_PAGE}s" --latency \
    -H "Cookie: sw_session=$session" "$base$page" > "$work/wrk.out"
  python3 - "$page" "$work/wrk.out" <<'PY'
import re, sys
page, text = sys.argv[1], open(sys.argv[2]).read()
def ms(v):
    n, unit = re.match(r"([\d.]+)(us|ms|s|m)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
mx = ms(re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", text, re.M).group(1))
bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
errors = re.search(r"Socket errors:.*", text)
print(f"{page:<32} {rps:>10.0f} {p50:>10.1f} {p99:>10.1f} {mx:>10.1f} {int(bad.group(1)) if bad else 0:>8}")
if errors:
    print(f"  ({errors.group(0)})")
PY
done
stop
trap - EXIT
peak=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$work/dashboard.time")
echo "scopewatch serve peak RSS: $((peak / 1024)) MB"
