# cc-ci acceptance harness. `make help` lists the targets.
# The shell is bash from PATH: a NixOS runner has /usr/bin/env but no /bin/bash.
SHELL := /usr/bin/env bash
export GOTOOLCHAIN := local
# One build configuration for all make builds (the tests, the lab's tools,
# the reviewer's kit, the scanner C3 pushes), static because the kit and the
# scanner must be. sops brings about a thousand packages: they compile once
# per machine, not once per configuration (make dist was 4 min on a fresh one).
export CGO_ENABLED := 0
GO ?= go
OUT := $(CURDIR)/out
GOTESTSUM := $(OUT)/bin/gotestsum
# Acceptance runs are never cached: each must create and prove a new machine.
GOTEST := $(GO) test -count=1
LAB := lab/lab.sh

.PHONY: help lab-up lab-down lab-status unit breakages test test-full acceptance acceptance-ci defects bench soak vet lint-install lint-target dist doctor
DIST ?= $(CURDIR)/dist
MODULE := github.com/cc-ci/acceptance

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

lab-up: ## bring up the lab: Incus, pool, bridge, HTTPS+client cert, projects, image, targets, git server, cc-nix-test (idempotent; deletes what dead runs left)
	@bash $(LAB) up

lab-down: ## stop what lab-up started; delete harness-labelled instances
	@bash $(LAB) down

lab-status: ## show lab daemons and instances
	@bash $(LAB) status

lint-target: ## check the configured target's two repos as a run reads them, no machine, no Incus (CCCI_CONFIG or the lab)
	$(GO) run ./cmd/ccci lint-target

lint-install: ## check a target's install.md without a lab: make lint-install DOC=path/to/docs/install.md
	@test -n "$(DOC)" || { echo "usage: make lint-install DOC=path/to/docs/install.md" >&2; exit 2; }
	$(GO) run ./cmd/ccci lint-install "$(DOC)"

doctor: ## read-only preflight against CCCI_CONFIG (or the lab): could a run start? (TIMEOUT=150m; docs/operating.md)
	$(GO) run ./cmd/ccci doctor -timeout $(TIMEOUT)

vet: ## go vet
	$(GO) vet ./...

unit: ## the tests that need no lab (the lab's are skipped, even if one is up; make test runs them)
	CCCI_CONFIG= CCCI_INCUS_URL= CCCI_INCUS_SOCKET=/nonexistent/incus.socket CCCI_ACCEPTANCE= $(GO) test ./...

breakages: ## make each breakage issue 20 names in a copy of HEAD; each must fail make unit (≈8 min, no lab)
	@bash tools/breakages.sh

acceptance: lab-up $(GOTESTSUM) ## bring up the lab and run the acceptance suite (C1–C7); evidence → REVIEW.md, out/junit.xml
	@mkdir -p $(OUT)
	CCCI_ACCEPTANCE=1 $(GOTESTSUM) --format testname --jsonfile $(OUT)/acceptance.json --junitfile $(OUT)/junit.xml -- \
	  -count=1 -timeout 40m ./acceptance

# A run checks before it creates anything that its -timeout holds its bounds (ccci doctor prints the sum).
TIMEOUT ?= 150m
acceptance-ci: $(GOTESTSUM) ## the acceptance suite against CCCI_CONFIG (the real host), JSON + JUnit in out/; no lab (TIMEOUT=150m)
	@mkdir -p $(OUT)
	CCCI_ACCEPTANCE=1 $(GOTESTSUM) --format testname --jsonfile $(OUT)/acceptance.json --junitfile $(OUT)/junit.xml -- \
	  -count=1 -timeout $(TIMEOUT) ./acceptance

defects: lab-up ## run the acceptance suite against every broken target (the whole defect matrix, CCCI_MATRIX=full by default)
	CCCI_REQUIRE_LAB=1 $(GOTEST) -timeout 60m -v -run TestEveryDefect ./acceptance/defects

# Packages whose tests reach the lab (all do through labtest, labtarget or
# testrun) run one at a time: they share its RAM cap, its instances and its
# evidence. The others build and run in parallel first. (Recursive: go list
# runs only when a recipe needs it.)
PKG_IMPORTS = $(GO) list -f '{{.ImportPath}}{{range .Imports}} {{.}}{{end}}{{range .TestImports}} {{.}}{{end}}{{range .XTestImports}} {{.}}{{end}}' ./...
LAB_USER = /helpers\/(labtest|labtarget|testrun)$$/
LAB_PKGS = $(shell $(PKG_IMPORTS) | awk '{for (i = 2; i <= NF; i++) if ($$i ~ $(LAB_USER)) {print $$1; next}}')
OFFLINE_PKGS = $(filter-out $(LAB_PKGS),$(shell $(GO) list ./...))
TEST_ENV = CCCI_REQUIRE_LAB=1 CCCI_ACCEPTANCE=1 CCCI_REVIEW_FILE=$(OUT)/review/REVIEW.md
# The lab's runs in make test wait the lab's short bounds (labtest.ShortWaits,
# which a test holds this list to): no test of the lab phase has a default
# wait as its subject, and each that has a wait as its subject sets its own.
# make acceptance keeps the defaults.
SHORT_WAITS = CCCI_STEP_TIMEOUT=40s CCCI_CONVERGE_TIMEOUT=15s CCCI_SETTLE=3s CCCI_HOLD=3s CCCI_TLS_READY=10s

# make test runs the defect matrix's tier (CCCI_MATRIX=test: the rows that
# together make every sentence fail, proven by its coverage check on each
# run); make test-full runs every row. Both record go test -json under
# out/times/ and summarise it (ccci times) in out/times/summary.txt, also
# when a test failed.
MATRIX ?= test
TIMES := $(OUT)/times
SUMMARISE = $(GO) run ./cmd/ccci times $(TIMES)/*.json > $(TIMES)/summary.txt; echo "times: $(TIMES)/summary.txt"

test: lab-up vet $(GOTESTSUM) ## everything: unit, integration against the lab, self-tests, the defect matrix's tier, acceptance (what .ci/run runs); times in out/times/
	@rm -rf $(TIMES) && mkdir -p $(TIMES)
	$(TEST_ENV) $(GOTESTSUM) --format standard-quiet --jsonfile $(TIMES)/offline.json -- -count=1 -timeout 10m $(OFFLINE_PKGS) || \
	  { status=$$?; $(SUMMARISE); exit $$status; }
	$(TEST_ENV) $(SHORT_WAITS) CCCI_MATRIX=$(MATRIX) $(GOTESTSUM) --format standard-quiet --jsonfile $(TIMES)/lab.json -- -count=1 -p 1 -timeout 60m $(LAB_PKGS); \
	  status=$$?; $(SUMMARISE); exit $$status

test-full: ## make test with every row of the defect matrix (CCCI_MATRIX=full), for a nightly or pre-release run; times in out/times/
	@$(MAKE) --no-print-directory test MATRIX=full

dist: ## the reviewer's kit in DIST (dist/): a self-contained acceptance test binary (leak scanner embedded), ccci, SHA256SUMS — docs/reviewing.md
	@mkdir -p $(DIST) helpers/leakscan/dist
	$(GO) build -ldflags='-s -w' -o helpers/leakscan/dist/ccci-leakscan ./helpers/leakscan/cmd/ccci-leakscan
	@# The kit names the harness it was built from (helpers/buildinfo: the commit, -dirty with uncommitted code).
	harness=$$($(GO) run ./cmd/ccci harness) && link="-s -w -X $(MODULE)/helpers/buildinfo.Version=$$harness" && \
	  $(GO) test -c -tags ccci_dist -ldflags="$$link" -o $(DIST)/ccci-acceptance ./acceptance && \
	  $(GO) build -ldflags="$$link" -o $(DIST)/ccci ./cmd/ccci
	cd $(DIST) && sha256sum ccci-acceptance ccci > SHA256SUMS && cat SHA256SUMS

bench: ## leak scanner vs merely reading the tree, ripgrep and grep on a generated 1 GiB tree (installs ripgrep), plus go benchmarks
	@command -v rg >/dev/null || { apt-get update -qq && apt-get install -y -qq ripgrep >/dev/null; }
	$(GO) test -run '^$$' -bench . -benchmem ./helpers/leakscan/
	$(GO) run ./helpers/leakscan/bench

soak: lab-up ## the good target (or TARGET=good-deploy-key) N times back to back (N=5): passes, min/median/max time, leftovers after each
	@N=$${N:-5} TARGET=$${TARGET:-good} bash lab/soak.sh

$(GOTESTSUM):
	GOBIN=$(OUT)/bin $(GO) install gotest.tools/gotestsum@v1.13.0
