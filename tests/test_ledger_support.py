"""Shared fixtures of the ledger/risk tests: instruments, a stage, and a small reference matcher
that produces the core's events (used to drive the stage without the real core)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from venue.core.assets import Assets
from venue.core.commands import NewOrder
from venue.core.events import (
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    OrderReplaced,
    OrderRestated,
    Trade,
)
from venue.core.fees import FeeSchedule, FeeTier
from venue.core.instruments import Instrument
from venue.core.risk import AccountRisk
from venue.core.stage import RiskLedgerStage
from venue.core.types import OrdType, Side, TimeInForce

DAY = 86_400 * 10**9
T0 = 20_000 * DAY  # some UTC midnight


def btc_usdt(**kw) -> Instrument:
    """tick 0.01 USDT, lot 0.0001 BTC: 1 USDT unit per tick*lot, 10_000 sats per lot."""
    return Instrument("BTC-USDT", "BTC", "USDT", Decimal("0.01"), Decimal("0.0001"),
                      band_bps=kw.pop("band_bps", 1000), ref_price=kw.pop("ref_price", 5_000_000), **kw)


def eth_btc(**kw) -> Instrument:
    """tick 0.00001 BTC, lot 0.001 ETH: 1 sat per tick*lot, 100_000 ETH units per lot."""
    return Instrument("ETH-BTC", "ETH", "BTC", Decimal("0.00001"), Decimal("0.001"),
                      band_bps=kw.pop("band_bps", 2000), ref_price=kw.pop("ref_price", 5_000), **kw)


def eth_usdt(**kw) -> Instrument:
    """tick 0.01 USDT, lot 0.001 ETH: 10 USDT units per tick*lot."""
    return Instrument("ETH-USDT", "ETH", "USDT", Decimal("0.01"), Decimal("0.001"),
                      band_bps=kw.pop("band_bps", 1000), ref_price=kw.pop("ref_price", 250_000), **kw)


FEES = FeeSchedule({"standard": FeeTier(10, 20), "vip": FeeTier(0, 7)}, "standard")


def make_stage(*accounts: str, **profiles: AccountRisk) -> RiskLedgerStage:
    accs = {a: AccountRisk(a) for a in accounts}
    accs.update(profiles)
    return RiskLedgerStage(accs, Assets(), FEES)


def order(ts: int, account: str, side: Side, qty: int, price: int | None, inst: str = "BTC-USDT",
          **kw) -> NewOrder:
    ord_type = kw.pop("ord_type", OrdType.LIMIT if price is not None else OrdType.MARKET)
    return NewOrder(ts, account, inst, f"c{ts}", side, qty, ord_type, price, **kw)


@dataclass(slots=True)
class _Resting:
    order_id: int
    cl_ord_id: str
    account: str
    instrument: str
    side: Side
    price: int | None
    qty: int
    leaves_qty: int
    cum_qty: int = 0
    cum_notional: int = 0


class MiniCore:
    """A reference limit-order matcher (price-time, GTC/IOC limit and market orders, cancel,
    replace, STP decrement) that calls the hooks the way the real core does."""

    def __init__(self, stage: RiskLedgerStage, instruments: list[Instrument]) -> None:
        self.stage = stage
        self.instruments = {i.symbol: i for i in instruments}
        self.orders: dict[int, _Resting] = {}
        self.next_oid = 1
        self.next_trade = 1
        self.seq = 0
        self.log: list = []

    def _num(self, events: list) -> list:
        for ev in events:
            self.seq += 1
            ev.seq = self.seq
        self.log += events
        return events

    def _finish(self, events: list) -> list:
        extra = self.stage.on_events(events)
        return self._num(events) + self._num(extra)

    def open_orders(self) -> list[_Resting]:
        return list(self.orders.values())

    def apply(self, cmd) -> list:
        return self._num(self.stage.apply(cmd) or [])

    def new(self, cmd: NewOrder) -> list:
        inst = self.instruments[cmd.instrument]
        oid = self.next_oid
        self.next_oid += 1
        rej = self.stage.pre_new(cmd, oid, inst)
        if rej is not None:
            return self._finish([])  # (the real core emits OrderRejected; nothing for the ledger)
        o = _Resting(oid, cmd.cl_ord_id, cmd.account, cmd.instrument, cmd.side, cmd.price, cmd.qty, cmd.qty)
        ev: list = [OrderAccepted(0, cmd.ts, oid, cmd.cl_ord_id, cmd.account, cmd.instrument, cmd.side,
                                  cmd.ord_type, cmd.tif, cmd.price, cmd.qty, None, None, cmd.qty, "")]
        limit = cmd.price
        if limit is None:  # market: bounded by the band
            lo, hi = inst.band()
            limit = hi if cmd.side == Side.BUY else lo
        for m in sorted((m for m in self.orders.values() if m.instrument == cmd.instrument and m.side != cmd.side),
                        key=lambda m: (m.price if cmd.side == Side.BUY else -m.price, m.order_id)):
            if o.leaves_qty == 0:
                break
            if (cmd.side == Side.BUY and m.price > limit) or (cmd.side == Side.SELL and m.price < limit):
                break
            if m.account == o.account:  # STP decrement-and-cancel
                d = min(m.leaves_qty, o.leaves_qty)
                o.leaves_qty -= d
                m.leaves_qty -= d
                for x in (o, m):
                    if x.leaves_qty == 0:
                        ev.append(OrderCancelled(0, cmd.ts, x.order_id, x.cl_ord_id, x.cl_ord_id, x.account,
                                                 x.instrument, x.side, x.price, x.qty, d, x.cum_qty,
                                                 x.cum_notional, "self_trade", "", ""))
                    else:
                        ev.append(OrderRestated(0, cmd.ts, x.order_id, x.cl_ord_id, x.account, x.instrument,
                                                x.side, x.price, x.qty, x.leaves_qty, x.cum_qty, x.cum_notional,
                                                "stp_decrement", ""))
                if m.leaves_qty == 0:
                    del self.orders[m.order_id]
                continue
            q = min(m.leaves_qty, o.leaves_qty)
            tid = self.next_trade
            self.next_trade += 1
            for x, aggr in ((m, False), (o, True)):
                x.leaves_qty -= q
                x.cum_qty += q
                x.cum_notional += q * m.price
                ev.append(OrderFilled(0, cmd.ts, x.order_id, x.cl_ord_id, x.account, x.instrument, x.side, tid,
                                      m.price, q, x.leaves_qty, x.cum_qty, x.cum_notional, aggr, ""))
            ev.append(Trade(0, cmd.ts, tid, cmd.instrument, m.price, q, cmd.side, m.order_id, oid, m.account,
                            o.account))
            inst.ref_price = m.price
            if m.leaves_qty == 0:
                del self.orders[m.order_id]
        if o.leaves_qty:
            if cmd.price is None or cmd.tif == TimeInForce.IOC:
                ev.append(OrderExpired(0, cmd.ts, oid, o.cl_ord_id, o.account, o.instrument, o.side, o.price,
                                       o.qty, o.leaves_qty, o.cum_qty, o.cum_notional, "ioc", ""))
            else:
                self.orders[oid] = o
        return self._finish(ev)

    def cancel(self, ts: int, oid: int) -> list:
        o = self.orders.pop(oid)
        return self._finish([OrderCancelled(0, ts, oid, f"x{ts}", o.cl_ord_id, o.account, o.instrument, o.side,
                                            o.price, o.qty, o.leaves_qty, o.cum_qty, o.cum_notional, "client",
                                            "", "")])

    def replace(self, cmd) -> list:
        """Replace price and/or total quantity of a resting order (no re-matching here)."""
        o = self.orders[cmd.order_id]
        rej = self.stage.pre_replace(cmd, o, self.instruments[o.instrument])
        if rej is not None or cmd.qty <= o.cum_qty:
            return self._finish([])
        old_price, old_qty = o.price, o.qty
        o.price = cmd.price if cmd.price is not None else o.price
        o.qty, o.leaves_qty = cmd.qty, cmd.qty - o.cum_qty
        return self._finish([OrderReplaced(0, cmd.ts, o.order_id, cmd.cl_ord_id, o.cl_ord_id, o.account,
                                           o.instrument, o.side, o.price, o.qty, old_price, old_qty,
                                           o.leaves_qty, o.cum_qty, o.cum_notional, False, "")])
