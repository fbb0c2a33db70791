#!/usr/bin/env bash
# Audio rendition (src/media/audio.rs audio), as `whipcast print-pipelines` prints it: Opus
# RTP from udpsrc on 127.0.0.1 → rtpjitterbuffer → rtpopusdepay → opusdec → audioconvert →
# audioresample → 48 kHz stereo → audiorate → avenc_aac → queue → cmafmux → sink, plus the
# jitter buffer's sender-report input. VARIANT=silence is what whipcast builds for a
# publisher without audio: a live audiotestsrc wave=silence instead of the RTP head (here
# bounded by DURATION).
#
#   FEED=1 DURATION=5 pipelines/audio.sh                  # Opus RTP from pipelines/feed.sh
#   VARIANT=silence DURATION=5 OUT_DIR=/tmp/a pipelines/audio.sh   # ends by itself
#
# Env: VARIANT (opus | silence), AUDIO_PORT, AUDIO_RTCP_PORT, AUDIO_PT, LADDER_FILE,
# SEGMENT_MS, PART_MS, OUT_DIR, DURATION, FEED, PRINT_ONLY.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
VARIANT=${VARIANT:-opus}
case $VARIANT in
    opus)
        wc_print
        desc=$(wc_chains '^udpsrc name=audio_')
        ;;
    silence)
        wc_print --no-audio
        desc=$(wc_chains '^audiotestsrc name=audio_silence ')
        # Bounded here (whipcast ends it with an EOS event): audiotestsrc makes 1024 samples
        # per buffer, at 48 kHz from the caps downstream.
        desc=${desc/audiotestsrc name=audio_silence /audiotestsrc name=audio_silence num-buffers=$(((DURATION * 48000 + 1023) / 1024)) }
        FEED=0
        ;;
    *) wc_die "VARIANT must be opus or silence" ;;
esac
[[ $PRINT_ONLY == 1 ]] || wc_setup_mux
wc_run "$desc"
