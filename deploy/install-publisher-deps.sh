#!/usr/bin/env bash
# Installs what the third-party publisher tests (tests/third_party_publishers.rs) need
# beyond deploy/install-deps.sh (which brings GStreamer's plugins, x264enc and ffmpeg):
#   - GStreamer's webrtcbin driven from Python: PyGObject, the GstWebRTC / GstSdp
#     introspection data and libnice's GStreamer plugin (webrtcbin's ICE agent), for
#     tests/publishers/webrtcbin_whip.py, run with Debian's /usr/bin/python3;
#   - aiortc (PyPI, pinned) in the test virtualenv target/test-venv, for
#     tests/publishers/aiortc_whip.py.
# Idempotent: apt only for missing packages, pip only when aiortc does not import.
#
# Run it after deploy/install-test-deps.sh: that script re-creates the virtualenv from
# scratch when moto_server is missing from it, which would drop aiortc again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PKGS=(
  python3 python3-venv
  # webrtcbin_whip.py: `gi.require_version("GstWebRTC", "1.0")` and friends
  python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-plugins-bad-1.0
  # nicesrc / nicesink and the NiceAgent webrtcbin creates; Nice-0.1 introspection data to
  # call nice_agent_add_local_address() on it (libnice skips loopback interfaces otherwise)
  gstreamer1.0-nice gir1.2-nice-0.1
)
bash deploy/apt-ensure.sh install-publisher-deps "${PKGS[@]}"

VENV="${WHIPCAST_TEST_VENV:-target/test-venv}"
# 1.16.0: ships py3 wheels and takes PyAV 18 (binary wheels for CPython 3.11, FFmpeg
# bundled), so nothing is compiled on a fresh machine.
AIORTC_VERSION="1.16.0"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import aiortc' >/dev/null 2>&1; then
  echo "install-publisher-deps: aiortc present ($VENV)"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  # The same virtualenv deploy/install-test-deps.sh makes: from Debian's python3.
  echo "install-publisher-deps: creating $VENV"
  rm -rf "$VENV"
  /usr/bin/python3 -m venv "$VENV"
fi
echo "install-publisher-deps: installing aiortc==$AIORTC_VERSION into $VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check --only-binary=:all: "aiortc==$AIORTC_VERSION"
"$VENV/bin/python" -c 'import aiortc' >/dev/null
echo "install-publisher-deps: aiortc ready"
