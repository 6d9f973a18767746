"""Database engines: SQLite (embedded default, WAL) or PostgreSQL (asyncpg), by URL."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


def sqlite_url(data_dir: Path | str) -> str:
    return f"sqlite+aiosqlite:///{Path(data_dir) / 'venue.db'}"


# How long a SQLite connection waits for another writer (the venue, a CLI command) before
# "database is locked": writers take turns, none fails because another held the lock an instant.
SQLITE_BUSY_TIMEOUT_S = 30.0


# FULL: every commit fsyncs the WAL (durable across power loss). NORMAL (in WAL mode): the WAL is
# fsynced at checkpoints only; a commit survives a crash or kill -9 of the process (it is in the
# OS's page cache), the last commits may be lost only if the machine itself loses power.
# The default is FULL; an operator who accepts that trade-off sets VENUE_SQLITE_SYNCHRONOUS=NORMAL
# (docs/durability.md). Either way nothing is sent before its transaction has committed.
SYNCHRONOUS_ENV = "VENUE_SQLITE_SYNCHRONOUS"


def sqlite_synchronous() -> str:
    value = os.environ.get(SYNCHRONOUS_ENV, "FULL").strip().upper()
    if value not in ("FULL", "NORMAL", "EXTRA"):
        raise ValueError(f"{SYNCHRONOUS_ENV} must be FULL, NORMAL or EXTRA, not {value!r}")
    return value


def make_engine(url: str, **kwargs) -> AsyncEngine:
    """Create an async engine; SQLite connections get WAL, synchronous=FULL (or NORMAL, see above) and a
    busy timeout."""
    if url.startswith("postgresql://"):
        url = "postgresql+asyncpg://" + url[len("postgresql://"):]
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S, **kwargs.get("connect_args", {})}
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        synchronous = sqlite_synchronous()

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

    return engine


def write_and_commit(sqlconn, statements: list[tuple[str, Any]]) -> None:
    """Run in the SQLite driver's own thread (aiosqlite's ``_execute``) on its ``sqlite3``
    connection: a whole transaction, its statements and the commit (or a rollback), in ONE hop to
    that thread instead of one per statement plus one for the commit. BEGIN is explicit, so the
    statements are atomic whatever the connection's ``isolation_level``."""
    if not sqlconn.in_transaction:
        sqlconn.execute("BEGIN")
    try:
        for sql, params in statements:
            sqlconn.execute(sql, params)
        sqlconn.commit()
    except BaseException:
        sqlconn.rollback()
        raise


@asynccontextmanager
async def connect(db: AsyncEngine | AsyncConnection) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction: a new one for an engine, the caller's for a connection."""
    if isinstance(db, AsyncEngine):
        async with db.begin() as conn:
            yield conn
    else:
        yield db
