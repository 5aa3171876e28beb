# trustgate: `make test` runs everything CI runs; `make demo` is the local sandbox.
GO        ?= go
BIN       := bin/trustgate
# An execution count, not a duration: Go 1.26 fuzzing can report a spurious
# "context deadline exceeded" when a duration ends (go.dev/issue/75804).
FUZZTIME  ?= 10000x
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/trustgate-dev/trustgate/internal/cli.Version=$(VERSION)

.PHONY: build test vet fmt-check unit fuzz fuzz-short demo bench clean kube-apiserver

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/trustgate

## test: formatting, vet, every test with -race (real notary, registry, etcd and
## kube-apiserver included), then each fuzz target briefly.
test: fmt-check vet kube-apiserver
	$(GO) test -race -count=1 -timeout 40m ./...
	$(MAKE) fuzz-short

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# The end-to-end tests need kube-apiserver; build it (once, cached) up front so
# its one-time cost shows as its own step with its own progress message.
kube-apiserver:
	@./hack/kube-apiserver.sh >/dev/null

fuzz-short:
	@FUZZTIME=$(FUZZTIME) ./hack/fuzz.sh

## fuzz: every fuzz target for longer (FUZZTIME=10m make fuzz).
fuzz:
	@FUZZTIME=$${FUZZTIME:-2m} ./hack/fuzz.sh

## demo: the local sandbox (real notary server, registry, etcd, kube-apiserver, trustgate).
demo: build
	@echo "make demo: see hack/demo.sh; stop the sandbox with: hack/demo.sh stop"
	./hack/demo.sh

## bench: the short benchmark run that rewrites BENCHMARKS.md.
bench: build
	./hack/bench.sh

clean:
	rm -rf bin
