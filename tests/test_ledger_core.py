"""The stage wired into the real Core: deposits as journaled events, rejects, releases on the
core's own cancels and expiries, determinism."""

from decimal import Decimal

from venue.core.assets import Assets
from venue.core.commands import (
    CancelOrder,
    Deposit,
    EndOfSession,
    NewOrder,
    ReplaceOrder,
    SetAccountRisk,
    SetKillSwitch,
    SetKycLimits,
    Withdraw,
)
from venue.core.engine import Core
from venue.core.events import (
    AccountRiskChanged,
    CancelRejected,
    KycLimitsChanged,
    LedgerEntry,
    LedgerRejected,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderRejected,
    Trade,
)
from venue.core.fees import fee_units
from venue.core.ledger import order_need
from venue.core.risk import AccountRisk, KycLimits
from venue.core.stage import RiskLedgerStage
from venue.core.types import OrdType, RejectCode, Side, StpMode, TimeInForce

from .test_ledger_support import FEES, T0, btc_usdt, eth_btc

USDT, BTC = 10**9, 10**7  # 1000 USDT, 0.1 BTC


def venue(*accounts: str) -> tuple[Core, RiskLedgerStage]:
    stage = RiskLedgerStage({a: AccountRisk(a) for a in accounts}, Assets(), FEES)
    core = Core([btc_usdt(), eth_btc()], hooks=stage)
    for a in accounts:
        core.process(Deposit(T0, a, "USDT", USDT, f"seed-{a}"))
        core.process(Deposit(T0, a, "BTC", BTC, f"seed-{a}"))
    return core, stage


def limit(ts, acc, side, qty, price, **kw) -> NewOrder:
    return NewOrder(ts, acc, "BTC-USDT", f"c{ts}", side, qty, OrdType.LIMIT, price, **kw)


def test_deposit_through_the_core_is_a_numbered_ledger_event():
    core = Core([btc_usdt()], hooks=RiskLedgerStage({}, Assets(), FEES))
    (e,) = core.process(Deposit(T0, "alice", "USDT", 123, "bank-7"))
    assert isinstance(e, LedgerEntry) and e.seq == 1 and e.kind == "deposit" and e.ref == "bank-7"
    assert core.seq == 1


def test_withdraw_over_available_through_the_core_is_refused():
    core, stage = venue("alice")
    core.process(limit(T0 + 1, "alice", Side.BUY, 100, 5_000_000))  # reserves ~501 USDT
    (e,) = core.process(Withdraw(T0 + 2, "alice", "USDT", 600_000_000))
    assert isinstance(e, LedgerRejected) and e.code == RejectCode.INSUFFICIENT_BALANCE
    assert stage.balance("alice", "USDT")[0] == USDT


def test_insufficient_balance_becomes_an_order_reject_and_uses_no_order_id():
    core, stage = venue("alice")
    (rej,) = core.process(limit(T0 + 1, "alice", Side.BUY, 300, 5_000_000))  # 1500 USDT > 1000
    assert isinstance(rej, OrderRejected) and rej.code == RejectCode.INSUFFICIENT_BALANCE
    acc = core.process(limit(T0 + 2, "alice", Side.BUY, 1, 5_000_000))
    assert acc[0].order_id == 1
    stage.check_invariants(core.open_orders())


def test_trade_through_the_core_settles_at_the_maker_price():
    core, stage = venue("alice", "bob")
    core.process(limit(T0 + 1, "bob", Side.SELL, 10, 4_900_000))
    events = core.process(limit(T0 + 2, "alice", Side.BUY, 10, 5_000_000))
    assert any(isinstance(e, Trade) for e in events)
    quote = 10 * 4_900_000
    assert stage.balance("alice", "USDT") == (USDT - quote - fee_units(quote, 20), 0)
    assert stage.balance("bob", "USDT") == (USDT + quote - fee_units(quote, 10), 0)
    assert stage.balance("alice", "BTC") == (BTC + 100_000, 0)
    stage.check_invariants(core.open_orders())


def test_kill_switch_cancels_through_the_core_and_releases_every_reservation():
    core, stage = venue("alice")
    core.process(limit(T0 + 1, "alice", Side.BUY, 10, 5_000_000))
    core.process(limit(T0 + 2, "alice", Side.SELL, 5, 5_100_000))
    events = core.process(SetKillSwitch(T0 + 3, "alice", True))
    assert sum(isinstance(e, OrderCancelled) for e in events) == 2
    assert stage.balance("alice", "USDT") == (USDT, 0) and stage.balance("alice", "BTC") == (BTC, 0)
    (rej,) = core.process(limit(T0 + 4, "alice", Side.BUY, 1, 5_000_000))
    assert rej.code == RejectCode.KILL_SWITCH
    stage.check_invariants(core.open_orders())


def test_fok_that_cannot_fill_releases_its_reservation():
    core, stage = venue("alice", "bob")
    core.process(limit(T0 + 1, "bob", Side.SELL, 3, 5_000_000))
    events = core.process(limit(T0 + 2, "alice", Side.BUY, 10, 5_000_000, tif=TimeInForce.FOK))
    assert any(isinstance(e, OrderExpired) and e.reason == "fok" for e in events)
    assert stage.balance("alice", "USDT") == (USDT, 0)
    stage.check_invariants(core.open_orders())


def test_day_orders_expired_at_end_of_session_release():
    core, stage = venue("alice")
    core.process(limit(T0 + 1, "alice", Side.SELL, 7, 5_100_000, tif=TimeInForce.DAY))
    core.process(EndOfSession(T0 + 2))
    assert stage.balance("alice", "BTC") == (BTC, 0)
    stage.check_invariants(core.open_orders())


def test_stp_decrement_through_the_core_keeps_reservations_exact():
    core, stage = venue("alice")
    core.process(limit(T0 + 1, "alice", Side.SELL, 10, 5_000_000))
    core.process(limit(T0 + 2, "alice", Side.BUY, 4, 5_000_000, stp=StpMode.DECREMENT_CANCEL))
    assert stage.balance("alice", "BTC")[1] == 6 * 10_000
    stage.check_invariants(core.open_orders())


def test_replace_refused_for_balance_keeps_the_order_and_its_reservation():
    core, stage = venue("alice")
    core.process(limit(T0 + 1, "alice", Side.BUY, 150, 5_000_000))  # ~751.5 USDT reserved
    (rej,) = core.process(ReplaceOrder(T0 + 2, "alice", "BTC-USDT", "r1", 250, order_id=1))
    assert isinstance(rej, CancelRejected) and rej.code == RejectCode.INSUFFICIENT_BALANCE
    units = stage.ledger.units["BTC-USDT"]
    assert stage.balance("alice", "USDT")[1] == order_need(units, Side.BUY, 5_000_000, 150, 20)
    stage.check_invariants(core.open_orders())


def test_market_buy_through_the_core_pays_only_what_it_traded():
    core, stage = venue("alice", "bob")
    core.process(limit(T0 + 1, "bob", Side.SELL, 2, 5_000_000))
    core.process(NewOrder(T0 + 2, "alice", "BTC-USDT", "m", Side.BUY, 5, OrdType.MARKET, None, TimeInForce.IOC))
    paid = 2 * 5_000_000 + fee_units(2 * 5_000_000, 20)
    assert stage.balance("alice", "USDT") == (USDT - paid, 0)
    stage.check_invariants(core.open_orders())


def test_stop_buy_triggered_through_the_core_settles_within_its_reservation():
    core, stage = venue("alice", "bob", "carol")
    core.process(NewOrder(T0 + 1, "alice", "BTC-USDT", "s", Side.BUY, 3, OrdType.STOP, None,
                          stop_price=5_050_000))
    core.process(limit(T0 + 2, "bob", Side.SELL, 10, 5_100_000))
    core.process(limit(T0 + 3, "bob", Side.SELL, 1, 5_050_000))
    events = core.process(limit(T0 + 4, "carol", Side.BUY, 1, 5_050_000))  # trade at 50500 triggers
    assert sum(isinstance(e, Trade) for e in events) == 2
    assert stage.balance("alice", "BTC") == (BTC + 30_000, 0)
    assert stage.balance("alice", "USDT") == (USDT - 3 * 5_100_000 - fee_units(3 * 5_100_000, 20), 0)
    stage.check_invariants(core.open_orders())


def test_cancel_through_the_core_emits_a_release_entry():
    core, stage = venue("alice")
    core.process(limit(T0 + 1, "alice", Side.SELL, 7, 5_100_000))
    events = core.process(CancelOrder(T0 + 2, "alice", "BTC-USDT", "x", order_id=1))
    (e,) = [e for e in events if isinstance(e, LedgerEntry)]
    assert e.kind == "release" and e.reservations == (("alice", "BTC", -70_000),)
    assert events[-1] is e and e.seq == core.seq


def test_same_commands_give_the_same_events_including_the_ledger():
    def run():
        core, _ = venue("alice", "bob")
        cmds = [limit(T0 + 1, "bob", Side.SELL, 10, 4_900_000), limit(T0 + 2, "alice", Side.BUY, 15, 5_000_000),
                ReplaceOrder(T0 + 3, "alice", "BTC-USDT", "r", 12, 4_950_000, order_id=2),
                Withdraw(T0 + 4, "bob", "USDT", 10_000)]
        return [e for c in cmds for e in core.process(c)]

    first, second = run(), run()
    assert first == second
    assert any(isinstance(e, OrderAccepted) for e in first)


def test_set_account_risk_through_the_core_is_an_event_and_applies_to_the_next_order():
    core, stage = venue("alice")
    (ev,) = core.process(SetAccountRisk(T0 + 1, "alice", max_order_qty="0.001"))  # 10 lots
    assert isinstance(ev, AccountRiskChanged) and ev.max_order_qty == "0.001" and ev.seq == core.seq
    (rej,) = core.process(limit(T0 + 2, "alice", Side.BUY, 11, 5_000_000))
    assert rej.code == RejectCode.RISK_LIMIT
    assert isinstance(core.process(limit(T0 + 3, "alice", Side.BUY, 10, 5_000_000))[0], OrderAccepted)


def test_set_kyc_limits_through_the_core_limits_accounts_of_that_tier():
    core, stage = venue("alice")
    core.process(SetAccountRisk(T0 + 1, "alice", kyc_tier=2))
    (ev,) = core.process(SetKycLimits(T0 + 2, 2, max_order_notional="100"))
    assert isinstance(ev, KycLimitsChanged)
    (rej,) = core.process(limit(T0 + 3, "alice", Side.BUY, 21, 5_000_000))  # 105 USDT
    assert rej.code == RejectCode.RISK_LIMIT


def test_risk_profiles_survive_a_core_snapshot():
    core, stage = venue("alice")
    core.process(SetAccountRisk(T0 + 1, "alice", max_order_qty="0.001"))
    fresh = RiskLedgerStage({"alice": AccountRisk("alice")}, Assets(), FEES)  # stale registry view
    restored = Core.from_snapshot(core.snapshot(), hooks=fresh)
    (rej,) = restored.process(limit(T0 + 2, "alice", Side.BUY, 11, 5_000_000))
    assert rej.code == RejectCode.RISK_LIMIT


def test_sync_commands_bring_the_stage_in_line_with_the_registry():
    core, stage = venue("alice", "bob")
    wanted = {"alice": AccountRisk("alice", max_order_qty=Decimal("2")), "bob": AccountRisk("bob"),
              "carol": AccountRisk("carol", kyc_tier=1)}
    cmds = stage.sync_commands(T0 + 1, wanted, [KycLimits(1, Decimal("5"), None)])
    assert [type(c).__name__ for c in cmds] == ["SetKycLimits", "SetAccountRisk", "SetAccountRisk"]
    for c in cmds:
        core.process(c)
    assert stage.accounts == wanted
    assert stage.sync_commands(T0 + 2, wanted, [KycLimits(1, Decimal("5"), None)]) == []


def _stop_chain(alice_usdt: int) -> tuple[Core, RiskLedgerStage, list]:
    """Asks rest at 5.5M, 6.0M and 6.5M (placed while the band allowed them); the price is back at
    5.0M; bob, dave and alice wait with stop buys at 5.01M, 5.02M and 5.05M.  One trade at 5.05M
    triggers all three: bob lifts the price to 5.5M, dave to 6.0M, so alice is worked with the band
    top at 6.6M -- above the 6.1105M her stop was reserved at when it arrived."""
    core, stage = venue("mm", "alice", "bob", "dave", "carol")  # USDT each
    if alice_usdt > USDT:
        core.process(Deposit(T0, "alice", "USDT", alice_usdt - USDT, "more-alice"))
    ts = iter(range(T0 + 1, T0 + 100))

    def trade_at(px: int) -> None:
        core.process(limit(next(ts), "mm", Side.SELL, 1, px))
        core.process(limit(next(ts), "carol", Side.BUY, 1, px))

    trade_at(5_500_000)
    trade_at(6_000_000)
    for px, qty in ((6_500_000, 200), (6_000_000, 1), (5_500_000, 1)):
        core.process(limit(next(ts), "mm", Side.SELL, qty, px))
    trade_at(5_450_000)
    trade_at(5_000_000)
    assert core.last_price("BTC-USDT") == 5_000_000
    for acc, qty, stop in (("bob", 1, 5_010_000), ("dave", 1, 5_020_000), ("alice", 160, 5_050_000)):
        acc_ev = core.process(NewOrder(next(ts), acc, "BTC-USDT", f"s-{acc}", Side.BUY, qty, OrdType.STOP,
                                       None, stop_price=stop))[0]
        assert isinstance(acc_ev, OrderAccepted), acc_ev
    core.process(limit(next(ts), "mm", Side.SELL, 1, 5_050_000))
    events = core.process(limit(next(ts), "carol", Side.BUY, 1, 5_050_000))
    return core, stage, events


def test_stop_buy_chain_beyond_its_reservation_is_expired_at_trigger_when_the_top_up_is_short():
    core, stage, events = _stop_chain(USDT)  # reserves ~979.6 USDT at 6.1105M; 160 lots at 6.5M cost ~1042
    expired = [e for e in events if isinstance(e, OrderExpired) and e.account == "alice"]
    assert [e.reason for e in expired] == ["insufficient_balance_at_trigger"]
    assert not [e for e in events if isinstance(e, Trade) and "alice" in (e.taker_account, e.maker_account)]
    assert stage.balance("alice", "USDT") == (USDT, 0)
    stage.check_invariants(core.open_orders())


def test_stop_buy_chain_beyond_its_reservation_tops_up_and_fills_within_it():
    core, stage, events = _stop_chain(2 * USDT)
    fills = [e for e in events if isinstance(e, Trade) and e.taker_account == "alice"]
    assert [(t.price, t.qty) for t in fills] == [(6_500_000, 160)]
    topups = [e for e in events if isinstance(e, LedgerEntry) and e.kind == "reprice"]
    assert len(topups) == 1 and topups[0].reservations[0][:2] == ("alice", "USDT")
    cost = 160 * 6_500_000
    assert stage.balance("alice", "USDT") == (2 * USDT - cost - fee_units(cost, 20), 0)
    stage.check_invariants(core.open_orders())
