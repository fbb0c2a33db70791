#!/usr/bin/env bash
# Test RTP source for the other scripts: the media pipeline of the test publisher
# (tests/common/publisher.rs, pipeline_description) with its appsinks replaced by udpsinks to
# 127.0.0.1, and bounded by num-buffers so it ends by itself after DURATION seconds.
#
#   DURATION=10 WIDTH=1280 HEIGHT=720 FPS=30 CODEC=H264 pipelines/feed.sh
#
# Env: CODEC (H264 | VP8), WIDTH, HEIGHT, FPS, BITRATE_KBPS (1500 as the publisher's default),
# AUDIO (1 | 0), VIDEO_PORT, AUDIO_PORT, VIDEO_PT, AUDIO_PT, DURATION, PRINT_ONLY.
# Loopback only: the host is fixed to 127.0.0.1.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

WIDTH=${WIDTH:-1280}
HEIGHT=${HEIGHT:-720}
FPS=${FPS:-30}
BITRATE_KBPS=${BITRATE_KBPS:-1500}
AUDIO=${AUDIO:-1}

gop=$((FPS * 2))
vbufs=$((DURATION * FPS))
# audiotestsrc: 1024 samples per buffer at 48 kHz.
abufs=$(((DURATION * 48000 + 1023) / 1024))
source_desc="videotestsrc is-live=true pattern=smpte horizontal-speed=2 num-buffers=${vbufs}
 ! video/x-raw,format=I420,width=${WIDTH},height=${HEIGHT},framerate=${FPS}/1"
case $CODEC in
    H264)
        video="$source_desc ! x264enc name=venc tune=zerolatency speed-preset=ultrafast
 bitrate=${BITRATE_KBPS} key-int-max=${gop} bframes=0 ! video/x-h264,profile=constrained-baseline
 ! rtph264pay pt=${VIDEO_PT} mtu=1200 config-interval=-1 aggregate-mode=zero-latency"
        ;;
    VP8)
        video="$source_desc ! vp8enc name=venc deadline=1 cpu-used=8 lag-in-frames=0 end-usage=cbr
 keyframe-max-dist=${gop} target-bitrate=$((BITRATE_KBPS * 1000))
 ! rtpvp8pay pt=${VIDEO_PT} mtu=1200 picture-id-mode=15-bit"
        ;;
    *) wc_die "feed.sh: CODEC must be H264 or VP8 (got $CODEC)" ;;
esac
desc="$video ! udpsink name=vsink host=127.0.0.1 port=${VIDEO_PORT} sync=false"
if [[ $AUDIO == 1 ]]; then
    desc="$desc audiotestsrc is-live=true wave=sine freq=440 num-buffers=${abufs}
 ! audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=2 ! opusenc bitrate=64000
 ! rtpopuspay pt=${AUDIO_PT} mtu=1200 ! udpsink name=asink host=127.0.0.1 port=${AUDIO_PORT} sync=false"
fi
set -f
desc=$(echo $desc) # one line
echo "gst-launch-1.0 $desc" >&2
[[ $PRINT_ONLY == 1 ]] && exit 0
# shellcheck disable=SC2086
exec gst-launch-1.0 $desc
