#!/usr/bin/env bash
# What `make bench` runs: every load-generator scenario against the stack that
# `make run` started (in another terminal), appending result lines to
# bench-results.jsonl and drawing BENCHMARKS.svg. Figures go into BENCHMARKS.md by hand,
# with the command lines printed here.
#
# Environment: LOADGEN_URL (default http://127.0.0.1:8000), BENCH_DURATION (seconds
# per step, default 10), BENCH_IDLE (idle checkpoints, default "10000,18000"),
# BENCH_QUICK=1 for a short smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -f .dev/keys.env ]]; then
    # shellcheck disable=SC1091
    source .dev/keys.env
fi
: "${CHAT_ADMIN_API_KEY:?set CHAT_ADMIN_API_KEY or start the stack with make run (it writes .dev/keys.env)}"
export CHAT_ADMIN_API_KEY
URL="${LOADGEN_URL:-http://127.0.0.1:8000}"
export LOADGEN_URL="$URL"

if ! curl -fsS -o /dev/null --max-time 3 "$URL/healthz" 2>/dev/null; then
    echo "bench: no gateway answers at $URL; start the stack first with: make run" >&2
    exit 1
fi

cargo build --release -q -p loadgen
LOADGEN=target/release/loadgen
OUT=bench-results.jsonl
D="${BENCH_DURATION:-10}"
IDLE="${BENCH_IDLE:-10000,18000}"
if [[ "${BENCH_QUICK:-0}" == 1 ]]; then
    D=3
    IDLE=1000
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# Loopback has ~28k ephemeral ports per source address: spread sockets over several.
SOURCES=127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4

# Waits (up to 3 minutes) until the machine is quiet: a scenario leaves work behind
# (offline-message notifications for members who have disconnected, presence expiry),
# which would otherwise be measured as part of the next scenario.
settle() {
    local i busy
    for ((i = 0; i < 90; i++)); do
        read -r _ a b c _ < /proc/stat
        sleep 2
        read -r _ d e f _ < /proc/stat
        busy=$(((d + e + f) - (a + b + c)))
        # user + nice + system ticks (100 a second per core): under a fifth of a core.
        if ((busy < 40)); then
            return
        fi
    done
    echo "bench: the machine did not settle; measuring anyway" >&2
}

run() {
    settle
    echo
    echo "\$ loadgen $*"
    "$LOADGEN" --out "$OUT" "$@"
}

echo "bench: $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), results appended to $OUT"
# Idle first: it measures the gateway's memory growth, which is only meaningful on a
# gateway whose allocator has not already kept the memory of an earlier scenario.
run --sources "$SOURCES" idle --connections "$IDLE"
run persist --via rest --duration "$D" --concurrency 64
run persist --via ws --duration "$D" --concurrency 64
run history --messages "$([[ "${BENCH_QUICK:-0}" == 1 ]] && echo 5000 || echo 100000)" --duration "$D"
# Issue 21's big-room target: 1,000 members connect to one room in <= 2 s, 5,000 in <= 10 s.
run connect --members 1000
run connect --members "$([[ "${BENCH_QUICK:-0}" == 1 ]] && echo 1000 || echo 5000)"
# Issue 24's target: search p99 <= 50 ms for a tenant with 1,000,000 messages in 1,000
# rooms, the searcher in 50 of them (seeding takes minutes; BENCH_QUICK seeds 20,000).
run search --messages "$([[ "${BENCH_QUICK:-0}" == 1 ]] && echo 20000 || echo 1000000)" --rooms 1000 --member-of 50 --duration "$D"
# The design's budget: the stack's CPU per message at 100 messages/s into 100 rooms of
# 10 connected members (1,000 deliveries/s), sent as send_message on /ws.
run fanout --rooms 100 --members 10 --rate 100 --duration "$((D * 2))"
# The same fan-out received over rest-chat.md's Socket.IO (/socket.io/, WebSocket
# transport) instead of /ws, so the two endpoints' costs sit side by side.
run fanout --rooms 100 --members 10 --rate 100 --duration "$((D * 2))" --receivers socketio
# Issue 23: what a reaction (add or take back, each fanned out to 10 connected members)
# costs against a message sent the same way, CPU per operation per process.
run reaction --concurrency 16 --members 10 --duration "$D"
# The fan-out curve: the rate grows by half each step (500 -> ~5,700 messages/s, i.e. up
# to ~57,000 deliveries/s); the result is the highest step with p99 <= 50 ms.
run fanout --rooms 100 --members 10 --rate 500 --duration "$D" --search --max-steps "$([[ "${BENCH_QUICK:-0}" == 1 ]] && echo 2 || echo 7)"
run bigroom --members "$([[ "${BENCH_QUICK:-0}" == 1 ]] && echo 500 || echo 5000)" --rate 20 --duration "$D"
"$LOADGEN" chart --input "$OUT" --output BENCHMARKS.svg
