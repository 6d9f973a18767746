"""The SQLite settings behind "committed before sent": the synchronous level an operator chose
(FULL by default; NORMAL in WAL only by VENUE_SQLITE_SYNCHRONOUS, see docs/durability.md), and
the one-hop batch transaction (venue.db.write_and_commit) being all or nothing."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from sqlalchemy import text

from venue.db import SYNCHRONOUS_ENV, make_engine, sqlite_url, write_and_commit


def _pragmas(tmp_path) -> tuple[str, int]:
    async def main() -> tuple[str, int]:
        engine = make_engine(sqlite_url(tmp_path))
        try:
            async with engine.connect() as conn:
                mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar()
                sync = (await conn.execute(text("PRAGMA synchronous"))).scalar()
                return mode, sync
        finally:
            await engine.dispose()

    return asyncio.run(main())


def test_full_by_default_in_wal(tmp_path, monkeypatch):
    monkeypatch.delenv(SYNCHRONOUS_ENV, raising=False)
    assert _pragmas(tmp_path) == ("wal", 2)  # 2 = FULL: every commit fsyncs the WAL


def test_normal_when_the_operator_chooses_it(tmp_path, monkeypatch):
    monkeypatch.setenv(SYNCHRONOUS_ENV, "normal")
    assert _pragmas(tmp_path) == ("wal", 1)  # 1 = NORMAL


def test_an_unknown_level_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(SYNCHRONOUS_ENV, "OFF")  # OFF would not be durable even against a crash
    with pytest.raises(ValueError, match="VENUE_SQLITE_SYNCHRONOUS must be FULL, NORMAL or EXTRA, not 'OFF'"):
        make_engine(sqlite_url(tmp_path))


def test_the_one_hop_transaction_is_all_or_nothing(tmp_path):
    db = sqlite3.connect(tmp_path / "t.db", isolation_level=None)  # autocommit: BEGIN must be explicit
    db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
    with pytest.raises(sqlite3.IntegrityError):
        write_and_commit(db, [("INSERT INTO t VALUES (?)", (1,)), ("INSERT INTO t VALUES (?)", (1,))])
    assert db.execute("SELECT count(*) FROM t").fetchone() == (0,)  # the first insert rolled back
    write_and_commit(db, [("INSERT INTO t VALUES (?)", (1,)), ("INSERT INTO t VALUES (?)", (2,))])
    assert sqlite3.connect(tmp_path / "t.db").execute("SELECT count(*) FROM t").fetchone() == (2,)
