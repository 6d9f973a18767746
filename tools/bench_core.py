"""``venue bench core``: throughput and per-operation latency of the matching core.

The workload (one instrument, 100 accounts): 60 % passive GTC limit orders (1..100 lots) 1..10
ticks behind the touch, 25 % cancels of random resting orders, 15 % IOC limit orders (1..300 lots)
0..2 ticks through the touch, which take about three resting orders each, so the book grows only
slowly (about 2,400 resting orders after 100,000 operations, 17,000 after 1,000,000, in ~30 price
levels). Commands are generated once by driving a core (untimed), then replayed into fresh cores:
one run timed as a whole (throughput), one with a clock read around every ``process`` call
(latency percentiles). Events (including per-level ``BookLevel``) are produced as in production.
"""

from __future__ import annotations

import gc
import json
import os
import random
import time
from decimal import Decimal

import click

import venue.core.engine as engine
from venue.core.commands import CancelOrder, NewOrder
from venue.core.engine import Core
from venue.core.events import OrderAccepted, OrderCancelled, OrderExpired, OrderFilled
from venue.core.instruments import Instrument
from venue.core.types import Side, TimeInForce

SYMBOL = "BTC-USD"
MID = 1_000_000


def bench_instrument() -> Instrument:
    return Instrument(SYMBOL, "BTC", "USD", Decimal("0.01"), Decimal("0.0001"), max_qty=10**9)


def generate(n: int, seed: int = 1, accounts: int = 100) -> list:
    """``n`` commands of the benchmark mix (deterministic for a seed)."""
    rnd = random.Random(seed)
    core = Core([bench_instrument()])
    live: list[int] = []
    where: dict[int, int] = {}
    owner: dict[int, str] = {}

    def drop(oid: int) -> None:
        i = where.pop(oid, None)
        if i is None:
            return
        last = live.pop()
        if last != oid:
            live[i] = last
            where[last] = i

    cmds = []
    book = core.book(SYMBOL)
    for i in range(n):
        ts = i + 1
        r = rnd.random()
        acct = f"A{rnd.randrange(accounts)}"
        if r < 0.25 and live:
            oid = live[rnd.randrange(len(live))]
            cmd = CancelOrder(ts, owner[oid], SYMBOL, f"x{i}", order_id=oid)
        else:
            side = Side.BUY if rnd.random() < 0.5 else Side.SELL
            bid = book.best_bid or MID - 1
            ask = book.best_ask or MID + 1
            if r < 0.85 or not live:  # passive, near the touch
                price = ask - rnd.randint(1, 10) if side is Side.BUY else bid + rnd.randint(1, 10)
                cmd = NewOrder(ts, acct, SYMBOL, f"c{i}", side, rnd.randint(1, 100), price=price)
            else:  # crossing, IOC: takes ~2 resting orders, so the book keeps a steady size
                price = ask + rnd.randint(0, 2) if side is Side.BUY else bid - rnd.randint(0, 2)
                cmd = NewOrder(ts, acct, SYMBOL, f"c{i}", side, rnd.randint(1, 300), price=price,
                               tif=TimeInForce.IOC)
        cmds.append(cmd)
        for e in core.process(cmd):
            t = type(e)
            if t is OrderAccepted:
                if core.order(e.order_id) is not None:
                    live.append(e.order_id)
                    where[e.order_id] = len(live) - 1
                    owner[e.order_id] = e.account
            elif (t is OrderFilled and e.leaves_qty == 0) or t is OrderCancelled or t is OrderExpired:
                drop(e.order_id)
                owner.pop(e.order_id, None)
    return cmds


def bare_book_seconds(cmds: list) -> float:
    """Calibration: the same stream through a bare book (deques in a SortedDict per side, lazy
    cancel, no validation, no events, no STP); CPU seconds."""
    from collections import deque

    from sortedcontainers import SortedDict

    bids, asks = SortedDict(), SortedDict()
    live: dict[int, list] = {}
    next_id = 1
    c0 = time.process_time()
    for cmd in cmds:
        if type(cmd) is CancelOrder:
            o = live.pop(cmd.order_id, None)
            if o is not None:
                o[3] = 0
            continue
        buy = cmd.side is Side.BUY
        qty, price = cmd.qty, cmd.price
        book = asks if buy else bids
        while qty and book:
            best = book.keys()[0] if buy else book.keys()[-1]
            if (best > price) if buy else (best < price):
                break
            q = book[best]
            while q and qty:
                m = q[0]
                if m[3] == 0:
                    q.popleft()
                    continue
                take = min(qty, m[3])
                m[3] -= take
                qty -= take
                if m[3] == 0:
                    q.popleft()
                    live.pop(m[0], None)
            if not q:
                del book[best]
        if qty and cmd.tif is not TimeInForce.IOC:
            o = [next_id, cmd.account, price, qty]
            live[next_id] = o
            side = bids if buy else asks
            q = side.get(price)
            if q is None:
                q = side[price] = deque()
            q.append(o)
        next_id += 1
    return time.process_time() - c0


def run(n: int, seed: int = 1, gc_threshold: int | None = None) -> dict:
    cmds = generate(n, seed)
    gc.collect()
    gc.freeze()  # the pre-generated input is not the system under test: keep it out of GC scans
    if gc_threshold is not None:
        gc.set_threshold(gc_threshold, 50, 100)
    # throughput: the whole stream through a fresh core
    core = Core([bench_instrument()])
    process = core.process
    t0 = time.perf_counter_ns()
    c0 = time.process_time_ns()
    for cmd in cmds:
        process(cmd)
    wall = time.perf_counter_ns() - t0
    cpu = time.process_time_ns() - c0
    events = core.seq  # every event is numbered: the count without a len() per call in the timed loop
    # latency: a clock read around every operation, on another fresh core
    core = Core([bench_instrument()])
    process = core.process
    clock = time.perf_counter_ns
    lat = [0] * n
    for i, cmd in enumerate(cmds):
        t = clock()
        process(cmd)
        lat[i] = clock() - t
    bare_cpu = bare_book_seconds(cmds)
    by_kind: dict[str, list[int]] = {"passive": [], "cancel": [], "crossing": []}
    for cmd, ns in zip(cmds, lat, strict=True):
        kind = "cancel" if type(cmd) is CancelOrder else "crossing" if cmd.tif is TimeInForce.IOC else "passive"
        by_kind[kind].append(ns)
    lat.sort()

    def pct(p: float) -> float:
        return lat[min(n - 1, int(n * p))] / 1000

    def kind_stats(v: list[int]) -> dict:
        v.sort()
        return {"count": len(v), "p50_us": v[len(v) // 2] / 1000, "p99_us": v[min(len(v) - 1, int(len(v) * 0.99))] / 1000}

    kinds = {k: kind_stats(v) for k, v in by_kind.items() if v}
    return {
        "operations": n,
        "events": events,
        "seconds": wall / 1e9,
        "ops_per_s": round(n / (wall / 1e9)),
        "ops_per_cpu_s": round(n / (cpu / 1e9)),
        "bare_book_ops_per_cpu_s": round(n / bare_cpu),
        "events_per_s": round(events / (wall / 1e9)),
        "p50_us": pct(0.50),
        "p90_us": pct(0.90),
        "p99_us": pct(0.99),
        "p999_us": pct(0.999),
        "max_us": lat[-1] / 1000,
        "mix": kinds,
        "resting_at_end": len(core.open_orders()),
        "loadavg_1m": os.getloadavg()[0],
        "core_module": os.path.basename(engine.__file__),
        "gc_threshold": gc.get_threshold()[0],
    }


@click.command("core")
@click.option("--orders", "n", default=1_000_000, show_default=True, help="number of operations")
@click.option("--seed", default=1, show_default=True)
@click.option("--gc-threshold", type=int, default=None,
              help="generation-0 GC threshold for the run (default: Python's, 700)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def command(n: int, seed: int, gc_threshold: int | None, as_json: bool) -> None:
    """Matching-core throughput and latency (60% passive, 25% cancel, 15% crossing)."""
    res = run(n, seed, gc_threshold)
    if as_json:
        click.echo(json.dumps(res))
        return
    mix = ", ".join(f"{v['count']:,} {k}" for k, v in res["mix"].items())
    click.echo(f"operations     {res['operations']:,} ({mix})")
    click.echo(f"events         {res['events']:,}")
    click.echo(f"throughput     {res['ops_per_s']:,} ops/s wall ({res['events_per_s']:,} events/s); "
               f"{res['ops_per_cpu_s']:,} ops per CPU-second")
    click.echo(f"calibration    a bare book (deques in a SortedDict, no events) does {res['bare_book_ops_per_cpu_s']:,} "
               "ops per CPU-second on the same stream")
    click.echo(f"latency (us)   p50 {res['p50_us']:.2f}  p90 {res['p90_us']:.2f}  p99 {res['p99_us']:.2f}  "
               f"p99.9 {res['p999_us']:.2f}  max {res['max_us']:.0f}")
    for k, v in res["mix"].items():
        click.echo(f"  {k:<12} p50 {v['p50_us']:.2f}  p99 {v['p99_us']:.2f} us")
    click.echo(f"resting orders {res['resting_at_end']:,}   (load average during the run: {res['loadavg_1m']:.1f}; "
               f"core {res['core_module']})")
