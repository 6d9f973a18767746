"""FIX framing, parsing and timestamps.

:class:`FrameReader` turns a byte stream into complete frames: it copes with partial reads, several
frames in one read and garbage between frames. A frame whose BodyLength or CheckSum is wrong, or whose
first three tags are not 8, 9, 35, is *garbled*: it is dropped (recorded in ``reader.garbled``) and never
reaches the session, so it consumes no sequence number (FIX 4.4 vol. 2, "garbled messages").

Where the trailer is not where BodyLength says, the frame is cut as QuickFIX's parser cuts it: a
length too short ends the frame at its own CheckSum field; a length too long runs it to the first
CheckSum field at or after the declared end, so the message it runs into is dropped with it (see
:meth:`FrameReader._too_long_end` for the one bound added to QuickFIX's rule).
"""

from __future__ import annotations

import calendar
import time
import zlib
from dataclasses import dataclass

from fix.message import Message

SOH = b"\x01"
MAX_FRAME = 1 << 20
"""A frame longer than this (1 MiB) is treated as garbage."""

# Length field -> data field it announces (data fields may contain SOH).
DATA_FIELDS: dict[int, int] = {
    90: 91, 93: 89, 95: 96, 212: 213, 348: 349, 350: 351, 352: 353, 354: 355, 356: 357,
    358: 359, 360: 361, 362: 363, 364: 365, 445: 446, 618: 619, 621: 622,
}
_DATA_VALUE_TAGS = frozenset(DATA_FIELDS.values())
_DATA_LENGTH_TAGS = frozenset(DATA_FIELDS)
_TAG_INTS = {str(t).encode(): t for t in range(1, 10000)}
"""Tag bytes -> int for the usual tags: a dict look-up is cheaper than ``int(bytes)``."""


def byte_sum(data: bytes) -> int:
    """Sum of the bytes (CheckSum is this mod 256), computed in C.

    Adler-32's low half is 1 + the byte sum mod 65521, exact while the sum stays below 65520,
    which any 256 bytes guarantee (256 x 255 = 65280); longer data goes in 256-byte slices.
    About 8x faster than ``sum(data)`` on a typical order.
    """
    adler32 = zlib.adler32
    n = len(data)
    if n <= 256:
        return (adler32(data) & 0xFFFF) - 1
    return sum([(adler32(data[i:i + 256]) & 0xFFFF) - 1 for i in range(0, n, 256)])


@dataclass(slots=True)
class Garbled:
    """A dropped frame and why it was dropped."""

    raw: bytes
    reason: str
    after: int = 0
    """How many good frames of the same ``feed`` call came before this one."""


class FrameReader:
    """Incremental framer: ``feed(data)`` returns the complete, well-formed frames now available."""

    __slots__ = ("_buf", "garbled", "max_frame")

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = b""
        self.garbled: list[Garbled] = []
        self.max_frame = max_frame

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buf)

    def take_buffer(self) -> bytes:
        """Remove and return the bytes held (the start of an incomplete frame)."""
        buf, self._buf = self._buf, b""
        return buf

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf + data if self._buf else bytes(data)
        frames: list[bytes] = []
        pos = 0
        n = len(buf)
        find = buf.find
        while True:
            start = find(b"8=FIX", pos)
            if start < 0:
                # keep a possible partial "8=FIX" at the tail
                keep = max(pos, n - 4)
                if keep > pos and pos < n:
                    self._note_garbage(buf[pos:keep], len(frames))
                pos = keep
                break
            if start > pos:
                self._note_garbage(buf[pos:start], len(frames))
            pos = start
            soh1 = find(SOH, start)
            if soh1 < 0:
                if n - start > 64:
                    self.garbled.append(Garbled(buf[start:], "no SOH after BeginString", len(frames)))
                    pos = n
                break
            if n < soh1 + 3:
                break
            if not buf.startswith(b"9=", soh1 + 1):
                self.garbled.append(Garbled(buf[start:soh1 + 1], "second tag is not BodyLength (9)", len(frames)))
                pos = soh1 + 1
                continue
            soh2 = find(SOH, soh1 + 3)
            if soh2 < 0:
                if n - soh1 > 16:
                    self.garbled.append(Garbled(buf[start:soh1 + 1], "BodyLength not terminated", len(frames)))
                    pos = soh1 + 1
                    continue
                break
            length_bytes = buf[soh1 + 3:soh2]
            if not length_bytes.isdigit() or len(length_bytes) > 9:
                self.garbled.append(Garbled(buf[start:soh2 + 1], "BodyLength is not a number", len(frames)))
                pos = soh2 + 1
                continue
            body_start = soh2 + 1
            body_end = body_start + int(length_bytes)
            end = body_end + 7
            # fast path: the trailer sits where BodyLength says it does
            if (
                end <= n
                and buf[body_end - 1] == 1
                and buf.startswith(b"10=", body_end)
                and buf[body_end + 6] == 1
            ):
                frame = buf[start:end]
                pos = end
                if not buf.startswith(b"35=", body_start):
                    self.garbled.append(Garbled(frame, "third tag is not MsgType (35)", len(frames)))
                    continue
                cks = buf[body_end + 3:body_end + 6]
                if not cks.isdigit() or int(cks) != byte_sum(buf[start:body_end]) & 0xFF:
                    self.garbled.append(Garbled(frame, "CheckSum mismatch", len(frames)))
                    continue
                frames.append(frame)
                continue
            # slow path: the trailer is not where BodyLength says; find this frame's own first one
            t = find(b"\x0110=", soh2)
            if t < 0:
                if n - start > self.max_frame:
                    self.garbled.append(Garbled(buf[start:], "frame too long", len(frames)))
                    pos = n
                break
            e = find(SOH, t + 4)
            if e < 0:
                if n - t > 16:
                    self.garbled.append(Garbled(buf[start:t + 1], "CheckSum not terminated", len(frames)))
                    pos = t + 1
                    continue
                break
            stop = e + 1
            if body_end - 1 > t:
                stop = self._too_long_end(buf, body_end, stop)
                if stop < 0:  # wait for the bytes the declared length asks for
                    if n - start > self.max_frame:
                        self.garbled.append(Garbled(buf[start:], "frame too long", len(frames)))
                        pos = n
                    break
                reason = "BodyLength too long"
            elif t + 1 != body_end:
                reason = "BodyLength too short"
            else:
                reason = "CheckSum malformed"
            self.garbled.append(Garbled(buf[start:stop], reason, len(frames)))
            pos = stop
        self._buf = buf[pos:] if pos < n else b""
        return frames

    @staticmethod
    def _too_long_end(buf: bytes, body_end: int, own_end: int) -> int:
        """Where a frame whose BodyLength runs past its own trailer (ending at ``own_end``) ends.

        As QuickFIX's ``Parser::readFixMessage``: the frame runs to the first CheckSum field at or
        after the declared end, so it swallows the message the length runs into (both are dropped;
        the session recovers the gap by ResendRequest). Unlike QuickFIX it never swallows more than
        that next message, and never waits for declared bytes while that message is already
        complete: a lying length cannot hold the rest of the stream hostage. -1: wait for more.
        """
        nxt = -1
        s = buf.find(b"8=FIX", own_end)
        if s >= 0:
            t = buf.find(b"\x0110=", s)
            if t >= 0:
                e = buf.find(SOH, t + 4)
                if e >= 0:
                    nxt = e + 1
        if body_end <= len(buf):
            t = buf.find(b"\x0110=", body_end - 1)
            if t >= 0:
                e = buf.find(SOH, t + 4)
                if e >= 0 and (nxt < 0 or e + 1 <= nxt):
                    return e + 1
        return nxt

    def _note_garbage(self, data: bytes, after: int = 0) -> None:
        if data.strip(b"\x01\r\n "):
            self.garbled.append(Garbled(data, "bytes outside a frame", after))


def parse_frame(raw: bytes) -> Message:
    """Parse a complete frame into a :class:`Message` (values as bytes, data fields kept whole).

    Raises ``ValueError`` on a field without '=' or a non-numeric tag (the frame is then garbled).
    The message's first-occurrence index is built here too (one C-level ``dict`` call).
    """
    tag_int = _TAG_INTS.get
    # fast path, all in C: exactly one '=' per field, every tag a canonical 1..9999, no data field
    flat = raw.replace(b"=", SOH).split(SOH)
    flat.pop()  # the empty tail after the final SOH
    if not len(flat) & 1 and raw.count(b"=") == len(flat) >> 1:
        shape = tuple(map(tag_int, flat[0::2]))
        if None not in shape and _DATA_LENGTH_TAGS.isdisjoint(shape):
            values = flat[1::2]
            fields = list(zip(shape, values, strict=True))
            index = dict(zip(shape, values, strict=True))
            if len(index) != len(shape):  # a repeated tag: the index keeps the first occurrence
                index = dict(reversed(fields))
            msg = Message(fields, raw)
            msg._index = index
            msg.shape = shape
            return msg
    parts = raw.split(SOH)
    parts.pop()
    fields: list[tuple[int, bytes]] | None
    if raw.count(b"=") < len(parts):  # some field has no '='
        fields = None
    else:
        try:
            fields = [(tag_int(t) or int(t), v) for t, _, v in [p.partition(b"=") for p in parts]]
        except ValueError:
            fields = None
    if fields is not None:
        index = dict(reversed(fields))
        if _DATA_LENGTH_TAGS.isdisjoint(index):
            msg = Message(fields, raw)
            msg._index = index
            return msg
    fields = _parse_with_data(raw)  # data fields may hold SOH; raises ValueError on garbage
    index = dict(reversed(fields))
    msg = Message(fields, raw)
    msg._index = index
    return msg


def _parse_with_data(raw: bytes) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    pos = 0
    n = len(raw)
    data_len: dict[int, int] = {}
    while pos < n:
        eq = raw.find(b"=", pos)
        if eq < 0:
            raise ValueError("field without '='")
        tag = int(raw[pos:eq])
        length = data_len.pop(tag, None) if tag in _DATA_VALUE_TAGS else None
        if length is not None and eq + 1 + length <= n and raw[eq + 1 + length:eq + 2 + length] == SOH:
            end = eq + 1 + length
        else:
            end = raw.find(SOH, eq + 1)
            if end < 0:
                end = n
        value = raw[eq + 1:end]
        if tag in DATA_FIELDS and value.isdigit():
            data_len[DATA_FIELDS[tag]] = int(value)
        out.append((tag, value))
        pos = end + 1
    return out


# ---------------------------------------------------------------- timestamps

_sec_cache: list = [None, b""]


_last_ts: list = [None, 0, -1, b""]  # now, precision, now in units of the precision, formatted
_SCALE = {3: 1000, 6: 1_000_000, 9: 1_000_000_000}


def format_timestamp(now: float, precision: int = 3) -> bytes:
    """UTCTimestamp ``YYYYMMDD-HH:MM:SS[.sss]`` for ``now`` (epoch seconds); precision 0, 3, 6 or 9.

    Formatted once per distinct value at that precision: a batch's messages (its SendingTimes,
    owners' reports and drop copies alike) made within one millisecond share one string."""
    last = _last_ts
    if last[0] == now and last[1] == precision:  # the same ``now`` again
        return last[3]
    scale = _SCALE.get(precision, 10 ** precision if precision > 0 else 1)
    units = round(now * scale) if precision > 0 else int(now)
    if last[2] == units and last[1] == precision:  # another ``now`` within the same unit
        last[0] = now
        return last[3]
    value = _format_units(units, scale, precision)
    last[0], last[1], last[2], last[3] = now, precision, units, value
    return value


def _format_timestamp(now: float, precision: int) -> bytes:
    if precision <= 0:
        return _format_units(int(now), 1, 0)
    return _format_units(round(now * _SCALE.get(precision, 10 ** precision)), _SCALE.get(precision, 10 ** precision),
                         precision)


def _format_units(units: int, scale: int, precision: int) -> bytes:
    sec, frac = divmod(units, scale)
    if _sec_cache[0] != sec:
        _sec_cache[0] = sec
        _sec_cache[1] = time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(sec)).encode()
    prefix: bytes = _sec_cache[1]
    if precision == 3:
        return prefix + b".%03d" % frac
    if precision <= 0:
        return prefix
    if precision == 6:
        return prefix + b".%06d" % frac
    return prefix + b".%09d" % frac


_ts_cache: list = [b"", 0.0]


def parse_timestamp(value: bytes) -> float | None:
    """Epoch seconds for a UTCTimestamp, or ``None`` if it is not one."""
    n = len(value)
    if n < 17:
        return None
    head = value[:17]
    if head == _ts_cache[0]:
        base = _ts_cache[1]
    else:
        base = _parse_seconds(head)
        if base is None:
            return None
        _ts_cache[0] = head
        _ts_cache[1] = base
    if n == 17:
        return base
    tail = value[18:]
    if value[17:18] != b"." or not tail.isdigit() or len(tail) > 9:
        return None
    return base + int(tail) / (10 ** len(tail))


def _parse_seconds(value: bytes) -> float | None:
    if value[8:9] != b"-" or value[11:12] != b":" or value[14:15] != b":":
        return None
    d, t1, t2, t3 = value[:8], value[9:11], value[12:14], value[15:17]
    if not (d.isdigit() and t1.isdigit() and t2.isdigit() and t3.isdigit()):
        return None
    year, month, day = int(d[:4]), int(d[4:6]), int(d[6:8])
    hour, minute, second = int(t1), int(t2), int(t3)
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second <= 60):
        return None
    return float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))
