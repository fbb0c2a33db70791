#!/usr/bin/env bash
# RUSTC_WRAPPER of the short fuzz run (tests/fuzz/run.sh smoke): compiles the crates under
# test with libFuzzer's coverage instrumentation (the SanitizerCoverage flags `cargo fuzz`
# gives every crate) and every other crate exactly as `cargo test` did, so their artifacts
# in target/debug are reused instead of rebuilt.
set -euo pipefail
rustc=$1
shift
name=""
prev=""
for a in "$@"; do
  if [ "$prev" = "--crate-name" ]; then name=$a; break; fi
  prev=$a
done
case "$name" in
  whipcast | rtc_sdp | rtc_ice)
    exec "$rustc" "$@" \
      -Cpasses=sancov-module \
      -Cllvm-args=-sanitizer-coverage-level=4 \
      -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
      -Cllvm-args=-sanitizer-coverage-pc-table \
      -Cllvm-args=-sanitizer-coverage-trace-compares \
      -Cllvm-args=-sanitizer-coverage-stack-depth \
      --cfg fuzzing
    ;;
esac
exec "$rustc" "$@"
