#!/usr/bin/env bash
# Installs the servers the tests start beyond install-deps.sh: `redis-server` (Debian) for
# the cluster tests (tests/cluster.rs), and a real S3-compatible server for the
# object-storage test (tests/s3_upload.rs), `moto` in server mode (PyPI), in a virtualenv
# under target/test-venv. Idempotent: does nothing when both are there.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/apt-ensure.sh install-test-deps redis-server

VENV="${WHIPCAST_TEST_VENV:-target/test-venv}"
MOTO_VERSION="5.1.22"

if [ -x "$VENV/bin/moto_server" ]; then
  echo "install-test-deps: moto_server present ($VENV)"
  exit 0
fi

PY=/usr/bin/python3
if ! "$PY" -m venv --help >/dev/null 2>&1 || ! "$PY" -c 'import ensurepip' >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends python3 python3-venv
fi

echo "install-test-deps: creating $VENV with moto[server]==$MOTO_VERSION"
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
"$VENV/bin/moto_server" --help >/dev/null
echo "install-test-deps: moto_server ready"
