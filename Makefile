# pullguard's developer workflow. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
UNIT_PKGS = $(shell $(GO) list ./... | grep -v /integration)
# Fuzz smoke: every fuzz target runs this long in `make test`.
FUZZTIME ?= 10s
# Where `make demo` keeps its environment.
DEMO_DIR ?= /tmp/pullguard-demo

.PHONY: all build test test-unit test-fuzz test-integration test-env bench lint demo clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/pullguard ./cmd/pullguard

## test: unit tests (with the race detector), a fuzz smoke run, and the
## end-to-end tests against real containerd, dockerd, a registry and journald.
test: test-env test-unit test-fuzz test-integration

# As root, install the runtimes the end-to-end tests drive (a no-op once
# installed). Without root the end-to-end tests say why they skip.
test-env:
	@if [ "$$(id -u)" = 0 ]; then integration/testenv.sh install; \
	else echo "not root: end-to-end tests will skip (run: sudo make test)"; fi

test-unit:
	$(GO) test -race -count=1 $(UNIT_PKGS)

test-fuzz:
	@set -e; for pkg in $(UNIT_PKGS); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

test-integration:
	$(GO) test -count=1 -timeout 15m -v ./integration/ 2>&1 | tee /tmp/pullguard-integration.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|SKIP|panic)|integration:' ; exit $${PIPESTATUS[0]}

## bench: the performance figures quoted in the README.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 200000x -count 5 ./policy/ | tee /tmp/pullguard-bench-policy.txt

## lint: formatting, vet and staticcheck (pinned).
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	@if command -v shellcheck >/dev/null; then shellcheck integration/*.sh .ci/run; fi

## demo: bring up the environment, run pullguard in enforce mode, pull an
## allowed and a disallowed image, and show what happened.
demo: build
	integration/demo.sh $(DEMO_DIR)

clean:
	rm -rf bin dist
