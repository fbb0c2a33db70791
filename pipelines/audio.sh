#!/usr/bin/env bash
# Audio rendition (src/media/bins.rs audio): Opus RTP from udpsrc on 127.0.0.1 → rtpjitterbuffer
# → rtpopusdepay → opusdec plc=true → audioconvert → audioresample → 48 kHz stereo → audiorate →
# avenc_aac (ladder [audio] bitrate) → queue → cmafmux → sink. VARIANT=silence is what whipcast
# builds for a publisher without audio: a live audiotestsrc wave=silence instead of the RTP head.
#
#   FEED=1 DURATION=5 pipelines/audio.sh                  # Opus RTP from pipelines/feed.sh
#   VARIANT=silence DURATION=5 OUT_DIR=/tmp/a pipelines/audio.sh   # ends by itself
#
# Env: VARIANT (opus | silence), AUDIO_PORT, AUDIO_PT, LADDER_FILE, OUT_DIR, MUX, SEGMENT_MS,
# DURATION, FEED, PRINT_ONLY.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
wc_ladder_load
wc_setup_mux
VARIANT=${VARIANT:-opus}
case $VARIANT in
    opus) desc=$(wc_audio_opus "$LADDER_AUDIO_KBPS") ;;
    silence)
        # audiotestsrc: 1024 samples per buffer; it negotiates 48 kHz with the caps downstream.
        desc=$(wc_audio_silence "$LADDER_AUDIO_KBPS" $(((DURATION * 48000 + 1023) / 1024)))
        FEED=0
        ;;
    *) wc_die "VARIANT must be opus or silence" ;;
esac
wc_run "$desc"
