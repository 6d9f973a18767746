"""The order row: the fields of an open order inside the core, in the order ``row[i]`` indexes them
(the row itself is ``venue.core.engine.Row``, compiled), its JSON form for snapshots, and ``Order``,
the read-only snapshot the rest of the venue sees."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from venue.core.types import OrdType, Side, StpMode, TimeInForce

# An open order inside the core is a ``Row`` (venue/core/engine.pyx) whose fields ``row[i]`` indexes
# in this order. Outside the core, orders are seen as ``Order`` snapshots (``Order.from_row``).
FIELDS = (
    "order_id", "cl_ord_id", "account", "instrument", "side", "ord_type", "tif", "price", "qty",
    "leaves_qty", "cum_qty", "cum_notional", "display_qty", "visible_qty", "stop_price", "stp",
    "post_only", "expire_at", "session", "ts", "triggered", "live",
)
(ORDER_ID, CL_ORD_ID, ACCOUNT, INSTRUMENT, SIDE, ORD_TYPE, TIF, PRICE, QTY, LEAVES_QTY, CUM_QTY,
 CUM_NOTIONAL, DISPLAY_QTY, VISIBLE_QTY, STOP_PRICE, STP, POST_ONLY, EXPIRE_AT, SESSION, TS, TRIGGERED,
 LIVE) = range(len(FIELDS))

Row = Any  # venue.core.engine.Row (imported lazily: the engine imports this module)


def new_row(order_id: int, cl_ord_id: str, account: str, instrument: str, side: Side, qty: int,
            price: int | None = None, ord_type: OrdType = OrdType.LIMIT, tif: TimeInForce = TimeInForce.GTC,
            display_qty: int | None = None, stop_price: int | None = None,
            stp: StpMode = StpMode.EXPIRE_TAKER, post_only: bool = False, expire_at: int | None = None,
            session: str = "", ts: int = 0) -> Row:
    """A fresh order row (leaves = qty, visible = display part)."""
    from venue.core.engine import Row

    vis = qty if display_qty is None else min(display_qty, qty)
    return Row(order_id, cl_ord_id, account, instrument, side, ord_type, tif, price, qty, qty, 0, 0,
               display_qty, vis, stop_price, stp, post_only, expire_at, session, ts, False, True)


def row_to_json(o: Row) -> list:
    """A row as JSON values (enums as their values; the ``live`` flag dropped)."""
    v = o[:LIVE]
    v[SIDE], v[ORD_TYPE], v[TIF], v[STP] = o[SIDE].value, o[ORD_TYPE].value, o[TIF].value, o[STP].value
    return v


def row_from_json(v: list) -> Row:
    from venue.core.engine import Row

    o = list(v[:LIVE])
    o[SIDE], o[ORD_TYPE], o[TIF], o[STP] = Side(v[SIDE]), OrdType(v[ORD_TYPE]), TimeInForce(v[TIF]), StpMode(v[STP])
    return Row(*o)


@dataclass(slots=True, frozen=True)
class Order:
    """A read-only snapshot of an open order (quantities in lots, prices in ticks)."""

    order_id: int
    cl_ord_id: str
    account: str
    instrument: str
    side: Side
    ord_type: OrdType
    tif: TimeInForce
    price: int | None
    qty: int
    leaves_qty: int
    cum_qty: int
    cum_notional: int
    display_qty: int | None
    visible_qty: int
    stop_price: int | None
    stp: StpMode
    post_only: bool
    expire_at: int | None
    session: str
    ts: int
    triggered: bool

    @classmethod
    def from_row(cls, o: Row) -> Order:
        return cls(*o[:LIVE])

    @property
    def is_stop_waiting(self) -> bool:
        """A stop order still waiting for its trigger (not in the visible book)."""
        return self.stop_price is not None and not self.triggered
