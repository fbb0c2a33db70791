#!/usr/bin/env bash
# Origin benchmark (BENCHMARKS.md "Origin throughput and parked requests"), part of `make bench`:
#
#   (a) requests per second for an LL-HLS media playlist, a 200 ms part and a whole 2 s
#       segment served by whipcast vs nginx serving the same bytes from disk (page cache),
#       with wrk on 127.0.0.1: same URL paths, threads, connections and duration, both
#       servers measured in the same run, the order alternating per round;
#   (b) the memory 10 000 parked LL-HLS blocking playlist reloads cost whipcast (VmRSS delta
#       of the whipcast process, bytes per request), through benches/origin.rs.
#
#   make bench                                # cpu.sh, then this
#   bash benches/origin.sh                    # this alone
#   ORIGIN_SECONDS=5 ORIGIN_ROUNDS=1 bash benches/origin.sh   # smoke test
#
# Source, both parts: the test publisher (tests/common/publisher.rs, run by the `publish`
# command of the cpu bench helper, benches/cpu.rs, in its own process): 1280x720@30 H.264
# 2500 kbit/s + Opus over WHIP to target/release/whipcast, whose config (written here) has
# the embedded defaults (2 s segments, 200 ms parts) and a source-only ladder (passthrough:
# the benchmark is about serving, not transcoding; the ladder would take both cores).
#
# (a) whipcast keeps 90 retired segments downloadable (so the picked part and segment live
#     through both sides of a round); nginx 1.22 (Debian) has `sendfile on`, `access_log off`,
#     workers = cores, `open_file_cache`, unlimited keep-alive requests, and serves a snapshot
#     of the very objects whipcast serves, under the same paths. Each round picks fresh
#     objects: the media playlist (whipcast renders it on every change, ~5 times a second;
#     nginx serves the bytes of one moment), part 5 of the newest complete segment, and that
#     segment. wrk: ORIGIN_THREADS threads, ORIGIN_CONNECTIONS connections, ORIGIN_SECONDS
#     per run, --latency. The publisher and whipcast keep running during the nginx runs too,
#     so both sides share the machine with the same background work.
# (b) per protocol, a fresh whipcast (defaults, passthrough, hls.max_blocking_requests =
#     ORIGIN_PARKED) gets a stream, ORIGIN_WARMUP seconds to fill its window and retention,
#     then ORIGIN_PARKED blocking reloads park (benches/origin.rs): HTTP/1.1, one connection
#     each; HTTP/2 (h2c), ORIGIN_H2_STREAMS streams per connection (hyper allows 200).
#
# Before each side it waits (bounded) until other processes use < ORIGIN_IDLE_CORES cores
# and the 1-minute load average is < ORIGIN_MAX_LOAD, and records both. The load average
# also counts the publisher and whipcast, which run throughout, and each wrk run lifts it
# for a minute; with 1.0 the sides waited the full 2 min and got no quieter, hence 1.5.
# A wrk run during which other processes used > ORIGIN_IDLE_CORES is run again.
#
# Env: ORIGIN_SECONDS (10), ORIGIN_ROUNDS (2), ORIGIN_THREADS (2), ORIGIN_CONNECTIONS (64),
# ORIGIN_OBJECTS ("playlist part segment"), ORIGIN_PARKED (10000), ORIGIN_PARK_PROTOCOLS
# ("h1 h2"), ORIGIN_H2_STREAMS (100 parked streams per HTTP/2 connection), ORIGIN_WARMUP (30 s),
# ORIGIN_IDLE_CORES (0.3), ORIGIN_MAX_LOAD (1.5), ORIGIN_IDLE_TRIES (30 × ~4 s), ORIGIN_RETRIES
# (2: reruns of a wrk run during which other processes used more than ORIGIN_IDLE_CORES),
# ORIGIN_PARTS_ONLY (a|b: run one part), ORIGIN_OUT (target/bench-origin), ORIGIN_KEEP (1: keep
# the work directory), WHIPCAST_BIN (a built binary: then whipcast is not built), ORIGIN_COMMIT
# (the commit to name in the report when run outside the git tree).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=SCRIPTDIR/lib.sh
source "$ROOT/benches/lib.sh"
# shellcheck disable=SC2034 # read by benches/lib.sh
LOG_PREFIX=bench-origin KEEP_WORK=${ORIGIN_KEEP:-0} KEPT_WHAT="work files"
SECS=${ORIGIN_SECONDS:-10}
ROUNDS=${ORIGIN_ROUNDS:-2}
THREADS=${ORIGIN_THREADS:-2}
CONNS=${ORIGIN_CONNECTIONS:-64}
OBJECTS=${ORIGIN_OBJECTS:-playlist part segment}
PARKED=${ORIGIN_PARKED:-10000}
PARK_PROTOCOLS=${ORIGIN_PARK_PROTOCOLS:-h1 h2}
H2_STREAMS=${ORIGIN_H2_STREAMS:-100}
WARMUP=${ORIGIN_WARMUP:-30}
IDLE_CORES=${ORIGIN_IDLE_CORES:-0.3}
MAX_LOAD=${ORIGIN_MAX_LOAD:-1.5}
IDLE_TRIES=${ORIGIN_IDLE_TRIES:-30}
RETRIES=${ORIGIN_RETRIES:-2}
ONLY=${ORIGIN_PARTS_ONLY:-}
OUT=${ORIGIN_OUT:-$ROOT/target/bench-origin}
WHIPCAST=${WHIPCAST_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/whipcast}
STREAM=bench
TCK=$(getconf CLK_TCK)
CORES=$(nproc)

[[ $SECS =~ ^[0-9]+$ ]] && ((SECS >= 2 && SECS <= 600)) || { log "ORIGIN_SECONDS must be 2..600"; exit 2; }
[[ $ROUNDS =~ ^[0-9]+$ ]] && ((ROUNDS >= 1 && ROUNDS <= 10)) || { log "ORIGIN_ROUNDS must be 1..10"; exit 2; }
for tool in wrk nginx curl jq; do
    command -v "$tool" >/dev/null || { log "missing $tool (deploy/install-deps.sh, deploy/install-bench-deps.sh)"; exit 2; }
done
NGINX=$(command -v nginx)

mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/whipcast-origin.XXXXXX")
# nginx workers may run as another user: let them reach the snapshot.
chmod 755 "$WORK"
PIDS=()
trap cleanup EXIT
trap 'exit 130' INT TERM
load1() { cut -d' ' -f1 /proc/loadavg; }
# CPU ticks of the processes this script keeps running in the background (whipcast, the
# publisher, nginx and its workers): they are not "other" load.
own_ticks() {
    local p c t=0
    for p in "${PIDS[@]}"; do
        t=$((t + $(proc_ticks "$p")))
        for c in $(cat "/proc/$p/task/$p/children" 2>/dev/null); do t=$((t + $(proc_ticks "$c"))); done
    done
    echo "$t"
}

# Waits (bounded) until other processes use < IDLE_CORES and load1 < MAX_LOAD; sets QUIET
# to "load others" (others suffixed with ! when the wait gave up).
wait_quiet() {
    local i a b oa ob others load
    for ((i = 1; i <= IDLE_TRIES; i++)); do
        a=$(sys_ticks) oa=$(own_ticks)
        sleep 2
        b=$(sys_ticks) ob=$(own_ticks)
        others=$(calc "(($b - $a) - ($ob - $oa)) / $TCK / 2")
        load=$(load1)
        if awk "BEGIN {exit !($others < $IDLE_CORES && $load < $MAX_LOAD)}"; then
            QUIET="$load $others"
            return 0
        fi
        log "waiting for a quiet machine: load $load, others $others cores ($i/$IDLE_TRIES)"
        sleep 2
    done
    log "WARNING: machine not quiet (load $load, others $others cores); measuring anyway"
    QUIET="$load! $others!"
}

# ---- build ---------------------------------------------------------------------------------
log "building whipcast (release), the publisher (benches/cpu.rs) and the parker (benches/origin.rs)"
if [[ -z ${WHIPCAST_BIN:-} ]]; then
    cargo build --release --locked --bin whipcast >"$WORK/build.log" 2>&1 ||
        fail "cargo build --release failed: $(grep -E -A12 '^error' "$WORK/build.log" | head -40)"
fi
PUBLISHER=$(bench_exe cpu 2>>"$WORK/build.log")
PARKER=$(bench_exe origin 2>>"$WORK/build.log")
[[ -x $PUBLISHER && -x $PARKER ]] || fail "bench helpers not built: $(tail -20 "$WORK/build.log")"
[[ -x $WHIPCAST ]] || fail "no $WHIPCAST"

# 10 000 connections: whipcast and the client each hold one descriptor per connection.
NOFILE=$(ulimit -Hn)
if [[ $NOFILE != unlimited ]] && ((NOFILE < PARKED + 1000)); then
    fail "ulimit -Hn is $NOFILE; ${PARKED} parked requests need $((PARKED + 1000)) descriptors per process"
fi
ulimit -n "$NOFILE"

# ---- whipcast + publisher ----------------------------------------------------------------------
# Writes a config, starts whipcast and the publisher; sets WPID, PUBPID, BASE, MEDIA (the
# video rendition's playlist path).
start_whipcast() { # tag extra-hls-toml
    local tag=$1 port
    port=$(free_port)
    {
        cat <<EOF
# whipcast origin benchmark ($tag): embedded defaults (2 s segments, 200 ms parts) except
[server]
listen = "127.0.0.1:$port"
[hls]
max_blocking_requests = $PARKED
$2
[limits]
# Every load generator here is one client (127.0.0.1) holding up to $PARKED connections:
# the per-client and global caps are raised above that (both are measured elsewhere).
max_connections = $((PARKED + 1000))
max_connections_per_client = $((PARKED + 1000))
EOF
        passthrough_ladder media.ladder
    } >"$WORK/$tag.toml"
    "$WHIPCAST" --config "$WORK/$tag.toml" >"$WORK/$tag.whipcast.log" 2>&1 &
    WPID=$!
    PIDS+=("$WPID")
    BASE="http://127.0.0.1:$port"
    wait_healthz "$BASE" "$WORK/$tag.whipcast.log"
    "$PUBLISHER" publish --url "$BASE/whip/$STREAM" --seconds 3600 --width 1280 --height 720 \
        --fps 30 --bitrate 2500 >"$WORK/$tag.publisher.out" 2>"$WORK/$tag.publisher.err" &
    PUBPID=$!
    PIDS+=("$PUBPID")
    wait_until 30 curl -sf --noproxy '*' -m 2 -o "$WORK/$tag.master.m3u8" "$BASE/hls/$STREAM/master.m3u8" ||
        fail "no master playlist: $(tail -5 "$WORK/$tag.publisher.err") $(tail -5 "$WORK/$tag.whipcast.log")"
    MEDIA="/hls/$STREAM/$(grep -A1 '^#EXT-X-STREAM-INF' "$WORK/$tag.master.m3u8" | grep -v '^#' | head -n1)"
    [[ $MEDIA == */index.m3u8 ]] || fail "no video variant in $(cat "$WORK/$tag.master.m3u8")"
    # Three complete segments listed (the newest complete one has its parts listed).
    has_segments() {
        curl -sf --noproxy '*' -m 2 "$BASE$MEDIA" | grep -c '^#EXTINF' | awk '{exit !($1 >= 3)}'
    }
    wait_until 30 has_segments || fail "fewer than 3 segments after 30 s"
    log "$tag: whipcast PID $WPID on $BASE, publisher PID $PUBPID, playlist $MEDIA"
}
stop_whipcast() {
    stop_pid "$PUBPID" TERM 10
    stop_pid "$WPID" TERM 15
}

# ---- (a) throughput --------------------------------------------------------------------------
RESULTS=() # object round side rps p50_ms p99_ms non2xx sockerr bytes load others transfer others_during
run_wrk() { # object round side url bytes
    local obj=$1 r=$2 side=$3 url=$4 bytes=$5 f rps p50 p99 non2xx sockerr transfer
    local attempt a b oa ob t0 t1 wcpu during
    f="$OUT/wrk.$obj.$r.$side.txt"
    for ((attempt = 0; ; attempt++)); do
        wait_quiet
        a=$(sys_ticks) oa=$(own_ticks) t0=$(date +%s.%N)
        /usr/bin/time -f '%U %S' -o "$f.time" wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" --latency "$url" >"$f" 2>&1 ||
            fail "wrk failed: $(cat "$f")"
        b=$(sys_ticks) ob=$(own_ticks) t1=$(date +%s.%N)
        wcpu=$(tail -n1 "$f.time" | awk '{print $1 + $2}')
        # Cores other processes used during the run (not ours, not wrk).
        during=$(calc "((($b - $a) - ($ob - $oa)) / $TCK - $wcpu) / ($t1 - $t0)")
        if awk "BEGIN {exit !($during > $IDLE_CORES)}" && ((attempt < RETRIES)); then
            log "round $r $obj $side: other processes used $during cores during the run; running it again"
            continue
        fi
        break
    done
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$f")
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$f")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$f")")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$f")
    sockerr=$(awk -F'[ ,]+' '/Socket errors:/ {print $4 + $6 + $8 + $10}' "$f")
    transfer=$(awk '/^Transfer\/sec:/ {print $2}' "$f")
    [[ -n $rps ]] || fail "no Requests/sec in $f: $(cat "$f")"
    RESULTS+=("$obj $r $side $rps $p50 $p99 ${non2xx:-0} ${sockerr:-0} $bytes $QUIET $transfer $during")
    log "round $r $obj $side: $rps req/s, p50 $p50 ms, p99 $p99 ms, non-2xx ${non2xx:-0}, socket errors ${sockerr:-0}, $transfer/s (before: load ${QUIET% *}, others ${QUIET#* } cores; during: others $during cores)"
}

# The newest complete segment of a media playlist and its middle part (URIs, relative).
pick_objects() { # playlist-file → "segment part"
    awk '/^#EXT-X-PART:/ {match($0, /URI="[^"]*"/); p[n++] = substr($0, RSTART + 5, RLENGTH - 6); next}
         /^#/ || !NF {next}
         {seg = $0; m = n; for (i = 0; i < n; i++) last[i] = p[i]; n = 0}
         END {if (seg != "" && m > 0) print seg, last[int(m / 2)]}' "$1"
}

part_a() {
    start_whipcast throughput "retain_segments = 90"
    local nport npid www="$WORK/www"
    nport=$(free_port)
    mkdir -p "$www" "$WORK/nginx/tmp"
    cat >"$WORK/nginx/nginx.conf" <<EOF
# nginx serving a snapshot of whipcast's objects (benches/origin.sh)
worker_processes $CORES;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    open_file_cache max=1000 inactive=60s;
    open_file_cache_valid 60s;
    client_body_temp_path $WORK/nginx/tmp/body;
    proxy_temp_path $WORK/nginx/tmp/proxy;
    fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
    uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
    scgi_temp_path $WORK/nginx/tmp/scgi;
    types {
        application/vnd.apple.mpegurl m3u8;
        video/iso.segment m4s;
        video/mp4 mp4;
    }
    server {
        listen 127.0.0.1:$nport;
        root $www;
        # the same Cache-Control whipcast sends (playlists: ½ target duration)
        location ~ \.m3u8\$ { add_header Cache-Control "public, max-age=1"; }
        location ~ \.m4s\$ { add_header Cache-Control "public, max-age=31536000, immutable"; }
    }
}
EOF
    "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' >"$WORK/nginx/stdout.log" 2>&1 &
    npid=$!
    PIDS+=("$npid")
    local nbase="http://127.0.0.1:$nport"
    wait_until 10 curl -s --noproxy '*' -m 2 -o /dev/null "$nbase/" || fail "nginx did not start: $(cat "$WORK/nginx/error.log" "$WORK/nginx/stdout.log")"
    log "nginx PID $npid on $nbase ($CORES workers)"
    local dir=${MEDIA%/*} r obj path bytes first second pl seg part
    for ((r = 1; r <= ROUNDS; r++)); do
        for obj in $OBJECTS; do
            # Fresh objects, snapshotted for nginx under the same path.
            pl="$WORK/round.$r.$obj.m3u8"
            curl -sf --noproxy '*' -m 5 -o "$pl" "$BASE$MEDIA" || fail "cannot fetch $MEDIA"
            read -r seg part < <(pick_objects "$pl") || fail "no complete segment with parts in $pl"
            case $obj in
                playlist) path=$MEDIA ;;
                part) path="$dir/$part" ;;
                segment) path="$dir/$seg" ;;
                *) fail "unknown object $obj (playlist, part, segment)" ;;
            esac
            mkdir -p "$www${path%/*}"
            curl -sf --noproxy '*' -m 5 -o "$www$path" "$BASE$path" || fail "cannot fetch $path"
            bytes=$(stat -c %s "$www$path")
            curl -sf --noproxy '*' -m 5 -o "$WORK/check" "$nbase$path" || fail "nginx does not serve $path"
            cmp -s "$WORK/check" "$www$path" || fail "nginx serves other bytes for $path"
            if [[ $obj != playlist ]]; then
                curl -sf --noproxy '*' -m 5 -o "$WORK/check" "$BASE$path" && cmp -s "$WORK/check" "$www$path" ||
                    fail "whipcast no longer serves the same $path"
            fi
            log "round $r $obj: $path ($bytes bytes)"
            if ((r % 2 == 1)); then first=whipcast second=nginx; else first=nginx second=whipcast; fi
            for side in $first $second; do
                if [[ $side == whipcast ]]; then
                    run_wrk "$obj" "$r" whipcast "$BASE$path" "$bytes"
                else
                    run_wrk "$obj" "$r" nginx "$nbase$path" "$bytes"
                fi
            done
            [[ $obj == playlist ]] || curl -sf --noproxy '*' -m 5 -o /dev/null "$BASE$path" ||
                log "WARNING: whipcast dropped $path during the round"
        done
    done
    alive "$WPID" || fail "whipcast exited: $(tail -5 "$WORK/throughput.whipcast.log")"
    alive "$PUBPID" || fail "the publisher exited: $(tail -5 "$WORK/throughput.publisher.err")"
    stop_pid "$npid" QUIT 10
    stop_whipcast
}

# ---- (b) parked requests ---------------------------------------------------------------------
# One fresh whipcast per protocol (a heap that already served 10 000 requests would hide
# their cost).
PARK_QUIET=()
part_b() {
    local proto
    for proto in $PARK_PROTOCOLS; do
        start_whipcast "parked-$proto" ""
        log "parked ($proto): letting the window and retention fill for ${WARMUP} s"
        sleep "$WARMUP"
        wait_quiet
        PARK_QUIET+=("$proto:$QUIET")
        log "parked ($proto): $PARKED blocking reloads (load ${QUIET% *}, others ${QUIET#* } cores)"
        "$PARKER" park --base "$BASE" --playlist "$MEDIA" --pid "$WPID" --requests "$PARKED" \
            --protocol "$proto" --streams-per-connection "$H2_STREAMS" \
            >"$OUT/park.$proto.json" 2>"$WORK/parker.$proto.err" ||
            log "parker ($proto) FAILED: $(tail -5 "$WORK/parker.$proto.err")"
        jq -c --arg l "$(cut -d' ' -f1-3 /proc/loadavg)" --arg q "$QUIET" '. + {load_after: $l, load_others_before: $q}' \
            "$OUT/park.$proto.json" >"$WORK/park.tmp" && mv "$WORK/park.tmp" "$OUT/park.$proto.json"
        alive "$WPID" || fail "whipcast exited: $(tail -5 "$WORK/parked-$proto.whipcast.log")"
        stop_whipcast
    done
}

START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
[[ $ONLY == b ]] || part_a
[[ $ONLY == a ]] || part_b

# ---- report --------------------------------------------------------------------------------
{
    echo
    echo "whipcast origin benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ), commit ${ORIGIN_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo '?')}$(git rev-parse --is-inside-work-tree >/dev/null 2>&1 && ! git diff --quiet HEAD -- src Cargo.lock && echo ' (src/ has uncommitted changes)')"
    echo "machine : $CORES cores, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r), $(nginx -v 2>&1 | sed 's/^nginx version: //'), $(wrk --version 2>&1 | head -n1 | awk '{print "wrk", $2}')"
    echo "load    : $START_LOAD at the start; $(cut -d' ' -f1-3 /proc/loadavg) at the end"
    if ((${#RESULTS[@]})); then
        echo "wrk     : -t$THREADS -c$CONNS -d${SECS}s --latency, 127.0.0.1, $ROUNDS round(s), order alternating (odd rounds whipcast first)"
        echo "note    : whipcast renders its playlists per change (~5/s) and serves them from memory; nginx serves static bytes of one moment"
        echo
        echo "  (load, others: 1-min load average and cores used by other processes just before the run; others during: while wrk ran)"
        printf '  %-9s %5s  %-8s  %10s  %8s  %8s  %8s  %7s  %6s  %6s  %s\n' object round server req/s p50_ms p99_ms non-2xx bytes load others "others during"
        printf '%s\n' "${RESULTS[@]}" | awk '{printf "  %-9s %5s  %-8s  %10.0f  %8.3f  %8.3f  %8s  %7s  %6s  %6s  %s\n", $1, $2, $3, $4, $5, $6, $7 + $8, $9, $10, $11, $13}'
        echo
        echo "  ratio whipcast / nginx (req/s, mean over rounds; goal >= 1.0):"
        for obj in $OBJECTS; do
            printf '%s\n' "${RESULTS[@]}" | awk -v o="$obj" '
                $1 == o && $3 == "whipcast" {w += $4; nw++; wl50 += $5; wl99 += $6}
                $1 == o && $3 == "nginx" {n += $4; nn++; nl50 += $5; nl99 += $6}
                $1 == o {per[$2, $3] = $4; if ($2 > R) R = $2}
                END {
                    if (!nw || !nn) exit
                    rr = ""; for (r = 1; r <= R; r++) if (per[r, "nginx"] > 0) rr = rr sprintf(" %.2f", per[r, "whipcast"] / per[r, "nginx"])
                    printf "    %-9s %.2fx  (whipcast %.0f req/s, p50 %.2f ms, p99 %.2f ms; nginx %.0f req/s, p50 %.2f ms, p99 %.2f ms; per round:%s) %s\n",
                        o, (w / nw) / (n / nn), w / nw, wl50 / nw, wl99 / nw, n / nn, nl50 / nn, nl99 / nn, rr,
                        ((w / nw) / (n / nn) >= 1.0 ? "met" : "MISSED")
                }'
        done
    fi
    for proto in $PARK_PROTOCOLS; do
        [[ -s $OUT/park.$proto.json ]] || continue
        echo
        jq -r '
          if .ok == false and .error then "  parked requests (\(.protocol // "?")): FAILED: \(.error)" else
          "  parked requests, \(.protocol), \(.requests) requests on \(.connections) connections to 127.0.0.1 (load, others before: \(.load_others_before); load after: \(.load_after)):",
          "    GET \(.target)  (\(.target_parts_ahead) parts ahead of the newest, PART-TARGET \(.part_target_s) s)",
          "    connected in \(.connect_s) s; all written and read by whipcast \(.all_written_and_read_s) s after the first send; RSS read at \(.rss_sampled_at_s) s; all answered at \(.released_s) s",
          "    VmRSS kB: baseline \(.rss_kb.baseline) (drift \(.baseline_drift_kb_per_s) kB/s), idle connections \(.rss_kb.idle_connections), parked \(.rss_kb.parked), after release \(.rss_kb.after_release), connections closed \(.rss_kb.after_close_2s)",
          "    RSS delta parked − baseline: \(.parked_delta_mb) MB = \(.bytes_per_parked_request) B per parked request (\(.bytes_per_request_over_idle_connection) B of it over the idle connection); goal <= 100 MB for 10 000: \(if .requests != 10000 then "n/a (\(.requests) requests)" elif .parked_delta_mb <= 100 then "met" else "MISSED" end)",
          "    whipcast CPU while parked: \(.whipcast_cores_while_parked) cores",
          "    answers: \(.statuses | to_entries | map("\(.key) × \(.value)") | join(", ")); listing the part: \(.responses_listing_the_part); errors: \(.errors); waited s min/p50/max \(.wait_s.min)/\(.wait_s.p50)/\(.wait_s.max)",
          "    one more request while they were parked: \(.over_limit_probe.status) \(.over_limit_probe.body // "") in \(.over_limit_probe.ms) ms",
          "    ok: \(.ok)" end' "$OUT/park.$proto.json"
    done
} | tee "$OUT/summary.txt"
log "summary in $OUT/summary.txt, wrk outputs and park.json in $OUT/"
