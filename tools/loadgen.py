"""``venue loadgen``: a FIX order-entry load generator that ships with the venue.

Operators and client firms point it at a venue (host, port, CompIDs and their Ed25519 key files;
the demo keys in ``var/demo-keys/`` are the example). Each session logs on (signed, sequence
reset) and sends DAY limit orders at one price: sessions alternate buy and sell, so with two
sessions every other order crosses. A share of the requests can be cancels and replaces of the
session's own resting orders (``--cancel``/``--replace`` percent).

Closed loop (default): each session keeps ``--window`` requests in flight. Open loop (``--rate``):
requests go out at a fixed total rate, whatever the acknowledgements do.

An acknowledgement is the first ExecutionReport (35=8) or OrderCancelReject (35=9; for a
BusinessMessageReject 35=j, its 379) carrying the request's ClOrdID; its latency runs from the
write of the request to the read of that report. The generator stays lean so that it is not the
bottleneck: one asyncio thread, pre-encoded message templates where only MsgSeqNum, SendingTime,
ClOrdID and TransactTime are patched, the checksum by ``fix.codec.byte_sum``, and frames read by
finding ``10=``, ``35=``, ``11=`` and ``39=`` in the raw bytes. Its own CPU time is reported, so a
saturated generator shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from fix.codec import byte_sum, format_timestamp

SIDES = {"buy": b"1", "sell": b"2"}
TIFS = {"day": b"0", "gtc": b"1"}


class LoadError(click.ClickException):
    """A set-up or run problem, told to the user (non-zero exit)."""


@dataclass(slots=True)
class Flow:
    """What every session sends, and for how long."""

    symbol: str = "BTC-USDT"
    price: str = "60000"
    qty: str = "0.0001"
    tif: str = "day"
    window: int = 100
    rate: float | None = None
    """Total requests per second (open loop); None: closed loop with ``window`` in flight."""
    cancel_pct: int = 0
    replace_pct: int = 0
    duration: float = 10.0
    warmup: float = 2.0
    orders: int | None = None
    """Bounded run: this many requests in all (split over the sessions), no warm-up, all measured."""
    drain_s: float = 15.0
    """How long to wait for the acknowledgements still due after the last request."""

    def check(self) -> None:
        if self.window < 1:
            raise LoadError("--window must be at least 1")
        if self.rate is not None and not 0 < self.rate < float("inf"):  # NaN fails both comparisons
            raise LoadError(f"--rate must be a positive finite number of requests per second, got {self.rate}")
        if not (0 <= self.cancel_pct <= 100 and 0 <= self.replace_pct <= 100
                and self.cancel_pct + self.replace_pct <= 100):
            raise LoadError("--cancel and --replace are percentages adding up to at most 100")
        if self.orders is not None and self.orders < 1:
            raise LoadError("--orders must be at least 1")
        if self.orders is None and self.duration <= 0:
            raise LoadError("--duration must be positive")
        if self.tif not in TIFS:
            raise LoadError(f"--tif must be one of {', '.join(TIFS)}")


@dataclass(slots=True)
class SessionSpec:
    """One order-entry session: its CompID, signing key and the side it trades."""

    sender: str
    key: Any
    key_id: str
    side: str = "buy"
    account: str | None = None
    target: str = "VENUE"


def load_session_spec(spec: str, keys_dir: Path, side: str, target: str = "VENUE") -> SessionSpec:
    """``COMPID`` (key ``<keys_dir>/COMPID.pem``) or ``COMPID:KEYFILE``; the key id is read from
    ``<key>.keyid`` beside the key when present, else derived from the public key."""
    from venue.access import signing

    sender, _, path = spec.partition(":")
    if not sender:
        raise LoadError(f"--session {spec!r}: no CompID")
    pem = Path(path) if path else keys_dir / f"{sender}.pem"
    if not pem.is_file():
        raise LoadError(f"session {sender}: no key file {pem} (give COMPID:KEYFILE or --keys-dir)")
    try:
        key = signing.load_private_key_file(pem)
    except signing.KeyFormatError as exc:
        raise LoadError(f"session {sender}: {pem}: {exc}") from None
    kid = pem.with_suffix(".keyid")
    key_id = kid.read_text().strip() if kid.is_file() else signing.key_id_for(key.public_key())
    return SessionSpec(sender, key, key_id, side, None, target)


# ---------------------------------------------------------------------------------------- stats


@dataclass(slots=True)
class Stats:
    """Everything one run counts; shared by its sessions (one thread)."""

    measuring: bool = False
    measure_from: float = float("inf")
    measure_to: float = float("inf")
    """Latencies are kept for requests *sent* in [measure_from, measure_to), whenever their
    acknowledgement comes (a late one during the drain too: an overloaded venue's slowest answers
    are not cut off by the end of the window)."""
    sent: int = 0
    sent_new: int = 0
    sent_cancel: int = 0
    sent_replace: int = 0
    acked: int = 0
    measured: int = 0
    rejected: int = 0
    cancel_rejected: int = 0
    fills: int = 0
    session_rejects: int = 0
    latencies: list[float] = field(default_factory=list)
    first_reject: str | None = None
    ack_log: AckLog | None = None
    """With ``--acked-log``: where every acknowledgement (and fill) is written as it arrives."""
    max_behind_s: float = 0.0


class AckLog:
    """The ``--acked-log`` file: one line per acknowledgement, "SENDER CLORDID MSGTYPE ORDSTATUS"
    (with ``fills``, also "SENDER CLORDID fill ORDSTATUS TRADEID" per fill report after it).

    Written as the acknowledgements arrive (the lines of one read from the socket in one unbuffered
    write at its end), not at the end of the run: a run stopped by a crashed venue, or killed
    itself, leaves a file that lists what it had been told, e.g. to check after a kill -9 of the
    venue that no acknowledged order was lost."""

    __slots__ = ("lines", "fills", "_file")

    def __init__(self, path: Path, fills: bool = False) -> None:
        self.lines: list[bytes] = []
        self.fills = fills
        self._file = open(path, "wb", buffering=0)  # closed by close()

    def append(self, line: bytes) -> None:
        self.lines.append(line)

    def flush(self) -> None:
        if self.lines:
            self._file.write(b"".join(line + b"\n" for line in self.lines))
            self.lines.clear()

    def close(self) -> None:
        self.flush()
        self._file.close()


def _pct(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


def latency_figures(latencies: list[float]) -> dict[str, float | None]:
    ordered = sorted(latencies)
    return {"p50": _pct(ordered, 0.5), "p99": _pct(ordered, 0.99), "p999": _pct(ordered, 0.999),
            "max": ordered[-1] * 1000 if ordered else None,
            "mean": sum(ordered) / len(ordered) * 1000 if ordered else None}


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far, all its threads (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, all its threads."""
    return sum(cpu_times(pid))


# -------------------------------------------------------------------------------------- session


def _lit(text: str) -> bytes:
    """A constant field value for a %-template."""
    return text.encode().replace(b"%", b"%%")


def _field(raw: bytes, tag: bytes, start: int, end: int) -> bytes | None:
    i = raw.find(tag, start, end)
    if i < 0:
        return None
    i += len(tag)
    return raw[i:raw.find(b"\x01", i, end)]


class _Session(asyncio.Protocol):
    """One FIX connection: logon, requests from templates, acknowledgements from raw bytes."""

    def __init__(self, spec: SessionSpec, flow: Flow, stats: Stats, run_id: str, index: int, budget: int | None,
                 mix: list[int]) -> None:
        self.spec, self.flow, self.stats = spec, flow, stats
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.seq = 1
        self.pending: dict[bytes, float] = {}
        self.resting: dict[bytes, bytes] = {}  # ClOrdID -> quantity, for cancels and replaces
        self.track = flow.cancel_pct + flow.replace_pct > 0
        self.budget = budget  # requests left in a bounded run (None: until stopped)
        self.sending = False
        self.mix, self.mix_i = mix, index
        self.logged_on: asyncio.Future = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future = asyncio.get_running_loop().create_future()
        self.drained: asyncio.Future = asyncio.get_running_loop().create_future()
        self.logout_text: str | None = None
        self.cl_prefix = f"{run_id}{index}-".encode()
        self.cl_n = 0
        self.sender = spec.sender.encode()
        sender, target, symbol = _lit(spec.sender), _lit(spec.target), _lit(flow.symbol)
        acct = b"1=%s\x01" % _lit(spec.account) if spec.account else b""
        side = SIDES[spec.side]
        common = b"\x0149=" + sender + b"\x0152=%s\x0156=" + target + b"\x01"
        order = b"55=" + symbol + b"\x0154=" + side + b"\x0160=%s\x0138=%s\x0140=2\x0144=" + _lit(flow.price)
        # pre-encoded templates: only MsgSeqNum, SendingTime, ClOrdIDs, TransactTime, OrderQty change
        self.t_new = b"35=D\x0134=%d" + common + b"11=%s\x01" + acct + order + b"\x0159=" + TIFS[flow.tif] + b"\x01"
        self.t_cancel = (b"35=F\x0134=%d" + common + b"41=%s\x0111=%s\x01" + acct + b"55=" + symbol
                         + b"\x0154=" + side + b"\x0160=%s\x01")
        self.t_replace = b"35=G\x0134=%d" + common + b"41=%s\x0111=%s\x01" + acct + order + b"\x01"
        self.qty = flow.qty.encode()
        self.qty2 = str(Decimal(flow.qty) * 2).encode()

    # ---- framing out

    @staticmethod
    def _frame(body: bytes) -> bytes:
        frame = b"8=FIX.4.4\x019=%d\x01%s" % (len(body), body)
        return frame + b"10=%03d\x01" % (byte_sum(frame) & 0xFF)

    def logon(self) -> None:
        from venue.access.signing import signed_logon_fields

        st = format_timestamp(time.time()).decode()
        extra = "".join(f"{t}={v}\x01" for t, v in signed_logon_fields(
            self.spec.key, self.spec.key_id, self.spec.sender, self.spec.target, 1, st))
        body = (f"35=A\x0134=1\x0149={self.spec.sender}\x0152={st}\x0156={self.spec.target}\x01"
                f"98=0\x01108=30\x01141=Y\x01{extra}").encode()
        self.transport.write(self._frame(body))
        self.seq = 2

    def send(self, k: int) -> None:
        """Write ``k`` requests (fewer if the bounded run's budget runs out) in one write."""
        if k <= 0:
            return
        if self.budget is not None:
            k = min(k, self.budget)
            self.budget -= k
        if k <= 0 or self.transport is None or self.transport.is_closing():
            return
        now = time.time()
        ts = format_timestamp(now)
        frame = self._frame
        pending = self.pending
        resting = self.resting
        mix, n_mix = self.mix, len(self.mix)
        out = []
        cls = []
        seq = self.seq
        stats = self.stats
        for _ in range(k):
            self.cl_n += 1
            cl = b"%s%d" % (self.cl_prefix, self.cl_n)
            kind = 0
            if self.track:
                kind = mix[self.mix_i % n_mix]
                self.mix_i += 1
                if kind and not resting:
                    kind = 0
            if kind == 0:
                out.append(frame(self.t_new % (seq, ts, cl, ts, self.qty)))
                stats.sent_new += 1
            else:
                orig = next(iter(resting))
                qty = resting.pop(orig)
                if kind == 1:
                    out.append(frame(self.t_cancel % (seq, ts, orig, cl, ts)))
                    stats.sent_cancel += 1
                else:
                    out.append(frame(self.t_replace % (seq, ts, orig, cl, ts, self.qty2 if qty == self.qty else self.qty)))
                    stats.sent_replace += 1
            cls.append(cl)
            seq += 1
        self.seq = seq
        stats.sent += k
        t = time.perf_counter()
        for cl in cls:
            pending[cl] = t
        self.transport.write(b"".join(out))

    # ---- framing in

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.logged_on.done():
            self.logged_on.set_exception(LoadError(
                f"session {self.spec.sender}: logon refused" + (f": {self.logout_text}" if self.logout_text else
                " (the venue closed the connection without a Logon: unknown CompID, wrong key, address not "
                "allowed or locked out; the venue's audit log says which)")))
        if not self.closed.done():
            self.closed.set_result(None)
        if not self.drained.done():
            self.drained.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        now = time.perf_counter()
        pending = self.pending
        stats = self.stats
        pos = 0
        n = len(buf)
        acked = 0
        while True:
            i = buf.find(b"\x0110=", pos)
            if i < 0 or i + 8 > n:
                break
            end = i + 8
            j = buf.find(b"\x0135=", pos, i) + 4
            mt = buf[j]
            if mt == 56 or mt == 57:  # "8" ExecutionReport, "9" OrderCancelReject
                k = buf.find(b"\x0111=", j, i) + 4
                cl = buf[k:buf.find(b"\x01", k, i)]
                t = pending.pop(cl, None)
                if t is not None and stats.ack_log is not None:
                    x = buf.find(b"\x0139=", j, i) + 4
                    st = buf[x:x + 1] if mt == 56 else b"-"
                    stats.ack_log.append(b"%s %s %c %s" % (self.sender, cl, mt, st))
                if mt == 57:
                    if t is not None:
                        acked += 1
                        stats.cancel_rejected += 1
                        if stats.measure_from <= t < stats.measure_to:
                            stats.latencies.append(now - t)
                else:
                    s = buf.find(b"\x0139=", j, i) + 4
                    status = buf[s]
                    if t is not None:
                        acked += 1
                        if stats.measure_from <= t < stats.measure_to:
                            stats.latencies.append(now - t)
                        if status == 56:  # "8" rejected
                            stats.rejected += 1
                            if stats.first_reject is None:
                                text = _field(buf, b"\x0158=", j, end)
                                stats.first_reject = (text or b"").decode(errors="replace")
                        elif self.track and status in (48, 49):  # "0" new, "1" partially filled: resting
                            self.resting[cl] = _field(buf, b"\x0138=", j, end) or self.qty
                    else:
                        if status == 50 or status == 49:  # "2" filled, "1" partial
                            stats.fills += 1
                            if stats.ack_log is not None and stats.ack_log.fills:
                                trade = _field(buf, b"\x01880=", j, end) or b"-"
                                stats.ack_log.append(b"%s %s fill %c %s" % (self.sender, cl, status, trade))
                        if self.track and status != 49:  # filled, cancelled, expired: no longer resting
                            self.resting.pop(cl, None)
            elif mt == 48:  # "0" Heartbeat
                pass
            elif mt == 49:  # "1" TestRequest
                self._heartbeat(_field(buf, b"\x01112=", j, end) or b"")
            elif mt == 106:  # "j" BusinessMessageReject
                cl = _field(buf, b"\x01379=", j, end)
                t = pending.pop(cl, None) if cl is not None else None
                if t is not None:
                    acked += 1
                    stats.rejected += 1
                    if stats.ack_log is not None:
                        stats.ack_log.append(b"%s %s j -" % (self.sender, cl))
                    if stats.measure_from <= t < stats.measure_to:
                        stats.latencies.append(now - t)
                if stats.first_reject is None:
                    stats.first_reject = (_field(buf, b"\x0158=", j, end) or b"").decode(errors="replace")
            elif mt == 51:  # "3" session-level Reject
                stats.session_rejects += 1
                if stats.first_reject is None:
                    stats.first_reject = "session reject: " + (_field(buf, b"\x0158=", j, end) or b"").decode(
                        errors="replace")
            elif mt == 65 and buf[j + 1] == 1:  # "A" Logon
                if not self.logged_on.done():
                    self.logged_on.set_result(None)
            elif mt == 53:  # "5" Logout
                self.logout_text = (_field(buf, b"\x0158=", j, end) or b"").decode(errors="replace")
                if self.transport is not None:
                    self.transport.close()
            pos = end
        self.buf = buf[pos:] if pos < n else b""
        if stats.ack_log is not None:
            stats.ack_log.flush()
        if acked:
            stats.acked += acked
            if stats.measuring:
                stats.measured += acked
            if self.sending and self.flow.rate is None:
                self.send(self.flow.window - len(pending))
            elif not self.sending and not pending and not self.drained.done():
                self.drained.set_result(None)
            if self.budget == 0 and not pending and not self.drained.done():
                self.drained.set_result(None)

    def _heartbeat(self, test_id: bytes) -> None:
        ts = format_timestamp(time.time())
        body = b"35=0\x0134=%d\x0149=%s\x0152=%s\x0156=%s\x01" % (self.seq, self.sender, ts, self.spec.target.encode())
        if test_id:
            body += b"112=%s\x01" % test_id
        self.seq += 1
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self._frame(body))

    def stop_sending(self) -> None:
        self.sending = False
        if not self.pending and not self.drained.done():
            self.drained.set_result(None)

    async def logout(self, timeout: float = 3.0) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        ts = format_timestamp(time.time())
        self.transport.write(self._frame(b"35=5\x0134=%d\x0149=%s\x0152=%s\x0156=%s\x01"
                                         % (self.seq, self.sender, ts, self.spec.target.encode())))
        self.seq += 1
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except TimeoutError:
            self.transport.close()


# ------------------------------------------------------------------------------------------ run


def _mix(flow: Flow, seed: int = 7) -> list[int]:
    """A shuffled cycle of 100 request kinds: 0 new, 1 cancel, 2 replace."""
    kinds = [1] * flow.cancel_pct + [2] * flow.replace_pct
    kinds += [0] * (100 - len(kinds))
    random.Random(seed).shuffle(kinds)
    return kinds


async def run_load(host: str, port: int, specs: list[SessionSpec], flow: Flow, *, venue_pid: int | None = None,
                   progress: Callable[[dict[str, Any]], None] | None = None,
                   ack_log: AckLog | None = None) -> dict[str, Any]:
    """Drive ``specs`` against the venue at host:port with ``flow``; return the figures (see
    ``FIELDS``)."""
    flow.check()
    if not specs:
        raise LoadError("no session to drive (give --session)")
    loop = asyncio.get_running_loop()
    stats = Stats(ack_log=ack_log)
    run_id = _run_id()
    mix = _mix(flow)
    budgets: list[int | None] = [None] * len(specs)
    if flow.orders is not None:
        per, extra = divmod(flow.orders, len(specs))
        budgets = [per + (1 if i < extra else 0) for i in range(len(specs))]
    sessions: list[_Session] = []
    try:
        for i, spec in enumerate(specs):
            try:
                _, s = await loop.create_connection(
                    lambda spec=spec, i=i: _Session(spec, flow, stats, run_id, i + 1, budgets[i], mix), host, port)
            except OSError as exc:
                raise LoadError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
            sessions.append(s)
            s.logon()
            try:
                await asyncio.wait_for(s.logged_on, 10.0)
            except TimeoutError:
                raise LoadError(f"session {spec.sender}: no Logon reply within 10 s") from None
        return await _drive(sessions, flow, stats, venue_pid, progress)
    finally:
        for s in sessions:
            if s.transport is not None and not s.transport.is_closing():
                s.transport.close()


async def _drive(sessions: list[_Session], flow: Flow, stats: Stats, venue_pid: int | None,
                 progress: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
    bounded = flow.orders is not None
    warmup = 0.0 if bounded else flow.warmup
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = None if bounded else measure_from + flow.duration
    marks: dict[str, tuple[float, float, tuple[float, float] | None, int, int]] = {}

    def mark(name: str) -> None:
        if name == "start":
            stats.measure_from = time.perf_counter()
        elif not bounded:
            stats.measure_to = time.perf_counter()
        marks[name] = (time.perf_counter(), time.process_time(), cpu_times(venue_pid) if venue_pid else None,
                       stats.measured, stats.sent)

    if not warmup:
        stats.measuring = True
        mark("start")
    for s in sessions:
        s.sending = True
    pacer = None
    if flow.rate is None:
        for s in sessions:
            s.send(flow.window)
    else:
        pacer = asyncio.create_task(_pace(sessions, flow, stats, start))
    last_report = 0.0
    while True:
        await asyncio.sleep(0.05)
        now = time.perf_counter()
        if not stats.measuring and now >= measure_from:
            stats.measuring = True
            mark("start")
        if progress is not None and now - last_report >= 0.25:
            last_report = now
            progress({"elapsed": now - start, "warmup": warmup, "duration": flow.duration, "acked": stats.acked,
                      "measured": stats.measured, "sent": stats.sent, "orders": flow.orders})
        if any(s.closed.done() for s in sessions):
            break
        if stop_at is not None and now >= stop_at:
            break
        if bounded and all(s.budget == 0 for s in sessions):
            break
    if pacer is not None:
        pacer.cancel()
    if not bounded:
        mark("end")  # the measured window ends when sending stops; late acks are drained unmeasured
        stats.measuring = False
    for s in sessions:
        s.stop_sending()
    with contextlib.suppress(TimeoutError):  # what has not drained by then is counted as unanswered
        await asyncio.wait_for(asyncio.gather(*(s.drained for s in sessions)), flow.drain_s)
    if bounded:
        mark("end")
        stats.measuring = False
    lost = [s.spec.sender for s in sessions if s.closed.done()]
    unacked = sum(len(s.pending) for s in sessions)
    await asyncio.gather(*(s.logout() for s in sessions))
    if progress is not None:
        progress({"elapsed": time.perf_counter() - start, "warmup": warmup, "duration": flow.duration,
                  "acked": stats.acked, "measured": stats.measured, "sent": stats.sent, "orders": flow.orders,
                  "done": True})
    return _figures(sessions, flow, stats, marks, unacked, lost)


async def _pace(sessions: list[_Session], flow: Flow, stats: Stats, start: float) -> None:
    """Open loop: every millisecond or so, send each session the requests its schedule has made due."""
    per_session = flow.rate / len(sessions)
    sent = [0] * len(sessions)
    while True:
        elapsed = time.perf_counter() - start
        due = int(elapsed * per_session) + 1
        for i, s in enumerate(sessions):
            k = due - sent[i]
            if k > 0 and s.sending:
                if k > 1:
                    stats.max_behind_s = max(stats.max_behind_s, (k - 1) / per_session)
                s.send(k)
                sent[i] = due
        # sleep until the next request falls due (at least 0.5 ms: the loop has reading to do too)
        await asyncio.sleep(max(0.0005, min(0.01, due / per_session - (time.perf_counter() - start))))


def _run_id() -> str:
    """A short ClOrdID prefix unique to this run (ClOrdIDs are unique per account)."""
    n = time.time_ns() // 1_000_000
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return "L" + out + "-"


FIELDS = {
    "mode": "closed (a window in flight per session) or open (a fixed total rate)",
    "sessions": "order-entry sessions driven",
    "window": "requests in flight per session (closed loop)",
    "rate": "requests per second in all (open loop), else null",
    "seconds": "length of the measured window",
    "sent": "requests written in the whole run (warm-up included)",
    "sent_new / sent_cancel / sent_replace": "of which new orders, cancels, replaces",
    "acked": "requests acknowledged in the whole run",
    "unacked": "requests with no acknowledgement when the run ended (should be 0)",
    "measured": "acknowledgements in the measured window",
    "orders_per_s": "acknowledgements per second in the measured window",
    "latency_ms": "p50 / p99 / p999 / max / mean acknowledgement latency of the requests sent in the window",
    "rejected": "requests answered with a reject (39=8 or 35=j)",
    "first_reject": "the Text (58) of the first reject, else null",
    "session_rejects": "session-level Rejects (35=3) received (their requests stay unacknowledged)",
    "disconnected": "CompIDs whose connection the venue closed during the run",
    "cancel_rejected": "cancels/replaces answered with OrderCancelReject (the order had filled)",
    "fills": "fill reports received for resting orders (after their acknowledgement)",
    "generator_cpu_s / generator_cpu_pct / generator_cpu_us_per_order": "this process's CPU in the window",
    "venue_cpu_s / venue_cpu_pct / venue_cpu_us_per_order": "the venue process's CPU (with its pid), else null",
    "venue_cpu_user_s / venue_cpu_sys_s": "of which user and kernel time (fsyncs, sockets)",
    "max_behind_ms": "open loop: the most the pacer fell behind its schedule",
}


def _figures(sessions: list[_Session], flow: Flow, stats: Stats, marks: dict, unacked: int,
             lost: list[str]) -> dict[str, Any]:
    t0, c0, v0, m0, _ = marks.get("start", marks.get("end"))
    t1, c1, v1, m1, _ = marks["end"]
    seconds = max(t1 - t0, 1e-9)
    measured = m1 - m0
    per = max(measured, 1)
    gen = c1 - c0
    user = sys_ = venue = None
    if v0 is not None and v1 is not None:
        user, sys_ = v1[0] - v0[0], v1[1] - v0[1]
        venue = user + sys_
    return {
        "mode": "open" if flow.rate is not None else "closed",
        "sessions": len(sessions),
        "window": flow.window if flow.rate is None else None,
        "rate": flow.rate,
        "seconds": seconds,
        "sent": stats.sent, "sent_new": stats.sent_new, "sent_cancel": stats.sent_cancel,
        "sent_replace": stats.sent_replace,
        "acked": stats.acked, "unacked": unacked, "measured": measured,
        "orders_per_s": measured / seconds,
        "latency_ms": latency_figures(stats.latencies),
        "rejected": stats.rejected, "cancel_rejected": stats.cancel_rejected, "fills": stats.fills,
        "session_rejects": stats.session_rejects, "first_reject": stats.first_reject,
        "generator_cpu_s": gen, "generator_cpu_pct": gen / seconds * 100, "generator_cpu_us_per_order": gen / per * 1e6,
        "venue_cpu_s": venue, "venue_cpu_pct": venue / seconds * 100 if venue is not None else None,
        "venue_cpu_us_per_order": venue / per * 1e6 if venue is not None else None,
        "venue_cpu_user_s": user, "venue_cpu_sys_s": sys_,
        "max_behind_ms": stats.max_behind_s * 1000 if flow.rate is not None else None,
        "disconnected": lost,
    }


# ------------------------------------------------------------------------------------------ CLI


def flow_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The flow options shared by ``venue loadgen`` and ``venue bench e2e``."""
    opts = [
        click.option("--window", default=100, show_default=True, help="Closed loop: requests in flight per session."),
        click.option("--rate", type=float, default=None,
                     help="Open loop: requests per second in all sessions together (instead of --window)."),
        click.option("--duration", default=10.0, show_default=True, help="Measured seconds."),
        click.option("--warmup", default=2.0, show_default=True, help="Seconds of load before measuring."),
        click.option("--orders", type=int, default=None,
                     help="Bounded run: this many requests in all, every one measured (no warm-up, no --duration)."),
        click.option("--cancel", "cancel_pct", default=0, show_default=True,
                     help="Percent of requests that cancel one of the session's resting orders."),
        click.option("--replace", "replace_pct", default=0, show_default=True,
                     help="Percent of requests that replace one (quantity doubled or halved back)."),
        click.option("--symbol", default="BTC-USDT", show_default=True),
        click.option("--price", default="60000", show_default=True,
                     help="The one limit price of every order (buys and sells cross at it)."),
        click.option("--qty", default="0.0001", show_default=True, help="Quantity of every order."),
        click.option("--tif", type=click.Choice(sorted(TIFS)), default="day", show_default=True),
        click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def make_flow(window: int, rate: float | None, duration: float, warmup: float, orders: int | None, cancel_pct: int,
              replace_pct: int, symbol: str, price: str, qty: str, tif: str) -> Flow:
    flow = Flow(symbol=symbol, price=price, qty=qty, tif=tif, window=window, rate=rate, cancel_pct=cancel_pct,
                replace_pct=replace_pct, duration=duration, warmup=warmup, orders=orders)
    flow.check()
    return flow


def run_with_progress(host: str, port: int, specs: list[SessionSpec], flow: Flow, *, venue_pid: int | None,
                      show: bool, label: str = "load", ack_log: AckLog | None = None) -> dict[str, Any]:
    """``run_load`` with a rich progress bar on stderr (when ``show``)."""
    if not show:
        return asyncio.run(run_load(host, port, specs, flow, venue_pid=venue_pid, ack_log=ack_log))
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bounded = flow.orders is not None
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True, refresh_per_second=4) as bar:
        task = bar.add_task(label, total=flow.orders if bounded else flow.warmup + flow.duration, info="")
        last = {"t": 0.0, "acked": 0}

        def progress(p: dict[str, Any]) -> None:
            dt = p["elapsed"] - last["t"]
            rate = (p["acked"] - last["acked"]) / dt if dt > 0 else 0.0
            last["t"], last["acked"] = p["elapsed"], p["acked"]
            phase = "warm-up" if p["elapsed"] < p["warmup"] else "measuring"
            bar.update(task, completed=p["acked"] if bounded else min(p["elapsed"], p["warmup"] + p["duration"]),
                       info=f"{phase}  {p['acked']:,} acked  {rate:,.0f}/s")

        return asyncio.run(run_load(host, port, specs, flow, venue_pid=venue_pid, progress=progress, ack_log=ack_log))


def print_figures(r: dict[str, Any]) -> None:
    lat = r["latency_ms"]
    shape = (f"{r['sessions']} sessions x {r['window']} in flight" if r["mode"] == "closed"
             else f"{r['sessions']} sessions, open loop at {r['rate']:,.0f}/s")
    click.echo(f"{shape}: {r['measured']:,} acknowledged in {r['seconds']:.2f} s = {r['orders_per_s']:,.0f} orders/s")

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    click.echo(f"ack latency ms: p50 {ms(lat['p50'])}  p99 {ms(lat['p99'])}  p99.9 {ms(lat['p999'])}  "
               f"max {ms(lat['max'])}")
    click.echo(f"requests: {r['sent']:,} sent ({r['sent_new']:,} new, {r['sent_cancel']:,} cancel, "
               f"{r['sent_replace']:,} replace), {r['acked']:,} acknowledged, {r['unacked']} unacknowledged; "
               f"{r['fills']:,} fills; {r['rejected']} rejected, {r['cancel_rejected']} cancel rejects")
    if r["first_reject"]:
        click.echo(f"first reject: {r['first_reject']}")
    if r["venue_cpu_us_per_order"] is not None:
        click.echo(f"venue CPU: {r['venue_cpu_us_per_order']:.1f} us per order ({r['venue_cpu_pct']:.0f} % of a core, "
                   f"{r['venue_cpu_sys_s'] / max(r['venue_cpu_s'], 1e-9) * 100:.0f} % of it in the kernel)")
    click.echo(f"generator CPU: {r['generator_cpu_us_per_order']:.1f} us per order ({r['generator_cpu_pct']:.0f} % "
               "of a core" + (": saturated, the figures are the generator's" if r["generator_cpu_pct"] > 90 else "")
               + ")")
    if r["max_behind_ms"] is not None:
        click.echo(f"pacer at most {r['max_behind_ms']:.1f} ms behind schedule")
    if r["disconnected"]:
        click.echo(f"disconnected by the venue: {', '.join(r['disconnected'])}")


@click.command("loadgen")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=9876, show_default=True)
@click.option("--session", "sessions", multiple=True, required=True,
              help="COMPID (key <keys-dir>/COMPID.pem) or COMPID:KEYFILE; repeatable. Sessions alternate buy, sell.")
@click.option("--keys-dir", default="var/demo-keys", show_default=True, type=click.Path(path_type=Path),
              help="Where COMPID.pem and COMPID.keyid are (the demo venue writes them there).")
@click.option("--target", default="VENUE", show_default=True, help="The venue's CompID.")
@click.option("--account", "accounts", multiple=True, metavar="COMPID=ACCOUNT",
              help="Account (tag 1) of a session's orders; needed where a session trades several accounts.")
@click.option("--venue-pid", type=int, default=None, help="The venue's pid, on this machine: report its CPU too.")
@click.option("--acked-log", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write every acknowledgement here as it arrives, one line each: SENDER CLORDID MSGTYPE "
                   "ORDSTATUS (e.g. to check after a crash that no acknowledged order was lost).")
@click.option("--log-fills", is_flag=True,
              help="With --acked-log, also a line per fill report: SENDER CLORDID fill ORDSTATUS TRADEID.")
@flow_options
def command(host: str, port: int, sessions: tuple[str, ...], keys_dir: Path, target: str, accounts: tuple[str, ...],
            venue_pid: int | None, acked_log: Path | None, log_fills: bool, as_json: bool, **flow_kw: Any) -> None:
    """Drive order-entry sessions of a running venue and print orders/s and acknowledgement latency.

    Against the demo venue (throttle 50 messages/s per session) keep the load under it, e.g.
    ``venue loadgen --session DEMO1 --session DEMO2 --rate 80`` (40/s each); ``venue bench e2e``
    makes sessions with throttles for heavy loads.
    """
    flow = make_flow(**flow_kw)
    specs = [load_session_spec(s, keys_dir, "buy" if i % 2 == 0 else "sell", target) for i, s in enumerate(sessions)]
    by_sender = {s.sender: s for s in specs}
    for item in accounts:
        sender, _, acc = item.partition("=")
        if not acc or sender not in by_sender:
            raise LoadError(f"--account {item!r}: give COMPID=ACCOUNT for one of the --session CompIDs")
        by_sender[sender].account = acc
    if venue_pid is not None and not Path(f"/proc/{venue_pid}/stat").exists():
        raise LoadError(f"--venue-pid {venue_pid}: no such process on this machine")
    if log_fills and acked_log is None:
        raise LoadError("--log-fills needs --acked-log")
    try:
        log = AckLog(acked_log, fills=log_fills) if acked_log is not None else None
    except OSError as exc:
        raise LoadError(f"--acked-log {acked_log}: {exc.strerror or exc}") from None
    try:
        result = run_with_progress(host, port, specs, flow, venue_pid=venue_pid, show=not as_json, ack_log=log)
    finally:
        if log is not None:
            log.close()
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        print_figures(result)
    if result["unacked"] or result["disconnected"]:
        raise LoadError(f"{result['unacked']} requests unacknowledged"
                        + (f"; disconnected: {', '.join(result['disconnected'])}" if result["disconnected"] else ""))


# ------------------------------------------------------------------------- the generator's floor


class _AckServer(asyncio.Protocol):
    """Answers a Logon with a Logon and every D/F/G with a minimal ExecutionReport for its
    ClOrdID, at once: what the generator measures against it is the generator's own floor."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport, self.buf, self.seq = transport, b"", 1

    def data_received(self, data: bytes) -> None:
        buf, pos, out = self.buf + data, 0, []
        while (i := buf.find(b"\x0110=", pos)) >= 0 and i + 8 <= len(buf):
            j = buf.find(b"\x0135=", pos, i) + 4
            mt = buf[j:j + 1]
            if mt in (b"A", b"5"):
                out.append(_Session._frame(b"35=%s\x0134=%d\x0149=VENUE\x0156=X\x01" % (mt, self.seq)))
            elif mt in (b"D", b"F", b"G"):
                k = buf.find(b"\x0111=", j, i) + 4
                out.append(_Session._frame(b"35=8\x0134=%d\x0149=VENUE\x0156=X\x0111=%s\x01150=0\x0139=0\x01"
                                           % (self.seq, buf[k:buf.find(b"\x01", k, i)])))
            self.seq += 1
            pos = i + 8
        self.buf = buf[pos:]
        if out:
            self.transport.write(b"".join(out))


async def ack_server(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_AckServer, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":  # ``python -m tools.loadgen ack-server PORT``: measure the generator alone
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "ack-server":
        sys.exit("usage: python -m tools.loadgen ack-server PORT")
    asyncio.run(ack_server(int(sys.argv[2])))
