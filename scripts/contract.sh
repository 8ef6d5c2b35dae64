#!/usr/bin/env bash
# What `make contract` runs: the contract test (tests/tests/e2e/contract.rs) deeper than
# `make test` runs it. Schemathesis generates requests from the gateway's /openapi.json
# against the four services started in-process, in a tenant of its own, and fails on
# any answer the document does not promise (a 5xx, an undocumented status, content
# type or body). `make test` runs 10 examples per operation with a fixed seed; this runs
# CONTRACT_EXAMPLES (default 100) with every phase (examples, coverage, fuzzing,
# stateful) and a fresh CONTRACT_SEED (printed, to replay a failure).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/chat_test}"
export NATS_URL="${NATS_URL:-nats://127.0.0.1:4222}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
export CONTRACT_EXAMPLES="${CONTRACT_EXAMPLES:-100}"
export CONTRACT_PHASES="${CONTRACT_PHASES:-examples,coverage,fuzzing,stateful}"
export CONTRACT_SEED="${CONTRACT_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"

scripts/ensure-deps.sh
scripts/ensure-deps.sh schemathesis
echo "==> contract: ${CONTRACT_EXAMPLES} examples per operation, phases ${CONTRACT_PHASES}, seed ${CONTRACT_SEED}"
exec cargo test -p chat-e2e --test e2e contract -- --nocapture
