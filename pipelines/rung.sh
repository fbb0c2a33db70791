#!/usr/bin/env bash
# One ladder rung (src/media/rung.rs video_rung), as `whipcast print-pipelines` prints it:
# queue → videoscale → I420 WxH (par 1/1) → x264enc → profile caps → h264parse → cmafmux →
# fakesink or filesink (whipcast: appsink).
#
#   RUNG=480p pipelines/rung.sh                          # raw test video in, ends by itself
#   RUNG=720p OUT_DIR=/tmp/rung pipelines/rung.sh        # keep the fragmented MP4
#   RUNG=360p INPUT=rtp FEED=1 pipelines/rung.sh         # behind the real video ingest
#
# Env: RUNG (a rung planned for the source; default the first), SRC_W, SRC_H (source size,
# default 1280x720), HINT; INPUT (test: this script's videotestsrc at the source size and the
# ladder's frame rate, bounded by DURATION, into whipcast's tee | rtp: whipcast's video
# ingest on VIDEO_PORT); LADDER_FILE, SEGMENT_MS, PART_MS, OUT_DIR, DURATION, FEED,
# PRINT_ONLY.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
INPUT=${INPUT:-test}
plan=$(wc_ladder_plan)
RUNG=${RUNG:-$(awk 'NR == 1 {print $1}' <<<"$plan")}
awk -v n="$RUNG" '$1 == n {found = 1} END {exit !found}' <<<"$plan" ||
    wc_die "rung $RUNG is not planned for a ${SRC_W}x${SRC_H} source; planned: $(awk '{printf "%s ", $1}' <<<"$plan")"
wc_print
ingest=$(wc_chains '^udpsrc name=video_|^h264_tee\. ! queue name=video_decode_queue ')
rung=$(wc_chains "^video_tee\\. ! queue name=${RUNG}_queue ")
case $INPUT in
    test)
        # Whipcast's tee (the last element of its ingest chain), fed raw test video at the
        # ladder's frame rate (from whipcast's videorate caps) instead of decoded RTP.
        fps=$(grep -o 'video/x-raw,format=I420,framerate=[0-9]*/1' <<<"$ingest" | head -n1 | sed 's/.*=\([0-9]*\)\/1/\1/')
        [[ -n $fps ]] || wc_die "no frame rate in whipcast's ingest chain"
        tee=$(grep -oE 'tee name=video_tee( [a-z-]+=[^ ]+)*' <<<"$ingest")
        head="videotestsrc is-live=true pattern=smpte horizontal-speed=2 num-buffers=$((DURATION * fps))
 ! video/x-raw,format=I420,width=${SRC_W},height=${SRC_H},framerate=${fps}/1 ! $tee"
        FEED=0
        ;;
    rtp) head=$ingest ;;
    *) wc_die "INPUT must be test or rtp" ;;
esac
[[ $PRINT_ONLY == 1 ]] || wc_setup_mux
set -f
# shellcheck disable=SC2086 # one line
wc_run "$(echo $head $rung)"
