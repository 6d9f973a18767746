"""SIGKILL a process that journals batches; everything it acknowledged must be recovered exactly."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from tools.journal_worker import random_commands, worker_instruments
from venue.core.engine import Core
from venue.core.events import OrderAccepted, Trade
from venue.db import make_engine
from venue.journal import Journal

ROOT = Path(__file__).resolve().parent.parent
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
SEED = 4242
BATCH = 40


def run_and_kill(args: list[str], acks_before_kill: int) -> list[tuple[int, int]]:
    """Start the worker, SIGKILL it after some acknowledged batches; return every ACK it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.journal_worker", *args, "--seed", str(SEED), "--batch-size", str(BATCH)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    acks = []
    try:
        for line in proc.stdout:
            kind, cmd_count, seq = line.split()
            acks.append((int(cmd_count), int(seq)))
            if len(acks) >= acks_before_kill:
                os.kill(proc.pid, signal.SIGKILL)
                break
        for line in proc.stdout:  # anything it managed to print before dying was acknowledged too
            kind, cmd_count, seq = line.split()
            acks.append((int(cmd_count), int(seq)))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    return acks


def check_recovery(engine_factory, acks: list[tuple[int, int]]) -> None:
    async def recover():
        engine = engine_factory()
        core = await Journal.recover(engine, worker_instruments(), verify_events=True)
        journal = await Journal.open(engine)
        events = await journal.events_since(0)
        await engine.dispose()
        return core, events

    core, journaled = asyncio.run(recover())
    acked_cmds, acked_seq = acks[-1]
    assert core.cmd_count >= acked_cmds and core.seq >= acked_seq
    # reference: the same command stream through a core that never crashed
    ref = Core(worker_instruments())
    ref_events = ref.process_batch(itertools.islice(random_commands(SEED), core.cmd_count))
    assert journaled == ref_events
    assert core.snapshot() == ref.snapshot()
    acked = ref_events[:acked_seq]
    acked_orders = {e.order_id for e in acked if isinstance(e, OrderAccepted)}
    acked_trades = {e.trade_id for e in acked if isinstance(e, Trade)}
    assert acked_orders and acked_trades
    assert acked_orders <= {e.order_id for e in journaled if isinstance(e, OrderAccepted)}
    assert acked_trades <= {e.trade_id for e in journaled if isinstance(e, Trade)}
    # every order that was open at the last acknowledged batch and untouched since is still open
    prefix = Core(worker_instruments())
    prefix.process_batch(itertools.islice(random_commands(SEED), acked_cmds))
    later = {getattr(e, "order_id", None) for e in journaled[acked_seq:]}
    for o in prefix.open_orders():
        if o.order_id not in later:
            assert core.order(o.order_id) is not None


def test_sigkill_loses_nothing_acknowledged_sqlite(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'venue.db'}"
    acks = run_and_kill([url], acks_before_kill=25)
    check_recovery(lambda: make_engine(url), acks)


@pytest.fixture
def pg_schema():
    schema = f"crash_{uuid.uuid4().hex[:12]}"

    async def sql(stmt):
        eng = make_engine(PG_URL)
        async with eng.begin() as conn:
            await conn.execute(text(stmt))
        await eng.dispose()

    asyncio.run(sql(f"CREATE SCHEMA {schema}"))
    yield schema
    asyncio.run(sql(f"DROP SCHEMA {schema} CASCADE"))


def test_sigkill_loses_nothing_acknowledged_postgresql(pg_schema):
    acks = run_and_kill([PG_URL, "--schema", pg_schema], acks_before_kill=25)
    check_recovery(lambda: make_engine(PG_URL, connect_args={"server_settings": {"search_path": pg_schema}}), acks)
