"""Order books of one instrument: the fast one used by the core and a naive reference one.

Both implement the same interface and are run against one shared test suite (as exchange-core does
with its direct and naive books); the core can be built on either (``Core(book_factory=...)``).

The book holds resting *visible-book* orders only (stop orders waiting for their trigger live in the
core). It does not match: the core walks ``head()`` / ``fill()``. Each book records which levels a
command touched in ``dirty`` (key ``price`` for asks, ``-price`` for bids) so the core emits one
``BookLevel`` per level per command.

Fast book: price levels in a ``SortedDict`` per side; each level keeps its orders in arrival order
in a deque. Removal is O(1): a cancelled order is flagged dead (``live = False``) and the level's
aggregates are updated at once; dead entries are skipped at the head and compacted when they
outnumber the live ones.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from sortedcontainers import SortedDict

from venue.core.types import OrdType, Side, StpMode, TimeInForce

BUY = Side.BUY
SELL = Side.SELL


@dataclass(slots=True, eq=False)
class Order:
    """An open order as the core keeps it (quantities in lots, prices in ticks)."""

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
    cum_qty: int = 0
    cum_notional: int = 0
    display_qty: int | None = None
    visible_qty: int = 0
    stop_price: int | None = None
    stp: StpMode = StpMode.EXPIRE_TAKER
    post_only: bool = False
    expire_at: int | None = None
    session: str = ""
    ts: int = 0
    triggered: bool = False
    live: bool = True  # this object's queue position is valid (False once removed)

    def clone(self) -> Order:
        """A copy that can take a new queue position (the old one stays dead)."""
        return Order(
            self.order_id, self.cl_ord_id, self.account, self.instrument, self.side, self.ord_type,
            self.tif, self.price, self.qty, self.leaves_qty, self.cum_qty, self.cum_notional,
            self.display_qty, self.visible_qty, self.stop_price, self.stp, self.post_only,
            self.expire_at, self.session, self.ts, self.triggered, True,
        )

    @property
    def is_stop_waiting(self) -> bool:
        return self.stop_price is not None and not self.triggered

    def to_list(self) -> list:
        return [
            self.order_id, self.cl_ord_id, self.account, self.instrument, self.side.value,
            self.ord_type.value, self.tif.value, self.price, self.qty, self.leaves_qty, self.cum_qty,
            self.cum_notional, self.display_qty, self.visible_qty, self.stop_price, self.stp.value,
            self.post_only, self.expire_at, self.session, self.ts, self.triggered,
        ]

    @classmethod
    def from_list(cls, v: list) -> Order:
        return cls(
            v[0], v[1], v[2], v[3], Side(v[4]), OrdType(v[5]), TimeInForce(v[6]), v[7], v[8], v[9],
            v[10], v[11], v[12], v[13], v[14], StpMode(v[15]), v[16], v[17], v[18], v[19], v[20], True,
        )


class Level:
    """One price level: visible quantity, live order count, orders in arrival order."""

    __slots__ = ("price", "qty", "count", "orders")

    def __init__(self, price: int) -> None:
        self.price = price
        self.qty = 0
        self.count = 0
        self.orders: deque[Order] = deque()


class Book:
    """The fast book (see module docstring)."""

    __slots__ = ("bids", "asks", "best_bid", "best_ask", "dirty")

    def __init__(self) -> None:
        self.bids: SortedDict = SortedDict()
        self.asks: SortedDict = SortedDict()
        self.best_bid: int | None = None
        self.best_ask: int | None = None
        self.dirty: dict[int, None] = {}

    def add(self, o: Order) -> Level:
        """Rest ``o`` at the back of its price level (``o.visible_qty`` counts as visible);
        returns the level (its state after the change)."""
        price = o.price
        if o.side is BUY:
            lvl = self.bids.get(price)
            if lvl is None:
                lvl = self.bids[price] = Level(price)
                if self.best_bid is None or price > self.best_bid:
                    self.best_bid = price
            self.dirty[-price] = None
        else:
            lvl = self.asks.get(price)
            if lvl is None:
                lvl = self.asks[price] = Level(price)
                if self.best_ask is None or price < self.best_ask:
                    self.best_ask = price
            self.dirty[price] = None
        o.live = True
        lvl.orders.append(o)
        lvl.qty += o.visible_qty
        lvl.count += 1
        return lvl

    def _drop_level(self, side: Side, price: int) -> None:
        if side is BUY:
            del self.bids[price]
            if price == self.best_bid:
                self.best_bid = self.bids.peekitem(-1)[0] if self.bids else None
        else:
            del self.asks[price]
            if price == self.best_ask:
                self.best_ask = self.asks.peekitem(0)[0] if self.asks else None

    def remove(self, o: Order) -> Level:
        """Take a resting order out of the book (O(1): flagged dead, aggregates updated);
        returns the level (its state after the change; qty 0 and count 0 when it is gone)."""
        price = o.price
        if o.side is BUY:
            lvl = self.bids[price]
            self.dirty[-price] = None
        else:
            lvl = self.asks[price]
            self.dirty[price] = None
        o.live = False
        lvl.qty -= o.visible_qty
        lvl.count -= 1
        if lvl.count == 0:
            self._drop_level(o.side, price)
        elif len(lvl.orders) > 2 * lvl.count + 16:
            lvl.orders = deque([x for x in lvl.orders if x.live])
        return lvl

    def head(self, side: Side) -> Order | None:
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
        while not o.live:
            q.popleft()
            o = q[0]
        return o

    def fill(self, o: Order, qty: int) -> None:
        """``o`` (the head of its side) traded ``qty`` of its visible quantity; ``o.leaves_qty`` is
        already reduced. Refreshes an iceberg (back of the level) or removes a finished order."""
        price = o.price
        if o.side is BUY:
            lvl = self.bids[price]
            self.dirty[-price] = None
        else:
            lvl = self.asks[price]
            self.dirty[price] = None
        o.visible_qty -= qty
        lvl.qty -= qty
        if o.visible_qty == 0:
            lvl.orders.popleft()
            if o.leaves_qty > 0:
                vis = o.display_qty if o.display_qty < o.leaves_qty else o.leaves_qty
                o.visible_qty = vis
                lvl.qty += vis
                lvl.orders.append(o)
            else:
                o.live = False
                lvl.count -= 1
                if lvl.count == 0:
                    self._drop_level(o.side, price)

    def reduce(self, o: Order, leaves: int) -> None:
        """Lower a resting order's leaves in place (keeps time priority); ``leaves`` > 0."""
        vis = o.visible_qty if o.visible_qty < leaves else leaves
        if o.side is BUY:
            lvl = self.bids[o.price]
            self.dirty[-o.price] = None
        else:
            lvl = self.asks[o.price]
            self.dirty[o.price] = None
        lvl.qty -= o.visible_qty - vis
        o.visible_qty = vis
        o.leaves_qty = leaves

    def level(self, side: Side, price: int) -> tuple[int, int]:
        """(visible qty, order count) at a price; (0, 0) when there is no level."""
        lvl = (self.bids if side is BUY else self.asks).get(price)
        return (0, 0) if lvl is None else (lvl.qty, lvl.count)

    def levels(self, side: Side, depth: int | None = None) -> list[tuple[int, int, int]]:
        """[(price, visible qty, order count)] best first."""
        if side is BUY:
            prices = reversed(self.bids.keys())
            book = self.bids
        else:
            prices = iter(self.asks.keys())
            book = self.asks
        out = []
        for p in prices:
            if depth is not None and len(out) >= depth:
                break
            lvl = book[p]
            out.append((p, lvl.qty, lvl.count))
        return out

    def orders(self, side: Side) -> Iterator[Order]:
        """Resting orders of ``side`` in priority order."""
        if side is BUY:
            book = self.bids
            prices = reversed(book.keys())
        else:
            book = self.asks
            prices = iter(book.keys())
        for p in prices:
            for o in list(book[p].orders):
                if o.live:
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
        self._side: dict[Side, list[Order]] = {BUY: [], SELL: []}
        self.dirty: dict[int, None] = {}

    @staticmethod
    def _key(side: Side, price: int) -> int:
        return -price if side is BUY else price

    def _best(self, side: Side) -> int | None:
        prices = [o.price for o in self._side[side]]
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

    def add(self, o: Order) -> Level:
        o.live = True
        self._side[o.side].append(o)
        self.dirty[self._key(o.side, o.price)] = None
        return self._level_obj(o.side, o.price)

    def remove(self, o: Order) -> Level:
        self._side[o.side].remove(o)
        o.live = False
        self.dirty[self._key(o.side, o.price)] = None
        return self._level_obj(o.side, o.price)

    def head(self, side: Side) -> Order | None:
        best = self._best(side)
        if best is None:
            return None
        return next(o for o in self._side[side] if o.price == best)

    def fill(self, o: Order, qty: int) -> None:
        o.visible_qty -= qty
        self.dirty[self._key(o.side, o.price)] = None
        if o.visible_qty == 0:
            self._side[o.side].remove(o)
            if o.leaves_qty > 0:
                o.visible_qty = min(o.display_qty, o.leaves_qty)
                self._side[o.side].append(o)
            else:
                o.live = False

    def reduce(self, o: Order, leaves: int) -> None:
        o.visible_qty = min(o.visible_qty, leaves)
        o.leaves_qty = leaves
        self.dirty[self._key(o.side, o.price)] = None

    def level(self, side: Side, price: int) -> tuple[int, int]:
        at = [o for o in self._side[side] if o.price == price]
        return sum(o.visible_qty for o in at), len(at)

    def levels(self, side: Side, depth: int | None = None) -> list[tuple[int, int, int]]:
        prices = sorted({o.price for o in self._side[side]}, reverse=side is BUY)
        out = [(p, *self.level(side, p)) for p in prices]
        return out if depth is None else out[:depth]

    def orders(self, side: Side) -> Iterator[Order]:
        prices = sorted({o.price for o in self._side[side]}, reverse=side is BUY)
        for p in prices:
            yield from [o for o in self._side[side] if o.price == p]

    def take_dirty(self) -> list[tuple[Side, int, int, int]]:
        out = []
        for k in self.dirty:
            side, price = (SELL, k) if k > 0 else (BUY, -k)
            out.append((side, price, *self.level(side, price)))
        self.dirty.clear()
        return out
