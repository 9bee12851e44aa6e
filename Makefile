# cc-ci acceptance harness. `make help` lists the targets.
SHELL := /bin/bash
export GOTOOLCHAIN := local
GO ?= go
# Acceptance runs are never cached: each must create and prove a new machine.
GOTEST := $(GO) test -count=1
LAB := lab/lab.sh

.PHONY: help lab-up lab-down lab-status unit test acceptance vet

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

lab-up: ## bring up the lab: Incus, pool, bridge, HTTPS+client cert, projects, blank image (idempotent)
	@bash $(LAB) up

lab-down: ## stop what lab-up started; delete harness-labelled instances
	@bash $(LAB) down

lab-status: ## show lab daemons and instances
	@bash $(LAB) status

vet: ## go vet
	$(GO) vet ./...

unit: ## unit tests only; lab-dependent tests skip without a lab
	$(GO) test ./...

acceptance: lab-up ## bring up the lab and run the acceptance suite (C-tests) against it
	CCCI_ACCEPTANCE=1 $(GOTEST) -timeout 40m -v ./acceptance

test: lab-up vet ## everything: unit, integration against the lab, self-tests, acceptance (what .ci/run runs)
	CCCI_REQUIRE_LAB=1 CCCI_ACCEPTANCE=1 $(GOTEST) -p 1 -timeout 40m ./...
