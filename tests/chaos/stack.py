"""A private chat stack for the chaos suite and the supervisor test.

Everything here runs on ports picked at start and in one temporary directory, so
it never touches the machine's own PostgreSQL (5432), Redis (6379) or NATS
(4222), nor a `make run` in another terminal:

- `Deps`: a PostgreSQL cluster made with `initdb` (as the `postgres` user when we
  are root, because PostgreSQL refuses to run as root), `nats-server -js` with its
  own store directory, and `redis-server` without persistence.
- `Service`: one process of one of the four binaries, with its own log file; it
  can be killed, stopped, continued and started again on the same ports.
- `Stack`: the dependencies plus any number of replicas of each service.

Only the Python standard library is used. Every process is started in its own
session and stopped (SIGCONT first, then SIGTERM, SIGKILL after a grace period)
by `Stack.close()`, which also removes the temporary directory.
"""

import glob
import http.client
import json
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVICES = ("message-store", "presence", "notification", "gateway")


def free_port():
    """A TCP port nothing listens on right now, chosen at random below the kernel's
    ephemeral range (ip_local_port_range, 32768 and up by default): a port the OS
    hands out for bind(0) or an outgoing connection can be taken by another process
    before the server we start binds it; one below the range only by choice."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            start = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        start = 32768
    rng = random.SystemRandom()
    for _ in range(500):
        port = rng.randrange(10000, max(start, 12000))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def http_get(port, path, timeout=2.0):
    """(status, body) of GET http://127.0.0.1:port/path; (None, error) if nothing answers."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body
    except (OSError, http.client.HTTPException) as e:
        return None, str(e)


def wait_until(what, check, timeout, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout:.0f}s")


def _pg_bin():
    explicit = os.environ.get("PG_BIN")
    if explicit:
        return explicit
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(initdb)
    raise RuntimeError("PostgreSQL server binaries (initdb) not found: apt-get install postgresql, or set PG_BIN")


class Proc:
    """A child process in its own session, logging to a file."""

    def __init__(self, name, argv, log, env=None, user=None):
        self.name, self.argv, self.log, self.env, self.user = name, argv, log, env, user
        self.popen = None
        self.started_at = None
        # What stops it cleanly when the stack closes (PostgreSQL: SIGINT, a fast shutdown).
        self.stop_signal = signal.SIGTERM

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    def start(self):
        kw = {}
        if self.user is not None:
            pw = pwd.getpwnam(self.user)
            kw = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, start_new_session=True, **kw)
        self.started_at = time.monotonic()
        return self

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def send_signal(self, sig):
        if self.alive():
            os.kill(self.popen.pid, sig)

    def wait(self, timeout):
        if self.popen is None:
            return None
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, grace=10.0):
        """Stops the process (SIGCONT first, in case it was stopped), SIGKILL after `grace`."""
        if not self.alive():
            return
        self.send_signal(sig)
        self.send_signal(signal.SIGCONT)
        if self.wait(grace) is None:
            self.send_signal(signal.SIGKILL)
            self.wait(10)

    def tail(self, lines=30):
        try:
            with open(self.log, "rb") as f:
                return b"\n".join(f.read().splitlines()[-lines:]).decode("utf-8", "replace")
        except OSError:
            return ""


class Deps:
    """Private PostgreSQL, NATS (JetStream) and Redis in `dir`."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.pg_port, self.nats_port, self.redis_port = free_port(), free_port(), free_port()
        self.pg_user = "postgres" if os.geteuid() == 0 else None
        self.pg_dir = os.path.join(tmp, "pg")
        self.pg = self.nats = self.redis = None

    @property
    def database_url(self):
        return f"postgres://postgres@127.0.0.1:{self.pg_port}/chat"

    @property
    def nats_url(self):
        return f"nats://127.0.0.1:{self.nats_port}"

    @property
    def redis_url(self):
        return f"redis://127.0.0.1:{self.redis_port}"

    def start(self):
        self._init_pg()
        self.start_pg()
        self.start_nats()
        self.start_redis()
        self._psql("CREATE DATABASE chat")
        return self

    def _init_pg(self):
        os.makedirs(self.pg_dir)
        if self.pg_user:
            pw = pwd.getpwnam(self.pg_user)
            os.chmod(self.tmp, 0o755)
            os.chown(self.pg_dir, pw.pw_uid, pw.pw_gid)
        argv = [os.path.join(_pg_bin(), "initdb"), "-D", os.path.join(self.pg_dir, "data"), "-U", "postgres",
                "-A", "trust", "-E", "UTF8", "--no-sync"]
        log = os.path.join(self.tmp, "logs", "initdb.log")
        p = Proc("initdb", argv, log, user=self.pg_user).start()
        if p.wait(120) != 0:
            raise RuntimeError(f"initdb failed:\n{p.tail()}")

    def start_pg(self):
        # fsync off: the faults here kill processes, not the machine, so what a
        # committed transaction wrote is in the page cache either way.
        argv = [os.path.join(_pg_bin(), "postgres"), "-D", os.path.join(self.pg_dir, "data"),
                "-p", str(self.pg_port), "-k", self.pg_dir, "-c", "listen_addresses=127.0.0.1",
                "-c", "fsync=off", "-c", "max_connections=200", "-c", "shared_buffers=64MB"]
        self.pg = Proc("postgres", argv, os.path.join(self.tmp, "logs", "postgres.log"), user=self.pg_user)
        self.pg.stop_signal = signal.SIGINT
        self.pg.start()
        wait_until("PostgreSQL", lambda: self._pg_ready() or self._died(self.pg), 60)
        self._check_alive(self.pg)

    def _pg_ready(self):
        r = subprocess.run([os.path.join(_pg_bin(), "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.pg_port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return r.returncode == 0

    def stop_pg(self):
        """An immediate shutdown: backends end without a checkpoint, the next start
        recovers from the WAL (what a crash looks like to the services)."""
        self.pg.stop(signal.SIGQUIT, grace=30)

    def _psql(self, sql):
        subprocess.run(["psql", "-q", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres", "-d", "postgres",
                        "-v", "ON_ERROR_STOP=1", "-c", sql], check=True, stdout=subprocess.DEVNULL)

    def start_nats(self):
        argv = ["nats-server", "-a", "127.0.0.1", "-p", str(self.nats_port), "-js",
                "-sd", os.path.join(self.tmp, "nats")]
        self.nats = Proc("nats", argv, os.path.join(self.tmp, "logs", "nats.log")).start()
        wait_until("NATS", lambda: port_open(self.nats_port) or self._died(self.nats), 30)
        self._check_alive(self.nats)

    def start_redis(self):
        d = os.path.join(self.tmp, "redis")
        os.makedirs(d, exist_ok=True)
        argv = ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--dir", d,
                "--save", "", "--appendonly", "no", "--daemonize", "no"]
        self.redis = Proc("redis", argv, os.path.join(self.tmp, "logs", "redis.log")).start()
        wait_until("Redis", lambda: port_open(self.redis_port) or self._died(self.redis), 30)
        self._check_alive(self.redis)

    @staticmethod
    def _died(p):
        return not p.alive()

    @staticmethod
    def _check_alive(p):
        if not p.alive():
            raise RuntimeError(f"{p.name} exited at start:\n{p.tail()}")

    def procs(self):
        return [p for p in (self.redis, self.nats, self.pg) if p]

    def extra_env(self):
        """Settings every service gets besides the three URLs (none here)."""
        return {}

    def env_for(self, kind):
        """Settings of one kind of service only (none here)."""
        return {}


class Service:
    """One replica of one service binary."""

    def __init__(self, stack, kind, index, env):
        self.stack, self.kind, self.index, self.env = stack, kind, index, env
        self.name = kind if index == 0 else f"{kind}-{index + 1}"
        self.port = free_port()
        argv = [os.path.join(stack.bin_dir, kind)]
        log = os.path.join(stack.tmp, "logs", f"{self.name}.log")
        full = dict(os.environ, **env)
        if kind == "gateway":
            full["GATEWAY_ADDR"] = f"127.0.0.1:{self.port}"
            full.pop("OPS_ADDR", None)
        else:
            full["OPS_ADDR"] = f"127.0.0.1:{self.port}"
        self.proc = Proc(self.name, argv, log, env=full)

    def start(self):
        self.proc.start()
        return self

    def ready(self):
        status, _ = http_get(self.port, "/readyz")
        return status == 200

    def wait_ready(self, timeout=90):
        wait_until(f"{self.name} ready", lambda: self.ready() or not self.proc.alive(), timeout, 0.05)
        if not self.proc.alive():
            raise RuntimeError(f"{self.name} exited at start:\n{self.proc.tail()}")


class Stack:
    """Private dependencies plus `replicas` of each service, from `bin_dir`."""

    def __init__(self, bin_dir, replicas=None, env=None, keep=False, deps=None):
        """`deps(tmp)` makes the dependencies (default `Deps`: one PostgreSQL, NATS and
        Redis); `cluster.ClusterDeps` makes them clustered."""
        self.bin_dir = bin_dir
        for kind in SERVICES:
            path = os.path.join(bin_dir, kind)
            if not os.access(path, os.X_OK):
                raise RuntimeError(f"{path} not found: build the services first (cargo build --release --bins)")
        self.replicas = replicas or {k: 1 for k in SERVICES}
        self.tmp = tempfile.mkdtemp(prefix="chat-chaos-")
        os.makedirs(os.path.join(self.tmp, "logs"))
        self.keep = keep
        self.deps = (deps or Deps)(self.tmp)
        self.admin_key = "adm_chaos_" + os.urandom(16).hex()
        self.extra_env = env or {}
        self.services = {}

    def env(self):
        e = {
            "NATS_URL": self.deps.nats_url,
            "DATABASE_URL": self.deps.database_url,
            "REDIS_URL": self.deps.redis_url,
            "CHAT_ADMIN_API_KEY": self.admin_key,
            "CHAT_DEV_TENANT": "false",
            "LOG_FORMAT": "json",
            "RUST_LOG": "info",
        }
        e.update(self.deps.extra_env())
        e.update(self.extra_env)
        return e

    def start(self):
        self.deps.start()
        env = self.env()
        for kind in SERVICES:
            kind_env = dict(env, **self.deps.env_for(kind))
            self.services[kind] = [Service(self, kind, i, kind_env) for i in range(self.replicas.get(kind, 1))]
        # message-store first: it applies the migrations the others' tables need.
        first = self.services["message-store"][0].start()
        first.wait_ready()
        for svc in self.all_services():
            if svc is not first:
                svc.start()
        for svc in self.all_services():
            svc.wait_ready()
        return self

    def all_services(self):
        return [s for kind in SERVICES for s in self.services.get(kind, [])]

    def service(self, name):
        for s in self.all_services():
            if s.name == name:
                return s
        raise KeyError(name)

    def gateway_ports(self):
        return [g.port for g in self.services["gateway"]]

    def logs_tail(self, lines=20):
        out = []
        for p in [s.proc for s in self.all_services()] + self.deps.procs():
            out.append(f"--- {p.name} (last {lines} lines) ---\n{p.tail(lines)}")
        return "\n".join(out)

    def save_logs(self, dest):
        os.makedirs(dest, exist_ok=True)
        for f in glob.glob(os.path.join(self.tmp, "logs", "*.log")):
            shutil.copy(f, dest)
        return dest

    def close(self):
        for svc in reversed(self.all_services()):
            svc.proc.stop()
        for p in self.deps.procs():
            p.stop(p.stop_signal)
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


def json_or_none(body):
    try:
        return json.loads(body)
    except (ValueError, TypeError):
        return None
