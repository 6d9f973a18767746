"""The FIX 4.4 session layer as a sans-I/O state machine (h11 style), with QuickFIX semantics.

Inputs: ``connection_made(now, peer)``, ``receive_data(bytes, now)``, ``tick(now)``,
``complete_resend(rows, now)``, ``send_app(msg)``, ``logout(text)``, ``connection_lost(reason)``.
Outputs: ``take_outbound()`` -> :class:`Outbound` (bytes to write, application messages to store,
both seqnums, whether the store must be reset, whether to close). ``resend_wanted`` asks the driver
for stored messages (the only thing the session cannot know by itself). No socket, no clock, no DB.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from fix.application import Application, BusinessReject, UnsupportedMessageType
from fix.codec import FrameReader, byte_sum, format_timestamp, parse_frame, parse_timestamp
from fix.field_formats import SEQNUM_MAX, SEQNUM_MAX_DIGITS, is_int, is_seqnum
from fix.message import Message

ADMIN_TYPES = frozenset({b"0", b"1", b"2", b"3", b"4", b"5", b"A"})
HEADER_TAGS = frozenset({
    8, 9, 35, 34, 43, 49, 50, 52, 56, 57, 90, 91, 97, 115, 116, 122, 128, 129, 142, 143, 144, 145,
    212, 213, 347, 369, 627, 628, 629, 630, 1128, 1129, 1156,
})
_OWN_HEADER = frozenset({8, 9, 10, 34, 35, 49, 52, 56})
_TAG_EQ = {t: b"%d=" % t for t in range(1, 10000)}  # tag -> b"tag=" (cheaper than formatting)
_REVERSE_ROUTE = ((115, 128), (116, 129), (144, 145), (128, 115), (129, 116), (145, 144))

REJECT_TEXT = {
    0: "Invalid tag number",
    1: "Required tag missing",
    2: "Tag not defined for this message type",
    3: "Undefined Tag",
    4: "Tag specified without a value",
    5: "Value is incorrect (out of range) for this tag",
    6: "Incorrect data format for value",
    7: "Decryption problem",
    8: "Signature problem",
    9: "CompID problem",
    10: "SendingTime accuracy problem",
    11: "Invalid MsgType",
    13: "Tag appears more than once",
    14: "Tag specified out of required order",
    15: "Repeating group fields out of order",
    16: "Incorrect NumInGroup count for repeating group",
    17: "Non Data value includes field delimiter (SOH character)",
}
BUSINESS_REJECT_TEXT = {
    0: "Other",
    1: "Unknown ID",
    2: "Unknown Security",
    3: "Unsupported Message Type",
    4: "Application not available",
    5: "Conditionally required field missing",
    6: "Not authorized",
    7: "DeliverTo firm not available at this time",
}


@dataclass(slots=True)
class SessionConfig:
    """One session's settings; field names follow QuickFIX's (snake_case)."""

    sender_comp_id: str
    """Our CompID (SenderCompID of what we send)."""
    target_comp_id: str
    """The client's CompID."""
    begin_string: str = "FIX.4.4"
    heart_bt_int: int | None = None
    """None: use the HeartBtInt the client asks for (within the bounds below)."""
    min_heart_bt_int: int = 0
    max_heart_bt_int: int = 3600
    reset_on_logon: bool = False
    reset_on_logout: bool = False
    reset_on_disconnect: bool = False
    validate_fields_have_values: bool = True
    validate_user_defined_fields: bool = True
    validate_fields_out_of_order: bool = True
    allow_unknown_msg_fields: bool = False
    timestamp_precision: int = 3
    max_latency: float = 120.0
    check_latency: bool = True
    check_comp_id: bool = True
    logout_timeout: float = 2.0
    logon_timeout: float = 10.0
    logon_reject_text: str = "Logon rejected"
    persist_messages: bool = True
    """QuickFIX PersistMessages: False keeps outbound application messages out of the store (a
    ResendRequest is then answered with a gap fill), e.g. for market-data sessions."""
    max_admin_per_second: int = 50
    """Garbled frames and admin messages (Heartbeat, TestRequest, ResendRequest, Reject,
    SequenceReset) a logged-on client may send per second; one more and the session logs out
    naming this limit (they bypass the application's order throttle). 0: no limit."""
    garbled_log_limit: int = 10
    """Garbled frames logged per session per minute (each cut to 200 bytes); beyond it they
    are only counted, and the count is logged when the minute is over."""
    max_echo_length: int = 256
    """Longest TestReqID (112) the session echoes in a Heartbeat, and longest value an
    application message may carry (IDs and text are echoed in replies and journalled); a longer
    one gets a Reject (373=5) naming the tag: nothing is echoed (nor logged twice) at any length."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form settings for the application (account, permissions...)."""

    @property
    def key(self) -> str:
        """Stable session identifier, QuickFIX-style ``FIX.4.4:ISLD->TW44``."""
        return f"{self.begin_string}:{self.sender_comp_id}->{self.target_comp_id}"


def _seqnum(msg: Message, tag: int) -> int | None:
    """A sequence-number field (34, 36, 7, 16) within the SEQNUM bound, else None (absent or not
    0 to SEQNUM_MAX: a session with a dictionary has refused such a value before it gets here;
    one without never converts an unbounded string)."""
    value = msg.get(tag)
    return int(value) if value is not None and is_seqnum(value) else None


def _shown(value: bytes | None) -> str:
    """A received value for a log line, cut short."""
    text = (value or b"").decode("latin-1")
    return text if len(text) <= 20 else f"{text[:20]}... ({len(text)} characters)"


class Dictionary(Protocol):
    """What the session needs from ``fix.dictionary.DataDictionary``."""

    def validate(self, msg: Message, **switches: Any) -> Any: ...


class SessionLog(Protocol):
    """QuickFIX's Log seam: messages in/out and events (see ``fix.log``)."""

    def on_incoming(self, raw: bytes, now: float) -> None: ...
    def on_outgoing(self, raw: bytes, now: float) -> None: ...
    def on_event(self, text: str, now: float) -> None: ...


class NullLog:
    """The log of a session nobody asked to log: records nothing."""

    def on_incoming(self, raw: bytes, now: float) -> None:
        """Nothing to record."""

    def on_outgoing(self, raw: bytes, now: float) -> None:
        """Nothing to record."""

    def on_event(self, text: str, now: float) -> None:
        """Nothing to record."""


@dataclass(slots=True)
class Outbound:
    """What the driver must do after a batch: persist ``store_rows`` and the seqnums (after deleting
    the stored messages if ``reset``), and only then write ``data`` and close if ``close``."""

    data: bytes
    store_rows: list[tuple[int, bytes]]
    next_sender: int
    next_target: int
    reset: bool
    close: str | None


class Session:
    """One FIX session (SessionID = BeginString, SenderCompID, TargetCompID), across connections."""

    def __init__(
        self,
        config: SessionConfig,
        *,
        dictionary: Dictionary | None = None,
        application: Application | None = None,
        log: SessionLog | None = None,
        next_sender: int = 1,
        next_target: int = 1,
    ) -> None:
        self.config = config
        self.key = config.key
        self.dictionary = dictionary
        self.application = application or Application()
        self.log: SessionLog = log or NullLog()
        self.next_sender = next_sender
        self.next_target = next_target
        self.now = 0.0
        self.received_at = 0.0
        """When the bytes being processed arrived (the driver's read time; SendingTime is judged
        against it, so a driver that got round to a Logon late does not make it stale)."""
        self._logon_pending = False  # a Logon is being processed that no one has decided on yet
        self.peer_addr: Any = None
        self.heart_bt_int = 0
        # connection state (QuickFIX SessionState flags)
        self.connected = False
        self.received_logon = False
        self.sent_logon = False
        self.sent_logout = False
        self.received_reset = False
        self.connected_at = 0.0
        self.logout_sent_at = 0.0
        self.last_sent = 0.0
        self.last_received = 0.0
        self.test_requests = 0
        self.resend_range: tuple[int, int] | None = None
        self.resend_wanted: tuple[int, int] | None = None
        self._queue: dict[int, Message] = {}
        self._after_resend: tuple[Message, int] | None = None
        self._frames: deque[bytes] = deque()
        self._reader = FrameReader()
        self._junk_since = 0.0  # the budget of garbled frames and admin messages: this second's count
        self._junk_count = 0
        self._garbled_since = -60.0  # the garbled-frame log: this minute's count
        self._garbled_count = 0
        # outputs
        self._out: list[bytes] = []
        self._to_store: list[tuple[int, bytes]] = []
        self._store_reset = False
        self._close: str | None = None
        self.dirty = False
        self.on_dirty: Any = None
        """Optional ``callable(session)``, called when the session first has something for the
        driver (output, seqnums to persist, a close) since the last ``take_outbound``."""
        self.screen: Any = None
        """Optional ``callable(session, msg) -> callable | None``, asked about each in-sequence
        application message before the dictionary validation (a rate limit): None admits it; a
        callable refuses it cheaply: the message is sequenced (its MsgSeqNum counts, CompIDs and
        SendingTime are checked) but never validated nor given to ``from_app``; the callable
        answers it instead (or drops it)."""
        # constants for the hot path
        self._begin = config.begin_string.encode()
        self._sender = config.sender_comp_id.encode()
        self._target = config.target_comp_id.encode()
        self._prefix = b"8=" + self._begin + b"\x019="
        self._sent_raw = b""  # last SendingTime seen and its parse (None: not a timestamp)
        self._sent_at: float | None = None
        self._validate = None if dictionary is None else dictionary.validate if (
            config.validate_fields_have_values and config.validate_user_defined_fields
            and not config.allow_unknown_msg_fields and config.validate_fields_out_of_order
        ) else functools.partial(  # the defaults: a plain bound method (no kwargs merge per call)
            dictionary.validate,
            fields_have_values=config.validate_fields_have_values,
            user_defined_fields=config.validate_user_defined_fields,
            unknown_fields=config.allow_unknown_msg_fields,
            fields_out_of_order=config.validate_fields_out_of_order,
        )

    # ------------------------------------------------------------------ public state

    @property
    def is_logged_on(self) -> bool:
        return self.connected and self.received_logon and self.sent_logon

    @property
    def state(self) -> str:
        """``disconnected`` | ``awaiting_logon`` | ``logged_on`` | ``logout_sent`` (for operators)."""
        if not self.connected:
            return "disconnected"
        if not (self.received_logon and self.sent_logon):
            return "awaiting_logon"
        return "logout_sent" if self.sent_logout else "logged_on"

    def __repr__(self) -> str:
        return f"Session({self.key}, out={self.next_sender}, in={self.next_target})"

    # ------------------------------------------------------------------ inputs

    def connection_made(self, now: float, peer_addr: Any = None) -> None:
        """A transport is bound to this session; it must now receive a Logon."""
        self.now = now
        self.peer_addr = peer_addr
        self.connected = True
        self.received_logon = self.sent_logon = self.sent_logout = self.received_reset = False
        self.connected_at = self.last_received = self.last_sent = now
        self.test_requests = 0
        self.resend_range = self.resend_wanted = None
        self._queue.clear()
        self._frames.clear()
        self._reader = FrameReader()
        self._junk_count = 0
        self._after_resend = None
        self._out = []  # anything still unsent belonged to the previous, dead connection
        self._close = None
        self._logon_pending = False

    def receive_data(self, data: bytes, now: float, received: float | None = None) -> None:
        """Bytes from the transport (any chunking); ``received``: when they arrived, if before ``now``."""
        if not self.connected:
            return
        self.now = now
        self.received_at = now if received is None else received
        frames = self._reader.feed(data)
        if self._reader.garbled:
            garbled = self._reader.garbled
            self._reader.garbled = []
            for g in garbled:
                self._garbled(g.reason, g.raw)
                # QuickFIX drops the connection for a garbled Logon, or for any garbled message
                # before the Logon (one that came after a Logon frame of this read is just ignored)
                before_logon = not self.received_logon and not (frames and g.after > 0)
                if before_logon or b"\x0135=A\x01" in g.raw:
                    self._logon_pending = not self.received_logon
                    self.disconnect("Logon message is not valid")
                    return
                if not self._within_budget():
                    return
        if frames:
            self._frames.extend(frames)
            self._process()

    def tick(self, now: float) -> None:
        """Timers: logon/logout timeouts, heartbeats, test requests, heartbeat timeout."""
        self.now = now
        if not self.connected:
            return
        if not self.received_logon:
            if now - self.connected_at >= self.config.logon_timeout:
                self.disconnect("Timed out waiting for logon")
            return
        if self.sent_logout and now - self.logout_sent_at >= self.config.logout_timeout:
            self.disconnect("Timed out waiting for logout response")
            return
        hb = self.heart_bt_int
        if hb <= 0 or self.resend_wanted is not None:
            return
        since_recv = now - self.last_received
        since_sent = now - self.last_sent
        if since_sent < hb and since_recv < hb:
            return
        if since_recv >= 2.4 * hb:
            self.disconnect("Timed out waiting for heartbeat")
        elif since_recv >= 1.2 * (self.test_requests + 1) * hb:
            self._send(b"1", [(112, b"TEST")])
            self.test_requests += 1
            self._event("Sent test request TEST")
        elif since_sent >= hb and not self.test_requests:
            self._send(b"0", [])

    def connection_lost(self, reason: str = "Connection closed by peer") -> None:
        """The transport closed (or failed) under us."""
        if self.connected:
            self.disconnect(reason)

    def send_app(self, msg: Message | Iterable[tuple[int, Any]], now: float | None = None) -> int:
        """Queue an application message (35 first, then body; header tags such as 115/128/97 may be
        included and go to the header). Returns its MsgSeqNum. It is stored, then sent, at the next
        flush. Call ``acceptor.schedule_flush()`` when calling this outside a callback."""
        if now is not None:
            self.now = now
        fields = msg.fields if isinstance(msg, Message) else Message.build(msg).fields
        msg_type = b""
        extra: list[tuple[int, bytes]] = []
        body: list[tuple[int, bytes]] = []
        for tag, value in fields:
            if tag == 35:
                msg_type = value
            elif tag in _OWN_HEADER:
                continue
            elif tag in HEADER_TAGS:
                extra.append((tag, value))
            else:
                body.append((tag, value))
        if not msg_type:
            raise ValueError("send_app needs MsgType (35)")
        return self._send(msg_type, body, extra or None)

    def send_app_fields(self, msg_type: bytes, body: list[tuple[int, bytes]],
                        header: list[tuple[int, bytes]] | None = None) -> int:
        """Fast path of :meth:`send_app`: values already bytes, body and extra header fields
        (115/128/97...) already separated, body in the order it goes on the wire."""
        return self._send(msg_type, body, header or None)

    def send_app_encoded(self, msg_type: bytes, body: bytes, now: float | None = None,
                         body_sum: int | None = None) -> int:
        """Fastest path: the body already encoded as ``tag=value\x01...`` in wire order (no
        header field in it), e.g. one ExecutionReport encoded once for its owner and every drop
        copy: only the header and the checksum are made per session. ``body_sum``: the body's
        ``byte_sum`` when the caller has it (computed once for all the recipients)."""
        if now is not None:
            self.now = now
        return self._send(msg_type, body, None, body_sum)

    def logout(self, text: str | None = None, now: float | None = None) -> None:
        """Start the logout handshake (the venue: KYC revoked, shutdown); disconnects after the
        client's Logout or after ``logout_timeout``. Not logged on: just disconnect."""
        if now is not None:
            self.now = now
        if not self.connected:
            return
        if not self.is_logged_on:
            self.disconnect(text or "Logout requested")
        elif not self.sent_logout:
            self._generate_logout(text)

    def disconnect(self, reason: str) -> None:
        """Close the connection (after the pending output is flushed) and forget per-connection state."""
        if not self.connected:
            return
        was_logged_on = self.received_logon and self.sent_logon
        self.connected = False
        self._close = reason
        self.received_logon = self.sent_logon = self.sent_logout = self.received_reset = False
        self.resend_range = self.resend_wanted = self._after_resend = None
        self._queue.clear()
        self._frames.clear()
        self._mark()
        self._event(f"Disconnecting: {reason}")
        if self._logon_pending:  # refused by the session layer before the application was asked
            self._logon_pending = False
            cfg = self.config
            self.application.on_logon_refused(self.peer_addr, cfg.begin_string, cfg.target_comp_id,
                                              cfg.sender_comp_id, reason)
        if was_logged_on:
            self.application.on_logout(self, reason)
            if self.config.reset_on_logout:
                self.reset()
        if self.config.reset_on_disconnect:
            self.reset()

    def reset(self) -> None:
        """Both seqnums back to 1 and the stored messages forgotten (persisted at the next flush)."""
        self.next_sender = self.next_target = 1
        self._to_store.clear()
        self._store_reset = True
        self._queue.clear()
        self._mark()

    def complete_resend(self, rows: list[tuple[int, bytes]], now: float | None = None) -> None:
        """Answer ``resend_wanted`` with the stored application messages of that range."""
        if now is not None:
            self.now = now
        wanted = self.resend_wanted
        if wanted is None:
            return
        self.resend_wanted = None
        begin, end = wanted
        merged = {seq: raw for seq, raw in rows if begin <= seq <= end}
        for seq, raw in self._to_store:
            if begin <= seq <= end:
                merged[seq] = raw
        current = begin
        for seq in sorted(merged):
            if seq > current:
                self._gap_fill(current, seq)
            self._resend(merged[seq])
            current = seq + 1
        if current <= end:
            self._gap_fill(current, end + 1)
        self._event(f"Resent messages {begin} to {end}")
        after, self._after_resend = self._after_resend, None
        if after is not None and after[1] > self.next_target:
            self._do_target_too_high(*after)
        self._process()

    # ------------------------------------------------------------------ outputs

    def take_outbound(self) -> Outbound:
        out = Outbound(
            b"".join(self._out), self._to_store, self.next_sender, self.next_target,
            self._store_reset, self._close,
        )
        self._out = []
        self._to_store = []
        self._store_reset = False
        self._close = None
        self.dirty = False
        return out

    def _mark(self) -> None:
        if not self.dirty:
            self.dirty = True
            if self.on_dirty is not None:
                self.on_dirty(self)

    @property
    def has_output(self) -> bool:
        return bool(self._out or self._to_store or self._store_reset or self._close or self.dirty)

    # ------------------------------------------------------------------ processing

    def _event(self, text: str) -> None:
        self.log.on_event(text, self.now)

    def _garbled(self, reason: str, raw: bytes) -> None:
        """Log a dropped garbled frame: the first ``garbled_log_limit`` of a minute (cut short),
        then only a count, logged when the minute is over (a flood must not flood the log)."""
        now = self.now
        if now - self._garbled_since >= 60.0:
            if self._garbled_count > self.config.garbled_log_limit:
                self._event(f"{self._garbled_count - self.config.garbled_log_limit} more garbled messages "
                            "dropped in the last minute (not logged one by one)")
            self._garbled_since, self._garbled_count = now, 0
        self._garbled_count += 1
        if self._garbled_count <= self.config.garbled_log_limit:
            self._event(f"Garbled message dropped ({reason}): {raw[:200]!r}"
                        + (f" ({len(raw)} bytes)" if len(raw) > 200 else ""))

    def _within_budget(self) -> bool:
        """Count one garbled frame or admin message from a logged-on client; past
        ``max_admin_per_second`` in one second: Logout naming the limit, disconnect, False."""
        limit = self.config.max_admin_per_second
        if not limit or not self.received_logon:
            return True
        if self.now - self._junk_since >= 1.0:
            self._junk_since, self._junk_count = self.now, 0
        self._junk_count += 1
        if self._junk_count <= limit:
            return True
        text = f"Garbled or admin message rate limit exceeded ({limit} per second)"
        self._generate_logout(text)
        self.disconnect(text)
        return False

    def _long_value(self, msg: Message) -> bool:
        """Reject (373=5) an application message with a value longer than ``max_echo_length``:
        IDs and text are echoed in replies and kept in the journal, so none is taken at any
        length (only frames long enough to hold such a value are looked at)."""
        limit = self.config.max_echo_length
        for tag, value in msg.fields:
            if len(value) > limit and tag != 34:  # MsgSeqNum: the sequence check's (bounded) business
                self._reject(msg, 5, tag, f"{REJECT_TEXT[5]}: tag {tag} has {len(value)} characters, "
                                          f"at most {limit} are accepted")
                return True
        return False

    def _seqnum_exhausted(self) -> None:
        """The next MsgSeqNum expected from the client is past SEQNUM_MAX: nothing it sends can be
        accepted any more, so log out now (naming the bound) instead of rejecting it forever."""
        text = (f"MsgSeqNum reached its bound {SEQNUM_MAX}: log on again with ResetSeqNumFlag=Y "
                "(141=Y) to continue")
        self._generate_logout(text)
        self.disconnect(text)

    def _process(self) -> None:
        frames = self._frames
        on_incoming = self.log.on_incoming
        while frames and self.connected and self.resend_wanted is None:
            raw = frames.popleft()
            on_incoming(raw, self.now)
            if not self.dirty:
                self._mark()
            try:
                msg = parse_frame(raw)
            except ValueError as exc:
                self._garbled(str(exc), raw)
                if not self._within_budget():
                    return
                continue
            if not self.received_logon:
                if msg._idx().get(35) != b"A":
                    self.disconnect("First message is not a Logon")
                    return
                self._logon_pending = True
            self._next(msg, queued=False)

    def _next(self, msg: Message, queued: bool) -> None:
        get = (msg._index or msg._idx()).get
        msg_type = get(35) or b""
        try:
            if get(49) is None or get(56) is None:
                self._reject(msg, 1, 49 if get(49) is None else 56)
                if msg_type == b"A":
                    self.disconnect("Required field missing from logon")
                return
            if get(8) != self._begin:
                if msg_type == b"5":
                    self._next_logout(msg)
                else:
                    self._generate_logout("Incorrect BeginString")
                    self.next_target += 1
                    self.disconnect("Incorrect BeginString")
                return
            screen = self.screen
            if screen is not None and msg_type not in ADMIN_TYPES and get(34) == b"%d" % self.next_target:
                refusal = screen(self, msg)
                if refusal is not None:
                    if self._verify(msg, refused=refusal):
                        self.next_target += 1
                    return
            elif msg_type in ADMIN_TYPES and msg_type != b"5" and not self._within_budget():
                return  # an admin-message flood (they bypass the application's throttle): logged out
            validate = self._validate
            if validate is not None:
                rej = validate(msg)
                if rej is not None:
                    self._reject(msg, rej.reason, rej.ref_tag, rej.text)
                    if msg_type == b"A":
                        self.disconnect(f"Invalid logon: {rej.text}")
                    return
            if msg_type not in ADMIN_TYPES:
                if len(msg.raw or b"") > self.config.max_echo_length + 50 and self._long_value(msg):
                    return  # refused: no application value is taken (and echoed) at any length
                try:
                    if self._verify(msg):
                        self.next_target += 1
                except (UnsupportedMessageType, BusinessReject) as exc:
                    if msg_type == b"j":  # never answer a reject with a reject (a loop)
                        self._event(f"BusinessMessageReject {msg.get_str(34)} received, not answered")
                        self.next_target += 1
                    elif isinstance(exc, BusinessReject):
                        self._business_reject(msg, exc.reason, exc.ref_tag, exc.text)
                    else:
                        self._business_reject(msg, 3)
            elif msg_type == b"0":
                if self._verify(msg):
                    self.next_target += 1
            elif msg_type == b"1":
                if self._verify(msg):
                    test_req_id = get(112) or b""
                    if len(test_req_id) > self.config.max_echo_length:
                        self._reject(msg, 5, 112, f"TestReqID (112) longer than {self.config.max_echo_length}"
                                                  f" characters ({len(test_req_id)})")
                    else:
                        self._send(b"0", [(112, test_req_id)])
                        self.next_target += 1
            elif msg_type == b"A":
                self._next_logon(msg)
            elif msg_type == b"4":
                self._next_sequence_reset(msg)
            elif msg_type == b"5":
                self._next_logout(msg)
            elif msg_type == b"2":
                self._next_resend_request(msg)
            elif self._verify(msg):  # b"3"
                self.next_target += 1
        finally:
            if self._queue and not queued and self.connected:
                self._next_queued()
            if self.next_target > SEQNUM_MAX and self.connected:
                self._seqnum_exhausted()

    def _next_logon(self, msg: Message) -> None:
        cfg = self.config
        reset_flag = msg.get(141) == b"Y"
        self.received_reset = reset_flag
        if reset_flag:
            self._event("Logon contains ResetSeqNumFlag=Y, resetting sequence numbers to 1")
            self.reset()
        if cfg.reset_on_logon:
            self.reset()
        if not self._verify(msg, check_high=False, check_low=True):
            return
        raw_hb = msg.get(108)
        hb = 0 if raw_hb is None else int(raw_hb) if is_int(raw_hb) else None
        if cfg.heart_bt_int is not None:
            hb = cfg.heart_bt_int
        if hb is None or not cfg.min_heart_bt_int <= hb <= cfg.max_heart_bt_int:
            self._generate_logout("HeartBtInt out of range")
            self.disconnect(f"HeartBtInt {hb if hb is not None else _shown(raw_hb)} out of range")
            return
        self._logon_pending = False  # the application decides (and records) from here
        refusal = self.application.on_logon_request(self, msg, self.peer_addr)
        if refusal is not None:
            self._event(f"Logon refused: {refusal}")
            self._generate_logout(cfg.logon_reject_text)
            self.disconnect(f"Logon refused: {refusal}")
            return
        self.received_logon = True
        self.heart_bt_int = hb
        self._event("Received logon request")
        body = [(98, b"0"), (108, b"%d" % hb)]
        if reset_flag:
            body.append((141, b"Y"))
        self._send(b"A", body)
        self.sent_logon = True
        self._event("Responding to logon request")
        self.received_reset = False
        seq = _seqnum(msg, 34) or 0
        if seq > self.next_target and not reset_flag:
            self._do_target_too_high(msg, seq)
        else:
            self.next_target += 1
            self._next_queued()
        if self.is_logged_on:
            self.application.on_logon(self)

    def _next_logout(self, msg: Message) -> None:
        if not self._verify(msg, check_high=False, check_low=False):
            return
        text = msg.get_str(58)
        if not self.sent_logout:
            self._event("Received logout request" + (f": {text}" if text else ""))
            self._generate_logout(None)
            reason = "Logout requested by counterparty"
        else:
            self._event("Received logout response")
            reason = "Logout completed"
        self.next_target += 1
        self.disconnect(reason + (f" ({text})" if text else ""))

    def _next_sequence_reset(self, msg: Message) -> None:
        gap_fill = msg.get(123) == b"Y"
        if not self._verify(msg, check_high=gap_fill, check_low=gap_fill):
            return
        new_seq = _seqnum(msg, 36)
        if new_seq is None:
            if msg.get(36) is not None:  # only without a dictionary (which refuses it first)
                self._reject(msg, 6, 36, f"{REJECT_TEXT[6]}: NewSeqNo (36) must be 0 to {SEQNUM_MAX}")
            return
        self._event(f"Received SequenceReset FROM: {self.next_target} TO: {new_seq}")
        if new_seq > self.next_target:
            self.next_target = new_seq
        elif new_seq < self.next_target:
            self._reject(msg, 5)

    def _next_resend_request(self, msg: Message) -> None:
        if not self._verify(msg, check_high=False, check_low=False):
            return
        begin = _seqnum(msg, 7)
        end = _seqnum(msg, 16)
        if begin is None or end is None:  # only without a dictionary (which refuses them first)
            tag = 7 if begin is None else 16
            self._reject(msg, 6, tag, f"{REJECT_TEXT[6]}: {'BeginSeqNo' if tag == 7 else 'EndSeqNo'} "
                                      f"({tag}) must be 0 to {SEQNUM_MAX}")
            return
        self._event(f"Received ResendRequest FROM: {begin} TO: {end}")
        last = self.next_sender - 1
        if end == 0 or end > last:
            end = last
        begin = max(begin, 1)
        seq = _seqnum(msg, 34) or 0
        if seq == self.next_target:
            self.next_target += 1
        if begin <= end:
            self.resend_wanted = (begin, end)
            if seq > self.next_target:
                self._after_resend = (msg, seq)  # answer first, then ask for our own gap
        elif seq > self.next_target:
            self._do_target_too_high(msg, seq)

    def _next_queued(self) -> None:
        queue = self._queue
        while queue and self.connected and self.resend_wanted is None:
            expected = self.next_target
            for seq in [s for s in queue if s < expected]:
                del queue[seq]
            msg = queue.pop(expected, None)
            if msg is None:
                return
            self._event(f"Processing QUEUED message: {expected}")
            if msg.get(35) in (b"A", b"2"):
                self.next_target += 1
            else:
                self._next(msg, queued=True)

    # ------------------------------------------------------------------ checks

    def _valid_logon_state(self, msg_type: bytes) -> bool:
        if self.received_reset:
            return True
        if msg_type == b"A":
            return not self.received_logon
        if self.received_logon:
            return True
        return msg_type in (b"4", b"3") or (msg_type == b"5" and self.sent_logon)

    def _verify(self, msg: Message, check_high: bool = True, check_low: bool = True,
                refused: Callable[[], None] | None = None) -> bool:
        get = (msg._index or msg._idx()).get
        cfg = self.config
        msg_type = get(35) or b""
        if not (self.received_logon and msg_type != b"A") and not self._valid_logon_state(msg_type):
            self.disconnect("Logon state is not valid for message")
            return False
        if cfg.check_latency:
            value = get(52) or b""
            if value == self._sent_raw:  # a client's batch shares one SendingTime
                sent = self._sent_at
            else:
                sent = self._sent_at = parse_timestamp(value)
                self._sent_raw = value
            if sent is None or abs(self.received_at - sent) > cfg.max_latency:
                self._reject(msg, 10)
                if self.connected:
                    self._generate_logout(None)
                return False
        if cfg.check_comp_id and (get(49) != self._target or get(56) != self._sender):
            self._reject(msg, 9)
            if self.connected:
                self._generate_logout(None)
            return False
        if check_high or check_low:
            value = get(34)
            # is_seqnum inline (hot path): never int() of an unbounded string
            seq = int(value) if value is not None and len(value) <= SEQNUM_MAX_DIGITS and value.isdigit() else None
            if seq is None:
                self.disconnect("MsgSeqNum missing or not a number")
                return False
            if check_high and seq > self.next_target:
                self._do_target_too_high(msg, seq)
                return False
            if check_low and seq < self.next_target:
                self._do_target_too_low(msg, seq)
                return False
            rng = self.resend_range
            if rng is not None and seq >= rng[1]:
                self._event(f"ResendRequest for messages FROM: {rng[0]} TO: {rng[1]} has been satisfied.")
                self.resend_range = None
        self.last_received = self.now
        self.test_requests = 0
        if refused is not None:
            refused()
        elif msg_type in ADMIN_TYPES:
            self.application.from_admin(self, msg)
        else:
            self.application.from_app(self, msg)
        return True

    def _do_target_too_high(self, msg: Message, seq: int) -> None:
        self._event(f"MsgSeqNum too high, expecting {self.next_target} but received {seq}")
        self._queue[seq] = msg
        rng = self.resend_range
        if rng is not None and seq >= rng[0]:
            self._event(f"Already sent ResendRequest FROM: {rng[0]} TO: {rng[1]}. Not sending another.")
            return
        begin = self.next_target
        self._send(b"2", [(7, b"%d" % begin), (16, b"0")])
        self.resend_range = (begin, seq - 1)
        self._event(f"Sent ResendRequest FROM: {begin} TO: 0")

    def _do_target_too_low(self, msg: Message, seq: int) -> None:
        if msg.get(43) != b"Y":
            text = f"MsgSeqNum too low, expecting {self.next_target} but received {seq}"
            self._generate_logout(text)
            self.disconnect(text)
            return
        if msg.get(35) == b"4":
            return
        orig = msg.get(122)
        if orig is None:
            self._reject(msg, 1, 122)
            return
        orig_t = parse_timestamp(orig)
        sent_t = parse_timestamp(msg.get(52) or b"")
        if orig_t is not None and sent_t is not None and orig_t > sent_t:
            self._reject(msg, 10)
            if self.connected:
                self._generate_logout(None)

    # ------------------------------------------------------------------ generation

    def _reject(self, msg: Message, reason: int, ref_tag: int | None = None, text: str | None = None) -> None:
        msg_type = msg.get(35)
        seq = msg.get(34)
        if seq is not None and not is_seqnum(seq):
            seq = None  # never echoed as RefSeqNum (45): it would break the client's own bounds
        if msg_type not in (b"A", b"4") and seq is not None and int(seq) == self.next_target:
            self.next_target += 1
        if text is None:
            text = REJECT_TEXT.get(reason, "Other")
        self._event(f"Message {(seq or b'').decode('latin-1')} Rejected: {text}"
                    + (f":{ref_tag}" if ref_tag is not None else ""))
        if not self.received_logon:
            self.disconnect(f"Rejected before logon: {text}")
            return
        extra = [(out, msg.get(inb) or b"") for inb, out in _REVERSE_ROUTE if msg.get(inb)]
        body: list[tuple[int, bytes]] = []
        if seq:
            body.append((45, seq))
        body.append((58, text.encode("latin-1", "replace")))
        if ref_tag is not None and (ref_tag != 0 or reason == 0):
            body.append((371, b"%d" % ref_tag))
        if msg_type and len(msg_type) <= 8:  # an invalid MsgType is not echoed at any length
            body.append((372, msg_type))
        body.append((373, b"%d" % reason))
        self._send(b"3", body, extra or None)

    def _business_reject(self, msg: Message, reason: int, ref_tag: int | None = None,
                         text: str | None = None) -> None:
        self.next_target += 1
        if text is None:
            text = BUSINESS_REJECT_TEXT.get(reason, "Other")
        self._event(f"Message {msg.get_str(34)} Rejected: {text}")
        body: list[tuple[int, bytes]] = []
        seq = msg.get(34)
        if seq:
            body.append((45, seq))
        body.append((58, text.encode("latin-1", "replace")))
        if ref_tag is not None:
            body.append((371, b"%d" % ref_tag))
        body.append((372, msg.get(35) or b""))
        body.append((380, b"%d" % reason))
        self._send(b"j", body)

    def _generate_logout(self, text: str | None) -> None:
        self._send(b"5", [(58, text.encode("latin-1", "replace"))] if text else [])
        self.sent_logout = True
        self.logout_sent_at = self.now
        self._event("Sent logout" + (f": {text}" if text else ""))

    def _frame(self, msg_type: bytes, seq: int, sending_time: bytes,
               body: list[tuple[int, bytes]] | bytes, extra: list[tuple[int, bytes]] | None,
               body_sum: int | None = None) -> bytes:
        if extra:
            header = sorted([(34, b"%d" % seq), (49, self._sender), (52, sending_time),
                             (56, self._target), *extra])
            head = b"".join([b"%d=%s\x01" % f for f in header])
        else:
            head = b"34=%d\x0149=%s\x0152=%s\x0156=%s\x01" % (seq, self._sender, sending_time, self._target)
        if body.__class__ is bytes:
            fields = body
        elif body:
            try:
                fields = b"\x01".join([_TAG_EQ[t] + v for t, v in body]) + b"\x01"
            except KeyError:  # a tag outside 1..9999
                fields = b"".join([b"%d=%s\x01" % f for f in body])
        else:
            fields = b""
        if body_sum is not None:  # the body's sum is known: only the header is summed here
            head = b"35=" + msg_type + b"\x01" + head
            start = self._prefix + b"%d\x01" % (len(head) + len(fields)) + head
            return start + fields + b"10=%03d\x01" % ((byte_sum(start) + body_sum) & 0xFF)
        payload = b"35=" + msg_type + b"\x01" + head + fields
        frame = self._prefix + b"%d\x01" % len(payload) + payload
        return frame + b"10=%03d\x01" % (byte_sum(frame) & 0xFF)

    def _send(self, msg_type: bytes, body: list[tuple[int, bytes]] | bytes,
              extra: list[tuple[int, bytes]] | None = None, body_sum: int | None = None) -> int:
        seq = self.next_sender
        self.next_sender = seq + 1
        now = self.now
        cfg = self.config
        frame = self._frame(msg_type, seq, format_timestamp(now, cfg.timestamp_precision), body, extra, body_sum)
        if cfg.persist_messages and msg_type not in ADMIN_TYPES:
            self._to_store.append((seq, frame))
        if not self.dirty:
            self._mark()
        if self.connected:  # otherwise it is only stored: the client gets it by resend
            self._out.append(frame)
            self.last_sent = now
            self.log.on_outgoing(frame, now)
        return seq

    def _gap_fill(self, begin: int, new_seq: int) -> None:
        ts = format_timestamp(self.now, self.config.timestamp_precision)
        frame = self._frame(b"4", begin, ts, [(36, b"%d" % new_seq), (123, b"Y")], [(43, b"Y"), (122, ts)])
        self._mark()
        self._out.append(frame)
        self.last_sent = self.now
        self.log.on_outgoing(frame, self.now)
        self._event(f"Sent SequenceReset TO: {new_seq}")

    def _resend(self, raw: bytes) -> None:
        try:
            stored = parse_frame(raw)
        except ValueError:
            return
        msg_type = stored.get(35) or b""
        seq = stored.get_int(34, 0) or 0
        orig = stored.get(52) or b""
        extra: list[tuple[int, bytes]] = [(43, b"Y"), (122, orig)]
        body: list[tuple[int, bytes]] = []
        for tag, value in stored.fields:
            if tag in _OWN_HEADER or tag in (43, 122):
                continue
            if tag in HEADER_TAGS:
                extra.append((tag, value))
            else:
                body.append((tag, value))
        frame = self._frame(msg_type, seq, format_timestamp(self.now, self.config.timestamp_precision),
                            body, extra)
        self._mark()
        self._out.append(frame)
        self.last_sent = self.now
        self.log.on_outgoing(frame, self.now)
        self._event(f"Resending Message: {seq}")
