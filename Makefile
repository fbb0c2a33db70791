# whipcast — two commands: `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: run test deps browser-deps test-deps build bench fmt lint bench-latency

deps:
	@bash deploy/install-deps.sh

browser-deps: deps
	@bash deploy/install-browser-deps.sh

## The S3-compatible server the object-storage tests start (moto, from PyPI, in target/).
test-deps: deps
	@bash deploy/install-test-deps.sh

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

## CPU/RSS benchmark against bare gst-launch-1.0 (see BENCHMARKS.md).
bench: build
	bash benches/cpu.sh

fmt:
	$(CARGO) fmt --all

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

## Latency: server lag, publish → first playable, glass-to-glass through hls.js in headless
## Chromium; default ladder and passthrough (BENCHMARKS.md "Latency").
bench-latency: build browser-deps
	bash benches/latency.sh
