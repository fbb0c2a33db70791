# whipcast — two commands: `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
# Incremental state is ~1.4 GB for a cold build and buys a one-shot CI run nothing; set
# CARGO_INCREMENTAL=1 in your shell to keep it while iterating.
CARGO_INCREMENTAL ?= 0
export CARGO_INCREMENTAL

.PHONY: run test deps browser-deps test-deps build bench fmt lint bench-latency bench-origin

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

## Install what is missing, then run every test (unit, integration, end to end).
## Tests run in a network namespace that has only loopback (deploy/netns-run.sh).
test: deps browser-deps test-deps lint
	$(CARGO) test --locked --all-targets --no-run
	bash deploy/netns-run.sh $(CARGO) test --locked --offline --all-targets -- --test-threads=1

## The origin benchmark (bench-origin), then CPU/RSS against bare gst-launch-1.0 (BENCHMARKS.md).
bench: build bench-origin
	bash benches/cpu.sh

## Origin: req/s for playlists, parts and segments vs nginx (wrk), and the memory of 10 000
## parked LL-HLS blocking requests (BENCHMARKS.md "Origin throughput and parked requests").
bench-origin: build
	@bash deploy/install-bench-deps.sh
	bash benches/origin.sh

fmt:
	$(CARGO) fmt --all

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

## Latency: server lag, publish → first playable, glass-to-glass through hls.js in headless
## Chromium; default ladder and passthrough (BENCHMARKS.md "Latency").
bench-latency: build browser-deps
	bash benches/latency.sh
