"""Pre-trade risk rules of the stage (RiskLedgerStage.pre_new / pre_replace), one rule per test."""

from decimal import Decimal

from tests.test_ledger_support import DAY, T0, MiniCore, btc_usdt, make_stage, order
from venue.core.assets import Assets
from venue.core.commands import Deposit, ReplaceOrder, SetKillSwitch
from venue.core.ledger import order_need
from venue.core.risk import AccountRisk, KycLimits, day_of
from venue.core.stage import RiskLedgerStage
from venue.core.types import RejectCode, Side

from .test_ledger_support import FEES

RICH = 10**15


def core_with(stage: RiskLedgerStage, **inst_kw) -> MiniCore:
    core = MiniCore(stage, [btc_usdt(**inst_kw)])
    for acc in stage.accounts:
        core.apply(Deposit(T0, acc, "USDT", RICH))
        core.apply(Deposit(T0, acc, "BTC", RICH))
    return core


def code(stage, cmd, oid=1, inst=None):
    rej = stage.pre_new(cmd, oid, inst or btc_usdt())
    return None if rej is None else rej[0]


def test_day_boundary_is_utc_day_of_command_timestamp():
    assert day_of(T0) == day_of(T0 + DAY - 1) != day_of(T0 + DAY)


def test_order_within_balance_is_accepted_and_reserved():
    stage = make_stage("alice")
    stage.apply(Deposit(T0, "alice", "USDT", 100_000_000))
    assert code(stage, order(T0, "alice", Side.BUY, 10, 5_000_000)) is None
    assert stage.balance("alice", "USDT") == (100_000_000, order_need(stage.ledger.units["BTC-USDT"],
                                                                      Side.BUY, 5_000_000, 10, 20))


def test_insufficient_balance_is_refused_and_nothing_is_reserved():
    stage = make_stage("alice")
    stage.apply(Deposit(T0, "alice", "USDT", 50_000_000))  # 50 USDT: 10 lots at 50000 cost 50 + fee
    assert code(stage, order(T0, "alice", Side.BUY, 10, 5_000_000)) == RejectCode.INSUFFICIENT_BALANCE
    assert stage.balance("alice", "USDT") == (50_000_000, 0)


def test_sell_without_base_is_refused_for_balance():
    stage = make_stage("alice")
    stage.apply(Deposit(T0, "alice", "USDT", RICH))
    assert code(stage, order(T0, "alice", Side.SELL, 1, 5_000_000)) == RejectCode.INSUFFICIENT_BALANCE


def test_reserved_balance_is_not_available_to_the_next_order():
    stage = make_stage("alice")
    stage.apply(Deposit(T0, "alice", "BTC", 100_000))  # 10 lots
    assert code(stage, order(T0, "alice", Side.SELL, 6, 5_000_000), oid=1) is None
    assert code(stage, order(T0, "alice", Side.SELL, 6, 5_000_000), oid=2) == RejectCode.INSUFFICIENT_BALANCE


def test_unknown_account_is_refused():
    stage = make_stage("alice")
    assert code(stage, order(T0, "mallory", Side.BUY, 1, 5_000_000)) == RejectCode.RISK_LIMIT


def test_default_profile_applies_to_unlisted_accounts():
    stage = RiskLedgerStage({}, Assets(), FEES, default_account=AccountRisk("*", max_order_qty=Decimal("0.001")))
    stage.apply(Deposit(T0, "carol", "USDT", RICH))
    assert code(stage, order(T0, "carol", Side.BUY, 10, 5_000_000)) is None
    assert code(stage, order(T0, "carol", Side.BUY, 11, 5_000_000), oid=2) == RejectCode.RISK_LIMIT


def test_kill_switch_refuses_new_orders_until_lifted():
    stage = make_stage("alice")
    stage.apply(Deposit(T0, "alice", "USDT", RICH))
    assert stage.apply(SetKillSwitch(T0, "alice", True)) == []
    assert code(stage, order(T0, "alice", Side.BUY, 1, 5_000_000)) == RejectCode.KILL_SWITCH
    stage.apply(SetKillSwitch(T0, "alice", False))
    assert code(stage, order(T0, "alice", Side.BUY, 1, 5_000_000)) is None


def test_kill_switch_is_checked_before_balance():
    stage = make_stage("alice")
    stage.apply(SetKillSwitch(T0, "alice", True))
    assert code(stage, order(T0, "alice", Side.BUY, 1, 5_000_000)) == RejectCode.KILL_SWITCH


def test_max_order_quantity_per_account():
    stage = make_stage(alice=AccountRisk("alice", max_order_qty=Decimal("0.5")))  # 5000 lots
    stage.apply(Deposit(T0, "alice", "BTC", RICH))
    assert code(stage, order(T0, "alice", Side.SELL, 5000, 5_000_000), oid=1) is None
    assert code(stage, order(T0, "alice", Side.SELL, 5001, 5_000_000), oid=2) == RejectCode.RISK_LIMIT


def test_max_order_notional_per_account():
    stage = make_stage(alice=AccountRisk("alice", max_order_notional=Decimal("1000")))
    stage.apply(Deposit(T0, "alice", "USDT", RICH))
    assert code(stage, order(T0, "alice", Side.BUY, 200, 5_000_000), oid=1) is None  # exactly 1000 USDT
    assert code(stage, order(T0, "alice", Side.BUY, 200, 5_000_001), oid=2) == RejectCode.RISK_LIMIT


def _kyc_stage(order_limit: str | None, daily_limit: str | None) -> RiskLedgerStage:
    stage = RiskLedgerStage({"alice": AccountRisk("alice", kyc_tier=1)}, Assets(), FEES,
                            kyc_tiers=[KycLimits(1, _d(order_limit), _d(daily_limit))])
    stage.apply(Deposit(T0, "alice", "USDT", RICH))
    return stage


def _d(s):
    return None if s is None else Decimal(s)


def test_kyc_tier_limits_notional_per_order():
    stage = _kyc_stage("500", None)
    assert code(stage, order(T0, "alice", Side.BUY, 100, 5_000_000), oid=1) is None  # 500 USDT
    assert code(stage, order(T0, "alice", Side.BUY, 101, 5_000_000), oid=2) == RejectCode.RISK_LIMIT


def test_kyc_tier_missing_from_the_configured_table_is_refused():
    stage = RiskLedgerStage({"alice": AccountRisk("alice", kyc_tier=7)}, Assets(), FEES,
                            kyc_tiers=[KycLimits(1, Decimal("1"), None)])
    stage.apply(Deposit(T0, "alice", "USDT", RICH))
    assert code(stage, order(T0, "alice", Side.BUY, 1, 5_000_000)) == RejectCode.RISK_LIMIT


def test_without_a_kyc_table_tiers_do_not_limit():
    stage = RiskLedgerStage({"alice": AccountRisk("alice", kyc_tier=7)}, Assets(), FEES)
    stage.apply(Deposit(T0, "alice", "USDT", RICH))
    assert code(stage, order(T0, "alice", Side.BUY, 10_000, 5_000_000)) is None


def test_kyc_daily_notional_accumulates_over_the_day():
    core = MiniCore(_kyc_stage(None, "1000"), [btc_usdt()])
    core.new(order(T0 + 1, "alice", Side.BUY, 150, 5_000_000))  # 750 USDT, rests
    assert code(core.stage, order(T0 + 2, "alice", Side.BUY, 50, 5_000_000), oid=50) is None  # 250: total 1000
    core.stage.on_events([])  # (pre_new without the core: rolled back)
    assert code(core.stage, order(T0 + 2, "alice", Side.BUY, 51, 5_000_000), oid=51) == RejectCode.RISK_LIMIT


def test_kyc_daily_notional_resets_on_the_next_utc_day():
    core = MiniCore(_kyc_stage(None, "1000"), [btc_usdt()])
    core.new(order(T0 + 1, "alice", Side.BUY, 200, 5_000_000))
    assert code(core.stage, order(T0 + 2, "alice", Side.BUY, 1, 5_000_000), oid=50) == RejectCode.RISK_LIMIT
    assert code(core.stage, order(T0 + DAY, "alice", Side.BUY, 200, 5_000_000), oid=51) is None


def test_cancelled_unfilled_notional_is_given_back_the_same_day():
    core = MiniCore(_kyc_stage(None, "1000"), [btc_usdt()])
    core.new(order(T0 + 1, "alice", Side.BUY, 200, 5_000_000))
    core.cancel(T0 + 2, 1)
    assert code(core.stage, order(T0 + 3, "alice", Side.BUY, 200, 5_000_000), oid=50) is None


def test_order_refused_by_the_core_after_pre_new_is_rolled_back():
    stage = _kyc_stage(None, "1000")
    assert code(stage, order(T0, "alice", Side.BUY, 200, 5_000_000)) is None
    assert stage.on_events([]) == []  # no event mentions order 1: the core refused it (e.g. post-only)
    assert stage.balance("alice", "USDT") == (RICH, 0)
    assert code(stage, order(T0, "alice", Side.BUY, 200, 5_000_000), oid=2) is None


def test_market_buy_is_valued_at_the_top_of_the_price_band():
    stage = make_stage(alice=AccountRisk("alice", max_order_notional=Decimal("550")))
    stage.apply(Deposit(T0, "alice", "USDT", RICH))
    inst = btc_usdt(ref_price=5_000_000, band_bps=1000)  # band top 55000.00
    assert code(stage, order(T0, "alice", Side.BUY, 100, None), inst=inst) is None  # 100 lots * 5.5 USDT
    assert stage.balance("alice", "USDT")[1] == order_need(stage.ledger.units["BTC-USDT"], Side.BUY, 5_500_000,
                                                           100, 20)
    assert code(stage, order(T0, "alice", Side.BUY, 101, None), oid=2, inst=inst) == RejectCode.RISK_LIMIT


def test_market_buy_without_a_price_band_is_refused():
    stage = make_stage("alice")
    stage.apply(Deposit(T0, "alice", "USDT", RICH))
    assert code(stage, order(T0, "alice", Side.BUY, 1, None), inst=btc_usdt(band_bps=None)) == RejectCode.RISK_LIMIT


def test_stop_buy_without_limit_is_reserved_two_bands_above_the_higher_stop_price():
    stage = make_stage("alice")
    stage.apply(Deposit(T0, "alice", "USDT", RICH))
    cmd = order(T0, "alice", Side.BUY, 1, None, stop_price=6_000_000)
    assert code(stage, cmd, inst=btc_usdt(ref_price=5_000_000, band_bps=1000)) is None
    assert stage.ledger.orders[1].price == 7_260_000  # 60000 +10% +10%


def test_replace_that_needs_more_than_available_is_refused():
    stage = make_stage("alice")
    core = MiniCore(stage, [btc_usdt()])
    need10 = order_need(stage.units(btc_usdt()), Side.BUY, 5_000_000, 10, 20)
    core.apply(Deposit(T0, "alice", "USDT", need10 + 5_010_000 - 1))  # one lot short of 11
    core.new(order(T0, "alice", Side.BUY, 10, 5_000_000))
    rej = stage.pre_replace(ReplaceOrder(T0, "alice", "BTC-USDT", "r1", 11, 5_000_000, order_id=1),
                            core.orders[1], core.instruments["BTC-USDT"])
    assert rej is not None and rej[0] == RejectCode.INSUFFICIENT_BALANCE
    assert stage.pre_replace(ReplaceOrder(T0, "alice", "BTC-USDT", "r1", 10, 4_900_000, order_id=1),
                             core.orders[1], core.instruments["BTC-USDT"]) is None


def test_replace_above_the_quantity_limit_is_refused():
    stage = make_stage(alice=AccountRisk("alice", max_order_qty=Decimal("0.001")))
    core = core_with(stage)
    core.new(order(T0, "alice", Side.BUY, 10, 5_000_000))
    rej = stage.pre_replace(ReplaceOrder(T0, "alice", "BTC-USDT", "r1", 11, 5_000_000, order_id=1),
                            core.orders[1], core.instruments["BTC-USDT"])
    assert rej is not None and rej[0] == RejectCode.RISK_LIMIT


def test_stage_from_registry_records_applies_account_and_tier_limits():
    from venue.registry import AccountRecord, KycTier

    accounts = [AccountRecord("alice", "F", "verified", 1, None, "T", Decimal("0.01"), None),
                AccountRecord("bob", "F", "verified", 2, None, "T", None, None)]
    tiers = [KycTier(1, None, None), KycTier(2, Decimal("100"), Decimal("1000"))]
    stage = RiskLedgerStage.from_registry(accounts, tiers, Assets(), FEES, fee_tiers={"bob": "vip"})
    for acc in ("alice", "bob"):
        stage.apply(Deposit(T0, acc, "USDT", RICH))
    assert code(stage, order(T0, "alice", Side.BUY, 101, 5_000_000), oid=1) == RejectCode.RISK_LIMIT  # qty
    assert code(stage, order(T0, "bob", Side.BUY, 21, 5_000_000), oid=2) == RejectCode.RISK_LIMIT  # 105 USDT
    assert code(stage, order(T0, "bob", Side.BUY, 20, 5_000_000), oid=3) is None
    assert stage.ledger.orders[3].fee_bps == 7


def test_venue_accounts_never_trade_even_with_a_default_profile():
    stage = RiskLedgerStage({}, Assets(), FEES, default_account=AccountRisk("*"))
    assert code(stage, order(T0, "@fees", Side.SELL, 1, 5_000_000)) == RejectCode.RISK_LIMIT


def test_market_sell_without_a_reference_price_is_refused():
    stage = make_stage("alice")
    stage.apply(Deposit(T0, "alice", "BTC", RICH))
    inst = btc_usdt(ref_price=None)
    assert code(stage, order(T0, "alice", Side.SELL, 1, None), inst=inst) == RejectCode.RISK_LIMIT
