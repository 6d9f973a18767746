"""Property tests: random trading across several accounts and instruments through the real Core
(venue/core/engine.pyx) with the RiskLedgerStage as its hooks, and the same through the reference
MiniCore. After every command: the ledger balances (every asset sums to zero with "@external",
the venue's holdings equal net deposits), every reservation equals what the open orders need, and
the LedgerEntry events alone reproduce every balance."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_ledger_support import DAY, FEES, T0, MiniCore, btc_usdt, eth_btc, eth_usdt
from venue.core.assets import Assets
from venue.core.commands import (
    CancelOrder,
    Deposit,
    EndOfSession,
    MassCancel,
    NewOrder,
    ReplaceOrder,
    SetAccountStp,
    SetKillSwitch,
    Tick,
    Withdraw,
)
from venue.core.engine import Core
from venue.core.events import LedgerEntry, OrderRejected
from venue.core.ledger import EXTERNAL
from venue.core.risk import AccountRisk
from venue.core.stage import RiskLedgerStage
from venue.core.types import OrdType, RejectCode, Side, StpMode, TimeInForce

ACCOUNTS = ("a1", "a2", "a3", "a4")
ASSETS = ("BTC", "ETH", "USDT")
DEPOSIT_MAX = {"USDT": 300_000_000, "BTC": 300_000, "ETH": 10_000_000}


def instruments():
    return [btc_usdt(), eth_usdt(), eth_btc()]


def new_stage() -> RiskLedgerStage:
    profiles = {a: AccountRisk(a, fee_tier="vip" if a == "a4" else None) for a in ACCOUNTS}
    return RiskLedgerStage(profiles, Assets(), FEES)


class Tally:
    """Balances rebuilt from LedgerEntry events only (an independent reading of the journal)."""

    def __init__(self) -> None:
        self.total: dict[tuple[str, str], int] = {}
        self.reserved: dict[tuple[str, str], int] = {}
        self.seq = 0

    def feed(self, events) -> None:
        for ev in events:
            assert ev.seq == self.seq + 1, "event sequence has a gap"
            self.seq = ev.seq
            if not isinstance(ev, LedgerEntry):
                continue
            per_asset: dict[str, int] = {}
            for acc, asset, d in ev.postings:
                self.total[(acc, asset)] = self.total.get((acc, asset), 0) + d
                per_asset[asset] = per_asset.get(asset, 0) + d
            assert not any(per_asset.values()), f"unbalanced entry {ev}"
            for acc, asset, d in ev.reservations:
                self.reserved[(acc, asset)] = self.reserved.get((acc, asset), 0) + d

    def check(self, stage: RiskLedgerStage) -> None:
        led = stage.ledger
        for acc in set(led.accounts()) | {a for a, _ in self.total}:
            for asset in ASSETS:
                assert led.balance(acc, asset) == (self.total.get((acc, asset), 0),
                                                   self.reserved.get((acc, asset), 0)), (acc, asset)
        for asset in ASSETS:
            assert led.asset_total(asset) == -self.total.get((EXTERNAL, asset), 0)


def check_all(stage: RiskLedgerStage, tally: Tally, open_orders) -> None:
    stage.check_invariants(open_orders)
    tally.check(stage)


def _price(data, inst, ref: int) -> int:
    step = max(1, ref // 400)
    return max(1, ref + step * data.draw(st.integers(-30, 30), label="price offset"))


def random_command(data, ts: int, core_instruments: dict, open_orders: list):
    """One random command; state-dependent choices (which order to cancel) come from ``data``."""
    kind = data.draw(st.sampled_from(
        ["limit"] * 8 + ["market"] * 2 + ["stop"] + ["cancel"] * 3 + ["replace"] * 2
        + ["mass", "deposit", "withdraw", "kill", "eos", "tick", "stp"]), label="kind")
    acc = data.draw(st.sampled_from(ACCOUNTS), label="account")
    sym = data.draw(st.sampled_from(sorted(core_instruments)), label="instrument")
    inst = core_instruments[sym]
    ref = inst.ref_price
    side = data.draw(st.sampled_from([Side.BUY, Side.SELL]), label="side")
    qty = data.draw(st.integers(1, 40), label="qty")
    cl = f"c{ts}"
    if kind == "limit":
        tif = data.draw(st.sampled_from([TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK,
                                         TimeInForce.DAY, TimeInForce.GTD]), label="tif")
        resting = tif not in (TimeInForce.IOC, TimeInForce.FOK)
        display = data.draw(st.sampled_from([None, None, 1, 3]), label="display") if resting else None
        return NewOrder(ts, acc, sym, cl, side, qty, OrdType.LIMIT, _price(data, inst, ref), tif,
                        display_qty=None if display is None or display > qty else display,
                        post_only=resting and data.draw(st.booleans(), label="post_only"),
                        stp=data.draw(st.sampled_from([None, *StpMode]), label="stp"),
                        expire_at=ts + data.draw(st.integers(1, 50), label="gtd") * 10**9
                        if tif == TimeInForce.GTD else None)
    if kind == "market":
        return NewOrder(ts, acc, sym, cl, side, qty, OrdType.MARKET, None, TimeInForce.IOC,
                        stp=data.draw(st.sampled_from([None, *StpMode]), label="stp"))
    if kind == "stop":
        limit = data.draw(st.booleans(), label="stop limit")
        return NewOrder(ts, acc, sym, cl, side, qty, OrdType.STOP_LIMIT if limit else OrdType.STOP,
                        _price(data, inst, ref) if limit else None, TimeInForce.GTC,
                        stop_price=_price(data, inst, ref))
    if kind in ("cancel", "replace") and open_orders:
        o = data.draw(st.sampled_from(open_orders), label="order")
        if kind == "cancel":
            return CancelOrder(ts, o.account, o.instrument, cl, order_id=o.order_id)
        new_price = (_price(data, inst, core_instruments[o.instrument].ref_price)
                     if o.price is not None and data.draw(st.booleans(), label="reprice") else None)
        return ReplaceOrder(ts, o.account, o.instrument, cl, o.cum_qty + data.draw(st.integers(0, 40)),
                            new_price, order_id=o.order_id)
    if kind == "mass":
        return MassCancel(ts, cl, account=acc, instrument=data.draw(st.sampled_from([None, sym])),
                          side=data.draw(st.sampled_from([None, side])))
    if kind in ("deposit", "withdraw"):
        asset = data.draw(st.sampled_from(ASSETS), label="asset")
        amount = data.draw(st.integers(1, DEPOSIT_MAX[asset]), label="amount")
        return (Deposit if kind == "deposit" else Withdraw)(ts, acc, asset, amount, f"{kind}-{ts}")
    if kind == "kill":
        return SetKillSwitch(ts, acc, data.draw(st.sampled_from([True, False, False, False]), label="on"))
    if kind == "eos":
        return EndOfSession(ts)
    if kind == "tick":
        return Tick(ts + 30 * 10**9)
    if kind == "stp":
        return SetAccountStp(ts, acc, data.draw(st.sampled_from(list(StpMode))))
    return Tick(ts)


def _fund(process, ts: int) -> None:
    for acc in ACCOUNTS:
        for asset in ASSETS:
            process(Deposit(ts, acc, asset, DEPOSIT_MAX[asset], f"seed-{acc}-{asset}"))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_trading_on_the_core_keeps_the_ledger_balanced_and_reservations_exact(data):
    stage = new_stage()
    core = Core(instruments(), hooks=stage)
    tally = Tally()
    ts = T0 + DAY // 2
    _fund(lambda c: tally.feed(core.process(c)), ts)
    check_all(stage, tally, core.open_orders())
    insts = {i.symbol: i for i in core.instruments()}
    n = data.draw(st.integers(1, 80), label="commands")
    for _ in range(n):
        ts += data.draw(st.integers(0, 4 * 3600), label="dt") * 10**9  # crosses day boundaries
        cmd = random_command(data, ts, insts, core.open_orders())
        events = core.process(cmd)
        tally.feed(events)
        check_all(stage, tally, core.open_orders())
        for ev in events:
            if isinstance(ev, OrderRejected) and ev.code == RejectCode.INSUFFICIENT_BALANCE:
                assert cmd.account == ev.account


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_core_snapshot_with_the_stage_restores_the_ledger_exactly(data):
    stage = new_stage()
    core = Core(instruments(), hooks=stage)
    ts = T0
    _fund(core.process, ts)
    cmds = []
    for _ in range(data.draw(st.integers(1, 40), label="commands")):
        ts += 10**9
        cmds.append(random_command(data, ts, {i.symbol: i for i in core.instruments()}, core.open_orders()))
        core.process(cmds[-1])
    restored_stage = new_stage()
    restored = Core.from_snapshot(json.loads(json.dumps(core.snapshot())), hooks=restored_stage)  # as journaled
    assert restored_stage.snapshot() == stage.snapshot()
    restored_stage.check_invariants(restored.open_orders())
    more = NewOrder(ts + 1, "a1", "BTC-USDT", "after", Side.BUY, 5, OrdType.LIMIT, 5_000_000)
    assert [type(e).__name__ for e in core.process(more)] == [type(e).__name__ for e in restored.process(more)]
    assert restored_stage.snapshot() == stage.snapshot()


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_random_trading_on_the_reference_matcher_keeps_the_ledger_balanced(data):
    stage = new_stage()
    mini = MiniCore(stage, instruments())
    tally = Tally()
    ts = T0
    _fund(lambda c: tally.feed(mini.apply(c)), ts)
    for _ in range(data.draw(st.integers(1, 60), label="commands")):
        ts += 10**9
        open_orders = mini.open_orders()
        kind = data.draw(st.sampled_from(["new", "new", "new", "market", "cancel", "replace"]))
        acc = data.draw(st.sampled_from(ACCOUNTS))
        sym = data.draw(st.sampled_from(sorted(mini.instruments)))
        inst = mini.instruments[sym]
        side = data.draw(st.sampled_from([Side.BUY, Side.SELL]))
        qty = data.draw(st.integers(1, 40))
        if kind == "cancel" and open_orders:
            events = mini.cancel(ts, data.draw(st.sampled_from(open_orders)).order_id)
        elif kind == "replace" and open_orders:
            o = data.draw(st.sampled_from(open_orders))
            events = mini.replace(ReplaceOrder(ts, o.account, o.instrument, f"r{ts}", o.cum_qty + qty,
                                               _price(data, inst, mini.instruments[o.instrument].ref_price),
                                               order_id=o.order_id))
        elif kind == "market":
            events = mini.new(NewOrder(ts, acc, sym, f"c{ts}", side, qty, OrdType.MARKET, None, TimeInForce.IOC))
        else:
            events = mini.new(NewOrder(ts, acc, sym, f"c{ts}", side, qty, OrdType.LIMIT,
                                       _price(data, inst, inst.ref_price)))
        tally.feed(events)
        check_all(stage, tally, mini.open_orders())
