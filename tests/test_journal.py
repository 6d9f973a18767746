"""The journal on SQLite and PostgreSQL: group commits, snapshots, recovery, events_since."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text

from tools.journal_worker import random_commands, worker_instruments
from venue.core.engine import Core
from venue.core.events import Trade
from venue.db import make_engine
from venue.journal import CODEC, Journal, JournalError

PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    """(make_engine callable, cleanup coroutine) for a fresh database / schema."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'venue.db'}"
        yield lambda: make_engine(url)
        return
    schema = f"j_{uuid.uuid4().hex[:12]}"

    async def setup():
        eng = make_engine(PG_URL)
        async with eng.begin() as conn:
            await conn.execute(text(f"CREATE SCHEMA {schema}"))
        await eng.dispose()

    asyncio.run(setup())
    yield lambda: make_engine(PG_URL, connect_args={"server_settings": {"search_path": schema}})

    async def drop():
        eng = make_engine(PG_URL)
        async with eng.begin() as conn:
            await conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        await eng.dispose()

    asyncio.run(drop())


async def journal_run(engine, cmds, batch=50, snapshot_every=None):
    """Run ``cmds`` through a core, journaling each batch; returns (core, all events)."""
    journal = await Journal.open(engine)
    core = Core(worker_instruments())
    events = []
    for n, i in enumerate(range(0, len(cmds), batch)):
        chunk = cmds[i:i + batch]
        ev = core.process_batch(chunk)
        events += ev
        async with engine.begin() as conn:
            await journal.write(conn, chunk, ev)
            if snapshot_every and n % snapshot_every == snapshot_every - 1:
                await journal.write_snapshot(conn, core)
    return core, events, journal


def test_codec_round_trips_every_event_and_command():
    cmds = list(random_commands(3, 3000))
    events = Core(worker_instruments()).process_batch(cmds)
    assert CODEC.decode(CODEC.encode(cmds)) == cmds
    assert CODEC.decode(CODEC.encode(events), events[0].seq) == events
    assert {type(e) for e in events} >= {Trade}


def test_recovery_without_snapshot_rebuilds_identical_state(db):
    async def main():
        engine = db()
        core, events, _ = await journal_run(engine, list(random_commands(11, 3000)))
        rec = await Journal.recover(engine, worker_instruments(), verify_events=True)
        await engine.dispose()
        return core, rec

    core, rec = asyncio.run(main())
    assert rec.snapshot() == core.snapshot() and rec.seq == core.seq


def test_recovery_from_snapshot_plus_replay_rebuilds_identical_state(db):
    async def main():
        engine = db()
        core, events, _ = await journal_run(engine, list(random_commands(12, 3000)), snapshot_every=7)
        rec = await Journal.recover(engine, worker_instruments(), verify_events=True)
        await engine.dispose()
        return core, rec

    core, rec = asyncio.run(main())
    assert rec.snapshot() == core.snapshot()


def test_events_since_returns_the_journaled_stream(db):
    async def main():
        engine = db()
        core, events, journal = await journal_run(engine, list(random_commands(13, 1000)))
        tail = await journal.events_since(events[-40].seq - 1)
        head = await journal.events_since(0, limit=25)
        await engine.dispose()
        return events, tail, head

    events, tail, head = asyncio.run(main())
    assert tail == events[-40:] and head == events[:25]


def test_journal_refuses_a_gap_in_the_sequence(db):
    async def main():
        engine = db()
        journal = await Journal.open(engine)
        core = Core(worker_instruments())
        cmds = list(random_commands(14, 40))
        core.process_batch(cmds[:20])  # processed but never journaled
        ev = core.process_batch(cmds[20:])
        with pytest.raises(JournalError):
            async with engine.begin() as conn:
                await journal.write(conn, cmds[20:], ev)
        await engine.dispose()

    asyncio.run(main())


def test_reopened_journal_continues_after_the_last_batch(db):
    async def main():
        engine = db()
        cmds = list(random_commands(15, 600))
        core, _, _ = await journal_run(engine, cmds[:300])
        journal = await Journal.open(engine)
        assert (journal.cmd_count, journal.seq) == (core.cmd_count, core.seq)
        rec = await Journal.recover(engine, worker_instruments())
        ev = rec.process_batch(cmds[300:])
        async with engine.begin() as conn:
            await journal.write(conn, cmds[300:], ev)
        again = await Journal.recover(engine, worker_instruments(), verify_events=True)
        ref = Core(worker_instruments())
        ref.process_batch(cmds)
        await engine.dispose()
        return again, ref

    again, ref = asyncio.run(main())
    assert again.snapshot() == ref.snapshot()


def test_uncommitted_batch_is_not_recovered(db):
    async def main():
        engine = db()
        cmds = list(random_commands(16, 200))
        core, _, journal = await journal_run(engine, cmds[:100])
        acked = core.snapshot()
        ev = core.process_batch(cmds[100:])
        conn = await engine.connect()
        trans = await conn.begin()
        await journal.write(conn, cmds[100:], ev)
        await trans.rollback()  # the crash before commit
        await conn.close()
        rec = await Journal.recover(engine, worker_instruments())
        await engine.dispose()
        return acked, rec

    acked, rec = asyncio.run(main())
    assert rec.snapshot() == acked


def test_codec_round_trips_foreign_events_with_nested_tuples():
    from venue.core.events import LedgerEntry

    e = LedgerEntry(7, 1, 3, "trade", "trade:1", (("a", "USD", -5), ("b", "USD", 5)), (("a", "USD", -5),))
    assert CODEC.decode(CODEC.encode([e]), 7) == [e]
