#!/usr/bin/env python3
"""Writes N canonical scopewatch access events (gateway calls) as NDJSON.

Each line carries a JWT (so ingest must decode it and reduce it to its jti),
a raw patient id (pseudonymised on the way in) and a FHIR path, like the
gateway logs scopewatch is built for. About 350-450 bytes a line.

usage: gen_gateway.py N OUT.ndjson
"""
import base64
import json
import random
import sys

n = int(sys.argv[1])
out = sys.argv[2]
rng = random.Random(7)

def b64(obj):
    return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).rstrip(b"=").decode()

apps = ["cardio-insight", "lab-trends", "my-health-companion", "bulk-export-svc", "dermascan-ai"]
tenants = ["north", "south"]
tokens = []
for i in range(2000):
    app = rng.choice(apps)
    patient = f"pat-{rng.randrange(200000):06d}"
    claims = {"jti": f"tok-{i:06d}", "client_id": app, "scope": "launch patient/Observation.rs patient/Condition.rs",
              "sub": f"user-{rng.randrange(5000)}", "patient": patient, "exp": 1795000000}
    tokens.append((app, patient, f"{b64({'alg': 'RS256', 'typ': 'JWT'})}.{b64(claims)}.c2lnbmF0dXJl"))

templates = [
    ("GET", "/fhir/r4/{t}/Observation?patient={p}&category=laboratory"),
    ("GET", "/fhir/r4/{t}/Patient/{p}"),
    ("GET", "/fhir/r4/{t}/Condition?patient={p}"),
    ("GET", "/fhir/r4/{t}/Patient/{p}/MedicationRequest"),
    ("POST", "/fhir/r4/{t}/Observation"),
]
base_ts = 1795000000
with open(out, "w", buffering=1 << 22) as f:
    lines = []
    for i in range(n):
        app, patient, tok = tokens[rng.randrange(len(tokens))]
        method, path = templates[i % len(templates)]
        t = tenants[i & 1]
        ts = base_ts + i // 50
        status = 403 if i % 97 == 0 else 200
        lines.append(
            '{"stream":"access","ts":%d%03d,"tenant":"%s","env":"prod","client_id":"%s","token":"%s","method":"%s","path":"%s","status":%d,"bytes":%d,"latency_ms":%d,"ip":"10.%d.%d.%d","patient":"%s"}\n'
            % (ts, i % 1000, t, app, tok, method, path.format(t=t, p=patient), status, 200 + i % 5000, 3 + i % 40,
               i % 256, (i >> 8) % 256, (i >> 16) % 256, patient)
        )
        if len(lines) == 10000:
            f.write("".join(lines))
            lines = []
    f.write("".join(lines))
