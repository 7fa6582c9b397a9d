# restrictedmail — developer commands. Go 1.26 must be on PATH.
GO ?= go
export PATH := /usr/local/go/bin:$(PATH)

FUZZTIME ?= 15s

.PHONY: all build test deps vet fmt fuzz reliability run bench install clean man deb

# The version from git describe (packaging/version: a Debian version, e.g.
# 0.0.0~git20250131.42.0123456789ab before the first tag); make VERSION=...
# overrides it. `restrictedmail version` prints it with the commit.
ifneq ($(origin VERSION),command line)
VERSION := $(shell packaging/version)
endif
COMMIT := $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o restrictedmail ./cmd/restrictedmail

# The README's test command: what the tests need (installed when missing,
# as root; otherwise it prints the command to run), formatting, vet, every
# test under the race detector (including the real-Postfix end-to-end
# tests), then each fuzz target for a bounded time on top of its committed
# corpus.
test: deps fmt vet
	$(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) fuzz

deps:
	@.ci/install-deps --if-missing

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# Each target on top of its committed corpus (.ci/fuzz-one: Go 1.26's
# end-of-fuzztime deadline race is not a failure; a crasher is).
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) .ci/fuzz-one FuzzFind ./token
	GO=$(GO) FUZZTIME=$(FUZZTIME) .ci/fuzz-one FuzzReadHeader ./mailheader
	GO=$(GO) FUZZTIME=$(FUZZTIME) .ci/fuzz-one FuzzParse ./address
	GO=$(GO) FUZZTIME=$(FUZZTIME) .ci/fuzz-one FuzzParse ./dsn
	GO=$(GO) FUZZTIME=$(FUZZTIME) .ci/fuzz-one FuzzParseEnvelope ./address
	GO=$(GO) FUZZTIME=$(FUZZTIME) .ci/fuzz-one FuzzIndexAgreesWithListFor ./milter
	GO=$(GO) FUZZTIME=$(FUZZTIME) .ci/fuzz-one FuzzWrite ./rewrite
	GO=$(GO) FUZZTIME=$(FUZZTIME) .ci/fuzz-one FuzzDecodeIssue ./api
	GO=$(GO) FUZZTIME=$(FUZZTIME) .ci/fuzz-one FuzzIssueForm ./web

# README "Reliability": the fault scenarios, the hostile corpus and the leak
# checks, verbosely, then the fuzz targets; prints the table of their figures.
reliability:
	@$(GO) test -race -count=1 -timeout 20m -v -run '^(TestFault|TestTwoHosts|TestCorpus|TestSpellings|TestOutsiders|TestGuardIsNoLever|TestLeak)' ./e2e ./internal/corpus >reliability.log 2>&1; \
	status=$$?; grep -E '^(--- FAIL|FAIL|ok)' reliability.log; [ $$status -eq 0 ] || exit $$status
	@$(MAKE) -s fuzz >>reliability.log 2>&1 || { tail -20 reliability.log; exit 1; }
	@awk -f .ci/reliability.awk reliability.log

run:
	$(GO) run ./cmd/restrictedmail demo

# Benchmarks side by side with Postfix and the protocol floors; prints a
# Markdown table and writes BENCHMARKS.md (needs the test dependencies).
bench:
	$(GO) test -tags bench -run '^TestBenchmarks$$' -count=1 -timeout 20m -v ./bench

# Installs the binary, the systemd unit and — unless one exists — the example
# configuration. DESTDIR stages the files (packaging); BINARY installs a
# binary built elsewhere (make -o build install BINARY=...). The account
# (restrictedmail, with the postfix group for unix sockets), the DKIM key and
# `systemctl daemon-reload && systemctl enable --now restrictedmail` are left
# to the administrator: see README "Installing".
DESTDIR ?=
BINDIR ?= /usr/local/bin
SYSCONFDIR ?= /etc
UNITDIR ?= /etc/systemd/system
BINARY ?= restrictedmail

install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR)
	install -m 0755 $(BINARY) $(DESTDIR)$(BINDIR)/restrictedmail
	sed -e 's|/usr/local/bin/restrictedmail|$(BINDIR)/restrictedmail|g' \
	    -e 's|/etc/restrictedmail/|$(SYSCONFDIR)/restrictedmail/|g' \
	    etc/systemd/restrictedmail.service > $(DESTDIR)$(UNITDIR)/restrictedmail.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/restrictedmail.service
	install -d -m 0750 $(DESTDIR)$(SYSCONFDIR)/restrictedmail
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/restrictedmail/restrictedmail.toml ]; then \
		echo "keeping the existing $(DESTDIR)$(SYSCONFDIR)/restrictedmail/restrictedmail.toml"; \
	else \
		install -m 0640 etc/restrictedmail.toml $(DESTDIR)$(SYSCONFDIR)/restrictedmail/restrictedmail.toml; \
	fi
	@# The daemon's group must read the directory and the file (0750/0640).
	@if getent group restrictedmail >/dev/null; then \
		chgrp restrictedmail $(DESTDIR)$(SYSCONFDIR)/restrictedmail $(DESTDIR)$(SYSCONFDIR)/restrictedmail/restrictedmail.toml; \
	else \
		echo "no group restrictedmail yet: create the account, then chgrp restrictedmail $(SYSCONFDIR)/restrictedmail $(SYSCONFDIR)/restrictedmail/restrictedmail.toml"; \
	fi

# The man pages, restrictedmail.8 and restrictedmail.toml.5, made from the
# commands' flags and README.md's key table: man ./restrictedmail.8
man:
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/restrictedmail man --dir . --readme README.md

# The Debian packages, build/restrictedmail_VERSION_ARCH.deb (packaging/,
# DEVELOPERS.md "Packaging"); DEB_ARCHS="amd64" builds one.
DEB_ARCHS ?= amd64 arm64
deb:
	VERSION="$(VERSION)" GO="$(GO)" OUT=build packaging/build-deb $(DEB_ARCHS)

clean:
	rm -rf restrictedmail restrictedmail.8 restrictedmail.toml.5 build
