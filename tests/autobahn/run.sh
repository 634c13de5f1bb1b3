#!/usr/bin/env bash
# Autobahn WebSocket conformance of chorus's WebSocket layer, driven by kosoku (Autobahn's own
# case files under Python 3). chorus runs with websocket.echo_endpoint: true and serves
# /connection/echo (echoes text and binary messages) with websocket.compression on; sections
# 1-7, 9, 10 and 12-13 (permessage-deflate) run. Reports: tests/artifacts/autobahn.
# Passes when every case is OK/NON-STRICT/INFORMATIONAL and every behaviorClose OK/INFORMATIONAL.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${CHORUS_BIN:-$ROOT/target/debug/chorus}"
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac
ARTIFACTS="${CHORUS_TEST_ARTIFACTS:-$ROOT/tests/artifacts}"
OUT="$ARTIFACTS/autobahn"
PY="${CHORUS_PYTHON:-$ROOT/.venv/bin/python}"
KOSOKU="$(dirname "$PY")/kosoku"
[ -x "$KOSOKU" ] || KOSOKU="$(command -v kosoku || true)"
if [ -z "$KOSOKU" ]; then
  echo "autobahn: kosoku not found (scripts/test installs it into .venv)" >&2
  exit 1
fi
[ -x "$BIN" ] || { echo "autobahn: no chorus binary at $BIN" >&2; exit 1; }

rm -rf "$OUT"
mkdir -p "$OUT"
WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/config.json" <<'JSON'
{
  "http_server": { "address": "127.0.0.1", "port": 0 },
  "client": { "token": { "hmac_secret_key": "autobahn-unused-secret" } },
  "http_api": { "key": "autobahn-unused-key" },
  "websocket": { "echo_endpoint": true, "message_size_limit": 33554432, "compression": true }
}
JSON

"$BIN" serve --config "$WORK/config.json" >"$OUT/server.stdout" 2>"$OUT/server.stderr" &
SERVER_PID=$!

ADDR=""
for _ in $(seq 200); do # up to 20 s
  ADDR="$(sed -nE 's#^chorus listening on http://([^[:space:]/]+)/?[[:space:]]*$#\1#p' "$OUT/server.stdout" | head -1)"
  [ -n "$ADDR" ] && break
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "autobahn: chorus exited before listening:" >&2
    cat "$OUT/server.stdout" "$OUT/server.stderr" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$ADDR" ]; then
  echo "autobahn: chorus did not print 'chorus listening on' within 20 s" >&2
  cat "$OUT/server.stderr" >&2
  exit 1
fi
echo "autobahn: chorus echo endpoint at ws://$ADDR/connection/echo"

set +e
(cd "$WORK" && timeout 720 "$KOSOKU" -m fuzzingclient \
  -i '1.*' -i '2.*' -i '3.*' -i '4.*' -i '5.*' -i '6.*' -i '7.*' -i '9.*' -i '10.*' \
  -i '12.*' -i '13.*' -p 2 -o "$OUT/clients" \
  "ws://$ADDR/connection/echo") >"$OUT/kosoku.log" 2>&1
KRC=$?
set -e
tail -5 "$OUT/kosoku.log"

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "autobahn: chorus died during the run" >&2
  tail -50 "$OUT/server.stderr" >&2
  exit 1
fi

INDEX="$OUT/clients/index.json"
if [ ! -f "$INDEX" ]; then
  echo "autobahn: no report at $INDEX (kosoku exit $KRC)" >&2
  tail -30 "$OUT/kosoku.log" >&2
  exit 1
fi

"$PY" - "$INDEX" "$KRC" <<'PYEOF'
import json, sys
from collections import Counter

index = json.load(open(sys.argv[1]))
krc = int(sys.argv[2])
ok_behavior = {"OK", "NON-STRICT", "INFORMATIONAL"}
ok_close = {"OK", "INFORMATIONAL"}
behaviors, closes, failed = Counter(), Counter(), []
sections = Counter()
for agent, cases in index.items():
    for case_id, r in cases.items():
        b, c = r.get("behavior"), r.get("behaviorClose")
        behaviors[b] += 1
        closes[c] += 1
        sections[case_id.split(".")[0]] += 1
        if b not in ok_behavior or c not in ok_close:
            failed.append((case_id, b, c, r.get("reportfile", "")))

def key(case):
    return [int(p) if p.isdigit() else p for p in case[0].split(".")]

total = sum(behaviors.values())
print("autobahn: cases per section:", dict(sorted(sections.items(), key=lambda kv: int(kv[0]))))
print("autobahn: behavior:", dict(behaviors), "behaviorClose:", dict(closes))
for case_id, b, c, rf in sorted(failed, key=key)[:60]:
    print(f"autobahn: FAIL {case_id}: behavior={b} behaviorClose={c} {rf}")
if len(failed) > 60:
    print(f"autobahn: ... and {len(failed) - 60} more failed cases")
print(f"autobahn: {total - len(failed)} passed, {len(failed)} failed")
if total == 0:
    print("autobahn: no case ran")
    sys.exit(1)
if failed or krc not in (0, 1):
    sys.exit(1)
PYEOF
