"""kill -9 under ``venue loadgen`` loses no acknowledged order.

A real ``venue serve`` on a data directory prepared as ``venue bench e2e`` prepares it (signed,
funded load sessions) is driven by ``venue loadgen`` in child processes that write every
acknowledgement and fill they read to ``--acked-log`` as it arrives: the load, LG1 buying and LG2
selling at one price (closed loop, 50 in flight per session, some cancels and replaces, which
mostly come too late: the oldest resting order is the next to fill), and beside it LG3 buying
below that price (10 in flight), whose orders rest, so that its cancels and replaces succeed.
Once a few thousand acknowledgements are logged the venue is SIGKILLed (no shutdown, no last
commit), the generators stop, and the venue restarts
on the same data directory (its own recovery: snapshot + replay). Then everything the generator
was told must be in the journal: an acknowledged order accepted (or replaced to), an acknowledged
cancel cancelled, a cancel reject rejected, a reported fill's trade there; and the recovered books
must hold exactly the orders the journal leaves open (asked of the venue by OrderMassStatusRequest).
Three kills in a row, each on the venue recovered from the one before.

That the check can fail is shown on the same data: with the journal's batch holding the last
acknowledgement removed (a venue that answered before it committed), it names that acknowledgement.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from tests.venue_proc import ROOT, FixClient, VenueProcess
from tools.bench_e2e import KEYS, prepare, session_names
from tools.loadgen import Flow
from venue.core import events as ev
from venue.db import make_engine, sqlite_url
from venue.journal import Journal, journal_table

SESSIONS = session_names(3)
LOAD, RESTING = SESSIONS[:2], SESSIONS[2]  # LG1 buys and LG2 sells at 60000; LG3 buys at 59000
KILLS = 3
ACKS_BEFORE_KILL = 3000


# ------------------------------------------------------------------------------ the check


@dataclass(frozen=True, slots=True)
class Ack:
    """One line of ``--acked-log``: an acknowledgement (kind "8", "9" or "j") or a fill report."""

    sender: str
    cl_ord_id: str
    kind: str
    status: str
    trade_id: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.sender, self.cl_ord_id


def read_acks(path: Path) -> list[Ack]:
    """The complete lines of the log (a line still being written is not an acknowledgement yet)."""
    if not path.exists():
        return []
    text = path.read_bytes().decode()
    return [Ack(*line.split()) for line in text.split("\n")[:-1]]


@dataclass(slots=True)
class Journaled:
    """What the journal holds about each (session, ClOrdID)."""

    orders: set[tuple[str, str]] = field(default_factory=set)  # accepted, or replaced to
    cancelled: set[tuple[str, str]] = field(default_factory=set)  # by a cancel request with this id
    cancel_rejected: set[tuple[str, str]] = field(default_factory=set)
    rejected: set[tuple[str, str]] = field(default_factory=set)
    fills: dict[tuple[str, str], set[int]] = field(default_factory=lambda: defaultdict(set))
    trades: set[int] = field(default_factory=set)

    @classmethod
    def of(cls, events: list) -> Journaled:
        j = cls()
        for e in events:
            if isinstance(e, ev.OrderAccepted | ev.OrderReplaced):
                j.orders.add((e.session, e.cl_ord_id))
            elif isinstance(e, ev.OrderCancelled):
                j.cancelled.add((e.session, e.cl_ord_id))
            elif isinstance(e, ev.CancelRejected):
                j.cancel_rejected.add((e.session, e.cl_ord_id))
            elif isinstance(e, ev.OrderRejected):
                j.rejected.add((e.session, e.cl_ord_id))
            elif isinstance(e, ev.OrderFilled):
                j.fills[(e.session, e.cl_ord_id)].add(e.trade_id)
            elif isinstance(e, ev.Trade):
                j.trades.add(e.trade_id)
        return j


def lost_acks(acks: list[Ack], events: list) -> list[str]:
    """Every acknowledgement the journal does not bear out, described; empty when none was lost."""
    j = Journaled.of(events)
    lost = []
    for a in acks:
        if a.kind == "fill":
            ok = a.trade_id is not None and a.trade_id.isdigit() and int(a.trade_id) in j.fills.get(a.key, ()) \
                and int(a.trade_id) in j.trades
        elif a.kind == "9":
            ok = a.key in j.cancel_rejected
        elif a.kind == "j":
            ok = True  # a BusinessMessageReject is the session layer's, not the core's: nothing journaled
        elif a.status == "4":
            ok = a.key in j.cancelled
        elif a.status == "8":
            ok = a.key in j.rejected
        else:  # new (0), partially filled (1), filled (2): an order the core took, at least
            ok = a.key in j.orders and (a.status == "0" or bool(j.fills.get(a.key)))
        if not ok:
            lost.append(f"{a.sender} {a.cl_ord_id} {a.kind} {a.status}" + (f" {a.trade_id}" if a.trade_id else ""))
    return lost


def open_orders(events: list) -> dict[str, set[int]]:
    """Per session, the order ids the journal leaves open."""
    out: dict[str, set[int]] = defaultdict(set)
    owner: dict[int, str] = {}
    for e in events:
        if isinstance(e, ev.OrderAccepted):
            owner[e.order_id] = e.session
            out[e.session].add(e.order_id)
        elif isinstance(e, ev.OrderCancelled | ev.OrderExpired) or (
                isinstance(e, ev.OrderFilled | ev.OrderReplaced) and e.leaves_qty == 0):
            out[owner.get(e.order_id, "")].discard(e.order_id)
    return out


# ---------------------------------------------------------------------- the venue, the load


def journaled_events(data_dir: Path) -> list:
    async def read() -> list:
        engine = make_engine(sqlite_url(data_dir))
        try:
            return await Journal(engine).events_since(0)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def start_venue(data_dir: Path, port: int | None = None) -> VenueProcess:
    return VenueProcess(data_dir, port=port).start(timeout=60)


def start_loadgen(v: VenueProcess, log: Path, sessions: list[str], *flow: str) -> subprocess.Popen:
    """A closed loop until stopped (sessions alternate buy, sell)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "loadgen", "--port", str(v.port), "--keys-dir", str(v.data_dir / KEYS),
         *[a for s in sessions for a in ("--session", s)], *flow, "--warmup", "0", "--duration", "300",
         "--acked-log", str(log), "--log-fills", "--json"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_acks(logs: list[Path], n: int, gens: list[subprocess.Popen], timeout: float = 30.0) -> None:
    """Until the logs hold ``n`` acknowledgements together (fill lines aside)."""
    deadline = time.monotonic() + timeout
    while sum(1 for log in logs for a in read_acks(log) if a.kind != "fill") < n:
        if any(g.poll() is not None for g in gens) or time.monotonic() > deadline:
            out = "\n".join(stop_loadgen(g, kill=True) for g in gens)
            raise AssertionError(f"{n} acknowledgements not logged in {timeout} s:\n{out}")
        time.sleep(0.02)


def stop_loadgen(gen: subprocess.Popen, kill: bool = False) -> str:
    """It stops by itself when the venue's connections drop; killed if it does not."""
    if kill and gen.poll() is None:
        os.kill(gen.pid, signal.SIGKILL)
    try:
        return gen.communicate(timeout=20)[0]
    except subprocess.TimeoutExpired:
        os.kill(gen.pid, signal.SIGKILL)
        return gen.communicate(timeout=10)[0]


def mass_status(v: VenueProcess, sender: str) -> set[int]:
    """The order ids the venue lists open for a session (OrderMassStatusRequest, all orders)."""
    from venue.access import signing

    key = signing.load_private_key_file(v.data_dir / KEYS / f"{sender}.pem")
    key_id = (v.data_dir / KEYS / f"{sender}.keyid").read_text().strip()
    c = FixClient("127.0.0.1", v.port, sender)
    try:
        c.logon(key=key, key_id=key_id, reset=True)
        c.send("AF", [(584, "after-kill"), (585, "7")])
        listed: set[int] = set()
        while True:
            m = c.expect("8", timeout=10)
            if m.get_str(584) != "after-kill":
                continue
            if m.get_str(37) != "NONE":
                listed.add(int(m.get_str(37)))
            if m.get_str(912) == "Y":
                return listed
    finally:
        c.close()


@dataclass(slots=True)
class Kill:
    """One kill -9: what the generator was told, what the recovered venue holds."""

    acks: list[Ack]
    events: list
    listed: dict[str, set[int]]
    killed_rc: int
    generator_output: str


@dataclass(slots=True)
class Kills:
    data_dir: Path
    kills: list[Kill]


@pytest.fixture(scope="module")
def kills(tmp_path_factory) -> Kills:
    data_dir = tmp_path_factory.mktemp("kill9") / "data"
    asyncio.run(prepare(data_dir, len(SESSIONS), Flow(window=50)))
    v = start_venue(data_dir)
    out: list[Kill] = []
    try:
        for i in range(KILLS):
            logs = [data_dir.parent / f"acked-{i}-load.txt", data_dir.parent / f"acked-{i}-resting.txt"]
            gens = [start_loadgen(v, logs[0], LOAD, "--window", "50", "--cancel", "10", "--replace", "10"),
                    start_loadgen(v, logs[1], [RESTING], "--window", "10", "--price", "59000", "--cancel", "30",
                                  "--replace", "30")]
            try:
                wait_for_acks(logs, ACKS_BEFORE_KILL, gens)
                v.kill()  # SIGKILL: no shutdown, no last commit
            finally:
                output = "\n".join(stop_loadgen(g) for g in gens)
            killed_rc = v.proc.returncode
            acks = [a for log in logs for a in read_acks(log)]  # all they read before the connections dropped
            v = start_venue(data_dir, v.port)  # recovery: snapshot + replay of the journal
            events = journaled_events(data_dir)
            listed = {s: mass_status(v, s) for s in SESSIONS}  # logging out cancels them (cancel on disconnect)
            out.append(Kill(acks, events, listed, killed_rc, output))
    finally:
        if v.alive:
            v.stop()
    return Kills(data_dir, out)


# -------------------------------------------------------------------------------- the tests


def test_kill9_under_loadgen_loses_no_acknowledged_order(kills):
    assert len(kills.kills) == KILLS
    for n, k in enumerate(kills.kills, 1):
        assert k.killed_rc == -signal.SIGKILL, f"kill {n}"
        kinds = {(a.kind, a.status) for a in k.acks}
        assert sum(1 for a in k.acks if a.kind != "fill") >= ACKS_BEFORE_KILL, f"kill {n}"
        # the flow had its parts: orders, cancels, replaces (acknowledged as new orders: 39=0), fills
        # (and refused cancels, 35=9, when the load's fills left it something to cancel)
        assert {("8", "0"), ("8", "4"), ("fill", "2")} <= kinds, f"kill {n}: {kinds}"
        replaced = {(e.session, e.cl_ord_id) for e in k.events if isinstance(e, ev.OrderReplaced)}
        assert any(a.key in replaced for a in k.acks), f"kill {n}: no replace was acknowledged"
        assert lost_acks(k.acks, k.events) == [], f"kill {n}: acknowledged but not journaled"
        journal_open = open_orders(k.events)
        for s in SESSIONS:
            assert k.listed[s] == journal_open[s], f"kill {n}: {s}'s recovered orders differ from the journal's"


def first_seq(ack: Ack, events: list) -> int:
    """The seq of the first journaled event about an acknowledgement's (session, ClOrdID)."""
    return next(e.seq for e in events
                if getattr(e, "session", None) == ack.sender and getattr(e, "cl_ord_id", None) == ack.cl_ord_id)


def drop_batches_from(data_dir: Path, seq: int) -> int:
    """Delete the journal's batch holding event ``seq`` and every batch after it; their count."""
    async def run() -> int:
        engine = make_engine(sqlite_url(data_dir))
        try:
            async with engine.begin() as conn:
                t = journal_table
                cmd_from = (await conn.execute(select(t.c.cmd_from).where(t.c.seq_from <= seq, t.c.seq_to >= seq)
                                               )).scalar_one()
                return (await conn.execute(delete(t).where(t.c.cmd_from >= cmd_from))).rowcount
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_the_check_names_an_acknowledgement_whose_batch_is_not_in_the_journal(kills, tmp_path):
    """As if the venue had answered before committing: the journal without the batch of the last
    acknowledgement (and what came after it) fails the check, and the check names that one."""
    k = kills.kills[-1]
    last = next(a for a in reversed(k.acks) if a.kind in ("8", "9"))
    data = tmp_path / "data"
    shutil.copytree(kills.data_dir, data)
    assert drop_batches_from(data, first_seq(last, k.events)) >= 1
    events = journaled_events(data)
    assert len(events) < len(k.events)

    lost = lost_acks(k.acks, events)
    assert f"{last.sender} {last.cl_ord_id} {last.kind} {last.status}" in lost
    # and only what was in the removed batches: the earlier kills' acknowledgements are all still there
    assert all(lost_acks(earlier.acks, events) == [] for earlier in kills.kills[:-1])
