#!/usr/bin/env python3
"""The stack past one machine, on this one: `make cluster`, and the dependencies of
the chaos suite's cluster mode (`chaos.py --cluster`).

`ClusterDeps` starts, from the engines installed on the machine, on free ports in the
stack's temporary directory:

- NATS: three `nats-server` nodes routed into one cluster, JetStream on each (the
  services' streams are kept on all three: `NATS_STREAM_REPLICAS=3`);
- PostgreSQL: a primary and a hot standby made with `pg_basebackup`, replicating
  synchronously (`synchronous_standby_names` names the standby), and a second cluster
  (`pg2`) that tenants can be placed on or moved to;
- Redis: a master, its replica, and three Sentinels (quorum 2) that fail it over.

The services get host lists, as they would in production: `NATS_URL` names the three
nodes, `DATABASE_URL` both PostgreSQL servers with `target_session_attrs=read-write`
(and `DATABASE_READ_URL` the same hosts with `read-only`), `REDIS_URL` the Sentinels
(`redis+sentinel://`), the gateway's rate limiter included.

`python3 tests/chaos/cluster.py` (what `make cluster` runs after building) starts all
of that plus two of each service, prints where to connect, writes the addresses to
`.dev/cluster.env` and runs until Ctrl-C, which stops everything. Only the Python
standard library is used.
"""

import argparse
import datetime
import glob
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from stack import ROOT, Proc, Stack, _pg_bin, free_port, port_open, wait_until  # noqa: E402

# The standby's application_name, which synchronous_standby_names names.
STANDBY_NAME = "standby1"
# The Redis master's name in the Sentinels' configuration.
MASTER_NAME = "chat"
# How long a master must be unreachable before the Sentinels agree it is down.
SENTINEL_DOWN_AFTER_MS = 1000

SERVICES_TWICE = {"message-store": 2, "presence": 2, "notification": 2, "gateway": 2}


def log(msg):
    print(f"cluster {datetime.datetime.now(datetime.timezone.utc).strftime('%H:%M:%S')} {msg}", flush=True)


def redis_cli(port, *args, timeout=3):
    """A redis-cli command's output lines (raises when it fails)."""
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args], capture_output=True,
                         text=True, timeout=timeout, check=True)
    return out.stdout.strip().splitlines()


def http_json(url, timeout=2):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


class ClusterDeps:
    """Three NATS nodes, PostgreSQL primary + synchronous standby and a second cluster,
    Redis master + replica + three Sentinels, in `tmp`."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.pg_user = "postgres" if os.geteuid() == 0 else None
        self.nats = [{"name": f"n{i + 1}", "port": free_port(), "cluster": free_port(), "monitor": free_port(),
                      "proc": None} for i in range(3)]
        self.cluster_name = f"chat-{os.getpid()}"
        # PostgreSQL servers by role: each {"port", "data", "proc"}; the two of the
        # replicated cluster swap roles at a promotion.
        self.primary = {"port": free_port(), "data": None, "proc": None}
        self.standby = {"port": free_port(), "data": None, "proc": None}
        self.pg2 = {"port": free_port(), "data": None, "proc": None}
        self.redis = [{"port": free_port(), "proc": None} for _ in range(2)]
        self.sentinels = [{"port": free_port(), "proc": None} for _ in range(3)]
        self.generation = 0

    # ------------------------------------------------------------ addresses --

    @property
    def nats_url(self):
        return ",".join(f"nats://127.0.0.1:{n['port']}" for n in self.nats)

    def nats_monitor_urls(self):
        return [f"http://127.0.0.1:{n['monitor']}" for n in self.nats]

    def _hosts(self, *nodes):
        return ",".join(f"127.0.0.1:{n['port']}" for n in nodes)

    @property
    def database_url(self):
        a, b = sorted((self.primary, self.standby), key=lambda n: n["port"])
        return (f"postgres://postgres@{self._hosts(a, b)}/chat"
                "?target_session_attrs=read-write&connect_timeout=2")

    @property
    def database_read_url(self):
        a, b = sorted((self.primary, self.standby), key=lambda n: n["port"])
        return (f"postgres://postgres@{self._hosts(a, b)}/chat"
                "?target_session_attrs=read-only&connect_timeout=2")

    @staticmethod
    def pg_url(node):
        return f"postgres://postgres@127.0.0.1:{node['port']}/chat"

    @property
    def redis_url(self):
        return f"redis+sentinel://{self.sentinel_list()}/{MASTER_NAME}"

    def sentinel_list(self):
        return ",".join(f"127.0.0.1:{s['port']}" for s in self.sentinels)

    def extra_env(self):
        return {
            "DATABASE_READ_URL": self.database_read_url,
            "DATABASE_CLUSTERS": "pg2",
            "DATABASE_URL_PG2": self.pg_url(self.pg2),
            "NATS_STREAM_REPLICAS": "3",
            "PRESENCE_REDIS_REPLICAS": "1",
        }

    def env_for(self, kind):
        """What one kind of service gets beyond the common environment (nothing now:
        every service follows the Sentinels)."""
        return {}

    def addresses(self, gateway_ports):
        """What `.dev/cluster.env` holds."""
        return {
            "GATEWAY_URLS": ",".join(f"http://127.0.0.1:{p}" for p in gateway_ports),
            "NATS_URLS": self.nats_url,
            "NATS_MONITOR_URLS": ",".join(self.nats_monitor_urls()),
            "PG_PRIMARY_URL": self.pg_url(self.primary),
            "PG_STANDBY_URL": self.pg_url(self.standby),
            "PG2_PRIMARY_URL": self.pg_url(self.pg2),
            "REDIS_SENTINELS": self.sentinel_list(),
            "REDIS_MASTER_NAME": MASTER_NAME,
            # What the services were given.
            "NATS_URL": self.nats_url,
            "DATABASE_URL": self.database_url,
            "DATABASE_READ_URL": self.database_read_url,
            "DATABASE_URL_PG2": self.pg_url(self.pg2),
            "REDIS_URL": self.redis_url,
        }

    def procs(self):
        nodes = [n["proc"] for n in self.nats] + [r["proc"] for r in self.redis]
        nodes += [s["proc"] for s in self.sentinels]
        nodes += [n["proc"] for n in (self.primary, self.standby, self.pg2)]
        return [p for p in nodes if p]

    def _log(self, name):
        return os.path.join(self.tmp, "logs", f"{name}.log")

    # ----------------------------------------------------------------- start --

    def start(self):
        os.chmod(self.tmp, 0o755)
        for i in range(3):
            self.start_nats(i)
        self.wait_nats()
        self._start_replicated_pg()
        self.pg2["data"] = self._initdb("pg2")
        self._start_pg(self.pg2, "pg2")
        self._psql(self.pg2["port"], "CREATE DATABASE chat")
        self._start_redis()
        return self

    # ------------------------------------------------------------------ NATS --

    def start_nats(self, i):
        n = self.nats[i]
        routes = ",".join(f"nats://127.0.0.1:{m['cluster']}" for m in self.nats)
        store = os.path.join(self.tmp, f"nats-{n['name']}")
        argv = ["nats-server", "-a", "127.0.0.1", "-p", str(n["port"]), "-m", str(n["monitor"]),
                "--server_name", n["name"], "--cluster_name", self.cluster_name,
                "--cluster", f"nats://127.0.0.1:{n['cluster']}", "--routes", routes, "-js", "-sd", store]
        n["proc"] = Proc(f"nats-{n['name']}", argv, self._log(f"nats-{n['name']}")).start()
        wait_until(f"NATS {n['name']}", lambda: port_open(n["port"]) or not n["proc"].alive(), 30)
        if not n["proc"].alive():
            raise RuntimeError(f"nats {n['name']} exited at start:\n{n['proc'].tail()}")

    def wait_nats(self):
        """Until every running node knows the JetStream meta leader."""
        def ready():
            for n in self.nats:
                if not (n["proc"] and n["proc"].alive()):
                    continue
                try:
                    if not http_json(f"http://127.0.0.1:{n['monitor']}/jsz").get("meta_cluster", {}).get("leader"):
                        return False
                except OSError:
                    return False
            return True
        wait_until("the NATS cluster's JetStream leader", ready, 120, 0.2)

    def kill_nats(self, i):
        n = self.nats[i]
        n["proc"].send_signal(signal.SIGKILL)
        n["proc"].wait(10)
        return n["name"]

    def nats_node_of(self, connection_name):
        """The node (index) a client connection of that name is on, if any."""
        for i, n in enumerate(self.nats):
            if not (n["proc"] and n["proc"].alive()):
                continue
            try:
                conns = http_json(f"http://127.0.0.1:{n['monitor']}/connz?limit=1024").get("connections") or []
            except OSError:
                continue
            if any(c.get("name") == connection_name for c in conns):
                return i
        return None

    # ------------------------------------------------------------ PostgreSQL --

    def _as_pg_user(self, path):
        if self.pg_user:
            pw = pwd.getpwnam(self.pg_user)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def _data_dir(self, name):
        self.generation += 1
        d = os.path.join(self.tmp, f"{name}-{self.generation}")
        os.makedirs(d, mode=0o700)
        self._as_pg_user(d)
        return d

    def _run_pg(self, program, *args):
        kw = {}
        if self.pg_user:
            pw = pwd.getpwnam(self.pg_user)
            kw = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        out = subprocess.run([os.path.join(_pg_bin(), program), *args], capture_output=True, text=True, **kw)
        if out.returncode != 0:
            raise RuntimeError(f"{program} failed:\n{out.stdout}{out.stderr}")

    def _initdb(self, name):
        d = self._data_dir(name)
        self._run_pg("initdb", "-D", d, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        return d

    def _start_pg(self, node, name, *settings):
        sock = os.path.join(self.tmp, f"{name}-sock")
        os.makedirs(sock, exist_ok=True)
        self._as_pg_user(sock)
        argv = [os.path.join(_pg_bin(), "postgres"), "-D", node["data"], "-p", str(node["port"]), "-k", sock]
        for s in ("listen_addresses=127.0.0.1", "fsync=off", "max_connections=300", "shared_buffers=64MB",
                  "wal_level=replica", "max_wal_senders=10", "wal_keep_size=256MB", "hot_standby=on",
                  "hot_standby_feedback=on", *settings):
            argv += ["-c", s]
        node["proc"] = Proc(f"postgres-{name}", argv, self._log(f"postgres-{name}"), user=self.pg_user)
        node["proc"].stop_signal = signal.SIGINT
        node["proc"].start()
        wait_until(f"PostgreSQL {name}", lambda: self._pg_ready(node["port"]) or not node["proc"].alive(), 120)
        if not node["proc"].alive():
            raise RuntimeError(f"postgres {name} exited at start:\n{node['proc'].tail()}")

    @staticmethod
    def _pg_ready(port):
        r = subprocess.run([os.path.join(_pg_bin(), "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return r.returncode == 0

    @staticmethod
    def _psql(port, sql, db="postgres"):
        out = subprocess.run(["psql", "-qAt", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", db,
                              "-v", "ON_ERROR_STOP=1", "-c", sql], capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"psql :{port} {sql!r} failed: {out.stderr}")
        return out.stdout.strip()

    def _start_replicated_pg(self):
        self.primary["data"] = self._initdb("pg-a")
        self._start_pg(self.primary, "pg-a")
        self._psql(self.primary["port"], "CREATE DATABASE chat")
        self._add_standby()

    def _add_standby(self):
        """A standby of the current primary (pg_basebackup), then synchronous replication
        to it: set in the primary's own configuration only, and only once the standby
        streams (until then every commit would wait)."""
        self.standby["data"] = self._data_dir("standby")
        self._run_pg("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary["port"]), "-U", "postgres",
                     "-D", self.standby["data"], "-R", "-X", "stream", "--no-sync", "-c", "fast")
        conninfo = (f"primary_conninfo=host=127.0.0.1 port={self.primary['port']} user=postgres "
                    f"application_name={STANDBY_NAME}")
        self._start_pg(self.standby, f"standby-{self.generation}", conninfo)
        self._psql(self.primary["port"], f"ALTER SYSTEM SET synchronous_standby_names = '{STANDBY_NAME}'")
        self._psql(self.primary["port"], "SELECT pg_reload_conf()")
        wait_until("the synchronous standby", lambda: self._psql(
            self.primary["port"],
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND sync_state = 'sync'") == "1",
            120, 0.2)

    def kill_pg_primary(self):
        self.primary["proc"].send_signal(signal.SIGKILL)
        self.primary["proc"].wait(10)

    def promote_pg_standby(self):
        """What CloudNativePG or Patroni does once the primary is gone: promote the
        standby (pg_promote), which then takes writes. The roles swap."""
        self._psql(self.standby["port"], "SELECT pg_promote(true, 60)")
        wait_until("the promoted standby", lambda: self._psql(
            self.standby["port"], "SELECT pg_is_in_recovery()") == "f", 60, 0.1)
        self.primary, self.standby = self.standby, self.primary
        self.standby["proc"] = None

    def rebuild_pg_standby(self):
        """A new standby where the old primary was (same port, fresh data), so the
        services' host list stays valid and replication is synchronous again."""
        self._add_standby()

    # ----------------------------------------------------------------- Redis --

    def _start_redis_node(self, i, replica_of=None):
        r = self.redis[i]
        d = os.path.join(self.tmp, "redis")
        os.makedirs(d, exist_ok=True)
        argv = ["redis-server", "--port", str(r["port"]), "--bind", "127.0.0.1", "--dir", d,
                "--dbfilename", f"dump-{r['port']}.rdb", "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]
        if replica_of:
            argv += ["--replicaof", "127.0.0.1", str(replica_of)]
        r["proc"] = Proc(f"redis-{r['port']}", argv, self._log(f"redis-{r['port']}")).start()
        wait_until(f"Redis :{r['port']}", lambda: port_open(r["port"]) or not r["proc"].alive(), 30)

    def _start_redis(self):
        self._start_redis_node(0)
        self._start_redis_node(1, replica_of=self.redis[0]["port"])
        master = self.redis[0]["port"]
        for s in self.sentinels:
            conf = os.path.join(self.tmp, f"sentinel-{s['port']}.conf")
            with open(conf, "w") as f:
                f.write(f"port {s['port']}\nbind 127.0.0.1\ndir {self.tmp}\n"
                        f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2\n"
                        f"sentinel down-after-milliseconds {MASTER_NAME} {SENTINEL_DOWN_AFTER_MS}\n"
                        f"sentinel failover-timeout {MASTER_NAME} 5000\n"
                        f"sentinel parallel-syncs {MASTER_NAME} 1\n")
            s["proc"] = Proc(f"sentinel-{s['port']}", ["redis-server", conf, "--sentinel"],
                             self._log(f"sentinel-{s['port']}")).start()

        def watched():
            for s in self.sentinels:
                try:
                    fields = redis_cli(s["port"], "SENTINEL", "master", MASTER_NAME)
                except (subprocess.SubprocessError, OSError):
                    return False
                info = dict(zip(fields[::2], fields[1::2]))
                if info.get("num-slaves") != "1" or info.get("num-other-sentinels") != "2":
                    return False
            return True
        wait_until("the Sentinels to see the master, its replica and each other", watched, 120, 0.2)

    def redis_master_port(self):
        for s in self.sentinels:
            try:
                return int(redis_cli(s["port"], "SENTINEL", "get-master-addr-by-name", MASTER_NAME)[1])
            except (subprocess.SubprocessError, OSError, IndexError, ValueError):
                continue
        raise RuntimeError("no Sentinel names the master")

    def kill_redis_master(self):
        port = self.redis_master_port()
        node = next(r for r in self.redis if r["port"] == port)
        node["proc"].send_signal(signal.SIGKILL)
        node["proc"].wait(10)
        return port

    def wait_redis_failover(self, old):
        def moved():
            try:
                return all(int(redis_cli(s["port"], "SENTINEL", "get-master-addr-by-name", MASTER_NAME)[1]) != old
                           for s in self.sentinels)
            except (subprocess.SubprocessError, OSError, IndexError, ValueError):
                return False
        wait_until("Sentinel to promote the replica", moved, 120, 0.1)
        return self.redis_master_port()

    def rejoin_redis(self, old):
        """The old master back, as a replica of the new one (as Sentinel would make it)."""
        i = next(i for i, r in enumerate(self.redis) if r["port"] == old)
        self._start_redis_node(i, replica_of=self.redis_master_port())


# --------------------------------------------------------------- make cluster --

def write_env(path, values):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("# Written by `make cluster` (tests/chaos/cluster.py); removed when it stops.\n")
        for k, v in values.items():
            f.write(f"{k}={v}\n")
    os.replace(tmp, path)


def serve(args):
    bin_dir = args.bin_dir or os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")),
                                           "release" if args.profile == "release" else "debug")
    dev_dir = args.dev_dir
    env_file = os.path.join(dev_dir, "cluster.env")
    admin_key = os.environ.get("CHAT_ADMIN_API_KEY")
    dev_key = os.environ.get("CHAT_DEV_API_KEY")
    if not admin_key or not dev_key:
        raise SystemExit("CHAT_ADMIN_API_KEY and CHAT_DEV_API_KEY must be set (scripts/cluster.sh reads .dev/keys.env)")
    static_dir = os.path.join(dev_dir, "demo")
    os.makedirs(static_dir, exist_ok=True)
    demo = os.path.join(static_dir, "ws-rooms-demo.html")
    if not os.path.exists(demo):
        shutil.copy(os.path.join(ROOT, "docs", "demo", "ws-rooms-demo.html"), demo)
    env = {
        "CHAT_DEV_TENANT": "true",
        "CHAT_DEV_API_KEY": dev_key,
        "GATEWAY_DEV_LOGIN": "1",
        "GATEWAY_STATIC_DIR": static_dir,
        # One directory both gateways write and read: on one box, that is shared storage.
        "GATEWAY_ATTACHMENTS": os.path.join(dev_dir, "cluster-attachments"),
        "LOG_FORMAT": "json",
        "RUST_LOG": os.environ.get("RUST_LOG", "info"),
    }
    if os.environ.get("GATEWAY_LINK_KEY"):
        env["GATEWAY_LINK_KEY"] = os.environ["GATEWAY_LINK_KEY"]
    started = time.monotonic()
    stack = Stack(bin_dir, SERVICES_TWICE, env, keep=args.keep, deps=ClusterDeps)
    stack.admin_key = admin_key
    stopping = {"signal": None}

    def on_signal(signum, _frame):
        stopping["signal"] = signum
        raise KeyboardInterrupt
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        log(f"starting in {stack.tmp} ({bin_dir})")
        stack.start()
        deps = stack.deps
        ports = stack.gateway_ports()
        write_env(env_file, deps.addresses(ports))
        gw = [f"http://127.0.0.1:{p}" for p in ports]
        pg = deps
        print(f"""
cluster: up in {time.monotonic() - started:.0f} s; Ctrl-C stops all of it.

   web chat     {gw[0]}/   {gw[1]}/   (either gateway; sign in as alice and bob)
   admin        {gw[0]}/admin   (with the admin key below)
   API docs     {gw[0]}/docs
   NATS         {deps.nats_url}
                monitoring {'  '.join(deps.nats_monitor_urls())}
   PostgreSQL   primary {pg.pg_url(pg.primary)}   standby {pg.pg_url(pg.standby)} (synchronous)
                second cluster pg2 {pg.pg_url(pg.pg2)}
   Redis        Sentinels {deps.sentinel_list()} (master "{MASTER_NAME}" now at 127.0.0.1:{deps.redis_master_port()})
   services     2 × gateway, message-store, presence, notification
   dev API key  {dev_key}
   admin key    {admin_key}

   addresses    {os.path.relpath(env_file, ROOT) if env_file.startswith(ROOT) else env_file}
   logs         {os.path.join(stack.tmp, 'logs')}
""", flush=True)
        while True:
            time.sleep(1)
            dead = [s.name for s in stack.all_services() if not s.proc.alive()]
            dead += [p.name for p in deps.procs() if not p.alive()]
            if dead:
                log(f"stopped on its own: {', '.join(dead)}; stopping everything (logs kept in target/cluster-logs)")
                stack.save_logs(os.path.join(ROOT, "target", "cluster-logs"))
                code = 1
                break
    except KeyboardInterrupt:
        log(f"signal {stopping['signal']}: stopping")
    except Exception as e:
        log(f"error: {e}")
        stack.save_logs(os.path.join(ROOT, "target", "cluster-logs"))
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.close()
        if os.path.exists(env_file):
            os.remove(env_file)
        for f in glob.glob(os.path.join(dev_dir, "cluster.env.tmp")):
            os.remove(f)
    log("stopped")
    return code


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=["release", "dev"], default=os.environ.get("PROFILE", "release"))
    p.add_argument("--bin-dir", help="where the four binaries are (default target/<profile>)")
    p.add_argument("--dev-dir", default=os.environ.get("CHAT_DEV_DIR", os.path.join(ROOT, ".dev")),
                   help="where cluster.env and the demo page go [.dev]")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (data, logs) after Ctrl-C")
    return serve(p.parse_args())


if __name__ == "__main__":
    sys.exit(main())
