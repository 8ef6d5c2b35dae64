#!/usr/bin/env bash
# What `make cluster` runs: the whole stack past one machine, on this one — three
# NATS nodes (JetStream streams on all three), a PostgreSQL primary with a
# synchronous standby and a second PostgreSQL cluster for tenant placement, Redis
# with a replica and three Sentinels, and two of each service — from the engines
# installed on the machine, on free ports, in a temporary directory
# (tests/chaos/cluster.py does the starting and the stopping).
#
#   1. scripts/ensure-deps.sh cluster   the engines' programs (installed, not started)
#   2. .dev/keys.env                    the same admin and dev keys as `make run`
#   3. cargo build --bins               release by default, PROFILE=dev for debug
#   4. python3 tests/chaos/cluster.py   starts everything, prints where to connect,
#                                       writes .dev/cluster.env, runs until Ctrl-C
#
# .dev/cluster.env names every address (comma-separated lists): GATEWAY_URLS,
# NATS_URLS, NATS_MONITOR_URLS, PG_PRIMARY_URL, PG_STANDBY_URL, PG2_PRIMARY_URL,
# REDIS_SENTINELS, and what the services were given (NATS_URL, DATABASE_URL,
# DATABASE_READ_URL, DATABASE_URL_PG2, REDIS_URL). It goes when the cluster stops.
# Ctrl-C (or SIGTERM) stops all of it; the machine's own PostgreSQL, Redis and NATS
# are never touched, and `make run` on :8000 can run beside it.
#
# Environment (defaults in brackets):
#   PROFILE      release | dev                                  [release]
#   SKIP_BUILD   1 to use the binaries already built            [unset]
#   SKIP_DEPS    1 to skip step 1                               [unset]
#   CHAT_DEV_DIR where keys, cluster.env and the demo page are [.dev]
#   KEEP         1 to keep the data and logs after Ctrl-C       [unset]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DEV_DIR="${CHAT_DEV_DIR:-$ROOT/.dev}"
KEYS_FILE="$DEV_DIR/keys.env"

say() { printf 'cluster: %s\n' "$*"; }
die() {
    printf 'cluster: error: %s\n' "$*" >&2
    exit 1
}

case "${PROFILE:-release}" in
    release) BUILD_ARGS=(--release) PROFILE_NAME=release ;;
    dev | debug) BUILD_ARGS=() PROFILE_NAME=dev ;;
    *) die "PROFILE must be release or dev, not $PROFILE" ;;
esac

if [[ ${SKIP_DEPS:-} != 1 ]]; then
    "$ROOT/scripts/ensure-deps.sh" cluster
fi

mkdir -p "$DEV_DIR"
# shellcheck source=scripts/dev-keys.sh
source "$ROOT/scripts/dev-keys.sh"
dev_keys "$KEYS_FILE"

if [[ ${SKIP_BUILD:-} == 1 ]]; then
    say "SKIP_BUILD=1: using the binaries already built"
else
    say "cargo build ${BUILD_ARGS[*]} --bins"
    cargo build "${BUILD_ARGS[@]}" -p gateway -p message-store -p presence -p notification -p chatctl --bins
fi

args=(--profile "$PROFILE_NAME" --dev-dir "$DEV_DIR")
[[ ${KEEP:-} == 1 ]] && args+=(--keep)
exec python3 "$ROOT/tests/chaos/cluster.py" "${args[@]}"
