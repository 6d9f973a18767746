"""Databases for the access/audit persistence tests: a SQLite file, or a fresh PostgreSQL schema.

``BACKENDS`` parametrises a test over both; PostgreSQL is skipped only when none is reachable.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from venue.db import make_engine, sqlite_url

PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
BACKENDS = ["sqlite", "postgresql"]


def pg_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return True
    except OSError:
        return False


async def _admin(sql: str) -> None:
    engine = make_engine(PG_URL)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


@contextmanager
def database(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database URL for one test; for PostgreSQL a new schema, dropped afterwards.

    Engines for a PostgreSQL URL must be made with ``engine_for`` (it sets the search path)."""
    if backend == "sqlite":
        yield sqlite_url(tmp_path)
        return
    if not pg_reachable():
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    schema = f"t_access_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_URL}?schema={schema}"
    finally:
        asyncio.run(_admin(f'DROP SCHEMA "{schema}" CASCADE'))


def engine_for(url: str) -> AsyncEngine:
    """An engine for a URL from ``database`` (PostgreSQL: bound to the test's schema)."""
    if "?schema=" in url:
        base, schema = url.split("?schema=", 1)
        return make_engine(base, connect_args={"server_settings": {"search_path": schema}})
    return make_engine(url)


@contextmanager
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database (for subprocesses that only take a URL), dropped afterwards."""
    if not pg_reachable():
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    name = f"t_access_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin_autocommit(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(_admin_autocommit(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin_autocommit(sql: str) -> None:
    engine = make_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()
