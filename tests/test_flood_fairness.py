"""A flooding session cannot slow the others down: the mechanism, counted rather than timed.

The real venue runs in this process (its event loop in a thread) so that its work can be counted:
every dictionary validation, every message a session handles (its message log), and every batch
(the pipeline's ``run_core``). Clients are real FIX initiators over TCP on 127.0.0.1.

- A throttled message is answered without being validated, and once the flood's Logout is decided
  what the flooder still sends is dropped unanswered (nothing stored for it), while its MsgSeqNums
  still count.
- One session's input is handed to its session at most ``read_budget`` bytes per batch: while a
  flood of 20,000 orders is held back, a quiet session's order goes into the next batch (and is
  acknowledged when it commits) beside at most one budget's worth of the flood.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from fix.message import Message, encode
from tests.fix_client import FixClient, now_fix
from tools.wiring import Server
from venue import config as vconfig
from venue.access import signing

BURST = 100  # the demo sessions' throttle: 50 messages/s, burst 100


class CountingVenue:
    """`venue serve` in this process, with counters on the seams a flood goes through."""

    def __init__(self, data_dir: Path) -> None:
        cfg = vconfig.load(None, env={}, overrides={"venue": {"data_dir": str(data_dir)},
                                                    "fix": {"host": "127.0.0.1", "port": 0}})
        self.data_dir = data_dir
        self.venue = Server(cfg)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.timeline: list[tuple[str, str]] = []  # ("batch", "") | ("msg", SenderCompID)
        self.validated: dict[str, int] = {}  # SenderCompID -> NewOrderSingles validated

    def start(self) -> CountingVenue:
        self.thread.start()
        self.port = self.call(self.venue.start())
        v = self.venue
        validate, run_core, make_log = v.dictionary.validate, v.venue.pipeline.run_core, v.acceptor.log_factory
        timeline = self.timeline

        def counting_validate(msg, *a, **kw):
            if msg.get(35) == b"D":
                sender = msg.get_str(49) or ""
                self.validated[sender] = self.validated.get(sender, 0) + 1
            return validate(msg, *a, **kw)

        class RecordingLog:
            """The session's own log, noting in the timeline each message the session handles."""

            def __init__(self, key: str) -> None:
                self.log, self.sender = make_log(key), key.rsplit(">", 1)[1]

            def on_incoming(self, raw: bytes, now: float) -> None:
                timeline.append(("msg", self.sender))
                self.log.on_incoming(raw, now)

            def __getattr__(self, name: str):
                return getattr(self.log, name)

        async def marking_run_core():
            timeline.append(("batch", ""))
            await run_core()

        # sessions are created at their first logon, after this: they pick these up
        v.dictionary.validate = counting_validate
        v.acceptor.log_factory = RecordingLog
        v.venue.pipeline.run_core = marking_run_core
        return self

    def call(self, coro, timeout: float = 60.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        try:
            self.call(self.venue.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    def client(self, sender: str) -> FixClient:
        keys = self.data_dir / "demo-keys"
        key = load_pem_private_key((keys / f"{sender}.pem").read_bytes(), None)
        c = FixClient("127.0.0.1", self.port, sender)
        c.logon(key=key, key_id=(keys / f"{sender}.keyid").read_text().strip(), reset=True)
        return c

    def held(self, sender: str) -> int:
        """Bytes of the session's input the venue holds back for later batches."""
        acceptor = self.venue.acceptor
        session = acceptor.find_session(sender)
        backlog = getattr(acceptor, "read_backlog", None)  # (a venue that reads everything at once has none)
        return backlog(session) if session is not None and backlog is not None else 0


@pytest.fixture()
def venue(tmp_path):
    v = CountingVenue(tmp_path / "data").start()
    try:
        yield v
    finally:
        v.stop()


def orders(c: FixClient, n: int, prefix: str, account: str) -> bytes:
    """``n`` NewOrderSingles as one block of bytes (resting buys far below the market)."""
    out = []
    for i in range(n):
        head = [(35, "D"), (49, c.sender), (56, c.target), (34, c.seq), (52, now_fix())]
        c.seq += 1
        body = [(11, f"{prefix}-{i}"), (1, account), (55, "BTC-USDT"), (54, "1"), (60, now_fix()),
                (38, "0.001"), (40, "2"), (44, "40000"), (59, "1")]
        out.append(encode(Message.build(head + body).fields))
    return b"".join(out)


def test_throttled_messages_are_answered_unvalidated_and_dropped_after_the_flood_logout(venue):
    c = venue.client("DEMO2")
    block = orders(c, 400, "T", "DEMO2-ACC")
    t0 = time.monotonic()
    c.sock.sendall(block)
    reports, logout = [], None
    while (msg := c.recv(10)) is not None:
        if msg.msg_type == "8":
            reports.append(msg)
        elif msg.msg_type == "5" and logout is None:
            logout, elapsed = msg, time.monotonic() - t0
            c.send("5")  # every one of the 400 MsgSeqNums counted: 402 is the one the venue expects
    assert logout is not None and logout.get_str(58) == "Throttle limit exceeded repeatedly"
    assert c.closed(1), "the venue closed after our Logout answer"
    assert not [m for m in c.received if m.msg_type == "2"], "no ResendRequest: no seqnum was skipped"
    c.close()
    throttled = [m for m in reports if m.get_str(7001) == "17"]
    admitted = [m for m in reports if m.get_str(7001) != "17"]
    assert len(admitted) >= BURST, "the burst reaches the core"
    assert venue.validated.get("DEMO2", 0) == len(admitted), \
        "only the admitted orders were validated against the dictionary; no throttled one was"
    # strikes past max(burst, 10) decide the Logout (strikes leak away at 50/s meanwhile); what
    # comes after it is dropped: far fewer than the 400 - burst throttled orders get an answer
    assert BURST < len(throttled) <= BURST + 2 + 50 * elapsed, (len(throttled), elapsed)
    db = sqlite3.connect(venue.data_dir / "venue.db")
    try:
        rows = [raw for (raw,) in db.execute("SELECT raw FROM fix_outbound_messages WHERE session_key = ?",
                                             ("FIX.4.4:VENUE->DEMO2",))]
    finally:
        db.close()
    assert sum(1 for raw in rows if b"\x017001=17\x01" in raw) == len(throttled), \
        "no throttle reject is stored beyond those sent: nothing for the dropped messages"


def test_a_quiet_order_shares_its_batch_with_at_most_one_budget_of_a_held_back_flood(venue):
    quiet, flooder = venue.client("DEMO1"), venue.client("DEMO2")
    flood = orders(flooder, 20_000, "F", "DEMO2-ACC")
    smallest = min(len(f) for f in flood.split(b"8=FIX.4.4\x01")[1:]) + len(b"8=FIX.4.4\x01")
    writer = threading.Thread(target=lambda: flooder.sock.sendall(flood), daemon=True)
    writer.start()
    deadline = time.monotonic() + 10
    while venue.timeline.count(("msg", "DEMO2")) < 10:  # the venue is busy with the flood
        assert time.monotonic() < deadline, "the flood never reached the venue"
        time.sleep(0.001)
    mark = len(venue.timeline)
    quiet.send("D", [(11, "QUIET-1"), (1, "DEMO1-ACC"), (55, "BTC-USDT"), (54, "1"), (60, now_fix()),
                     (38, "0.01"), (40, "2"), (44, "56000"), (59, "1")])
    ack = quiet.expect("8")
    assert ack.get_str(11) == "QUIET-1" and ack.get_str(150) == "0"
    timeline = list(venue.timeline)
    at = timeline.index(("msg", "DEMO1"), mark)
    batch_end = next(i for i in range(at, len(timeline)) if timeline[i][0] == "batch")
    batch_start = max(i for i in range(at) if timeline[i][0] == "batch")
    flood_share = sum(1 for e in timeline[batch_start:batch_end] if e == ("msg", "DEMO2"))
    flood_left = 20_000 + 1 - sum(1 for e in timeline[:batch_end] if e == ("msg", "DEMO2"))
    per_batch = venue.venue.acceptor.read_budget // smallest + 1
    assert flood_share <= per_batch, \
        f"the flood took {flood_share} messages of the quiet order's batch (at most {per_batch} fit the budget)"
    assert flood_left >= per_batch, \
        f"the quiet order waited for the flood: only {flood_left} flood messages were still to handle"
    quiet.close()
    flooder.close()
    writer.join(10)


def test_a_flood_written_with_the_logon_is_held_back_as_well(venue):
    keys = venue.data_dir / "demo-keys"
    key = load_pem_private_key((keys / "DEMO2.pem").read_bytes(), None)
    c = FixClient("127.0.0.1", venue.port, "DEMO2")
    st = now_fix()
    logon = [(35, "A"), (49, "DEMO2"), (56, "VENUE"), (34, 1), (52, st), (98, 0), (108, 30), (141, "Y"),
             *signing.signed_logon_fields(key, (keys / "DEMO2.keyid").read_text().strip(), "DEMO2", "VENUE", 1, st)]
    c.seq = 2
    block = encode(Message.build(logon).fields) + orders(c, 2_000, "L", "DEMO2-ACC")
    smallest = min(len(f) for f in block.split(b"8=FIX.4.4\x01")[2:]) + len(b"8=FIX.4.4\x01")
    c.sock.sendall(block)
    c.expect("A")
    deadline = time.monotonic() + 30
    while venue.timeline.count(("msg", "DEMO2")) < 2_001:
        assert time.monotonic() < deadline, "the venue did not handle the whole block"
        time.sleep(0.01)
    shares, n = [], 0
    for kind, who in list(venue.timeline):
        if kind == "batch":
            shares.append(n)
            n = 0
        elif who == "DEMO2":
            n += 1
    shares.append(n)
    per_batch = venue.venue.acceptor.read_budget // smallest + 2  # (+ the Logon)
    assert max(shares) <= per_batch, f"one batch took {max(shares)} of the block's messages (budget: {per_batch})"
    c.close()
