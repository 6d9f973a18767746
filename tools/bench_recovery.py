"""``venue bench recovery``: how long recovery takes for a journal of N events.

Journals the ``bench core`` workload (batches of ``--batch`` commands, one commit each) until at
least N events are written, then recovers a core from the database: (1) replaying the whole journal
(no snapshot) and (2) from a snapshot taken at the end (load only). Prints the times, the journal's
size and bytes per event. SQLite in a temporary directory by default, or ``--url``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import tempfile
import time
from pathlib import Path

import click
from sqlalchemy import delete, func, select

from tools.bench_core import bench_instrument, generate
from venue.core.engine import Core
from venue.db import make_engine
from venue.journal import Journal, journal_table, snapshot_table


async def measure(url: str, n_events: int, batch: int) -> dict:
    engine = make_engine(url)
    journal = await Journal.open(engine)
    if journal.cmd_count:
        raise click.ClickException("the database already holds a journal; use an empty one")
    # the bench-core mix gives ~2.9 events per command
    cmds = generate(int(n_events / 2.5) + 1000)
    core = Core([bench_instrument()])
    t0 = time.perf_counter()
    i = 0
    while core.seq < n_events and i < len(cmds):
        chunk = cmds[i:i + batch]
        i += batch
        events = core.process_batch(chunk)
        async with engine.begin() as conn:
            await journal.write(conn, chunk, events)
    write_s = time.perf_counter() - t0
    async with engine.connect() as conn:
        blob_bytes = (await conn.execute(
            select(func.sum(func.length(journal_table.c.commands) + func.length(journal_table.c.events)))
        )).scalar() or 0
    del cmds
    gc.collect()
    t0 = time.perf_counter()
    recovered = await Journal.recover(engine, [bench_instrument()])
    replay_s = time.perf_counter() - t0
    assert recovered.seq == core.seq and recovered.cmd_count == core.cmd_count
    del recovered
    async with engine.begin() as conn:
        await journal.write_snapshot(conn, core)
    t0 = time.perf_counter()
    recovered = await Journal.recover(engine, [bench_instrument()])
    snap_s = time.perf_counter() - t0
    assert recovered.seq == core.seq
    async with engine.begin() as conn:
        snap_bytes = (await conn.execute(select(func.length(snapshot_table.c.data)))).scalar() or 0
        await conn.execute(delete(snapshot_table))
    await engine.dispose()
    return {
        "events": core.seq,
        "commands": core.cmd_count,
        "batches": (core.cmd_count + batch - 1) // batch,
        "resting_orders": len(core.open_orders()),
        "journal_write_s": round(write_s, 2),
        "replay_recovery_s": round(replay_s, 2),
        "replay_events_per_s": round(core.seq / replay_s),
        "snapshot_recovery_s": round(snap_s, 2),
        "journal_bytes": blob_bytes,
        "bytes_per_event": round(blob_bytes / core.seq, 1),
        "snapshot_bytes": snap_bytes,
    }


@click.command("recovery")
@click.option("--events", "n_events", default=1_000_000, show_default=True)
@click.option("--batch", default=500, show_default=True, help="commands per group commit")
@click.option("--url", default=None, help="database URL (default: SQLite in a temporary directory)")
@click.option("--json", "as_json", is_flag=True)
def command(n_events: int, batch: int, url: str | None, as_json: bool) -> None:
    """Recovery time of the core from a journal of N events (full replay and from a snapshot)."""
    with tempfile.TemporaryDirectory() as tmp:
        db_url = url or f"sqlite+aiosqlite:///{Path(tmp) / 'venue.db'}"
        res = asyncio.run(measure(db_url, n_events, batch))
        if url is None:
            res["sqlite_file_bytes"] = os.path.getsize(Path(tmp) / "venue.db")
    if as_json:
        click.echo(json.dumps(res))
        return
    click.echo(f"journal        {res['events']:,} events, {res['commands']:,} commands, {res['batches']:,} commits "
               f"(written in {res['journal_write_s']} s)")
    click.echo(f"size           {res['journal_bytes']:,} bytes compressed ({res['bytes_per_event']} bytes/event)")
    click.echo(f"recovery       full replay {res['replay_recovery_s']} s ({res['replay_events_per_s']:,} events/s)")
    click.echo(f"               from snapshot {res['snapshot_recovery_s']} s "
               f"({res['resting_orders']:,} resting orders, snapshot {res['snapshot_bytes']:,} bytes)")
