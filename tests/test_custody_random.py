"""Randomized: many concurrent deposits, trades and withdrawals (some failing at broadcast); then
the ledger, the wallets and the chain agree to the last unit."""

from __future__ import annotations

import asyncio
import random

import pytest

from tests.access_db import BACKENDS, database, engine_for
from tests.custody_env import BTC, CUSTOMERS, EXTERNAL, T0, make_env
from venue.core.commands import MassCancel, NewOrder
from venue.core.types import Side
from venue.custody.policy import NS
from venue.custody.workflow import Refused

USDT = 10**6


async def scenario(env, seed: int, steps: int) -> None:
    rng = random.Random(seed)
    now = [T0]
    deposited = {"BTC": 0, "USDT": 0}
    cl = iter(range(1, 10**6))

    def tick() -> int:
        now[0] += rng.randint(1, 5) * NS
        return now[0]

    async def depositor():
        for _ in range(steps):
            asset = rng.choice(("BTC", "USDT"))
            amount = rng.randint(1, 3 * BTC) if asset == "BTC" else rng.randint(1, 40_000 * USDT)
            await env.chain.send_external("outside", await env.custody.deposit_address(asset), asset, amount,
                                          rng.choice(CUSTOMERS))
            deposited[asset] += amount
            await asyncio.sleep(0)

    async def trader():
        for _ in range(steps * 2):
            acc = rng.choice(CUSTOMERS)
            side = rng.choice((Side.BUY, Side.SELL))
            # price 100.00-101.00 USDT in ticks of 0.01; qty in lots of 0.0001 BTC
            env.core.process(NewOrder(tick(), acc, "BTC-USDT", f"c{next(cl)}", side, rng.randint(1, 5000),
                                      price=rng.randint(10_000, 10_100)))
            await asyncio.sleep(0)

    async def withdrawer():
        for i in range(steps):
            acc = rng.choice(CUSTOMERS)
            asset = rng.choice(("BTC", "USDT"))
            avail = env.ledger.available(acc, asset)
            overdraw = i == 0 or rng.random() < 0.2
            amount = avail + rng.randint(1, 100) if overdraw else rng.randint(1, max(1, avail))
            t = tick()
            try:
                view = await env.custody.request_withdrawal(env.request(acc, amount, asset, now=t), t)
            except Refused:
                continue
            if view.state == "pending_approval":
                for op in rng.sample(("op1", "op2", "op3"), 2):
                    await env.custody.decide(await env.approval(op, view.id, now=t), t)

    async def network():
        for _ in range(steps):
            if rng.random() < 0.15:
                await env.chain.inject_faults(reject=rng.randint(0, 2), drop=rng.randint(0, 1))
            await env.chain.mine(rng.randint(0, 2))
            await env.custody.process(tick())

    for acc in CUSTOMERS:  # opening balances so trading starts at once
        for asset, amount in (("BTC", 5 * BTC), ("USDT", 50_000 * USDT)):
            await env.deposit(acc, amount, asset, now=tick())
            deposited[asset] += amount
    await env.chain.inject_faults(reject=1, drop=1)
    await asyncio.gather(depositor(), trader(), withdrawer(), network())
    for acc in CUSTOMERS:
        env.core.process(MassCancel(tick(), account=acc))
    await env.chain.inject_faults()
    for _ in range(20):
        await env.chain.mine(1)
        t = tick()
        await env.custody.process(t)
        still = await env.custody.list(open_only=True)
        if not still:
            break
        for v in still:  # top-ups proposed at low water get their quorum
            if v.state == "pending_approval" and v.kind == "topup":
                for op in ("op1", "op2", "op3"):
                    await env.custody.decide(await env.approval(op, v.id, now=t), t)
    return deposited


def check_agreement(env, deposited, views, statuses, external) -> None:
    ledger = env.ledger
    ledger.check_invariants(env.core.open_orders())
    assert ledger.holds == {}
    for st in statuses:
        a = st.asset
        assert st.in_flight == 0 and st.breaches == []
        assert st.book == st.chain  # every wallet's book equals the chain
        assert st.holdings == ledger.net_deposits(a)  # the wallets hold exactly the net deposits
        assert st.owed <= st.holdings
        paid = sum(v.amount for v in views if v.kind == "withdrawal" and v.asset == a and v.state == "confirmed")
        assert paid == ledger.balance("@external", a)[0] + deposited[a]  # @external = withdrawn - deposited
        assert external[a] == paid  # the chain shows exactly what was paid out


@pytest.mark.parametrize(("backend", "seed"), [(b, s) for s, b in enumerate(BACKENDS, 1)])
@pytest.mark.slow
def test_concurrent_deposits_trades_and_failing_withdrawals_leave_ledger_wallets_and_chain_in_agreement(
        backend, seed, tmp_path):
    with database(backend, tmp_path) as url:
        async def main():
            engine = engine_for(url)
            try:
                env = await make_env(engine, tiers={"A1": 2, "A2": 2, "A3": 2})
                deposited = await scenario(env, seed, steps=15)
                views = await env.custody.list()
                assert all(v.state in ("confirmed", "rejected", "failed", "expired", "cancelled") for v in views)
                kinds = {v.state for v in views if v.kind == "withdrawal"}
                assert "confirmed" in kinds and "rejected" in kinds
                assert any(v.attempts > 0 for v in views), "no broadcast failed: the scenario is too tame"
                for v in views:
                    if v.kind == "withdrawal" and v.funds != "none":
                        assert v.funds == ("consumed" if v.state == "confirmed" else "released")
                external = {a: await env.chain.balance(EXTERNAL, a) for a in ("BTC", "USDT")}
                check_agreement(env, deposited, views, await env.custody.status(), external)
                assert sum(env.ledger.balance("@fees", "USDT")) > 0, "no trade happened"
            finally:
                await engine.dispose()

        asyncio.run(main())
