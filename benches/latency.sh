#!/usr/bin/env bash
# Latency benchmark (BENCHMARKS.md "Latency"): server lag, publish → first playable, and
# glass-to-glass through hls.js in headless Chromium, for the default ladder and for
# passthrough.
#
#   make bench-latency                     # both cases, 40 s of playback per browser run
#   LAT_SECONDS=30 LAT_CASES=passthrough bash benches/latency.sh
#
# Per case (benches/latency.rs does the work, in a loopback-only network namespace):
#   target/release/whipcast --config <tmp toml>  (default = embedded defaults: 2 s segments,
#   200 ms parts, default ladder; passthrough = same, ladder with only the [source] rung);
#   the test publisher (tests/common/publisher.rs: videotestsrc + capture-time barcode →
#   x264 ultrafast zerolatency → WHIP) at LAT_WIDTH x LAT_HEIGHT @ 30, LAT_BITRATE kbit/s;
#   tests/browser/llhls_play.mjs once per variant, each joining 6 s after the publish: stock
#   (hls.js as its README shows it, `new Hls({ lowLatencyMode: true })`, ABR), as-shipped
#   (the bundled /watch/ page, pinned to the top level); on request catchup (hls.js allowed
#   to catch up, maxLiveSyncPlaybackRate LAT_CATCHUP_RATE) and resync (re-synced once to
#   hls.liveSyncPosition: hls.js' start-up taking no time).
#
# Env: LAT_SECONDS (40), LAT_CASES ("default passthrough"), LAT_WIDTH (1280), LAT_HEIGHT (720),
# LAT_BITRATE (2500), LAT_CATCHUP_RATE (1.5), LAT_MAX_LOAD (1.0: wait until the 1-minute load
# average is below this), LAT_LOAD_TRIES (60 × 10 s), LAT_OUT (target/bench-latency),
# LAT_HLS_TOML ('key = value; …' added under [hls], e.g. 'part_duration = "100ms"'),
# LAT_VARIANTS (stock,as-shipped; also catchup, resync; empty = no browser), WHIPCAST_BIN.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SECS=${LAT_SECONDS:-40}
CASES=${LAT_CASES:-default passthrough}
WIDTH=${LAT_WIDTH:-1280}
HEIGHT=${LAT_HEIGHT:-720}
BITRATE=${LAT_BITRATE:-2500}
CATCHUP=${LAT_CATCHUP_RATE:-1.5}
MAX_LOAD=${LAT_MAX_LOAD:-1.0}
LOAD_TRIES=${LAT_LOAD_TRIES:-60}
VARIANTS=${LAT_VARIANTS-stock,as-shipped}
OUT=${LAT_OUT:-$ROOT/target/bench-latency}
WHIPCAST=${WHIPCAST_BIN:-$ROOT/target/release/whipcast}
log() { echo "bench-latency: $*" >&2; }

for tool in node jq unshare /usr/bin/chromium; do
    command -v "$tool" >/dev/null || { log "missing $tool (deploy/install-deps.sh, deploy/install-browser-deps.sh)"; exit 2; }
done
[[ -d player/node_modules/playwright-core ]] || { log "run deploy/install-browser-deps.sh"; exit 2; }
mkdir -p "$OUT"

log "building whipcast (release) and the driver (benches/latency.rs)"
cargo build --release --locked --bin whipcast >"$OUT/build.log" 2>&1 || { tail -20 "$OUT/build.log" >&2; exit 1; }
HELPER=$(cargo bench --locked --bench latency --no-run --message-format=json 2>>"$OUT/build.log" |
    jq -r 'select(.executable != null and .target.name == "latency") | .executable' | tail -n1)
[[ -x $HELPER ]] || { log "driver not built: $(tail -5 "$OUT/build.log")"; exit 1; }
[[ -x $WHIPCAST ]] || { log "no $WHIPCAST"; exit 1; }

# Wait for a quiet machine: other builds or tests would show up as latency.
wait_quiet() {
    local i load
    for ((i = 1; i <= LOAD_TRIES; i++)); do
        load=$(cut -d' ' -f1 /proc/loadavg)
        if awk -v l="$load" -v m="$MAX_LOAD" 'BEGIN { exit !(l < m) }'; then
            log "load average $load (< $MAX_LOAD)"
            echo "$load"
            return 0
        fi
        log "load average $load ≥ $MAX_LOAD, waiting ($i/$LOAD_TRIES)"
        sleep 10
    done
    log "machine never got quiet; measuring anyway (load $load)"
    echo "$load"
}

for c in $CASES; do
    load=$(wait_quiet)
    log "case $c: ${WIDTH}x${HEIGHT}@30 ${BITRATE}k, browser runs: ${VARIANTS:-none} (${SECS}s each)"
    if bash deploy/netns-run.sh "$HELPER" run --whipcast "$WHIPCAST" --case "$c" --seconds "$SECS" \
        --width "$WIDTH" --height "$HEIGHT" --bitrate "$BITRATE" --catchup-rate "$CATCHUP" \
        ${LAT_HLS_TOML:+--hls-toml "$LAT_HLS_TOML"} --variants "$VARIANTS" >"$OUT/$c.json" 2>"$OUT/$c.log"; then
        log "case $c: ok"
    else
        log "case $c: FAILED (see $OUT/$c.log)"
    fi
    jq --arg load "$load" '. + {load_at_start: $load}' "$OUT/$c.json" >"$OUT/$c.tmp" && mv "$OUT/$c.tmp" "$OUT/$c.json"
done

# Summary.
{
    echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(uname -r)"
    for c in $CASES; do
        jq -r --arg c "$c" '
          def r: if . == null then "-" else (. * 1000 | round / 1000 | tostring) end;
          def b(x): "g2g median \(x.glassToGlass.medianMs | r) ms, p95 \(x.glassToGlass.p95Ms | r) ms; hls.latency median \(x.hlsLatency.median | r) s (target \(x.hlsLatency.target | r)); stalls \(x.during.stalls); start-up resyncs \(x.startup.resyncs) (from hls.latency \(x.startup.resyncFrom | r) s); ok \(x.ok)";
          "== \($c) (ok \(.ok), load at start \(.load_at_start), whipcast \(.cpu.whipcast_cores) cores, machine busy \(.cpu.machine_busy_fraction))",
          "  server lag ms: p50 \(.server_lag_ms.p50 | r), p99 \(.server_lag_ms.p99 | r) (\(.server_lag_ms.samples) samples)",
          "  publish → first playable: POST→connected \(.first_playable.post_to_connected_ms) ms, →master \(.first_playable.post_to_master_ms) ms, →independent part listed \(.first_playable.post_to_independent_part_listed_ms) ms, →part fetched \(.first_playable.post_to_part_fetched_ms) ms; server first_playable_s \(.first_playable.server_first_playable_s | r)",
          (.browser | to_entries[] | "  \(.key): \(b(.value))")
        ' "$OUT/$c.json" 2>/dev/null || echo "== $c: no result (see $OUT/$c.log)"
    done
} | tee "$OUT/summary.txt"
log "JSON per case in $OUT/"
