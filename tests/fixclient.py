"""A small raw-TCP FIX 4.4 initiator for end-to-end tests (deliberately independent of fix.codec)."""

from __future__ import annotations

import contextlib
import re
import socket
import time
from datetime import UTC, datetime

from fix.message import Message, encode, parse_fields

_FRAME = re.compile(rb"8=FIX\.4\.4\x019=(\d+)\x01")


def now_fix() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H:%M:%S.%f")[:-3]


class FixClient:
    def __init__(self, host: str, port: int, sender: str, target: str = "VENUE", timeout: float = 5.0,
                 ssl_context=None) -> None:
        self.sender, self.target = sender, target
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if ssl_context is not None:
            self.sock = ssl_context.wrap_socket(self.sock, server_hostname="localhost")
        self.buf = b""
        self.seq = 1
        self.received: list[Message] = []

    def send(self, msg_type: str, fields: list[tuple[int, object]] = (), *, seq: int | None = None,
             sending_time: str | None = None) -> None:
        n = self.seq if seq is None else seq
        head = [(35, msg_type), (49, self.sender), (56, self.target), (34, n), (52, sending_time or now_fix())]
        if seq is not None and seq < self.seq:
            head += [(43, "Y"), (122, head[4][1])]
        body = Message.build(head + list(fields)).fields
        self.sock.sendall(encode(body))
        if seq is None:
            self.seq += 1

    def logon(self, heartbeat: int = 30, extra: list[tuple[int, object]] = (), key=None, key_id: str | None = None,
              reset: bool = False) -> Message:
        fields: list[tuple[int, object]] = [(98, 0), (108, heartbeat)]
        if reset:
            fields.append((141, "Y"))
        st = now_fix()
        if key is not None:
            from venue.access.signing import signed_logon_fields

            fields += signed_logon_fields(key, key_id, self.sender, self.target, self.seq, st)
        self.send("A", fields + list(extra), sending_time=st)
        return self.expect("A")

    def settle(self, seconds: float = 1.0) -> None:
        """Answer what the venue asks right after a logon (a ResendRequest gets a gap fill)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            msg = self.recv(left)
            if msg is None:
                return
            if msg.msg_type == "2":
                self.send("4", [(123, "Y"), (36, self.seq)], seq=int(msg.get_str(7)))
            elif msg.msg_type == "1":
                self.send("0", [(112, msg.get_str(112))])

    def recv(self, timeout: float = 5.0) -> Message | None:
        deadline = time.monotonic() + timeout
        while True:
            m = _FRAME.search(self.buf)
            if m:
                end = m.end() + int(m.group(1)) + 7
                if len(self.buf) >= end:
                    raw = self.buf[m.start():end]
                    self.buf = self.buf[end:]
                    msg = Message(parse_fields(raw), raw)
                    self.received.append(msg)
                    return msg
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return None
            except OSError:
                return None
            if not data:
                return None
            self.buf += data

    def expect(self, msg_type: str, timeout: float = 5.0, skip_admin: bool = True) -> Message:
        """The next message of this type (heartbeats and test requests are answered and skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv(max(0.0, deadline - time.monotonic()))
            if msg is None:
                raise AssertionError(f"{self.sender}: no {msg_type} message arrived")
            if msg.msg_type == msg_type:
                return msg
            if msg.msg_type == "1":
                self.send("0", [(112, msg.get_str(112))])
                continue
            if msg.msg_type == "2":  # ResendRequest: this client keeps no store, it gap-fills
                self.send("4", [(123, "Y"), (36, self.seq)], seq=int(msg.get_str(7)))
                continue
            if skip_admin and msg.msg_type == "0":
                continue
            raise AssertionError(f"{self.sender}: expected {msg_type}, got {msg!r}")

    def closed(self, timeout: float = 5.0) -> bool:
        """True once the venue has closed the connection (messages before that are collected)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return False
            except OSError:
                return True
            if not data:
                return True
            self.buf += data
        return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
