"""The values a report formats once and then remembers (TransactTime, SendingTime, prices,
quantities, average prices) are exactly what formatting them afresh gives, in any order of calls
and past the point where a memo is forgotten."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from fix.codec import format_timestamp
from sessions.order_entry_codec import _MEMO, InstrumentView, fix_time
from venue.marketdata import plain

NS = st.one_of(st.integers(0, 4 * 10**18), st.integers(1_764_790_000 * 10**9, 1_764_790_003 * 10**9))
PRECISION = st.sampled_from([0, 3, 6, 9])


def fresh_fix_time(ts_ns: int, precision: int) -> str:
    secs, frac = divmod(ts_ns, 1_000_000_000)
    base = datetime.fromtimestamp(secs, UTC).strftime("%Y%m%d-%H:%M:%S")
    return base if precision <= 0 else f"{base}.{frac:09d}"[: len(base) + 1 + precision]


def fresh_timestamp(now: float, precision: int) -> bytes:
    scale = 10**precision
    sec, frac = divmod(round(now * scale), scale) if precision > 0 else (int(now), 0)
    base = datetime.fromtimestamp(sec, UTC).strftime("%Y%m%d-%H:%M:%S").encode()
    return base if precision <= 0 else base + b".%0*d" % (precision, frac)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(NS, PRECISION), min_size=1, max_size=20))
def test_transact_time_is_what_formatting_afresh_gives(calls) -> None:
    for ts, precision in calls + calls[::-1]:  # again, and in another order: the memo is hit
        assert fix_time(ts, precision) == fresh_fix_time(ts, precision)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 4e9, allow_nan=False), PRECISION), min_size=1, max_size=20),
       st.floats(0, 0.0009))
def test_sending_time_is_what_formatting_afresh_gives(calls, nudge) -> None:
    for now, precision in calls + [(now + nudge, p) for now, p in calls]:  # same unit, another ``now``
        assert format_timestamp(now, precision) == fresh_timestamp(now, precision)


def test_prices_quantities_and_average_prices_are_what_formatting_afresh_gives() -> None:
    view = InstrumentView("BTC-USDT", Decimal("0.01"), Decimal("0.0001"))
    values = list(range(0, 3 * _MEMO, 7)) + [2**62, 10**20 + 3]  # past the memo's size: forgotten, made again
    for n in values + values[::-1]:
        assert view.px(n) == plain(n * view.tick)
        assert view.qty(n) == plain(n * view.lot)
        q = n % 997 + 1
        assert view.avg_px(n * 5, q) == plain((Decimal(n * 5) * view.tick / q).quantize(view.tick / 10**6).normalize())
    assert view.avg_px(123, 0) == "0"
    assert len(view._px) <= _MEMO and len(view._qty) <= _MEMO and len(view._avg) <= _MEMO
