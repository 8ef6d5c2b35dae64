#!/usr/bin/env python3
"""Chaos suite: faults injected one at a time into a running stack under load, and
what each one cost, checked against the delivery promises of DESIGN.md.

The stack is private (see stack.py): its own PostgreSQL, NATS and Redis, two
gateways, two message-stores, presence and notification, from built binaries.
While it runs:

- senders POST messages over REST at a steady rate, each with a fresh
  `Idempotency-Key`; a send that fails (connection error, timeout, 5xx, 429) is
  retried with the same key, alternating gateways as a load balancer would;
- two WebSocket readers per room (one per gateway) read `/ws/{room}` and, after any
  disconnect, reconnect with `last_seq` = the last seq they saw.

Then, one at a time: kill -9 each service (and the second replica of gateway and
message-store; each is started again 1 s later, as `make run` would), restart NATS,
PostgreSQL and Redis (down a few seconds), SIGSTOP a service past the gateway's bus
timeout then SIGCONT. After each fault the suite measures

- lost: acknowledged sends that history does not return (same seq, id and content);
- duplicates: an idempotency key stored twice, or a socket that saw a seq twice;
- seq gaps: history seqs that are not 1..N in a room;
- socket missed: seqs a socket never saw (live or on resume);
- recovery: from the end of the fault (process started again, dependency back,
  SIGCONT) to the first send that succeeded after the last one that failed;
- longest send gap: the longest time without a successful send.

Exit status 1 when a fault lost, duplicated or skipped anything, or did not recover
within --max-recovery seconds. `--report FILE` writes the table into FILE between
the markers `<!-- chaos:begin -->` and `<!-- chaos:end -->`.

    python3 tests/chaos/chaos.py                 # the full suite (make chaos)
    python3 tests/chaos/chaos.py --short         # a few faults, small load (make test)
    python3 tests/chaos/chaos.py --cluster       # past one machine (make chaos CLUSTER=1)
    python3 tests/chaos/chaos.py --cluster --short   # its three node losses (make test)

With --cluster the dependencies are clustered (tests/chaos/cluster.py: three NATS
nodes with the streams on all three, a PostgreSQL primary with a synchronous standby
and a second cluster, Redis with a replica and three Sentinels; two of each service)
and the faults are the loss of a node: a NATS node, the Redis master (Sentinel fails
over), the PostgreSQL primary (the standby is promoted, as CloudNativePG would), a
gateway and a message-store, each SIGKILLed and not restarted while its recovery is
measured (from the kill); the services are never restarted. After each, the lost node
comes back (a NATS node restarted, the old Redis master as a replica, a new standby
made with pg_basebackup) so the next fault meets the whole cluster.
"""

import argparse
import datetime
import http.client
import os
import platform
import random
import signal
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from clients import Closed, Http, WebSocket  # noqa: E402
from cluster import SERVICES_TWICE, ClusterDeps  # noqa: E402
from stack import ROOT, Stack  # noqa: E402

RETRYABLE = {429, 500, 502, 503, 504}


def now():
    return time.monotonic()


def log(msg):
    print(f"chaos {datetime.datetime.now(datetime.timezone.utc).strftime('%H:%M:%S')} {msg}", flush=True)


# ---------------------------------------------------------------- the load --


class Load:
    """Senders and WebSocket readers, and everything they observed."""

    def __init__(self, stack, api_key, rooms, rate, http_timeout):
        self.stack, self.api_key, self.rooms, self.rate = stack, api_key, rooms, rate
        self.http_timeout = http_timeout
        self.ports = stack.gateway_ports()
        self.lock = threading.Lock()
        self.attempts = []  # (start, end, ok)
        self.acks = []  # dicts: key, room, seq, mid, t, tries
        self.unacked = []  # (key, room): still failing when the load stopped
        self.rejected = []  # (key, room, status, body): refused for good (a bug)
        self.sending = threading.Event()  # set while new sends start
        self.hard_stop = threading.Event()  # pending retries give up
        self.next_slot = now()
        self.threads = []
        self.readers = []
        for k, room in enumerate(rooms):
            for side in range(len(self.ports)):
                self.readers.append(Reader(self, room["room_id"], room["readers"][side], side))

    def start(self, workers):
        for r in self.readers:
            self.threads.append(r.start())
        deadline = now() + 30
        while now() < deadline and not all(r.connects for r in self.readers):
            time.sleep(0.05)
        if not all(r.connects for r in self.readers):
            raise RuntimeError("WebSocket readers could not connect")
        self.sending.set()
        for i in range(workers):
            t = threading.Thread(target=self._sender, args=(i,), daemon=True, name=f"sender-{i}")
            t.start()
            self.threads.append(t)

    def _slot(self):
        with self.lock:
            slot = max(self.next_slot, now())
            self.next_slot = slot + 1.0 / self.rate
        delay = slot - now()
        if delay > 0:
            time.sleep(delay)

    def _sender(self, i):
        try:
            self._send_loop(i)
        except Exception as e:  # a bug here must not quietly lower the load
            log(f"sender {i} failed: {e!r}")
            with self.lock:
                self.rejected.append((None, None, "sender crashed", repr(e)))

    def _send_loop(self, i):
        conns = [Http(p, self.http_timeout) for p in self.ports]
        side = i % len(conns)
        rng = random.Random(i)
        while self.sending.is_set():
            self._slot()
            if not self.sending.is_set():
                break
            room = self.rooms[rng.randrange(len(self.rooms))]
            key = uuid.uuid4().hex
            side = (side + 1) % len(conns)
            self._send(conns, side, room, key)
        for c in conns:
            c.close()

    def _send(self, conns, side, room, key):
        path = f"/rooms/{room['room_id']}/messages"
        headers = {"X-API-Key": self.api_key, "X-User-Id": room["sender"], "Idempotency-Key": key}
        body = {"content": f"chaos {key}"}
        backoff, tries = 0.05, 0
        while True:
            tries += 1
            start = now()
            try:
                status, data, _ = conns[side].request("POST", path, body, headers)
            except Exception:  # connection refused, reset, timeout: the gateway is not there
                status, data = None, None
            end = now()
            ok = status in (200, 201) and isinstance(data, dict) and "seq" in data
            with self.lock:
                self.attempts.append((start, end, ok, status or "conn"))
                if ok:
                    self.acks.append({"key": key, "room": room["room_id"], "seq": data["seq"],
                                      "mid": data.get("message_id"), "t": end, "tries": tries})
                elif status is not None and status not in RETRYABLE:
                    self.rejected.append((key, room["room_id"], status, data))
            if ok or (status is not None and status not in RETRYABLE):
                return
            if self.hard_stop.is_set():
                with self.lock:
                    self.unacked.append((key, room["room_id"]))
                return
            time.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 1.0)
            side = (side + 1) % len(conns)

    def stop_sending(self, grace):
        """No new sends; pending retries get `grace` seconds to succeed."""
        self.sending.clear()
        deadline = now() + grace
        senders = [t for t in self.threads if t.name.startswith("sender-")]
        for t in senders:
            t.join(max(0.0, deadline - now()))
        self.hard_stop.set()
        for t in senders:
            t.join(30)

    def stop_readers(self):
        for r in self.readers:
            r.stop.set()
        for r in self.readers:
            if r.thread:
                r.thread.join(10)


class Reader:
    """One live socket on /ws/{room}, resumed with last_seq after every disconnect."""

    def __init__(self, load, room_id, user, side):
        self.load, self.room_id, self.user, self.side = load, room_id, user, side
        self.name = f"{user}@gw{side + 1}"
        self.seen = set()
        self.last = 0
        self.connects = 0
        self.events = []  # (t, kind, detail): dup, jump, late, disconnect
        self.checked_upto = 0
        self.stop = threading.Event()
        self.thread = None

    def start(self):
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"reader-{self.name}")
        self.thread.start()
        return self.thread

    def _run(self):
        ports = self.load.ports
        side, backoff = self.side, 0.1
        while not self.stop.is_set():
            path = (f"/ws/{self.room_id}?token={self.load.api_key}&user_id={self.user}"
                    f"&user_name={self.user}&last_seq={self.last}")
            try:
                ws = WebSocket(ports[side], path, timeout=5)
            except Exception as e:  # refused, timed out, handshake refused
                self.events.append((now(), "connect_failed", f"gw{side + 1}: {e}"))
                side = (side + 1) % len(ports)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            self.connects += 1
            backoff = 0.1
            reason = self._read(ws)
            ws.close()
            self.events.append((now(), "disconnect", f"gw{side + 1}: {reason}"))
            self.stop.wait(0.05 + random.random() * 0.1)

    def _read(self, ws):
        while not self.stop.is_set():
            try:
                frame = ws.recv_json(0.5)
            except Closed as e:
                return f"close {e.code}"
            except Exception as e:  # reset, garbage
                return f"error {e}"
            if frame is None or frame.get("type") != "message":
                continue
            seq = frame["data"]["seq"]
            t = now()
            if seq in self.seen:
                self.events.append((t, "dup", seq))
            elif seq < self.last:
                self.events.append((t, "late", seq))
            elif seq > self.last + 1:
                self.events.append((t, "jump", (self.last + 1, seq - 1)))
            self.seen.add(seq)
            self.last = max(self.last, seq)
        return "stopped"


# ------------------------------------------------------------ verification --


class Verifier:
    """Reads history incrementally and checks acks, duplicates, gaps and sockets."""

    def __init__(self, load, port):
        self.load = load
        self.http = Http(port, 15)
        self.history = {r["room_id"]: {} for r in load.rooms}  # room -> seq -> (mid, key)
        self.keys = {}  # key -> [(room, seq)]
        self.acks_checked = 0

    def _get(self, path, user):
        status = None
        for attempt in range(20):
            try:
                status, data, _ = self.http.request(
                    "GET", path, headers={"X-API-Key": self.load.api_key, "X-User-Id": user})
                if status == 200:
                    return data
                if status not in RETRYABLE:
                    raise RuntimeError(f"GET {path} answered {status}: {data}")
            except (OSError, ValueError, http.client.HTTPException):
                pass
            time.sleep(0.5)
            self.http = Http(self.load.ports[attempt % len(self.load.ports)], 15)
        raise RuntimeError(f"GET {path} kept failing (last status {status})")

    def _fetch(self, room):
        """New history of one room; returns (duplicates, gaps) found in it."""
        hist = self.history[room["room_id"]]
        after = max(hist) if hist else 0
        dups = gaps = 0
        while True:
            page = self._get(f"/rooms/{room['room_id']}/messages?after_seq={after}&limit=100", room["sender"])
            msgs = page if isinstance(page, list) else (page or {}).get("messages", [])
            for m in msgs:
                seq = m["seq"]
                if seq != after + 1:
                    gaps += seq - after - 1
                content = m.get("content") or ""
                key = content[len("chaos "):] if content.startswith("chaos ") else None
                hist[seq] = (m.get("message_id"), key)
                if key is not None:
                    seen = self.keys.setdefault(key, [])
                    if seen:
                        dups += 1
                    seen.append((room["room_id"], seq))
                after = seq
            if len(msgs) < 100:
                return dups, gaps

    def check(self, reader_wait):
        """Checks everything acknowledged so far; returns the new findings."""
        with self.load.lock:
            acks = self.load.acks[self.acks_checked:]
            self.acks_checked = len(self.load.acks)
        found = {"lost": 0, "dup_stored": 0, "seq_gaps": 0, "socket_missed": 0, "lagging": 0}
        for room in self.load.rooms:
            d, g = self._fetch(room)
            found["dup_stored"] += d
            found["seq_gaps"] += g
        for a in acks:
            got = self.history[a["room"]].get(a["seq"])
            if got is None or got[0] != a["mid"] or got[1] != a["key"]:
                found["lost"] += 1
                log(f"LOST: ack {a} -> history has {got}")
        # Sockets: each must reach the newest seq read above, having seen every one.
        deadline = now() + reader_wait
        tops = {r: max(h) if h else 0 for r, h in self.history.items()}
        for rd in self.load.readers:
            top = tops[rd.room_id]
            while rd.last < top and now() < deadline:
                time.sleep(0.1)
            missing = [s for s in range(rd.checked_upto + 1, top + 1) if s not in rd.seen]
            if rd.last < top:
                found["lagging"] += 1
                log(f"socket {rd.name} stuck at seq {rd.last}, room is at {top}")
            if missing:
                found["socket_missed"] += len(missing)
                log(f"socket {rd.name} missed seqs {missing[:10]}{'...' if len(missing) > 10 else ''}")
            rd.checked_upto = max(rd.checked_upto, min(top, rd.last))
        return found


# ------------------------------------------------------------------ faults --


class Fault:
    """`inject()` does the harm and returns (when recovery is counted from, a note);
    `heal()`, when given, runs once the fault's figures are taken (a lost node comes
    back, so that the next fault meets the whole cluster again)."""

    def __init__(self, name, inject, heal=None):
        self.name, self.inject, self.heal = name, inject, heal


def kill9(stack, name, restart_after):
    def inject():
        svc = stack.service(name)
        svc.proc.send_signal(signal.SIGKILL)
        svc.proc.wait(10)
        time.sleep(restart_after)  # the supervisor's first delay
        svc.start()
        t1 = now()
        svc.wait_ready()
        return t1, f"ready {now() - t1:.1f}s after restart"
    return Fault(f"kill -9 {name}", inject)


def sigstop(stack, name, secs):
    def inject():
        svc = stack.service(name)
        svc.proc.send_signal(signal.SIGSTOP)
        time.sleep(secs)
        svc.proc.send_signal(signal.SIGCONT)
        return now(), f"stopped {secs:.0f}s"
    return Fault(f"SIGSTOP {name} {secs:.0f}s", inject)


def restart_dep(stack, dep, down):
    d = stack.deps

    def inject():
        if dep == "nats":
            d.nats.stop(signal.SIGTERM)
            time.sleep(down)
            d.start_nats()
        elif dep == "postgresql":
            d.stop_pg()
            time.sleep(down)
            d.start_pg()
        else:
            d.redis.stop(signal.SIGTERM)
            time.sleep(down)
            d.start_redis()
        return now(), f"down {down:.0f}s"
    how = {"postgresql": "immediate shutdown"}.get(dep, "SIGTERM")
    return Fault(f"restart {dep} ({how})", inject)


def lose_nats_node(stack):
    """SIGKILL of the NATS node that message-store's connections are on (else any
    service's): the services reconnect to the other two by themselves."""
    d = stack.deps
    state = {}

    def inject():
        i = next((n for n in (d.nats_node_of(name) for name in SERVICES_ON_NATS) if n is not None), 0)
        state["i"] = i
        name = d.kill_nats(i)
        return now(), f"node {name} SIGKILLed, not restarted during the measure"

    def heal():
        d.start_nats(state["i"])
        d.wait_nats()
    return Fault("kill a NATS node", inject, heal)


def lose_redis_master(stack):
    """SIGKILL of the Redis master: Sentinel promotes the replica; the old master comes
    back as a replica of the new one afterwards."""
    d = stack.deps
    state = {}

    def inject():
        state["old"] = d.kill_redis_master()
        t1 = now()
        new = d.wait_redis_failover(state["old"])
        return t1, f"Sentinel promoted :{new} {now() - t1:.1f}s after the kill"

    def heal():
        d.rejoin_redis(state["old"])
    return Fault("kill the Redis master", inject, heal)


def lose_pg_primary(stack):
    """SIGKILL of the PostgreSQL primary, then the standby promoted (what CloudNativePG
    or Patroni does); the services find it through their host list. Afterwards a new
    synchronous standby is made where the old primary was."""
    d = stack.deps

    def inject():
        d.kill_pg_primary()
        t1 = now()
        d.promote_pg_standby()
        return t1, f"standby promoted {now() - t1:.1f}s after the kill (synchronous replication)"
    return Fault("kill the PostgreSQL primary, promote the standby", inject, d.rebuild_pg_standby)


# The services' NATS connection names, the node of the first found is the one lost.
SERVICES_ON_NATS = ("message-store", "gateway", "presence", "notification")


def cluster_fault_list(stack, args):
    every = {
        "kill-nats-node": lose_nats_node(stack),
        "kill-redis-master": lose_redis_master(stack),
        "kill-pg-primary": lose_pg_primary(stack),
        "kill-gateway": kill9(stack, "gateway", 1.0),
        "kill-message-store": kill9(stack, "message-store", 1.0),
    }
    names = args.faults.split(",") if args.faults else (
        ["kill-nats-node", "kill-redis-master", "kill-pg-primary"] if args.short else list(every))
    unknown = [n for n in names if n not in every]
    if unknown:
        raise SystemExit(f"unknown cluster faults {unknown}; known: {', '.join(every)}")
    return [every[n] for n in names]


def fault_list(stack, args):
    stop_for = args.bus_timeout_ms / 1000 + 2
    every = {
        "kill-gateway-2": kill9(stack, "gateway-2", 1.0),
        "kill-message-store-2": kill9(stack, "message-store-2", 1.0),
        "kill-gateway": kill9(stack, "gateway", 1.0),
        "kill-message-store": kill9(stack, "message-store", 1.0),
        "kill-presence": kill9(stack, "presence", 1.0),
        "kill-notification": kill9(stack, "notification", 1.0),
        "restart-nats": restart_dep(stack, "nats", args.down),
        "restart-postgresql": restart_dep(stack, "postgresql", args.down),
        "restart-redis": restart_dep(stack, "redis", args.down),
        "stop-message-store": sigstop(stack, "message-store", stop_for),
        "stop-presence": sigstop(stack, "presence", stop_for),
        "stop-gateway-2": sigstop(stack, "gateway-2", stop_for),
    }
    names = args.faults.split(",") if args.faults else (
        ["kill-message-store-2", "restart-nats", "stop-message-store"] if args.short else list(every))
    unknown = [n for n in names if n not in every]
    if unknown:
        raise SystemExit(f"unknown faults {unknown}; known: {', '.join(every)}")
    return [every[n] for n in names]


# ------------------------------------------------------------------- stats --


def window_stats(load, t0, t1, t_end):
    with load.lock:
        attempts = [a for a in load.attempts if t0 <= a[1] <= t_end or t0 <= a[0] <= t_end]
        acked = sum(1 for a in load.acks if t0 <= a["t"] <= t_end)
    failures = [a for a in attempts if not a[2]]
    successes = sorted(a[1] for a in attempts if a[2])
    kinds = {}
    for a in failures:
        kinds[a[3]] = kinds.get(a[3], 0) + 1
    failed_as = ", ".join(f"{k}×{n}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
    if failures:
        failed_as += f" (started {min(a[0] for a in failures) - t0:+.1f}…{max(a[0] for a in failures) - t0:+.1f}s)"
    gap, prev = 0.0, t0
    for s in successes:
        gap = max(gap, s - prev)
        prev = s
    gap = max(gap, t_end - prev)
    if failures:
        last_fail_start = max(a[0] for a in failures)
        after = [a[1] for a in attempts if a[2] and a[0] >= last_fail_start]
        recovered = min(after) if after else None
        recovery = None if recovered is None else max(0.0, recovered - t1)
    else:
        recovery = 0.0
    return {"acked": acked, "failed": len(failures), "gap": gap, "recovery": recovery, "failed_as": failed_as}


def reader_stats(load, t0, t_end):
    out = {"socket_dup": 0, "socket_jumps": 0, "reconnects": 0}
    for r in load.readers:
        for t, kind, detail in list(r.events):
            if not t0 <= t <= t_end:
                continue
            if kind == "dup":
                out["socket_dup"] += 1
                log(f"socket {r.name} saw seq {detail} twice")
            elif kind in ("jump", "late"):
                out["socket_jumps"] += 1
            elif kind == "disconnect":
                out["reconnects"] += 1
    return out


def wait_for_success_after(load, t, timeout):
    deadline = now() + timeout
    while now() < deadline:
        with load.lock:
            if any(a[2] and a[0] >= t for a in load.attempts[-2000:]):
                return True
        time.sleep(0.05)
    return False


# ------------------------------------------------------------------ report --

COLUMNS = [("fault", "fault"), ("acked", "acked sends"), ("failed", "failed attempts"),
           ("gap", "longest send gap (s)"), ("recovery", "recovery (s)"), ("lost", "lost"),
           ("dup_stored", "dup stored"), ("socket_dup", "dup on socket"), ("seq_gaps", "seq gaps"),
           ("socket_missed", "socket missed seqs"), ("reconnects", "socket reconnects"), ("note", "note"),
           ("failed_as", "failed attempts: answer × count (start after fault)")]


def fmt(v):
    if v is None:
        return "never"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def table(rows):
    lines = ["| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(k)) for k, _ in COLUMNS) + " |")
    return "\n".join(lines)


def write_report(path, args, rows, totals, started, duration):
    cmd = "make chaos" if not args.short else "python3 tests/chaos/chaos.py --short"
    marker = "chaos"
    deps = f"dependencies down {args.down:.0f} s per restart."
    if args.cluster:
        cmd = "make chaos CLUSTER=1" if not args.short else "python3 tests/chaos/chaos.py --cluster --short"
        marker = "chaos-cluster"
        deps = ("3 NATS nodes (streams R3), PostgreSQL primary + synchronous standby (host lists), Redis master + "
                "replica + 3 Sentinels; 2 of each service.")
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    block = "\n".join([
        begin,
        f"Command: `{cmd}` ({' '.join(sys.argv[1:]) or 'defaults'}), "
        f"{started.strftime('%Y-%m-%d %H:%M UTC')}, {duration:.0f} s.",
        f"Machine: {os.cpu_count()} vCPU, {platform.system()} {platform.release()}, "
        f"{args.profile} binaries; everything (stack, load, suite) on this one machine.",
        f"Load: {args.rate} sends/s over REST into {args.rooms} rooms, {totals['readers']} "
        f"WebSocket readers; gateway bus timeout {args.bus_timeout_ms} ms; {deps}",
        "",
        table(rows),
        "",
        f"Totals: {totals['acked']} sends acknowledged, {totals['lost']} lost, {totals['dup_stored']} stored "
        f"twice, {totals['unacked']} never acknowledged ({totals['unacked_stored']} of them stored once, "
        f"which is allowed), {totals['rejected']} refused, {totals['socket_dup']} seqs seen twice on a socket, "
        f"{totals['socket_missed']} missed by a socket.",
        end,
    ])
    text = ""
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        text = head + block + tail
    elif text:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    else:
        text = "# Reliability\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)


# -------------------------------------------------------------------- main --


def setup(stack, args):
    port = stack.gateway_ports()[0]
    http = Http(port, 15)
    status, tenant, _ = http.request("POST", "/admin/tenants",
                                     {"name": "chaos", "rate_limit_per_sec": 100000},
                                     {"X-API-Key": stack.admin_key})
    if status != 201:
        raise RuntimeError(f"creating the tenant: {status} {tenant}")
    key = tenant["api_key"]
    rooms = []
    for k in range(args.rooms):
        sender, readers = f"s{k}", [f"r{k}a", f"r{k}b"]
        status, room, _ = http.request("POST", "/rooms", {"type": "group", "members": readers, "name": f"chaos {k}"},
                                       {"X-API-Key": key, "X-User-Id": sender})
        if status != 201:
            raise RuntimeError(f"creating a room: {status} {room}")
        rooms.append({"room_id": room["room_id"], "sender": sender, "readers": readers})
    return key, rooms


def self_check(stack, api_key, reader_wait):
    """Shows the checks can fail: a room with a message stored twice (same content
    under two keys, as a broken idempotency would store it), an acknowledgement that
    history does not match (as a lost message would look), and a socket that never
    saw seq 1 must come out as exactly one duplicate, one loss and one missed seq."""
    http = Http(stack.gateway_ports()[0], 15)
    headers = {"X-API-Key": api_key, "X-User-Id": "checker"}
    status, room, _ = http.request("POST", "/rooms", {"type": "group", "members": ["checker-r"]}, headers)
    if status != 201:
        raise RuntimeError(f"self-check room: {status} {room}")
    key, sent = uuid.uuid4().hex, []
    for n in range(2):
        status, m, _ = http.request("POST", f"/rooms/{room['room_id']}/messages", {"content": f"chaos {key}"},
                                    dict(headers, **{"Idempotency-Key": f"{key}-{n}"}))
        if status != 201:
            raise RuntimeError(f"self-check send: {status} {m}")
        sent.append(m)

    class Fake:
        pass
    load = Fake()
    load.lock, load.api_key, load.ports = threading.Lock(), api_key, stack.gateway_ports()
    load.rooms = [{"room_id": room["room_id"], "sender": "checker"}]
    load.acks = [{"key": key, "room": room["room_id"], "seq": sent[0]["seq"], "mid": "not-" + sent[0]["message_id"],
                  "t": now(), "tries": 1}]
    reader = Reader(load, room["room_id"], "checker-r", 0)
    reader.seen, reader.last = {sent[1]["seq"]}, sent[1]["seq"]
    load.readers = [reader]
    found = Verifier(load, load.ports[0]).check(reader_wait)
    expected = {"lost": 1, "dup_stored": 1, "seq_gaps": 0, "socket_missed": 1, "lagging": 0}
    if found != expected:
        raise RuntimeError(f"self-check: the checks found {found} where {expected} was planted")
    log(f"self-check: a planted loss, duplicate and missed seq were all found ({found})")


def run(args):
    bin_dir = args.bin_dir or os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")),
                                           "release" if args.profile == "release" else "debug")
    started, t_start = datetime.datetime.now(datetime.timezone.utc), now()
    replicas = {"message-store": 2, "presence": 1, "notification": 1, "gateway": 2}
    env = {"GATEWAY_BUS_TIMEOUT_MS": str(args.bus_timeout_ms)}
    deps = None
    if args.cluster:
        replicas, deps = SERVICES_TWICE, ClusterDeps
    stack = Stack(bin_dir, replicas, env, keep=args.keep, deps=deps)
    failed = True
    load = None
    try:
        log(f"starting the stack in {stack.tmp} ({bin_dir})")
        stack.start()
        key, rooms = setup(stack, args)
        if args.self_check:
            self_check(stack, key, args.reader_wait)
        load = Load(stack, key, rooms, args.rate, http_timeout=args.bus_timeout_ms / 1000 + 5)
        load.start(workers=max(4, min(48, args.rate // 6)))
        verifier = Verifier(load, stack.gateway_ports()[0])
        log(f"load: {args.rate} sends/s into {args.rooms} rooms, {len(load.readers)} sockets; warming up")
        time.sleep(args.settle)
        verifier.check(args.reader_wait)
        rows = []
        for fault in (cluster_fault_list if args.cluster else fault_list)(stack, args):
            t0 = now()
            log(f"fault: {fault.name}")
            t1, note = fault.inject()
            recovered = wait_for_success_after(load, t1, args.max_recovery + 10)
            time.sleep(args.settle)
            t_end = now()
            row = {"fault": fault.name, "note": note}
            row.update(window_stats(load, t0, t1, t_end))
            if not recovered:
                row["recovery"] = None
            row.update(verifier.check(args.reader_wait))
            row.update(reader_stats(load, t0, t_end))
            rows.append(row)
            log("  " + ", ".join(f"{k}={fmt(row.get(k))}" for k, _ in COLUMNS[1:]))
            if fault.heal:
                fault.heal()
                log("  healed: the cluster is whole again")
        load.stop_sending(grace=args.max_recovery)
        final = verifier.check(args.reader_wait)
        # Sends never acknowledged may or may not be stored; once at most.
        unacked_stored = sum(1 for k, _ in load.unacked if k in verifier.keys)
        # Everything stored once more, read from the start (nothing changed behind us).
        recheck = Verifier(load, stack.gateway_ports()[1])
        recheck.acks_checked = 0
        again = recheck.check(args.reader_wait)
        totals = {k: sum(r.get(k) or 0 for r in rows) + final[k] for k in final}
        totals["socket_dup"] = sum(r["socket_dup"] for r in rows)
        totals.update(acked=len(load.acks), unacked=len(load.unacked), unacked_stored=unacked_stored,
                      rejected=len(load.rejected), readers=len(load.readers))
        log(f"final pass {final}; re-read from the start {again}")
        print("\n" + table(rows) + "\n", flush=True)
        problems = []
        for r in rows:
            for k in ("lost", "dup_stored", "socket_dup", "seq_gaps", "socket_missed", "lagging"):
                if r.get(k):
                    problems.append(f"{r['fault']}: {k}={r[k]}")
            if r["recovery"] is None or r["recovery"] > args.max_recovery:
                problems.append(f"{r['fault']}: recovery {fmt(r['recovery'])} s > {args.max_recovery} s")
            elif r["recovery"] > args.recovery_target:
                log(f"note: {r['fault']} recovered in {r['recovery']:.2f} s, over the {args.recovery_target} s target")
        for k in ("lost", "dup_stored", "seq_gaps", "socket_missed", "lagging"):
            if final[k] or again[k]:
                problems.append(f"final check: {k}={final[k]} (re-read: {again[k]})")
        if load.rejected:
            problems.append(f"{len(load.rejected)} sends refused, e.g. {load.rejected[0]}")
        if args.report:
            write_report(args.report, args, rows, totals, started, now() - t_start)
            log(f"wrote {args.report}")
        if problems:
            log("FAILED:\n  " + "\n  ".join(problems))
        else:
            log(f"passed: {len(rows)} faults, {len(load.acks)} sends acknowledged, nothing lost or repeated")
            failed = False
    except Exception as e:
        log(f"error: {e!r}")
        raise
    finally:
        if load:
            load.sending.clear()
            load.hard_stop.set()
            load.stop_readers()
        if failed:
            dest = stack.save_logs(os.path.join(ROOT, "target", "chaos-logs"))
            log(f"service logs kept in {dest}")
        stack.close()
    return 1 if failed else 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--short", action="store_true", help="three faults and a small load (make test)")
    p.add_argument("--cluster", action="store_true",
                   help="on clustered dependencies (tests/chaos/cluster.py: 3 NATS nodes, PostgreSQL primary + "
                        "synchronous standby, Redis + Sentinels, 2 of each service), with the faults of a lost node: "
                        "kill-nats-node, kill-redis-master, kill-pg-primary, kill-gateway, kill-message-store "
                        "(--short: the first three)")
    p.add_argument("--profile", choices=["release", "dev"], default=os.environ.get("PROFILE", "release"))
    p.add_argument("--bin-dir", help="where the four binaries are (default target/<profile>)")
    p.add_argument("--rate", type=int, help="sends per second [200; 40 with --short]")
    p.add_argument("--rooms", type=int, help="rooms [10; 4 with --short]")
    p.add_argument("--faults", help="comma-separated subset, in order (default: all; --short: three)")
    p.add_argument("--down", type=float, help="seconds a restarted dependency stays down [5; 2 with --short]")
    p.add_argument("--settle", type=float, help="seconds of load after recovery before checking [5; 3 --short]")
    p.add_argument("--bus-timeout-ms", type=int, help="the gateways' GATEWAY_BUS_TIMEOUT_MS [5000; 2000 --short]")
    p.add_argument("--recovery-target", type=float, default=5.0, help="reported target, seconds [5]")
    p.add_argument("--max-recovery", type=float, help="fail above this many seconds [30; 60 with --short]")
    p.add_argument("--reader-wait", type=float, default=30.0, help="how long sockets may take to catch up [30]")
    p.add_argument("--report", help="write the results into this markdown file")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--no-self-check", dest="self_check", action="store_false",
                   help="skip planting a loss, a duplicate and a missed seq to show the checks find them")
    args = p.parse_args()
    short = args.short
    defaults = {"rate": (200, 40), "rooms": (10, 4), "down": (5.0, 2.0), "settle": (5.0, 3.0),
                "bus_timeout_ms": (5000, 2000), "max_recovery": (30.0, 60.0)}
    for k, (full, small) in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, small if short else full)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    # Both, explicitly: a shell that starts us in the background ignores SIGINT for us.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return run(args)
    except KeyboardInterrupt:
        log("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
