# stepflash — build and test. Both the SIMD (GOEXPERIMENT=simd) and the
# pure-Go kernel paths are tested; the binary is built with SIMD.
GO       ?= go
BIN      ?= bin/stepflash
PKGS     ?= ./...
export CGO_ENABLED := 0

.PHONY: all build run serve test test-purego test-simd vet lint fuzz soak bench clean

# Shared test models (../shared/models beside the repository); override with STEPFLASH_MODELS.
MODELS   ?= $(or $(STEPFLASH_MODELS),../shared/models)
PROMPT   ?= Once upon a time

all: build

# -buildvcs=auto: stamp the commit (stepflash version) even where GOFLAGS
# turns it off; a tree without .git still builds.
build:
	GOEXPERIMENT=simd $(GO) build -trimpath -buildvcs=auto -o $(BIN) ./cmd/stepflash

## serve: build, then the OpenAI-compatible server on 0.0.0.0:8000 (override SERVE_MODEL, ADDR).
SERVE_MODEL ?= $(MODELS)/stories260K.gguf
ADDR        ?= 0.0.0.0:8000
serve: build
	$(BIN) serve -m $(SERVE_MODEL) --addr $(ADDR)

## run: build, then a greedy completion from the small real model in ../shared.
run: build
	$(BIN) run -m $(MODELS)/stories260K.gguf --temp 0 -n 64 -- "$(PROMPT)"

## test: vet, lint, and the test suite on both kernel paths.
test: vet lint test-purego test-simd

test-purego:
	$(GO) test -count=1 $(PKGS)

test-simd:
	GOEXPERIMENT=simd $(GO) test -count=1 $(PKGS)

vet:
	@test -z "$$(gofmt -l . | tee /dev/stderr)" || (echo "gofmt: files above need formatting" && exit 1)
	$(GO) vet $(PKGS)
	GOEXPERIMENT=simd $(GO) vet $(PKGS)

lint:
	@command -v staticcheck >/dev/null 2>&1 || $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" staticcheck $(PKGS)

## fuzz: the long fuzz runs (FUZZTIME per target, default 5m): the GGUF reader,
## the model loader + forward pass, the tokenizer, the chat template engine and parser, image decoding, and
## image preprocessing + encoding.
FUZZTIME ?= 5m
fuzz:
	$(GO) test ./gguf -run '^$$' -fuzz '^FuzzRead$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s
	$(GO) test ./model -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s
	$(GO) test ./tokenizer -run '^$$' -fuzz '^FuzzEncode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./chat -run '^$$' -fuzz '^FuzzStreamSplit$$' -fuzztime $(FUZZTIME)
	$(GO) test ./chat/internal/jinja -run '^$$' -fuzz '^FuzzTemplate$$' -fuzztime $(FUZZTIME)
	$(GO) test ./media -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s
	GOEXPERIMENT=simd $(GO) test ./vision -run '^$$' -fuzz '^FuzzPrepareEncode$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s
	GOEXPERIMENT=simd $(GO) test ./vision -run '^$$' -fuzz '^FuzzPrepareEncodeQwen$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s

## soak: 16 concurrent streaming clients against a real server for SOAKTIME (default 60s).
SOAKTIME ?= 60s
soak:
	STEPFLASH_SOAK=$(SOAKTIME) $(GO) test -count=1 -timeout 30m -run TestSoak -v ./server

bench:
	GOEXPERIMENT=simd $(GO) test -run '^$$' -bench . -benchmem ./tensor/...

## bench-load: HTTP load on running OpenAI-compatible servers, side by side (README "Load test").
.PHONY: bench-load
LOAD_URLS  ?= http://127.0.0.1:8000/v1
CLIENTS    ?= 16
DURATION   ?= 60s
MAX_TOKENS ?= 128
ROUNDS     ?= 1
bench-load: build
	$(BIN) bench $(foreach u,$(LOAD_URLS),--base-url $(u)) --clients $(CLIENTS) --duration $(DURATION) --max-tokens $(MAX_TOKENS) --rounds $(ROUNDS)

clean:
	rm -rf bin
