"""Matching semantics of the core, run on every pairing of core (compiled, reference) and book (fast, naive)."""

from __future__ import annotations

import pytest

from tests.core_helpers import SYM, B, Driver, S
from venue.core.commands import EndOfSession, SetTradingStatus, Tick
from venue.core.events import (
    BookLevel,
    OrderAccepted,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderTriggered,
    Trade,
)
from venue.core.types import OrdType, RejectCode, TimeInForce, TradingStatus


@pytest.fixture
def d(pairing):
    return Driver(pairing)


def test_limit_order_rests_and_reports_its_level(d):
    ev = d.new("a", B, 5, 100)
    assert [type(e) for e in ev] == [OrderAccepted, BookLevel]
    assert ev[1].price == 100 and ev[1].qty == 5 and ev[1].orders == 1
    assert d.levels(B) == [(100, 5, 1)]


def test_better_price_fills_first(d):
    d.new("a", S, 5, 102)
    d.new("b", S, 5, 101)
    d.new("c", B, 5, 102)
    fills = d.ev(Trade)
    assert [(t.price, t.qty) for t in fills] == [(101, 5)]
    assert d.levels(S) == [(102, 5, 1)]


def test_earlier_order_fills_first_at_one_price(d):
    d.new("a", S, 5, 100)
    first = d.oid()
    d.new("b", S, 5, 100)
    d.new("c", B, 5, 100)
    assert d.ev(Trade)[0].maker_order_id == first


def test_trade_reports_both_sides_and_the_print(d):
    d.new("maker", S, 10, 100)
    maker = d.oid()
    ev = d.new("taker", B, 4, 101)
    taker = d.oid()
    mf, tf = d.ev(OrderFilled)
    (t,) = d.ev(Trade)
    assert (mf.order_id, mf.aggressor, mf.leaves_qty, mf.cum_qty, mf.cum_notional) == (maker, False, 6, 4, 400)
    assert (tf.order_id, tf.aggressor, tf.leaves_qty, tf.cum_qty) == (taker, True, 0, 4)
    assert (t.price, t.qty, t.aggressor_side, t.maker_order_id, t.taker_order_id) == (100, 4, B, maker, taker)
    assert mf.trade_id == tf.trade_id == t.trade_id
    assert [e.seq for e in ev] == list(range(ev[0].seq, ev[0].seq + len(ev)))


def test_partial_fill_rests_the_remainder_at_its_limit(d):
    d.new("a", S, 3, 100)
    d.new("b", B, 10, 100)
    assert d.levels(B) == [(100, 7, 1)] and d.levels(S) == []


def test_market_order_expires_what_the_book_cannot_fill(d):
    d.new("a", S, 3, 100)
    d.new("b", B, 10, ord_type=OrdType.MARKET)
    (x,) = d.ev(OrderExpired)
    assert d.ev(Trade)[0].qty == 3 and (x.expired_qty, x.reason) == (7, "market_no_liquidity")


def test_market_order_never_trades_outside_the_price_band(pairing):
    d = Driver(pairing, band_bps=100, ref_price=10_000)  # band 9900..10100
    d.new("a", S, 2, 10_100)
    d.new("a", S, 1, 9_950)
    d.new("c", B, 1, 9_950)  # last trade 9950: band now 9851..10049
    d.new("a", S, 2, 10_000)
    d.new("b", B, 10, ord_type=OrdType.MARKET)
    assert [t.price for t in d.ev(Trade)] == [10_000]
    assert d.ev(OrderExpired)[0].reason == "price_band"
    assert d.levels(S) == [(10_100, 2, 1)]


def test_limit_outside_the_band_is_rejected(pairing):
    d = Driver(pairing, band_bps=100, ref_price=10_000)
    d.new("a", B, 1, 10_101)
    assert d.ev(OrderRejected)[0].code == RejectCode.OUTSIDE_PRICE_BAND
    d.new("a", B, 1, 10_100)
    assert d.ev(OrderAccepted)


def test_band_moves_with_the_last_trade(pairing):
    d = Driver(pairing, band_bps=100, ref_price=10_000)
    d.new("a", S, 1, 10_100)
    d.new("b", B, 1, 10_100)
    d.new("a", B, 1, 10_200)  # 10_100 * 1.01 = 10_201
    assert d.ev(OrderAccepted)


def test_ioc_expires_its_remainder(d):
    d.new("a", S, 3, 100)
    d.new("b", B, 5, 100, tif=TimeInForce.IOC)
    assert d.ev(OrderExpired)[0].expired_qty == 2 and d.ev(OrderExpired)[0].reason == "ioc"
    assert d.levels(B) == []


def test_fok_that_cannot_fill_completely_does_not_fill_at_all(d):
    d.new("a", S, 3, 100)
    d.new("b", B, 5, 100, tif=TimeInForce.FOK)
    assert d.ev(Trade) == [] and d.ev(OrderExpired)[0].reason == "fok"
    assert d.levels(S) == [(100, 3, 1)]


def test_fok_that_can_fill_fills_completely(d):
    d.new("a", S, 3, 100)
    d.new("a", S, 3, 101)
    d.new("b", B, 5, 101, tif=TimeInForce.FOK)
    assert sum(t.qty for t in d.ev(Trade)) == 5


def test_fok_counts_hidden_iceberg_quantity(d):
    d.new("a", S, 10, 100, display_qty=2)
    d.new("b", B, 9, 100, tif=TimeInForce.FOK)
    assert sum(t.qty for t in d.ev(Trade)) == 9


def test_post_only_that_would_take_is_rejected(d):
    d.new("a", S, 3, 100)
    d.new("b", B, 1, 100, post_only=True)
    assert d.ev(OrderRejected)[0].code == RejectCode.POST_ONLY_WOULD_TAKE
    assert d.levels(S) == [(100, 3, 1)]


def test_post_only_that_would_not_take_rests(d):
    d.new("a", S, 3, 100)
    d.new("b", B, 1, 99, post_only=True)
    assert d.levels(B) == [(99, 1, 1)]


def test_iceberg_shows_only_its_display_quantity(d):
    d.new("a", S, 10, 100, display_qty=3)
    assert d.last[-1].qty == 3 and d.levels(S) == [(100, 3, 1)]


def test_iceberg_refresh_goes_behind_later_orders(d):
    d.new("a", S, 10, 100, display_qty=3)
    ice = d.oid()
    d.new("b", S, 2, 100)
    other = d.oid()
    d.new("c", B, 4, 100)
    assert [t.maker_order_id for t in d.ev(Trade)] == [ice, other]
    assert d.levels(S) == [(100, 4, 2)]  # refreshed 3 of the iceberg + 1 left of the other


def test_gtd_order_expires_at_its_time(d):
    d.new("a", B, 1, 100, tif=TimeInForce.GTD, expire_at=5000)
    d.run(Tick(4999))
    assert d.last == []
    d.run(Tick(5000))
    assert d.ev(OrderExpired)[0].reason == "gtd" and d.levels(B) == []


def test_end_of_session_expires_only_day_orders(d):
    d.new("a", B, 1, 100, tif=TimeInForce.DAY)
    d.new("a", B, 1, 99)
    d.run(EndOfSession(d.ts()))
    assert [e.reason for e in d.ev(OrderExpired)] == ["day"]
    assert d.levels(B) == [(99, 1, 1)]


def test_stop_triggers_on_last_trade_then_works_as_market(d):
    d.new("s", B, 2, ord_type=OrdType.STOP, stop_price=101)
    stop = d.oid()
    d.new("a", S, 5, 101)
    d.new("b", B, 1, 101)  # trade at 101 triggers the stop
    kinds = [type(e) for e in d.last]
    assert OrderTriggered in kinds
    trig = kinds.index(OrderTriggered)
    assert d.last[trig].order_id == stop
    taker = d.ev(OrderAccepted)[0].order_id
    assert [t.taker_order_id for t in d.ev(Trade)] == [taker, stop]
    assert OrderFilled in kinds[trig:]


def test_stop_limit_triggers_and_rests_at_its_limit(d):
    d.new("s", S, 2, 95, ord_type=OrdType.STOP_LIMIT, stop_price=99)
    d.new("a", B, 1, 99)
    d.new("b", S, 1, 99)
    assert d.ev(OrderTriggered) and d.levels(S) == [(95, 2, 1)]


def test_stops_trigger_in_price_then_time_order(d):
    d.new("s1", B, 1, ord_type=OrdType.STOP, stop_price=102)
    late = d.oid()
    d.new("s2", B, 1, ord_type=OrdType.STOP, stop_price=101)
    low = d.oid()
    d.new("s3", B, 1, ord_type=OrdType.STOP, stop_price=101)
    low2 = d.oid()
    d.new("a", S, 20, 103)
    d.new("b", B, 1, 103)
    assert [e.order_id for e in d.ev(OrderTriggered)] == [low, low2, late]


def test_stop_already_reached_triggers_on_entry(d):
    d.new("a", S, 5, 100)
    d.new("b", B, 1, 100)
    d.new("s", B, 1, ord_type=OrdType.STOP, stop_price=99)
    assert d.ev(OrderTriggered) and d.ev(Trade)


def test_halted_instrument_rejects_new_orders_but_allows_cancels(d):
    d.new("a", B, 1, 100)
    oid = d.oid()
    d.run(SetTradingStatus(d.ts(), SYM, TradingStatus.HALTED))
    assert d.last[0].status == TradingStatus.HALTED
    d.new("b", S, 1, 100)
    assert d.ev(OrderRejected)[0].code == RejectCode.INSTRUMENT_HALTED
    d.cancel("a", order_id=oid)
    assert d.levels(B) == []


def test_closed_instrument_rejects_new_orders(d):
    d.run(SetTradingStatus(d.ts(), SYM, TradingStatus.CLOSED))
    d.new("b", S, 1, 100)
    assert d.ev(OrderRejected)[0].code == RejectCode.INSTRUMENT_CLOSED


def test_resumed_instrument_matches_again(d):
    d.new("a", B, 1, 100)
    d.run(SetTradingStatus(d.ts(), SYM, TradingStatus.HALTED))
    d.run(SetTradingStatus(d.ts(), SYM, TradingStatus.OPEN))
    d.new("b", S, 1, 100)
    assert d.ev(Trade)
