"""The core builds its hot-path events through their slots (venue/core/engine.pyx, ``_Layout``): every
event it emits must have all its dataclass fields set and equal the constructor-built event."""

import sys
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


def test_hot_events_take_and_release_exactly_one_reference_per_field():
    # the core builds these events through their slots (no __init__): a missing INCREF would free a
    # string still in use, an extra one would leak it; after the order is gone and its events are
    # dropped, a value seen only by this order is back to the references the test itself holds
    session, cl = "".join(["sess", "ion-7"]), "".join(["cl-", "7"])
    base_session, base_cl = sys.getrefcount(session), sys.getrefcount(cl)
    core = Core([bench_instrument()])
    ev = core.process(NewOrder(1, "a", SYMBOL, cl, Side.SELL, 10, OrdType.LIMIT, 1_000, session=session))
    ev += core.process(NewOrder(2, "b", SYMBOL, "t", Side.BUY, 4, OrdType.LIMIT, 1_000, TimeInForce.IOC))
    ev += core.process(CancelOrder(3, "a", SYMBOL, "x", order_id=1, session=session))
    assert sys.getrefcount(session) > base_session and sys.getrefcount(cl) > base_cl
    assert _check(ev) >= {OrderAccepted, OrderFilled, Trade, OrderCancelled, BookLevel}
    del ev
    assert (sys.getrefcount(session), sys.getrefcount(cl)) == (base_session, base_cl)
