#!/usr/bin/env bash
# One ladder rung (src/media/bins.rs video_rung): queue → videoscale → I420 WxH (par 1/1) →
# x264enc (bitrate, bframes=0, key-int-max = fps × segment seconds, tune=zerolatency,
# speed-preset and profile from the ladder, option-string=scenecut=0) → profile caps →
# h264parse → cmafmux (fragment-duration = segment, send-force-keyunit=true) → sink.
#
#   RUNG=480p pipelines/rung.sh                          # raw test video in, ends by itself
#   RUNG=720p OUT_DIR=/tmp/rung pipelines/rung.sh        # keep the fragmented MP4
#   RUNG=360p INPUT=rtp FEED=1 pipelines/rung.sh         # behind the real video ingest
#
# Env: RUNG (a [[rungs]] name of LADDER_FILE; default the first that fits the source) or
# WIDTH/HEIGHT/BITRATE_KBPS to override it; SRC_W, SRC_H (source size, default 1280x720);
# INPUT (test: videotestsrc, bounded by DURATION | rtp: video-ingest.sh's chain on VIDEO_PORT);
# OUT_DIR, MUX, SEGMENT_MS, DURATION, FEED, PRINT_ONLY.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
wc_ladder_load
wc_setup_mux
SRC_W=${SRC_W:-1280}
SRC_H=${SRC_H:-720}
INPUT=${INPUT:-test}
plan=$(wc_ladder_plan "$SRC_W" "$SRC_H")
if [[ -n ${RUNG:-} ]]; then
    line=$(awk -v n="$RUNG" '$1 == n' <<<"$plan")
    [[ -n $line ]] || wc_die "rung $RUNG is not produced for a ${SRC_W}x${SRC_H} source; planned: $(awk '{printf "%s ", $1}' <<<"$plan")"
else
    line=$(head -n1 <<<"$plan")
fi
read -r name w h kbps <<<"$line"
w=${WIDTH:-$w}
h=${HEIGHT:-$h}
kbps=${BITRATE_KBPS:-$kbps}
case $INPUT in
    test)
        head="videotestsrc is-live=true pattern=smpte horizontal-speed=2 num-buffers=$((DURATION * LADDER_FPS))
 ! video/x-raw,format=I420,width=${SRC_W},height=${SRC_H},framerate=${LADDER_FPS}/1
 ! tee name=video_tee allow-not-linked=true"
        FEED=0
        ;;
    rtp) head=$(wc_video_ingest "$LADDER_FPS") ;;
    *) wc_die "INPUT must be test or rtp" ;;
esac
desc="$head video_tee. ! $(wc_video_rung "$name" "$w" "$h" "$kbps" "$LADDER_FPS" "$LADDER_PRESET" "$LADDER_PROFILE")"
set -f
wc_run "$(echo $desc)"
