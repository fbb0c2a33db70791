#!/usr/bin/env bash
# CPU benchmark: whipcast vs the same ladder as a bare gst-launch-1.0 pipeline (BENCHMARKS.md).
#
#   make bench                        # 60 s per side
#   BENCH_SECONDS=10 bash benches/cpu.sh   # smoke test
#
# Input, both sides: the test publisher's live GStreamer pipeline (tests/common/publisher.rs:
# videotestsrc smpte moving → x264enc ultrafast constrained-baseline, Opus 64k), 1280x720 @ 30,
# BENCH_BITRATE kbit/s, run by the bench helper (benches/cpu.rs) in its own process.
#   whipcast side: helper `publish` → WebRTC (WHIP) → target/release/whipcast (default config,
#                  default ladder) → in-memory HLS. Measured: the whipcast PID.
#   baseline side: helper `feed-udp` → the same RTP as plain UDP → pipelines/ladder.sh
#                  (gst-launch-1.0 running what `whipcast print-pipelines` prints from
#                  whipcast's own builders, same cmafmux build).
#                  Measured: the gst-launch-1.0 PID.
# CPU = utime + stime from /proc/PID/stat, sampled just before media starts and SETTLE seconds
# after it stops; divided by the media seconds the helper reports. The sides run one after
# the other, never together. Everything stays on 127.0.0.1.
#
# Env: BENCH_SECONDS (60), BENCH_ROUNDS (1; >1 alternates the order), BENCH_BITRATE (2500),
# BENCH_SETTLE (3 s), BENCH_IDLE_CORES (0.3: wait until other processes use less than this),
# BENCH_IDLE_TRIES (30 × 2 s), BENCH_RETRIES (2: reruns of a side disturbed by other processes),
# BENCH_KEEP (1: keep the work directory), WHIPCAST_BIN.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=SCRIPTDIR/lib.sh
source "$ROOT/benches/lib.sh"
# shellcheck disable=SC2034 # read by benches/lib.sh
LOG_PREFIX=bench KEEP_WORK=${BENCH_KEEP:-0}
SECONDS_PER_SIDE=${BENCH_SECONDS:-60}
ROUNDS=${BENCH_ROUNDS:-1}
BITRATE=${BENCH_BITRATE:-2500}
SETTLE=${BENCH_SETTLE:-3}
IDLE_CORES=${BENCH_IDLE_CORES:-0.3}
# shellcheck disable=SC2034 # read by wait_idle (benches/lib.sh), which also logs the busy
# cores it found low enough (LOG_IDLE_OK)
IDLE_TRIES=${BENCH_IDLE_TRIES:-30} LOG_IDLE_OK=1
RETRIES=${BENCH_RETRIES:-2}
WIDTH=1280 HEIGHT=720 FPS=30
WHIPCAST=${WHIPCAST_BIN:-$ROOT/target/release/whipcast}
TCK=$(getconf CLK_TCK)

[[ $SECONDS_PER_SIDE =~ ^[0-9]+$ ]] && ((SECONDS_PER_SIDE >= 5 && SECONDS_PER_SIDE <= 3600)) ||
    { echo "BENCH_SECONDS must be an integer in 5..3600" >&2; exit 2; }
[[ $ROUNDS =~ ^[0-9]+$ ]] && ((ROUNDS >= 1 && ROUNDS <= 10)) ||
    { echo "BENCH_ROUNDS must be 1..10" >&2; exit 2; }
for tool in curl ffprobe gst-launch-1.0 gst-inspect-1.0 /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "missing $tool (deploy/install-deps.sh)" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/whipcast-bench.XXXXXX")
# The baseline's renditions go to files for checking. whipcast keeps its fragments in memory,
# so the files go to tmpfs when there is one (a disk filesystem costs the baseline more CPU per
# write than whipcast's appsink copy).
MEMDIR=""
if [[ -d /dev/shm && -w /dev/shm ]] &&
    (($(df -Pk /dev/shm | awk 'NR == 2 {print $4}') > SECONDS_PER_SIDE * 2000 + 100000)); then
    MEMDIR=$(mktemp -d /dev/shm/whipcast-bench.XXXXXX)
fi
OUTBASE=${MEMDIR:-$WORK}
PIDS=()
trap cleanup EXIT

# ---- build ---------------------------------------------------------------------------------
log "building whipcast (release) and the bench helper (benches/cpu.rs)"
cargo build --release --locked --bin whipcast 2>"$WORK/build.log" ||
    fail "cargo build --release failed:
$(grep -E -A12 '^error' "$WORK/build.log" | head -40)"
cargo bench --locked --bench cpu --no-run 2>>"$WORK/build.log" ||
    fail "cargo bench --bench cpu --no-run failed:
$(grep -E -A12 '^error' "$WORK/build.log" | head -40)"
# Same build again (a no-op) to read the helper's path from cargo's JSON messages.
HELPER=$(bench_exe cpu 2>>"$WORK/build.log")
[[ -x $HELPER ]] || fail "bench helper not built: $(tail -5 "$WORK/build.log")"
[[ -x $WHIPCAST ]] || fail "no $WHIPCAST"
read -r VPT APT < <("$HELPER" info | sed 's/[a-z_]*=//g')
# The renditions whipcast plans for the input (default ladder), for checking both sides' output.
RUNGS=$("$WHIPCAST" plan-ladder --width $WIDTH --height $HEIGHT | awk '{print $1}' | tr '\n' ' ')
[[ -n $RUNGS ]] || fail "whipcast plan-ladder planned nothing"
read -ra RUNG_NAMES <<<"$RUNGS"

# ---- /proc helpers (the others: benches/lib.sh) --------------------------------------------
# Steal ticks of the whole machine (time the hypervisor gave our vCPUs to someone else: a
# VM-noise indicator).
steal_ticks() { awk '/^cpu / {print $9; exit}' /proc/stat; }
# Per-thread "tid ticks name" lines (thread names: GStreamer names streaming threads after
# their element/pad, tokio "tokio-runtime-w", ...).
thread_ticks() {
    local t
    for t in /proc/"$1"/task/*; do
        [[ -r $t/stat ]] || continue
        sed -e 's/^\([0-9]*\) (\(.*\)) /\1 \2\n/' "$t/stat" 2>/dev/null |
            awk 'NR == 1 {tid = $1; $1 = ""; name = substr($0, 2)} NR == 2 {print tid, $12 + $13, name}'
    done
}
# CPU seconds per thread name between two thread_ticks snapshots (top 12), threads that
# exited in between are not listed (their time is still in the process total).
thread_report() { # before after
    awk -v tck="$TCK" '
        NR == FNR {t0[$1] = $2; next}
        {n = $0; sub(/^[0-9]+ [0-9]+ /, "", n); gsub(/[0-9]+$/, "#", n); d[n] += $2 - t0[$1]}
        END {for (n in d) if (d[n] > 0) printf "%8.2f  %s\n", d[n] / tck, n}
    ' "$1" "$2" | sort -rn | head -n 12
}
now() { date +%s.%N; }

# Runs the helper under /usr/bin/time; sets HELP_OUT (its key=value line) and HELP_CPU.
# One second before media ends, snapshots the threads of PID $2 into $3 (the measured
# process's pipeline threads are still alive then; whipcast tears its pipeline down after).
run_helper() {
    local tag=$1 target=$2 snap=$3 hpid
    shift 3
    /usr/bin/time -f '%U %S' -o "$WORK/$tag.time" "$HELPER" "$@" >"$WORK/$tag.out" 2>"$WORK/$tag.err" &
    hpid=$!
    PIDS+=("$hpid")
    local i
    for ((i = 1; i < SECONDS_PER_SIDE; i++)); do
        alive "$hpid" || break # failed early: `wait` below reports it
        sleep 1
    done
    thread_ticks "$target" >"$snap"
    wait "$hpid" || { forget "$hpid"; fail "helper $1 failed: $(tail -5 "$WORK/$tag.err")"; }
    forget "$hpid"
    HELP_OUT=$(tail -n1 "$WORK/$tag.out")
    HELP_CPU=$(awk 'END {printf "%.3f", $1 + $2}' "$WORK/$tag.time")
}

# ---- one side each -------------------------------------------------------------------------
# RESULTS: side round cpu_s media_s window_s others_cores vmhwm_kb helper_cpu_s steal_cores
RESULTS=()

side_whipcast() {
    local r=$1 port pid c0 c1 s0 s1 st0 st1 t0 t1
    port=$(free_port)
    wait_idle
    WHIPCAST_LOG=whipcast=info "$WHIPCAST" --listen "127.0.0.1:$port" >"$WORK/whipcast.$r.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_healthz "http://127.0.0.1:$port" "$WORK/whipcast.$r.log"
    sleep 1
    thread_ticks "$pid" >"$WORK/whipcast.$r.threads0"
    c0=$(proc_ticks "$pid") s0=$(sys_ticks) st0=$(steal_ticks) t0=$(now)
    run_helper "publish.$r" "$pid" "$WORK/whipcast.$r.threads1" publish --url "http://127.0.0.1:$port/whip/bench" \
        --seconds "$SECONDS_PER_SIDE" --width $WIDTH --height $HEIGHT --fps $FPS --bitrate "$BITRATE"
    sleep "$SETTLE"
    alive "$pid" || fail "whipcast exited during the run: $(tail -5 "$WORK/whipcast.$r.log")"
    c1=$(proc_ticks "$pid") s1=$(sys_ticks) st1=$(steal_ticks) t1=$(now)
    thread_report "$WORK/whipcast.$r.threads0" "$WORK/whipcast.$r.threads1" >"$WORK/whipcast.$r.threads"
    local hwm rss
    hwm=$(status_kb "$pid" VmHWM) rss=$(status_kb "$pid" VmRSS)
    # Check what whipcast made (after the measurement): the planned variants + audio, and
    # segments.
    local base="http://127.0.0.1:$port/hls/bench" master
    master=$(curl -sf --noproxy '*' -m 5 "$base/master.m3u8") || fail "no master playlist"
    echo "$master" >"$WORK/whipcast.$r.master.m3u8"
    local variants
    variants=$(grep -c '^#EXT-X-STREAM-INF' <<<"$master" || true)
    ((variants == ${#RUNG_NAMES[@]})) ||
        fail "expected ${#RUNG_NAMES[@]} video variants ($RUNGS), master lists $variants"
    local uri summary=""
    while read -r uri; do
        local pl segs seq dur
        pl=$(curl -sf --noproxy '*' -m 5 "$base/$uri") || fail "cannot fetch $uri"
        echo "$pl" >"$WORK/whipcast.$r.$(dirname "$uri").m3u8"
        segs=$(grep -c '^#EXTINF' <<<"$pl" || true)
        seq=$(awk -F: '/^#EXT-X-MEDIA-SEQUENCE/ {print $2}' <<<"$pl")
        dur=$(awk -F'[:,]' '/^#EXTINF/ {s += $2} END {printf "%.1f", s}' <<<"$pl")
        summary+="$(dirname "$uri"): $((${seq:-0} + segs)) segments (last $segs: ${dur} s); "
    done < <(grep -v '^#' <<<"$master" | grep . ; grep -o 'URI="[^"]*"' <<<"$master" | sed 's/URI="\(.*\)"/\1/')
    log "whipcast round $r output: $(grep -o 'RESOLUTION=[0-9x]*' <<<"$master" | tr '\n' ' ')| $summary"
    log "whipcast round $r publisher: $HELP_OUT"
    stop_pid "$pid" TERM 15
    local cpu media others
    cpu=$(calc "($c1 - $c0) / $TCK")
    media=$(kv media_seconds "$HELP_OUT")
    others=$(calc "(($s1 - $s0) / $TCK - $cpu - $HELP_CPU) / ($t1 - $t0)")
    RESULTS+=("whipcast $r $cpu $media $(calc "$t1 - $t0") $others $hwm $HELP_CPU $(calc "($st1 - $st0) / $TCK / ($t1 - $t0)")")
    log "whipcast round $r: cpu ${cpu} s for ${media} media s; peak RSS ${hwm} kB (now ${rss} kB); helper ${HELP_CPU} s; others ${others} cores"
}

side_gst() {
    local r=$1 pid c0 c1 s0 s1 st0 st1 t0 t1 out="$OUTBASE/gst.$r"
    # RTP and RTCP ports for video and audio, all different.
    local ports=() p
    while ((${#ports[@]} < 4)); do
        p=$(free_port)
        [[ " ${ports[*]} " == *" $p "* ]] || ports+=("$p")
    done
    local vport=${ports[0]} aport=${ports[2]}
    wait_idle
    VIDEO_PORT=$vport VIDEO_RTCP_PORT=${ports[1]} AUDIO_PORT=$aport AUDIO_RTCP_PORT=${ports[3]} \
        VIDEO_PT=$VPT AUDIO_PT=$APT CODEC=H264 AUDIO=1 SRC_W=$WIDTH SRC_H=$HEIGHT OUT_DIR="$out" \
        FEED=0 WHIPCAST_BIN="$WHIPCAST" bash pipelines/ladder.sh >"$WORK/gst.$r.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    # ladder.sh execs gst-launch-1.0: wait for that, and for PLAYING (udpsrc is live).
    wait_until 30 grep -q 'Setting pipeline to PLAYING' "$WORK/gst.$r.log" ||
        fail "gst-launch did not start: $(tail -5 "$WORK/gst.$r.log")"
    [[ $(cat "/proc/$pid/comm") == gst-launch-1.0 ]] || fail "PID $pid is not gst-launch-1.0"
    thread_ticks "$pid" >"$WORK/gst.$r.threads0"
    c0=$(proc_ticks "$pid") s0=$(sys_ticks) st0=$(steal_ticks) t0=$(now)
    run_helper "feed.$r" "$pid" "$WORK/gst.$r.threads1" feed-udp --video-port "$vport" --audio-port "$aport" \
        --seconds "$SECONDS_PER_SIDE" --width $WIDTH --height $HEIGHT --fps $FPS --bitrate "$BITRATE"
    sleep "$SETTLE"
    alive "$pid" || fail "gst-launch exited during the run: $(tail -5 "$WORK/gst.$r.log")"
    c1=$(proc_ticks "$pid") s1=$(sys_ticks) st1=$(steal_ticks) t1=$(now)
    thread_report "$WORK/gst.$r.threads0" "$WORK/gst.$r.threads1" >"$WORK/gst.$r.threads"
    local hwm
    hwm=$(status_kb "$pid" VmHWM)
    stop_pid "$pid" INT 20 # gst-launch -e: SIGINT sends EOS, so the files are finalised
    grep -q 'ERROR' "$WORK/gst.$r.log" && fail "gst-launch reported an error: $(grep ERROR "$WORK/gst.$r.log" | head -3)"
    local f summary=""
    for f in "${RUNG_NAMES[@]}" audio; do
        [[ -s $out/$f.mp4 ]] || fail "baseline wrote no $f.mp4"
        summary+="$f: $(ffprobe -v error -show_entries stream=width,height,codec_name:format=duration,bit_rate \
            -of default=nw=1:nk=1 "$out/$f.mp4" | tr '\n' ' '); "
    done
    log "gst-launch round $r output (codec [w h] duration bitrate): $summary"
    log "gst-launch round $r feeder: $HELP_OUT"
    rm -rf "$out"
    local cpu media others
    cpu=$(calc "($c1 - $c0) / $TCK")
    media=$(kv media_seconds "$HELP_OUT")
    others=$(calc "(($s1 - $s0) / $TCK - $cpu - $HELP_CPU) / ($t1 - $t0)")
    RESULTS+=("gst-launch $r $cpu $media $(calc "$t1 - $t0") $others $hwm $HELP_CPU $(calc "($st1 - $st0) / $TCK / ($t1 - $t0)")")
    log "gst-launch round $r: cpu ${cpu} s for ${media} media s; peak RSS ${hwm} kB; helper ${HELP_CPU} s; others ${others} cores"
}

IDLE_SEEN=()
log "work dir $WORK; ${SECONDS_PER_SIDE} s of ${WIDTH}x${HEIGHT}@${FPS} H.264 ${BITRATE}k + Opus per side, ${ROUNDS} round(s)"
# Runs one side; if other processes used more than IDLE_CORES during it, runs it again (up to
# RETRIES times) and keeps the last result.
run_side() { # side round
    local attempt others
    for ((attempt = 0; ; attempt++)); do
        "side_$1" "$2"
        others=$(awk '{print $6}' <<<"${RESULTS[-1]}")
        awk "BEGIN {exit !($others > $IDLE_CORES)}" || return 0
        if ((attempt >= RETRIES)); then
            log "round $2 $1: other processes used $others cores during the run; keeping it (no retries left)"
            return 0
        fi
        log "round $2 $1: other processes used $others cores during the run; running it again"
        unset 'RESULTS[-1]'
    done
}

for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2 == 1)); then
        run_side whipcast "$r"
        run_side gst "$r"
    else
        run_side gst "$r"
        run_side whipcast "$r"
    fi
done

# ---- report --------------------------------------------------------------------------------
sum() { # side column
    printf '%s\n' "${RESULTS[@]}" | awk -v s="$1" -v c="$2" '$1 == s {t += $c} END {printf "%.3f", t}'
}
max() {
    printf '%s\n' "${RESULTS[@]}" | awk -v s="$1" -v c="$2" '$1 == s && $c > m {m = $c} END {print m + 0}'
}
W_CPU=$(sum whipcast 3) W_MEDIA=$(sum whipcast 4)
G_CPU=$(sum gst-launch 3) G_MEDIA=$(sum gst-launch 4)
W_PER=$(awk "BEGIN {printf \"%.4f\", $W_CPU / $W_MEDIA}")
G_PER=$(awk "BEGIN {printf \"%.4f\", $G_CPU / $G_MEDIA}")
RATIO=$(awk "BEGIN {printf \"%.3f\", $W_PER / $G_PER}")
W_HWM=$(max whipcast 7) G_HWM=$(max gst-launch 7)
W_OTH=$(max whipcast 6) G_OTH=$(max gst-launch 6)
STEAL=$(printf '%s\n' "${RESULTS[@]}" | awk '$9 > m {m = $9} END {printf "%.3f", m}')
# Per-round ratio (each round has one run of each side).
ROUND_RATIOS=$(printf '%s\n' "${RESULTS[@]}" | awk '
    {per[$1, $2] = $3 / $4; if ($2 > n) n = $2}
    END {for (r = 1; r <= n; r++) printf "%s%.3f", (r > 1 ? " " : ""), per["whipcast", r] / per["gst-launch", r]}')
VERDICT=$(awk "BEGIN {print ($RATIO <= 1.05) ? \"within\" : \"ABOVE\"}")

cat <<EOF

whipcast CPU benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ)
machine      : $(nproc) cores, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) RAM, kernel $(uname -r), GStreamer $(gst-launch-1.0 --version | awk '/^GStreamer/ {print $2; exit}')
input        : ${WIDTH}x${HEIGHT}@${FPS} H.264 constrained-baseline ${BITRATE} kbit/s + Opus 64 kbit/s, live, ${SECONDS_PER_SIDE} s per side, ${ROUNDS} round(s)
ladder       : default pipelines/ladder.toml → ${RUNGS}(x264 $(awk -F'"' '/^preset/ {print $2}' pipelines/ladder.toml)) + AAC 128k, 2 s CMAF fragments
idle check   : other processes used ${IDLE_SEEN[*]} cores before each side (limit ${IDLE_CORES}); max steal during runs ${STEAL} cores

                       CPU-s    media-s   CPU-s/media-s   peak RSS   others during run
  whipcast           $(printf '%8.2f  %8.2f  %14.4f  %7d MB  %6.2f cores' "$W_CPU" "$W_MEDIA" "$W_PER" $((W_HWM / 1024)) "$W_OTH")
  gst-launch ladder  $(printf '%8.2f  %8.2f  %14.4f  %7d MB  %6.2f cores' "$G_CPU" "$G_MEDIA" "$G_PER" $((G_HWM / 1024)) "$G_OTH")

  ratio whipcast / gst-launch = ${RATIO}  (goal <= 1.05: ${VERDICT}); per round: ${ROUND_RATIOS}
  whipcast peak RSS (VmHWM)   = ${W_HWM} kB
EOF
if awk "BEGIN {exit !($W_OTH > $IDLE_CORES || $G_OTH > $IDLE_CORES)}"; then
    echo
    echo "  WARNING: other processes used up to $(awk "BEGIN {print ($W_OTH > $G_OTH) ? $W_OTH : $G_OTH}") cores during a run"
    echo "  (limit ${IDLE_CORES}): the machine was not quiet; rerun when it is."
fi
printf '%s\n' "${RESULTS[@]}" | awk 'BEGIN {print "\nper run: side round cpu_s media_s window_s others_cores vmhwm_kb helper_cpu_s steal_cores"} {print "  " $0}'
echo
echo "CPU-s by thread name, round 1, from media start to 1 s before its end (# = digits):"
paste -d'|' <(echo "  whipcast"; cat "$WORK/whipcast.1.threads") <(echo "  gst-launch"; cat "$WORK/gst.1.threads") |
    awk -F'|' '{printf "  %-44s %s\n", $1, $2}'
