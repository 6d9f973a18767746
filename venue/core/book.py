"""Order books of one instrument: the fast one used by the core and a naive reference one.

Both implement the same interface and are run against one shared test suite (as exchange-core does
with its direct and naive books); the core can be built on either (``Core(book_factory=...)``).

The book holds resting *visible-book* orders only (stop orders waiting for their trigger live in the
core). It does not match: the core walks ``head()`` / ``fill()``. Each book records which levels a
command touched in ``dirty`` (key ``price`` for asks, ``-price`` for bids) so the core emits one
``BookLevel`` per level per command.

The fast ``Book`` (and its ``Level``) is compiled with the core (venue/core/engine.pyx, where its
design is described) and re-exported here; ``NaiveBook`` is the plain-Python reference.
"""

from __future__ import annotations

from collections.abc import Iterator

from venue.core.engine import Book, Level, Row
from venue.core.rows import (  # noqa: F401  (re-exported: the row layout is part of the book's interface)
    ACCOUNT,
    CL_ORD_ID,
    CUM_NOTIONAL,
    CUM_QTY,
    DISPLAY_QTY,
    EXPIRE_AT,
    FIELDS,
    INSTRUMENT,
    LEAVES_QTY,
    LIVE,
    ORD_TYPE,
    ORDER_ID,
    POST_ONLY,
    PRICE,
    QTY,
    SESSION,
    SIDE,
    STOP_PRICE,
    STP,
    TIF,
    TRIGGERED,
    TS,
    VISIBLE_QTY,
    Order,
    new_row,
    row_from_json,
    row_to_json,
)
from venue.core.types import Side

BUY = Side.BUY
SELL = Side.SELL

__all__ = ["Book", "Level", "NaiveBook", "Order", "Row", "new_row", "row_from_json", "row_to_json"]


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
