#!/usr/bin/env bash
# S4: the S3 shape spread over 3 gateways sharing 1 Redis (engine.type = "redis"). Clients
# are spread round-robin over the 3 gateways, so the 10 members of each room sit on all three
# gateways (≥ 2 per room as soon as rooms have ≥ 2 members). Fresh Redis and gateways per run.
#
#   loadtest/scenarios/s4.sh [--conns 3000] [--rooms 300] [--rate 2000] [--duration 20]
#        [--warmup 5] [--payload 100] [--runs 3] [--restart-redis-at SECS] [--no-aof]
#        [--restart-gateway-at SECS] [--gateways 3] [--no-build] [--out FILE]
# Same settings via env: CONNS ROOMS RATE DURATION WARMUP PAYLOAD RUNS RESTART_AT REDIS_AOF
# GATEWAYS BUILD=0 OUT. (--gateways 1 = one gateway through Redis: separates the cost of the
# Redis path from that of running several processes on the same cores.)
#
# Reports per run (JSON line, also appended to OUT), then medians:
# * chorus-load figures (latency from the scheduled send, loss/dups/reorders, deliveries per
#   server CPU-second over the 3 gateways);
# * Redis CPU over the measured window as % of one core (extra_cpu_pct_core; absent when
#   Redis was restarted inside the window);
# * redis_sub_conns: Redis connections holding ≥ 1 (s|p)subscription (must be 3: one per
#   gateway), sampled mid-window and again after a restart;
# * with --restart-redis-at SECS (seconds after all clients are connected): Redis is stopped
#   (SIGTERM, REDIS_KILL_SIGNAL to change) and started again on the same port and data dir.
#   redis_down_ms = stop to accepting again; redis_resubscribed_ms = Redis accepting again
#   to the sum of subscriptions back at its pre-restart value (polled with redis-cli every
#   ~10 ms, so ±10 ms). Clients resubscribe with recover:true after the unsubscribe 2500
#   push (and reconnect with recovery if dropped: chorus-load --reconnect).
#   Restart runs use an append-only file (appendfsync everysec) by default so that history
#   and the stream epochs survive the restart; without it (--no-aof) history is lost, the
#   epoch changes and clients get recovered:false (loss expected).
# * with --restart-gateway-at SECS: gateway 1 is killed (SIGKILL) SECS after all clients are
#   connected and started again on the same port; its clients reconnect (chorus-load
#   --reconnect) and subscribe with recover:true (history is in Redis, so recovered:true and
#   0 loss are expected). Server CPU figures are then absent (a pid is gone).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

CONNS=${CONNS:-3000} ROOMS=${ROOMS:-300} RATE=${RATE:-2000} DURATION=${DURATION:-20}
WARMUP=${WARMUP:-5} PAYLOAD=${PAYLOAD:-100} RUNS=${RUNS:-1} OUT=${OUT:-$WORK/results.jsonl}
RESTART_AT=${RESTART_AT:-} GW_RESTART_AT=${GW_RESTART_AT:-} REDIS_AOF=${REDIS_AOF:-} REDIS_KILL_SIGNAL=${REDIS_KILL_SIGNAL:-TERM}
GATEWAYS=${GATEWAYS:-3}
while [ $# -gt 0 ]; do
    case $1 in
        --conns) CONNS=$2; shift 2 ;; --rooms) ROOMS=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;; --duration) DURATION=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;; --payload) PAYLOAD=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;; --out) OUT=$2; shift 2 ;;
        --restart-redis-at) RESTART_AT=$2; shift 2 ;;
        --restart-gateway-at) GW_RESTART_AT=$2; shift 2 ;;
        --no-aof) REDIS_AOF=0; shift ;;
        --gateways) GATEWAYS=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        *) die "unknown option $1" ;;
    esac
done
[ $((CONNS % ROOMS)) = 0 ] || die "CONNS must be a multiple of ROOMS"
MEMBERS=$((CONNS / ROOMS))
[ "$MEMBERS" -ge 2 ] || [ "$GATEWAYS" = 1 ] || die "rooms need ≥ 2 members to span gateways"
if [ -z "$REDIS_AOF" ]; then REDIS_AOF=$([ -n "$RESTART_AT" ] && echo 1 || echo 0); fi
command -v redis-server >/dev/null || die "redis-server missing (apt-get install -y redis-server)"
build
COMMIT=${COMMIT:-$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)}

for run in $(seq 1 "$RUNS"); do
    RPORT=$(free_port)
    RDIR="$WORK/redis-$run"
    start_redis "$RPORT" "$RDIR" "$REDIS_AOF"
    log "redis pid $REDIS_PID port $RPORT (aof $REDIS_AOF)"
    write_config "$WORK/s4.json" "{\"type\": \"redis\", \"redis\": {\"address\": \"127.0.0.1:$RPORT\"}}"
    URLS=() SPIDS=() GPIDS=() GPORTS=()
    for g in $(seq 1 $GATEWAYS); do
        start_gateway "gw$g" "$WORK/s4.json"
        GPORTS+=("$GW_PORT")
        URLS+=(--url "ws://127.0.0.1:$GW_PORT/connection/websocket")
        SPIDS+=(--server-pid "$GW_PID")
        GPIDS+=("$GW_PID")
    done
    EXTRA=(--extra-pid "$REDIS_PID")
    RECONNECT=()
    [ -n "$RESTART_AT$GW_RESTART_AT" ] && RECONNECT=(--reconnect)
    log "S4 run $run/$RUNS: $CONNS conns over $GATEWAYS gateways, $ROOMS rooms of $MEMBERS, $RATE pub/s, ${DURATION}s${RESTART_AT:+, Redis restart at +${RESTART_AT}s}"
    timeout $((DURATION + 120)) "$LOAD" fanout "${URLS[@]}" \
        --publish-via client --rooms "$ROOMS" --members-per-room "$MEMBERS" --rate "$RATE" \
        --payload-bytes "$PAYLOAD" --duration "${DURATION}s" --warmup "${WARMUP}s" \
        --connect-concurrency 500 "${SPIDS[@]}" "${EXTRA[@]}" "${RECONNECT[@]}" --json \
        >"$WORK/load.out" 2>"$WORK/load.err" &
    LPID=$!
    PIDS+=("$LPID")
    SUBS="" SUBS_AFTER="" DOWN_MS="" RESUB_MS="" TOTAL_BEFORE="" TOTAL_AFTER="" GW_DOWN_MS=""
    if wait_connected "$WORK/load.err" "$LPID"; then
        if [ -n "$GW_RESTART_AT" ]; then
            sleep "$GW_RESTART_AT"
            SUBS=$(redis_sub_conns "$RPORT")
            TOTAL_BEFORE=$(redis_sub_total "$RPORT")
            T0=$(now_ms)
            kill -KILL "${GPIDS[0]}" 2>/dev/null || true
            wait "${GPIDS[0]}" 2>/dev/null || true
            start_gateway gw1-restarted "$WORK/s4.json" "${GPORTS[0]}"
            GPIDS[0]=$GW_PID
            GW_DOWN_MS=$(( $(now_ms) - T0 ))
            log "gateway 1 killed and listening again on ${GPORTS[0]} after ${GW_DOWN_MS} ms"
            sleep 2
            SUBS_AFTER=$(redis_sub_conns "$RPORT")
        elif [ -n "$RESTART_AT" ]; then
            sleep "$RESTART_AT"
            SUBS=$(redis_sub_conns "$RPORT")
            TOTAL_BEFORE=$(redis_sub_total "$RPORT")
            T0=$(now_ms)
            kill "-$REDIS_KILL_SIGNAL" "$REDIS_PID" 2>/dev/null || true
            for _ in $(seq 1 500); do kill -0 "$REDIS_PID" 2>/dev/null || break; sleep 0.01; done
            wait "$REDIS_PID" 2>/dev/null || true
            start_redis "$RPORT" "$RDIR" "$REDIS_AOF"
            T1=$(now_ms)
            DOWN_MS=$((T1 - T0))
            TOTAL_AFTER=0
            for _ in $(seq 1 1000); do
                TOTAL_AFTER=$(redis_sub_total "$RPORT")
                [ "$TOTAL_AFTER" -ge "$TOTAL_BEFORE" ] && break
                sleep 0.005
            done
            RESUB_MS=$(( $(now_ms) - T1 ))
            [ "$TOTAL_AFTER" -ge "$TOTAL_BEFORE" ] || RESUB_MS=""
            log "redis restarted: down ${DOWN_MS} ms, subscriptions $TOTAL_AFTER/$TOTAL_BEFORE back after ${RESUB_MS:-∞} ms"
            sleep 2
            SUBS_AFTER=$(redis_sub_conns "$RPORT")
        else
            sleep $((WARMUP + 1))
            SUBS=$(redis_sub_conns "$RPORT")
            TOTAL_BEFORE=$(redis_sub_total "$RPORT")
        fi
        log "redis connections with subscriptions: ${SUBS} (after restart: ${SUBS_AFTER:--}), subscriptions $TOTAL_BEFORE"
    fi
    wait "$LPID" || log "chorus-load exit $?"
    LOADAVG=$(cut -d' ' -f1 /proc/loadavg)
    grep -v '^{' "$WORK/load.out" >&2 || true
    J=$(json_line "$WORK/load.out")
    [ -n "$J" ] || { cat "$WORK/load.err" >&2; die "no result"; }
    J=$(python3 - "$J" <<PY
import json, sys
d = json.loads(sys.argv[1])
def num(s):
    return int(s) if s not in ("", None) else None
d.update(scenario="S4", run=$run, commit="$COMMIT", gateways=$GATEWAYS, nproc=$(nproc),
         redis_aof=$REDIS_AOF, restart_at_s=num("$RESTART_AT"),
         gateway_restart_at_s=num("$GW_RESTART_AT"), gateway_down_ms=num("$GW_DOWN_MS"), load_avg=float("$LOADAVG"),
         redis_sub_conns=num("$SUBS"), redis_sub_conns_after_restart=num("$SUBS_AFTER"),
         redis_subscriptions=num("$TOTAL_BEFORE"), redis_subscriptions_after=num("$TOTAL_AFTER"),
         redis_down_ms=num("$DOWN_MS"), redis_resubscribed_ms=num("$RESUB_MS"))
print(json.dumps(d))
PY
)
    echo "$J" | tee -a "$OUT"
    if [ -n "$SUBS" ] && [ "$SUBS" != "$GATEWAYS" ]; then
        log "FAIL: $SUBS Redis subscriber connections, expected exactly $GATEWAYS (one per gateway)"
    fi
    for p in "${GPIDS[@]}"; do stop_pid "$p"; done
    stop_pid "$REDIS_PID"
done
python3 "$(dirname "$0")/summarize.py" "$OUT"
