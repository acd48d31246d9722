# pullguard's developer workflow. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
UNIT_PKGS = $(shell $(GO) list ./... | grep -v /integration)
# Fuzz smoke: every fuzz target runs this many inputs in `make test`. A
# count, not a duration: when a duration runs out while a worker is mid-input,
# Go's fuzzing coordinator can report a bare "context deadline exceeded" as a
# failure though nothing was found (golang/go#75804); a count has no deadline.
FUZZTIME ?= 50000x
# Where `make demo` keeps its environment.
DEMO_DIR ?= /tmp/pullguard-demo

# Package version: v1.2.3 tags give 1.2.3; see packaging/version.sh.
PKG_VERSION ?= $(shell packaging/version.sh)
PKG_ARCHES ?= amd64 arm64
# The container image: its name, and the tarball `make image` writes.
IMAGE ?= pullguard/pullguard:$(subst +,-,$(VERSION))
IMAGE_TAR ?= dist/pullguard-image.tar

.PHONY: all build image manifests man test test-unit test-fuzz test-integration test-env test-packaging bench lint demo package clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/pullguard ./cmd/pullguard

## image: the container image (the static binary and CA certificates, from
## scratch) as a tarball for `docker load` or `ctr image import`. No
## container engine and no base image needed.
image: build
	$(GO) run ./deploy/image -binary bin/pullguard -tag $(IMAGE) -version $(VERSION) -o $(IMAGE_TAR)

## manifests: deploy/kubernetes/pullguard.yaml, rendered from the Helm chart
## (needs helm: the test environment's, or PULLGUARD_HELM).
manifests:
	$(GO) test -count=1 -run '^TestManifestIsTheRenderedChart$$' ./deploy/ -update

## test: unit tests (with the race detector), a fuzz smoke run, and the
## end-to-end tests against real containerd, dockerd, a registry and journald.
test: test-env test-unit test-fuzz test-integration test-packaging

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
	$(GO) test -count=1 -timeout 50m -v ./integration/ 2>&1 | tee /tmp/pullguard-integration.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|SKIP|panic)|integration:' ; exit $${PIPESTATUS[0]}

## test-packaging: build the packages, lint them, and install, reinstall,
## remove and purge the .deb for real (root on Debian; the host is left as found).
test-packaging:
	@if [ "$$(id -u)" = 0 ]; then packaging/verify.sh; \
	else echo "not root: packaging checks skip (run: sudo make test)"; fi

## package: dist/pullguard_VERSION_ARCH.deb and .rpm for amd64 and arm64.
package:
	packaging/build.sh $(PKG_VERSION) $(PKG_ARCHES)

## man: the man pages in dist/man, rendered from docs/pullguard.8.md and
## docs/pullguard-policy.5.md as the packages render them (man -l to read).
man:
	packaging/man.sh dist/man

## bench: the figures of docs/performance.md. The policy core in Go's
## harness; the end-to-end figures against the real runtimes (root). Ends
## by printing them as that page's table.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 200000x -count 5 ./policy/ | tee /tmp/pullguard-bench-policy.txt
	$(GO) test -run '^$$' -bench . -benchtime 200000x -count 5 ./enforcer/signature/ | tee /tmp/pullguard-bench-signature.txt
	$(GO) test -run '^$$' -bench 'Lint1000' -benchtime 10x -count 5 ./lint/ | tee /tmp/pullguard-bench-lint.txt
	$(GO) test -run '^$$' -bench 'OneDockerfile' -benchtime 2000x -count 5 ./lint/ | tee -a /tmp/pullguard-bench-lint.txt
	$(GO) test -run '^$$' -bench . -benchtime 1x ./cmd/pullguard/ | tee /tmp/pullguard-bench-check.txt
	$(GO) test -run '^$$' -bench . -benchtime 20x -count 5 ./enforcer/... | tee /tmp/pullguard-bench-enforcer.txt
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 40m ./integration/ | tee /tmp/pullguard-bench-integration.txt
	$(GO) run ./internal/benchtable /tmp/pullguard-bench-*.txt

## lint: formatting, vet and staticcheck (pinned).
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	@if command -v shellcheck >/dev/null; then shellcheck integration/*.sh .ci/run packaging/*.sh packaging/deb/post* packaging/deb/prerm packaging/rpm/*; fi

## demo: bring up the environment, run pullguard in enforce mode, pull an
## allowed and a disallowed image, and show what happened.
demo: build
	integration/demo.sh $(DEMO_DIR)

clean:
	rm -rf bin dist
