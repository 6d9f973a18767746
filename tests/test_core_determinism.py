"""Determinism: the same commands give the same events and books, journaled or not, on every pairing
of core (compiled, reference) and book (fast, naive): each pairing is held to the compiled core on the
fast book (what the venue runs), event for event."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from tests.core_helpers import COMPILED, SYM, B, S, instrument
from tools.journal_worker import random_commands, worker_instruments
from venue.core.commands import (
    CancelOrder,
    EndOfSession,
    MassCancel,
    NewOrder,
    ReplaceOrder,
    SetAccountStp,
    SetKillSwitch,
    SetTradingStatus,
    Tick,
)
from venue.core.engine import Core
from venue.core.types import OrdType, StpMode, TimeInForce, TradingStatus
from venue.db import make_engine
from venue.journal import Journal


@pytest.mark.slow
def test_100k_journaled_commands_replay_to_identical_events_and_books(tmp_path):
    cmds = list(random_commands(2024, 100_000))

    async def main():
        engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'venue.db'}")
        journal = await Journal.open(engine)
        core = Core(worker_instruments())
        for i in range(0, len(cmds), 500):
            chunk = cmds[i:i + 500]
            ev = core.process_batch(chunk)
            async with engine.begin() as conn:
                await journal.write(conn, chunk, ev)
        journaled = await journal.events_since(0)
        await engine.dispose()
        # replay: decode the journaled commands into a fresh core
        engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'venue.db'}")
        replayed = await Journal.recover(engine, worker_instruments(), verify_events=True)
        await engine.dispose()
        return core, journaled, replayed

    core, journaled, replayed = asyncio.run(main())
    fresh = Core(worker_instruments())
    again = fresh.process_batch(cmds)
    assert len(journaled) == core.seq > 100_000
    assert again == journaled
    assert replayed.snapshot() == core.snapshot() == fresh.snapshot()
    for sym in ("BTC-USD", "ETH-USD"):
        for side in ("1", "2"):
            assert replayed.book_levels(sym, side) == core.book_levels(sym, side)


@pytest.fixture(scope="module")
def stream():
    """20,000 random commands of every type over two banded instruments, and what the compiled core
    on the fast book makes of them."""
    cmds = list(random_commands(99, 20_000))
    core = COMPILED(worker_instruments())
    return cmds, core.process_batch(cmds), core


def test_every_pairing_gives_the_compiled_cores_event_stream_and_state(stream, pairing):
    cmds, expected, compiled = stream
    core = pairing(worker_instruments())
    got = core.process_batch(cmds)
    assert len(got) == len(expected) == compiled.seq
    for i, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert a == b, f"event {i}: {a} != {b}"
    assert core.snapshot() == compiled.snapshot()
    assert core.open_orders() == compiled.open_orders()
    for sym in ("BTC-USD", "ETH-USD"):
        assert core.last_price(sym) == compiled.last_price(sym)
        for side in (B, S):
            assert core.book_levels(sym, side) == compiled.book_levels(sym, side)


def test_snapshot_restore_midway_continues_identically(stream, pairing):
    cmds, expected, _ = stream
    core = pairing(worker_instruments())
    first = core.process_batch(cmds[:10_000])
    restored = pairing.restore(core.snapshot())
    rest = restored.process_batch(cmds[10_000:])
    assert first + rest == expected


def test_either_core_continues_from_the_others_snapshot(stream, pairing):
    cmds, expected, _ = stream
    compiled = COMPILED(worker_instruments())
    first = compiled.process_batch(cmds[:10_000])
    other = pairing.restore(compiled.snapshot())  # compiled -> pairing
    middle = other.process_batch(cmds[10_000:15_000])
    back = COMPILED.restore(other.snapshot())  # pairing -> compiled
    assert first + middle + back.process_batch(cmds[15_000:]) == expected


def _edge_commands() -> list:
    """Commands at and past every validation limit, with plain values where enums are expected."""
    ts = iter(range(1_000, 10_000))
    big = 2**62

    def new(acct, side, qty, price=None, cl=None, **kw):
        t = next(ts)
        return NewOrder(t, acct, kw.pop("instrument", SYM), cl or f"{acct}{t}", side, qty, price=price, **kw)

    def replace(cl, orig, qty, price=None, acct="g"):
        return ReplaceOrder(next(ts), acct, SYM, cl, qty, price=price, orig_cl_ord_id=orig)

    return [
        new("g", B, 10, 9_950, cl="g1"), new("g", B, 1, 9_940, cl="g2"),
        new("g", S, 2, None, cl="gs", ord_type=OrdType.STOP, stop_price=9_000),
        replace("g1a", "g1", big + 1), replace("g1a", "g1", 10, "x"), replace("g1a", "g1", 10, 10_200),
        replace("g1a", "g1", 0), replace("g2", "g1", 9), replace("g1a", "g1", 9, acct="zz"),
        replace("g1b", "g1", 5), replace("g1c", "g1b", 12, 9_951), replace("gs2", "gs", 2, 9_001),
        replace("gs2", "gs", 3), SetTradingStatus(next(ts), SYM, TradingStatus.HALTED), replace("g1d", "g1c", 4),
        SetTradingStatus(next(ts), SYM, TradingStatus.OPEN),
        new("a", B, big, 10_000), new("a", B, big + 1, 10_000), new("a", S, 2**70, 10_000),
        new("b", "1", 5, 10_000), new("b", "2", 5, 10_100, ord_type="2", tif="1", stp="N"),
        new("b", "X", 5, 10_000), new("b", B, 5, 10_000, ord_type="9"), new("b", B, 5, 10_000, tif="9"),
        new("b", B, 5, 10_000, stp="bogus"), new("b", B, True, 10_000), new("b", B, 1.5, 10_000),
        new("b", B, 5, "10000"), new("b", B, 5, 0), new("b", B, 5, -1), new("b", B, 0, 10_000),
        new("b", B, 5, 20_000), new("b", B, 5, 1), new("b", B, 1, 1), new("b", B, 5, 10_000, instrument="NOPE"),
        new("b", B, 5, 10_000, display_qty=0), new("b", B, 5, 10_000, display_qty=6),
        new("b", B, 5, 10_000, display_qty=2, tif=TimeInForce.IOC), new("b", B, 5, None, ord_type=OrdType.MARKET,
                                                                        display_qty=2),
        new("b", B, 5, 10_000, post_only=1), new("b", S, 5, 9_990, post_only=True),
        new("b", B, 5, 10_000, post_only=True, tif=TimeInForce.IOC),
        new("b", B, 5, 10_000, tif=TimeInForce.GTD, expire_at=1), new("b", B, 5, 9_990, tif=TimeInForce.GTD,
                                                                     expire_at=1_050),
        new("b", B, 5, 10_000, stop_price=9_000), new("b", B, 5, None, ord_type=OrdType.STOP),
        new("b", B, 5, None, ord_type=OrdType.STOP, stop_price=10_050),
        new("c", S, 5, 10_040, ord_type=OrdType.STOP_LIMIT, stop_price=10_040),
        new("c", S, 3, 9_995, ord_type=OrdType.STOP_LIMIT, stop_price=9_999),
        new("d", B, 4, 9_990, tif=TimeInForce.DAY), new("d", S, 7, 10_060, display_qty=2),
        new("e", B, 10, None, ord_type=OrdType.MARKET), new("e", S, 20, None, ord_type=OrdType.MARKET),
        new("e", B, 30, 10_100, tif=TimeInForce.FOK), new("e", B, 3, 10_060, tif=TimeInForce.FOK),
        new("d", S, 4, 9_990, stp=StpMode.DECREMENT_CANCEL), new("d", S, 1, 9_980, stp="B"),
        SetAccountStp(next(ts), "d", StpMode.EXPIRE_BOTH), new("d", B, 9, 10_070),
        Tick(next(ts)), Tick(1_060), SetTradingStatus(next(ts), SYM, TradingStatus.HALTED),
        new("f", B, 1, 10_000), ReplaceOrder(next(ts), "d", SYM, "rd", 1, orig_cl_ord_id="d1000"),
        SetTradingStatus(next(ts), SYM, TradingStatus.OPEN), SetKillSwitch(next(ts), "d", True),
        new("d", B, 1, 10_000), SetKillSwitch(next(ts), "d", False),
        CancelOrder(next(ts), "c", SYM, "xc", orig_cl_ord_id="nope"), CancelOrder(next(ts), "c", "", "xc", order_id=1),
        MassCancel(next(ts), "m1", side=S, spare_gtc=True), EndOfSession(next(ts)),
        MassCancel(next(ts), "m2", account="b"), MassCancel(next(ts), "m3"),
    ]


def test_edge_inputs_give_the_same_events_on_every_pairing(pairing):
    def run(p):
        core = p([instrument(max_qty=10**30, band_bps=100, ref_price=10_000, min_notional=Decimal("1"))])
        out = []
        for cmd in _edge_commands():
            try:
                out.append(core.process(cmd))
            except Exception as exc:  # a command the core cannot take at all: refused by both alike
                out.append(f"raised {type(exc).__name__}")
        return out, core.snapshot()

    assert run(pairing) == run(COMPILED)
