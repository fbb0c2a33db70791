#!/usr/bin/env bash
# Video ingest (src/media/bins.rs video_ingest): RTP from udpsrc on 127.0.0.1 → rtpjitterbuffer
# → depayloader → decoder → videoconvert → videorate → I420 @ ladder fps → tee. whipcast feeds
# an appsrc from the WebRTC track instead of udpsrc; everything after it is the same. Here the
# tee feeds one fpsdisplaysink (prints the decoded frame rate with -v) instead of the rungs.
#
#   FEED=1 DURATION=5 pipelines/video-ingest.sh          # self-test with pipelines/feed.sh
#   CODEC=VP8 FEED=1 pipelines/video-ingest.sh
#   VIDEO_PORT=5004 pipelines/video-ingest.sh            # wait for RTP from elsewhere (Ctrl-C)
#
# Env: CODEC (H264 | VP8 | VP9), VIDEO_PORT, VIDEO_PT, LADDER_FILE (for fps), FEED, DURATION,
# SINK (default: fpsdisplaysink on a fakesink), LAUNCH_FLAGS (default -v), PRINT_ONLY.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
wc_ladder_load
LAUNCH_FLAGS=${LAUNCH_FLAGS:--v} # -v: fpsdisplaysink reports "rendered: N, dropped: 0, current: 30.00"
SINK=${SINK:-fpsdisplaysink name=video_fps video-sink=fakesink text-overlay=false sync=false}
desc="$(wc_video_ingest "$LADDER_FPS") video_tee. ! ${QUEUE} name=view_queue ! ${SINK}"
wc_run "$desc"
