# Shared helpers of the scenario scripts (sourced, not run). Every process started here is
# recorded in PIDS and stopped by `cleanup` (installed as the EXIT/INT/TERM trap).
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CHORUS="$ROOT/target/release/chorus"
LOAD="$ROOT/target/release/chorus-load"
PIDS=()
WORK=$(mktemp -d /tmp/chorus-scenario.XXXXXX)

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 1 50); do
        local alive=0
        for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    if [ "${KEEP:-0}" = 1 ]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT INT TERM

# Stops one recorded process (TERM, then KILL after 5 s) and waits for it.
stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

build() {
    if [ "${BUILD:-1}" = 1 ]; then
        log "cargo build --release -p chorus -p chorus-loadtest"
        (cd "$ROOT" && cargo build --release -p chorus -p chorus-loadtest) >&2
    fi
    [ -x "$CHORUS" ] && [ -x "$LOAD" ] || die "release binaries missing"
}

# A free TCP port on 127.0.0.1 (bind port 0 and release it).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Writes a gateway config: $1 path, $2 engine JSON object.
write_config() {
    cat >"$1" <<JSON
{"http_server": {"port": 0},
 "http_api": {"key": "k"},
 "client": {"insecure": true},
 "engine": $2,
 "channel": {"namespaces": [{"name": "chat", "history_size": 1000, "history_ttl": "300s",
   "force_recovery": true, "allow_subscribe_for_client": true,
   "allow_publish_for_subscriber": true}]}}
JSON
}

# Starts a gateway: $1 name, $2 config, optional $3 port (default: the config's port 0).
# Sets GW_PID and GW_PORT (read from the "chorus listening on http://IP:PORT" line).
start_gateway() {
    local name=$1 cfg=$2 port=${3:-0} line=""
    CHORUS_HTTP_SERVER_PORT=$port "$CHORUS" serve --config "$cfg" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    GW_PID=$!
    PIDS+=("$GW_PID")
    for _ in $(seq 1 200); do
        line=$(grep -m1 -oE 'chorus listening on https?://[0-9.]*:[0-9]*' "$WORK/$name.out" || true)
        [ -n "$line" ] && break
        kill -0 "$GW_PID" 2>/dev/null || { cat "$WORK/$name.err" >&2; die "$name exited"; }
        sleep 0.05
    done
    [ -n "$line" ] || die "$name did not print its listening line"
    GW_PORT=${line##*:}
    log "$name pid $GW_PID port $GW_PORT"
}

# Starts redis-server on $1 (port) with data dir $2; $3 = 1 for an append-only file
# (appendfsync everysec) so that history survives a restart. Sets REDIS_PID.
start_redis() {
    local port=$1 dir=$2 aof=$3
    local persist=(--appendonly no)
    [ "$aof" = 1 ] && persist=(--appendonly yes --appendfsync everysec)
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --save "" "${persist[@]}" --dir "$dir" \
        --daemonize no >>"$dir/redis.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    for _ in $(seq 1 500); do
        [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && return 0
        kill -0 "$REDIS_PID" 2>/dev/null || die "redis-server exited (see $dir/redis.log)"
        sleep 0.01
    done
    die "redis-server on $port not answering"
}

# Redis connections with at least one (s|p)subscription, and the sum of subscriptions.
redis_sub_conns() {
    redis-cli -p "$1" CLIENT LIST 2>/dev/null | awk '{
        s = 0
        for (i = 1; i <= NF; i++) if ($i ~ /^(sub|psub|ssub)=/) { split($i, kv, "="); s += kv[2] }
        if (s > 0) n++
    } END { print n + 0 }'
}
redis_sub_total() {
    redis-cli -p "$1" CLIENT LIST 2>/dev/null | awk '{
        for (i = 1; i <= NF; i++) if ($i ~ /^(sub|psub|ssub)=/) { split($i, kv, "="); s += kv[2] }
    } END { print s + 0 }'
}

# Waits until chorus-load (stderr file $1, pid $2) reports its connect phase.
wait_connected() {
    for _ in $(seq 1 1200); do
        grep -q '^connected ' "$1" 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# The JSON result line of a chorus-load run (stdout file $1).
json_line() { grep '^{' "$1" | tail -1; }
