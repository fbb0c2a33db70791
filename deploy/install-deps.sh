#!/usr/bin/env bash
# Installs the Debian 12 packages whipcast needs to build, run and test.
# Idempotent: it only calls apt when a package is missing, so `make run` / `make test`
# stay fast on a machine that already has everything.
set -euo pipefail

PKGS=(
  # build
  pkg-config build-essential libglib2.0-dev
  # (libgstreamer1.0-dev also brings libgstcheck, which the bin tests' Harness links)
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  # runtime elements: rtp/jitterbuffer/depay (good), x264enc (ugly),
  # avdec_h264/avenc_aac (libav), h264parse/opusparse (bad), vp8dec/vp9dec (good)
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  gstreamer1.0-plugins-base-apps
  # tests and benchmarks: ffprobe decodes what we serve, /usr/bin/time measures CPU and RSS
  ffmpeg time curl ca-certificates openssl jq
  # tests run in a loopback-only network namespace (deploy/netns-run.sh); tests/timeline.rs
  # drops packets there with nftables (`nft`: this kernel has nf_tables but no sch_netem)
  iproute2 util-linux nftables
  # tests/cdn_shield.rs runs deploy/nginx/whipcast-shield.conf (Debian 12's `nginx` 1.22 has
  # the proxy cache module built in; nginx-light is only that plus the echo module)
  nginx
)

bash "$(dirname "${BASH_SOURCE[0]}")/apt-ensure.sh" install-deps "${PKGS[@]}"
