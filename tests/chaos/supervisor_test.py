#!/usr/bin/env python3
"""`make run` keeps the stack up: scripts/run.sh restarts a service that dies.

Starts scripts/run.sh (SKIP_BUILD=1, SKIP_DEPS=1) against private PostgreSQL, NATS
and Redis on free ports, with the services on free ports and its own CHAT_DEV_DIR,
then checks that

1. a service killed with SIGKILL is started again (a new pid, ready again) after
   the first delay (1 s), while the other services keep their pids;
2. killed again right after, it is restarted after twice the delay (2 s);
3. the gateway too comes back, and the stack answers GET /health with 200;
4. Ctrl-C (SIGINT to the process group, as a terminal sends it) stops every
   service and run.sh exits 0.

Needs the binaries built (target/<profile>, PROFILE=release by default).
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import shutil
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from stack import ROOT, SERVICES, Deps, free_port, http_get, wait_until  # noqa: E402


def running(pid):
    """Whether `pid` is a live process (not gone, not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def children(ppid):
    """{service name: pid} of the live service processes whose parent is `ppid`."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        if comm in SERVICES and int(fields[1]) == ppid and fields[0] != "Z":
            out[comm] = int(d)
    return out


class Run:
    def __init__(self, tmp, deps, profile):
        self.ports = {svc: free_port() for svc in SERVICES}
        self.out_path = os.path.join(tmp, "run.out")
        env = dict(os.environ)
        env.update({
            "PROFILE": profile, "SKIP_BUILD": "1", "SKIP_DEPS": "1",
            "CHAT_DEV_DIR": os.path.join(tmp, "dev"),
            "NATS_URL": deps.nats_url, "DATABASE_URL": deps.database_url, "REDIS_URL": deps.redis_url,
            "GATEWAY_ADDR": f"127.0.0.1:{self.ports['gateway']}",
            "MESSAGE_STORE_OPS_ADDR": f"127.0.0.1:{self.ports['message-store']}",
            "PRESENCE_OPS_ADDR": f"127.0.0.1:{self.ports['presence']}",
            "NOTIFICATION_OPS_ADDR": f"127.0.0.1:{self.ports['notification']}",
            "LOG_FORMAT": "json", "CHAT_DEV_TENANT": "false",
        })
        for k in ("CHAT_ADMIN_API_KEY", "CHAT_DEV_API_KEY", "GATEWAY_STATIC_DIR", "RESTART"):
            env.pop(k, None)
        self.out = open(self.out_path, "wb")
        self.proc = subprocess.Popen([os.path.join(ROOT, "scripts", "run.sh")], env=env, stdout=self.out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def output(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def run_lines(self):
        """run.sh's own lines ("run: ..."), without the services' logs."""
        return [line for line in self.output().splitlines() if line.startswith("run: ")]

    def ready(self, svc):
        path = "/readyz"
        status, _ = http_get(self.ports[svc], path)
        return status == 200

    def close(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        for pid in children(self.proc.pid).values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.out.close()


def check(cond, what, run):
    if not cond:
        raise AssertionError(f"{what}\n--- run.sh output (last 40 run: lines) ---\n" + "\n".join(run.run_lines()[-40:]))


def kill_and_expect_restart(run, svc, delay):
    before = children(run.proc.pid)
    check(svc in before, f"{svc} is running before the kill", run)
    n_lines = len(run.run_lines())
    os.kill(before[svc], signal.SIGKILL)
    killed_at = time.monotonic()
    others = {k: v for k, v in before.items() if k != svc}

    def restarted():
        now = children(run.proc.pid)
        return svc in now and now[svc] != before[svc]
    wait_until(f"{svc} restarted", restarted, delay + 30)
    took = time.monotonic() - killed_at
    check(took >= delay - 0.5, f"{svc} restarted after {took:.1f}s, before its {delay}s delay", run)
    new = run.run_lines()[n_lines:]
    check(any(re.search(rf"{svc} killed by signal KILL .*restarting it in {delay}s", line) for line in new),
          f"run.sh logged the death of {svc} and a {delay}s delay", run)
    check(any(f"{svc} restarted (pid " in line for line in new), f"run.sh logged the restart of {svc}", run)
    wait_until(f"{svc} ready again", lambda: run.ready(svc), 90, 0.2)
    after = children(run.proc.pid)
    for k, pid in others.items():
        check(after.get(k) == pid, f"{k} kept its pid ({pid} -> {after.get(k)}) while {svc} restarted", run)
    check(run.proc.poll() is None, "run.sh is still running", run)
    print(f"supervisor: {svc} killed, back after {took:.1f}s (delay {delay}s), the others kept their pids", flush=True)


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main():
    # Stopped by a signal, still stop run.sh and the dependencies (the finally below).
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    profile = os.environ.get("PROFILE", "release")
    bin_dir = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")),
                           "release" if profile == "release" else "debug")
    for svc in SERVICES:
        if not os.access(os.path.join(bin_dir, svc), os.X_OK):
            print(f"supervisor: {bin_dir}/{svc} missing: build first (cargo build --bins)", file=sys.stderr)
            return 1
    tmp = tempfile.mkdtemp(prefix="chat-supervisor-")
    os.makedirs(os.path.join(tmp, "logs"))
    deps = Deps(tmp)
    run = None
    ok = False
    try:
        deps.start()
        run = Run(tmp, deps, profile)
        wait_until("run.sh banner", lambda: "chat backend is running" in run.output() or run.proc.poll() is not None,
                   180, 0.2)
        check(run.proc.poll() is None, "run.sh started the stack", run)
        started = children(run.proc.pid)
        check(sorted(started) == sorted(SERVICES), f"four services under run.sh: {started}", run)

        kill_and_expect_restart(run, "message-store", 1)
        kill_and_expect_restart(run, "message-store", 2)
        kill_and_expect_restart(run, "gateway", 1)

        def healthy():
            status, _ = http_get(run.ports["gateway"], "/health")
            return status == 200
        wait_until("GET /health answers 200 after the restarts", healthy, 60, 0.5)

        pids = children(run.proc.pid)
        os.killpg(run.proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        rc = run.proc.wait(60)
        check(rc == 0, f"run.sh exits 0 on Ctrl-C (got {rc})", run)
        left = [svc for svc, pid in pids.items() if running(pid)]
        check(not left, f"every service stopped on Ctrl-C (left: {left})", run)
        check(any(line == "run: stopped" for line in run.run_lines()), "run.sh said it stopped", run)
        print("supervisor: Ctrl-C stopped every service, run.sh exited 0", flush=True)
        ok = True
    finally:
        if run:
            run.close()
        for p in deps.procs():
            p.stop(signal.SIGINT if p is deps.pg else signal.SIGTERM)
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            dest = os.path.join(ROOT, "target", "supervisor-test")
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(tmp, dest, ignore=shutil.ignore_patterns("pg", "nats", "redis"), dirs_exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            print(f"supervisor: FAILED; run.sh output and logs kept in {dest}", file=sys.stderr)
    print("supervisor: 1 passed, 0 failed", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
