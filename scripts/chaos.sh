#!/usr/bin/env bash
# What `make chaos` runs: the chaos suite (tests/chaos/chaos.py) against a private
# stack of its own — PostgreSQL, NATS and Redis on free ports in a temporary
# directory, two gateways, two message-stores, presence and notification — under
# load, with one fault at a time. The results go into RELIABILITY.md.
#
#   1. the four service binaries: cargo build --release (PROFILE=dev for debug;
#      SKIP_BUILD=1 to use what is built)
#   2. python3 tests/chaos/chaos.py --report RELIABILITY.md [extra arguments]
#
# Extra arguments go to chaos.py, e.g. `scripts/chaos.sh --faults restart-nats
# --rate 100` (`python3 tests/chaos/chaos.py --help` lists them). The machine's own
# PostgreSQL, Redis and NATS are never touched; only their programs are needed
# (initdb/postgres, redis-server, nats-server: `make deps` installs them).
#
# CLUSTER=1 (`make chaos CLUSTER=1`): the cluster mode, on three NATS nodes, a
# PostgreSQL primary with a synchronous standby, Redis with Sentinels and two of
# each service, losing one node at a time (chaos.py --cluster); its table goes into
# RELIABILITY.md's cluster section. Needs pg_basebackup, psql and redis-cli too
# (`scripts/ensure-deps.sh cluster`).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

case "${PROFILE:-release}" in
    release) BUILD_ARGS=(--release) PROFILE_NAME=release ;;
    dev | debug) BUILD_ARGS=() PROFILE_NAME=dev ;;
    *)
        printf 'chaos: PROFILE must be release or dev, not %s\n' "$PROFILE" >&2
        exit 1
        ;;
esac

missing=()
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1 ||
    [[ -n ${PG_BIN:-} ]] || missing+=(initdb)
extra=()
if [[ ${CLUSTER:-} == 1 ]]; then
    extra=(--cluster)
    command -v redis-cli >/dev/null 2>&1 || missing+=(redis-cli)
    command -v psql >/dev/null 2>&1 || missing+=(psql)
    compgen -G '/usr/lib/postgresql/*/bin/pg_basebackup' >/dev/null || command -v pg_basebackup >/dev/null 2>&1 ||
        [[ -n ${PG_BIN:-} ]] || missing+=(pg_basebackup)
fi
if [[ ${#missing[@]} -gt 0 ]]; then
    printf 'chaos: missing %s: run `make deps` (installs PostgreSQL, Redis, NATS) and python3\n' "${missing[*]}" >&2
    exit 1
fi

if [[ ${SKIP_BUILD:-} != 1 ]]; then
    printf '==> cargo build %s (the four services)\n' "${BUILD_ARGS[*]}"
    cargo build "${BUILD_ARGS[@]}" -p gateway -p message-store -p presence -p notification --bins
fi

printf '==> tests/chaos/chaos.py\n'
exec python3 tests/chaos/chaos.py --profile "$PROFILE_NAME" --report RELIABILITY.md "${extra[@]}" "$@"
