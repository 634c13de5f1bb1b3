#!/usr/bin/env bash
# S3 at a chosen load on ONE gateway (memory engine): every member of every room publishes
# over its WebSocket (chorus-load fanout --publish-via client). The single-node baseline
# that S4 (s4.sh) is compared with at equal load. A fresh gateway per run.
#
#   loadtest/scenarios/s3.sh [--conns 3000] [--rooms 300] [--rate 2000] [--duration 20]
#                            [--warmup 5] [--payload 100] [--runs 3] [--no-build] [--out FILE]
# Same settings via env: CONNS ROOMS RATE DURATION WARMUP PAYLOAD RUNS BUILD=0 OUT.
# Prints one JSON line per run (stdout, also appended to OUT) and the medians at the end.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

CONNS=${CONNS:-3000} ROOMS=${ROOMS:-300} RATE=${RATE:-2000} DURATION=${DURATION:-20}
WARMUP=${WARMUP:-5} PAYLOAD=${PAYLOAD:-100} RUNS=${RUNS:-1} OUT=${OUT:-$WORK/results.jsonl}
while [ $# -gt 0 ]; do
    case $1 in
        --conns) CONNS=$2; shift 2 ;; --rooms) ROOMS=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;; --duration) DURATION=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;; --payload) PAYLOAD=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;; --out) OUT=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        *) die "unknown option $1" ;;
    esac
done
[ $((CONNS % ROOMS)) = 0 ] || die "CONNS must be a multiple of ROOMS"
MEMBERS=$((CONNS / ROOMS))
build
COMMIT=${COMMIT:-$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)}

for run in $(seq 1 "$RUNS"); do
    write_config "$WORK/s3.json" '{"type": "memory"}'
    start_gateway gw "$WORK/s3.json"
    log "S3 run $run/$RUNS: $CONNS conns, $ROOMS rooms of $MEMBERS, $RATE pub/s, ${DURATION}s"
    timeout $((DURATION + 120)) "$LOAD" fanout --url "ws://127.0.0.1:$GW_PORT/connection/websocket" \
        --publish-via client --rooms "$ROOMS" --members-per-room "$MEMBERS" --rate "$RATE" \
        --payload-bytes "$PAYLOAD" --duration "${DURATION}s" --warmup "${WARMUP}s" \
        --connect-concurrency 500 --server-pid "$GW_PID" --json \
        >"$WORK/load.out" 2>"$WORK/load.err" || log "chorus-load exit $?"
    grep -v '^{' "$WORK/load.out" >&2 || true
    J=$(json_line "$WORK/load.out")
    [ -n "$J" ] || { cat "$WORK/load.err" >&2; die "no result"; }
    J=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(scenario="S3", run=int(sys.argv[2]), commit=sys.argv[3], gateways=1, nproc=int(sys.argv[4]), load_avg=float(open("/proc/loadavg").read().split()[0])); print(json.dumps(d))' \
        "$J" "$run" "$COMMIT" "$(nproc)")
    echo "$J" | tee -a "$OUT"
    stop_pid "$GW_PID"
done
python3 "$(dirname "$0")/summarize.py" "$OUT"
