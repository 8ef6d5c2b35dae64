# Developer entry points. Every target is a thin wrapper: the scripts under
# scripts/ hold the logic and can be run directly.
SHELL := bash
.DEFAULT_GOAL := help

.PHONY: help run cluster test contract chaos fuzz bench build fmt lint validate-deploy deps deps-stop schemas

help: ## list the targets
	@echo "Targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "} {printf "  make %-16s %s\n", $$1, $$2}'

run: ## start deps, build (release; PROFILE=dev for debug) and run all four services
	scripts/run.sh

cluster: ## the stack past one machine on this one: 3 NATS nodes, PostgreSQL primary+standby (+ a 2nd cluster), Redis+Sentinels, 2 of each service; writes .dev/cluster.env
	scripts/cluster.sh

test: ## start deps, run the workspace tests, validate the deploy files
	scripts/test.sh

contract: ## Schemathesis against /openapi.json, deeper than make test (CONTRACT_EXAMPLES, default 100; CONTRACT_SEED)
	scripts/contract.sh

chaos: ## kill, stop and restart services and dependencies under load, one at a time; writes RELIABILITY.md (CLUSTER=1: lose nodes of the clustered stack)
	CLUSTER=$(CLUSTER) scripts/chaos.sh

fuzz: ## generated hostile input against the in-process stack (FUZZ_CASES, default 1,000,000; FUZZ_SEED)
	scripts/fuzz.sh

bench: ## run every load-generator scenario against the stack `make run` started
	scripts/bench.sh

build: ## cargo build --workspace
	cargo build --workspace

fmt: ## cargo fmt --all
	cargo fmt --all

lint: ## rustfmt check + clippy with warnings denied
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

validate-deploy: ## check docker-compose.yml, deploy/ (kustomize) and the Dockerfile offline
	scripts/validate-deploy.sh

deps: ## make sure PostgreSQL, Redis and NATS (JetStream) run on localhost
	scripts/ensure-deps.sh

deps-stop: ## stop the dependencies that scripts/ensure-deps.sh started (.dev/started.txt)
	scripts/ensure-deps.sh stop

schemas: ## regenerate proto-schemas/ from the Rust types
	UPDATE_SCHEMAS=1 cargo test -p chat-bus --test schemas
