#!/usr/bin/env bash
# Installs what `make fuzz` needs beyond install-deps.sh (whose build-essential provides the
# C++ compiler that builds libFuzzer): cargo-fuzz, from crates.io, at a pinned version.
# Idempotent: does nothing when that version is installed.
#
# `make test`'s short fuzz run does not need it (tests/fuzz/run.sh smoke builds with plain
# cargo); cargo fuzz itself needs RUSTC_BOOTSTRAP=1 on the stable toolchain, which
# tests/fuzz/run.sh sets.
set -euo pipefail

CARGO=${CARGO:-cargo}
VERSION="0.13.2"

if $CARGO fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $VERSION"; then
  echo "install-fuzz-deps: cargo-fuzz $VERSION present"
  exit 0
fi
echo "install-fuzz-deps: installing cargo-fuzz $VERSION"
$CARGO install cargo-fuzz --locked --version "$VERSION"
$CARGO fuzz --version
