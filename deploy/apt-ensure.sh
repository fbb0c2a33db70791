#!/usr/bin/env bash
# apt-ensure.sh TAG PACKAGE... — installs the Debian packages among PACKAGE that are not
# installed yet (one `apt-get update` + `install` for all of them), and does nothing when all
# are there, so the project's install scripts stay fast on a machine that has everything.
# TAG prefixes the messages. Shared by deploy/install-*.sh.
set -euo pipefail

tag=$1
shift
missing=()
for p in "$@"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "$tag: all $# packages present"
  exit 0
fi

echo "$tag: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
