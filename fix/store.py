"""The FIX message store: outbound application messages and both seqnums per session, in the DB.

SQLAlchemy 2 async with its own ``MetaData``. The acceptor stages each session's
:class:`~fix.session.Outbound` and calls :meth:`MessageStore.flush` inside the batch's single
transaction, so everything a batch sends is committed before the first byte of it is written.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import (
    BigInteger,
    Column,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fix.session import Outbound

metadata = MetaData()

session_state = Table(
    "fix_session_state",
    metadata,
    Column("session_key", String(200), primary_key=True),
    Column("next_sender", BigInteger, nullable=False),
    Column("next_target", BigInteger, nullable=False),
)

outbound_messages = Table(
    "fix_outbound_messages",
    metadata,
    Column("session_key", String(200), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("raw", LargeBinary, nullable=False),
)

_CHUNK = 300 if sqlite3.sqlite_version_info < (3, 32) else 10_000
"""Rows per statement (3 parameters each): SQLite allows 999 parameters before 3.32, 32766 since."""
_INSERT_SQLITE = "INSERT INTO fix_outbound_messages (session_key, seq, raw) VALUES "
_UPSERT_STATE_SQLITE = "INSERT INTO fix_session_state (session_key, next_sender, next_target) VALUES "
_UPSERT_TAIL = (" ON CONFLICT(session_key) DO UPDATE SET next_sender = excluded.next_sender,"
                " next_target = excluded.next_target")
_INSERT_PG = "INSERT INTO fix_outbound_messages (session_key, seq, raw) VALUES ($1, $2, $3)"

_update_state = (
    update(session_state)
    .where(session_state.c.session_key == bindparam("k"))
    .values(next_sender=bindparam("s"), next_target=bindparam("t"))
)


class MessageStore:
    """Persistent store shared by all sessions of an acceptor."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._staged: dict[str, tuple[int, int]] = {}
        self._rows: list[tuple[str, int, bytes]] = []
        self._resets: list[str] = []

    async def create_tables(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            if conn.dialect.name == "postgresql":
                # stores created before sequence numbers were 64-bit: widen them in place (a no-op after)
                narrow = (await conn.exec_driver_sql(
                    "SELECT table_name, column_name FROM information_schema.columns WHERE data_type = 'integer'"
                    " AND table_schema = current_schema() AND table_name IN"
                    " ('fix_session_state', 'fix_outbound_messages')"
                    " AND column_name IN ('next_sender', 'next_target', 'seq')")).all()
                for table, column in narrow:
                    await conn.exec_driver_sql(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE BIGINT")

    async def load(self, session_key: str) -> tuple[int, int]:
        """``(next_sender, next_target)`` for a session, creating its row at (1, 1) if new."""
        return (await self.load_many([session_key]))[session_key]

    async def load_many(self, session_keys: list[str]) -> dict[str, tuple[int, int]]:
        """:meth:`load` for many sessions in one transaction (a logon storm brings hundreds of new
        sessions at once; one transaction each kept the event loop waiting on the database)."""
        keys = list(dict.fromkeys(session_keys))
        out: dict[str, tuple[int, int]] = {}
        async with self.engine.begin() as conn:
            for i in range(0, len(keys), 500):
                rows = await conn.execute(
                    select(session_state.c.session_key, session_state.c.next_sender, session_state.c.next_target)
                    .where(session_state.c.session_key.in_(keys[i:i + 500])))
                out.update((key, (int(s), int(t))) for key, s, t in rows)
            new = [key for key in keys if key not in out]
            if new:
                await conn.execute(insert(session_state),
                                   [{"session_key": key, "next_sender": 1, "next_target": 1} for key in new])
                out.update((key, (1, 1)) for key in new)
        return out

    async def fetch(self, session_key: str, begin: int, end: int) -> list[tuple[int, bytes]]:
        """Stored outbound messages ``begin <= seq <= end``, in order."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(outbound_messages.c.seq, outbound_messages.c.raw)
                .where(outbound_messages.c.session_key == session_key)
                .where(outbound_messages.c.seq >= begin)
                .where(outbound_messages.c.seq <= end)
                .order_by(outbound_messages.c.seq)
            )
            return [(int(seq), bytes(raw)) for seq, raw in rows]

    def stage(self, session_key: str, out: Outbound) -> None:
        """Remember one session's batch output for the next :meth:`flush`."""
        if out.reset:
            self._resets.append(session_key)
            self._rows = [r for r in self._rows if r[0] != session_key]
        self._staged[session_key] = (out.next_sender, out.next_target)
        if out.store_rows:
            self._rows.extend([(session_key, seq, raw) for seq, raw in out.store_rows])

    @property
    def pending(self) -> bool:
        return bool(self._staged or self._rows or self._resets)

    def discard(self) -> None:
        """Forget what is staged: after a failed commit the acceptor stages that batch again."""
        self._staged, self._rows, self._resets = {}, [], []

    async def flush(self, conn: AsyncConnection) -> None:
        """Write everything staged into ``conn``'s transaction (the caller commits)."""
        staged, rows, resets = self._staged, self._rows, self._resets
        self._staged, self._rows, self._resets = {}, [], []
        if not (staged or rows or resets):
            return
        if conn.dialect.name == "sqlite":
            await self._flush_sqlite(conn, staged, rows, resets)
            return
        if staged:
            values = [{"session_key": k, "next_sender": s, "next_target": t} for k, (s, t) in staged.items()]
            if conn.dialect.name == "postgresql":
                stmt = pg_insert(session_state)
                stmt = stmt.on_conflict_do_update(index_elements=[session_state.c.session_key], set_={
                    "next_sender": stmt.excluded.next_sender, "next_target": stmt.excluded.next_target})
                await conn.execute(stmt, values)
            else:
                await conn.execute(_update_state, [
                    {"k": v["session_key"], "s": v["next_sender"], "t": v["next_target"]} for v in values])
        if resets:
            await conn.execute(delete(outbound_messages).where(outbound_messages.c.session_key.in_(resets)))
        if rows:
            driver = (await conn.get_raw_connection()).driver_connection
            if conn.dialect.name == "postgresql" and hasattr(driver, "copy_records_to_table"):
                # asyncpg's own executemany on the same connection, inside the transaction the
                # UPDATE above began: a few us a row instead of SQLAlchemy's ~40.
                await driver.executemany(_INSERT_PG, rows)
            else:
                await conn.execute(insert(outbound_messages),
                                   [{"session_key": k, "seq": q, "raw": r} for k, q, r in rows])

    def take_sqlite_statements(self) -> list[tuple[str, list]]:
        """Everything staged as plain ``sqlite3`` statements (and forgotten here), for an owner that
        runs its whole transaction in one call on the driver's thread (see ``write_all_and_commit``)."""
        staged, rows, resets = self._staged, self._rows, self._resets
        self._staged, self._rows, self._resets = {}, [], []
        return _sqlite_statements(staged, rows, resets) if (staged or rows or resets) else []

    async def commit_alone(self, conn: AsyncConnection) -> None:
        """Write everything staged AND commit it, for a batch whose transaction holds nothing
        else (the application does not journal): on SQLite that is a single hop to aiosqlite's
        thread instead of two, which halves the time a batch waits for the event loop."""
        driver = None
        if conn.dialect.name == "sqlite" and not conn.in_transaction():
            driver = (await conn.get_raw_connection()).driver_connection
        run = getattr(driver, "_execute", None)
        if run is None or not hasattr(driver, "_conn"):
            async with conn.begin():
                await self.flush(conn)
            return
        staged, rows, resets = self._staged, self._rows, self._resets
        self._staged, self._rows, self._resets = {}, [], []
        if staged or rows or resets:
            await run(_write_and_commit, driver._conn, _sqlite_statements(staged, rows, resets))

    async def _flush_sqlite(self, conn: AsyncConnection, staged: dict[str, tuple[int, int]],
                            rows: list[tuple[str, int, bytes]], resets: list[str]) -> None:
        # aiosqlite runs each call in its own thread, and every hop costs a thread wake-up (and GIL
        # hand-offs) while the event loop is busy: the whole batch goes in ONE hop, as multi-row
        # statements on the same sqlite3 connection, inside the transaction SQLAlchemy commits.
        driver = (await conn.get_raw_connection()).driver_connection
        run = getattr(driver, "_execute", None)
        statements = _sqlite_statements(staged, rows, resets)  # Python work here, not in the worker
        if run is not None and hasattr(driver, "_conn"):
            await run(_write_sqlite, driver._conn, statements)
        else:  # another SQLite driver: same statements, one call each
            for sql, params in statements:
                await driver.execute(sql, params)


def _sqlite_statements(staged: dict[str, tuple[int, int]], rows: list[tuple[str, int, bytes]],
                       resets: list[str]) -> list[tuple[str, list]]:
    out: list[tuple[str, list]] = []
    items = list(staged.items())
    for i in range(0, len(items), _CHUNK):
        part = items[i:i + _CHUNK]
        out.append((_UPSERT_STATE_SQLITE + ",".join(["(?,?,?)"] * len(part)) + _UPSERT_TAIL,
                    [v for k, (s, t) in part for v in (k, s, t)]))
    for i in range(0, len(resets), _CHUNK):
        part = resets[i:i + _CHUNK]
        out.append(("DELETE FROM fix_outbound_messages WHERE session_key IN (" + ",".join(["?"] * len(part)) + ")",
                    part))
    for i in range(0, len(rows), _CHUNK):
        part = rows[i:i + _CHUNK]
        out.append((_INSERT_SQLITE + ",".join(["(?,?,?)"] * len(part)), [v for row in part for v in row]))
    return out


def _write_sqlite(sqlconn, statements: list[tuple[str, list]]) -> None:
    """Runs in aiosqlite's thread, on its sqlite3 connection (the transaction begins implicitly)."""
    for sql, params in statements:
        sqlconn.execute(sql, params)


def _write_and_commit(sqlconn, statements: list[tuple[str, list]]) -> None:
    """Runs in aiosqlite's thread: the batch's statements and the commit, or a rollback."""
    try:
        for sql, params in statements:
            sqlconn.execute(sql, params)
        sqlconn.commit()
    except BaseException:
        sqlconn.rollback()
        raise
