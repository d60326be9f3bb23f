"""Driver of bench/alert-latency.sh: see there."""
import json, os, socket, statistics, subprocess, sys, tempfile, time
from datetime import datetime, timezone

binary, trials = sys.argv[1], int(sys.argv[2])
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
work = tempfile.mkdtemp(prefix="scopewatch-latency-")
logs, data, mail = (os.path.join(work, d) for d in ("logs", "data", "mail"))
os.makedirs(logs)
os.makedirs(mail)

s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
sink = subprocess.Popen([sys.executable, os.path.join(root, "rules/tests/smtp_sink.py"), mail, str(port)],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
assert sink.stdout.readline().strip() == "READY", "the SMTP server did not start (run scripts/setup.sh)"

defaults = subprocess.run([binary, "rules", "defaults"], check=True, capture_output=True, text=True).stdout
rules = os.path.join(work, "rules.toml")
with open(rules, "w") as f:
    f.write(defaults + f"""
[delivery]
[delivery.smtp]
host = "127.0.0.1"
port = {port}
security = "none"
from = "scopewatch <alerts@example.org>"
[[delivery.destination]]
name = "secops"
type = "email"
to = ["secops@example.org"]
[[delivery.route]]
min_severity = "high"
destinations = ["secops"]
""")
config = os.path.join(work, "scopewatch.toml")
log = os.path.join(logs, "idp.ndjson")
with open(config, "w") as f:
    f.write(f'data_dir = "{data}"\nrules = "{rules}"\n\n[[source]]\nname = "idp"\npaths = ["{logs}/*.ndjson"]\n')

def now():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")

def refresh(consumed, issued, ip):
    return json.dumps({"stream": "auth", "ts": now(), "tenant": "north", "kind": "refresh",
                       "outcome": "success", "client_id": "medrec", "grant_type": "refresh_token",
                       "refresh_token": issued, "parent_refresh_token": consumed, "ip": ip})

def append(lines):
    with open(log, "a") as f:
        f.write("".join(l + "\n" for l in lines))

def messages():
    return len([n for n in os.listdir(mail) if n.endswith(".json")]) if os.path.isdir(mail) else 0

append([refresh("rt-start", "rt-0", "10.0.0.1")])
env = dict(os.environ, SCOPEWATCH_LOG="warn")
proc = subprocess.Popen([binary, "--config", config, "ingest"], env=env,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
state = os.path.join(data, "alerts", "engine-state.json")
deadline = time.time() + 60
while not os.path.exists(state):
    assert time.time() < deadline, "ingest did not start judging"
    time.sleep(0.05)

delays = []
for k in range(trials):
    before = messages()
    token = f"rt-{k}"
    append([refresh(token, f"rt-next-{k}", "10.0.0.1")])
    time.sleep(0.5)  # the legitimate use lands first
    t0 = time.monotonic()
    # The same refresh token consumed again, from elsewhere.
    append([refresh(token, f"rt-stolen-{k}", f"203.0.113.{k % 250 + 1}")])
    while messages() <= before:
        assert sink.poll() is None, "the SMTP server died"
        assert time.monotonic() - t0 < 30, "no alert email within 30 s"
        time.sleep(0.005)
    delays.append(time.monotonic() - t0)

with open(f"/proc/{proc.pid}/status") as f:
    hwm = next(l for l in f if l.startswith("VmHWM")).split()[1]
proc.terminate(); proc.wait()
sink.stdin.close(); sink.wait()
delays.sort()
p95 = delays[min(len(delays) - 1, int(round(0.95 * (len(delays) - 1))))]
print(f"log line appended -> alert email received, {trials} replays (scopewatch ingest, built-in rules, SMTP on loopback)")
print(f"  min {delays[0]:.3f} s  median {statistics.median(delays):.3f} s  p95 {p95:.3f} s  max {delays[-1]:.3f} s")
print(f"  scopewatch peak RSS {int(hwm) // 1024} MB")
