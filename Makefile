# Airlock: the two commands a stranger needs are `make up` and `make test` (see README.md).
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: help images images-probe images-agents test test-unit test-e2e ci fmt-check clippy doc fuzz-build deny up down down-volumes

help:
	@echo "make up        build the images offline, start the compose stack (certs, DinD, controller), smoke-test one sandbox"
	@echo "make down      stop the stack (keeps its volumes: data, certificates, node images)"
	@echo "make down-volumes  stop the stack and wipe its volumes"
	@echo "make test      every test: unit, in-process and e2e against a real DinD over mTLS"
	@echo "make images    build every image offline (dind testbox egress probe init controller agent; skips unchanged ones)"
	@echo "make images-agents  build just the agent image (airlock/agent:dev: Claude Code and Codex on Debian)"
	@echo "make ci        fmt, clippy, docs, fuzz build, then make test"

images:
	images/build.sh

# Just the isolation self-test image (airlock/probe:dev).
images-probe:
	images/build.sh probe

# Just the agent image (airlock/agent:dev); its npm step needs the npm registry (see images/agent).
images-agents:
	images/build.sh agent

# Unit and in-process tests need no Docker; the e2e crate needs the images and a daemon.
test-unit:
	$(CARGO) test --workspace --exclude e2e

test-e2e: images
	$(CARGO) test -p e2e -- --nocapture

test: images
	$(CARGO) test --workspace --exclude e2e
	$(CARGO) test -p e2e -- --nocapture

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

fuzz-build:
	scripts/fuzz-build.sh

deny:
	@if command -v cargo-deny >/dev/null; then cargo deny check; else echo "cargo-deny not installed; skipped"; fi

ci: fmt-check clippy doc fuzz-build deny test

# images/build.sh runs inside scripts/up.sh (AIRLOCK_SKIP_IMAGES=1 skips it).
up:
	scripts/up.sh

down:
	scripts/down.sh

down-volumes:
	AIRLOCK_DOWN_VOLUMES=1 scripts/down.sh
