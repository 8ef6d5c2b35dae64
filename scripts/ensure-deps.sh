#!/usr/bin/env bash
# Make sure the three backing services the chat backend needs answer on
# localhost, installing (Debian packages) and starting whatever is missing:
#
#   PostgreSQL  127.0.0.1:5432   databases `chat` and `chat_test`
#   Redis       127.0.0.1:6379
#   NATS        127.0.0.1:4222   with JetStream enabled
#
# Idempotent: a dependency that already answers is left alone, so on a machine
# that runs them already this prints one line per dependency and changes nothing.
#
#   scripts/ensure-deps.sh browser   also installs Chromium (Debian's `chromium`)
#                                    when missing, for the browser tests (make test)
#   scripts/ensure-deps.sh prometheus  installs Prometheus and promtool (Debian's
#                                    `prometheus`) when missing, for the test that
#                                    scrapes the stack and checks the dashboard and
#                                    alert rules (make test); it starts no server
#   scripts/ensure-deps.sh s3        installs moto's S3-compatible server (PyPI
#                                    `moto[server]`) into .dev/moto-venv when missing,
#                                    for the attachment tests against S3 (make test;
#                                    the tests start and stop it themselves)
#   scripts/ensure-deps.sh socketio-client
#                                    Node.js (Debian's `nodejs` and `npm`) when
#                                    missing, and the stock socket.io-client the
#                                    Socket.IO tests drive (`npm ci` in
#                                    tests/socketio-client/, only when its
#                                    node_modules do not match the lockfile)
#   scripts/ensure-deps.sh openapi-validator
#                                    installs openapi-spec-validator (PyPI) into
#                                    .dev/openapi-venv, for the test that validates
#                                    the gateway's /openapi.json (make test)
#   scripts/ensure-deps.sh schemathesis
#                                    installs Schemathesis (PyPI) into
#                                    .dev/schemathesis-venv, for the contract test
#                                    (tests/tests/e2e/contract.rs: make test, make contract)
#   scripts/ensure-deps.sh cluster   the programs `make cluster`, the cluster chaos
#                                    run and the cluster tests start engines from
#                                    (Debian's postgresql: initdb, postgres,
#                                    pg_basebackup, psql; redis-server and
#                                    redis-cli, Sentinel being redis-server
#                                    --sentinel; nats-server), installed when
#                                    missing; it starts none of them
#
# What this script starts is recorded in .dev/started.txt, one line per
# dependency: "<name><TAB><shell command that stops it>". Stop them with
#
#   scripts/ensure-deps.sh stop            # everything listed there
#   scripts/ensure-deps.sh stop redis nats # only these
#
# If ENSURE_DEPS_REPORT names a file, the names started by *this* invocation are
# appended to it (scripts/run.sh uses this to stop only what its run started).
#
# Environment:
#   DEPS_WAIT_SECS   how long to wait for each port (default 30)
#   DEPS_PG_PORT, DEPS_REDIS_PORT, DEPS_NATS_PORT  other local ports (tests of
#                    this script; the services default to the standard ones)
#   PGUSER           PostgreSQL role used to create the databases (default postgres)
#   PGPASSWORD       its password (default postgres; ignored under trust auth)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEV_DIR="$ROOT/.dev"
STARTED_FILE="$DEV_DIR/started.txt"
WAIT_SECS="${DEPS_WAIT_SECS:-30}"

HOST=127.0.0.1
PG_PORT="${DEPS_PG_PORT:-5432}"
REDIS_PORT="${DEPS_REDIS_PORT:-6379}"
NATS_PORT="${DEPS_NATS_PORT:-4222}"
DATABASES=(chat chat_test)

export PGUSER="${PGUSER:-postgres}"
export PGPASSWORD="${PGPASSWORD:-postgres}"

say() { printf '%s\n' "$*"; }
die() {
    printf 'ensure-deps: error: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------- helpers --

# True when something accepts TCP connections on HOST:$1.
port_open() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$HOST" "$1" 2>/dev/null
}

# Wait (bounded) until HOST:$2 accepts connections; $1 names the dependency,
# $3 (optional) is a log file worth looking at when it does not come up.
wait_port() {
    local name=$1 port=$2 log=${3:-} i
    for ((i = 0; i < WAIT_SECS * 2; i++)); do
        port_open "$port" && return 0
        sleep 0.5
    done
    if [[ -n $log && -f $log ]]; then
        printf '%s: last lines of %s:\n' "$name" "$log" >&2
        tail -n 20 "$log" >&2 || true
    fi
    die "$name did not answer on $HOST:$port within ${WAIT_SECS}s"
}

# Run a command as root: directly when we are root, else through sudo.
as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root to run '$*' (not root and no sudo)"
    fi
}

# Run a command as the postgres OS user (root, runuser, su or sudo).
as_postgres() {
    if [[ $(id -un) == postgres ]]; then
        "$@"
    elif [[ $(id -u) -eq 0 ]] && command -v runuser >/dev/null 2>&1; then
        runuser -u postgres -- "$@"
    elif [[ $(id -u) -eq 0 ]]; then
        su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -u postgres "$@"
    else
        die "need root or sudo to run '$*' as the postgres user"
    fi
}

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 ||
        die "'$*' missing and apt-get not available: install $* yourself"
    if [[ $APT_UPDATED -eq 0 ]]; then
        say "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    say "apt-get install -y $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Replace the started.txt line of dependency $1 by "$1<TAB>$2".
record_started() {
    local name=$1 stop_cmd=$2 tmp
    mkdir -p "$DEV_DIR"
    tmp="$(mktemp "$DEV_DIR/started.XXXXXX")"
    if [[ -f $STARTED_FILE ]]; then
        awk -F '\t' -v n="$name" '$1 != n' "$STARTED_FILE" >"$tmp" || true
    fi
    printf '%s\t%s\n' "$name" "$stop_cmd" >>"$tmp"
    mv "$tmp" "$STARTED_FILE"
    if [[ -n ${ENSURE_DEPS_REPORT:-} ]]; then
        printf '%s\n' "$name" >>"$ENSURE_DEPS_REPORT"
    fi
}

# Newest installed PostgreSQL server major version (Debian layout), if any.
pg_version() {
    local d
    for d in /usr/lib/postgresql/*/bin/postgres; do
        [[ -x $d ]] || continue
        d=${d#/usr/lib/postgresql/}
        printf '%s\n' "${d%%/*}"
    done | sort -V | tail -n 1
}

psql_admin() {
    psql -h "$HOST" -p "$PG_PORT" -d postgres -v ON_ERROR_STOP=1 -X -q "$@"
}

# ------------------------------------------------------------- PostgreSQL --

ensure_postgres() {
    local installed=0 ver
    if port_open "$PG_PORT"; then
        say "postgres: running"
    else
        if [[ -z "$(pg_version)" ]] || ! command -v pg_ctlcluster >/dev/null 2>&1; then
            apt_install postgresql
            installed=1
        fi
        # The package's own start (if the machine has an init system) may
        # already have brought it up.
        if port_open "$PG_PORT"; then
            say "postgres: installed, started by the package"
        else
            ver="$(pg_version)"
            [[ -n $ver ]] || die "no PostgreSQL server found under /usr/lib/postgresql"
            if [[ ! -d /etc/postgresql/$ver/main ]]; then
                say "postgres: creating cluster $ver/main"
                as_root pg_createcluster "$ver" main >/dev/null
            fi
            say "postgres: starting cluster $ver/main"
            as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start ||
                die "could not start PostgreSQL $ver/main (see /var/log/postgresql/postgresql-$ver-main.log)"
            local sudo_prefix=""
            [[ $(id -u) -eq 0 ]] || sudo_prefix="sudo "
            record_started postgres "${sudo_prefix}pg_ctlcluster --skip-systemctl-redirect $ver main stop"
            wait_port postgres "$PG_PORT" "/var/log/postgresql/postgresql-$ver-main.log"
            say "postgres: started"
        fi
    fi

    command -v psql >/dev/null 2>&1 || apt_install postgresql-client

    # A freshly installed Debian PostgreSQL authenticates TCP clients by
    # password (md5/scram) and the postgres role has none: give it the one the
    # default DATABASE_URL uses. Under trust auth the password is ignored.
    if [[ $installed -eq 1 ]]; then
        say "postgres: setting the password of role postgres"
        (cd / && as_postgres psql -X -q -v ON_ERROR_STOP=1 \
            -c "ALTER ROLE postgres WITH PASSWORD 'postgres'") ||
            die "could not set the postgres role's password"
    fi

    local ok=0 i
    for ((i = 0; i < WAIT_SECS * 2; i++)); do
        if psql_admin -tA -c 'SELECT 1' >/dev/null 2>&1; then
            ok=1
            break
        fi
        sleep 0.5
    done
    if [[ $ok -eq 0 ]]; then
        psql_admin -tA -c 'SELECT 1' >&2 || true
        die "cannot log in to PostgreSQL at $HOST:$PG_PORT as '$PGUSER' (password from PGPASSWORD, default 'postgres')"
    fi

    local db
    for db in "${DATABASES[@]}"; do
        if [[ -z "$(psql_admin -tA -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]]; then
            psql_admin -c "CREATE DATABASE \"$db\"" ||
                die "could not create database $db"
            say "postgres: created database $db"
        fi
    done
}

# ------------------------------------------------------------------ Redis --

ensure_redis() {
    if port_open "$REDIS_PORT"; then
        say "redis: running"
        return
    fi
    if ! command -v redis-server >/dev/null 2>&1; then
        apt_install redis-server
        if port_open "$REDIS_PORT"; then
            say "redis: installed, started by the package"
            return
        fi
    fi
    mkdir -p "$DEV_DIR/redis"
    local pidfile="$DEV_DIR/redis.pid" log="$DEV_DIR/redis.log"
    say "redis: starting (log: ${log#"$ROOT"/})"
    redis-server --daemonize yes --bind "$HOST" --port "$REDIS_PORT" \
        --save "" --appendonly no --dir "$DEV_DIR/redis" \
        --pidfile "$pidfile" --logfile "$log" ||
        die "redis-server failed to start (see $log)"
    record_started redis "$(stop_pidfile_cmd "$pidfile" redis-server)"
    wait_port redis "$REDIS_PORT" "$log"
    say "redis: started"
}

# ------------------------------------------------------------------- NATS --

# Read the INFO line a NATS server greets every client with.
nats_info() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2" && IFS= read -r line <&3 && printf "%s\n" "$line"' \
        _ "$HOST" "$NATS_PORT" 2>/dev/null || true
}

ensure_nats() {
    local info
    if port_open "$NATS_PORT"; then
        info="$(nats_info)"
        if [[ $info != INFO* ]]; then
            die "something answers on $HOST:$NATS_PORT but it is not a NATS server"
        fi
        if [[ $info != *'"jetstream":true'* ]]; then
            die "the NATS server on $HOST:$NATS_PORT runs without JetStream; restart it with -js"
        fi
        say "nats: running"
        return
    fi
    if ! command -v nats-server >/dev/null 2>&1; then
        apt_install nats-server
        if port_open "$NATS_PORT"; then
            # Started by the package with its own config: check JetStream.
            ensure_nats
            return
        fi
    fi
    mkdir -p "$DEV_DIR/nats"
    local pidfile="$DEV_DIR/nats.pid" log="$DEV_DIR/nats.log" pid
    say "nats: starting with JetStream (log: ${log#"$ROOT"/})"
    # setsid: a Ctrl-C in the terminal must not kill it behind run.sh's back.
    setsid nats-server -a "$HOST" -p "$NATS_PORT" -js -sd "$DEV_DIR/nats" \
        -l "$log" </dev/null >/dev/null 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$pidfile"
    record_started nats "$(stop_pidfile_cmd "$pidfile" nats-server)"
    wait_port nats "$NATS_PORT" "$log"
    info="$(nats_info)"
    [[ $info == *'"jetstream":true'* ]] ||
        die "nats-server started but reports no JetStream (see $log)"
    say "nats: started"
}

# A stop command for a process whose pid is in $1, only if it still runs $2.
stop_pidfile_cmd() {
    # shellcheck disable=SC2016 # expanded when the stop command runs
    printf 'pid=$(cat %q 2>/dev/null) && [ "$(cat /proc/$pid/comm 2>/dev/null)" = %q ] && kill "$pid"; rm -f %q' \
        "$1" "$2" "$1"
}

# --------------------------------------------------------------- Chromium --

# The headless browser the end-to-end tests drive the ws-rooms.md demo page with.
# Installed, never started (each test launches its own).
ensure_chromium() {
    if [[ -n ${CHROMIUM:-} && -x $CHROMIUM ]] || [[ -x /usr/bin/chromium ]] || command -v chromium >/dev/null 2>&1; then
        say "chromium: installed"
        return
    fi
    apt_install chromium
    [[ -x /usr/bin/chromium ]] || command -v chromium >/dev/null 2>&1 ||
        die "chromium was installed but is not on the path"
    say "chromium: installed now"
}

# -------------------------------------------------------- socket.io-client --

# Node.js and the socket.io-client of tests/socketio-client/package-lock.json, for the
# Socket.IO end-to-end tests (tests/tests/e2e/socketio.rs runs the same step itself).
ensure_socketio_client() {
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        apt_install nodejs npm
    fi
    local dir="$ROOT/tests/socketio-client"
    if cmp -s "$dir/package-lock.json" "$dir/node_modules/.lock-installed" 2>/dev/null; then
        say "socket.io-client: installed"
        return
    fi
    (cd "$dir" && npm ci --no-audit --no-fund --silent && cp package-lock.json node_modules/.lock-installed)
    say "socket.io-client: installed now"
}

# ------------------------------------------------------------------- stop --

# Stop the dependencies named in $@ (all of started.txt when none given),
# waiting for their ports to close, and remove their lines.
stop_deps() {
    [[ -f $STARTED_FILE ]] || return 0
    local name cmd want port i
    local -a names=("$@")
    while IFS=$'\t' read -r name cmd; do
        [[ -n $name ]] || continue
        if [[ ${#names[@]} -gt 0 ]]; then
            want=0
            for n in "${names[@]}"; do [[ $n == "$name" ]] && want=1; done
            [[ $want -eq 1 ]] || continue
        fi
        say "$name: stopping"
        bash -c "$cmd" || printf '%s: stop command failed: %s\n' "$name" "$cmd" >&2
        case $name in
            postgres) port=$PG_PORT ;;
            redis) port=$REDIS_PORT ;;
            nats) port=$NATS_PORT ;;
            *) port= ;;
        esac
        if [[ -n $port ]]; then
            for ((i = 0; i < 20; i++)); do
                port_open "$port" || break
                sleep 0.5
            done
        fi
        local tmp
        tmp="$(mktemp "$DEV_DIR/started.XXXXXX")"
        awk -F '\t' -v n="$name" '$1 != n' "$STARTED_FILE" >"$tmp" || true
        mv "$tmp" "$STARTED_FILE"
    done < <(cat "$STARTED_FILE")
}

# Prometheus and promtool, for tests/tests/e2e/observability.rs. The test starts
# its own server (its own port, config and storage); the package's own service is
# neither needed nor touched.
ensure_prometheus() {
    if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
        say "prometheus: installed"
        return
    fi
    apt_install prometheus
    command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 ||
        die "prometheus was installed but prometheus or promtool is not on the path"
    say "prometheus: installed now"
}

# An S3-compatible server for the attachment tests (tests/tests/e2e/attachments.rs
# finds .dev/moto-venv/bin/moto_server, or $MOTO_SERVER). Only installed, never
# started here: each test starts its own on a free port.
MOTO_VERSION=5.2.5
# pip_tool NAME VENV REQUIREMENT PROGRAM: installs REQUIREMENT from PyPI into
# $DEV_DIR/VENV (made when missing) unless it is there already, stamped with the
# requirement, and checks that VENV/bin/PROGRAM exists.
pip_tool() {
    local name=$1 venv="$DEV_DIR/$2" requirement=$3 program=$4 stamp
    stamp="$venv/.installed"
    if [[ -x $venv/bin/$program && "$(cat "$stamp" 2>/dev/null)" == "$requirement" ]]; then
        say "$name: installed"
        return 0
    fi
    mkdir -p "$DEV_DIR"
    if [[ ! -x $venv/bin/python ]]; then
        python3 -m venv "$venv" >/dev/null 2>&1 || {
            rm -rf "$venv"
            apt_install python3-venv
            python3 -m venv "$venv" || die "python3 -m venv $venv failed"
        }
    fi
    say "$name: pip install $requirement into ${venv#"$ROOT"/}"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$requirement" ||
        die "pip install $requirement failed"
    [[ -x $venv/bin/$program ]] || die "$requirement was installed but $venv/bin/$program is missing"
    printf '%s' "$requirement" >"$stamp"
    say "$name: installed now"
}

ensure_moto() {
    pip_tool moto moto-venv "moto[server]==$MOTO_VERSION" moto_server
}

# openapi-spec-validator (PyPI) in its own venv, for the test that validates the
# gateway's /openapi.json.
OPENAPI_VALIDATOR_VERSION=0.9.0
# The engines' programs, for the processes make cluster and the tests start themselves.
ensure_cluster_programs() {
    local -a want=()
    if [[ -z "$(pg_version)" ]] || [[ ! -x /usr/lib/postgresql/$(pg_version)/bin/pg_basebackup ]]; then
        want+=(postgresql)
    fi
    command -v psql >/dev/null 2>&1 || want+=(postgresql-client)
    command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || want+=(redis-server)
    command -v nats-server >/dev/null 2>&1 || want+=(nats-server)
    if [[ ${#want[@]} -gt 0 ]]; then
        apt_install "${want[@]}"
    fi
    [[ -n "$(pg_version)" ]] || die "postgresql was installed but no /usr/lib/postgresql/*/bin/postgres"
    local p
    for p in psql redis-server redis-cli nats-server; do
        command -v "$p" >/dev/null 2>&1 || die "$p is not on the path after installing ${want[*]}"
    done
    say "cluster programs: PostgreSQL $(pg_version) (initdb, pg_basebackup), redis-server (and --sentinel), nats-server $(nats-server --version 2>/dev/null | awk '{print $2}')"
}

# Schemathesis (PyPI) in its own venv, for the contract test against /openapi.json.
SCHEMATHESIS_VERSION=4.32.5
ensure_schemathesis() {
    pip_tool schemathesis schemathesis-venv "schemathesis==$SCHEMATHESIS_VERSION" schemathesis
}

ensure_openapi_validator() {
    pip_tool openapi-spec-validator openapi-venv "openapi-spec-validator==$OPENAPI_VALIDATOR_VERSION" openapi-spec-validator
}

# ------------------------------------------------------------------- main --

case "${1:-}" in
    stop)
        shift
        stop_deps "$@"
        ;;
    "" | start)
        command -v timeout >/dev/null 2>&1 || die "coreutils 'timeout' is required"
        mkdir -p "$DEV_DIR"
        ensure_postgres
        ensure_redis
        ensure_nats
        ;;
    browser)
        ensure_chromium
        ;;
    prometheus)
        ensure_prometheus
        ;;
    s3)
        ensure_moto
        ;;
    socketio-client)
        ensure_socketio_client
        ;;
    openapi-validator)
        ensure_openapi_validator
        ;;
    schemathesis)
        ensure_schemathesis
        ;;
    cluster)
        ensure_cluster_programs
        ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
        ;;
    *)
        die "usage: $0 [start|browser|prometheus|s3|socketio-client|openapi-validator|schemathesis|cluster|stop [postgres|redis|nats]...]"
        ;;
esac
