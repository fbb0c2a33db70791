#!/usr/bin/env bash
# Runs a command in a fresh network namespace whose only interface is loopback.
#
# Every whipcast test talks to 127.0.0.1 only. Inside this namespace that is not a promise
# but a fact: a browser or any other WebRTC stack cannot gather, advertise or answer the
# machine's other addresses, because there are none (Chromium otherwise pairs loopback with
# the host's own interface address). Needs root (or CAP_SYS_ADMIN), as CI has.
set -euo pipefail
if [ $# -eq 0 ]; then
  echo "usage: $0 COMMAND [ARGS...]" >&2
  exit 2
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
exec $SUDO unshare --net -- bash -c 'ip link set lo up && exec "$@"' netns-run "$@"
