"""Helpers shared by the core tests: a tiny driver around Core with auto timestamps and ids."""

from __future__ import annotations

import itertools
from decimal import Decimal

from venue.core.book import Book, NaiveBook
from venue.core.commands import CancelOrder, NewOrder, ReplaceOrder
from venue.core.engine import Core
from venue.core.instruments import Instrument
from venue.core.types import Side

BOOKS = [Book, NaiveBook]
SYM = "X-Q"
B, S = Side.BUY, Side.SELL


def instrument(**kw) -> Instrument:
    base = {"symbol": SYM, "base": "X", "quote": "Q", "tick_size": Decimal("0.01"), "lot_size": Decimal("1")}
    base.update(kw)
    return Instrument(**base)


class Driver:
    """``d.new("a", B, 5, 100)`` -> events; ``d.ev(type)`` filters the last events."""

    def __init__(self, book_factory=Book, hooks=None, **inst_kw) -> None:
        self.core = Core([instrument(**inst_kw)], hooks, book_factory=book_factory)
        self._ts = itertools.count(1000)
        self._cl = itertools.count(1)
        self.last: list = []

    def ts(self) -> int:
        return next(self._ts)

    def run(self, cmd) -> list:
        self.last = self.core.process(cmd)
        return self.last

    def new(self, account: str, side: Side, qty: int, price: int | None = None, cl: str | None = None, **kw) -> list:
        cl = cl or f"c{next(self._cl)}"
        return self.run(NewOrder(self.ts(), account, kw.pop("instrument", SYM), cl, side, qty, price=price, **kw))

    def cancel(self, account: str, order_id: int | None = None, orig: str | None = None) -> list:
        return self.run(CancelOrder(self.ts(), account, SYM, f"x{next(self._cl)}", order_id=order_id,
                                    orig_cl_ord_id=orig))

    def replace(self, account: str, order_id: int, qty: int, price: int | None = None, cl: str | None = None) -> list:
        return self.run(ReplaceOrder(self.ts(), account, SYM, cl or f"r{next(self._cl)}", qty, price=price,
                                     order_id=order_id))

    def ev(self, cls) -> list:
        return [e for e in self.last if isinstance(e, cls)]

    def oid(self) -> int:
        """Order id accepted by the last command."""
        from venue.core.events import OrderAccepted

        return self.ev(OrderAccepted)[0].order_id

    def levels(self, side: Side) -> list[tuple[int, int, int]]:
        return self.core.book_levels(SYM, side)
