#!/usr/bin/env bash
# The whole pipeline whipcast builds for one stream (src/media/pipeline.rs Pipeline::start),
# with RTP from udpsrc on 127.0.0.1 instead of the WebRTC appsrcs. For a 1280x720 H.264 + Opus
# source and the default pipelines/ladder.toml: 720p 2800k, 480p (854x480) 1200k, 360p
# (640x360) 600k, 234p (416x234) 145k, x264 superfast, High profile, 2 s cmafmux fragments,
# AAC-LC 128k stereo.
# This is the baseline that benches/cpu.sh compares whipcast with.
#
#   FEED=1 DURATION=10 OUT_DIR=/tmp/ladder pipelines/ladder.sh    # self-test, keeps the MP4s
#   pipelines/ladder.sh                 # wait for RTP on VIDEO_PORT/AUDIO_PORT (Ctrl-C = EOS)
#   PRINT_ONLY=1 pipelines/ladder.sh    # print the gst-launch-1.0 line
#
# Env: SRC_W, SRC_H (the first frame's size; whipcast reads it from the decoder's caps),
# HINT (the declared capture height, `?height=`; default the ladder's plan_height), CODEC,
# VIDEO_PORT, VIDEO_PT, AUDIO (1: Opus RTP on AUDIO_PORT | 0: silence),
# AUDIO_PORT, AUDIO_PT, LADDER_FILE, SEGMENT_MS, OUT_DIR, MUX, FEED, DURATION, PRINT_ONLY.
# The script execs gst-launch-1.0 (unless FEED=1), so its PID is the pipeline's.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
wc_ladder_load
wc_setup_mux
SRC_W=${SRC_W:-1280}
SRC_H=${SRC_H:-720}
AUDIO=${AUDIO:-1}
desc=$(wc_video_ingest "$LADDER_FPS")
while read -r name w h kbps; do
    echo "rung $name ${w}x${h} ${kbps}k ($LADDER_PRESET, $LADDER_PROFILE, $MUX_KIND)" >&2
    desc="$desc video_tee. ! $(wc_video_rung "$name" "$w" "$h" "$kbps" "$LADDER_FPS" "$LADDER_PRESET" "$LADDER_PROFILE")"
done < <(wc_ladder_plan "$SRC_W" "$SRC_H" "${HINT:-}")
if [[ $AUDIO == 1 ]]; then
    desc="$desc $(wc_audio_opus "$LADDER_AUDIO_KBPS")"
else
    desc="$desc $(wc_audio_silence "$LADDER_AUDIO_KBPS")"
fi
wc_run "$desc"
