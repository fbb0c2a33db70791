# whipcast — two commands: `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: run test deps build bench fmt lint

deps:
	@bash deploy/install-deps.sh

build: deps
	$(CARGO) build --release --locked

## Install what is missing, build, and start whipcast on 127.0.0.1:8080 (embedded config).
run: build
	./target/release/whipcast $(ARGS)

## Install what is missing, then run every test (unit, integration, end to end).
test: deps lint
	$(CARGO) test --locked --all-targets -- --test-threads=1

## CPU/RSS benchmark against bare gst-launch-1.0 (see BENCHMARKS.md).
bench: build
	bash benches/cpu.sh

fmt:
	$(CARGO) fmt --all

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
