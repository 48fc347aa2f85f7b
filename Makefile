# netfilter_exporter build, run and test targets.
#   make run   - build and run the exporter against this host's netfilter (root)
#   make test  - install what the tests need, then run every test (root, for the kernel tests)

GO        ?= go
BIN       ?= netfilter_exporter
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w \
	-X github.com/prometheus/common/version.Version=$(VERSION) \
	-X github.com/prometheus/common/version.Revision=$(REVISION) \
	-X github.com/prometheus/common/version.Branch=main \
	-X github.com/prometheus/common/version.BuildUser=make
ARGS      ?=
# The whole test run stays well under 15 minutes; this is a safety net.
TESTFLAGS ?= -race -count=1 -timeout 14m

.PHONY: all build run deps check test bench burst demo clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) .

run: build
	./$(BIN) $(ARGS)

# Debian packages the kernel and end-to-end tests call.
deps:
	./scripts/install-deps.sh

# Formatting, vet and module tidiness.
check:
	@out=$$(gofmt -l . | grep -v '^vendor/'); if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	$(GO) vet ./...
	@cp go.mod /tmp/nfe-go.mod.bak && cp go.sum /tmp/nfe-go.sum.bak; \
	$(GO) mod tidy; \
	if ! cmp -s go.mod /tmp/nfe-go.mod.bak || ! cmp -s go.sum /tmp/nfe-go.sum.bak; then \
		echo "go mod tidy changes go.mod or go.sum"; git --no-pager diff -- go.mod go.sum; exit 1; fi

# Kernel tests fail instead of skipping when NETFILTER_EXPORTER_KERNEL_TESTS=required.
test: deps check build
	NETFILTER_EXPORTER_KERNEL_TESTS=required $(GO) test $(TESTFLAGS) ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# A burst of N conntrack DESTROY events, measured RUNS times for the
# exporter (io_uring and recvmmsg), conntrack -E and ulogd2 (root; see
# BENCHMARKS.md).
N ?= 1000000
RUNS ?= 5
burst: build deps
	$(GO) run ./internal/cmd/ctburst -n $(N) -runs $(RUNS) -tools exporter,exporter-recvmmsg,conntrack,ulogd

# A throwaway namespace with nfacct objects, rules and traffic, the exporter
# on it, live /metrics and Graphite lines; cleaned up on exit or Ctrl-C (root).
demo: build deps
	BIN=./$(BIN) ./scripts/demo.sh

clean:
	rm -f $(BIN)
