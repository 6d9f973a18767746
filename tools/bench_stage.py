"""``venue bench stage``: the matching core with the risk/ledger stage as its hooks, against the bare
core, on the workload of ``venue bench core`` (60 % passive, 25 % cancel, 15 % crossing; one
instrument, 100 accounts, each funded by a journaled Deposit before the timed run).

Every accepted order is risk-checked and reserved, every trade settled with fees, every cancel
released, and each produces its LedgerEntry event. The ledger invariants are checked (untimed)
after the run.
"""

from __future__ import annotations

import gc
import json
import time

import click

from tools.bench_core import SYMBOL, bench_instrument, generate
from venue.core.assets import Asset, Assets
from venue.core.commands import Deposit
from venue.core.engine import Core
from venue.core.fees import FeeSchedule
from venue.core.risk import AccountRisk
from venue.core.stage import RiskLedgerStage

ACCOUNTS = 100


def _venue(with_stage: bool) -> tuple[Core, RiskLedgerStage | None]:
    if not with_stage:
        return Core([bench_instrument()]), None
    assets = Assets([Asset("BTC", 8), Asset("USD", 6)])
    stage = RiskLedgerStage({f"A{i}": AccountRisk(f"A{i}") for i in range(ACCOUNTS)}, assets, FeeSchedule())
    core = Core([bench_instrument()], hooks=stage)
    for i in range(ACCOUNTS):
        core.process(Deposit(0, f"A{i}", "USD", 10**18, "bench"))
        core.process(Deposit(0, f"A{i}", "BTC", 10**18, "bench"))
    return core, stage


def _time(cmds: list, with_stage: bool) -> tuple[float, int, list[int]]:
    core, stage = _venue(with_stage)
    gc.collect()
    process = core.process
    t0 = time.perf_counter_ns()
    events = 0
    for cmd in cmds:
        events += len(process(cmd))
    wall = time.perf_counter_ns() - t0
    if stage is not None:
        stage.check_invariants(core.open_orders())
    core, _ = _venue(with_stage)
    process = core.process
    clock = time.perf_counter_ns
    lat = [0] * len(cmds)
    for i, cmd in enumerate(cmds):
        t = clock()
        process(cmd)
        lat[i] = clock() - t
    lat.sort()
    return wall / 1e9, events, lat


def run(n: int, seed: int = 1) -> dict:
    cmds = generate(n, seed, ACCOUNTS)
    out: dict = {"operations": n, "instrument": SYMBOL}
    for name, with_stage in (("bare", False), ("stage", True)):
        secs, events, lat = _time(cmds, with_stage)
        out[name] = {
            "ops_per_s": round(n / secs),
            "events": events,
            "p50_us": lat[n // 2] / 1000,
            "p99_us": lat[min(n - 1, int(n * 0.99))] / 1000,
        }
    out["overhead"] = round(out["bare"]["ops_per_s"] / out["stage"]["ops_per_s"], 2)
    return out


@click.command("stage")
@click.option("--orders", "n", default=200_000, show_default=True, help="number of operations")
@click.option("--seed", default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def command(n: int, seed: int, as_json: bool) -> None:
    """Core + risk/ledger stage throughput and latency, against the bare core."""
    res = run(n, seed)
    if as_json:
        click.echo(json.dumps(res))
        return
    click.echo(f"operations      {n:,} on {SYMBOL}")
    for name in ("bare", "stage"):
        r = res[name]
        click.echo(f"{name:<6} core     {r['ops_per_s']:>9,} ops/s  {r['events']:>9,} events  "
                   f"p50 {r['p50_us']:.2f} us  p99 {r['p99_us']:.2f} us")
    click.echo(f"stage overhead  x{res['overhead']}")
