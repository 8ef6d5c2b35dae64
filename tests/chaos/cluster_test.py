#!/usr/bin/env python3
"""`make cluster` as a newcomer runs it: scripts/cluster.sh starts the stack past one
machine (three NATS nodes, PostgreSQL primary + synchronous standby and a second
cluster, Redis + replica + three Sentinels, two of each service), and then

1. `.dev/cluster.env` (a private CHAT_DEV_DIR here) names every address the issue
   lists — GATEWAY_URLS, NATS_URLS, NATS_MONITOR_URLS, PG_PRIMARY_URL,
   PG_STANDBY_URL, PG2_PRIMARY_URL, REDIS_SENTINELS — and each of them answers;
2. through *either* gateway: the web app (`/`), the API docs (`/openapi.json`), the
   REST API of `rest-rooms.md` (a room made through one gateway, a message sent
   through it and read back through the other), the `/api/v1` helpers, `/api/chat`
   with a user token, Socket.IO's handshake, and both WebSocket dialects: a
   message sent on `/ws` through one gateway arrives on `/conversations` through
   the other;
3. `chatctl clusters` lists both PostgreSQL clusters (main, with standby reads,
   and pg2);
4. Ctrl-C (SIGINT to the process group, as a terminal sends it) stops all of it:
   cluster.sh exits 0, cluster.env is gone and nothing listens on any port it named.

Needs the binaries built (SKIP_BUILD=1; target/<PROFILE>, release by default).
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from clients import Http, WebSocket  # noqa: E402
from stack import ROOT, http_get, port_open, wait_until  # noqa: E402

NAMED = ("GATEWAY_URLS", "NATS_URLS", "NATS_MONITOR_URLS", "PG_PRIMARY_URL", "PG_STANDBY_URL", "PG2_PRIMARY_URL",
         "REDIS_SENTINELS")


def log(msg):
    print(f"cluster-test {time.strftime('%H:%M:%S')} {msg}", flush=True)


def read_env(path):
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                out[k] = v
    return out


def ports_of(env):
    """Every TCP port the addresses in cluster.env name."""
    ports = set()
    for key in NAMED:
        for item in env[key].split(","):
            netloc = urllib.parse.urlsplit(item if "://" in item else f"x://{item}").netloc
            host_port = netloc.rsplit("@", 1)[-1]
            ports.add(int(host_port.rsplit(":", 1)[1]))
    return ports


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def expect_frame(ws, pred, what, secs=20):
    deadline = time.monotonic() + secs
    seen = []
    while time.monotonic() < deadline:
        f = ws.recv_json(1.0)
        if f is None:
            continue
        if pred(f):
            return f
        seen.append(f)
    raise AssertionError(f"{what}: not within {secs}s; saw {seen[-5:]}")


def exercise(env, dev_key):
    gws = [int(urllib.parse.urlsplit(u).port) for u in env["GATEWAY_URLS"].split(",")]
    check(len(gws) == 2, f"two gateways in GATEWAY_URLS: {env['GATEWAY_URLS']}")
    for url in env["NATS_MONITOR_URLS"].split(","):
        status, body = http_get(int(urllib.parse.urlsplit(url).port), "/varz")
        check(status == 200 and b'"cluster"' in body, f"NATS monitoring {url}/varz answered {status}")
    for item in env["REDIS_SENTINELS"].split(","):
        check(port_open(int(item.rsplit(":", 1)[1])), f"Sentinel {item} is not listening")
    for key in ("PG_PRIMARY_URL", "PG_STANDBY_URL", "PG2_PRIMARY_URL"):
        r = subprocess.run(["psql", env[key], "-qAtc", "SELECT pg_is_in_recovery()"], capture_output=True, text=True)
        check(r.returncode == 0, f"{key}: {r.stderr}")
        check(r.stdout.strip() == ("t" if key == "PG_STANDBY_URL" else "f"), f"{key} in recovery: {r.stdout!r}")

    for port in gws:
        status, body = http_get(port, "/")
        check(status == 200 and b"<html" in body.lower(), f"the web app on :{port}: {status}")
        status, _ = http_get(port, "/openapi.json")
        check(status == 200, f"/openapi.json on :{port}: {status}")
        status, body = http_get(port, "/socket.io/?EIO=4&transport=polling")
        check(status == 200 and body.startswith(b"0{"), f"Socket.IO handshake on :{port}: {status} {body[:40]!r}")

    a, b = (Http(p, 15) for p in gws)
    alice = {"X-API-Key": dev_key, "X-User-Id": "alice"}
    bob = {"X-API-Key": dev_key, "X-User-Id": "bob"}
    status, room, _ = a.request("POST", "/rooms", {"type": "group", "members": ["bob"], "name": "cluster"}, alice)
    check(status == 201, f"POST /rooms: {status} {room}")
    room_id = room["room_id"]
    status, sent, _ = a.request("POST", f"/rooms/{room_id}/messages", {"content": "through gateway 1"}, alice)
    check(status == 201, f"send: {status} {sent}")
    status, hist, _ = b.request("GET", f"/rooms/{room_id}/messages", None, bob)
    check(status == 200 and [m["message_id"] for m in hist] == [sent["message_id"]], f"history on gw2: {hist}")
    status, page, _ = b.request("GET", f"/api/v1/rooms/{room_id}/messages", None, bob)
    check(status == 200 and page["status"] == "success", f"/api/v1 helper on gw2: {status} {page}")
    status, tok, _ = a.request("POST", "/tokens", {"user_id": "bob"}, {"X-API-Key": dev_key})
    check(status == 201, f"POST /tokens: {status} {tok}")
    status, chats, _ = b.request("GET", "/api/chat", None, {"Authorization": f"Bearer {tok['token']}"})
    check(status == 200 and chats["success"], f"/api/chat on gw2: {status} {chats}")
    check(any(c["_id"] == room_id for c in chats["data"]["chats"]), f"bob's chats on gw2 include the room: {chats}")

    ws = WebSocket(gws[0], f"/ws/{room_id}?token={dev_key}&user_id=alice&user_name=Alice")
    conv = WebSocket(gws[1], f"/conversations/{room_id}/?token={dev_key}&user_id=bob&user_name=Bob")
    expect_frame(ws, lambda f: f.get("type") == "connection_status", "/ws connection_status")
    time.sleep(0.5)
    ws.send_json({"type": "send_message", "data": {"content": "over /ws", "local_id": "c1"}})
    expect_frame(ws, lambda f: f.get("type") == "message_sent", "/ws message_sent")
    frame = expect_frame(conv, lambda f: f.get("type") == "chat_message", "/conversations chat_message")
    check(frame["message"]["content"] == "over /ws", f"/conversations got {frame}")
    ws.close()
    conv.close()

    r = subprocess.run([os.path.join(BIN_DIR, "chatctl"), "--nats-url", env["NATS_URL"], "--json", "clusters"],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, f"chatctl clusters: {r.stderr}")
    check('"pg2"' in r.stdout and '"standby_reads": true' in r.stdout, f"chatctl clusters: {r.stdout}")


BIN_DIR = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")),
                       "release" if os.environ.get("PROFILE", "release") == "release" else "debug")


def main():
    dev_dir = tempfile.mkdtemp(prefix="chat-cluster-test-")
    env_file = os.path.join(dev_dir, "cluster.env")
    env = dict(os.environ, CHAT_DEV_DIR=dev_dir, SKIP_BUILD="1", SKIP_DEPS="1")
    proc = subprocess.Popen([os.path.join(ROOT, "scripts", "cluster.sh")], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output = []
    failed = True
    try:
        def up():
            if proc.poll() is not None:
                raise RuntimeError(f"cluster.sh exited with {proc.returncode}")
            return os.path.exists(env_file)
        started = time.monotonic()
        wait_until("make cluster to write cluster.env", up, 300, 0.2)
        log(f"up after {time.monotonic() - started:.0f}s")
        values = read_env(env_file)
        missing = [k for k in NAMED if not values.get(k)]
        check(not missing, f"cluster.env lacks {missing}")
        keys = read_env(os.path.join(dev_dir, "keys.env"))
        exercise(values, keys["CHAT_DEV_API_KEY"])
        log("every address answers; every dialect works through either gateway")
        ports = ports_of(values)
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
        output.append(out)
        check(proc.returncode == 0, f"cluster.sh exited with {proc.returncode} after Ctrl-C")
        check(not os.path.exists(env_file), "cluster.env is still there after Ctrl-C")
        listening = [p for p in ports if port_open(p)]
        check(not listening, f"still listening after Ctrl-C: {listening}")
        log(f"Ctrl-C: exit 0, cluster.env removed, nothing listening on the {len(ports)} ports it named")
        failed = False
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                out, _ = proc.communicate(timeout=60)
                output.append(out)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        if failed:
            print("".join(o for o in output if o)[-6000:])
        shutil.rmtree(dev_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (AssertionError, RuntimeError, TimeoutError) as e:
        log(f"FAILED: {e}")
        sys.exit(1)
