#!/usr/bin/env bash
# The bandwidth matrix: {chat, ticker} x {plain, deflate, delta, deflate+delta}, REPS runs each,
# one JSON line per run appended to OUT, then a markdown table of the medians.
#
#   loadtest/bandwidth/run.sh [REPS]        # default 3 repetitions
#
# Env: CHORUS_BIN (default target/release/chorus), SUBSCRIBERS (500), MESSAGES (200),
# RATE (20 msgs/s), MODES, PAYLOADS, OUT (default loadtest/results/<date>/bandwidth.jsonl).
# Needs node and tests/js/node_modules (`npm ci` in tests/js; scripts/test js does it).
# Each run is bounded (publishing M/RATE seconds + at most 20 s of draining) and stops its server.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
REPS=${1:-3}
export CHORUS_BIN=${CHORUS_BIN:-target/release/chorus}
SUBSCRIBERS=${SUBSCRIBERS:-500}
MESSAGES=${MESSAGES:-200}
RATE=${RATE:-20}
MODES=${MODES:-"plain deflate delta deflate+delta"}
PAYLOADS=${PAYLOADS:-"chat ticker"}
OUT=${OUT:-loadtest/results/$(date -u +%Y-%m-%d)/bandwidth.jsonl}
mkdir -p "$(dirname "$OUT")"
LABEL=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
for rep in $(seq 1 "$REPS"); do
  for payload in $PAYLOADS; do
    for mode in $MODES; do
      timeout 300 node loadtest/bandwidth/bandwidth.js --payload "$payload" --mode "$mode" \
        --subscribers "$SUBSCRIBERS" --messages "$MESSAGES" --rate "$RATE" \
        --label "$LABEL" --out "$OUT"
    done
  done
done
python3 loadtest/bandwidth/table.py "$OUT" "$LABEL"
