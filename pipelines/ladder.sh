#!/usr/bin/env bash
# The whole pipeline whipcast builds for one stream (src/media/graph.rs, as Pipeline::start
# builds it), printed by `whipcast print-pipelines` from the real builders: RTP from udpsrc on
# 127.0.0.1 instead of the WebRTC appsrcs, fakesink or filesink instead of the appsinks. For a
# 1280x720 H.264 + Opus source and the default pipelines/ladder.toml: 720p 2800k, 480p
# (854x480) 1200k, 360p (640x360) 600k, 234p (416x234) 145k, x264 superfast, High profile,
# 2 s cmafmux fragments of 200 ms chunks, AAC-LC 128k stereo.
# This is the baseline that benches/cpu.sh compares whipcast with.
#
#   FEED=1 DURATION=10 OUT_DIR=/tmp/ladder pipelines/ladder.sh    # self-test, keeps the MP4s
#   pipelines/ladder.sh                 # wait for RTP on VIDEO_PORT/AUDIO_PORT (Ctrl-C = EOS)
#   PRINT_ONLY=1 pipelines/ladder.sh    # print the gst-launch-1.0 line
#
# Env: SRC_W, SRC_H (the first frame's size; whipcast reads it from the decoder's caps),
# HINT (the declared capture height, `?height=`; default the ladder's plan_height), CODEC,
# VIDEO_PORT, VIDEO_RTCP_PORT, VIDEO_PT, AUDIO (1: Opus RTP on AUDIO_PORT | 0: silence),
# AUDIO_PORT, AUDIO_RTCP_PORT, AUDIO_PT, LADDER_FILE, SEGMENT_MS, PART_MS, OUT_DIR, FEED,
# DURATION, PRINT_ONLY, LAUNCH_FLAGS.
# The script execs gst-launch-1.0 (unless FEED=1), so its PID is the pipeline's.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
AUDIO=${AUDIO:-1}
if [[ $AUDIO == 1 ]]; then wc_print; else wc_print --no-audio; fi
[[ $PRINT_ONLY == 1 ]] || wc_setup_mux
wc_run "$(wc_chains .)"
