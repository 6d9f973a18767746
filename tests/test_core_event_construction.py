"""The core builds its hot-path events through their slots (venue/core/engine.pyx, ``_Layout``): every
event it emits must have all its dataclass fields set and equal the constructor-built event."""

from dataclasses import fields

from tools.bench_core import SYMBOL, bench_instrument, generate
from venue.core.commands import CancelOrder, NewOrder
from venue.core.engine import Core
from venue.core.events import BookLevel, OrderAccepted, OrderCancelled, OrderFilled, Trade
from venue.core.types import OrdType, Side, TimeInForce


def _check(events: list) -> set[type]:
    seen = set()
    for e in events:
        values = [getattr(e, f.name) for f in fields(e)]  # AttributeError if a field was never set
        assert type(e)(*values) == e
        seen.add(type(e))
    return seen


def test_every_event_of_the_bench_mix_has_all_fields_and_equals_its_constructed_twin():
    core = Core([bench_instrument()])
    seen: set[type] = set()
    for cmd in generate(3_000, seed=7):
        seen |= _check(core.process(cmd))
    assert {OrderAccepted, BookLevel, OrderFilled, Trade, OrderCancelled} <= seen


def test_iceberg_refresh_and_cancel_events_are_complete():
    core = Core([bench_instrument()])
    ev = core.process(NewOrder(1, "a", SYMBOL, "i", Side.SELL, 10, OrdType.LIMIT, 1_000, display_qty=3))
    ev += core.process(NewOrder(2, "b", SYMBOL, "t", Side.BUY, 4, OrdType.LIMIT, 1_000, TimeInForce.IOC))
    ev += core.process(CancelOrder(3, "a", SYMBOL, "x", order_id=1))
    assert [e.leaves_qty for e in ev if type(e) is OrderFilled] == [7, 1, 6, 0]  # maker, taker per fill
    assert _check(ev) >= {OrderAccepted, OrderFilled, Trade, OrderCancelled, BookLevel}
