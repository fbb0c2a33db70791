# shellcheck shell=bash
# Shared helpers for pipelines/*.sh: sourced, never run on its own.
#
# The pipelines are whipcast's own: `whipcast print-pipelines` builds the very bins whipcast
# runs (src/media/graph.rs, the same builders) and prints them as gst-launch-1.0 text, one
# chain per line, each element with the properties that differ from its defaults. Its `#`
# lines name the stand-ins for what gst-launch-1.0 cannot express (appsrc -> udpsrc on
# 127.0.0.1, appsink -> filesink or fakesink) and what is left out (pad probes, signals).
# Nothing here re-implements an element chain: the scripts pick the chains they need by
# whipcast's element names, add a test input or a viewer where they say so, and run it.
# PRINT_ONLY=1 prints the command line instead of running it.
#
# The printed text has no quotes and no spaces inside a value (print-pipelines refuses to
# print one that would), so the description is passed to gst-launch-1.0 as separate words
# (gst-launch escapes each argv word, so one quoted string would not parse). Globbing is off
# while the command is expanded.

set -euo pipefail

WC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# The stream settings whipcast reads from its configuration; passed to it as one.
LADDER_FILE=${LADDER_FILE:-$WC_ROOT/pipelines/ladder.toml}
SEGMENT_MS=${SEGMENT_MS:-2000}          # [hls] segment_duration = 2s
PART_MS=${PART_MS:-200}                 # [hls] part_duration = 200ms (LL-HLS parts); 0 = off
# The stand-ins' loopback ports. RTCP (the sender reports whipcast's jitter buffers read) on
# the RTP port + 1 (RFC 3550 §11); nothing needs to send any.
VIDEO_PORT=${VIDEO_PORT:-5004}
AUDIO_PORT=${AUDIO_PORT:-5006}
VIDEO_RTCP_PORT=${VIDEO_RTCP_PORT:-$((VIDEO_PORT + 1))}
AUDIO_RTCP_PORT=${AUDIO_RTCP_PORT:-$((AUDIO_PORT + 1))}
CODEC=${CODEC:-H264}                    # H264 | VP8 | VP9
# Payload types offered by tests/common/publisher.rs (H264_PT, VP8_PT, OPUS_PT).
case $CODEC in VP8) _pt=96 ;; VP9) _pt=98 ;; *) _pt=102 ;; esac
VIDEO_PT=${VIDEO_PT:-$_pt}
AUDIO_PT=${AUDIO_PT:-111}
SRC_W=${SRC_W:-1280}                    # the source's first frame (whipcast: the decoder's caps)
SRC_H=${SRC_H:-720}
HINT=${HINT:-}                          # declared capture height (?height=); default plan_height
OUT_DIR=${OUT_DIR:-}                    # empty: fakesink; else one NAME.mp4 per rendition
DURATION=${DURATION:-10}                # seconds of media for FEED=1 / test sources
FEED=${FEED:-0}                         # 1: also run pipelines/feed.sh into the receiver
PRINT_ONLY=${PRINT_ONLY:-0}
LAUNCH_FLAGS=${LAUNCH_FLAGS:-}          # extra gst-launch-1.0 flags, e.g. -v

wc_die() {
    echo "$(basename "$0"): $*" >&2
    exit 1
}

# ---- whipcast -------------------------------------------------------------------------------

# Runs whipcast with a configuration holding LADDER_FILE, SEGMENT_MS and PART_MS. Needs a
# built whipcast: the newest of target/release and target/debug (WHIPCAST_BIN overrides).
wc_whipcast() {
    local bin cfg rc=0
    bin=${WHIPCAST_BIN:-$(ls -t "$WC_ROOT"/target/release/whipcast "$WC_ROOT"/target/debug/whipcast 2>/dev/null | head -n1 || true)}
    [[ -n $bin && -x $bin ]] || wc_die "no whipcast binary: run cargo build --release first"
    [[ -r $LADDER_FILE ]] || wc_die "cannot read ladder file $LADDER_FILE"
    cfg=$(mktemp)
    printf '[media]\nladder_file = "%s"\n[hls]\nsegment_duration = "%sms"\npart_duration = "%sms"\n' \
        "$LADDER_FILE" "$SEGMENT_MS" "$PART_MS" >"$cfg"
    "$bin" --config "$cfg" "$@" || rc=$?
    rm -f "$cfg"
    ((rc == 0)) || wc_die "whipcast $1 failed (exit $rc)"
}

# The rungs whipcast plans for the source (`whipcast plan-ladder`): "name width height kbps"
# lines, highest first.
wc_ladder_plan() {
    wc_whipcast plan-ladder --width "$SRC_W" --height "$SRC_H" ${HINT:+--hint "$HINT"}
}

# Sets WC_PRINTED to whipcast's pipeline for the source (`whipcast print-pipelines`), with the
# stand-ins on this script's ports and OUT_DIR. Extra arguments go to print-pipelines
# (e.g. --no-audio).
wc_print() {
    WC_PRINTED=$(wc_whipcast print-pipelines --width "$SRC_W" --height "$SRC_H" ${HINT:+--hint "$HINT"} \
        --codec "$CODEC" --video-pt "$VIDEO_PT" --audio-pt "$AUDIO_PT" \
        --video-port "$VIDEO_PORT" --video-rtcp-port "$VIDEO_RTCP_PORT" \
        --audio-port "$AUDIO_PORT" --audio-rtcp-port "$AUDIO_RTCP_PORT" \
        ${OUT_DIR:+--out-dir "$OUT_DIR"} "$@")
}

# The chains of WC_PRINTED whose line matches the extended regex $1, on one line. Fails when
# none does (an element renamed in src/media/ must not silently drop a branch).
wc_chains() {
    local out
    out=$(grep -v '^#' <<<"$WC_PRINTED" | grep -E "$1" | tr '\n' ' ' || true)
    [[ -n $out ]] || wc_die "whipcast print-pipelines printed no chain matching /$1/"
    echo "${out% }"
}

# The `#` lines of WC_PRINTED (what stands in for appsrc/appsink, what is left out).
wc_notes() {
    grep '^#' <<<"$WC_PRINTED" || true
}

# ---- muxer ----------------------------------------------------------------------------------

# whipcast links cmafmux statically (gst-plugin-fmp4 0.14.5); Debian has no cmafmux. Cargo
# also builds that crate as a cdylib GStreamer plugin (target/*/deps/libgstfmp4-HASH.so). A
# plugin file must be named libgstfmp4.so for GStreamer to find its entry point, so we
# symlink it into a private directory and put that on GST_PLUGIN_PATH.
# WHIPCAST_FMP4_SO overrides the .so.
wc_setup_mux() {
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
    gst-inspect-1.0 cmafmux >/dev/null 2>&1 ||
        wc_die "no cmafmux plugin for gst-launch-1.0: run cargo build --release (or set WHIPCAST_FMP4_SO)"
    # livesync (gst-plugin-livesync 0.14.5) is linked the same way and is not in Debian either.
    local ls_so
    ls_so=$(ls -t "$WC_ROOT"/target/release/deps/libgstlivesync-*.so \
        "$WC_ROOT"/target/debug/deps/libgstlivesync-*.so 2>/dev/null | head -n1 || true)
    if [[ -n $ls_so && -r $ls_so ]]; then
        local dir=${TMPDIR:-/tmp}/whipcast-gst-plugins-$(id -u)
        mkdir -p "$dir"
        ln -sfn "$ls_so" "$dir/libgstlivesync.so"
        [[ :${GST_PLUGIN_PATH:-}: == *:$dir:* ]] ||
            export GST_PLUGIN_PATH="$dir${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
    fi
    gst-inspect-1.0 livesync >/dev/null 2>&1 ||
        wc_die "no livesync plugin for gst-launch-1.0: run cargo build --release"
}

# ---- running --------------------------------------------------------------------------------

# wc_run DESCRIPTION: prints the notes and the command, then either execs gst-launch-1.0 (so
# the script's PID is the pipeline's, for benchmarks) or, with FEED=1, runs it in the
# background, feeds it DURATION seconds of test RTP with pipelines/feed.sh, then stops it
# with SIGINT (-e: EOS, so files are finalised). Receivers never end on their own: udpsrc
# does not see EOS.
wc_run() {
    local desc=$1
    if [[ -n $OUT_DIR ]]; then mkdir -p "$OUT_DIR"; fi
    wc_notes >&2
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
    WIDTH=${WIDTH:-$SRC_W} HEIGHT=${HEIGHT:-$SRC_H} FPS=${FPS:-30} \
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
