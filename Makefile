# netfilter_exporter build, run and test targets.
#   make run   - build and run the exporter against this host's netfilter (root)
#   make unit  - the root-free tier: every test that needs no root, in seconds
#   make test  - install what the tests need, then run every test (root, for the kernel tests)
#   make e2e   - the tests of the built exporter alone (e2e/; root)
#   make package - the .deb and .rpm of this machine's architecture, in dist/
#   make image - the container image (Dockerfile), labelled
#   make fuzz  - every fuzz target (go test -list '^Fuzz', package by package),
#                one after the other, for FUZZTIME each (default 30s);
#                stops at the first crash, whose input go test writes to the
#                package's testdata/fuzz/<FuzzName>/ (no root). Their seed
#                corpora run in make unit, as ordinary tests.

GO        ?= go
BIN       ?= netfilter_exporter
# promu, the release tool, pinned in its own module (tools/go.mod) and built
# for this machine (GOARCH in `make release` is for the exporter only).
PROMU_BIN := .build/promu
PROMU     := $(PROMU_BIN) --config=.promu.yml
# staticcheck, pinned in the same module, built the same way.
STATICCHECK_BIN := .build/staticcheck
# nfpm, which makes the .deb and .rpm (make package), the same way.
NFPM_BIN := .build/nfpm
# The version is the VERSION file's (promu's convention; promu reads it too):
# the version being worked towards, the same in a clone with tags or without,
# with the commit in REVISION. A release tag must be v$(VERSION) (make
# release-check).
VERSION   := $(shell cat VERSION)
REVISION  ?= $(or $(shell git rev-parse HEAD 2>/dev/null),unknown)
BRANCH    ?= $(or $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null),unknown)
# Reproducible builds: the same commit gives the same bytes, in any
# directory, on any host. The build date is SOURCE_DATE_EPOCH, by default
# the last commit's time (promu reads it too, and then stamps no user or
# host); no user or host name is stamped unless BUILD_USER is set.
SOURCE_DATE_EPOCH := $(or $(SOURCE_DATE_EPOCH),$(shell git log -1 --format=%ct 2>/dev/null))
export SOURCE_DATE_EPOCH
BUILD_DATE := $(if $(SOURCE_DATE_EPOCH),$(shell date -u -d @$(SOURCE_DATE_EPOCH) +%Y%m%d-%H:%M:%S),unknown)
BUILD_USER ?=
# -trimpath: no directory of the build host; -buildvcs=false: the revision
# is in the ldflags, and a checkout's state (untracked files) stays out.
GOBUILDFLAGS := -trimpath -buildvcs=false
# The same ldflags as .promu.yml's.
LDFLAGS   := -s -w \
	-X github.com/prometheus/common/version.Version=$(VERSION) \
	-X github.com/prometheus/common/version.Revision=$(REVISION) \
	-X github.com/prometheus/common/version.Branch=$(BRANCH) \
	-X github.com/prometheus/common/version.BuildUser=$(BUILD_USER) \
	-X github.com/prometheus/common/version.BuildDate=$(BUILD_DATE)
# The packages: for this machine's architecture (the man page is the
# binary's own --help-man), into dist/. MAINTAINER is the packages'.
PACKAGE_ARCH := $(shell $(GO) env GOARCH)
MAINTAINER   ?= netfilter_exporter maintainers <maintainers@netfilter-exporter.invalid>
# The container image (Dockerfile): its labels' version, revision and date
# (created, RFC 3339, from SOURCE_DATE_EPOCH). IMAGE_PLATFORMS, with a
# BuildKit builder (DOCKER="docker buildx"), builds several.
DOCKER          ?= docker
IMAGE           ?= netfilter_exporter:$(VERSION)
IMAGE_PLATFORMS ?=
IMAGE_FLAGS     ?=
IMAGE_CREATED   := $(if $(SOURCE_DATE_EPOCH),$(shell date -u -d @$(SOURCE_DATE_EPOCH) +%Y-%m-%dT%H:%M:%SZ))
# Platforms of a release (the exporter is Linux only; no cgo).
RELEASE_PLATFORMS ?= linux/amd64 linux/arm64
ARGS      ?=
# The whole test run stays well under 15 minutes; this is a safety net.
TESTFLAGS ?= -race -count=1 -timeout 14m

.PHONY: all build run deps check release-check release package image unit test e2e fuzz bench burst demo clean

all: build

build:
	CGO_ENABLED=0 $(GO) build $(GOBUILDFLAGS) -ldflags '$(LDFLAGS)' -o $(BIN) .

run: build
	./$(BIN) $(ARGS)

# Debian packages the kernel and end-to-end tests call.
deps:
	./scripts/install-deps.sh

# Formatting, vet, staticcheck and module tidiness.
check: $(STATICCHECK_BIN)
	@out=$$(gofmt -l . | grep -v '^vendor/'); if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK_BIN) ./...
	@cp go.mod /tmp/nfe-go.mod.bak && cp go.sum /tmp/nfe-go.sum.bak; \
	$(GO) mod tidy; \
	if ! cmp -s go.mod /tmp/nfe-go.mod.bak || ! cmp -s go.sum /tmp/nfe-go.sum.bak; then \
		echo "go mod tidy changes go.mod or go.sum"; git --no-pager diff -- go.mod go.sum; exit 1; fi
	@cp tools/go.mod /tmp/nfe-tools.mod.bak && cp tools/go.sum /tmp/nfe-tools.sum.bak; \
	(cd tools && $(GO) mod tidy); \
	if ! cmp -s tools/go.mod /tmp/nfe-tools.mod.bak || ! cmp -s tools/go.sum /tmp/nfe-tools.sum.bak; then \
		echo "go mod tidy changes tools/go.mod or tools/go.sum"; git --no-pager diff -- tools; exit 1; fi

# The release configuration's own check: a tag on HEAD must be v$(VERSION),
# and the CHANGELOG entry of the version being released (VERSION, when it
# has one) must be there, dated, and in promu's order; before that, the
# newest version the CHANGELOG lists is checked and VERSION must be above
# it. TestDockerfileBuildStage builds with .promu.yml and checks the
# version the binary reports.
$(PROMU_BIN): tools/go.mod tools/go.sum
	$(GO) build -modfile=tools/go.mod -o $@ github.com/prometheus/promu

$(STATICCHECK_BIN): tools/go.mod tools/go.sum
	$(GO) build -modfile=tools/go.mod -o $@ honnef.co/go/tools/cmd/staticcheck

$(NFPM_BIN): tools/go.mod tools/go.sum
	$(GO) build -modfile=tools/go.mod -o $@ github.com/goreleaser/nfpm/v2/cmd/nfpm

release-check: $(PROMU_BIN)
	@set -e; v=$(VERSION); tag=$$(git describe --exact-match --tags 2>/dev/null || true); \
	if [ -n "$$tag" ] && [ "$$tag" != "v$$v" ]; then \
		echo "HEAD is tagged $$tag, but VERSION says $$v: a release tag is v$$v"; exit 1; fi; \
	if ! grep -q "^## $$v / " CHANGELOG.md; then \
		if [ -n "$$tag" ]; then echo "CHANGELOG.md has no entry for $$v, the version tagged"; exit 1; fi; \
		newest=$$(sed -n 's|^## \([0-9][^ ]*\) / .*|\1|p' CHANGELOG.md | head -1); \
		if [ "$$newest" = "$$v" ] || [ "$$(printf '%s\n%s\n' "$$newest" "$$v" | sort -V | tail -1)" != "$$v" ]; then \
			echo "VERSION $$v is not above $$newest, the newest release in CHANGELOG.md"; exit 1; fi; \
		v=$$newest; fi; \
	echo "promu check changelog --version=$$v"; \
	$(PROMU) check changelog --location=CHANGELOG.md --version="$$v"

# Release tarballs and checksums in .tarballs/, from a clone whose HEAD is
# the release tag and whose origin is the GitHub repository (promu names the
# tarballs after it). See README, Releasing.
release: release-check
	rm -rf .build/linux-* .tarballs
	@set -e; for p in $(RELEASE_PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; \
		GOOS=$$os GOARCH=$$arch $(PROMU) build --prefix .build/$$os-$$arch; \
		GOOS=$$os GOARCH=$$arch $(PROMU) tarball --prefix .tarballs .build/$$os-$$arch; \
	done
	$(PROMU) checksum .tarballs

# dist/netfilter-exporter_$(VERSION)-1_<arch>.deb and the .rpm (nfpm, with
# packaging/nfpm.yaml): the binary in /usr/bin, so the units' /usr/local/bin
# paths are rewritten; the man page from --help-man; files dated
# SOURCE_DATE_EPOCH. TestPackageDeb runs it, lintian and dpkg.
package: build $(NFPM_BIN)
	rm -rf .build/package dist/netfilter-exporter[_-]*
	mkdir -p .build/package dist
	sed 's|/usr/local/bin/netfilter_exporter|/usr/bin/netfilter_exporter|g' examples/netfilter_exporter.service >.build/package/netfilter_exporter.service
	sed 's|/usr/local/bin/netfilter_exporter|/usr/bin/netfilter_exporter|g' examples/netfilter_exporter-socket.conf >.build/package/netfilter_exporter-socket.conf
	./$(BIN) --help-man | gzip -9n >.build/package/netfilter_exporter.1.gz
	gzip -9n <CHANGELOG.md >.build/package/changelog.gz
	printf '%s (%s-1) unstable; urgency=medium\n\n  * netfilter_exporter %s, revision\n    %s;\n    what changed: /usr/share/doc/netfilter-exporter/changelog.gz.\n\n -- %s  %s\n' \
		netfilter-exporter $(VERSION) $(VERSION) $(REVISION) '$(MAINTAINER)' "$$(date -u -R -d @$(SOURCE_DATE_EPOCH))" \
		| gzip -9n >.build/package/changelog.Debian.gz
	touch -d @$(SOURCE_DATE_EPOCH) .build/package/*
	@set -e; for p in deb rpm; do \
		VERSION=$(VERSION) ARCH=$(PACKAGE_ARCH) MAINTAINER='$(MAINTAINER)' \
			$(NFPM_BIN) package --config packaging/nfpm.yaml --packager $$p --target dist/; \
	done

image:
	$(DOCKER) build $(if $(IMAGE_PLATFORMS),--platform $(IMAGE_PLATFORMS)) $(IMAGE_FLAGS) \
		--build-arg SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) --build-arg VERSION=$(VERSION) \
		--build-arg REVISION=$(REVISION) --build-arg CREATED=$(IMAGE_CREATED) -t $(IMAGE) .

# The root-free tier: -short skips every kernel test (netnstest.Require),
# whatever the environment says; tests that need only a tool (promtool)
# run when it is installed.
unit:
	env -u NETFILTER_EXPORTER_KERNEL_TESTS $(GO) test -short -count=1 ./...

# Both tiers. Kernel tests fail instead of skipping when
# NETFILTER_EXPORTER_KERNEL_TESTS=required.
test: deps check release-check build
	NETFILTER_EXPORTER_KERNEL_TESTS=required $(GO) test $(TESTFLAGS) ./...

# The tests of the built exporter (e2e/), which builds it once, with -race
# as the tests are.
e2e: deps
	NETFILTER_EXPORTER_KERNEL_TESTS=required $(GO) test $(TESTFLAGS) ./e2e/

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Each fuzz target for FUZZTIME (a -fuzztime value: 30s, or 100000x), one
# at a time, as go test -fuzz takes one target per run. The packages are
# those of the module whose test files declare a Fuzz function; go test
# -list names their targets, so that a target added anywhere is run (a
# package is not built for listing unless it has one: e2e's TestMain
# builds the exporter). FUZZFLAGS go to every run, e.g. -parallel 1.
FUZZTIME  ?= 30s
FUZZFLAGS ?=
fuzz:
	@n=0; for d in $$($(GO) list -f '{{.Dir}}' ./...); do \
		grep -qs '^func Fuzz' $$d/*_test.go || continue; \
		p=.$${d#$(CURDIR)}; \
		list=$$($(GO) test -list '^Fuzz' $$p) || { echo "$$list"; exit 1; }; \
		for f in $$(echo "$$list" | grep '^Fuzz'); do \
			echo "$(GO) test -run '^$$' -fuzz '^$$f\$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS) $$p"; \
			$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $(FUZZFLAGS) $$p || exit 1; \
			n=$$((n+1)); \
		done; \
	done; echo "fuzz: $$n targets, $(FUZZTIME) each, no crash"

# A burst of N conntrack DESTROY events, measured RUNS times for the
# exporter (io_uring and recvmmsg), conntrack -E and ulogd2 (root; see
# BENCHMARKS.md).
N ?= 1000000
RUNS ?= 5
burst: build deps
	$(GO) run ./internal/cmd/ctburst -n $(N) -runs $(RUNS) -tools exporter,exporter-recvmmsg,conntrack,ulogd

# A throwaway namespace with nfacct objects, rules and traffic, the exporter
# on it, live /metrics and Graphite lines; cleaned up on exit or Ctrl-C (root).
demo: build
	./scripts/install-deps.sh ip iptables nfacct conntrack sysctl python3
	BIN=./$(BIN) ./scripts/demo.sh

clean:
	rm -rf $(BIN) .build .tarballs dist
