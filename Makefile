# Targets for developing ws. `make test` is what CI runs.
GO        ?= go
REDIS_ADDR ?= 127.0.0.1:6379

.PHONY: test tools race unit bench bench-peers lint run fuzz cross bench-tls bench-compression bench-channels bench-storm bench-production bench-pusher bench-history

# PLATFORMS are the GOOS/GOARCH pairs the library must build and vet on
# (`make cross`).
PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64 freebsd/amd64 freebsd/arm64

# TEST_PLATFORMS are those `make test` vets on besides the machine's own
# (Linux, in CI): each other operating system once, since the library's
# build constraints are by operating system only (writev_*.go,
# internal/redistest/signal_*.go: darwin takes the BSD writev, windows
# neither writev nor unix, freebsd unix without writev). On a machine with
# no build cache each platform costs 1-2 minutes (the standard library is
# compiled for it), which kept all eight out of the test run.
TEST_PLATFORMS ?= darwin/arm64 windows/amd64 freebsd/amd64

# test first runs scripts/ensure-tools.sh, which installs what the suite
# needs and is missing (Chromium, Node and npm, redis-server: with apt-get
# when root) and starts Redis at $(REDIS_ADDR) if nothing answers there,
# saying what it does, and scripts/node-matrix.sh fetches the Node
# releases the JavaScript client is tested on besides the machine's own
# (WS_NODES). Then every test runs with -race, against that Redis
# (tests that need it skip with a message when it is not there, but fail
# here: WS_REQUIRE_REDIS=1, and WS_REQUIRE_TOOLS=1 for node and Chromium):
# the library, the metrics module and the browser tests in e2e/ (a module
# of its own so the library's go.mod never lists chromedp), plus a short
# fuzz run and the build and unit tests of the benchmark harness.
test:
	REDIS_ADDR=$(REDIS_ADDR) bash scripts/ensure-tools.sh
	nodes="$$(bash scripts/node-matrix.sh)" && \
	WS_NODES="$$nodes" WS_REDIS_ADDR=$(REDIS_ADDR) WS_REQUIRE_REDIS=1 WS_REQUIRE_TOOLS=1 $(GO) test -race -count=1 -timeout 20m ./... && \
	(cd metrics && WS_REDIS_ADDR=$(REDIS_ADDR) $(GO) test -race -count=1 ./...) && \
	(cd e2e && WS_NODES="$$nodes" WS_REQUIRE_TOOLS=1 $(GO) test -race -count=1 -timeout 5m ./...)
	$(GO) test -run '^$$' -fuzz '^FuzzDispatch$$' -fuzztime 10s -parallel 2 .
	$(GO) vet ./...
	cd metrics && $(GO) vet ./...
	cd e2e && $(GO) vet ./...
	@test -z "$$(gofmt -l .)" || (echo "gofmt needed:"; gofmt -l .; exit 1)
	cd bench && $(GO) build ./... && $(GO) vet ./... && $(GO) test -race -count=1 ./...
	$(MAKE) cross PLATFORMS="$(TEST_PLATFORMS)"

# cross builds and vets the library (tests included) for every platform in
# PLATFORMS: the non-blocking writev is Linux and BSD only (writev_*.go),
# and everything else must build without it.
cross:
	@for p in $(PLATFORMS); do \
		echo "go vet for $$p"; \
		GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) vet ./... || exit 1; \
	done

# tools installs and starts what `make test` needs (see scripts/ensure-tools.sh).
tools:
	REDIS_ADDR=$(REDIS_ADDR) bash scripts/ensure-tools.sh

# race is the plain race-enabled run, without the extra checks.
race:
	$(GO) test -race -count=1 ./...

# unit runs what needs no service at all.
unit:
	$(GO) test -count=1 -short ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

lint:
	$(GO) vet ./...
	cd metrics && $(GO) vet ./...
	cd e2e && $(GO) vet ./...
	@test -z "$$(gofmt -l .)" || (echo "gofmt needed:"; gofmt -l .; exit 1)

run:
	$(GO) run ./examples/basic

# fuzz runs each fuzz target for FUZZTIME (see docs/security.md).
FUZZTIME ?= 5m
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDispatch$$' -fuzztime $(FUZZTIME) -parallel 2 .
	$(GO) test -run '^$$' -fuzz '^FuzzRawFrames$$' -fuzztime $(FUZZTIME) -parallel 2 .
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeInbound$$' -fuzztime $(FUZZTIME) -parallel 2 .
	$(GO) test -run '^$$' -fuzz '^FuzzReaderDeflate$$' -fuzztime $(FUZZTIME) -parallel 2 ./internal/frame
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) -parallel 2 ./pusher
	$(GO) test -run '^$$' -fuzz '^FuzzData$$' -fuzztime $(FUZZTIME) -parallel 2 ./pusher
	$(GO) test -run '^$$' -fuzz '^FuzzAPI$$' -fuzztime $(FUZZTIME) -parallel 2 ./pusher

# bench-peers runs the load harness against ws, its peers and the ceiling
# (see bench/README.md); it takes several minutes on an idle machine.
bench-peers:
	cd bench && $(GO) run ./cmd/harness -scenario all -out ../docs/benchmarks-latest.md

# The production-shape scenarios of the load harness (bench/README.md):
# TLS fan-out, compression, many channels over Redis on three nodes, and a
# reconnect storm with presence. Each takes minutes; the channels and storm
# scenarios start a redis-server of their own on a spare port.
bench-tls:
	cd bench && $(GO) run ./cmd/harness -scenario tls -runs 3 -out RESULTS-tls.md
bench-compression:
	cd bench && $(GO) run ./cmd/harness -scenario compression -runs 3 -compress-inflate-once -out RESULTS-compression.md
bench-channels:
	cd bench && $(GO) run ./cmd/harness -scenario channels -runs 3 -out RESULTS-channels.md
bench-storm:
	cd bench && $(GO) run ./cmd/harness -scenario storm -runs 3 -out RESULTS-storm.md
bench-production:
	cd bench && $(GO) run ./cmd/harness -scenario production -runs 3 -out RESULTS-production.md

# bench-pusher: burst fan-out to 5,000 Pusher-protocol subscribers beside
# 5,000 native ones, on the same server (the pusher package).
bench-pusher:
	cd bench && $(GO) run ./cmd/harness -scenario pusher -runs 3 -out RESULTS-pusher.md

# bench-history: the many-channels scenario on three nodes over Redis, ws
# with and without channel history on every channel, alternated.
bench-history:
	cd bench && $(GO) run ./cmd/harness -scenario channels -channels-servers ws,ws-history -runs 3 -out RESULTS-history.md
