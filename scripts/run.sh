#!/usr/bin/env bash
# Run the whole chat backend on this machine (what `make run` does):
#
#   1. scripts/ensure-deps.sh    PostgreSQL, Redis, NATS+JetStream on localhost
#   2. .dev/keys.env             admin + dev API keys, generated once
#   3. cargo build --bins        release by default, PROFILE=dev for a debug build
#   4. message-store, then presence, notification, gateway, each logging to
#      .dev/logs/<service>.log and echoed here with the service's name
#   5. supervise: a service that dies once all four were ready is restarted, as
#      docker compose's `restart: unless-stopped` does, after a delay that starts
#      at 1 s and doubles up to 30 s, back to 1 s once it stayed up 30 s; the
#      others keep running. Every exit and restart is logged with a "run:" line.
#      (A service that dies while the stack starts still stops everything: that
#      is a configuration problem, not a crash to ride out.)
#
# Ctrl-C (or SIGTERM) stops the four services (SIGTERM, SIGKILL after 10 s) and
# the dependencies that this run itself started, then exits 0.
#
# Environment (defaults in brackets):
#   PROFILE        release | dev                              [release]
#   SKIP_BUILD     1 to use the binaries already built        [unset]
#   SKIP_DEPS      1 to leave PostgreSQL/Redis/NATS alone (they run elsewhere) [unset]
#   READY_TIMEOUT  seconds to wait for each service to be ready [90]
#   RESTART        unless-stopped (restart a dead service) | no (stop them all,
#                  exit 1)                                    [unless-stopped]
#   RESTART_DELAY_MIN, RESTART_DELAY_MAX  seconds, first and longest delay
#                  before a restart                           [1, 30]
#   RESTART_RESET_AFTER  seconds a service must stay up for its delay to go
#                  back to RESTART_DELAY_MIN                  [30]
#   CHAT_DEV_DIR   where keys, logs and the demo page live    [.dev]
#   NATS_URL       [nats://127.0.0.1:4222]
#   DATABASE_URL   [postgres://postgres:postgres@127.0.0.1:5432/chat]
#   REDIS_URL      [redis://127.0.0.1:6379]
#   GATEWAY_ADDR   [127.0.0.1:8000]
#   GATEWAY_STATIC_DIR  pages served at /static/{file}      [.dev/demo, which starts
#                  with a copy of docs/demo/ws-rooms-demo.html to edit]
#   GATEWAY_DEV_LOGIN  1: the web app at / signs in by user name alone
#                  (POST /dev/token, users of the dev tenant); 0 to
#                  try the token/key sign-in instead               [1]
#   GATEWAY_ATTACHMENTS  where uploaded files are kept: a directory, file://<dir>
#                  or s3://<bucket>[/prefix] (README: Configuration)  [.dev/attachments]
#   GATEWAY_LINK_KEY  signs attachment links                 [generated once into
#                  .dev/keys.env]
#   MESSAGE_STORE_OPS_ADDR, PRESENCE_OPS_ADDR, NOTIFICATION_OPS_ADDR
#                  [127.0.0.1:9101, :9102, :9103] (passed as OPS_ADDR)
#   LOG_FORMAT [pretty], RUST_LOG [info], OTEL_EXPORTER_OTLP_ENDPOINT [unset]
#   CHAT_ADMIN_API_KEY, CHAT_DEV_API_KEY   override the ones in .dev/keys.env
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DEV_DIR="${CHAT_DEV_DIR:-$ROOT/.dev}"
LOG_DIR="$DEV_DIR/logs"
KEYS_FILE="$DEV_DIR/keys.env"
SERVICES=(message-store presence notification gateway)
STOP_TIMEOUT=10
READY_TIMEOUT="${READY_TIMEOUT:-90}"
RESTART="${RESTART:-unless-stopped}"
RESTART_DELAY_MIN="${RESTART_DELAY_MIN:-1}"
RESTART_DELAY_MAX="${RESTART_DELAY_MAX:-30}"
RESTART_RESET_AFTER="${RESTART_RESET_AFTER:-30}"

say() { printf 'run: %s\n' "$*"; }
die() {
    printf 'run: error: %s\n' "$*" >&2
    exit 1
}

case "${PROFILE:-release}" in
    release) BUILD_ARGS=(--release) PROFILE_DIR=release ;;
    dev | debug) BUILD_ARGS=() PROFILE_DIR=debug ;;
    *) die "PROFILE must be 'release' or 'dev', not '${PROFILE}'" ;;
esac
case $RESTART in
    unless-stopped | no) ;;
    *) die "RESTART must be 'unless-stopped' or 'no', not '${RESTART}'" ;;
esac
for v in RESTART_DELAY_MIN RESTART_DELAY_MAX RESTART_RESET_AFTER; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -ge 1 ]] || die "$v must be a whole number of seconds (at least 1)"
done
BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE_DIR"

export NATS_URL="${NATS_URL:-nats://127.0.0.1:4222}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/chat}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
export GATEWAY_ADDR="${GATEWAY_ADDR:-127.0.0.1:8000}"
if [[ -z ${GATEWAY_STATIC_DIR:-} ]]; then
    export GATEWAY_STATIC_DIR="$DEV_DIR/demo"
    mkdir -p "$GATEWAY_STATIC_DIR"
    [[ -f $GATEWAY_STATIC_DIR/ws-rooms-demo.html ]] ||
        cp "$ROOT/docs/demo/ws-rooms-demo.html" "$GATEWAY_STATIC_DIR/ws-rooms-demo.html"
fi
# Development only: anyone who reaches the gateway may act as any user of the dev
# tenant. The gateway's own default (and docker compose's, Kubernetes') is off.
export GATEWAY_DEV_LOGIN="${GATEWAY_DEV_LOGIN:-1}"
export GATEWAY_ATTACHMENTS="${GATEWAY_ATTACHMENTS:-$DEV_DIR/attachments}"
export LOG_FORMAT="${LOG_FORMAT:-pretty}"
export RUST_LOG="${RUST_LOG:-info}"

ops_addr() {
    case $1 in
        message-store) printf '%s' "${MESSAGE_STORE_OPS_ADDR:-127.0.0.1:9101}" ;;
        presence) printf '%s' "${PRESENCE_OPS_ADDR:-127.0.0.1:9102}" ;;
        notification) printf '%s' "${NOTIFICATION_OPS_ADDR:-127.0.0.1:9103}" ;;
        gateway) printf '%s' "$GATEWAY_ADDR" ;;
    esac
}

# "0.0.0.0:8000" -> "127.0.0.1:8000": an address a client on this machine can use.
local_addr() {
    local a=$1
    case $a in
        0.0.0.0:*) a="127.0.0.1:${a#0.0.0.0:}" ;;
        \[::\]:*) a="[::1]:${a#\[::\]:}" ;;
    esac
    printf '%s' "$a"
}

GATEWAY_HOSTPORT="$(local_addr "$GATEWAY_ADDR")"
GATEWAY_URL="http://$GATEWAY_HOSTPORT"

# --------------------------------------------------------------- HTTP probe --

# Print the HTTP status code of GET $1 ("" when nothing answers).
http_status() {
    local url=$1
    if command -v curl >/dev/null 2>&1; then
        curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" 2>/dev/null || true
        return
    fi
    local rest=${url#http://} hostport path host port line
    hostport=${rest%%/*}
    path=/${rest#*/}
    host=${hostport%:*}
    port=${hostport##*:}
    # shellcheck disable=SC2016 # expanded by the inner bash
    line="$(timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2" &&
        printf "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n" "$3" "$1" >&3 &&
        IFS= read -r line <&3 && printf "%s" "$line"' _ "$host" "$port" "$path" 2>/dev/null || true)"
    line=${line#HTTP/* }
    printf '%s' "${line%% *}"
}

port_open() {
    local hostport=$1
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "${hostport%:*}" "${hostport##*:}" 2>/dev/null
}

# --------------------------------------------------------- process control --

declare -A PIDS=()
# Supervision (section 6): when each service was last started, the delay before
# its next restart, and when a dead one is due to start again.
# Times are in milliseconds (now_ms), delays in seconds.
declare -A STARTED_AT=() DELAY=() RESTART_AT=() RESTARTS=()
NOW_MS=0
TAIL_PID=""
RUN_STARTED="$DEV_DIR/run-started.$$"
CLEANED=0

alive() { [[ -n ${PIDS[$1]:-} ]] && kill -0 "${PIDS[$1]}" 2>/dev/null; }

# NOW_MS = milliseconds since the epoch (bash 5's EPOCHREALTIME; date otherwise).
now_ms() {
    if [[ -n ${EPOCHREALTIME:-} ]]; then
        local t=${EPOCHREALTIME/[.,]/}
        NOW_MS=$((10#$t / 1000))
    else
        NOW_MS=$(date +%s%3N)
    fi
}

stop_services() {
    local svc i any
    for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do # gateway first
        svc=${SERVICES[i]}
        if alive "$svc"; then
            kill -TERM "${PIDS[$svc]}" 2>/dev/null || true
        fi
    done
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
        any=0
        for svc in "${SERVICES[@]}"; do
            alive "$svc" && any=1
        done
        [[ $any -eq 1 ]] || break
        sleep 0.1
    done
    for svc in "${SERVICES[@]}"; do
        if alive "$svc"; then
            say "$svc still running after ${STOP_TIMEOUT}s: SIGKILL"
            kill -KILL "${PIDS[$svc]}" 2>/dev/null || true
        fi
    done
    # No `wait` here: this runs in a signal trap, where a `wait` can block for good
    # (a Ctrl-C of the walkthrough test once hung here for over a minute with every
    # service gone). The services are dead or SIGKILLed; bash reaps them.
    PIDS=()
}

cleanup() {
    [[ $CLEANED -eq 0 ]] || return 0
    CLEANED=1
    local i
    trap '' INT TERM
    if [[ ${#PIDS[@]} -gt 0 ]]; then
        say "stopping services"
        stop_services
    fi
    if [[ -n $TAIL_PID ]]; then
        sleep 0.3 # let the last log lines through
        kill "$TAIL_PID" 2>/dev/null || true
        # Bounded, like the services above (no `wait` in a trap).
        for ((i = 0; i < 10; i++)); do
            kill -0 "$TAIL_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$TAIL_PID" 2>/dev/null || true
        TAIL_PID=""
    fi
    if [[ -s $RUN_STARTED ]]; then
        local -a names=()
        mapfile -t names <"$RUN_STARTED"
        say "stopping dependencies started by this run: ${names[*]}"
        "$ROOT/scripts/ensure-deps.sh" stop "${names[@]}" || true
    fi
    rm -f "$RUN_STARTED"
}

on_signal() {
    printf '\n'
    say "signal received, shutting down"
    cleanup
    say "stopped"
    exit 0
}

trap on_signal INT TERM
trap 'cleanup' EXIT

# -------------------------------------------------------------- 1. deps ----

mkdir -p "$DEV_DIR" "$LOG_DIR"
: >"$RUN_STARTED"
if [[ ${SKIP_DEPS:-} == 1 ]]; then
    say "SKIP_DEPS=1: not checking PostgreSQL, Redis and NATS"
else
    ENSURE_DEPS_REPORT="$RUN_STARTED" "$ROOT/scripts/ensure-deps.sh"
fi

# -------------------------------------------------------------- 2. keys ----

# shellcheck source=scripts/dev-keys.sh
source "$ROOT/scripts/dev-keys.sh"
dev_keys "$KEYS_FILE"

# ------------------------------------------------------------- 3. build ----

if [[ ${SKIP_BUILD:-} == 1 ]]; then
    say "SKIP_BUILD=1: using the binaries in ${BIN_DIR#"$ROOT"/}"
else
    say "cargo build ${BUILD_ARGS[*]} --bins"
    cargo build "${BUILD_ARGS[@]}" --bins
fi
for svc in "${SERVICES[@]}"; do
    [[ -x $BIN_DIR/$svc ]] || die "binary $BIN_DIR/$svc not found (build failed or PROFILE mismatch?)"
done

for svc in "${SERVICES[@]}"; do
    addr="$(local_addr "$(ops_addr "$svc")")"
    if port_open "$addr"; then
        die "$addr ($svc) is already in use: is another 'make run' running?"
    fi
done

# ----------------------------------------------------------- 4. services ---

# Echo every log to the terminal, each line prefixed with its service name.
start_log_tail() {
    local -a files=() tail_opts=(-n +1 -F)
    local svc
    for svc in "${SERVICES[@]}"; do
        files+=("$LOG_DIR/$svc.log")
    done
    # GNU tail: also end when this script dies, however it dies.
    if tail --version 2>/dev/null | grep -q GNU; then
        tail_opts+=("--pid=$$")
    fi
    local color=0
    [[ -t 1 ]] && color=1
    # With several files, tail marks each switch with "\n==> FILE <==".
    # The awk ignores SIGINT so that a Ctrl-C still shows the shutdown logs.
    tail "${tail_opts[@]}" "${files[@]}" 2>/dev/null > >(trap '' INT && exec awk -v color="$color" '
        BEGIN {
            split("message-store presence notification gateway", names, " ")
            split("36 35 33 32", codes, " ")
            for (i in names) col[names[i]] = codes[i]
            cur = "?"; held = 0
        }
        /^==> .* <==$/ {
            f = $0; sub(/^==> /, "", f); sub(/ <==$/, "", f)
            sub(/.*\//, "", f); sub(/\.log$/, "", f)
            cur = f; held = 0; next
        }
        $0 == "" && !held { held = 1; next }
        {
            if (held) { out(""); held = 0 }
            out($0)
        }
        function out(line) {
            if (color) printf "\033[%sm%-13s|\033[0m %s\n", col[cur], cur, line
            else printf "%-13s| %s\n", cur, line
            fflush()
        }') &
    TAIL_PID=$!
}

# Sockets are files: let the services (the gateway above all) hold as many as the
# machine allows.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

start_service() {
    local svc=$1 log="$LOG_DIR/$1.log"
    local -a envs=()
    if [[ $svc == gateway ]]; then
        envs=(-u OPS_ADDR)
    else
        envs=("OPS_ADDR=$(ops_addr "$svc")")
    fi
    env "${envs[@]}" "$BIN_DIR/$svc" >>"$log" 2>&1 </dev/null &
    PIDS[$svc]=$!
    now_ms
    STARTED_AT[$svc]=$NOW_MS
}

# Wait until GET $2 answers 200; $1 is the service whose process must stay up.
wait_ready() {
    local svc=$1 url=$2 deadline=$((SECONDS + READY_TIMEOUT)) code=""
    while ((SECONDS < deadline)); do
        if ! alive "$svc"; then
            sleep 0.3
            die "$svc exited during startup (log: ${LOG_DIR#"$ROOT"/}/$svc.log)"
        fi
        code="$(http_status "$url")"
        [[ $code == 200 ]] && return 0
        sleep 0.5
    done
    die "$svc not ready after ${READY_TIMEOUT}s: GET $url answered '${code:-nothing}'"
}

for svc in "${SERVICES[@]}"; do
    log="$LOG_DIR/$svc.log"
    [[ -f $log ]] && mv "$log" "$log.1"
    : >"$log"
done
start_log_tail

start_service message-store
wait_ready message-store "http://$(local_addr "$(ops_addr message-store)")/readyz"
for svc in presence notification gateway; do
    start_service "$svc"
done
for svc in presence notification; do
    wait_ready "$svc" "http://$(local_addr "$(ops_addr "$svc")")/readyz"
done
wait_ready gateway "$GATEWAY_URL/healthz"

# ------------------------------------------------------------- 5. banner ---

cat <<EOF

==============================================================================
 chat backend is running (${PROFILE_DIR} build)

   web chat    $GATEWAY_URL/   (open it in two windows; sign in as alice and bob)
   admin       $GATEWAY_URL/admin   (with the admin key below)
   API docs    $GATEWAY_URL/docs   (OpenAPI 3.1 at $GATEWAY_URL/openapi.json)
   REST        $GATEWAY_URL
   WebSocket   ws://$GATEWAY_HOSTPORT/ws/{room_id}?token=<key>&user_id=<user>
               ws://$GATEWAY_HOSTPORT/conversations/{room_id}/?token=<user token>
   demo page   $GATEWAY_URL/static/ws-rooms-demo.html
               (set roomId/apiKey/userId/userName in $GATEWAY_STATIC_DIR/ws-rooms-demo.html first)
   ops         message-store http://$(local_addr "$(ops_addr message-store)")  presence http://$(local_addr "$(ops_addr presence)")
               notification  http://$(local_addr "$(ops_addr notification)")  (/healthz /readyz /metrics)
   logs        ${LOG_DIR#"$ROOT"/}/<service>.log

   dev API key   $CHAT_DEV_API_KEY
   admin key     $CHAT_ADMIN_API_KEY
                 (kept in ${KEYS_FILE#"$ROOT"/})

 Try it from another terminal:

   KEY=$CHAT_DEV_API_KEY
   ROOM=\$(curl -s -X POST $GATEWAY_URL/rooms \\
     -H "X-API-Key: \$KEY" -H 'X-User-Id: alice' -H 'Content-Type: application/json' \\
     -d '{"type":"group","members":["alice","bob"],"name":"hello"}' \\
     | sed -n 's/.*"room_id" *: *"\([^"]*\)".*/\1/p'); echo "room: \$ROOM"
   curl -s -X POST "$GATEWAY_URL/rooms/\$ROOM/messages" \\
     -H "X-API-Key: \$KEY" -H 'X-User-Id: alice' -H 'Content-Type: application/json' \\
     -d '{"content":"hi"}'; echo
   curl -s "$GATEWAY_URL/rooms/\$ROOM/messages" \\
     -H "X-API-Key: \$KEY" -H 'X-User-Id: bob'; echo

 Ctrl-C stops the services (and whatever dependencies this run started).
==============================================================================

EOF

# ----------------------------------------------------------- 6. supervise --

# "status 1", "signal KILL": how a process that `wait` reported as $1 ended.
exit_reason() {
    local rc=$1 sig
    if ((rc > 128)) && sig="$(kill -l $((rc - 128)) 2>/dev/null)"; then
        printf 'killed by signal %s' "$sig"
    else
        printf 'exited with status %s' "$rc"
    fi
}

# A service has died: note it and schedule its restart (RESTART=unless-stopped),
# or stop everything (RESTART=no).
on_exit() {
    local svc=$1 rc=0 up delay
    wait "${PIDS[$svc]}" 2>/dev/null || rc=$?
    unset "PIDS[$svc]"
    now_ms
    up=$(((NOW_MS - ${STARTED_AT[$svc]:-$NOW_MS}) / 1000))
    if [[ $RESTART == no ]]; then
        say "$svc $(exit_reason "$rc") after ${up}s; stopping the others (RESTART=no)"
        exit 1
    fi
    delay=${DELAY[$svc]:-$RESTART_DELAY_MIN}
    if ((up >= RESTART_RESET_AFTER)); then
        delay=$RESTART_DELAY_MIN # it ran long enough: this is a fresh failure
    fi
    RESTART_AT[$svc]=$((NOW_MS + delay * 1000))
    # The delay after this one, if the restart does not stay up.
    DELAY[$svc]=$((delay * 2 > RESTART_DELAY_MAX ? RESTART_DELAY_MAX : delay * 2))
    say "$svc $(exit_reason "$rc") after ${up}s up; restarting it in ${delay}s (log: ${LOG_DIR#"$ROOT"/}/$svc.log)"
}

restart_due() {
    local svc=$1
    unset "RESTART_AT[$svc]"
    RESTARTS[$svc]=$((${RESTARTS[$svc]:-0} + 1))
    start_service "$svc"
    say "$svc restarted (pid ${PIDS[$svc]}, restart #${RESTARTS[$svc]})"
}

while :; do
    for svc in "${SERVICES[@]}"; do
        if [[ -n ${PIDS[$svc]:-} ]] && ! alive "$svc"; then
            on_exit "$svc"
        fi
        if [[ -n ${RESTART_AT[$svc]:-} ]]; then
            now_ms
            if ((NOW_MS >= ${RESTART_AT[$svc]})); then
                restart_due "$svc"
            fi
        fi
    done
    sleep 0.2 &
    wait $! || true
done
