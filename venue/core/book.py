"""Order books of one instrument: the fast one used by the core and a naive reference one.

Both implement the same interface and are run against one shared test suite (as exchange-core does
with its direct and naive books); the core can be built on either (``Core(book_factory=...)``).

The book holds resting *visible-book* orders only (stop orders waiting for their trigger live in the
core). It does not match: the core walks ``head()`` / ``fill()``. Each book records which levels a
command touched in ``dirty`` (key ``price`` for asks, ``-price`` for bids) so the core emits one
``BookLevel`` per level per command.

Fast book: price levels in a dict per side plus the side's prices in a sorted list (``bisect``:
C-level insertion and removal, cheaper than a ``SortedDict`` for the few hundred levels a book
near its band holds); each level keeps its orders in arrival order in a deque. Removal is O(1): a cancelled order is flagged dead (``live = False``) and the level's
aggregates are updated at once; dead entries are skipped at the head and compacted when they
outnumber the live ones.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from venue.core.types import OrdType, Side, StpMode, TimeInForce

BUY = Side.BUY
SELL = Side.SELL


# An open order inside the core is a plain list ("row") indexed by these constants: building a
# 22-slot object per order costs several times more than a list literal on the hot path. Outside
# the core, orders are seen as ``Order`` snapshots (``Order.from_row``).
FIELDS = (
    "order_id", "cl_ord_id", "account", "instrument", "side", "ord_type", "tif", "price", "qty",
    "leaves_qty", "cum_qty", "cum_notional", "display_qty", "visible_qty", "stop_price", "stp",
    "post_only", "expire_at", "session", "ts", "triggered", "live",
)
(ORDER_ID, CL_ORD_ID, ACCOUNT, INSTRUMENT, SIDE, ORD_TYPE, TIF, PRICE, QTY, LEAVES_QTY, CUM_QTY,
 CUM_NOTIONAL, DISPLAY_QTY, VISIBLE_QTY, STOP_PRICE, STP, POST_ONLY, EXPIRE_AT, SESSION, TS, TRIGGERED,
 LIVE) = range(len(FIELDS))

Row = list  # an order row (see FIELDS)


def new_row(order_id: int, cl_ord_id: str, account: str, instrument: str, side: Side, qty: int,
            price: int | None = None, ord_type: OrdType = OrdType.LIMIT, tif: TimeInForce = TimeInForce.GTC,
            display_qty: int | None = None, stop_price: int | None = None,
            stp: StpMode = StpMode.EXPIRE_TAKER, post_only: bool = False, expire_at: int | None = None,
            session: str = "", ts: int = 0) -> Row:
    """A fresh order row (leaves = qty, visible = display part)."""
    vis = qty if display_qty is None else min(display_qty, qty)
    return [order_id, cl_ord_id, account, instrument, side, ord_type, tif, price, qty, qty, 0, 0,
            display_qty, vis, stop_price, stp, post_only, expire_at, session, ts, False, True]


def row_to_json(o: Row) -> list:
    """A row as JSON values (enums as their values; the ``live`` flag dropped)."""
    v = o[:LIVE]
    v[SIDE], v[ORD_TYPE], v[TIF], v[STP] = o[SIDE].value, o[ORD_TYPE].value, o[TIF].value, o[STP].value
    return v


def row_from_json(v: list) -> Row:
    o = list(v[:LIVE]) + [True]
    o[SIDE], o[ORD_TYPE], o[TIF], o[STP] = Side(v[SIDE]), OrdType(v[ORD_TYPE]), TimeInForce(v[TIF]), StpMode(v[STP])
    return o


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


class Level:
    """One price level: visible quantity, live order count, orders in arrival order."""

    __slots__ = ("price", "qty", "count", "orders")

    def __init__(self, price: int) -> None:
        self.price = price
        self.qty = 0
        self.count = 0
        self.orders: deque[Row] = deque()


class Book:
    """The fast book (see module docstring)."""

    __slots__ = ("bids", "asks", "bid_px", "ask_px", "best_bid", "best_ask", "dirty")

    def __init__(self) -> None:
        self.bids: dict[int, Level] = {}
        self.asks: dict[int, Level] = {}
        self.bid_px: list[int] = []  # ascending prices of the levels of each side
        self.ask_px: list[int] = []
        self.best_bid: int | None = None
        self.best_ask: int | None = None
        self.dirty: dict[int, None] = {}

    def add(self, o: Row) -> Level:
        """Rest ``o`` at the back of its price level (``o[VISIBLE_QTY]`` counts as visible);
        returns the level (its state after the change)."""
        price = o[PRICE]
        if o[SIDE] is BUY:
            lvl = self.bids.get(price)
            if lvl is None:
                lvl = self.bids[price] = Level(price)
                insort(self.bid_px, price)
                if self.best_bid is None or price > self.best_bid:
                    self.best_bid = price
            self.dirty[-price] = None
        else:
            lvl = self.asks.get(price)
            if lvl is None:
                lvl = self.asks[price] = Level(price)
                insort(self.ask_px, price)
                if self.best_ask is None or price < self.best_ask:
                    self.best_ask = price
            self.dirty[price] = None
        o[LIVE] = True
        lvl.orders.append(o)
        lvl.qty += o[VISIBLE_QTY]
        lvl.count += 1
        return lvl

    def _drop_level(self, side: Side, price: int) -> None:
        if side is BUY:
            del self.bids[price]
            px = self.bid_px
            if price == self.best_bid:
                px.pop()
                self.best_bid = px[-1] if px else None
            else:
                del px[bisect_left(px, price)]
        else:
            del self.asks[price]
            px = self.ask_px
            if price == self.best_ask:
                del px[0]
                self.best_ask = px[0] if px else None
            else:
                del px[bisect_left(px, price)]

    def remove(self, o: Row) -> Level:
        """Take a resting order out of the book (O(1): flagged dead, aggregates updated);
        returns the level (its state after the change; qty 0 and count 0 when it is gone)."""
        price = o[PRICE]
        if o[SIDE] is BUY:
            lvl = self.bids[price]
            self.dirty[-price] = None
        else:
            lvl = self.asks[price]
            self.dirty[price] = None
        o[LIVE] = False
        lvl.qty -= o[VISIBLE_QTY]
        lvl.count -= 1
        if lvl.count == 0:
            self._drop_level(o[SIDE], price)
        elif len(lvl.orders) > 2 * lvl.count + 16:
            lvl.orders = deque([x for x in lvl.orders if x[LIVE]])
        return lvl

    def head(self, side: Side) -> Row | None:
        """The first order in time priority at the best price of ``side``."""
        if side is BUY:
            if self.best_bid is None:
                return None
            q = self.bids[self.best_bid].orders
        else:
            if self.best_ask is None:
                return None
            q = self.asks[self.best_ask].orders
        o = q[0]
        while not o[LIVE]:
            q.popleft()
            o = q[0]
        return o

    def fill(self, o: Row, qty: int) -> None:
        """``o`` (the head of its side) traded ``qty`` of its visible quantity; ``o[LEAVES_QTY]`` is
        already reduced. Refreshes an iceberg (back of the level) or removes a finished order."""
        price = o[PRICE]
        if o[SIDE] is BUY:
            lvl = self.bids[price]
            self.dirty[-price] = None
        else:
            lvl = self.asks[price]
            self.dirty[price] = None
        o[VISIBLE_QTY] -= qty
        lvl.qty -= qty
        if o[VISIBLE_QTY] == 0:
            lvl.orders.popleft()
            if o[LEAVES_QTY] > 0:
                vis = o[DISPLAY_QTY] if o[DISPLAY_QTY] < o[LEAVES_QTY] else o[LEAVES_QTY]
                o[VISIBLE_QTY] = vis
                lvl.qty += vis
                lvl.orders.append(o)
            else:
                o[LIVE] = False
                lvl.count -= 1
                if lvl.count == 0:
                    self._drop_level(o[SIDE], price)

    def reduce(self, o: Row, leaves: int) -> None:
        """Lower a resting order's leaves in place (keeps time priority); ``leaves`` > 0."""
        vis = o[VISIBLE_QTY] if o[VISIBLE_QTY] < leaves else leaves
        if o[SIDE] is BUY:
            lvl = self.bids[o[PRICE]]
            self.dirty[-o[PRICE]] = None
        else:
            lvl = self.asks[o[PRICE]]
            self.dirty[o[PRICE]] = None
        lvl.qty -= o[VISIBLE_QTY] - vis
        o[VISIBLE_QTY] = vis
        o[LEAVES_QTY] = leaves

    def level(self, side: Side, price: int) -> tuple[int, int]:
        """(visible qty, order count) at a price; (0, 0) when there is no level."""
        lvl = (self.bids if side is BUY else self.asks).get(price)
        return (0, 0) if lvl is None else (lvl.qty, lvl.count)

    def levels(self, side: Side, depth: int | None = None) -> list[tuple[int, int, int]]:
        """[(price, visible qty, order count)] best first."""
        if side is BUY:
            prices = reversed(self.bid_px)
            book = self.bids
        else:
            prices = iter(self.ask_px)
            book = self.asks
        out: list[tuple[int, int, int]] = []
        for p in prices:
            if depth is not None and len(out) >= depth:
                break
            lvl = book[p]
            out.append((p, lvl.qty, lvl.count))
        return out

    def orders(self, side: Side) -> Iterator[Row]:
        """Resting orders of ``side`` in priority order."""
        if side is BUY:
            book = self.bids
            prices = reversed(self.bid_px[:])
        else:
            book = self.asks
            prices = iter(self.ask_px[:])
        for p in prices:
            for o in list(book[p].orders):
                if o[LIVE]:
                    yield o

    def take_dirty(self) -> list[tuple[Side, int, int, int]]:
        """[(side, price, qty, count)] for each level touched since the last call."""
        out = []
        for k in self.dirty:
            if k > 0:
                lvl = self.asks.get(k)
                out.append((SELL, k, 0, 0) if lvl is None else (SELL, k, lvl.qty, lvl.count))
            else:
                lvl = self.bids.get(-k)
                out.append((BUY, -k, 0, 0) if lvl is None else (BUY, -k, lvl.qty, lvl.count))
        self.dirty.clear()
        return out


class NaiveBook:
    """Reference book: one arrival-ordered list per side, everything by linear scan."""

    def __init__(self) -> None:
        self._side: dict[Side, list[Row]] = {BUY: [], SELL: []}
        self.dirty: dict[int, None] = {}

    @staticmethod
    def _key(side: Side, price: int) -> int:
        return -price if side is BUY else price

    def _best(self, side: Side) -> int | None:
        prices = [o[PRICE] for o in self._side[side]]
        if not prices:
            return None
        return max(prices) if side is BUY else min(prices)

    @property
    def best_bid(self) -> int | None:
        return self._best(BUY)

    @property
    def best_ask(self) -> int | None:
        return self._best(SELL)

    def _level_obj(self, side: Side, price: int) -> Level:
        lvl = Level(price)
        lvl.qty, lvl.count = self.level(side, price)
        return lvl

    def add(self, o: Row) -> Level:
        o[LIVE] = True
        self._side[o[SIDE]].append(o)
        self.dirty[self._key(o[SIDE], o[PRICE])] = None
        return self._level_obj(o[SIDE], o[PRICE])

    def remove(self, o: Row) -> Level:
        self._side[o[SIDE]].remove(o)
        o[LIVE] = False
        self.dirty[self._key(o[SIDE], o[PRICE])] = None
        return self._level_obj(o[SIDE], o[PRICE])

    def head(self, side: Side) -> Row | None:
        best = self._best(side)
        if best is None:
            return None
        return next(o for o in self._side[side] if o[PRICE] == best)

    def fill(self, o: Row, qty: int) -> None:
        o[VISIBLE_QTY] -= qty
        self.dirty[self._key(o[SIDE], o[PRICE])] = None
        if o[VISIBLE_QTY] == 0:
            self._side[o[SIDE]].remove(o)
            if o[LEAVES_QTY] > 0:
                o[VISIBLE_QTY] = min(o[DISPLAY_QTY], o[LEAVES_QTY])
                self._side[o[SIDE]].append(o)
            else:
                o[LIVE] = False

    def reduce(self, o: Row, leaves: int) -> None:
        o[VISIBLE_QTY] = min(o[VISIBLE_QTY], leaves)
        o[LEAVES_QTY] = leaves
        self.dirty[self._key(o[SIDE], o[PRICE])] = None

    def level(self, side: Side, price: int) -> tuple[int, int]:
        at = [o for o in self._side[side] if o[PRICE] == price]
        return sum(o[VISIBLE_QTY] for o in at), len(at)

    def levels(self, side: Side, depth: int | None = None) -> list[tuple[int, int, int]]:
        prices = sorted({o[PRICE] for o in self._side[side]}, reverse=side is BUY)
        out = [(p, *self.level(side, p)) for p in prices]
        return out if depth is None else out[:depth]

    def orders(self, side: Side) -> Iterator[Row]:
        prices = sorted({o[PRICE] for o in self._side[side]}, reverse=side is BUY)
        for p in prices:
            yield from [o for o in self._side[side] if o[PRICE] == p]

    def take_dirty(self) -> list[tuple[Side, int, int, int]]:
        out = []
        for k in self.dirty:
            side, price = (SELL, k) if k > 0 else (BUY, -k)
            out.append((side, price, *self.level(side, price)))
        self.dirty.clear()
        return out
