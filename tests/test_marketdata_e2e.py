"""Market data end to end over TCP against the real `venue serve` (demo set-up: DEMO1, DEMO2 trade,
DEMOMD is the market-data session); and the slow-consumer rule over TCP on the market-data harness.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from fix.dictionary import DataDictionary
from fix.message import Message
from tests.fix_client import FixClient, now_fix
from tests.venue_proc import VenueProcess
from tools.bench_marketdata import LoadGenerator, MarketDataHarness, _instrument
from tools.cli import main as venue_cli
from tools.wiring import dictionary_paths
from venue.core.types import Side

SYMBOL = "BTC-USDT"


@pytest.fixture(scope="module")
def venue(tmp_path_factory):
    v = VenueProcess(tmp_path_factory.mktemp("md-e2e") / "data").start()
    yield v
    if v.alive:
        v.stop()


@pytest.fixture(scope="module")
def dictionary() -> DataDictionary:
    return DataDictionary.load(*dictionary_paths())


def _v(req_id: str, symbols: list[str], srt: str = "1", depth: int = 0,
       types: tuple[str, ...] = ("0", "1", "2")) -> list[tuple[int, object]]:
    return [(262, req_id), (263, srt), (264, depth), (265, 1), (267, len(types)), *[(269, t) for t in types],
            (146, len(symbols)), *[(55, s) for s in symbols]]


class Book:
    """A FIX client's books per MDReqID: W resets, X entries apply with an RptSeq check."""

    def __init__(self) -> None:
        self.levels: dict[str, dict[str, dict[str, str]]] = {}
        self.seq: dict[str, int] = {}
        self.trades: dict[str, int] = {}

    def on(self, msg: Message) -> None:
        rid = msg.get_str(262)
        if msg.msg_type == "W":
            book = self.levels[rid] = {"0": {}, "1": {}}
            self.seq[rid] = msg.get_int(83)
            self.trades.setdefault(rid, 0)
            entry: dict[int, str] = {}
            start = [t for t, _ in msg.fields].index(268) + 1
            for tag, value in [*msg.fields[start:], (269, b"")]:
                if tag == 10:
                    continue
                if tag == 269 and entry:
                    if entry[269] in book:
                        book[entry[269]][entry[270]] = entry[271]
                    entry = {}
                entry[tag] = value.decode()
        elif msg.msg_type == "X":
            entries: list[dict[int, str]] = []
            for tag, value in msg.fields:
                if tag == 279:
                    entries.append({})
                if entries:
                    entries[-1][tag] = value.decode()
            for e in entries:
                assert int(e[83]) == self.seq[rid] + 1, f"{rid}: RptSeq gap {self.seq[rid]} -> {e[83]}"
                self.seq[rid] = int(e[83])
                if e[269] == "2":
                    self.trades[rid] += 1
                    continue
                side = self.levels[rid][e[269]]
                if e[279] == "2":
                    del side[e[270]]
                else:
                    assert (e[270] in side) == (e[279] == "1"), f"{e[279]} for level {e[270]}"
                    side[e[270]] = e[271]


def _read(c: FixClient, book: Book, until: float, stop_on: str | None = None) -> list[Message]:
    """Apply every W/X arriving before ``until``; return the other application messages."""
    other = []
    while time.monotonic() < until:
        msg = c.recv(max(0.01, until - time.monotonic()))
        if msg is None:
            continue
        if msg.msg_type in ("W", "X"):
            book.on(msg)
        elif msg.msg_type == "1":
            c.send("0", [(112, msg.get_str(112))])
        elif msg.msg_type not in ("0",):
            other.append(msg)
            if msg.msg_type == stop_on:
                break
    return other


def _quiet_read(c: FixClient, book: Book, quiet: float = 0.5, limit: float = 20) -> None:
    """Read until nothing arrives for ``quiet`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        msg = c.recv(quiet)
        if msg is None:
            return
        if msg.msg_type in ("W", "X"):
            book.on(msg)
        elif msg.msg_type == "1":
            c.send("0", [(112, msg.get_str(112))])


def _drain_reports(c: FixClient, quiet: float = 0.05) -> None:
    while (m := c.recv(quiet)) is not None:
        if m.msg_type == "1":
            c.send("0", [(112, m.get_str(112))])


def test_incrementals_rebuild_the_venue_book_after_random_trading(venue, dictionary):
    md = venue.client("DEMOMD", reset=True)
    traders = [venue.client("DEMO1", reset=True), venue.client("DEMO2", reset=True)]
    md.send("V", _v("full", [SYMBOL]))
    md.send("V", _v("top5", [SYMBOL], depth=5))
    book = Book()
    _read(md, book, time.monotonic() + 1.0)
    assert set(book.seq) == {"full", "top5"}
    rng = random.Random(17)
    live: list[tuple[FixClient, str]] = []
    for i in range(300):
        c = rng.choice(traders)
        if live and rng.random() < 0.3:
            owner, cl = live.pop(rng.randrange(len(live)))
            owner.send("F", [(41, cl), (11, f"MDX{i}"), (55, SYMBOL), (54, "1" if cl.startswith("B") else "2"),
                             (60, now_fix())])
            continue
        side = rng.choice("12")
        px = rng.randint(59_950, 60_010) if side == "1" else rng.randint(59_990, 60_050)
        cl = f"{'B' if side == '1' else 'S'}MD{i}"
        c.send("D", [(11, cl), (55, SYMBOL), (54, side), (60, now_fix()), (38, f"0.0{rng.randint(1, 9)}"),
                     (40, "2"), (44, px), (59, "1")])
        live.append((c, cl))
        if i % 20 == 0:
            for t in traders:
                _drain_reports(t, 0.01)
            _read(md, book, time.monotonic() + 0.02)
    time.sleep(0.3)
    _quiet_read(md, book)
    assert book.trades["full"] > 0 and book.levels["full"]["0"] and book.levels["full"]["1"]
    # a fresh snapshot of the venue's book now equals what the incrementals built
    md.send("V", _v("check", [SYMBOL], srt="0"))
    md.send("V", _v("check5", [SYMBOL], srt="0", depth=5))
    _quiet_read(md, book)
    assert book.levels["check"] == book.levels["full"] and book.seq["check"] == book.seq["full"]
    assert book.levels["check5"] == book.levels["top5"] and book.seq["check5"] == book.seq["top5"]
    assert len(book.levels["top5"]["0"]) == min(5, len(book.levels["full"]["0"]))
    for msg in md.received:
        assert dictionary.validate(msg) is None, msg
        assert msg.get(1) is None and msg.get(37) is None  # no accounts, no order ids
    for c in traders:
        c.send("q", [(11, f"CLEAN-{time.monotonic_ns()}"), (530, "7"), (60, now_fix())])
        c.close()
    md.close()


def test_bad_requests_get_market_data_request_reject_with_the_reason(venue):
    md = venue.client("DEMOMD", reset=True)
    md.send("V", _v("ok", [SYMBOL]))
    md.expect("W")
    cases = [(_v("u", ["NOPE-USD"]), "0"), (_v("ok", [SYMBOL]), "1"), (_v("d", [SYMBOL], depth=1000), "5"),
             (_v("e", [SYMBOL], types=("0", "4")), "8")]
    for fields, reason in cases:
        md.send("V", fields)
        rej = [m for m in _read(md, Book(), time.monotonic() + 5, stop_on="Y") if m.msg_type == "Y"]
        assert rej and rej[-1].get_str(281) == reason and rej[-1].get_str(58), (fields, rej)
    md.close()


def test_order_message_on_a_market_data_session_gets_business_message_reject(venue):
    md = venue.client("DEMOMD", reset=True)
    md.send("D", [(11, "MD-ORDER"), (55, SYMBOL), (54, "1"), (60, now_fix()), (38, "0.1"), (40, "2"),
                  (44, "60000"), (59, "1")])
    rej = md.expect("j")
    assert rej.get_str(372) == "D" and rej.get_str(380) == "3" and rej.get_str(58)
    md.close()


def test_halt_and_resume_send_trading_session_status(venue):
    md = venue.client("DEMOMD", reset=True)
    runner = CliRunner()
    for status, code in (("halted", "1"), ("open", "2")):
        res = runner.invoke(venue_cli, ["instrument", "status", "ETH-USDT", status, "--data-dir",
                                        str(venue.data_dir), "--actor", "e2e"])
        assert res.exit_code == 0, res.output
        h = md.expect("h", timeout=10)
        assert (h.get_str(336), h.get_str(340)) == ("ETH-USDT", code)
    md.close()


# ---- slow consumers, over TCP on the harness (acceptor + store + core + MarketDataApp) ----------

def _logon_raw(port: int, name: str, rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    c = FixClient.__new__(FixClient)
    c.sender, c.target, c.sock, c.buf, c.seq, c.received = name, "VENUE", s, b"", 1, []
    c.logon()
    c.send("V", _v(f"{name}-r", ["BTC-USD"]))
    c.expect("W")
    return s


def test_slow_consumer_is_disconnected_and_never_delays_the_others(tmp_path: Path):
    async def main() -> None:
        h = MarketDataHarness(f"sqlite+aiosqlite:///{tmp_path / 'md.db'}", [_instrument()],
                              high_water=32 * 1024, max_hold=1.0, queue_limit=200, sndbuf=8192)
        port = await h.start()
        loop = asyncio.get_running_loop()
        slow = await loop.run_in_executor(None, _logon_raw, port, "MDSLOW", 4096)  # and never reads
        fast = FixClient.__new__(FixClient)
        fast.sock = await loop.run_in_executor(None, _logon_raw, port, "MDFAST")
        fast.sender, fast.target, fast.buf, fast.seq, fast.received = "MDFAST", "VENUE", b"", 3, []
        book = Book()
        book.on(Message.build([(35, "W"), (262, "MDFAST-r"), (83, 0), (268, 0)]))
        stop = threading.Event()

        def reader() -> None:  # the fast client reads and applies everything
            while not stop.is_set():
                msg = fast.recv(0.1)
                if msg is not None and msg.msg_type in ("W", "X"):
                    book.on(msg)
            _quiet_read(fast, book, quiet=0.3)

        reading = loop.run_in_executor(None, reader)
        gen = LoadGenerator(seed=3)
        t0 = time.monotonic()
        slow_session = h.acceptor.find_session("MDSLOW")
        dropped_at = None
        while time.monotonic() - t0 < 8 and (dropped_at is None or time.monotonic() - dropped_at < 0.5):
            for _ in range(200):
                h.submit(gen.command(time.time_ns()))
            await h.acceptor.flush()
            h.timer()
            if dropped_at is None and not slow_session.connected:
                dropped_at = time.monotonic()
            await asyncio.sleep(0.005)
        stop.set()
        await reading
        assert h.md.disconnected == 1 and not slow_session.connected
        assert h.acceptor.find_session("MDFAST").is_logged_on
        core_book = h.md.market.book("BTC-USD")
        units = h.md.units("BTC-USD")
        assert book.levels["MDFAST-r"]["0"] == {units.px(p): units.qty(q) for p, q in core_book.levels(Side.BUY)}
        assert book.levels["MDFAST-r"]["1"] == {units.px(p): units.qty(q) for p, q in core_book.levels(Side.SELL)}
        assert book.seq["MDFAST-r"] == core_book.seq
        await loop.run_in_executor(None, slow.close)
        await loop.run_in_executor(None, fast.sock.close)
        await h.stop()

    asyncio.run(main())
