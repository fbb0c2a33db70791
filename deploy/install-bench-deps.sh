#!/usr/bin/env bash
# Installs what `make bench` needs beyond deploy/install-deps.sh (which brings nginx, curl,
# jq, ffmpeg and /usr/bin/time):
#   - wrk (Debian 12's 4.1.0): the HTTP load generator of benches/origin.sh.
# Idempotent: it only calls apt when a package is missing.
set -euo pipefail

PKGS=(wrk)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-bench-deps: all ${#PKGS[@]} packages present"
  exit 0
fi

echo "install-bench-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
