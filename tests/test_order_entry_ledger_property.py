"""Random trading in batches (as the venue runs them: ``Core.process_batch``) across several
accounts and instruments, checked after every batch against figures computed here, independently
of the ledger's own records (tests/test_ledger_property.py checks the ledger against itself and
its event stream after every command; this one adds the outside view):

* per asset, the sum of all client and fee balances equals accepted deposits minus withdrawals;
* the fee account holds exactly the maker + taker fees of every trade, from the fee schedule;
* every (account, asset) reserves exactly what its open orders need: a sell its remaining base,
  a buy its remaining lots x (price + the taker fee of one lot, rounded up).
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_ledger_support import FEES, T0, btc_usdt, eth_btc, eth_usdt
from venue.core.assets import Assets
from venue.core.commands import (
    CancelOrder,
    Deposit,
    MassCancel,
    NewOrder,
    ReplaceOrder,
    SetKillSwitch,
    Withdraw,
)
from venue.core.engine import Core
from venue.core.events import LedgerRejected, Trade
from venue.core.ledger import EXTERNAL
from venue.core.risk import AccountRisk
from venue.core.stage import RiskLedgerStage
from venue.core.types import OrdType, Side, TimeInForce

ACCOUNTS = ("a1", "a2", "a3", "a4")
TIER = {"a4": "vip"}
ASSETS = Assets()
FUND = {"USDT": 200_000_000, "BTC": 200_000, "ETH": 8_000_000}


def ceil_fee(units: int, bps: int) -> int:
    return -(-units * bps // 10_000)


def factors(inst) -> tuple[int, int]:
    """(base units per lot, quote units per tick x lot), from the instrument's decimals."""
    base, quote = ASSETS[inst.base], ASSETS[inst.quote]
    return (int(Decimal(str(inst.lot_size)).scaleb(base.decimals)),
            int((Decimal(str(inst.tick_size)) * Decimal(str(inst.lot_size))).scaleb(quote.decimals)))


def command(data, ts: int, insts: dict, open_orders: list):
    kind = data.draw(st.sampled_from(["limit"] * 6 + ["market", "cancel", "cancel", "replace", "mass",
                                                      "deposit", "withdraw", "kill"]))
    acc = data.draw(st.sampled_from(ACCOUNTS))
    inst = insts[data.draw(st.sampled_from(sorted(insts)))]
    side = data.draw(st.sampled_from([Side.BUY, Side.SELL]))
    qty = data.draw(st.integers(1, 50))
    price = max(1, inst.ref_price + max(1, inst.ref_price // 300) * data.draw(st.integers(-25, 25)))
    cl = f"c{ts}"
    if kind == "limit":
        tif = data.draw(st.sampled_from([TimeInForce.GTC, TimeInForce.DAY, TimeInForce.IOC, TimeInForce.FOK]))
        return NewOrder(ts, acc, inst.symbol, cl, side, qty, OrdType.LIMIT, price, tif,
                        post_only=tif in (TimeInForce.GTC, TimeInForce.DAY) and data.draw(st.booleans()))
    if kind == "market":
        return NewOrder(ts, acc, inst.symbol, cl, side, qty, OrdType.MARKET, None, TimeInForce.IOC)
    if kind in ("cancel", "replace") and open_orders:
        o = data.draw(st.sampled_from(open_orders))
        if kind == "cancel":
            return CancelOrder(ts, o.account, o.instrument, cl, order_id=o.order_id)
        return ReplaceOrder(ts, o.account, o.instrument, cl, o.cum_qty + qty,
                            price if o.instrument == inst.symbol and data.draw(st.booleans()) else None,
                            order_id=o.order_id)
    if kind == "mass":
        return MassCancel(ts, cl, account=acc, instrument=data.draw(st.sampled_from([None, inst.symbol])))
    if kind in ("deposit", "withdraw"):
        asset = data.draw(st.sampled_from(sorted(FUND)))
        amount = data.draw(st.integers(1, FUND[asset]))
        return (Deposit if kind == "deposit" else Withdraw)(ts, acc, asset, amount, f"{kind}-{ts}")
    if kind == "kill":
        return SetKillSwitch(ts, acc, data.draw(st.sampled_from([True, False, False])))
    return NewOrder(ts, acc, inst.symbol, cl, side, qty, OrdType.LIMIT, price, TimeInForce.GTC)


class Books:
    """What the outside world knows: accepted deposits/withdrawals and every trade's fees."""

    def __init__(self, insts: dict) -> None:
        self.insts = insts
        self.net: dict[str, int] = {a: 0 for a in FUND}
        self.fees: dict[str, int] = {a: 0 for a in FUND}

    def feed(self, cmds: list, events: list) -> None:
        refused = {e.ref for e in events if isinstance(e, LedgerRejected)}
        for c in cmds:
            if isinstance(c, Deposit | Withdraw) and c.ref not in refused:
                self.net[c.asset] += c.amount if isinstance(c, Deposit) else -c.amount
        for e in events:
            if isinstance(e, Trade):
                inst = self.insts[e.instrument]
                notional = e.price * e.qty * factors(inst)[1]
                taker = FEES.tier(TIER.get(e.taker_account)).taker_bps
                maker = FEES.tier(TIER.get(e.maker_account)).maker_bps
                self.fees[inst.quote] += ceil_fee(notional, taker) + ceil_fee(notional, maker)

    def check(self, stage: RiskLedgerStage, open_orders: list) -> None:
        led = stage.ledger
        for asset in FUND:
            held = sum(led.balance(acc, asset)[0] for acc in led.accounts() if acc != EXTERNAL)
            assert held == self.net[asset], f"{asset}: accounts hold {held}, net deposits {self.net[asset]}"
            assert led.balance(FEES.fee_account, asset)[0] == self.fees[asset], f"{asset} fees"
        need: dict[tuple[str, str], int] = {}
        for o in open_orders:
            inst = self.insts[o.instrument]
            base_per_lot, quote_per_tick_lot = factors(inst)
            if o.side == Side.SELL:
                key, amount = (o.account, inst.base), o.leaves_qty * base_per_lot
            else:
                per_lot = o.price * quote_per_tick_lot
                bps = FEES.tier(TIER.get(o.account)).taker_bps
                key, amount = (o.account, inst.quote), o.leaves_qty * (per_lot + ceil_fee(per_lot, bps))
            need[key] = need.get(key, 0) + amount
        for acc in ACCOUNTS:
            for asset in FUND:
                total, reserved = led.balance(acc, asset)
                assert reserved == need.get((acc, asset), 0), f"{acc} {asset}: reserved {reserved}"
                assert 0 <= reserved <= total


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_after_every_batch_balances_add_up_to_deposits_fees_to_trades_and_reservations_to_open_orders(data):
    stage = RiskLedgerStage({a: AccountRisk(a, fee_tier=TIER.get(a)) for a in ACCOUNTS}, ASSETS, FEES)
    core = Core([btc_usdt(), eth_usdt(), eth_btc()], hooks=stage)
    insts = {i.symbol: i for i in core.instruments()}
    books = Books(insts)
    ts = T0
    seed = [Deposit(ts, a, asset, amount, f"seed-{a}-{asset}") for a in ACCOUNTS for asset, amount in FUND.items()]
    books.feed(seed, core.process_batch(seed))
    for _ in range(data.draw(st.integers(1, 12), label="batches")):
        batch = []
        for _ in range(data.draw(st.integers(1, 10), label="batch size")):
            ts += 10**9
            # within a batch, choices see the orders open before the batch (as a venue batch does)
            batch.append(command(data, ts, insts, core.open_orders()))
        books.feed(batch, core.process_batch(batch))
        books.check(stage, core.open_orders())
