#!/usr/bin/env bash
# Runs every fuzz target of tests/fuzz in turn (one at a time: each uses one core). Any
# finding stops the run with a non-zero exit: a failed property or a crash (a panic), an
# input slower than 10 s, or more than 2 GiB of memory. The input is kept in the
# artifacts directory printed, with the command that replays it.
#
#   tests/fuzz/run.sh long [SECONDS]    `make fuzz`: `cargo fuzz run` (release, debug
#                                       assertions, AddressSanitizer), SECONDS per target
#                                       (default 600), at nice 19; corpora grow in
#                                       tests/fuzz/corpus/<target>, findings go to
#                                       tests/fuzz/artifacts/<target>/.
#   tests/fuzz/run.sh smoke [SECONDS]   the short run of `make test` (default 15 s per
#                                       target): see the Makefile for why it is built
#                                       without cargo fuzz. Corpora and findings under
#                                       target/fuzz-smoke/.
#
# FUZZ_TARGETS="offer sdpfrag" limits the run to those targets; FUZZ_RUNS=N stops each
# target after N executions (or SECONDS, whichever comes first).
set -euo pipefail
cd "$(dirname "$0")/../.."

mode=${1:-}
CARGO=${CARGO:-cargo}
TARGETS=(${FUZZ_TARGETS:-offer sdpfrag ws_message hls_request fmp4 ts_remux})

# Largest input per target. The server admits larger requests (128 KiB offers and PATCH
# bodies, 256 KiB WebSocket frames), but libFuzzer explores small inputs much faster, and
# the heap properties are per-byte bounds, so they hold at any size. The fMP4 seeds are
# real segments of 6-19 KiB.
max_len() {
  case $1 in
    offer | ws_message) echo 16384 ;;
    sdpfrag) echo 8192 ;;
    hls_request) echo 512 ;;
    fmp4 | ts_remux) echo 32768 ;;
    *) echo 4096 ;;
  esac
}

# One line per target from libFuzzer's final statistics and the CPU time /usr/bin/time
# measured (the machine may be shared: exec/s is per wall-clock second, the CPU figure
# says how much of a core the target had).
summary() { # target log corpus_dir
  local execs rate rss secs cpu
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$2" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$2" | tail -1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$2" | tail -1)
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$2" | tail -1)
  cpu=$(awk '/^cpu_seconds/ {printf "%.0f", $2 + $3}' "$2.cpu" 2>/dev/null)
  printf 'fuzz %-12s %6s s %10s execs %7s exec/s  %6s CPU-s  corpus %5s files  peak RSS %s MB  0 crashes\n' \
    "$1" "${secs:-?}" "${execs:-?}" "${rate:-?}" "${cpu:-?}" "$(find "$3" -type f | wc -l)" "${rss:-?}"
}

# /usr/bin/time (Debian's `time`, from install-deps.sh) when present: CPU seconds to $1.
cpu_time() { # file command...
  local out=$1
  shift
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f 'cpu_seconds %U %S' -o "$out" "$@"
  else
    "$@"
  fi
}

fail() { # target log artifacts replay
  echo "fuzz $1: FINDING (see above and $2); the input is in $3" >&2
  echo "  replay: $4 $3<file>" >&2
  exit 1
}

case "$mode" in
  long)
    secs=${2:-600}
    # cargo fuzz passes -Z flags to rustc (-Zsanitizer=address); the only toolchain here
    # is stable, which accepts them with RUSTC_BOOTSTRAP=1.
    export RUSTC_BOOTSTRAP=1
    $CARGO fuzz build --fuzz-dir tests/fuzz
    for t in "${TARGETS[@]}"; do
      corpus=tests/fuzz/corpus/$t
      art=tests/fuzz/artifacts/$t/
      log=tests/fuzz/artifacts/$t.log
      mkdir -p "$corpus" "$art"
      echo "fuzz $t: $secs s (cargo fuzz, ASan), log $log"
      if ! cpu_time "$log.cpu" nice -n "${FUZZ_NICE:-19}" $CARGO fuzz run --fuzz-dir tests/fuzz "$t" "$corpus" \
        "tests/fuzz/seeds/$t" -- -max_total_time="$secs" ${FUZZ_RUNS:+-runs=$FUZZ_RUNS} -max_len="$(max_len "$t")" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$art" \
        >"$log" 2>&1; then
        tail -40 "$log" >&2
        fail "$t" "$log" "$art" "RUSTC_BOOTSTRAP=1 $CARGO fuzz run --fuzz-dir tests/fuzz $t"
      fi
      summary "$t" "$log" "$corpus"
    done
    ;;
  smoke)
    secs=${2:-15}
    target_dir=${CARGO_TARGET_DIR:-target}
    out=$target_dir/fuzz-smoke
    # Built into the main target directory in the dev profile, right after `cargo test`:
    # every dependency is reused from that build; only the code under test is compiled
    # anew, with libFuzzer's coverage instrumentation (tests/fuzz/rustc-coverage.sh).
    RUSTC_WRAPPER="$PWD/tests/fuzz/rustc-coverage.sh" $CARGO build --locked \
      --manifest-path tests/fuzz/Cargo.toml --target-dir "$target_dir" --bins
    for t in "${TARGETS[@]}"; do
      corpus=$out/corpus/$t
      art=$out/artifacts/$t/
      log=$out/$t.log
      mkdir -p "$corpus" "$art"
      if ! cpu_time "$log.cpu" "$target_dir/debug/$t" "$corpus" "tests/fuzz/seeds/$t" -max_total_time="$secs" ${FUZZ_RUNS:+-runs=$FUZZ_RUNS} \
        -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$art" >"$log" 2>&1; then
        tail -40 "$log" >&2
        fail "$t" "$log" "$art" "$target_dir/debug/$t"
      fi
      # A build that missed the instrumentation would only replay the seeds.
      if ! grep -q "inline 8-bit counters" "$log"; then
        echo "fuzz $t: the binary has no coverage instrumentation ($log)" >&2
        exit 1
      fi
      summary "$t" "$log" "$corpus"
    done
    ;;
  *)
    echo "usage: $0 long|smoke [SECONDS]" >&2
    exit 2
    ;;
esac
