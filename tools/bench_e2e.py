"""``venue bench e2e``: the whole venue measured from outside, by its own load generator.

Each run starts a real ``venue serve`` (a child process) on a fresh data directory, prepared
beforehand with ``--sessions`` signed order-entry sessions LG1, LG2, ... (each with its own
account of the demo firm, KYC tier 3, funded by the demo deposits of a first start, and a throttle
well above the load: the throttle is still on the path, it just never bites), then drives them
with ``venue loadgen``'s flow: closed loop (``--window`` in flight per session) or open loop
(``--rate`` per second in all). Prints orders acknowledged per second, acknowledgement latency
p50/p99/p99.9, the venue's CPU per order (``/proc/<pid>/stat`` of the venue process, all its
threads) and the generator's own CPU, per run and the median of ``--runs``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import click

from tools.loadgen import (
    Flow,
    LoadError,
    SessionSpec,
    flow_options,
    load_session_spec,
    make_flow,
    print_figures,
    run_with_progress,
)

ROOT = Path(__file__).resolve().parent.parent
KEYS = "loadgen-keys"


def session_names(n: int) -> list[str]:
    return [f"LG{i}" for i in range(1, n + 1)]


async def prepare(data_dir: Path, n: int, flow: Flow) -> None:
    """Seed the demo set-up and ``n`` load sessions into a new data directory (before the venue
    starts, so its first start funds their accounts with the demo deposits)."""
    from venue import registry
    from venue.access import signing
    from venue.db import make_engine, sqlite_url
    from venue.demo import DEMO_FIRM, seed_demo

    data_dir.mkdir(parents=True, exist_ok=True)
    keys = data_dir / KEYS
    keys.mkdir(exist_ok=True)
    rate = max(100_000.0, 4 * (flow.rate or 0.0))
    burst = max(10_000, 10 * flow.window)
    engine = make_engine(sqlite_url(data_dir))
    try:
        await seed_demo(engine, data_dir)
        async with engine.begin() as conn:
            for sender in session_names(n):
                account = f"{sender}-ACC"
                await registry.create_account(conn, account, DEMO_FIRM, kyc_status="verified", tier=3,
                                              kyc_expires=date(2099, 12, 31))
                await registry.create_session(conn, sender, firm_id=DEMO_FIRM, entitled_accounts=[account],
                                              throttle_rate=rate, throttle_burst=burst, cancel_on_disconnect=True)
                key = signing.generate_key()
                key_id = signing.key_id_for(key.public_key())
                pem = keys / f"{sender}.pem"
                pem.write_bytes(signing.private_key_pem(key))
                pem.chmod(0o600)
                (keys / f"{sender}.keyid").write_text(key_id + "\n")
                await registry.add_session_key(conn, sender, key_id, signing.public_key_b64(key.public_key()))
    finally:
        await engine.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Venue:
    """``venue serve`` as a child process on a free port."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir, self.port = data_dir, free_port()
        self.output: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "serve", "--data-dir", str(data_dir), "--port", str(self.port)],
            cwd=ROOT, env={**os.environ, "VENUE_FIX_LOGOUT_TIMEOUT": "1"}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        ready = threading.Event()

        def pump() -> None:
            for line in self.proc.stdout:
                if len(self.output) < 2000:
                    self.output.append(line)
                if "venue listening on" in line:
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + 90
        while not ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise LoadError("the venue did not start:\n" + "".join(self.output[-30:]))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def run_once(n_sessions: int, flow: Flow, *, show: bool, label: str, keep: Path | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="venue-bench-e2e-") as tmp:
        data_dir = (keep or Path(tmp)) / "data"
        asyncio.run(prepare(data_dir, n_sessions, flow))
        venue = Venue(data_dir)
        try:
            specs: list[SessionSpec] = [
                load_session_spec(s, data_dir / KEYS, "buy" if i % 2 == 0 else "sell")
                for i, s in enumerate(session_names(n_sessions))]
            result = run_with_progress("127.0.0.1", venue.port, specs, flow, venue_pid=venue.pid, show=show,
                                       label=label)
            result["venue_pid"] = venue.pid
        finally:
            venue.stop()
    return result


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(values: list[Any]) -> Any:
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    keys = ("orders_per_s", "venue_cpu_us_per_order", "venue_cpu_pct", "generator_cpu_us_per_order",
            "generator_cpu_pct", "rejected", "unacked", "max_behind_ms")
    out: dict[str, Any] = {k: med([r[k] for r in runs]) for k in keys}
    out["latency_ms"] = {q: med([r["latency_ms"][q] for r in runs]) for q in ("p50", "p99", "p999", "max", "mean")}
    return out


@click.command("e2e")
@click.option("--sessions", "n_sessions", default=2, show_default=True,
              help="Order-entry sessions (odd ones buy, even ones sell, all at one price).")
@click.option("--runs", default=1, show_default=True, help="Runs, each on a fresh venue; the median is printed.")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the (last) run's data directory here instead of a temporary one.")
@flow_options
def command(n_sessions: int, runs: int, keep: Path | None, as_json: bool, **flow_kw: Any) -> None:
    """Start a venue, drive it with the load generator, print orders/s, latency and CPU per order."""
    if n_sessions < 1 or runs < 1:
        raise LoadError("--sessions and --runs must be at least 1")
    if keep is not None and (keep / "data").exists():
        raise LoadError(f"--keep {keep}: {keep / 'data'} exists already (each run needs a fresh data directory)")
    flow = make_flow(**flow_kw)
    results = []
    for i in range(runs):
        r = run_once(n_sessions, flow, show=not as_json, label=f"run {i + 1}/{runs}",
                     keep=keep if i == runs - 1 else None)
        results.append(r)
        if not as_json:
            click.echo(f"-- run {i + 1}/{runs}")
            print_figures(r)
    med = median_of(results)
    if as_json:
        click.echo(json.dumps({"runs": results, "median": med, "cpus": os.cpu_count()}, indent=2))
    elif runs > 1:
        lat = med["latency_ms"]
        click.echo(f"-- median of {runs}: {med['orders_per_s']:,.0f} orders/s, p50 {lat['p50']:.2f} ms, "
                   f"p99 {lat['p99']:.2f} ms, p99.9 {lat['p999']:.2f} ms, venue CPU "
                   f"{med['venue_cpu_us_per_order']:.1f} us/order, generator CPU "
                   f"{med['generator_cpu_us_per_order']:.1f} us/order ({med['generator_cpu_pct']:.0f} % of a core)")
    bad = [r for r in results if r["unacked"] or r["disconnected"] or r["rejected"]]
    if bad:
        r = bad[0]
        raise LoadError(f"a run was not clean: {r['unacked']} unacknowledged, {r['rejected']} rejected "
                        f"(first: {r['first_reject']!r}), disconnected: {r['disconnected']}")
