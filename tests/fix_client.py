"""The tests' FIX 4.4 initiator, on an independent codec: simplefix encodes and parses, this module checks.

Nothing here frames, encodes or parses with the venue's ``fix/`` code, so every message the venue
sends is read by code the venue did not write. Every frame received is checked on its own terms
(:class:`Inbound`): BeginString, BodyLength, MsgType as the first three fields, CheckSum last and
right, each field exactly as simplefix split it, the SendingTime format, the CompIDs, and MsgSeqNum
strictly increasing on the connection unless PossDupFlag=Y. A frame that breaks one is a venue bug:
the client raises :class:`MalformedMessage` (an ``AssertionError``) naming the rule and the bytes.

Messages received are ``fix.message.Message`` values (the field list simplefix parsed, the raw bytes)
because the tests hand them to the venue's ``DataDictionary.validate``; only the container is shared.

One codec, two transports: :class:`FixClient` (blocking sockets, for tests that drive a real
``venue serve``) and :class:`AsyncFixClient` (asyncio streams, for tests in the acceptor's loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import simplefix
from simplefix import errors as simplefix_errors

from fix.message import Message

BEGIN_STRING = b"FIX.4.4"
SOH = b"\x01"
Fields = Iterable[tuple[int, object]]

_FEED_CHUNK = 2048
"""simplefix copies its whole buffer once per field, so it is fed in pieces: linear, not quadratic."""
_SENDING_TIME = re.compile(rb"(\d{8}-\d{2}:\d{2}:\d{2})(\.\d{3}|\.\d{6}|\.\d{9})?")
"""UTCTimestamp: whole seconds or milliseconds (FIX 4.4), micro or nanoseconds (as QuickFIX allows)."""


def now_fix() -> str:
    """The current UTC time as a FIX UTCTimestamp with milliseconds."""
    return datetime.now(UTC).strftime("%Y%m%d-%H:%M:%S.%f")[:-3]


class MalformedMessage(AssertionError):
    """The venue sent bytes that are not a well-formed FIX 4.4 message for this connection."""


# ---------------------------------------------------------------------------------------- codec


def encode(msg_type: str, fields: Fields = (), *, sender: str, target: str, seq: int, sending_time: str,
           poss_dup: bool = False, header: Fields = ()) -> bytes:
    """One frame, built and serialised by simplefix (it writes 8, 9, 35 first and 10 last).

    ``poss_dup`` marks a resend (PossDupFlag=Y, OrigSendingTime=SendingTime). simplefix drops any
    8, 9, 35 or 10 given among ``fields``: deliberately malformed frames go through ``send_raw``.
    """
    msg = simplefix.FixMessage()
    msg.append_pair(8, BEGIN_STRING)
    msg.append_pair(35, msg_type)
    msg.append_pair(49, sender)
    msg.append_pair(56, target)
    msg.append_pair(34, seq)
    msg.append_pair(52, sending_time)
    if poss_dup:
        msg.append_pair(43, "Y")
        msg.append_pair(122, sending_time)
    for tag, value in (*header, *fields):
        msg.append_pair(tag, value)
    return msg.encode()


class Inbound:
    """One connection's incoming side: bytes in, checked messages out.

    simplefix's ``FixParser`` cuts the stream into messages (at the CheckSum field, its own rule);
    this class keeps the bytes each message came from and checks them against the frame's own
    BodyLength and CheckSum, so a frame simplefix would accept but FIX would not is caught too.
    """

    __slots__ = ("sender", "target", "_parser", "_held", "_last_seq")

    def __init__(self, sender: str, target: str) -> None:
        self.sender, self.target = sender.encode(), target.encode()
        # no skipping of bytes before BeginString: the venue never sends any, so they are an error
        self._parser = simplefix.FixParser(strip_fields_before_begin_string=False)
        self._held = b""  # bytes given to the parser and not yet returned as part of a message
        self._last_seq = 0  # the highest MsgSeqNum received on this connection without PossDup

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete message held."""
        return len(self._held)

    def feed(self, data: bytes) -> Iterator[Message]:
        """The complete messages ``data`` finishes, each checked, in order; a malformed one raises
        :class:`MalformedMessage` once the messages before it have been yielded."""
        for i in range(0, len(data), _FEED_CHUNK):
            piece = data[i:i + _FEED_CHUNK]
            self._held += piece
            self._parser.append_buffer(piece)
            while True:
                try:
                    parsed = self._parser.get_message()
                except (simplefix_errors.ParsingError, ValueError) as e:
                    raise MalformedMessage(f"simplefix cannot parse {self._held[:300]!r}: "
                                           f"{type(e).__name__} {e}") from e
                if parsed is None:
                    break
                used = len(self._held) - len(self._parser.buf)
                raw, self._held = self._held[:used], self._held[used:]
                yield self._check(raw, parsed.pairs)

    def _check(self, raw: bytes, pairs: list[tuple[bytes, bytes]]) -> Message:
        def bad(rule: str) -> MalformedMessage:
            return MalformedMessage(f"{rule}: {raw!r}")

        if b"".join(b"%s=%s\x01" % (t, v) for t, v in pairs) != raw:
            raise bad("the frame is not exactly its tag=value<SOH> fields")
        fields = [(int(t), v) for t, v in pairs]
        tags = [t for t, _ in fields]
        if tags[:3] != [8, 9, 35] or tags[-1] != 10:
            raise bad(f"fields must start 8, 9, 35 and end with 10, not {tags[:3]}...{tags[-1]}")
        for tag in (8, 9, 35, 10):
            if tags.count(tag) != 1:
                raise bad(f"tag {tag} appears {tags.count(tag)} times")
        if fields[0][1] != BEGIN_STRING:
            raise bad(f"BeginString is {fields[0][1]!r}, not {BEGIN_STRING!r}")
        length, checksum = fields[1][1], fields[-1][1]
        body_start = len(b"8=%s\x019=%s\x01" % (BEGIN_STRING, length))
        trailer = len(raw) - len(b"10=%s\x01" % checksum)
        if not length.isdigit() or int(length) != trailer - body_start:
            raise bad(f"BodyLength is {length!r}, the body has {trailer - body_start} bytes")
        if len(checksum) != 3 or not checksum.isdigit() or int(checksum) != sum(raw[:trailer]) % 256:
            raise bad(f"CheckSum is {checksum!r}, the bytes sum to {sum(raw[:trailer]) % 256:03d}")
        msg = Message(fields, raw)
        if (msg.get(49), msg.get(56)) != (self.target, self.sender):
            raise bad(f"SenderCompID/TargetCompID are {msg.get(49)!r}/{msg.get(56)!r}, "
                      f"this connection is {self.target!r}/{self.sender!r}")
        for tag in (52, 122):
            value = msg.get(tag)
            if value is None and tag == 122:
                continue
            stamp = _SENDING_TIME.fullmatch(value or b"")
            if stamp is None or not _valid_time(stamp.group(1)):
                raise bad(f"{'SendingTime' if tag == 52 else 'OrigSendingTime'} ({tag}) is {value!r}, "
                          "not a UTCTimestamp YYYYMMDD-HH:MM:SS[.sss]")
        seq = msg.get(34)
        if seq is None or not seq.isdigit() or int(seq) < 1:
            raise bad(f"MsgSeqNum is {seq!r}")
        if msg.get(43) != b"Y":
            if int(seq) <= self._last_seq:
                raise bad(f"MsgSeqNum {int(seq)} after {self._last_seq} on this connection, without PossDupFlag=Y")
            self._last_seq = int(seq)
        return msg


def _valid_time(text: bytes) -> bool:
    try:
        datetime.strptime(text.decode(), "%Y%m%d-%H:%M:%S")
    except ValueError:
        return False
    return True


class _Endpoint:
    """What both transports share: CompIDs, the outgoing MsgSeqNum, framing and the checked inbox."""

    sender: str
    target: str
    seq: int
    received: list[Message]
    _inbound: Inbound | None = None
    _inbox: list[Message | MalformedMessage] | None = None
    # Tests may build a client with ``__new__`` and set sender, target, sock, seq, received
    # themselves: the incoming side is made on first use.

    @property
    def inbound(self) -> Inbound:
        """The connection's parser and checker."""
        if self._inbound is None:
            self._inbound = Inbound(self.sender, self.target)
        return self._inbound

    @property
    def inbox(self) -> list[Message | MalformedMessage]:
        """Messages checked and not yet returned by ``recv`` (a malformed one as the error it raises)."""
        if self._inbox is None:
            self._inbox = []
        return self._inbox

    def _take(self, data: bytes) -> None:
        """Parse and check ``data`` into the inbox."""
        inbox = self.inbox
        try:
            inbox.extend(self.inbound.feed(data))
        except MalformedMessage as e:
            inbox.append(e)

    def _next(self) -> Message:
        """The first message of the inbox, moved to ``received``; raises if it is malformed."""
        msg = self.inbox.pop(0)
        if isinstance(msg, MalformedMessage):
            raise msg
        self.received.append(msg)
        return msg

    def frame(self, msg_type: str, fields: Fields = (), *, seq: int | None = None, sending_time: str | None = None,
              header: Fields = ()) -> bytes:
        """The next message as bytes, numbered as ``send`` numbers it (and counted as sent).

        An explicit ``seq`` below the next one is a resend (PossDupFlag=Y) and leaves the count as it is.
        """
        n = self.seq if seq is None else seq
        raw = encode(msg_type, fields, sender=self.sender, target=self.target, seq=n,
                     sending_time=sending_time or now_fix(), poss_dup=seq is not None and seq < self.seq,
                     header=header)
        if seq is None:
            self.seq += 1
        return raw


# ------------------------------------------------------------------------------------- blocking


class FixClient(_Endpoint):
    """A blocking initiator over TCP (or TLS) for end-to-end tests against a real venue."""

    def __init__(self, host: str, port: int, sender: str, target: str = "VENUE", timeout: float = 5.0,
                 ssl_context: Any = None) -> None:
        self.sender, self.target = sender, target
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if ssl_context is not None:
            self.sock = ssl_context.wrap_socket(self.sock, server_hostname="localhost")
        self.seq = 1
        self.received = []

    def send(self, msg_type: str, fields: Fields = (), *, seq: int | None = None,
             sending_time: str | None = None) -> None:
        self.sock.sendall(self.frame(msg_type, fields, seq=seq, sending_time=sending_time))

    def send_raw(self, data: bytes) -> None:
        """Bytes as given: for frames that are meant to be malformed, or several messages in one write."""
        self.sock.sendall(data)

    def logon(self, heartbeat: int = 30, extra: Fields = (), key: Any = None, key_id: str | None = None,
              reset: bool = False) -> Message:
        fields: list[tuple[int, object]] = [(98, 0), (108, heartbeat)]
        if reset:
            fields.append((141, "Y"))
        st = now_fix()
        if key is not None:
            from venue.access.signing import signed_logon_fields

            fields += signed_logon_fields(key, key_id, self.sender, self.target, self.seq, st)
        self.send("A", [*fields, *extra], sending_time=st)
        return self.expect("A")

    def settle(self, seconds: float = 1.0) -> None:
        """Answer what the venue asks right after a logon (a ResendRequest gets a gap fill)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            msg = self.recv(left)
            if msg is None:
                return
            self._answer_admin(msg)

    def _answer_admin(self, msg: Message) -> bool:
        """Answer a TestRequest (Heartbeat) or a ResendRequest (this client keeps no store: a gap fill)."""
        if msg.msg_type == "1":
            self.send("0", [(112, msg.get_str(112))])
            return True
        if msg.msg_type == "2":
            self.send("4", [(123, "Y"), (36, self.seq)], seq=int(msg.get_str(7) or 0))
            return True
        return False

    def _read(self, timeout: float) -> bool:
        """Read once into the inbox; False on timeout, end of stream or a socket error."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except OSError:  # TimeoutError included
            return False
        if not data:
            return False
        self._take(data)
        return True

    def recv(self, timeout: float = 5.0) -> Message | None:
        """The next message (checked), or None if nothing came in time or the connection ended."""
        deadline = time.monotonic() + timeout
        inbox = self.inbox
        while not inbox:
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                return None
        return self._next()

    def expect(self, msg_type: str, timeout: float = 5.0, skip_admin: bool = True) -> Message:
        """The next message of this type (heartbeats and test requests are answered and skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv(max(0.0, deadline - time.monotonic()))
            if msg is None:
                raise AssertionError(f"{self.sender}: no {msg_type} message arrived")
            if msg.msg_type == msg_type:
                return msg
            if self._answer_admin(msg):
                continue
            if skip_admin and msg.msg_type == "0":
                continue
            raise AssertionError(f"{self.sender}: expected {msg_type}, got {msg!r}")

    def closed(self, timeout: float = 5.0) -> bool:
        """True once the venue has closed the connection (messages before that are kept for ``recv``)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(max(0.01, left))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return False
            except OSError:
                return True
            if not data:
                return True
            self._take(data)
        return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


# --------------------------------------------------------------------------------------- asyncio


class AsyncFixClient(_Endpoint):
    """An asyncio initiator, for tests running in the same event loop as the acceptor."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sender: str, target: str) -> None:
        self.reader, self.writer = reader, writer
        self.sender, self.target = sender, target
        self.seq = 1
        self.received = []

    @classmethod
    async def connect(cls, port: int, sender: str = "TW", target: str = "ISLD", ssl: Any = None,
                      host: str = "127.0.0.1") -> AsyncFixClient:
        reader, writer = await asyncio.open_connection(host, port, ssl=ssl)
        return cls(reader, writer, sender, target)

    @property
    def pending(self) -> list[Message | MalformedMessage]:
        """Messages received and not yet returned by ``recv``."""
        return self.inbox

    async def send(self, msg_type: str, *body: tuple[int, object], seq: int | None = None,
                   header: Fields = ()) -> None:
        await self.send_raw(self.frame(msg_type, body, seq=seq, header=header))

    async def send_raw(self, data: bytes) -> None:
        """Bytes as given: for frames that are meant to be malformed."""
        self.writer.write(data)
        await self.writer.drain()

    async def logon(self, hb: int = 30, reset: bool = True) -> Message | None:
        body: list[tuple[int, object]] = [(98, 0), (108, hb)]
        if reset:
            body.append((141, "Y"))
        await self.send("A", *body)
        return await self.recv()

    async def recv(self, timeout: float = 5.0) -> Message | None:
        """The next message (checked), or None if the acceptor closed the connection (or nothing came)."""
        deadline = time.monotonic() + timeout
        while not self.inbox:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                data = await asyncio.wait_for(self.reader.read(65536), left)
            except (TimeoutError, ConnectionError, OSError):
                return None
            if not data:
                return None
            self._take(data)
        return self._next()

    async def closed(self, timeout: float = 5.0) -> bool:
        """True once the acceptor closed the connection; messages meanwhile are kept for ``recv``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                data = await asyncio.wait_for(self.reader.read(65536), left)
            except TimeoutError:
                return False
            except (ConnectionError, OSError):
                return True
            if not data:
                return True
            self._take(data)

    def close(self) -> None:
        self.writer.close()
