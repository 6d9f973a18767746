"""Determinism: the same commands give the same events and books, journaled or not, on either book."""

from __future__ import annotations

import asyncio

import pytest

from tools.journal_worker import random_commands, worker_instruments
from venue.core.book import NaiveBook
from venue.core.engine import Core
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


def test_fast_and_naive_books_give_identical_event_streams():
    cmds = list(random_commands(99, 20_000))
    fast = Core(worker_instruments()).process_batch(cmds)
    naive = Core(worker_instruments(), book_factory=NaiveBook).process_batch(cmds)
    assert fast == naive


def test_snapshot_restore_midway_continues_identically():
    cmds = list(random_commands(5, 20_000))
    ref = Core(worker_instruments())
    ref_events = ref.process_batch(cmds)
    core = Core(worker_instruments())
    first = core.process_batch(cmds[:10_000])
    restored = Core.from_snapshot(core.snapshot())
    rest = restored.process_batch(cmds[10_000:])
    assert first + rest == ref_events
