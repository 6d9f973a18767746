"""``venue bench marketdata``: many market-data sessions on one instrument under a stream of book changes.

The server side (this process) is the market-data path of the venue: the FIX acceptor with its
message store on SQLite (every outbound message stored before it is written), a matching core,
and :class:`~sessions.market_data.MarketDataApp`. A load task feeds the core limit orders and
cancels stamped with the wall clock (the core events carry that stamp) so that at least ``--rate``
book changes per second happen. The clients (100 by default) run in a second process: each logs
on, subscribes (263=1, full book, bid/offer/trade) and reads; the lag of a message is the client's
receipt time minus the MDEntryTime (273, the core event's timestamp) of its first entry.

Reports book changes per second, delivered messages and entries per second, and the lag
percentiles (p50/p99/max). Target: p99 <= 50 ms with 100 sessions and >= 5,000 changes/s.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import random
import re
import socket
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from fix.acceptor import Acceptor
from fix.application import Application
from fix.message import Message, encode
from fix.session import Session, SessionConfig
from sessions.market_data import MarketDataApp
from venue.core import commands as cmd
from venue.core.engine import Core
from venue.core.events import BookLevel
from venue.core.instruments import Instrument
from venue.core.types import Side
from venue.db import make_engine
from venue.marketdata import Units

SYMBOL = "BTC-USD"
VENUE = "VENUE"


def _instrument() -> Instrument:
    return Instrument(SYMBOL, "BTC", "USDT", Decimal("0.01"), Decimal("0.0001"), max_qty=10**9)


class MarketDataHarness(Application):
    """The smallest venue that serves market data over TCP: acceptor + store + core + app.

    Sessions whose CompID starts with ``prefix`` are market-data sessions. ``submit(command)``
    queues a core command; the batch runs in ``before_flush`` (as in the venue).
    """

    def __init__(self, db_url: str, instruments: list[Instrument], prefix: str = "MD", sndbuf: int | None = None,
                 **md_kw: Any) -> None:
        self.core = Core(instruments)
        units = {i.symbol: Units(i.tick_size, i.lot_size) for i in instruments}
        self.engine = make_engine(db_url)
        self.acceptor = Acceptor(self._lookup, self, self.engine)
        self.prefix = prefix
        self.md = MarketDataApp(units.get, wall=time.time, backlog=self.backlog,
                                disconnect=lambda s, reason: s.disconnect(reason),
                                wake=self.acceptor.schedule_flush, **md_kw)
        self._pending: list[Any] = []
        self.sndbuf = sndbuf  # a small kernel send buffer makes a slow reader show quickly (tests)
        self.events = 0
        self.book_changes = 0  # BookLevel events of the core

    def _lookup(self, begin: str, ours: str, theirs: str) -> SessionConfig | None:
        if begin != "FIX.4.4" or ours != VENUE or not theirs.startswith(self.prefix):
            return None
        return SessionConfig(sender_comp_id=VENUE, target_comp_id=theirs, persist_messages=False)

    def backlog(self, session: Session) -> int:
        """Bytes written to the session's socket that the kernel has not taken yet."""
        return self.acceptor.write_backlog(session)

    async def start(self, port: int = 0) -> int:
        return await self.acceptor.start("127.0.0.1", port)

    async def stop(self) -> None:
        await self.acceptor.stop(timeout=1.0)
        await self.engine.dispose()

    def submit(self, command: Any) -> None:
        self._pending.append(command)
        self.acceptor.schedule_flush()

    def timer(self) -> None:
        self.md.on_timer()

    # Application: everything goes to the market-data app
    def on_logon(self, session: Session) -> None:
        if self.sndbuf:
            transport = self.acceptor.transport_of(session)
            sock = transport.get_extra_info("socket") if transport is not None else None
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
        self.md.on_logon(session)

    def on_logout(self, session: Session, reason: str) -> None:
        self.md.on_logout(session, reason)

    def from_app(self, session: Session, msg: Message) -> None:
        self.md.from_app(session, msg)

    async def before_flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            events = self.core.process_batch(pending)
            self.events += len(events)
            self.book_changes += sum(1 for e in events if type(e) is BookLevel)
            self.md.on_core_events(events)


class LoadGenerator:
    """Limit orders within 20 ticks of 100.00 and cancels, so almost every command changes a level."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.live: list[tuple[str, str]] = []
        self.n = 0

    def command(self, ts: int) -> Any:
        rng = self.rng
        self.n += 1
        if self.live and (len(self.live) > 400 or rng.random() < 0.45):
            i = rng.randrange(len(self.live))
            self.live[i], self.live[-1] = self.live[-1], self.live[i]
            acct, cl = self.live.pop()
            return cmd.CancelOrder(ts, acct, SYMBOL, f"x{self.n}", orig_cl_ord_id=cl)
        side = rng.choice((Side.BUY, Side.SELL))
        off = rng.randint(1, 20)
        price = 10_000 - off if side is Side.BUY else 10_000 + off
        acct = f"A{rng.randrange(50)}"
        cl = f"o{self.n}"
        self.live.append((acct, cl))
        return cmd.NewOrder(ts, acct, SYMBOL, cl, side, rng.randint(1, 100) * 100, price=price)


async def drive_load(h: MarketDataHarness, rate: int, seconds: float, tick: float = 0.01) -> int:
    """Submit commands so that about ``rate`` book changes per second happen; returns the changes.

    The commands are generated beforehand (the generator is not what is measured); each gets
    the wall clock as its timestamp when it is submitted.
    """
    gen = LoadGenerator()
    todo = [gen.command(0) for _ in range(int(rate * seconds * 1.3) + 1000)]
    todo.reverse()
    start = h.book_changes
    t0 = time.monotonic()
    pending = h._pending
    submit = h.submit
    while (now := time.monotonic()) - t0 < seconds and todo:
        want = int(rate * (now - t0)) - (h.book_changes - start) - len(pending)
        ts = time.time_ns()
        for _ in range(max(0, min(want, rate, len(todo)))):
            c = todo.pop()
            c.ts = ts
            submit(c)
        await asyncio.sleep(tick)
    return h.book_changes - start


# ---- the clients (second process) ---------------------------------------------------------------

_FRAME_END = re.compile(rb"\x0110=\d{3}\x01")
_ENTRY_TIME = re.compile(rb"\x01273=(\d\d):(\d\d):(\d\d)\.(\d{3})\x01")
_SENDING_TIME = re.compile(rb"\x0152=\d{8}-(\d\d):(\d\d):(\d\d)\.(\d{3})\x01")


def _lag(now_ms: float, match: re.Match[bytes]) -> float:
    h, mi, s, ms = (int(g) for g in match.groups())
    lag = now_ms - ((h * 3600 + mi * 60 + s) * 1000 + ms)
    return lag if lag > -43_200_000 else lag + 86_400_000


def _ms_of_day(now: float) -> float:
    return (now % 86400.0) * 1000.0


def _fix(msg_type: str, sender: str, seq: int, body: list[tuple[int, object]]) -> bytes:
    st = time.strftime("%Y%m%d-%H:%M:%S", time.gmtime()) + ".000"
    head = [(35, msg_type), (49, sender), (56, VENUE), (34, seq), (52, st)]
    return encode(Message.build(head + body).fields)


class _Client(asyncio.Protocol):
    """One market-data client: logs on, subscribes, and measures what arrives (callbacks only)."""

    def __init__(self, name: str, window: Any, stats: dict[str, Any]) -> None:
        self.name, self.window, self.stats = name, window, stats
        self.buf = b""
        self.seq = 3
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        name = self.name
        transport.write(_fix("A", name, 1, [(98, 0), (108, 30)])  # type: ignore[attr-defined]
                        + _fix("V", name, 2, [(262, f"{name}-1"), (263, 1), (264, 0), (265, 1), (267, 3),
                                              (269, 0), (269, 1), (269, 2), (146, 1), (55, SYMBOL)]))

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats["dropped"] += 1

    def data_received(self, data: bytes) -> None:
        now = time.time()
        stats = self.stats
        measuring = self.window[0] <= now < self.window[1]
        now_ms = _ms_of_day(now)
        buf = self.buf + data if self.buf else data
        pos = 0
        while (m := _FRAME_END.search(buf, pos)) is not None:
            frame = buf[pos:m.end()]
            pos = m.end()
            if b"\x0135=X\x01" in frame:
                if measuring:
                    stats["x"] += 1
                    stats["entries"] += frame.count(b"\x01279=")
                    t = _ENTRY_TIME.search(frame)
                    if t is not None:
                        stats["lags"].append(_lag(now_ms, t))
                    t = _SENDING_TIME.search(frame)
                    if t is not None:
                        stats["send_lags"].append(_lag(now_ms, t))
            elif b"\x0135=W\x01" in frame:
                stats["w"] += 1
            elif b"\x0135=1\x01" in frame and self.transport is not None:
                tid = re.search(rb"\x01112=([^\x01]*)", frame)
                self.transport.write(_fix("0", self.name, self.seq, [(112, tid.group(1).decode() if tid else "")]))
                self.seq += 1
        self.buf = buf[pos:]


def client_process(port: int, n: int, window: Any, stop: Any, conn: Any) -> None:
    """``n`` clients in one event loop; counts what arrives while ``window[0] <= now < window[1]``."""
    async def main() -> dict[str, Any]:
        stats: dict[str, Any] = {"x": 0, "w": 0, "entries": 0, "dropped": 0, "lags": [], "send_lags": []}
        loop = asyncio.get_running_loop()
        transports = []
        for i in range(n):
            transport, _ = await loop.create_connection(lambda i=i: _Client(f"MD{i:03d}", window, stats),
                                                        "127.0.0.1", port)
            transports.append(transport)
        while not stop.is_set():
            await asyncio.sleep(0.1)
        dropped = stats["dropped"]
        for t in transports:
            t.close()
        await asyncio.sleep(0.05)
        stats["dropped"] = dropped
        return stats

    conn.send(asyncio.run(main()))
    conn.close()


# ---- the benchmark ------------------------------------------------------------------------------

def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


async def run_bench(sessions: int, rate: int, seconds: float, warmup: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        h = MarketDataHarness(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", [_instrument()])
        port = await h.start()
        # a book to start from
        gen = LoadGenerator(seed=99)
        for _ in range(400):
            h.submit(gen.command(time.time_ns()))
        await h.acceptor.flush()
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe(duplex=False)
        window = ctx.Array("d", [float("inf"), float("inf")], lock=False)
        stop = ctx.Event()
        proc = ctx.Process(target=client_process, args=(port, sessions, window, stop, child))
        proc.start()
        deadline = time.monotonic() + 60
        while (sum(len(st.subs) for st in h.md.sessions.values()) < sessions
               and time.monotonic() < deadline):
            await asyncio.sleep(0.05)
        logged_on = len(h.md.sessions)
        load = asyncio.create_task(drive_load(h, rate, warmup + seconds + 0.5))
        await asyncio.sleep(warmup)
        book = h.md.market.book(SYMBOL)
        seq0, changes0 = book.seq, h.book_changes
        window[0] = time.time()
        window[1] = window[0] + seconds
        await asyncio.sleep(seconds)
        changes = h.book_changes - changes0
        entries = book.seq - seq0
        await load
        await asyncio.sleep(0.5)
        stop.set()
        stats = await asyncio.get_running_loop().run_in_executor(None, parent.recv)
        proc.join(10)
        slow_dropped = h.md.disconnected
        await h.stop()
    lags = stats["lags"]
    return {
        "sessions": sessions,
        "logged_on": logged_on,
        "seconds": seconds,
        "book_changes_per_s": round(changes / seconds),
        "netted_entries_per_s": round(entries / seconds),
        "delivered_msgs_per_s": round(stats["x"] / seconds),
        "delivered_entries_per_s": round(stats["entries"] / seconds),
        "lag_ms_p50": round(_pct(lags, 50), 1),
        "lag_ms_p99": round(_pct(lags, 99), 1),
        "lag_ms_max": round(max(lags), 1) if lags else None,
        "lag_samples": len(lags),
        "sent_to_received_ms_p50": round(_pct(stats["send_lags"], 50), 1),
        "sent_to_received_ms_p99": round(_pct(stats["send_lags"], 99), 1),
        "disconnected_slow": slow_dropped,
        "target": "p99 lag <= 50 ms with 100 sessions at >= 5,000 book changes/s",
    }


@click.command("marketdata")
@click.option("--sessions", default=100, show_default=True, help="Market-data sessions subscribed.")
@click.option("--rate", default=5000, show_default=True, help="Book changes per second to generate.")
@click.option("--seconds", default=10.0, show_default=True, help="Measured duration.")
@click.option("--warmup", default=2.0, show_default=True, help="Seconds of load before measuring.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def command(sessions: int, rate: int, seconds: float, warmup: float, as_json: bool) -> None:
    """Market-data fan-out: delivered messages/s and core-to-client lag."""
    res = asyncio.run(run_bench(sessions, rate, seconds, warmup))
    if as_json:
        click.echo(json.dumps(res))
        return
    click.echo(f"sessions {res['logged_on']}/{res['sessions']}, book changes {res['book_changes_per_s']}/s "
               f"({res['netted_entries_per_s']} sequenced entries/s after netting per batch)")
    click.echo(f"delivered {res['delivered_msgs_per_s']} msgs/s ({res['delivered_entries_per_s']} entries/s)")
    click.echo(f"lag core event -> client: p50 {res['lag_ms_p50']} ms, p99 {res['lag_ms_p99']} ms, "
               f"max {res['lag_ms_max']} ms ({res['lag_samples']} samples)")
    click.echo(f"of which SendingTime -> client: p50 {res['sent_to_received_ms_p50']} ms, "
               f"p99 {res['sent_to_received_ms_p99']} ms")
