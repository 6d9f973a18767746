"""Helpers shared by the core tests: the core x book pairings and a tiny driver around a core with
auto timestamps and ids."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from decimal import Decimal

from venue.core import engine
from venue.core.book import Book, NaiveBook
from venue.core.commands import CancelOrder, NewOrder, ReplaceOrder
from venue.core.instruments import Instrument
from venue.core.reference import ReferenceCore
from venue.core.types import Side

BOOKS = [Book, NaiveBook]
CORES = [engine.Core, ReferenceCore]
SYM = "X-Q"
B, S = Side.BUY, Side.SELL


@dataclass(frozen=True)
class Pairing:
    """A core class and the book it runs on: ``pairing(instruments, hooks)`` builds that core."""

    core: type
    book: type

    def __call__(self, instruments, hooks=None):
        return self.core(instruments, hooks, book_factory=self.book)

    def restore(self, snapshot: dict, hooks=None):
        return self.core.from_snapshot(snapshot, hooks, book_factory=self.book)

    def __str__(self) -> str:
        return f"{'compiled' if self.core is engine.Core else 'reference'}-{self.book.__name__}"


# every core on every book (the reference core takes the compiled book too: it builds the compiled
# rows that book needs); the first is what the venue runs
PAIRINGS = [Pairing(core, book) for core in CORES for book in BOOKS]
COMPILED = PAIRINGS[0]


def instrument(**kw) -> Instrument:
    base = {"symbol": SYM, "base": "X", "quote": "Q", "tick_size": Decimal("0.01"), "lot_size": Decimal("1")}
    base.update(kw)
    return Instrument(**base)


class Driver:
    """``d.new("a", B, 5, 100)`` -> events; ``d.ev(type)`` filters the last events."""

    def __init__(self, pairing: Pairing = COMPILED, hooks=None, **inst_kw) -> None:
        self.core = pairing([instrument(**inst_kw)], hooks)
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
