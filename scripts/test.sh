#!/usr/bin/env bash
# What `make test` (and CI, through .ci/run) runs:
#   1. scripts/ensure-deps.sh   PostgreSQL, Redis, NATS+JetStream on localhost,
#                               Chromium (ensure-deps.sh browser),
#                               Prometheus + promtool (ensure-deps.sh prometheus),
#                               moto's S3 server (ensure-deps.sh s3), Node.js and
#                               socket.io-client (ensure-deps.sh socketio-client),
#                               openapi-spec-validator (ensure-deps.sh openapi-validator),
#                               Schemathesis (ensure-deps.sh schemathesis), which the
#                               contract test (tests/tests/e2e/contract.rs) runs against
#                               an in-process stack with bounded examples; `make
#                               contract` (scripts/contract.sh) runs it deeper
#   2. the workspace's tests    cargo nextest when installed, else cargo test
#   3. script-level tests against the built service binaries (debug build):
#      tests/tests/walkthrough         the newcomer's walkthrough: scripts/run.sh
#                                      started, the banner's URL opened in Chromium,
#                                      two people chat, /docs renders, /admin shows
#                                      the dev tenant's live connections, Ctrl-C
#                                      stops everything (an #[ignore]d test, run here)
#      tests/chaos/supervisor_test.py  `make run` restarts a killed service
#      tests/chaos/chaos.py --short    three faults under a small load: nothing
#                                      acknowledged is lost or stored twice
#      tests/chaos/cluster_test.py     `make cluster`: every address in
#                                      .dev/cluster.env answers, every dialect
#                                      works through either gateway, Ctrl-C stops it
#      tests/chaos/chaos.py --cluster --short   a NATS node, the Redis master and
#                                      the PostgreSQL primary lost under load on
#                                      the clustered stack: nothing lost or repeated
#   4. scripts/validate-deploy.sh
# Exits non-zero when any step fails. Extra arguments go to the test runner,
# e.g. `scripts/test.sh -p gateway` (and then step 3 is skipped, as it is with
# SKIP_SCRIPT_TESTS=1).
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
# Prometheus and promtool, for the test that scrapes the stack with the dashboard's
# and the alert rules' queries.
scripts/ensure-deps.sh prometheus
# moto's S3-compatible server, for the attachment tests against S3.
scripts/ensure-deps.sh s3
# Node.js and the stock socket.io-client, for the Socket.IO tests.
scripts/ensure-deps.sh socketio-client
# openapi-spec-validator, for the test that validates /openapi.json.
scripts/ensure-deps.sh openapi-validator
# Schemathesis, for the contract test (the gateway does what /openapi.json says).
scripts/ensure-deps.sh schemathesis
# initdb/pg_basebackup, redis-server (Sentinel), nats-server: the cluster tests and
# make cluster start engines of their own from these.
scripts/ensure-deps.sh cluster

scope=(--workspace)
[[ $# -eq 0 ]] || scope=("$@")

if cargo nextest --version >/dev/null 2>&1; then
    step "cargo nextest run ${scope[*]} --no-fail-fast"
    cargo nextest run "${scope[@]}" --no-fail-fast
else
    step "cargo test ${scope[*]} --no-fail-fast (cargo-nextest not installed)"
    cargo test "${scope[@]}" --no-fail-fast
fi

if [[ $# -eq 0 && ${SKIP_SCRIPT_TESTS:-} != 1 ]]; then
    step "service binaries for the script-level tests (cargo build --bins)"
    cargo build -p gateway -p message-store -p presence -p notification -p chatctl --bins
    step "the newcomer's walkthrough: make run, two people chat, /docs, /admin (tests/tests/walkthrough)"
    cargo test -p chat-e2e --test walkthrough -- --ignored --nocapture
    step "make run restarts a dead service (tests/chaos/supervisor_test.py)"
    PROFILE=dev python3 tests/chaos/supervisor_test.py
    step "faults under load, short (tests/chaos/chaos.py --short)"
    python3 tests/chaos/chaos.py --short --profile dev
    step "make cluster: every address answers, every dialect through either gateway, Ctrl-C (tests/chaos/cluster_test.py)"
    PROFILE=dev python3 tests/chaos/cluster_test.py
    step "nodes lost under load on the clustered stack, short (tests/chaos/chaos.py --cluster --short)"
    python3 tests/chaos/chaos.py --cluster --short --profile dev
fi

step "deployment files"
scripts/validate-deploy.sh

step "all checks passed"
