"""``venue bench session``: NewOrderSingle round trips through the echo acceptor over loopback.

The acceptor (this process: dictionary validation, session layer, echo application, SQLite message
store with every outbound message committed before it is written, per-session message logs) serves
``--clients`` FIX sessions driven by a second process. Each client keeps ``--window`` orders in
flight (sliding window). Reports round trips per second and the latency p50/p99 of a round trip.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import socket
import tempfile
import time
from pathlib import Path

import click

SOH = b"\x01"


def _frame(body: bytes) -> bytes:
    head = b"8=FIX.4.4\x019=%d\x01" % len(body)
    frame = head + body
    return frame + b"10=%03d\x01" % (sum(frame) & 0xFF)


def _ts(now: float) -> bytes:
    return time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(now)).encode() + b".%03d" % int((now % 1) * 1000)


async def _client(host: str, port: int, comp_id: str, seconds: float, warmup: float, window: int,
                  out: dict) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sender = comp_id.encode()
    writer.write(_frame(b"35=A\x0134=1\x0149=%s\x0152=%s\x0156=BENCH\x0198=0\x01108=30\x01141=Y\x01"
                        % (sender, _ts(time.time()))))
    buf = b""
    while b"\x0110=" not in buf:
        chunk = await reader.read(65536)
        if not chunk:
            raise RuntimeError(f"{comp_id}: logon refused")
        buf += chunk
    seq = 2
    sent_at: list[float] = []
    head = 0
    latencies: list[float] = []
    count = 0
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + seconds
    measured = 0

    def orders(k: int) -> bytes:
        nonlocal seq
        now = time.time()
        ts = _ts(now)
        parts = []
        for _ in range(k):
            parts.append(_frame(
                b"35=D\x0134=%d\x0149=%s\x0152=%s\x0156=BENCH\x0111=C%d\x0121=1\x0138=100\x0140=2\x01"
                b"44=10.5\x0154=1\x0155=INTC\x0160=%s\x01" % (seq, sender, ts, seq, ts)))
            seq += 1
        return b"".join(parts)

    t = time.perf_counter()
    writer.write(orders(window))
    sent_at.extend([t] * window)
    tail = b""
    while True:
        chunk = await reader.read(1 << 18)
        if not chunk:
            raise RuntimeError(f"{comp_id}: disconnected")
        now = time.perf_counter()
        k = (tail + chunk).count(b"\x0110=")
        tail = chunk[-3:]
        if not k:
            continue
        count += k
        if now >= measure_from:
            measured += k
            lat = [now - s for s in sent_at[head:head + k]]
            latencies.extend(lat)
        head += k
        if head > 100_000:
            del sent_at[:head]
            head = 0
        if now >= stop_at:
            break
        t = time.perf_counter()
        writer.write(orders(k))
        sent_at.extend([t] * k)
    out["measured"] = out.get("measured", 0) + measured
    out["total"] = out.get("total", 0) + count
    out.setdefault("latencies", []).extend(latencies)
    writer.close()


def _client_process(host: str, port: int, clients: int, seconds: float, warmup: float, window: int,
                    result_q) -> None:
    async def main() -> dict:
        out: dict = {}
        await asyncio.gather(*[
            _client(host, port, f"BC{i}", seconds, warmup, window, out) for i in range(clients)
        ])
        return out

    try:
        cpu0 = time.process_time()
        out = asyncio.run(main())
        client_cpu = time.process_time() - cpu0
        lat = sorted(out.get("latencies", []))
        n = len(lat)
        result_q.put({
            "round_trips": out.get("measured", 0),
            "round_trips_total": out.get("total", 0),
            "client_cpu_us_per_round_trip": client_cpu / max(1, out.get("total", 0)) * 1e6,
            "p50_ms": lat[n // 2] * 1000 if n else None,
            "p99_ms": lat[min(n - 1, int(n * 0.99))] * 1000 if n else None,
        })
    except Exception as exc:  # pragma: no cover - reported to the parent
        result_q.put({"error": repr(exc)})


async def _run(clients: int, seconds: float, warmup: float, window: int, data_dir: Path, file_log: bool,
               database_url: str | None) -> dict:
    from fix.acceptor import Acceptor
    from fix.dictionary import DataDictionary
    from fix.log import log_factory
    from fix.session import SessionConfig
    from sessions.echo import EchoApplication
    from tools.cmd_certify import DEFAULT_DICTIONARY
    from venue.db import make_engine, sqlite_url

    def lookup(begin: str, ours: str, theirs: str) -> SessionConfig | None:
        if ours == "BENCH" and theirs.startswith("BC"):
            return SessionConfig(sender_comp_id="BENCH", target_comp_id=theirs)
        return None

    schema = None
    if database_url and database_url.startswith("postgresql"):
        # a scratch schema, dropped afterwards, so the benchmark never touches existing tables
        import uuid

        import asyncpg

        schema = f"bench_session_{uuid.uuid4().hex[:10]}"
        conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.close()
        engine = make_engine(database_url, connect_args={"server_settings": {"search_path": schema}})
    else:
        engine = make_engine(database_url or sqlite_url(data_dir))
    acceptor = Acceptor(lookup, EchoApplication(), engine, dictionary=DataDictionary.load(DEFAULT_DICTIONARY),
                        log_factory=log_factory(data_dir / "fixlog" if file_log else None))
    port = await acceptor.start("127.0.0.1", 0)
    ctx = mp.get_context("spawn")
    result_q = ctx.Queue()
    proc = ctx.Process(target=_client_process, args=("127.0.0.1", port, clients, seconds, warmup, window, result_q))
    cpu0 = time.process_time()
    proc.start()
    loop = asyncio.get_running_loop()
    try:
        result = await loop.run_in_executor(None, result_q.get, True, warmup + seconds + 60)
        cpu = time.process_time() - cpu0
    finally:
        proc.join(timeout=10)
        batches = acceptor.batches
        await acceptor.stop(timeout=1.0)
        stored = await _count_stored(engine)
        await engine.dispose()
        if schema is not None:
            import asyncpg

            conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await conn.close()
    if "error" in result:
        raise click.ClickException(result["error"])
    result.update({
        "clients": clients, "window": window, "seconds": seconds,
        "round_trips_per_s": result["round_trips"] / seconds,
        "db_commits": batches, "stored_messages": stored,
        "server_cpu_us_per_round_trip": cpu / max(1, result.get("round_trips_total", 0)) * 1e6,
        "database": engine.dialect.name, "file_log": file_log,
    })
    return result


async def _count_stored(engine) -> int:
    from sqlalchemy import func, select

    from fix.store import outbound_messages

    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(outbound_messages))).scalar_one())


def _reference_loop_ms() -> float:
    """CPU time of a fixed pure-Python loop: how fast this (shared) machine runs Python right now."""
    best = float("inf")
    for _ in range(3):
        t = time.process_time()
        sum(range(10**7))
        best = min(best, time.process_time() - t)
    return best * 1000


@click.command("session")
@click.option("--clients", default=4, show_default=True, help="FIX sessions driving load.")
@click.option("--window", default=1000, show_default=True,
              help="Orders in flight per session (latency then includes queueing behind them; "
                   "--clients 1 --window 1 measures an unloaded round trip).")
@click.option("--seconds", default=5.0, show_default=True, help="Measured duration.")
@click.option("--warmup", default=1.0, show_default=True)
@click.option("--no-file-log", is_flag=True, help="Skip the per-session message log files.")
@click.option("--database-url", default=None, help="Default: a SQLite file in a temporary directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def command(clients: int, window: int, seconds: float, warmup: float, no_file_log: bool,
            database_url: str | None, as_json: bool) -> None:
    """FIX session round trips (NewOrderSingle -> echo) with the store on the database."""
    ref = _reference_loop_ms()
    with tempfile.TemporaryDirectory(prefix="venue-bench-session-") as tmp:
        result = asyncio.run(_run(clients, seconds, warmup, window, Path(tmp), not no_file_log, database_url))
    result["reference_loop_ms"] = ref
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"sessions: {clients} x window {window}, {seconds:g} s measured, store: {result['database']}, "
               f"file log: {'on' if result['file_log'] else 'off'}")
    click.echo(f"round trips: {result['round_trips']} ({result['round_trips_per_s']:,.0f}/s)")
    click.echo(f"latency p50: {result['p50_ms']:.2f} ms   p99: {result['p99_ms']:.2f} ms "
               f"(includes queueing behind {clients * window} orders in flight)")
    click.echo(f"DB commits: {result['db_commits']}, messages stored: {result['stored_messages']}")
    click.echo(f"machine speed now: reference loop {ref:.0f} ms of CPU (sum(range(10**7)); lower is faster)")
    click.echo(f"CPU per round trip: acceptor {result['server_cpu_us_per_round_trip']:.1f} us "
               f"(one free core would carry ~{1e6 / result['server_cpu_us_per_round_trip']:,.0f}/s), "
               f"load clients {result['client_cpu_us_per_round_trip']:.1f} us")
