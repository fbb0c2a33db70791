# whipcast — two commands: `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
# Incremental state is ~1.4 GB for a cold build and buys a one-shot CI run nothing; set
# CARGO_INCREMENTAL=1 in your shell to keep it while iterating.
CARGO_INCREMENTAL ?= 0
export CARGO_INCREMENTAL

.PHONY: run test deps browser-deps test-deps build bench fmt lint bench-latency bench-origin \
	bench-cluster bench-density bench-profile fuzz fuzz-deps fuzz-smoke

deps:
	@bash deploy/install-deps.sh

browser-deps: deps
	@bash deploy/install-browser-deps.sh

## The S3-compatible server the object-storage tests start (moto, from PyPI, in target/),
## then the third-party publishers (GStreamer webrtcbin from Python, aiortc in the same venv).
test-deps: deps
	@bash deploy/install-test-deps.sh
	@bash deploy/install-publisher-deps.sh

build: deps
	$(CARGO) build --release --locked

## Install what is missing, build, and start whipcast on 127.0.0.1:8080 (embedded config).
run: build
	./target/release/whipcast $(ARGS)

## Install what is missing, then run every test (unit, integration, end to end), with a
## short fuzz run (fuzz-smoke) between the build and the tests.
## Tests run in a network namespace that has only loopback (deploy/netns-run.sh).
test: deps browser-deps test-deps lint
	$(CARGO) test --locked --all-targets --no-run
	bash tests/fuzz/run.sh smoke $(FUZZ_SMOKE_SECONDS)
	bash deploy/netns-run.sh $(CARGO) test --locked --offline --all-targets -- --test-threads=1

## Fuzzing (tests/fuzz): libFuzzer targets over every parser that reads network input —
## offer, sdpfrag, ws_message, hls_request, fmp4, ts_remux. Any finding fails the run.
FUZZ_SECONDS ?= 600
FUZZ_SMOKE_SECONDS ?= 15

fuzz-deps: deps
	@bash deploy/install-fuzz-deps.sh

## Long run: `cargo fuzz run`, FUZZ_SECONDS per target (release, debug assertions,
## AddressSanitizer; nice 19). Corpora grow in tests/fuzz/corpus/ (not committed).
fuzz: fuzz-deps
	bash tests/fuzz/run.sh long $(FUZZ_SECONDS)

## Short run, part of `make test`: FUZZ_SMOKE_SECONDS (15) per target from the committed
## seeds, right after the `cargo test` build; a finding fails `make test`. Not through
## `cargo fuzz`: that instruments and rebuilds all ~470 crates of whipcast's graph in a
## target directory of its own (release, ASan, one codegen unit per crate) — about 19 min
## of build on this 2-core machine, plus 2.5 min to install cargo-fuzz. Instead the same
## fuzz crate and targets are built by plain cargo, in the dev profile, into target/, so
## every dependency `cargo test` just compiled is reused. Compiled anew: whipcast and the
## stack's SDP and ICE candidate parsers (rtc-sdp, rtc-ice), at opt-level 1 and with
## libFuzzer's coverage flags (tests/fuzz/rustc-coverage.sh, which leaves every other
## crate as `cargo test` built it); libFuzzer itself; and the ring → rustls → rtc chain,
## whose build scripts share the `cc` that libfuzzer-sys builds with one more feature.
## Measured (BENCHMARKS.md "Fuzzing"): 1 min 30 s of build + 6 × 16 s of fuzzing = 3 min 7 s.
## No sanitizer: the code under test has no `unsafe` (whipcast forbids it).
fuzz-smoke: deps
	$(CARGO) test --locked --all-targets --no-run
	bash tests/fuzz/run.sh smoke $(FUZZ_SMOKE_SECONDS)

## The origin benchmark (bench-origin), then CPU/RSS against bare gst-launch-1.0 (BENCHMARKS.md).
bench: build bench-origin bench-cluster
	bash benches/cpu.sh

## Cluster: Redis commands per node and per stream, and an LL-HLS part through a node that
## does not own the stream vs from its owner (BENCHMARKS.md "Cluster").
bench-cluster: build test-deps
	@bash deploy/install-bench-deps.sh
	bash deploy/netns-run.sh bash benches/cluster.sh

## Origin: req/s for playlists, parts and segments vs nginx (wrk), and the memory of 10 000
## parked LL-HLS blocking requests (BENCHMARKS.md "Origin throughput and parked requests").
bench-origin: build
	@bash deploy/install-bench-deps.sh
	bash benches/origin.sh

fmt:
	$(CARGO) fmt --all

## The second clippy run lints the library and the binary as `make run` builds them: with
## the dependencies' features of a normal build, not those the tests' dev-dependencies add
## (reqwest's `json`, for one), so code that compiles only under `cargo test` fails here.
lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) clippy --locked --lib --bins -- -D warnings

## Latency: server lag, publish → first playable, glass-to-glass through a stock hls.js and
## the bundled page in headless Chromium; default ladder and passthrough (BENCHMARKS.md
## "Latency", "Latency in a stock hls.js").
bench-latency: build browser-deps
	bash benches/latency.sh

## Density: how many concurrent 720p30 publishers (one publisher process, one encode fanned
## out to N WebRTC peers) whipcast sustains with the default ladder, passthrough-only and
## three simulcast layers as rungs, against N bare gst-launch-1.0 pipelines (BENCHMARKS.md
## "Density"). Not part of `make bench`: a default run steps N up for 60 s per step and
## side, about 60-80 min.
bench-density: build
	bash deploy/netns-run.sh bash benches/density.sh

## Profile: where whipcast's CPU goes with PROFILE_STREAMS (24) passthrough publishers, by
## thread kind and, with perf, by shared object and symbol (BENCHMARKS.md "Where a
## passthrough stream's CPU goes").
bench-profile: build
	@bash deploy/install-bench-deps.sh
	bash deploy/netns-run.sh bash benches/profile.sh
