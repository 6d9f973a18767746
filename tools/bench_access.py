"""``venue bench access``: cost of a logon decision, of audit appends, and of verifying the log.

- logon checks: distinct signed logons (prepared untimed) through ``AccessGate.check_logon``;
  dominated by one Ed25519 verification each.
- audit appends: one entry per transaction (how the CLI writes), and 100 entries per transaction
  (how the venue writes them, in its batch), on SQLite (a temp file) or ``--db-url``.
- audit verify: recomputing the chain of everything appended.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import click

from venue import audit
from venue.access import signing
from venue.access.gate import AccessGate, GateConfig
from venue.db import make_engine, sqlite_url
from venue.registry import AccountRecord, SessionKey, SessionRecord


def bench_logons(n: int) -> float:
    """Logon checks per second."""
    key = signing.generate_key()
    kid = signing.key_id_for(key.public_key())
    sess = SessionRecord("B1", "VENUE", "order_entry", "F", ("A",), ("127.0.0.0/8",), 5, 60, 10.0, 10, True, False,
                         True, True, (SessionKey(kid, "B1", signing.public_key_b64(key.public_key()), "active", 0,
                                                 None),))
    acc = AccountRecord("A", "F", "verified", 1, None, "T", None, None)
    gate = AccessGate([sess], [acc], GateConfig(logon_window_s=3600))
    now = time.time_ns()
    st = time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(now // 1_000_000_000)) + ".000"
    logons = [{35: "A", 34: str(i), 52: st, **dict(signing.signed_logon_fields(key, kid, "B1", "VENUE", i, st))}
              for i in range(1, n + 1)]
    t0 = time.perf_counter()
    for f in logons:
        if not gate.check_logon("B1", "VENUE", f, "127.0.0.1", now).ok:
            raise RuntimeError("benchmark logon refused")
    return n / (time.perf_counter() - t0)


async def bench_audit(url: str, n: int) -> tuple[float, float, float]:
    """(single appends/s, batched appends/s, verified entries/s)."""
    engine = make_engine(url)
    try:
        await audit.create_schema(engine)
        t0 = time.perf_counter()
        for i in range(n):
            await audit.append(engine, "bench.single", actor="bench", subject="S", source="127.0.0.1",
                               details={"i": i})
        single = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for start in range(0, n, 100):
            async with engine.begin() as conn:
                for i in range(start, min(n, start + 100)):
                    await audit.append(conn, "bench.batched", actor="bench", subject="S", details={"i": i})
        batched = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        problems = await audit.verify(engine)
        verified = 2 * n / (time.perf_counter() - t0)
        if problems:
            raise RuntimeError(f"benchmark log does not verify: {problems[0]}")
        return single, batched, verified
    finally:
        await engine.dispose()


@click.command("access")
@click.option("--logons", type=int, default=5000, show_default=True)
@click.option("--entries", type=int, default=1000, show_default=True)
@click.option("--runs", type=int, default=3, show_default=True)
@click.option("--db-url", default=None, help="Audit database (default: SQLite in a temp dir). Use an empty one.")
def command(logons: int, entries: int, runs: int, db_url: str | None) -> None:
    """Logon checks/s, audit appends/s and audit verification speed (median of --runs)."""
    rates = [bench_logons(logons) for _ in range(runs)]
    click.echo(f"logon checks (signed, verified):  {statistics.median(rates):,.0f}/s "
               f"({1e6 / statistics.median(rates):.1f} us each)")
    results = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as d:
            url = db_url or sqlite_url(Path(d))
            results.append(asyncio.run(bench_audit(url, entries)))
        if db_url:
            break
    single, batched, verified = (statistics.median(r[i] for r in results) for i in range(3))
    where = "given database" if db_url else "SQLite WAL, synchronous=FULL"
    click.echo(f"audit appends, 1 per transaction:  {single:,.0f}/s ({where})")
    click.echo(f"audit appends, 100 per transaction: {batched:,.0f}/s")
    click.echo(f"audit verify:                      {verified:,.0f} entries/s")
