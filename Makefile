# restrictedmail — developer commands. Go 1.26 must be on PATH.
GO ?= go
export PATH := /usr/local/go/bin:$(PATH)

FUZZTIME ?= 15s

.PHONY: all build test vet fmt fuzz run bench install clean

all: build

build:
	$(GO) build -o restrictedmail ./cmd/restrictedmail

# The README's test command: formatting, vet, every test under the race
# detector (including the real-Postfix end-to-end tests), then each fuzz
# target for a bounded time on top of its committed corpus.
test: fmt vet
	$(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) fuzz

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

fuzz:
	$(GO) test -run=NONE -fuzz='^FuzzFind$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=5s ./token
	$(GO) test -run=NONE -fuzz='^FuzzReadHeader$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=5s ./mailheader
	$(GO) test -run=NONE -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=5s ./address
	$(GO) test -run=NONE -fuzz='^FuzzIndexAgreesWithListFor$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=5s ./milter

run:
	$(GO) run ./cmd/restrictedmail demo

# Benchmarks side by side with Postfix and the protocol floors; prints a
# Markdown table and writes BENCHMARKS.md (needs the test dependencies).
bench:
	$(GO) test -tags bench -run '^TestBenchmarks$$' -count=1 -timeout 20m -v ./bench

install: build
	install -m 0755 restrictedmail /usr/local/bin/restrictedmail

clean:
	rm -f restrictedmail
