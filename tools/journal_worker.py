"""A small process that runs random commands through Core + Journal in batches (crash tests).

``python -m tools.journal_worker URL --seed S --batches N --batch-size B``: after each batch is
committed it prints ``ACK <cmd_count> <last_seq>`` and flushes stdout, so a parent that kills it can
check that everything acknowledged survives. ``random_commands`` is also the random workload of the
determinism tests.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from collections.abc import Iterator
from decimal import Decimal

from venue.core.commands import (
    CancelOrder,
    EndOfSession,
    MassCancel,
    NewOrder,
    ReplaceOrder,
    SetAccountStp,
    SetKillSwitch,
    SetTradingStatus,
    Tick,
)
from venue.core.engine import Core
from venue.core.instruments import Instrument
from venue.core.types import OrdType, Side, StpMode, TimeInForce, TradingStatus

SYMBOLS = ("BTC-USD", "ETH-USD")


def worker_instruments() -> list[Instrument]:
    return [
        Instrument("BTC-USD", "BTC", "USD", Decimal("0.5"), Decimal("0.001"), max_qty=500,
                   min_notional=Decimal("0.001"), band_bps=500, ref_price=1000),
        Instrument("ETH-USD", "ETH", "USD", Decimal("0.01"), Decimal("0.01"), max_qty=500, band_bps=1000,
                   ref_price=500),
    ]


def random_commands(seed: int, n: int | None = None, accounts: int = 4) -> Iterator:
    """A reproducible stream of every command type (``n`` None: endless)."""
    rnd = random.Random(seed)
    accts = [f"acct{i}" for i in range(accounts)]
    clids: dict[str, list[str]] = {a: [] for a in accts}
    mid = {"BTC-USD": 1000, "ETH-USD": 500}
    i = 0
    ts = 1_000_000_000
    while n is None or i < n:
        i += 1
        ts += rnd.randint(1, 1000)
        acct = rnd.choice(accts)
        sym = rnd.choice(SYMBOLS)
        r = rnd.random()
        if r < 0.55:
            side = rnd.choice((Side.BUY, Side.SELL))
            m = mid[sym] = max(50, mid[sym] + rnd.randint(-2, 2))
            kind = rnd.random()
            qty = rnd.randint(1, 30) if rnd.random() < 0.97 else rnd.choice((0, 600))
            price = m + rnd.randint(-15, 15)
            kw: dict = {}
            if kind < 0.70:
                kw = {"ord_type": OrdType.LIMIT, "price": price}
                if rnd.random() < 0.1:
                    kw["display_qty"] = rnd.randint(1, qty) if qty > 0 else 1
                if rnd.random() < 0.1:
                    kw["post_only"] = True
            elif kind < 0.80:
                kw = {"ord_type": OrdType.MARKET}
            elif kind < 0.90:
                kw = {"ord_type": OrdType.STOP, "stop_price": price}
            else:
                kw = {"ord_type": OrdType.STOP_LIMIT, "stop_price": price,
                      "price": price + rnd.randint(-3, 3)}
            tif = rnd.choices((TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY,
                               TimeInForce.GTD), weights=(50, 12, 8, 15, 15))[0]
            if kw.get("post_only") or kw.get("display_qty"):
                tif = TimeInForce.GTC
            if tif is TimeInForce.GTD:
                kw["expire_at"] = ts + rnd.randint(1, 200_000)
            if rnd.random() < 0.3:
                kw["stp"] = rnd.choice(list(StpMode))
            cl = f"{acct}-{i}"
            clids[acct].append(cl)
            if len(clids[acct]) > 300:
                del clids[acct][:100]
            yield NewOrder(ts, acct, sym, cl, side, qty, tif=tif, session=f"s-{acct}", **kw)
        elif r < 0.75:
            orig = rnd.choice(clids[acct][-10:]) if clids[acct] else "none"
            if rnd.random() < 0.8:
                yield CancelOrder(ts, acct, sym if rnd.random() < 0.2 else "", f"x{i}", orig_cl_ord_id=orig,
                                  session=f"s-{acct}")
            else:
                yield CancelOrder(ts, acct, "", f"x{i}", order_id=rnd.randint(1, max(1, i // 2)))
        elif r < 0.90:
            orig = rnd.choice(clids[acct][-10:]) if clids[acct] else "none"
            cl = f"{acct}-r{i}"
            clids[acct].append(cl)
            price = None if rnd.random() < 0.3 else mid[sym] + rnd.randint(-15, 15)
            yield ReplaceOrder(ts, acct, "", cl, rnd.randint(1, 30), price=price, orig_cl_ord_id=orig,
                               session=f"s-{acct}")
        elif r < 0.93:
            yield Tick(ts)
        elif r < 0.95:
            yield MassCancel(ts, f"m{i}", account=acct if rnd.random() < 0.7 else None,
                             instrument=rnd.choice((None, sym)), side=rnd.choice((None, Side.BUY, Side.SELL)),
                             session_filter=rnd.choice((None, f"s-{acct}")), spare_gtc=rnd.random() < 0.3)
        elif r < 0.955:
            yield SetKillSwitch(ts, acct, rnd.random() < 0.25)
        elif r < 0.97:
            yield SetAccountStp(ts, acct, rnd.choice(list(StpMode)))
        elif r < 0.975:
            yield SetTradingStatus(ts, sym, rnd.choices(list(TradingStatus), weights=(6, 2, 1))[0])
        elif r < 0.98:
            yield EndOfSession(ts, rnd.choice((None, sym)))
        else:
            yield SetTradingStatus(ts, sym, TradingStatus.OPEN)


async def run(url: str, seed: int, batches: int, batch_size: int, schema: str | None = None) -> None:
    from venue.db import make_engine
    from venue.journal import Journal

    kw = {"connect_args": {"server_settings": {"search_path": schema}}} if schema else {}
    engine = make_engine(url, **kw)
    journal = await Journal.open(engine)
    core = Core(worker_instruments())
    stream = random_commands(seed)
    for _ in range(batches):
        cmds = [next(stream) for _ in range(batch_size)]
        events = core.process_batch(cmds)
        async with engine.begin() as conn:
            await journal.write(conn, cmds, events)
        sys.stdout.write(f"ACK {core.cmd_count} {core.seq}\n")
        sys.stdout.flush()
    await engine.dispose()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("url")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--batches", type=int, default=1_000_000)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--schema", help="PostgreSQL schema (search_path)")
    a = p.parse_args(argv)
    asyncio.run(run(a.url, a.seed, a.batches, a.batch_size, a.schema))


if __name__ == "__main__":
    main()
