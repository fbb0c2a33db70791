# shellcheck shell=bash
# Shared helpers for pipelines/*.sh: sourced, never run on its own.
#
# Each function prints a gst-launch-1.0 fragment equal to one builder of src/media/bins.rs
# (same elements, same properties, same order). The scripts glue fragments together and run
# them; PRINT_ONLY=1 prints the command line instead of running it.
#
# Fragments contain no quotes and no spaces inside a value, so the description is passed to
# gst-launch-1.0 as separate words (gst-launch escapes each argv word, so one quoted string
# would not parse). Globbing is off while the command is expanded.

set -euo pipefail

WC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Defaults that mirror whipcast's defaults (src/config/, src/media/bins.rs).
LADDER_FILE=${LADDER_FILE:-$WC_ROOT/pipelines/ladder.toml}
SEGMENT_MS=${SEGMENT_MS:-2000}          # [hls] segment_duration = 2s
PART_MS=${PART_MS:-200}                 # [hls] part_duration = 200ms (LL-HLS parts); 0 = off
JITTER_LATENCY_MS=150                   # bins.rs JITTER_LATENCY_MS
QUEUE="queue max-size-buffers=0 max-size-bytes=0 max-size-time=1000000000"  # bins.rs queue()
VIDEO_PORT=${VIDEO_PORT:-5004}
AUDIO_PORT=${AUDIO_PORT:-5006}
CODEC=${CODEC:-H264}                    # H264 | VP8 | VP9
# Payload types offered by tests/common/publisher.rs (H264_PT, VP8_PT, OPUS_PT).
case $CODEC in VP8) _pt=96 ;; VP9) _pt=98 ;; *) _pt=102 ;; esac
VIDEO_PT=${VIDEO_PT:-$_pt}
AUDIO_PT=${AUDIO_PT:-111}
OUT_DIR=${OUT_DIR:-}                    # empty: fakesink; else one file per rendition
DURATION=${DURATION:-10}                # seconds of media for FEED=1 / test sources
FEED=${FEED:-0}                         # 1: also run pipelines/feed.sh into the receiver
PRINT_ONLY=${PRINT_ONLY:-0}
LAUNCH_FLAGS=${LAUNCH_FLAGS:-}          # extra gst-launch-1.0 flags, e.g. -v

wc_die() {
    echo "$(basename "$0"): $*" >&2
    exit 1
}

# ---- ladder.toml ----------------------------------------------------------------------------

# Prints `key value` lines: video.fps, video.preset, video.profile, audio.bitrate_kbps,
# and one `rung NAME HEIGHT KBPS` per [[rungs]] entry. Handles the flat format of
# pipelines/ladder.toml (one `key = value` per line, # comments).
wc_ladder_read() {
    [[ -r $LADDER_FILE ]] || wc_die "cannot read ladder file $LADDER_FILE"
    awk '
        function trim(s) { gsub(/^[ \t]+|[ \t]+$/, "", s); return s }
        function flush() { if (name != "") print "rung", name, height, kbps; name = "" }
        /^[ \t]*(#|$)/ { next }
        /^[ \t]*\[\[rungs\]\]/ { flush(); sec = "rungs"; next }
        /^[ \t]*\[/ { flush(); sec = $0; gsub(/[][ \t]/, "", sec); next }
        {
            line = $0
            sub(/[ \t]+#.*$/, "", line)
            eq = index(line, "=")
            if (eq == 0) next
            key = trim(substr(line, 1, eq - 1))
            val = trim(substr(line, eq + 1))
            gsub(/"/, "", val)
            if (sec == "rungs") {
                if (key == "name") name = val
                else if (key == "height") height = val
                else if (key == "bitrate_kbps") kbps = val
            } else if (sec == "video" || sec == "audio") {
                print sec "." key, val
            }
        }
        END { flush() }
    ' "$LADDER_FILE"
}

# Sets LADDER_FPS, LADDER_PRESET, LADDER_PROFILE, LADDER_AUDIO_KBPS and LADDER_RUNGS (array of
# "name height kbps"), from $LADDER_FILE.
wc_ladder_load() {
    LADDER_RUNGS=()
    local key a b c
    while read -r key a b c; do
        case $key in
            video.fps) LADDER_FPS=$a ;;
            video.preset) LADDER_PRESET=$a ;;
            video.profile) LADDER_PROFILE=$a ;;
            video.plan_height) LADDER_PLAN_HEIGHT=$a ;;
            audio.bitrate_kbps) LADDER_AUDIO_KBPS=$a ;;
            rung) LADDER_RUNGS+=("$a $b $c") ;;
        esac
    done < <(wc_ladder_read)
    : "${LADDER_FPS:?no video.fps in $LADDER_FILE}" "${LADDER_PRESET:?no video.preset}"
    : "${LADDER_PROFILE:?no video.profile}" "${LADDER_AUDIO_KBPS:?no audio.bitrate_kbps}"
}

# The rungs whipcast plans for a SRC_W x SRC_H first frame and an optional declared capture
# height HINT, printed by whipcast itself (`whipcast plan-ladder`, the same Ladder::plan of
# src/media/ladder.rs), so this baseline cannot drift from what whipcast builds: prints
# "name width height kbps", highest first. Needs a built whipcast (the newest of
# target/release and target/debug; WHIPCAST_BIN overrides).
wc_ladder_plan() {
    local src_w=$1 src_h=$2 hint=${3:-} bin cfg
    bin=${WHIPCAST_BIN:-$(ls -t "$WC_ROOT"/target/release/whipcast "$WC_ROOT"/target/debug/whipcast 2>/dev/null | head -n1 || true)}
    [[ -n $bin && -x $bin ]] || wc_die "no whipcast binary to plan the ladder: run cargo build --release first"
    cfg=$(mktemp)
    printf '[media]\nladder_file = "%s"\n' "$LADDER_FILE" >"$cfg"
    "$bin" --config "$cfg" plan-ladder --width "$src_w" --height "$src_h" ${hint:+--hint "$hint"} || {
        rm -f "$cfg"
        wc_die "whipcast plan-ladder failed"
    }
    rm -f "$cfg"
}

# ---- muxer ----------------------------------------------------------------------------------

# whipcast links cmafmux statically (gst-plugin-fmp4 0.14.5); Debian has no cmafmux. Cargo
# also builds that crate as a cdylib GStreamer plugin (target/*/deps/libgstfmp4-HASH.so). A
# plugin file must be named libgstfmp4.so for GStreamer to find its entry point, so we
# symlink it into a private directory and put that on GST_PLUGIN_PATH.
# Sets MUX_KIND (cmafmux | mp4mux). WHIPCAST_FMP4_SO overrides the .so; MUX=mp4mux forces
# the Debian fallback (fragmented mp4mux: same encode work, a different box layout).
wc_setup_mux() {
    MUX_KIND=mp4mux
    [[ ${MUX:-} == mp4mux ]] && return 0
    local so=${WHIPCAST_FMP4_SO:-}
    if [[ -z $so ]]; then
        # Newest build wins (release or debug).
        so=$(ls -t "$WC_ROOT"/target/release/deps/libgstfmp4-*.so \
            "$WC_ROOT"/target/debug/deps/libgstfmp4-*.so 2>/dev/null | head -n1 || true)
    fi
    if [[ -n $so && -r $so ]]; then
        local dir=${TMPDIR:-/tmp}/whipcast-gst-plugins-$(id -u)
        mkdir -p "$dir"
        ln -sfn "$so" "$dir/libgstfmp4.so"
        export GST_PLUGIN_PATH="$dir${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
    fi
    if gst-inspect-1.0 cmafmux >/dev/null 2>&1; then
        MUX_KIND=cmafmux
    else
        [[ ${MUX:-} == cmafmux ]] && wc_die "MUX=cmafmux but no cmafmux plugin (build whipcast first: cargo build --release)"
        echo "$(basename "$0"): cmafmux not found (run cargo build --release); using mp4mux fragment-duration=$SEGMENT_MS streamable=true" >&2
    fi
}

# bins.rs cmafmux(): fragment-duration = segment duration, chunk-duration = LL-HLS part
# duration (when parts are on; it must divide the segment exactly); send-force-keyunit on for
# video rungs (IDR at every fragment start), off for audio.
wc_mux() {
    local name=$1 force=$2 chunk=""
    if ((PART_MS > 0)); then
        ((SEGMENT_MS % PART_MS == 0)) || wc_die "PART_MS=$PART_MS must divide SEGMENT_MS=$SEGMENT_MS"
        chunk=" chunk-duration=$((PART_MS * 1000000))"
    fi
    if [[ $MUX_KIND == cmafmux ]]; then
        echo "cmafmux name=${name} fragment-duration=$((SEGMENT_MS * 1000000))${chunk} send-force-keyunit=${force}"
    else
        echo "mp4mux name=${name} fragment-duration=${SEGMENT_MS} streamable=true"
    fi
}

# bins.rs appsink(): sync=false. Here: fakesink, or a file per rendition when OUT_DIR is set.
wc_sink() {
    local name=$1
    if [[ -n $OUT_DIR ]]; then
        echo "filesink name=${name}_sink location=${OUT_DIR}/${name}.mp4 sync=false"
    else
        echo "fakesink name=${name}_sink sync=false"
    fi
}

# ---- branches (one per bins.rs builder) -----------------------------------------------------

# bins.rs rtp_appsrc() + jitterbuffer(): whipcast pushes RTP into an appsrc; here udpsrc on
# loopback (both timestamp buffers on arrival).
wc_rtp_source() {
    local port=$1 caps=$2 name=$3
    echo "udpsrc name=${name}_src address=127.0.0.1 port=${port} buffer-size=4194304 ! ${caps}" \
        "! rtpjitterbuffer name=${name}_jitter latency=${JITTER_LATENCY_MS} do-lost=true"
}

# bins.rs video_ingest(): RTP → jitterbuffer → depay (request-keyframe) → decode
# (automatic-request-sync-points, max-errors=-1: decode errors never end the stream) →
# videoconvert → videorate → I420 @ fps → tee name=video_tee (without the optional
# source/passthrough branch).
wc_video_ingest() {
    local fps=$1 depay dec
    case $CODEC in
        H264) depay="rtph264depay request-keyframe=true" dec=avdec_h264 ;;
        VP8) depay="rtpvp8depay request-keyframe=true" dec=vp8dec ;;
        VP9) depay="rtpvp9depay request-keyframe=true" dec=vp9dec ;;
        *) wc_die "CODEC must be H264, VP8 or VP9 (got $CODEC)" ;;
    esac
    local caps="application/x-rtp,media=video,clock-rate=90000,encoding-name=${CODEC},payload=${VIDEO_PT}"
    echo "$(wc_rtp_source "$VIDEO_PORT" "$caps" video)" \
        "! ${depay} name=video_depay" \
        "! ${dec} name=video_decoder automatic-request-sync-points=true max-errors=-1" \
        "! videoconvert name=video_convert ! videorate name=video_rate" \
        "! video/x-raw,format=I420,framerate=${fps}/1" \
        "! tee name=video_tee allow-not-linked=true"
}

# bins.rs video_rung(): queue → videoscale → I420 WxH par 1/1 → x264enc → profile caps →
# h264parse → cmafmux → sink. Starts with the queue (link it from a tee: `video_tee. ! ...`).
wc_video_rung() {
    local name=$1 w=$2 h=$3 kbps=$4 fps=$5 preset=$6 profile=$7
    # bins.rs: key-int-max = fps * ceil(segment seconds), at least one second.
    local secs=$(((SEGMENT_MS + 999) / 1000))
    ((secs < 1)) && secs=1
    local keyint=$((fps * secs))
    echo "${QUEUE} name=${name}_queue ! videoscale name=${name}_scale" \
        "! video/x-raw,format=I420,width=${w},height=${h},pixel-aspect-ratio=1/1" \
        "! x264enc name=${name}_x264enc bitrate=${kbps} bframes=0 key-int-max=${keyint}" \
        "tune=zerolatency speed-preset=${preset} option-string=scenecut=0" \
        "! video/x-h264,profile=${profile} ! h264parse name=${name}_parse" \
        "! $(wc_mux "${name}_mux" true) ! $(wc_sink "$name")"
}

# bins.rs audio() tail: audioconvert → audioresample → 48 kHz stereo → audiorate (a
# contiguous stream) → avenc_aac with perfect timestamps → queue → cmafmux → sink.
wc_audio_tail() {
    local kbps=$1
    echo "audioconvert name=audio_convert ! audioresample name=audio_resample" \
        "! audio/x-raw,rate=48000,channels=2 ! audiorate name=audio_rate skip-to-first=true" \
        "! avenc_aac name=audio_aacenc bitrate=$((kbps * 1000)) perfect-timestamp=true" \
        "! ${QUEUE} name=audio_queue ! $(wc_mux audio_mux false) ! $(wc_sink audio)"
}

# bins.rs audio(Some(pt)): Opus RTP → jitterbuffer → depay → opusdec plc=true → AAC.
wc_audio_opus() {
    local kbps=$1
    local caps="application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=${AUDIO_PT}"
    echo "$(wc_rtp_source "$AUDIO_PORT" "$caps" audio)" \
        "! rtpopusdepay name=audio_depay ! opusdec name=audio_decoder plc=true" \
        "! $(wc_audio_tail "$kbps")"
}

# bins.rs audio(None): live silence → AAC (Safari needs an audio track). `num-buffers` bounds
# it when a duration is given (whipcast ends it with EOS when the stream ends).
wc_audio_silence() {
    local kbps=$1 buffers=${2:-}
    echo "audiotestsrc name=audio_silence is-live=true wave=silence${buffers:+ num-buffers=$buffers}" \
        "! $(wc_audio_tail "$kbps")"
}

# ---- running --------------------------------------------------------------------------------

# wc_run DESCRIPTION: prints the command, then either execs gst-launch-1.0 (so the script's
# PID is the pipeline's, for benchmarks) or, with FEED=1, runs it in the background, feeds it
# DURATION seconds of test RTP with pipelines/feed.sh, then stops it with SIGINT (-e: EOS, so
# files are finalised). Receivers never end on their own: udpsrc does not see EOS.
wc_run() {
    local desc=$1
    if [[ -n $OUT_DIR ]]; then mkdir -p "$OUT_DIR"; fi
    echo "gst-launch-1.0 -e ${LAUNCH_FLAGS:+$LAUNCH_FLAGS }$desc" >&2
    [[ $PRINT_ONLY == 1 ]] && return 0
    set -f
    if [[ $FEED != 1 ]]; then
        # shellcheck disable=SC2086 # word splitting is the point (see the header)
        exec gst-launch-1.0 -e $LAUNCH_FLAGS $desc
    fi
    # shellcheck disable=SC2086
    gst-launch-1.0 -e $LAUNCH_FLAGS $desc &
    local rx=$!
    set +f
    sleep 1
    local rc=0
    WIDTH=${WIDTH:-1280} HEIGHT=${HEIGHT:-720} FPS=${FPS:-30} \
        bash "$WC_ROOT/pipelines/feed.sh" >/dev/null || rc=$?
    sleep 2 # let the jitter buffer (150 ms) and encoders drain
    kill -INT "$rx" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$rx" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$rx" 2>/dev/null; then
        echo "$(basename "$0"): receiver did not stop after EOS; killing it" >&2
        kill -TERM "$rx" 2>/dev/null || true
        rc=1
    fi
    local rxrc=0
    wait "$rx" || rxrc=$?
    ((rxrc == 0)) || rc=$rxrc
    if ((rc != 0)); then
        echo "$(basename "$0"): failed (exit $rc)" >&2
    fi
    return "$rc"
}
