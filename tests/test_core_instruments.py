"""Instruments: exact Decimal <-> ticks/lots conversion, limits, band."""

from __future__ import annotations

from decimal import Decimal

import pytest

from venue.core.instruments import Instrument, OffGridError


def inst(**kw) -> Instrument:
    base = {"symbol": "BTC-USD", "base": "BTC", "quote": "USD", "tick_size": Decimal("0.05"),
            "lot_size": Decimal("0.001")}
    base.update(kw)
    return Instrument(**base)


def test_price_on_the_tick_converts_exactly_both_ways():
    i = inst()
    assert i.price_to_ticks(Decimal("123.45")) == 2469
    assert i.price_to_ticks("123.450000") == 2469
    assert i.ticks_to_price(2469) == Decimal("123.45")


def test_price_off_the_tick_raises():
    with pytest.raises(OffGridError):
        inst().price_to_ticks(Decimal("123.44"))


def test_quantity_converts_to_whole_lots_or_raises():
    i = inst()
    assert i.qty_to_lots("1.5") == 1500 and i.lots_to_qty(1500) == Decimal("1.5")
    with pytest.raises(OffGridError):
        i.qty_to_lots("0.0005")


def test_floats_are_refused():
    with pytest.raises(TypeError):
        inst().price_to_ticks(1.5)
    with pytest.raises(TypeError):
        inst(tick_size=0.01)


def test_garbage_is_refused():
    with pytest.raises(OffGridError):
        inst().price_to_ticks("abc")
    with pytest.raises(OffGridError):
        inst().price_to_ticks("Infinity")


def test_min_notional_is_rounded_up_to_whole_ticks_times_lots():
    # tick*lot = 0.00005; 1.00001 / 0.00005 = 20000.2 -> 20001
    assert inst(min_notional=Decimal("1.00001")).min_notional_units == 20001
    assert inst(min_notional=Decimal("1")).min_notional_units == 20000


def test_band_is_an_inclusive_integer_range_around_the_reference():
    i = inst(band_bps=250, ref_price=1001)
    assert i.band() == (976, 1026)  # 1001*0.975=975.975 -> 976 ; 1001*1.025=1026.025 -> 1026
    assert inst().band() is None


def test_round_trip_through_a_dict():
    i = inst(min_notional=Decimal("10"), band_bps=100, ref_price=5, min_qty=2, max_qty=9)
    assert Instrument.from_dict(i.to_dict()) == i
