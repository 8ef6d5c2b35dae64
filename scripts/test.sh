#!/usr/bin/env bash
# What `make test` (and CI, through .ci/run) runs:
#   1. scripts/ensure-deps.sh   PostgreSQL, Redis, NATS+JetStream on localhost,
#                               and Chromium (ensure-deps.sh browser)
#   2. the workspace's tests    cargo nextest when installed, else cargo test
#   3. scripts/validate-deploy.sh
# Exits non-zero when any step fails. Extra arguments go to the test runner,
# e.g. `scripts/test.sh -p gateway`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/chat_test}"
export NATS_URL="${NATS_URL:-nats://127.0.0.1:4222}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"

step() { printf '\n==> %s\n' "$*"; }

step "dependencies"
scripts/ensure-deps.sh
# Chromium, for the browser test of the ws-rooms.md demo page.
scripts/ensure-deps.sh browser

scope=(--workspace)
[[ $# -eq 0 ]] || scope=("$@")

if cargo nextest --version >/dev/null 2>&1; then
    step "cargo nextest run ${scope[*]} --no-fail-fast"
    cargo nextest run "${scope[@]}" --no-fail-fast
else
    step "cargo test ${scope[*]} --no-fail-fast (cargo-nextest not installed)"
    cargo test "${scope[@]}" --no-fail-fast
fi

step "deployment files"
scripts/validate-deploy.sh

step "all checks passed"
