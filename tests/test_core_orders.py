"""Order management in the core: validation, cancel, replace, mass cancel, kill switch, STP, hooks; run on
every pairing of core (compiled, reference) and book (fast, naive)."""

from __future__ import annotations

import pytest

from tests.core_helpers import SYM, B, Driver, S
from venue.core.commands import Deposit, MassCancel, SetAccountStp, SetKillSwitch, Tick
from venue.core.events import (
    BookLevel,
    CancelRejected,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderRejected,
    OrderReplaced,
    OrderRestated,
    Trade,
    TradingStatusChanged,
)
from venue.core.types import OrdType, RejectCode, StpMode, TimeInForce


@pytest.fixture
def d(pairing):
    return Driver(pairing)


def code(d) -> int:
    return (d.ev(OrderRejected) or d.ev(CancelRejected))[0].code


# -- validation ------------------------------------------------------------------------------
def test_unknown_instrument_is_rejected(d):
    d.new("a", B, 1, 100, instrument="NOPE")
    assert code(d) == RejectCode.UNKNOWN_INSTRUMENT


@pytest.mark.parametrize("price", [0, -5, None])
def test_limit_without_a_positive_tick_price_is_rejected(d, price):
    d.new("a", B, 1, price)
    assert code(d) == RejectCode.BAD_TICK


@pytest.mark.parametrize("qty", [0, -1])
def test_non_positive_quantity_is_rejected_as_bad_lot(d, qty):
    d.new("a", B, qty, 100)
    assert code(d) == RejectCode.BAD_LOT


def test_quantity_limits_are_enforced(pairing):
    d = Driver(pairing, min_qty=2, max_qty=10)
    d.new("a", B, 1, 100)
    assert code(d) == RejectCode.QTY_TOO_SMALL
    d.new("a", B, 11, 100)
    assert code(d) == RejectCode.QTY_TOO_LARGE


def test_quantities_beyond_2_to_the_62_lots_are_too_large_even_when_the_instrument_allows_them(pairing):
    # the core holds quantities as 64-bit integers: it refuses, never overflows
    d = Driver(pairing, max_qty=10**30)
    d.new("a", B, 2**62 + 1, 100)
    assert code(d) == RejectCode.QTY_TOO_LARGE
    d.new("a", B, 2**62, 100)
    oid = d.oid()
    d.replace("a", oid, 2**62 + 1)
    assert code(d) == RejectCode.QTY_TOO_LARGE
    assert d.core.order(oid).qty == 2**62


def test_min_notional_is_enforced_exactly(pairing):
    from decimal import Decimal

    d = Driver(pairing, min_notional=Decimal("5.00"))  # tick 0.01 x lot 1: 500 ticks*lots
    d.new("a", B, 4, 124)  # 4.96
    assert code(d) == RejectCode.NOTIONAL_TOO_SMALL
    d.new("a", B, 4, 125)  # 5.00
    assert d.ev(OrderAccepted)


def test_duplicate_cl_ord_id_among_open_orders_is_rejected(d):
    d.new("a", B, 1, 100, cl="same")
    d.new("a", B, 1, 99, cl="same")
    assert code(d) == RejectCode.DUPLICATE_CL_ORD_ID
    d.new("other", B, 1, 99, cl="same")
    assert d.ev(OrderAccepted)


def test_cl_ord_id_can_be_reused_once_the_order_is_closed(d):
    d.new("a", B, 1, 100, cl="same")
    d.new("b", S, 1, 100)
    d.new("a", B, 1, 100, cl="same")
    assert d.ev(OrderAccepted)


def test_gtd_without_future_expiry_is_invalid(d):
    d.new("a", B, 1, 100, tif=TimeInForce.GTD)
    assert code(d) == RejectCode.INVALID_ORDER


def test_rejected_order_leaves_no_trace(d):
    d.new("a", B, 0, 100)
    assert [type(e) for e in d.last] == [OrderRejected]
    assert d.core.open_orders() == []


# -- cancel ----------------------------------------------------------------------------------
def test_cancel_removes_the_order_and_reports_the_level(d):
    d.new("a", B, 3, 100, cl="c-1")
    oid = d.oid()
    ev = d.cancel("a", orig="c-1")
    assert [type(e) for e in ev] == [OrderCancelled, BookLevel]
    c = ev[0]
    assert (c.order_id, c.orig_cl_ord_id, c.cancelled_qty, c.reason) == (oid, "c-1", 3, "client")
    assert ev[1].qty == 0 and d.levels(B) == [] and d.core.order(oid) is None


def test_cancel_of_unknown_order_is_rejected(d):
    d.cancel("a", order_id=999)
    assert code(d) == RejectCode.UNKNOWN_ORDER and not d.ev(CancelRejected)[0].is_replace


def test_another_accounts_order_cannot_be_cancelled(d):
    d.new("a", B, 3, 100)
    d.cancel("b", order_id=d.oid())
    assert code(d) == RejectCode.UNKNOWN_ORDER
    assert d.levels(B) == [(100, 3, 1)]


def test_cancel_of_a_waiting_stop(d):
    d.new("a", B, 3, ord_type=OrdType.STOP, stop_price=120)
    oid = d.oid()
    d.cancel("a", order_id=oid)
    assert d.ev(OrderCancelled)[0].order_id == oid and d.core.open_orders() == []


# -- replace ---------------------------------------------------------------------------------
def test_replace_lowering_qty_keeps_time_priority(d):
    d.new("a", S, 5, 100)
    first = d.oid()
    d.new("b", S, 5, 100)
    d.replace("a", first, 3)
    assert d.ev(OrderReplaced)[0].kept_priority
    d.new("c", B, 1, 100)
    assert d.ev(Trade)[0].maker_order_id == first


def test_replace_raising_qty_loses_time_priority(d):
    d.new("a", S, 5, 100)
    first = d.oid()
    d.new("b", S, 5, 100)
    second = d.oid()
    d.replace("a", first, 8)
    assert not d.ev(OrderReplaced)[0].kept_priority
    d.new("c", B, 1, 100)
    assert d.ev(Trade)[0].maker_order_id == second
    assert d.levels(S) == [(100, 12, 2)]


def test_replace_changing_price_loses_time_priority(d):
    d.new("a", S, 5, 101)
    first = d.oid()
    d.new("b", S, 5, 100)
    second = d.oid()
    d.replace("a", first, 5, price=100)
    d.new("c", B, 1, 100)
    assert d.ev(Trade)[0].maker_order_id == second


def test_replace_to_qty_at_or_below_filled_cancels(d):
    d.new("a", S, 5, 100)
    oid = d.oid()
    d.new("b", B, 2, 100)
    d.replace("a", oid, 2)
    assert d.ev(OrderCancelled)[0].order_id == oid and d.levels(S) == []


def test_replace_that_crosses_trades(d):
    d.new("a", S, 5, 101)
    d.new("b", B, 5, 100)
    oid = d.oid()
    d.replace("b", oid, 5, price=101)
    assert d.ev(OrderReplaced) and d.ev(Trade)[0].taker_order_id == oid


def test_replace_updates_the_cl_ord_id(d):
    d.new("a", B, 5, 100, cl="old")
    oid = d.oid()
    d.replace("a", oid, 4, cl="new")
    assert d.core.order_by_cl_ord_id("a", "new").order_id == oid
    assert d.core.order_by_cl_ord_id("a", "old") is None


def test_replace_of_unknown_order_is_rejected(d):
    d.replace("a", 77, 4)
    assert code(d) == RejectCode.UNKNOWN_ORDER and d.ev(CancelRejected)[0].is_replace


# -- mass cancel and kill switch -------------------------------------------------------------
def test_mass_cancel_by_account_and_side(d):
    d.new("a", B, 1, 100)
    d.new("a", S, 1, 110)
    d.new("b", B, 1, 99)
    d.run(MassCancel(d.ts(), "m1", account="a", side=S))
    (c,) = d.ev(OrderCancelled)
    assert (c.account, c.side, c.reason, c.cl_ord_id) == ("a", S, "mass_cancel", "m1")
    assert len(d.core.open_orders()) == 2


def test_mass_cancel_by_session_can_spare_gtc(d):
    d.new("a", B, 1, 100, session="s1")
    d.new("a", B, 1, 99, session="s1", tif=TimeInForce.DAY)
    d.new("a", B, 1, 98, session="s2", tif=TimeInForce.DAY)
    d.run(MassCancel(d.ts(), session_filter="s1", spare_gtc=True, reason="cancel_on_disconnect"))
    (c,) = d.ev(OrderCancelled)
    assert c.price == 99 and c.reason == "cancel_on_disconnect"


def test_kill_switch_cancels_everything_and_refuses_new_orders(d):
    d.new("a", B, 1, 100)
    d.new("a", S, 1, ord_type=OrdType.STOP, stop_price=90)
    d.run(SetKillSwitch(d.ts(), "a", True))
    assert {c.reason for c in d.ev(OrderCancelled)} == {"kill_switch"} and len(d.ev(OrderCancelled)) == 2
    d.new("a", B, 1, 100)
    assert code(d) == RejectCode.KILL_SWITCH
    d.run(SetKillSwitch(d.ts(), "a", False))
    d.new("a", B, 1, 100)
    assert d.ev(OrderAccepted)


# -- self-trade prevention -------------------------------------------------------------------
def test_default_stp_expires_the_taker(d):
    d.new("a", S, 5, 100)
    d.new("a", B, 3, 100)
    assert d.ev(Trade) == []
    (x,) = d.ev(OrderExpired)
    assert (x.side, x.reason) == (B, "self_trade") and d.levels(S) == [(100, 5, 1)]


def test_stp_expire_maker_cancels_own_resting_order_and_goes_on(d):
    d.new("a", S, 5, 100)
    own = d.oid()
    d.new("b", S, 5, 101)
    d.new("a", B, 3, 101, stp=StpMode.EXPIRE_MAKER)
    assert d.ev(OrderExpired)[0].order_id == own
    assert d.ev(Trade)[0].maker_account == "b"


def test_stp_expire_both(d):
    d.new("a", S, 5, 100)
    d.new("a", B, 3, 100, stp=StpMode.EXPIRE_BOTH)
    assert len(d.ev(OrderExpired)) == 2 and d.ev(Trade) == []
    assert d.levels(S) == [] and d.levels(B) == []


def test_stp_decrement_and_cancel_reduces_both(d):
    d.new("a", S, 5, 100)
    maker = d.oid()
    d.new("a", B, 3, 100, stp=StpMode.DECREMENT_CANCEL)
    (r,) = d.ev(OrderRestated)
    (x,) = d.ev(OrderExpired)
    assert (r.order_id, r.qty, r.leaves_qty) == (maker, 2, 2)
    assert x.side == B and x.expired_qty == 3
    assert d.levels(S) == [(100, 2, 1)] and d.ev(Trade) == []


def test_account_default_stp_applies_and_order_override_wins(d):
    d.run(SetAccountStp(d.ts(), "a", StpMode.EXPIRE_MAKER))
    d.new("a", S, 5, 100)
    d.new("a", B, 1, 100)
    assert d.ev(OrderExpired)[0].side == S
    d.new("a", S, 5, 100)
    d.new("a", B, 1, 100, stp=StpMode.NONE)
    assert d.ev(Trade)  # explicitly allowed self-trade


# -- numbering, queries, hooks ---------------------------------------------------------------
def test_event_sequence_is_gapless_across_commands(d):
    seqs = []
    for i in range(20):
        seqs += [e.seq for e in d.new("a" if i % 2 else "b", B if i % 3 else S, 1 + i % 4, 100 + i % 3)]
        seqs += [e.seq for e in d.cancel("a", order_id=i)]
    assert seqs == list(range(1, len(seqs) + 1)) and d.core.seq == len(seqs)


def test_open_orders_filters_and_book_depth(d):
    d.new("a", B, 1, 100, session="s1")
    d.new("a", B, 2, 99, session="s2")
    d.new("b", B, 3, 98, session="s1")
    assert [o.price for o in d.core.open_orders(account="a")] == [100, 99]
    assert [o.price for o in d.core.open_orders(session="s1")] == [100, 98]
    assert d.core.book_levels(SYM, B, depth=2) == [(100, 1, 1), (99, 2, 1)]


class RecordingHooks:
    def __init__(self):
        self.seen: list = []
        self.state = {"n": 0}

    def pre_new(self, cmd, order_id, inst):
        return (RejectCode.INSUFFICIENT_BALANCE, "no money") if cmd.account == "poor" else None

    def pre_replace(self, cmd, order, inst):
        return (RejectCode.INSUFFICIENT_BALANCE, "no money") if cmd.qty > 100 else None

    def on_events(self, events):
        self.seen.extend(events)
        self.state["n"] += 1
        return [TradingStatusChanged(0, events[0].ts, "posting", "open")] if events else []

    def apply(self, cmd):
        return [TradingStatusChanged(0, cmd.ts, "deposit", "open")]

    def snapshot(self):
        return dict(self.state)

    def restore(self, d):
        self.state = dict(d)


def test_hooks_can_reject_new_orders_and_replaces(pairing):
    d = Driver(pairing, hooks=RecordingHooks())
    d.new("poor", B, 1, 100)
    assert code(d) == RejectCode.INSUFFICIENT_BALANCE
    d.new("rich", B, 1, 100)
    d.replace("rich", d.oid(), 101)
    assert code(d) == RejectCode.INSUFFICIENT_BALANCE


def test_hook_events_are_numbered_into_the_sequence(pairing):
    h = RecordingHooks()
    d = Driver(pairing, hooks=h)
    ev = d.new("rich", B, 1, 100)
    assert [e.seq for e in ev] == [1, 2, 3] and ev[-1].instrument == "posting"
    assert h.seen == ev[:2]
    ev = d.run(Deposit(d.ts(), "rich", "Q", 10))
    assert [e.instrument for e in ev] == ["deposit", "posting"] and [e.seq for e in ev] == [4, 5]


def test_snapshot_carries_the_hooks_state(pairing):
    h = RecordingHooks()
    d = Driver(pairing, hooks=h)
    d.new("rich", B, 1, 100)
    h2 = RecordingHooks()
    pairing.restore(d.core.snapshot(), h2)
    assert h2.state == {"n": 1}


def test_replace_of_a_waiting_stop_stays_in_the_stop_book(d):
    d.new("a", B, 3, 105, ord_type=OrdType.STOP_LIMIT, stop_price=104)
    oid = d.oid()
    d.replace("a", oid, 5, price=106)
    r = d.ev(OrderReplaced)[0]
    assert (r.price, r.qty, r.kept_priority) == (106, 5, False)
    assert d.levels(B) == [] and d.core.order(oid).is_stop_waiting


def test_replace_is_refused_while_halted(d):
    from venue.core.commands import SetTradingStatus
    from venue.core.types import TradingStatus

    d.new("a", B, 3, 100)
    oid = d.oid()
    d.run(SetTradingStatus(d.ts(), SYM, TradingStatus.HALTED))
    d.replace("a", oid, 2)
    assert code(d) == RejectCode.INSTRUMENT_HALTED


def test_replace_to_a_cl_ord_id_in_use_is_refused(d):
    d.new("a", B, 3, 100, cl="one")
    oid = d.oid()
    d.new("a", B, 3, 99, cl="two")
    d.replace("a", oid, 2, cl="two")
    assert code(d) == RejectCode.DUPLICATE_CL_ORD_ID


def test_iceberg_replace_keeps_showing_at_most_its_display(d):
    d.new("a", S, 10, 100, display_qty=3)
    oid = d.oid()
    d.replace("a", oid, 20)
    assert d.levels(S) == [(100, 3, 1)] and d.core.order(oid).leaves_qty == 20


def test_gtd_stop_expires_while_waiting(d):
    d.new("a", B, 1, ord_type=OrdType.STOP, stop_price=150, tif=TimeInForce.GTD, expire_at=2000)
    d.run(Tick(2000))
    assert d.ev(OrderExpired)[0].reason == "gtd" and d.core.open_orders() == []


def test_market_order_meets_own_order_under_default_stp(d):
    d.new("a", S, 5, 100)
    d.new("a", B, 2, ord_type=OrdType.MARKET)
    assert d.ev(Trade) == [] and d.ev(OrderExpired)[0].reason == "self_trade"


class CountingHooks(RecordingHooks):
    def __init__(self):
        super().__init__()
        self.pre_new_calls = []

    def pre_new(self, cmd, order_id, inst):
        self.pre_new_calls.append(order_id)
        return super().pre_new(cmd, order_id, inst)


def test_pre_new_sees_only_valid_orders_and_accepted_ones_always_follow(pairing):
    h = CountingHooks()
    d = Driver(pairing, hooks=h)
    d.new("rich", B, 0, 100)  # invalid: the stage is never asked
    d.new("rich", B, 1, 100, post_only=True)
    d.new("rich", S, 1, 100, post_only=True)  # would take: rejected by the core first
    assert len(h.pre_new_calls) == 1
    assert d.ev(OrderRejected)[0].code == RejectCode.POST_ONLY_WOULD_TAKE
    d.new("rich", S, 5, 101, tif=TimeInForce.FOK)  # accepted, then expired (released by the event)
    assert h.pre_new_calls[-1] == d.oid() and d.ev(OrderExpired)[0].reason == "fok"
