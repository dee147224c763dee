# sparsify — see README.md. Vectorised kernels need GOEXPERIMENT=simd (Go 1.26, amd64).
export GOEXPERIMENT := simd
GO ?= go
BIN := bin/sparsify
MODEL ?=
FUZZTIME ?= 5m

.PHONY: all build demo test test-full bench fuzz vet fmt clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/sparsify

# The main job on the embedded default model (or MODEL=path).
demo: build
	./scripts/demo.sh $(MODEL)

# Unit tests (the vectorised paths) plus the portable fallback of the kernels.
test:
	$(GO) vet ./...
	$(GO) test -short -count=1 ./...
	GOEXPERIMENT= $(GO) test -short -count=1 ./kernel/...

test-full:
	$(GO) test -count=1 -timeout 60m ./...

bench: build
	./scripts/bench.sh

fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin demo-out
