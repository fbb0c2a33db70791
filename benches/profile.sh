#!/usr/bin/env bash
# Where whipcast's CPU goes with N passthrough (or simulcast) publishers (issue 12 §2 (b),
# BENCHMARKS.md "Where a passthrough stream's CPU goes"): CPU per thread kind over a 20 s
# window (GStreamer names its streaming threads after the element whose task runs them,
# e.g. `audio_livesync` or `video_jitter:src`; tokio's are `tokio-rt-worker`), and a `perf`
# profile of the same window by shared object and by symbol.
#
#   cargo build --release --locked --bins --benches
#   PROFILE_STREAMS=24 bash deploy/netns-run.sh bash benches/profile.sh
#
# Env: PROFILE_STREAMS (24), PROFILE_LAYERS (1; 3 for simulcast), PROFILE_AAC_CODER
# (twoloop | fast), PROFILE_OUT (target/bench-profile), WHIPCAST_BIN. The publisher is
# benches/cpu.rs `publish-many` (one encode fanned out to N WebRTC peers, as
# benches/density.sh), with the passthrough-only ladder and 1.8 s segments as there.
# Needs perf (Debian's linux-perf, installed by deploy/install-bench-deps.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=SCRIPTDIR/lib.sh
source "$ROOT/benches/lib.sh"
# shellcheck disable=SC2034 # read by benches/lib.sh
LOG_PREFIX=profile
N=${PROFILE_STREAMS:-24}
LAYERS=${PROFILE_LAYERS:-1}
CODER=${PROFILE_AAC_CODER:-twoloop}
OUT=${PROFILE_OUT:-$ROOT/target/bench-profile}
WHIPCAST=${WHIPCAST_BIN:-$ROOT/target/release/whipcast}
WINDOW=20
TCK=$(getconf CLK_TCK)
command -v perf >/dev/null || { log "no perf (apt-get install linux-perf)"; exit 2; }
[[ -x $WHIPCAST ]] || { log "no $WHIPCAST (cargo build --release)"; exit 2; }
HELPER=$(bench_exe cpu 2>/dev/null)
[[ -x $HELPER ]] || { log "bench helper not built (cargo bench --bench cpu --no-run)"; exit 2; }
mkdir -p "$OUT"
PIDS=()
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
{
    cat <<EOF
[server]
listen = "127.0.0.1:$PORT"
max_streams = $((N + 16))
[limits]
max_pending_sessions = 64
max_pending_sessions_per_client = 64
publish_per_minute = 0
max_connections_per_client = $((N * 4 + 256))
[hls]
segment_duration = "1800ms"
EOF
    passthrough_ladder media.ladder "$CODER"
} >"$OUT/whipcast.toml"
WHIPCAST_LOG=whipcast=info "$WHIPCAST" --config "$OUT/whipcast.toml" >"$OUT/whipcast.log" 2>&1 &
WPID=$!
PIDS+=("$WPID")
for _ in $(seq 100); do
    curl -sf --noproxy '*' -m 1 -o /dev/null "http://127.0.0.1:$PORT/healthz" && break
    sleep 0.2
done
"$HELPER" publish-many --url-base "http://127.0.0.1:$PORT/whip/" --streams "$N" \
    --seconds $((WINDOW + 30)) --layers "$LAYERS" >"$OUT/publisher.out" 2>"$OUT/publisher.err" &
HPID=$!
PIDS+=("$HPID")
until grep -q '^ready' "$OUT/publisher.out" 2>/dev/null; do
    kill -0 "$HPID" 2>/dev/null || { log "publisher failed: $(tail -3 "$OUT/publisher.err")"; exit 1; }
    sleep 0.5
done
sleep 8 # past the streams' start-up

# tid, thread name, utime + stime
threads() {
    local t
    for t in /proc/"$WPID"/task/*; do
        echo "${t##*/} $(tr ' ' '_' <"$t/comm") $(sed 's/^.*) //' "$t/stat" | awk '{print $12 + $13}')"
    done 2>/dev/null
}
threads >"$OUT/threads.0"
w0=$(sed 's/^.*) //' "/proc/$WPID/stat" | awk '{print $12 + $13}')
perf record -F 499 -p "$WPID" -o "$OUT/perf.data" -- sleep "$WINDOW" 2>"$OUT/perf.log"
w1=$(sed 's/^.*) //' "/proc/$WPID/stat" | awk '{print $12 + $13}')
threads >"$OUT/threads.1"
curl -sf --noproxy '*' -m 5 "http://127.0.0.1:$PORT/api/streams" >"$OUT/streams.json" || true
wait "$HPID" || true

# Thread kinds: the name without its trailing digits, summed over the threads alive at both ends.
awk -v tck="$TCK" -v win="$WINDOW" -v n="$N" 'NR == FNR {t0[$1] = $3; next}
    ($1 in t0) {k = $2; sub(/[0-9]+$/, "", k); d[k] += $3 - t0[$1]; c[k]++}
    END {for (k in d) printf "%-24s %4d threads  %6.3f cores  %7.4f cores/stream\n", k, c[k], d[k] / tck / win, d[k] / tck / win / n}' \
    "$OUT/threads.0" "$OUT/threads.1" | sort -k4 -rn >"$OUT/threads.txt"
perf report -i "$OUT/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | sed -n '1,20p' >"$OUT/dso.txt"
perf report -i "$OUT/perf.data" --no-children --sort dso,sym --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | sed -n '1,60p' >"$OUT/symbols.txt"
echo "whipcast, $N streams × $LAYERS layer(s), AAC $CODER: $(awk -v a="$w0" -v b="$w1" -v t="$TCK" -v w="$WINDOW" -v n="$N" 'BEGIN {printf "%.3f cores, %.4f per stream", (b - a) / t / w, (b - a) / t / w / n}') over ${WINDOW} s (perf sampling at 499 Hz included)"
echo "--- by thread kind ($OUT/threads.txt)"
cat "$OUT/threads.txt"
echo "--- by shared object ($OUT/dso.txt; symbols in $OUT/symbols.txt)"
cat "$OUT/dso.txt"
