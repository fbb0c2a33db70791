#!/usr/bin/env bash
# Cluster benchmark (BENCHMARKS.md "Cluster"), part of `make bench`:
#
#   (a) Redis load: commands per second a node costs Redis with no stream, and each live
#       stream on top (INFO commandstats over CLUSTER_SECONDS, reset before each phase),
#       then the same with a viewer polling a stream's playlist through a node that does
#       not own it (the owner lookups of the proxy), and, for scale, what this Redis does
#       per second on this machine (redis-benchmark, SET and EVALSHA of a claim-sized
#       script), from which BENCHMARKS.md does the arithmetic;
#   (b) the cost of serving an LL-HLS part through a node that does not own the stream
#       (proxied to the owner) against the owner itself: wrk on the same part URL at node
#       A (owner) and node B, alternating, CLUSTER_ROUNDS rounds: requests per second,
#       latency p50/p99, and CPU seconds of A and B per 1000 requests.
#
#   bash benches/cluster.sh                        # after `make build`
#   CLUSTER_SECONDS=10 CLUSTER_ROUNDS=1 bash benches/cluster.sh   # smoke test
#
# Setup: a redis-server (Debian's) on a loopback port, no persistence; two whipcast nodes
# (target/release/whipcast) with [cluster] on it, the embedded defaults (2 s segments,
# 200 ms parts), claim_ttl 10 s (the default) and a source-only ladder (passthrough: the
# benchmark is about coordination and serving, not transcoding). Publishers: the test
# publisher (benches/cpu.rs `publish`), 1280x720@30 2500 kbit/s for (b), and two more at
# 320x180 for the per-stream Redis figure of (a) (Redis load does not depend on bitrate).
#
# Env: CLUSTER_SECONDS (30), CLUSTER_ROUNDS (2), CLUSTER_WRK_SECONDS (10),
# CLUSTER_CONNECTIONS (16), CLUSTER_OUT (target/bench-cluster), WHIPCAST_BIN.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=SCRIPTDIR/lib.sh
source "$ROOT/benches/lib.sh"
# shellcheck disable=SC2034 # read by benches/lib.sh
LOG_PREFIX=bench-cluster KEPT_WHAT="work files"
SECS=${CLUSTER_SECONDS:-30}
ROUNDS=${CLUSTER_ROUNDS:-2}
WRK_SECS=${CLUSTER_WRK_SECONDS:-10}
CONNS=${CLUSTER_CONNECTIONS:-16}
OUT=${CLUSTER_OUT:-$ROOT/target/bench-cluster}
WHIPCAST=${WHIPCAST_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/whipcast}
TCK=$(getconf CLK_TCK)

for tool in wrk curl jq redis-server redis-cli redis-benchmark; do
    command -v "$tool" >/dev/null || { log "missing $tool (deploy/install-test-deps.sh, deploy/install-bench-deps.sh)"; exit 2; }
done
[[ -x $WHIPCAST ]] || { log "no $WHIPCAST: make build"; exit 2; }

mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/whipcast-cluster.XXXXXX")
PIDS=()
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building the publisher (benches/cpu.rs)"
PUBLISHER=$(bench_exe cpu 2>"$WORK/build.log")
[[ -x $PUBLISHER ]] || fail "publisher not built: $(tail -20 "$WORK/build.log")"

# ---- Redis and two nodes -----------------------------------------------------------------------
RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.log" 2>&1 &
PIDS+=("$!")
rcli() { redis-cli -p "$RPORT" "$@"; }
wait_until 10 rcli ping >/dev/null 2>&1 || fail "redis-server did not start"

start_node() { # id → sets NODE_PID, NODE_BASE
    local id=$1 port
    port=$(free_port)
    {
        cat <<EOF
[server]
listen = "127.0.0.1:$port"
[cluster]
redis_url = "redis://127.0.0.1:$RPORT/0"
node_id = "$id"
[limits]
max_connections_per_client = 4096
publish_per_minute = 0
EOF
        passthrough_ladder media.ladder
    } >"$WORK/$id.toml"
    "$WHIPCAST" --config "$WORK/$id.toml" >"$WORK/$id.log" 2>&1 &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
    NODE_BASE="http://127.0.0.1:$port"
    wait_healthz "$NODE_BASE" "$WORK/$id.log" "node $id"
}
start_node node-a
A_PID=$NODE_PID A=$NODE_BASE
start_node node-b
B_PID=$NODE_PID B=$NODE_BASE
log "redis :$RPORT, node-a $A (PID $A_PID), node-b $B (PID $B_PID)"

publish() { # base stream width height kbps
    "$PUBLISHER" publish --url "$1/whip/$2" --seconds 3600 --width "$3" --height "$4" \
        --fps 30 --bitrate "$5" >"$WORK/pub-$2.out" 2>"$WORK/pub-$2.err" &
    PIDS+=("$!")
    wait_until 30 curl -sf --noproxy '*' -m 2 -o "$WORK/$2.master.m3u8" "$1/hls/$2/master.m3u8" ||
        fail "$2 not live: $(tail -5 "$WORK/pub-$2.err")"
}

# Client commands per second over SECS, by command, from MONITOR: a line per command a
# client sent ("[0 127.0.0.1:port]"); the commands the Lua scripts run inside an EVALSHA
# ("[0 lua]") are counted apart (INFO commandstats mixes both).
COMMANDS_TOTAL=0
measure_redis() { # tag
    local f=$WORK/$1.monitor
    timeout "$SECS" redis-cli -p "$RPORT" monitor >"$f" 2>/dev/null || true
    COMMANDS_TOTAL=$(grep -c '\[0 127\.' "$f" || true)
    INSIDE=$(grep -c '\[0 lua\]' "$f" || true)
    BY_COMMAND=$(grep '\[0 127\.' "$f" | awk '{gsub(/"/, "", $4); print tolower($4)}' | sort | uniq -c |
        awk -v s="$SECS" '{printf "%s %.2f/s, ", $2, $1 / s}')
    log "$1: $(calc "$COMMANDS_TOTAL / $SECS") client commands/s ($BY_COMMAND), $(calc "$INSIDE / $SECS")/s inside scripts"
}

# ---- (a) Redis load -----------------------------------------------------------------------------
sleep 4 # both nodes' first heartbeats done
measure_redis idle
IDLE=$(calc "$COMMANDS_TOTAL / $SECS / 2")
IDLE_BY=$BY_COMMAND
publish "$A" big 1280 720 2500
publish "$A" small1 320 180 300
publish "$B" small2 320 180 300
sleep 4
measure_redis streams3
PER_STREAM=$(calc "($COMMANDS_TOTAL / $SECS - 2 * $IDLE) / 3")
STREAMS_BY=$BY_COMMAND
# A viewer of stream "big" through node B (which proxies to A): one playlist request every
# 200 ms (an LL-HLS player's pace), for the owner lookups it costs.
MEDIA="/hls/big/$(grep -A1 '^#EXT-X-STREAM-INF' "$WORK/big.master.m3u8" | grep -v '^#' | head -n1)"
( end=$(($(date +%s) + SECS + 2)); while (($(date +%s) < end)); do curl -s --noproxy '*' -m 2 -o /dev/null "$B$MEDIA"; sleep 0.2; done ) &
VIEWER=$!
PIDS+=("$VIEWER")
sleep 1
measure_redis viewer
wait "$VIEWER" 2>/dev/null || true
PER_PROXIED_STREAM=$(calc "$COMMANDS_TOTAL / $SECS - 2 * $IDLE - 3 * $PER_STREAM")
VIEWER_BY=$BY_COMMAND

# What this Redis does per second here (one client, no pipelining, as whipcast's
# commands go: each waits for its answer).
rps_of() { tr '\r' '\n' | grep -o '[0-9.]* requests per second' | tail -1 | cut -d' ' -f1; }
SET_RPS=$(redis-benchmark -p "$RPORT" -q -n 100000 -c 50 -t set | rps_of)
SHA=$(rcli script load "local c = redis.call('GET', KEYS[1]) if c == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end return 0")
EVAL_RPS=$(redis-benchmark -p "$RPORT" -q -n 100000 -c 50 evalsha "$SHA" 1 bench:claim "node 1" 10000 | rps_of)
log "redis-benchmark: SET $SET_RPS/s, EVALSHA (renewal-sized) $EVAL_RPS/s"

# ---- (b) a part through the owner and through another node ---------------------------------------
# A fresh part per round: parts are kept only for the newest segments (HLS2 §6.2.2), so a
# part picked once would be gone (404) a few segments later.
pick_part() {
    local playlist uri
    playlist=$(curl -sf --noproxy '*' -m 2 "$A$MEDIA")
    uri=$(echo "$playlist" | grep '^#EXT-X-PART:' | grep -o 'URI="[^"]*"' | sed 's/URI="//; s/"//' | tail -n8 | head -n1)
    [[ -n $uri ]] || fail "no part in $MEDIA"
    PART="$(dirname "$MEDIA")/$uri"
    PART_BYTES=$(curl -sf --noproxy '*' -m 2 "$A$PART" | wc -c)
    log "part $PART ($PART_BYTES bytes)"
}
ROWS=()
for ((r = 1; r <= ROUNDS; r++)); do
    pick_part
    for side in owner proxied; do
        url=$A$PART
        [[ $side == proxied ]] && url=$B$PART
        a0=$(proc_ticks "$A_PID") b0=$(proc_ticks "$B_PID")
        wrk -t2 -c"$CONNS" -d"${WRK_SECS}s" --latency "$url" >"$WORK/wrk-$side-$r.txt"
        a1=$(proc_ticks "$A_PID") b1=$(proc_ticks "$B_PID")
        f=$WORK/wrk-$side-$r.txt
        reqs=$(awk '/requests in/ {print $1}' "$f")
        rps=$(awk '/^Requests\/sec/ {print $2}' "$f")
        p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$f")")
        p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$f")")
        non2xx=$(awk '/Non-2xx/ {print $NF}' "$f")
        cpu_a=$(calc "($a1 - $a0) / $TCK / $reqs * 1000")
        cpu_b=$(calc "($b1 - $b0) / $TCK / $reqs * 1000")
        ROWS+=("| $r | $side | $rps | $p50 | $p99 | ${non2xx:-0} | $cpu_a | $cpu_b |")
        log "round $r $side: $rps req/s, p50 $p50 ms, p99 $p99 ms, CPU-s per 1000 requests: A $cpu_a, B $cpu_b"
    done
done

# ---- report ------------------------------------------------------------------------------------
REPORT=$OUT/report.md
{
    echo "## Cluster: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo
    echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(. /etc/os-release && echo "$PRETTY_NAME"), redis-server $(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2)."
    echo
    echo "### (a) Redis load (claim_ttl 10 s, $SECS s per phase)"
    echo
    echo "Client commands (MONITOR; the commands the claim scripts run inside an EVALSHA are not counted again):"
    echo
    echo "| | commands/s | by command |"
    echo "|---|---|---|"
    echo "| per node, no stream | $IDLE | ${IDLE_BY%, } (two nodes) |"
    echo "| per live stream | $PER_STREAM | ${STREAMS_BY%, } (two nodes, three streams) |"
    echo "| per stream watched through a non-owner | $PER_PROXIED_STREAM | ${VIEWER_BY%, } (the above plus one viewer) |"
    echo
    echo "redis-benchmark on the same Redis (50 clients): SET $SET_RPS/s, EVALSHA of a renewal-sized script $EVAL_RPS/s."
    echo
    echo "### (b) an LL-HLS part (the last round's: $PART_BYTES bytes) from its owner and through another node"
    echo
    echo "wrk -t2 -c$CONNS -d${WRK_SECS}s --latency, the same part URL at node A (owner) and node B (proxies to A)."
    echo
    echo "| round | side | req/s | p50 ms | p99 ms | non-2xx | A CPU-s / 1000 req | B CPU-s / 1000 req |"
    echo "|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
} >"$REPORT"
cat "$REPORT"
log "report: $REPORT"
