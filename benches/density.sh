#!/usr/bin/env bash
# Density benchmark (issue 12 §2, BENCHMARKS.md "Density"): how many concurrent 720p30
# publishers whipcast sustains on this machine, against the same streams through bare
# gst-launch-1.0 in the same run.
#
#   make bench-density                                   # full run (long: see BENCHMARKS.md)
#   DENSITY_SECONDS=10 DENSITY_STEPS_TRANSCODE="1 2" DENSITY_STEPS_PASSTHROUGH="1 4" \
#       DENSITY_REFINE=0 bash benches/density.sh         # smoke test
#
# Modes (DENSITY_MODES, default "transcode passthrough simulcast"):
#   transcode    (a) the default ladder (pipelines/ladder.toml, embedded) at its default preset
#   passthrough  (b) the passthrough-only ladder ([source] enabled, no rungs; Opus → AAC stays)
#   simulcast    (c) simulcast layers as rungs: the publisher encodes the picture three
#                times (1280x720, 640x360, 320x180 at 1, 1/4 and 1/16 of BENCH_BITRATE) and
#                sends them as one video track with three rid encodings (RFC 8853); whipcast
#                remuxes each layer as a rendition (no transcoding). Baseline: per stream the
#                passthrough gst-launch-1.0 plus two more `udpsrc → depay → parse →
#                h264timestamper → cmafmux` chains, one per lower layer.
#   simulcast_ladder  the same simulcast publishers with the default ladder: the layers are
#                remuxed (720p, 360p, 180p) and the rungs no layer covers (480p, 234p) are
#                transcoded from the decoded top layer, their keyframes put where the layers'
#                are. whipcast only (not in the default modes): no bare gst-launch-1.0
#                pipeline forces keyframes where another stream has them.
#
# Publishers: ONE process with N peers (benches/cpu.rs `publish-many`): one GStreamer
# pipeline encodes 1280x720@30 H.264 (x264 ultrafast, constrained baseline, BENCH_BITRATE
# kbit/s, 2 s GOP) + Opus 64k once; its RTP goes to N webrtc-rs peer connections, each its own
# WHIP session to stream d0 … dN-1 (each rewrites SSRC/PT; keyframe requests are counted, not
# honoured: one stream's request must not put keyframes into all of them). Every stream is
# therefore the same picture: x264 cost of the ladder is the same as with N different ones.
# The baseline's input is the same single pipeline (`feed-udp-many`), every packet sent by a
# multiudpsink to N port pairs; one gst-launch-1.0 per stream (pipelines/ladder.sh, which runs
# what `whipcast print-pipelines` prints for that ladder: the same elements from udpsrc).
#
# Per step (one N, one side): start the server side (a fresh whipcast, or N gst-launch-1.0),
# start the publisher, and once every peer is connected ("ready") measure for
# DENSITY_SECONDS: CPU (utime + stime, /proc/PID/stat) of whipcast or of the N gst-launch
# PIDs, the publisher's CPU separately, the whole machine's busy cores, RSS, and the kernel's
# UDP receive drops on the measured processes' sockets. A step is sustained when:
#   whipcast: no loss (no UDP socket drop; no "rtp queue full" / "too late to be live" /
#             "malformed" log line; the publisher dropped nothing locally), server lag p99
#             (/api/streams lag_ms.p99, over the last 30 s) <= DENSITY_LAG_MS on
#             every stream, and every rendition of every stream published at least
#             floor(window / 2 s) - 2 segments during the window (real time; the window
#             is DENSITY_SECONDS - 2 s: measuring starts 2 s after all peers are up);
#   baseline: no UDP socket drop, no gst-launch ERROR, every rendition file of every stream
#             holds at least window - 4 s of media (when outputs go to files, see below).
# Loss inside the jitter buffers (a sequence gap the network made) is reported by neither
# side: whipcast counts it nowhere (its depayloader only sends a PLI; the publisher's
# keyframe_requests counter, printed, includes those PLIs and whipcast's keyframe steering).
# The run of a step is INVALID when the publisher itself used >= DENSITY_PUBLISHER_MAX cores
# (it would be the bottleneck, not the server).
#
# Stepping: DENSITY_STEPS_<MODE> in order until a side fails (each side stops at its first
# failure); then DENSITY_REFINE bisection steps between its last pass and first failure.
#
# Env: DENSITY_MODES, DENSITY_STEPS_TRANSCODE ("1 2 3 4 5 6"), DENSITY_STEPS_PASSTHROUGH
# ("1 2 4 8 16 32 64 100 128 160 200"), DENSITY_STEPS_SIMULCAST ("1 2 4 8 16 24 32 48"),
# DENSITY_SECONDS (60), DENSITY_REFINE (2),
# DENSITY_LAG_MS (250), DENSITY_SIDES ("whipcast gst"), DENSITY_PUBLISHER_MAX (0.9 cores),
# DENSITY_CONCURRENCY (4 peers connecting at once), DENSITY_BUILD (1: cargo build first),
# DENSITY_AAC_CODER (twoloop; or fast, for the passthrough and simulcast ladders of both sides),
# BENCH_BITRATE (2500), BENCH_IDLE_CORES (0.3), BENCH_IDLE_TRIES (15 × 2 s), BENCH_KEEP,
# WHIPCAST_BIN. Everything talks to 127.0.0.1 only (make runs it in deploy/netns-run.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=SCRIPTDIR/lib.sh
source "$ROOT/benches/lib.sh"
# shellcheck disable=SC2034 # read by benches/lib.sh
LOG_PREFIX=density KEEP_WORK=${BENCH_KEEP:-0}
MODES=${DENSITY_MODES:-transcode passthrough simulcast}
SECS=${DENSITY_SECONDS:-60}
REFINE=${DENSITY_REFINE:-2}
LAG_MAX=${DENSITY_LAG_MS:-250}
SIDES=${DENSITY_SIDES:-whipcast gst}
PUB_MAX=${DENSITY_PUBLISHER_MAX:-0.9}
CONC=${DENSITY_CONCURRENCY:-4}
BITRATE=${BENCH_BITRATE:-2500}
IDLE_CORES=${BENCH_IDLE_CORES:-0.3}
# The passthrough and simulcast ladders' AAC quantizer search (pipelines/ladder.toml).
AAC_CODER=${DENSITY_AAC_CODER:-twoloop}
[[ $AAC_CODER == twoloop || $AAC_CODER == fast ]] || { echo "DENSITY_AAC_CODER must be twoloop or fast" >&2; exit 2; }
# shellcheck disable=SC2034 # read by wait_idle (benches/lib.sh)
IDLE_TRIES=${BENCH_IDLE_TRIES:-15}
WIDTH=1280 HEIGHT=720 FPS=30 SEGMENT_S=2
WHIPCAST=${WHIPCAST_BIN:-$ROOT/target/release/whipcast}
TCK=$(getconf CLK_TCK)
NCPU=$(nproc)

[[ $SECS =~ ^[0-9]+$ ]] && ((SECS >= 5 && SECS <= 3600)) ||
    { echo "DENSITY_SECONDS must be an integer in 5..3600" >&2; exit 2; }
for m in $MODES; do
    case $m in
        transcode | passthrough | simulcast | simulcast_ladder) ;;
        *) echo "density: unknown mode $m (transcode | passthrough | simulcast | simulcast_ladder)" >&2; exit 2 ;;
    esac
done
for tool in curl jq ffprobe gst-launch-1.0 /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "missing $tool (deploy/install-deps.sh)" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/whipcast-density.XXXXXX")
MEMDIR=""
if [[ -d /dev/shm && -w /dev/shm ]]; then MEMDIR=$(mktemp -d /dev/shm/whipcast-density.XXXXXX); fi
PIDS=()
trap cleanup EXIT

# ---- helpers (the shared ones: benches/lib.sh) ---------------------------------------------
sum_ticks() { local p t=0 x; for p in "$@"; do x=$(proc_ticks "$p"); t=$((t + ${x:-0})); done; echo "$t"; }
sum_kb() { local p t=0 x; for p in "${@:2}"; do x=$(status_kb "$p" "$1"); t=$((t + ${x:-0})); done; echo "$t"; }
# The kernel's receive drops (buffer full) on the UDP sockets of these PIDs.
udp_drops() {
    local inodes
    inodes=$(for p in "$@"; do ls -l "/proc/$p/fd" 2>/dev/null; done | sed -n 's/.*socket:\[\([0-9]*\)\]$/\1/p' | tr '\n' ' ')
    awk -v list="$inodes" 'BEGIN {n = split(list, a, " "); for (i = 1; i <= n; i++) want[a[i]] = 1}
        FNR > 1 && ($10 in want) {d += $13} END {print d + 0}' /proc/net/udp /proc/net/udp6
}
IDLE_SEEN=()
# Waits for a marker line ("ready" / "end") from the helper whose stdout is $2; fails when
# the helper ($3) exits first.
# The publisher's CPU ticks at its marker line $1 (it prints them: it may be gone by now).
mark_ticks() { sed -n "s/^$1 .*ticks=\([0-9]*\).*/\1/p" "$2" | head -n1; }
wait_mark() { # marker file pid seconds
    local deadline=$(($(date +%s) + $4))
    until grep -q "^$1" "$2" 2>/dev/null; do
        alive "$3" || return 1
        (($(date +%s) < deadline)) || return 1
        sleep 0.1
    done
}

# ---- build ---------------------------------------------------------------------------------
if [[ ${DENSITY_BUILD:-1} == 1 ]]; then
    log "building whipcast (release) and the bench helper (benches/cpu.rs)"
    nice -n 10 cargo build --release --locked --bin whipcast 2>"$WORK/build.log" ||
        fail "cargo build --release failed: $(grep -E -A12 '^error' "$WORK/build.log" | head -40)"
    nice -n 10 cargo bench --locked --bench cpu --no-run 2>>"$WORK/build.log" ||
        fail "cargo bench --bench cpu --no-run failed: $(grep -E -A12 '^error' "$WORK/build.log" | head -40)"
fi
HELPER=$(bench_exe cpu 2>>"$WORK/build.log")
[[ -x $HELPER ]] || fail "bench helper not built: $(tail -5 "$WORK/build.log")"
[[ -x $WHIPCAST ]] || fail "no $WHIPCAST"
read -r VPT APT < <("$HELPER" info | sed 's/[a-z_]*=//g')
# cmafmux and livesync for gst-launch-1.0, as pipelines/ladder.sh finds them.
GST_PLUGIN_PATH=$(bash -c 'source pipelines/common.sh; wc_setup_mux; echo "$GST_PLUGIN_PATH"') ||
    fail "no cmafmux/livesync plugin for gst-launch-1.0"
export GST_PLUGIN_PATH

# The passthrough-only ladder, for whipcast (inline) and for pipelines/ladder.sh (a file).
PASS_LADDER="$WORK/passthrough.toml"
passthrough_ladder "" "$AAC_CODER" >"$PASS_LADDER"
ladder_file() { if [[ $1 == transcode || $1 == simulcast_ladder ]]; then echo "$ROOT/pipelines/ladder.toml"; else echo "$PASS_LADDER"; fi; }
# Video layers per stream: simulcast's three, else one.
layers_of() { if [[ $1 == simulcast* ]]; then echo 3; else echo 1; fi; }

# ---- one whipcast step ---------------------------------------------------------------------
# Sets STEP: "ok|FAIL|INVALID cores per_stream_cores rss_mb per_stream_mb lag_p99_max loss
# advancing pub_cores machine_cores why".
step_whipcast() { # mode n tag
    local mode=$1 n=$2 tag=$3 port pid cfg
    port=$(free_port)
    cfg="$WORK/$tag.toml"
    {
        printf '[server]\nlisten = "127.0.0.1:%s"\nmax_streams = %d\n' "$port" $((n + 16))
        # One client (127.0.0.1) publishes every stream: its caps are raised.
        printf '[limits]\nmax_pending_sessions = 64\nmax_pending_sessions_per_client = 64\n'
        printf 'publish_per_minute = 0\nmax_connections_per_client = %d\n' $((n * 4 + 256))
        if [[ $mode != transcode ]]; then
            # The fan-out publisher ignores PLI and sends a keyframe every 2 s: with the
            # default 2 s segments the muxer cuts at the first keyframe at or after 2 s,
            # which a keyframe arriving a hair early misses (2 s and 4 s segments, measured:
            # 19 segments in 58 s). 1.8 s segments cut at every keyframe: 2 s segments.
            printf '[hls]\nsegment_duration = "1800ms"\n'
        fi
        if [[ $mode == passthrough || $mode == simulcast ]]; then
            # (Simulcast: the layers are the ladder, the top one its passthrough rung.)
            passthrough_ladder media.ladder "$AAC_CODER"
        fi
    } >"$cfg"
    wait_idle
    WHIPCAST_LOG=whipcast=info "$WHIPCAST" --config "$cfg" >"$WORK/$tag.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_healthz "http://127.0.0.1:$port" "$WORK/$tag.log"
    local rss_idle
    rss_idle=$(status_kb "$pid" VmRSS)
    "$HELPER" publish-many --url-base "http://127.0.0.1:$port/whip/" --streams "$n" \
        --concurrency "$CONC" --seconds "$SECS" --width $WIDTH --height $HEIGHT --fps $FPS \
        --bitrate "$BITRATE" --layers "$(layers_of "$mode")" >"$WORK/$tag.pub.out" 2>"$WORK/$tag.pub.err" &
    local hpid=$!
    PIDS+=("$hpid")
    if ! wait_mark ready "$WORK/$tag.pub.out" "$hpid" $((30 + n)); then
        stop_pid "$hpid" TERM 5
        stop_pid "$pid" TERM 15
        STEP="FAIL - - - - - - - - - publisher-did-not-connect:$(tail -1 "$WORK/$tag.pub.err" | tr ' ' '_' | cut -c1-120)"
        return 0
    fi
    # Let the first segments of the last peers out before measuring.
    sleep 2
    local api="http://127.0.0.1:$port/api/streams"
    curl -sf --noproxy '*' -m 10 "$api" >"$WORK/$tag.api0.json" || fail "no /api/streams"
    local c0 h0 s0 d0 t0 c1 h1 s1 d1 t1
    c0=$(proc_ticks "$pid") h0=$(mark_ticks ready "$WORK/$tag.pub.out") s0=$(sys_ticks) d0=$(udp_drops "$pid") t0=$(date +%s.%N)
    wait_mark end "$WORK/$tag.pub.out" "$hpid" $((SECS + 30)) || true
    c1=$(proc_ticks "$pid") h1=$(mark_ticks end "$WORK/$tag.pub.out") s1=$(sys_ticks) d1=$(udp_drops "$pid") t1=$(date +%s.%N)
    local rss hwm
    rss=$(status_kb "$pid" VmRSS) hwm=$(status_kb "$pid" VmHWM)
    curl -sf --noproxy '*' -m 10 "$api" >"$WORK/$tag.api1.json" || fail "no /api/streams"
    local hrc=0
    wait "$hpid" || hrc=$?
    forget "$hpid"
    alive "$pid" || fail "whipcast exited during the run: $(tail -5 "$WORK/$tag.log")"
    stop_pid "$pid" TERM 15
    local out win cores pub mach
    out=$(tail -n1 "$WORK/$tag.pub.out")
    win=$(calc "$t1 - $t0")
    cores=$(calc "($c1 - $c0) / $TCK / $win")
    pub=$(calc "($h1 - $h0) / $TCK / $win")
    mach=$(calc "($s1 - $s0) / $TCK / $win")
    # Loss: kernel drops, whipcast's own drop logs, the publisher's local drops.
    local qfull stale malformed lost udp
    qfull=$(grep -c 'rtp queue full' "$WORK/$tag.log" || true)
    stale=$(grep -c 'too late to be live' "$WORK/$tag.log" || true)
    malformed=$(grep -c 'dropping malformed video RTP' "$WORK/$tag.log" || true)
    lost=$(kv lost_locally "$out")
    udp=$((d1 - d0))
    # Lag and real-time progress, per stream and rendition.
    local lagmax minadv need streams
    need=$(awk -v w="$win" -v s=$SEGMENT_S 'BEGIN {print int(w / s) - 2}')
    streams=$(jq '[.streams[] | select(.state == "live")] | length' "$WORK/$tag.api1.json")
    # Simulcast: every stream made a rendition of each of its three layers.
    local planned=$n
    if [[ $mode == simulcast* ]]; then
        planned=$(jq '[.streams[] | select((.simulcast.layers // []) | length == 3)] | length' "$WORK/$tag.api1.json")
    fi
    lagmax=$(jq -r '[.streams[] | .lag_ms.p99] | max // 0' "$WORK/$tag.api1.json")
    minadv=$(jq -rn --slurpfile a "$WORK/$tag.api0.json" --slurpfile b "$WORK/$tag.api1.json" '
        def rs(x): [x.streams[]
            | .name as $s | .renditions[] | {key: ($s + "/" + .name), value: .segments}] | from_entries;
        (rs($a[0])) as $x | (rs($b[0])) as $y
        | [$y | to_entries[] | .value - ($x[.key] // 0)] | min // 0')
    local why="" verdict=ok
    ((hrc == 0)) || why+="publisher-failed:$(tail -1 "$WORK/$tag.pub.err" | tr ' ' '_' | cut -c1-80),"
    ((streams == n)) || why+="live-streams=$streams,"
    ((planned == n)) || why+="streams-with-3-layer-renditions=$planned,"
    ((udp == 0 && qfull == 0 && stale == 0 && malformed == 0 && ${lost:-0} == 0)) ||
        why+="loss(udp=$udp,queue-full-logs=$qfull,stale-logs=$stale,malformed-logs=$malformed,publisher-local=${lost:-?}),"
    awk "BEGIN {exit !($lagmax <= $LAG_MAX)}" || why+="lag-p99=${lagmax}ms,"
    ((minadv >= need)) || why+="segments-advanced-min=$minadv<$need,"
    [[ -z $why ]] || verdict=FAIL
    awk "BEGIN {exit !($pub >= $PUB_MAX)}" && { verdict=INVALID; why+="publisher-used-${pub}-cores,"; }
    local loss=$((udp + qfull + stale + malformed + ${lost:-0}))
    STEP="$verdict $cores $(calc "$cores / $n") $((rss / 1024)) $(calc "($rss - $rss_idle) / 1024 / $n") $lagmax $loss $([[ $minadv -ge $need ]] && echo yes || echo no) $pub $mach ${why:--}"
    log "whipcast $tag: $out"
    log "whipcast $tag: ${STEP}; peak RSS $((hwm / 1024)) MB; keyframe requests at the publisher: $(kv keyframe_requests "$out")"
}

# ---- one baseline step ---------------------------------------------------------------------
step_gst() { # mode n tag
    local mode=$1 n=$2 tag=$3 i vports=() aports=() gpids=() out="$MEMDIR"
    [[ -n $out ]] || out=$WORK
    out="$out/$tag"
    # Files (tmpfs) when they fit with room to spare, else fakesink (no duration check).
    local need_kb=$(((BITRATE + 3000) * (SECS + 30) * n / 8))
    local files=1
    (($(df -Pk "${MEMDIR:-$WORK}" | awk 'NR == 2 {print $4}') > need_kb * 2 + 500000)) || files=0
    wait_idle
    for ((i = 0; i < n; i++)); do
        local v vr a ar k lp
        v=$(free_port) vr=$(free_port) a=$(free_port) ar=$(free_port)
        vports+=("$v") aports+=("$a")
        local lports=()
        for ((k = 1; k < $(layers_of "$mode"); k++)); do
            lp=$(free_port)
            lports+=("$lp") vports+=("$lp")
        done
        # What pipelines/ladder.sh runs (PRINT_ONLY=1 prints its gst-launch-1.0 line).
        local desc
        desc=$(VIDEO_PORT=$v VIDEO_RTCP_PORT=$vr AUDIO_PORT=$a AUDIO_RTCP_PORT=$ar VIDEO_PT=$VPT \
            AUDIO_PT=$APT CODEC=H264 AUDIO=1 SRC_W=$WIDTH SRC_H=$HEIGHT LADDER_FILE="$(ladder_file "$mode")" \
            OUT_DIR=$([[ $files == 1 ]] && echo "$out/d$i") PRINT_ONLY=1 WHIPCAST_BIN="$WHIPCAST" \
            bash pipelines/ladder.sh 2>&1 >/dev/null | sed -n 's/^gst-launch-1.0 -e //p')
        [[ -n $desc ]] || fail "pipelines/ladder.sh printed no pipeline"
        if [[ $mode != transcode ]]; then
            # whipcast sets DTS = PTS in a pad probe before the passthrough muxer (print-pipelines
            # lists it as not expressible); cmafmux refuses video without DTS, so the baseline
            # gets h264timestamper (GStreamer 1.22) there instead.
            [[ $desc == *"alignment=au ! tee name=h264_tee"* ]] || fail "unexpected passthrough chain: $desc"
            desc=${desc/alignment=au ! tee name=h264_tee/alignment=au ! h264timestamper ! tee name=h264_tee}
        fi
        # Simulcast: the passthrough video chain (up to its RTCP source) once more per lower
        # layer, on the layer's port, with its elements and file renamed.
        local vchain=${desc%%udpsrc name=video_rtcp*} layer
        [[ $mode != simulcast || $vchain != "$desc" ]] || fail "no video_rtcp source in: $desc"
        for ((k = 1; k < $(layers_of "$mode"); k++)); do
            layer=${vchain//video_/l${k}_}
            layer=${layer//source_/l${k}s_}
            layer=${layer//h264_tee/l${k}_tee}
            layer=${layer//source.mp4/layer$k.mp4}
            layer=${layer/ port=$v / port=${lports[$((k - 1))]} }
            desc+=" $layer"
        done
        [[ $files == 1 ]] && mkdir -p "$out/d$i"
        echo "$desc" >"$WORK/$tag.d$i.desc"
        (
            set -f
            # shellcheck disable=SC2086 # one word per element property (pipelines/common.sh)
            exec gst-launch-1.0 -e $desc
        ) >"$WORK/$tag.d$i.log" 2>&1 &
        gpids+=("$!")
        PIDS+=("$!")
    done
    for ((i = 0; i < n; i++)); do
        wait_until 60 grep -q 'Setting pipeline to PLAYING' "$WORK/$tag.d$i.log" ||
            fail "gst-launch d$i did not start: $(tail -5 "$WORK/$tag.d$i.log")"
        [[ $(cat "/proc/${gpids[$i]}/comm") == gst-launch-1.0 ]] || fail "PID ${gpids[$i]} is not gst-launch-1.0"
    done
    local rss_idle
    rss_idle=$(sum_kb VmRSS "${gpids[@]}")
    "$HELPER" feed-udp-many --video-ports "$(
        IFS=,
        echo "${vports[*]}"
    )" --audio-ports "$(
        IFS=,
        echo "${aports[*]}"
    )" --seconds "$SECS" --width $WIDTH --height $HEIGHT --fps $FPS --bitrate "$BITRATE" \
        --layers "$(layers_of "$mode")" >"$WORK/$tag.feed.out" 2>"$WORK/$tag.feed.err" &
    local hpid=$!
    PIDS+=("$hpid")
    wait_mark ready "$WORK/$tag.feed.out" "$hpid" 30 || fail "feeder did not start: $(tail -3 "$WORK/$tag.feed.err")"
    sleep 2
    local c0 h0 s0 d0 t0 c1 h1 s1 d1 t1
    c0=$(sum_ticks "${gpids[@]}") h0=$(mark_ticks ready "$WORK/$tag.feed.out") s0=$(sys_ticks) d0=$(udp_drops "${gpids[@]}") t0=$(date +%s.%N)
    wait_mark end "$WORK/$tag.feed.out" "$hpid" $((SECS + 30)) || true
    c1=$(sum_ticks "${gpids[@]}") h1=$(mark_ticks end "$WORK/$tag.feed.out") s1=$(sys_ticks) d1=$(udp_drops "${gpids[@]}") t1=$(date +%s.%N)
    local rss
    rss=$(sum_kb VmRSS "${gpids[@]}")
    local hrc=0
    wait "$hpid" || hrc=$?
    forget "$hpid"
    local dead=0 p
    for p in "${gpids[@]}"; do alive "$p" || dead=$((dead + 1)); done
    sleep 1 # the jitter buffers' latency, then EOS
    for p in "${gpids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    for p in "${gpids[@]}"; do stop_pid "$p" INT 20; done
    local errors
    errors=$(cat "$WORK/$tag".d*.log | grep -c 'ERROR' || true)
    local win cores pub mach udp
    win=$(calc "$t1 - $t0")
    cores=$(calc "($c1 - $c0) / $TCK / $win")
    pub=$(calc "($h1 - $h0) / $TCK / $win")
    mach=$(calc "($s1 - $s0) / $TCK / $win")
    udp=$((d1 - d0))
    # Real time: every file holds at least the window less two segments.
    local adv=n/a short=0 f dur
    if [[ $files == 1 ]]; then
        adv=yes
        for f in "$out"/d*/*.mp4; do
            dur=$(ffprobe -v error -show_entries format=duration -of default=nw=1:nk=1 "$f" 2>/dev/null || echo 0)
            awk "BEGIN {exit !(${dur:-0} + 0 >= $win - 2 * $SEGMENT_S)}" || { short=$((short + 1)); adv=no; }
        done
        rm -rf "$out"
    fi
    local why="" verdict=ok
    ((hrc == 0)) || why+="feeder-failed,"
    ((dead == 0)) || why+="gst-exited=$dead,"
    ((errors == 0)) || why+="gst-errors=$errors,"
    ((udp == 0)) || why+="loss(udp=$udp),"
    ((short == 0)) || why+="short-outputs=$short,"
    [[ -z $why ]] || verdict=FAIL
    awk "BEGIN {exit !($pub >= $PUB_MAX)}" && { verdict=INVALID; why+="feeder-used-${pub}-cores,"; }
    STEP="$verdict $cores $(calc "$cores / $n") $((rss / 1024)) $(calc "($rss - $rss_idle) / 1024 / $n") n/a $udp $adv $pub $mach ${why:--}"
    log "gst $tag: $(tail -n1 "$WORK/$tag.feed.out")"
    log "gst $tag: $STEP"
}

# ---- stepping ------------------------------------------------------------------------------
# ROWS: "mode side n verdict cores per_stream rss_mb per_stream_mb lag_p99 loss advancing
# pub_cores machine_cores why"
ROWS=()
declare -A PASS=() FAILN=() WHY=()
run_step() { # mode side n
    local tag="$1.$2.$3"
    log "---- $1, $2, N=$3 (${SECS} s)"
    "step_$2" "$1" "$3" "$tag"
    ROWS+=("$1 $2 $3 $STEP")
    local v=${STEP%% *}
    if [[ $v == ok ]]; then
        PASS[$1.$2]=$(( $3 > ${PASS[$1.$2]:-0} ? $3 : ${PASS[$1.$2]:-0} ))
        return 0
    fi
    if [[ -z ${FAILN[$1.$2]:-} || $3 -lt ${FAILN[$1.$2]} ]]; then
        FAILN[$1.$2]=$3
        WHY[$1.$2]="$STEP"
    fi
    return 1
}
START=$(date +%s)
for mode in $MODES; do
    var="DENSITY_STEPS_${mode^^}"
    case $mode in
        transcode) steps=${!var:-1 2 3 4 5 6} ;;
        passthrough) steps=${!var:-1 2 4 8 16 32 64 100 128 160 200} ;;
        simulcast) steps=${!var:-1 2 4 8 16 24 32 48} ;;
        simulcast_ladder) steps=${!var:-1 2 3 4 6 8} ;;
    esac
    declare -A DONE=()
    for n in $steps; do
        for side in $SIDES; do
            [[ -z ${DONE[$side]:-} ]] || continue
            [[ $mode != simulcast_ladder || $side == whipcast ]] || continue
            run_step "$mode" "$side" "$n" || DONE[$side]=1
        done
    done
    for side in $SIDES; do
        for ((r = 0; r < REFINE; r++)); do
            lo=${PASS[$mode.$side]:-0} hi=${FAILN[$mode.$side]:-}
            [[ -n $hi ]] && ((hi - lo > 1)) || break
            mid=$(((lo + hi) / 2))
            run_step "$mode" "$side" "$mid" || true
        done
    done
    unset DONE
done
ELAPSED=$(($(date +%s) - START))

# ---- report --------------------------------------------------------------------------------
LAYERS_LINE=""
if [[ " $MODES " == *" simulcast"* ]]; then
    LAYERS_LINE="simulcast  : the same picture also at $((WIDTH / 2))x$((HEIGHT / 2)) $((BITRATE / 4)) and $((WIDTH / 4))x$((HEIGHT / 4)) $((BITRATE / 16)) kbit/s: rid h/m/l of one video track (3 encodes, fanned out)
"
fi
cat <<EOF

whipcast density benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ) ($((ELAPSED / 60)) min $((ELAPSED % 60)) s)
machine    : $NCPU cores, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) RAM, kernel $(uname -r), GStreamer $(gst-launch-1.0 --version | awk '/^GStreamer/ {print $2; exit}')
input      : N × ${WIDTH}x${HEIGHT}@${FPS} H.264 constrained-baseline ${BITRATE} kbit/s (2 s GOP) + Opus 64 kbit/s;
             ONE publisher process, one encode fanned out to N WebRTC peers (whipcast) /
             to N UDP port pairs (baseline: one gst-launch-1.0 per stream, pipelines/ladder.sh)
${LAYERS_LINE}audio      : Opus → AAC ${AAC_CODER} (passthrough, simulcast)
window     : ${SECS} s per step once all N are connected; lag limit p99 <= ${LAG_MAX} ms
idle check : other processes used ${IDLE_SEEN[*]} cores before each step (limit ${IDLE_CORES})

mode             side      N  verdict  cores  cores/N  RSS MB  MB/N(>idle)  lag p99 ms  loss  advancing  publisher cores  machine cores  why
EOF
for row in "${ROWS[@]}"; do
    read -r m s n v c cn r rn l lo a p mc why <<<"$row"
    printf '%-16s %-8s %3d  %-7s  %5s  %7s  %6s  %11s  %10s  %4s  %-9s  %15s  %13s  %s\n' \
        "$m" "$s" "$n" "$v" "$c" "$cn" "$r" "$rn" "$l" "$lo" "$a" "$p" "$mc" "$why"
done
echo
for mode in $MODES; do
    w=${PASS[$mode.whipcast]:-0} g=${PASS[$mode.gst]:-0}
    echo "$mode: sustained N whipcast = $w$([[ -n ${FAILN[$mode.whipcast]:-} ]] || echo ' (no failure: raise the steps)'), bare gst-launch = $g$([[ -n ${FAILN[$mode.gst]:-} ]] || echo ' (no failure: raise the steps)')"
    if ((g > 0)); then echo "  ratio of sustained streams whipcast / bare = $(calc "$w / $g")"; fi
    # CPU per stream at the largest N both sides sustained.
    both=0
    for row in "${ROWS[@]}"; do
        read -r m s n v _ <<<"$row"
        [[ $m == "$mode" && $v == ok ]] || continue
        for row2 in "${ROWS[@]}"; do
            read -r m2 s2 n2 v2 _ <<<"$row2"
            [[ $m2 == "$mode" && $n2 == "$n" && $v2 == ok && $s2 != "$s" ]] && ((n > both)) && both=$n
        done
    done
    if ((both > 0)); then
        wc=$(printf '%s\n' "${ROWS[@]}" | awk -v m="$mode" -v n="$both" '$1 == m && $2 == "whipcast" && $3 == n && $4 == "ok" {print $6; exit}')
        gc=$(printf '%s\n' "${ROWS[@]}" | awk -v m="$mode" -v n="$both" '$1 == m && $2 == "gst" && $3 == n && $4 == "ok" {print $6; exit}')
        echo "  CPU per stream at N=$both: whipcast $wc cores, bare $gc cores; ratio whipcast / bare = $(calc "$wc / $gc")"
    fi
    for side in $SIDES; do
        [[ -n ${FAILN[$mode.$side]:-} ]] || continue
        read -r v c cn r rn l lo a p mc why <<<"${WHY[$mode.$side]}"
        first="?"
        if [[ $v == INVALID ]]; then first="the publisher (run invalid: $p cores)"
        elif awk "BEGIN {exit !($mc >= 0.9 * $NCPU)}" 2>/dev/null; then first="CPU (machine ${mc} of $NCPU cores busy)"
        elif [[ $why == *udp=[1-9]* ]]; then first="UDP receive buffers (kernel socket drops; machine ${mc} of $NCPU cores busy)"
        elif [[ $why == *lag* ]]; then first="latency (lag p99 over the limit at ${mc} of $NCPU cores busy)"
        elif [[ $why == *publisher-did-not-connect* || $why == *live-streams* ]]; then first="session set-up (not every peer connected / went live)"
        fi
        echo "  $side first fails at N=${FAILN[$mode.$side]}: $why"
        echo "    first resource to run out: $first"
    done
    case $mode in
        transcode) echo "  goal (a): ratio of sustained streams >= 0.95" ;;
        passthrough) echo "  goal (b): >= 100 passthrough streams on 2 cores: whipcast $( ((w >= 100)) && echo MET || echo 'not met') ($w)" ;;
        simulcast)
            # Goal (c): whipcast's CPU per simulcast stream against its CPU per passthrough
            # stream, at the largest N both modes sustained in this run.
            nn=0
            for row in "${ROWS[@]}"; do
                read -r m s n v _ <<<"$row"
                [[ $m == simulcast && $s == whipcast && $v == ok ]] || continue
                printf '%s\n' "${ROWS[@]}" | grep -q "^passthrough whipcast $n ok " && ((n > nn)) && nn=$n
            done
            if ((nn > 0)); then
                sc=$(printf '%s\n' "${ROWS[@]}" | awk -v n="$nn" '$1 == "simulcast" && $2 == "whipcast" && $3 == n && $4 == "ok" {print $6; exit}')
                pc=$(printf '%s\n' "${ROWS[@]}" | awk -v n="$nn" '$1 == "passthrough" && $2 == "whipcast" && $3 == n && $4 == "ok" {print $6; exit}')
                r=$(calc "$sc / $pc")
                echo "  goal (c): 3-layer simulcast stream <= 2x a passthrough stream's CPU: at N=$nn $sc / $pc = $r: $(awk "BEGIN {exit !($r <= 2)}" && echo MET || echo 'not met')"
            else
                echo "  goal (c): no N both simulcast and passthrough sustained in this run (add passthrough to DENSITY_MODES)"
            fi
            ;;
    esac
done
echo "memory available at the end: $(awk '/MemAvailable/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
