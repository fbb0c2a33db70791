#!/usr/bin/env bash
# Video ingest (src/media/ingest.rs video_ingest), as `whipcast print-pipelines` prints it:
# RTP from udpsrc on 127.0.0.1 → rtpjitterbuffer → depayloader → decoder → videoconvert →
# videorate → I420 @ ladder fps → tee, plus the sender-report input of the jitter buffer.
# whipcast feeds appsrcs from the WebRTC track instead of udpsrc; everything after them is the
# same. Here the tee feeds one fpsdisplaysink (this script's, prints the decoded frame rate
# with -v) instead of the rungs.
#
#   FEED=1 DURATION=5 pipelines/video-ingest.sh          # self-test with pipelines/feed.sh
#   CODEC=VP8 FEED=1 pipelines/video-ingest.sh
#   VIDEO_PORT=5004 pipelines/video-ingest.sh            # wait for RTP from elsewhere (Ctrl-C)
#
# Env: CODEC (H264 | VP8 | VP9), VIDEO_PORT, VIDEO_RTCP_PORT, VIDEO_PT, LADDER_FILE, FEED,
# DURATION, SINK (default: fpsdisplaysink on a fakesink), LAUNCH_FLAGS (default -v),
# PRINT_ONLY.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
LAUNCH_FLAGS=${LAUNCH_FLAGS:--v} # -v: fpsdisplaysink reports "rendered: N, dropped: 0, current: 30.00"
SINK=${SINK:-fpsdisplaysink name=video_fps video-sink=fakesink text-overlay=false sync=false}
wc_print
# The video sources and, when the passthrough rung is on, the tee branch to the decoder.
desc="$(wc_chains '^udpsrc name=video_|^h264_tee\. ! queue name=video_decode_queue ')"
[[ $desc == *"tee name=video_tee"* ]] || wc_die "this ladder decodes nothing (passthrough only)"
wc_run "$desc video_tee. ! queue name=view_queue ! ${SINK}"
