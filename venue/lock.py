"""One writer per database: the running venue holds a lock that a second venue, and every command
that needs the venue stopped, respects.

- SQLite: an exclusive ``fcntl.flock`` on ``<database file>.lock`` beside the database, the real
  file with symlinks resolved (a symlinked ``venue.db`` or data directory meets the same lock). The
  kernel drops it when the holder exits, ``kill -9`` included, so a crash never leaves a stale lock.
  The file carries the holder's pid and role for the refusal message.
- PostgreSQL: a session-level ``pg_advisory_lock`` held on a dedicated connection (dropped with the
  connection, so with the process); that connection's ``application_name`` carries the pid and role.

The audit log's ``venue.started``/``venue.stopped`` entries are history, not this: a second venue
that was refused, or one killed with ``-9``, would make them lie.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

# pg_advisory_lock(bigint) key: below 2**32, so pg_locks shows it as classid 0, objid KEY, objsubid 1
PG_KEY = 0x56454E55  # "VENU"
_APP_PREFIX = "venue-writer:"


@dataclass(slots=True, frozen=True)
class Holder:
    """Who holds the writer lock (pid None: it is held, but the holder could not be identified)."""

    pid: int | None
    role: str

    def __str__(self) -> str:
        return f"pid {self.pid if self.pid is not None else '?'}" + (f", {self.role}" if self.role else "")


class VenueLocked(RuntimeError):
    """Another process holds the writer lock of this database."""

    def __init__(self, holder: Holder) -> None:
        self.holder = holder
        super().__init__(f"a venue is already running on this database ({holder}): one writer per database")


@dataclass(slots=True)
class WriterLock:
    """A held lock; ``await release()`` once (idempotent)."""

    _fd: int | None = None
    _conn: AsyncConnection | None = None
    _own_engine: AsyncEngine | None = None

    async def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.ftruncate(fd, 0)
            finally:
                os.close(fd)  # closing the descriptor drops the flock
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                await conn.execute(text(f"SELECT pg_advisory_unlock({PG_KEY})"))
            finally:
                await conn.close()
        if self._own_engine is not None:
            engine, self._own_engine = self._own_engine, None
            await engine.dispose()

    async def __aenter__(self) -> WriterLock:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()


def lock_path(db_file: str | Path) -> Path:
    """The lock file of a database: beside the file the path really names (symlinks resolved), so a
    data directory whose ``venue.db`` is a symlink to a live venue's database meets that venue's lock."""
    p = Path(os.path.realpath(db_file))
    return p.with_name(p.name + ".lock")


def _sqlite_file(engine_or_url: AsyncEngine | str) -> str | None:
    url = engine_or_url.url if isinstance(engine_or_url, AsyncEngine) else make_url(engine_or_url)
    db = url.database
    return None if not db or db == ":memory:" else db


def _is_sqlite(engine_or_url: AsyncEngine | str) -> bool:
    if isinstance(engine_or_url, AsyncEngine):
        return engine_or_url.dialect.name == "sqlite"
    return engine_or_url.startswith("sqlite")


def _read_holder(fd: int) -> Holder:
    raw = os.pread(fd, 256, 0).decode("utf-8", "replace").strip()
    pid_s, _, role = raw.partition(" ")
    return Holder(int(pid_s) if pid_s.isdigit() else None, role)


async def acquire(engine_or_url: AsyncEngine | str, role: str = "venue serve", wait: float = 0.5) -> WriterLock:
    """Take the writer lock of this database or raise :class:`VenueLocked` naming the holder.

    ``wait``: how long to retry (a command checking the lock holds it for an instant)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        try:
            if _is_sqlite(engine_or_url):
                return _acquire_file(engine_or_url, role)
            return await _acquire_pg(engine_or_url, role)
        except VenueLocked as exc:
            # a holder without a pid is a command testing the lock for an instant (or a holder
            # between taking it and writing its pid): worth a retry; a named holder is not
            if exc.holder.pid is not None or loop.time() >= deadline:
                raise
        await asyncio.sleep(0.05)


def _acquire_file(engine_or_url: AsyncEngine | str, role: str = "venue serve") -> WriterLock:
    db = _sqlite_file(engine_or_url)
    if db is None:
        return WriterLock()  # an in-memory database has no second writer
    path = lock_path(db)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = _read_holder(fd)
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise VenueLocked(holder) from None
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {role}\n".encode(), 0)
    return WriterLock(_fd=fd)


async def _acquire_pg(engine_or_url: AsyncEngine | str, role: str) -> WriterLock:
    own = None
    if isinstance(engine_or_url, str):
        from sqlalchemy.pool import NullPool

        from venue.db import make_engine

        engine = own = make_engine(engine_or_url, poolclass=NullPool)
    else:
        engine = engine_or_url
    conn = None
    try:
        conn = await engine.connect()
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("SELECT set_config('application_name', :n, false)"),
                           {"n": f"{_APP_PREFIX}{os.getpid()} {role}"[:63]})
        if (await conn.execute(text(f"SELECT pg_try_advisory_lock({PG_KEY})"))).scalar():
            return WriterLock(_conn=conn, _own_engine=own)
        holder = await _pg_holder(conn) or Holder(None, "")
    except BaseException:
        if conn is not None:
            await conn.close()
        if own is not None:
            await own.dispose()
        raise
    await conn.close()
    if own is not None:
        await own.dispose()
    raise VenueLocked(holder)


async def _pg_holder(conn: AsyncConnection) -> Holder | None:
    row = (await conn.execute(text(
        "SELECT a.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        f"WHERE l.locktype = 'advisory' AND l.classid = 0 AND l.objid = {PG_KEY} AND l.objsubid = 1 "
        "AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ))).first()
    if row is None:
        return None
    name = row.application_name or ""
    if name.startswith(_APP_PREFIX):
        pid_s, _, role = name[len(_APP_PREFIX):].partition(" ")
        if pid_s.isdigit():
            return Holder(int(pid_s), role)
    return Holder(None, f"PostgreSQL backend {row.pid}")


async def holder(engine_or_url: AsyncEngine | str) -> Holder | None:
    """Who holds the writer lock of this database now (None: nobody, the venue is stopped)."""
    if _is_sqlite(engine_or_url):
        db = _sqlite_file(engine_or_url)
        if db is None or not lock_path(db).exists():
            return None
        fd = os.open(lock_path(db), os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    return _read_holder(fd)
                raise
            return None
        finally:
            os.close(fd)  # drops the shared lock taken to test
    if isinstance(engine_or_url, str):
        from sqlalchemy.pool import NullPool

        from venue.db import make_engine

        engine = make_engine(engine_or_url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                return await _pg_holder(conn)
        finally:
            await engine.dispose()
    async with engine_or_url.connect() as conn:
        return await _pg_holder(conn)
