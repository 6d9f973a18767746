"""The core builds its hot-path events through their slots (venue/core/engine.pyx, ``_Layout``): every
event it emits must have all its dataclass fields set and equal the constructor-built event, and the
slots are found by field name, so an event class changed in venue/core/events.py either still gets
every field right (fields reordered) or stops the import (a field added, renamed or removed)."""

import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

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


# -- the builders bind event fields by name ------------------------------------------------------
# A child process replaces event classes in venue.core.events with modified copies (same name, module
# and field types) before it imports the compiled core, which lays out its hot events at import.
_MUTATE = """
import dataclasses, json, sys
import venue.core.events as events

mutation, names = sys.argv[1], sys.argv[2].split(",")
for name in names:
    fields = [(f.name, f.type) for f in dataclasses.fields(getattr(events, name))]
    if mutation == "added":
        fields.append(("venue_id", "int"))
    elif mutation == "renamed":
        fields[3] = ("renamed_" + fields[3][0], fields[3][1])
    elif mutation == "removed":
        del fields[-1]
    elif mutation == "reordered":
        fields.reverse()
    cls = dataclasses.make_dataclass(name, fields, slots=True)
    cls.__module__ = events.__name__
    setattr(events, name, cls)

from tests.test_core_event_construction import _bench_events_by_name

print(json.dumps(_bench_events_by_name()))
"""

HOT_EVENTS = ("OrderAccepted", "OrderFilled", "Trade", "OrderCancelled", "OrderExpired", "BookLevel")


def _bench_events_by_name() -> list[dict]:
    """The events of a short bench mix (every hot event type) as {field name: value}, by name only."""
    from venue.core import engine  # imported here: the child process patches the events first

    core = engine.Core([bench_instrument()])
    out = []
    for cmd in generate(2_000, seed=11):
        for e in core.process(cmd):
            out.append({"type": type(e).__name__, **{f.name: getattr(e, f.name) for f in fields(e)}})
    return out


def _import_with(mutation: str, names: tuple[str, ...]) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parent.parent
    return subprocess.run([sys.executable, "-c", _MUTATE, mutation, ",".join(names)], cwd=root,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("mutation", ["added", "renamed", "removed"])
@pytest.mark.parametrize("event", HOT_EVENTS)
def test_a_hot_event_whose_fields_differ_from_what_its_builder_sets_stops_the_import(mutation, event):
    # the compiled core allocates hot events without zeroing them: a field it did not know it had
    # to set would be uninitialised memory; a field it sets that is gone would write past the object
    res = _import_with(mutation, (event,))
    assert res.returncode != 0, res.stdout[-500:]
    assert "ImportError" in res.stderr and f"cannot lay out venue.core.events.{event}" in res.stderr, res.stderr
    culprit = {"added": "never set: ['venue_id']", "renamed": "not fields: [", "removed": "never set: []"}[mutation]
    assert culprit in res.stderr


def test_reordered_event_fields_are_still_set_by_name():
    res = _import_with("reordered", HOT_EVENTS)
    assert res.returncode == 0, res.stderr[-2000:]
    reordered = json.loads(res.stdout)
    assert {e["type"] for e in reordered} >= set(HOT_EVENTS)
    assert reordered == json.loads(json.dumps(_bench_events_by_name()))
