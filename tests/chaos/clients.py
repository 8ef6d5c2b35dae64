"""Blocking HTTP and WebSocket clients on the Python standard library.

`Http` keeps one keep-alive connection per gateway and reconnects after any error.
`WebSocket` is a minimal RFC 6455 client: text frames, fragmentation, ping/pong and
close codes, with a receive timeout that never loses a partly read frame.
"""

import base64
import http.client
import json
import os
import socket
import struct
import time


class Http:
    """JSON over HTTP/1.1 to 127.0.0.1:port."""

    # The gateway (actix-web) closes a keep-alive connection idle for 5 s; one idle
    # longer than this is not reused, so a send never fails only for having waited.
    IDLE_REUSE_SECS = 3.0

    def __init__(self, port, timeout):
        self.port, self.timeout = port, timeout
        self.conn = None
        self.last_used = 0.0

    def request(self, method, path, body=None, headers=None):
        """(status, json or None, headers). Raises OSError / HTTPException when the
        connection fails; the next call reconnects."""
        if self.conn is not None and time.monotonic() - self.last_used > self.IDLE_REUSE_SECS:
            self.close()
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        h = {"Content-Type": "application/json"} if body is not None else {}
        h.update(headers or {})
        data = json.dumps(body).encode() if body is not None else None
        try:
            self.conn.request(method, path, body=data, headers=h)
            r = self.conn.getresponse()
            raw = r.read()
        except Exception:
            self.close()
            raise
        self.last_used = time.monotonic()
        if r.getheader("Connection", "").lower() == "close":
            self.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return r.status, parsed, {k.lower(): v for k, v in r.getheaders()}

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
            self.conn = None


class Closed(Exception):
    """The server closed the WebSocket (`code` from its close frame, if any)."""

    def __init__(self, code, reason=""):
        super().__init__(f"closed {code} {reason}".strip())
        self.code = code


class WebSocket:
    def __init__(self, port, path, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the WebSocket handshake")
            buf += chunk
        head, self.buf = buf.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise ConnectionError(f"handshake refused: {status.decode(errors='replace')}")
        self.fragments = []

    def _parse(self):
        """One complete frame from the buffer as (fin, opcode, payload), or None."""
        b = self.buf
        if len(b) < 2:
            return None
        fin, op, ln, masked = b[0] & 0x80, b[0] & 0x0F, b[1] & 0x7F, b[1] & 0x80
        i = 2
        if ln == 126:
            if len(b) < 4:
                return None
            ln, i = struct.unpack(">H", b[2:4])[0], 4
        elif ln == 127:
            if len(b) < 10:
                return None
            ln, i = struct.unpack(">Q", b[2:10])[0], 10
        mask = None
        if masked:
            if len(b) < i + 4:
                return None
            mask, i = b[i:i + 4], i + 4
        if len(b) < i + ln:
            return None
        payload = b[i:i + ln]
        if mask:
            payload = bytes(c ^ mask[j % 4] for j, c in enumerate(payload))
        self.buf = b[i + ln:]
        return fin, op, payload

    def send(self, op, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack(">BB", 0x80 | op, 0x80 | n)
        elif n < 65536:
            head = struct.pack(">BBH", 0x80 | op, 0x80 | 126, n)
        else:
            head = struct.pack(">BBQ", 0x80 | op, 0x80 | 127, n)
        self.sock.sendall(head + mask + bytes(c ^ mask[j % 4] for j, c in enumerate(payload)))

    def send_json(self, value):
        self.send(0x1, json.dumps(value).encode())

    def recv_json(self, timeout):
        """The next text frame, decoded; None when nothing complete arrived within
        `timeout`. Answers pings; raises `Closed` or OSError when the connection ends."""
        self.sock.settimeout(timeout)
        while True:
            frame = self._parse()
            if frame is None:
                try:
                    chunk = self.sock.recv(65536)
                except socket.timeout:
                    return None
                if not chunk:
                    raise Closed(1006, "connection ended without a close frame")
                self.buf += chunk
                continue
            fin, op, payload = frame
            if op == 0x9:
                self.send(0xA, payload)
            elif op == 0x8:
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
                try:
                    self.send(0x8, payload[:2])
                except OSError:
                    pass
                raise Closed(code, payload[2:].decode(errors="replace"))
            elif op in (0x1, 0x2, 0x0):
                self.fragments.append(payload)
                if fin:
                    data = b"".join(self.fragments)
                    self.fragments = []
                    return json.loads(data)

    def close(self):
        try:
            self.send(0x8, struct.pack(">H", 1000))
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
