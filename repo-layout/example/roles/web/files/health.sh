#!/bin/sh
# Health check: the page server answers /healthz on its port. It allows the server
# a few seconds to come up, so the first check right after start does not race it.
exec python3 - <<'PY'
import os, sys, time, urllib.request
port = os.environ.get("BOOTPULL_VAR_PORT", "8080")
problem = ""
for attempt in range(6):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            if r.read().strip() == b"ok":
                sys.exit(0)
            problem = "it answered, but not 'ok'"
    except OSError as exc:
        problem = str(exc)
    time.sleep(0.5)
print(f"health: web is not answering on port {port}: {problem}", file=sys.stderr)
sys.exit(1)
PY
