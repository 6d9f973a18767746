"""The FIX message store on SQLite and on PostgreSQL (a unique schema per run)."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from fix.session import Outbound
from fix.store import MessageStore
from venue.db import make_engine, sqlite_url

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", "postgresql"])
def make_store(request, tmp_path):
    """An async factory of (engine, store) on a fresh database; cleaned up afterwards."""
    schema = f"fixstore_{uuid.uuid4().hex[:12]}"
    engines = []

    async def factory():
        if request.param == "sqlite":
            engine = make_engine(sqlite_url(tmp_path))
        else:
            conn = await asyncpg.connect(PG_DSN)
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.close()
            engine = make_engine(PG_DSN, connect_args={"server_settings": {"search_path": schema}})
        engines.append(engine)
        store = MessageStore(engine)
        await store.create_tables()
        return engine, store

    yield factory

    async def cleanup():
        for engine in engines:
            await engine.dispose()
        if request.param == "postgresql":
            conn = await asyncpg.connect(PG_DSN)
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await conn.close()

    asyncio.run(cleanup())


def _out(rows, sender, target, reset=False) -> Outbound:
    return Outbound(b"", rows, sender, target, reset, None)


async def _flush(engine, store) -> None:
    async with engine.begin() as conn:
        await store.flush(conn)


def test_a_new_session_starts_at_one_and_its_row_persists(make_store):
    async def main():
        engine, store = await make_store()
        assert await store.load("FIX.4.4:ISLD->TW") == (1, 1)
        store.stage("FIX.4.4:ISLD->TW", _out([], 7, 9))
        await _flush(engine, store)
        assert await MessageStore(engine).load("FIX.4.4:ISLD->TW") == (7, 9)

    asyncio.run(main())


def test_flushed_messages_come_back_by_range_in_order(make_store):
    async def main():
        engine, store = await make_store()
        await store.load("A")
        await store.load("B")
        store.stage("A", _out([(1, b"a1"), (2, b"a2")], 3, 2))
        store.stage("B", _out([(1, b"b1")], 2, 2))
        store.stage("A", _out([(5, b"a5")], 6, 2))
        await _flush(engine, store)
        assert await store.fetch("A", 2, 10) == [(2, b"a2"), (5, b"a5")]
        assert await store.fetch("B", 1, 1) == [(1, b"b1")]
        assert await store.load("A") == (6, 2)

    asyncio.run(main())


def test_reset_forgets_the_stored_messages_and_restarts_numbering(make_store):
    async def main():
        engine, store = await make_store()
        await store.load("A")
        store.stage("A", _out([(1, b"old1"), (2, b"old2")], 3, 3))
        await _flush(engine, store)
        store.stage("A", _out([(1, b"new1")], 2, 2, reset=True))
        await _flush(engine, store)
        assert await store.fetch("A", 1, 100) == [(1, b"new1")]
        assert await store.load("A") == (2, 2)

    asyncio.run(main())


def test_a_rolled_back_batch_leaves_nothing_behind(make_store):
    async def main():
        engine, store = await make_store()
        await store.load("A")
        store.stage("A", _out([(1, b"x")], 2, 2))
        with pytest.raises(RuntimeError):
            async with engine.begin() as conn:
                await store.flush(conn)
                raise RuntimeError("the venue's journal failed")
        assert await store.fetch("A", 1, 10) == []
        assert await store.load("A") == (1, 1)
        assert not store.pending

    asyncio.run(main())


def test_a_session_staged_without_load_is_created(make_store):
    async def main():
        engine, store = await make_store()
        store.stage("NEW", _out([(1, b"n1")], 2, 5))
        await _flush(engine, store)
        assert await store.load("NEW") == (2, 5)

    asyncio.run(main())


def test_large_batches_are_written_whole(make_store):
    async def main():
        engine, store = await make_store()
        keys = [f"S{i}" for i in range(20)]
        for key in keys:
            await store.load(key)
        for key in keys:
            store.stage(key, _out([(n, b"m%d" % n) for n in range(1, 101)], 101, 50))
        await _flush(engine, store)
        for key in (keys[0], keys[-1]):
            rows = await store.fetch(key, 1, 1000)
            assert len(rows) == 100 and rows[-1] == (100, b"m100")
            assert await store.load(key) == (101, 50)

    asyncio.run(main())


def test_commit_alone_writes_and_commits_the_batch(make_store):
    async def main():
        engine, store = await make_store()
        await store.load("A")
        store.stage("A", _out([(1, b"a1"), (2, b"a2")], 3, 4))
        async with engine.connect() as conn:
            await store.commit_alone(conn)
            assert not store.pending
        other = MessageStore(engine)  # a fresh reader sees the committed rows
        assert await other.fetch("A", 1, 9) == [(1, b"a1"), (2, b"a2")]
        assert await other.load("A") == (3, 4)

    asyncio.run(main())


def test_sequence_numbers_beyond_32_bits_are_stored_on_both_databases(make_store):
    """The edge admits 18-digit sequence numbers (SEQNUM); the store keeps them whole, so one
    session's SequenceReset to a large number cannot fail every batch's commit on PostgreSQL."""
    big = 10**18 - 2

    async def main():
        engine, store = await make_store()
        await store.load("S")
        store.stage("S", _out([(big, b"x")], big + 1, big))
        await _flush(engine, store)
        assert await MessageStore(engine).load("S") == (big + 1, big)
        assert await store.fetch("S", big, big) == [(big, b"x")]

    asyncio.run(main())


def test_a_postgresql_store_created_with_32_bit_sequence_numbers_is_widened(make_store):
    async def main():
        engine, store = await make_store()
        if engine.dialect.name != "postgresql":
            return  # SQLite's INTEGER is 64-bit already
        async with engine.begin() as conn:
            for table, column in (("fix_session_state", "next_sender"), ("fix_outbound_messages", "seq")):
                await conn.exec_driver_sql(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE integer")
        await MessageStore(engine).create_tables()
        async with engine.begin() as conn:
            types = dict((await conn.exec_driver_sql(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND column_name IN ('next_sender', 'seq')")).all())
        assert types == {"next_sender": "bigint", "seq": "bigint"}

    asyncio.run(main())
