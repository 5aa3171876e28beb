# trustgate: `make test` runs everything CI runs; `make demo` is the local sandbox.
GO        ?= go
BIN       := bin/trustgate
# An execution count, not a duration: Go 1.26 fuzzing can report a spurious
# "context deadline exceeded" when a duration ends (go.dev/issue/75804).
FUZZTIME  ?= 10000x
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/trustgate-dev/trustgate/internal/cli.Version=$(VERSION)
# make image: IMAGE_REPO=REGISTRY/PATH[:TAG] pushes; without it an OCI layout
# is written to IMAGE_LAYOUT. Every timestamp is the commit time.
IMAGE_REPO   ?=
IMAGE_LAYOUT ?= bin/image
PLATFORMS    ?= linux/amd64,linux/arm64
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null)
# Tools that hack/setup.sh builds (helm) live here; the tests look here too.
TOOLS_BIN := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/trustgate/bin
export PATH := $(TOOLS_BIN):$(PATH)

.PHONY: build test vet fmt-check unit fuzz fuzz-short demo bench bench-audit clean kube-apiserver setup image

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/trustgate

## test: formatting, vet, every test with -race (real notary, registry, etcd and
## kube-apiserver included), then each fuzz target briefly.
test: setup fmt-check vet
	$(GO) test -race -count=1 -timeout 40m ./...
	$(MAKE) fuzz-short

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

## setup: what `make test` and `make demo` need, installed when missing (Debian
## packages notary, docker-registry, etcd-server; helm; kube-apiserver, built
## once and cached). Says what it does and roughly how long; about a second
## when everything is there.
setup:
	@./hack/setup.sh >/dev/null

# The end-to-end tests need kube-apiserver; build it (once, cached) up front so
# its one-time cost shows as its own step with its own progress message.
kube-apiserver:
	@./hack/kube-apiserver.sh >/dev/null

## image: trustgate's OCI image (linux/amd64 + linux/arm64, no daemon, see
## hack/imagebuild), pushed to IMAGE_REPO or written to IMAGE_LAYOUT; two runs
## on one commit give the same digest.
image:
ifeq ($(IMAGE_REPO),)
	rm -rf $(IMAGE_LAYOUT)
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(GO) run ./hack/imagebuild -version $(VERSION) -platforms $(PLATFORMS) -layout $(IMAGE_LAYOUT)
else
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(GO) run ./hack/imagebuild -version $(VERSION) -platforms $(PLATFORMS) -repo $(IMAGE_REPO)
endif

fuzz-short:
	@FUZZTIME=$(FUZZTIME) ./hack/fuzz.sh

## fuzz: every fuzz target for longer (FUZZTIME=10m make fuzz).
fuzz:
	@FUZZTIME=$${FUZZTIME:-2m} ./hack/fuzz.sh

## demo: the local sandbox (real notary server, registry, etcd, kube-apiserver, trustgate).
demo: setup build
	@echo "make demo: see hack/demo.sh; stop the sandbox with: hack/demo.sh stop"
	./hack/demo.sh

## bench: the short benchmark run that rewrites BENCHMARKS.md.
bench: build
	./hack/bench.sh

## bench-audit: `trustgate audit` of 10,000 pods in a real kube-apiserver, 300 images
## signed on a real notary-server (issue 13); rewrites its section of BENCHMARKS.md.
bench-audit: setup build
	cd bench/anchor && $(GO) build -o ../../bin/anchor .
	$(GO) run ./bench/auditbench --trustgate $(BIN) --anchor bin/anchor --out BENCHMARKS.md --command "make bench-audit"

clean:
	rm -rf bin
