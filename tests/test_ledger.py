"""Unit tests of the ledger: assets, fees, postings, reservations, settlement, invariants."""

from decimal import Decimal

import pytest

from tests.test_ledger_support import btc_usdt
from venue.core.assets import Asset, AssetError, Assets, instrument_units
from venue.core.fees import FeeSchedule, FeeTier, fee_units
from venue.core.instruments import Instrument
from venue.core.ledger import (
    EXTERNAL,
    InsufficientBalance,
    Ledger,
    LedgerError,
    LedgerInvariantError,
    order_need,
)
from venue.core.types import Side

UNITS = instrument_units(btc_usdt(), Assets())  # 1 USDT unit per tick*lot, 10_000 sats per lot


class _Open:
    def __init__(self, order_id, account, side, price, leaves_qty):
        self.order_id, self.account, self.side, self.price, self.leaves_qty = (
            order_id, account, side, price, leaves_qty)


def funded() -> Ledger:
    led = Ledger()
    led.deposit(1, "alice", "USDT", 10_000_000_000)
    led.deposit(1, "bob", "BTC", 100_000_000)
    return led


def test_asset_to_units_is_exact_and_refuses_extra_decimals():
    usdt = Asset("USDT", 6)
    assert usdt.to_units("12.345678") == 12_345_678
    assert usdt.to_decimal(12_345_678) == Decimal("12.345678")
    with pytest.raises(AssetError):
        usdt.to_units("0.0000001")


def test_instrument_units_are_integer_factors():
    assert (UNITS.base_per_lot, UNITS.quote_per_tick_lot) == (10_000, 1)
    assert UNITS.quote_units(5_000_000, 3) == 15_000_000  # 50000.00 * 0.0003 = 15 USDT


def test_instrument_whose_tick_times_lot_is_not_a_whole_unit_is_refused():
    inst = Instrument("BTC-USDT", "BTC", "USDT", Decimal("0.01"), Decimal("0.00001"))
    with pytest.raises(AssetError):
        instrument_units(inst, Assets())


def test_instrument_with_unknown_asset_is_refused():
    inst = Instrument("DOGE-USDT", "DOGE", "USDT", Decimal("0.01"), Decimal("1"))
    with pytest.raises(AssetError):
        instrument_units(inst, Assets())


def test_fee_is_rounded_up_to_a_whole_unit():
    assert fee_units(10_000, 10) == 10
    assert fee_units(10_001, 10) == 11
    assert fee_units(1, 1) == 1
    assert fee_units(0, 20) == 0
    assert fee_units(5, 0) == 0


def test_fee_tier_with_maker_above_taker_is_refused():
    with pytest.raises(ValueError):
        FeeTier(30, 20)


def test_fee_schedule_falls_back_to_default_tier():
    fees = FeeSchedule({"standard": FeeTier(10, 20), "vip": FeeTier(0, 5)}, "standard")
    assert fees.taker_fee("vip", 100_000) == 50
    assert fees.taker_fee("nonexistent", 100_000) == 200
    assert fees.maker_fee(None, 100_000) == 100


def test_deposit_posts_against_external_and_keeps_every_asset_balanced():
    led = funded()
    assert led.balance("alice", "USDT") == (10_000_000_000, 0)
    assert led.balance(EXTERNAL, "USDT") == (-10_000_000_000, 0)
    assert led.net_deposits("BTC") == 100_000_000 == led.asset_total("BTC")
    led.check_invariants([])


def test_deposit_entry_lists_both_postings():
    e = Ledger().deposit(7, "alice", "BTC", 5, "tx1")
    assert (e.kind, e.ref, e.ts) == ("deposit", "tx1", 7)
    assert sorted(e.postings) == [(EXTERNAL, "BTC", -5), ("alice", "BTC", 5)]


def test_withdraw_beyond_available_is_refused_and_changes_nothing():
    led = funded()
    led.reserve(1, "bob", UNITS, Side.SELL, 5_000_000, 6_000, 20)  # 0.6 BTC reserved
    with pytest.raises(InsufficientBalance):
        led.withdraw(2, "bob", "BTC", 50_000_000)
    assert led.balance("bob", "BTC") == (100_000_000, 60_000_000)


def test_withdraw_of_available_balance_debits_the_account():
    led = funded()
    e = led.withdraw(2, "bob", "BTC", 40_000_000, "w1")
    assert e.kind == "withdraw"
    assert led.balance("bob", "BTC") == (60_000_000, 0)
    assert led.net_deposits("BTC") == 60_000_000


def test_non_positive_deposit_is_refused():
    with pytest.raises(LedgerError):
        Ledger().deposit(1, "alice", "BTC", 0)


def test_buy_reserves_notional_plus_taker_fee_rounded_up_per_lot():
    led = funded()
    # 3 lots at 50000.00 (5_000_000 ticks): 5_000_000 USDT units per lot + 20 bps = 10_000 per lot
    assert led.reserve(1, "alice", UNITS, Side.BUY, 5_000_000, 3, 20) == 3 * (5_000_000 + 10_000)
    # 1 lot at 1.23 with 20 bps: fee 0.246 unit rounds up to 1
    assert order_need(UNITS, Side.BUY, 123, 1, 20) == 124
    assert led.balance("alice", "USDT") == (10_000_000_000, 15_030_000)


def test_sell_reserves_base():
    led = funded()
    assert led.reserve(1, "bob", UNITS, Side.SELL, 5_000_000, 25, 20) == 250_000
    assert led.balance("bob", "BTC") == (100_000_000, 250_000)


def test_reservation_beyond_available_is_refused_without_change():
    led = funded()
    assert led.reserve(1, "alice", UNITS, Side.BUY, 5_000_000, 10_000, 20) is None
    assert led.balance("alice", "USDT") == (10_000_000_000, 0)
    assert 1 not in led.orders


def test_trade_settles_both_sides_and_fees_go_to_fee_account():
    led = funded()
    led.reserve(1, "bob", UNITS, Side.SELL, 5_000_000, 10, 20)  # maker
    led.reserve(2, "alice", UNITS, Side.BUY, 5_000_000, 10, 20)  # taker
    e = led.settle_trade(5, 9, "BTC-USDT", 5_000_000, 10, "alice", 2, 20, "bob", 1, 10)
    quote = 50_000_000  # 10 lots * 5_000_000
    assert led.balance("alice", "BTC") == (100_000, 0)
    assert led.balance("alice", "USDT") == (10_000_000_000 - quote - 100_000, 0)
    assert led.balance("bob", "BTC") == (100_000_000 - 100_000, 0)
    assert led.balance("bob", "USDT") == (quote - 50_000, 0)
    assert led.balance("@fees", "USDT") == (150_000, 0)
    assert e.kind == "trade" and e.ref == "trade:9"
    assert not led.orders
    led.check_invariants([])


def test_fill_below_limit_with_maker_fee_releases_the_surplus():
    led = funded()
    led.reserve(1, "alice", UNITS, Side.BUY, 5_000_000, 10, 20)  # resting buy at 50000
    led.reserve(2, "bob", UNITS, Side.SELL, 4_900_000, 4, 20)
    # bob sells into alice's bid at 50000 (maker price); then alice's rest is worth 6 lots
    led.settle_trade(5, 1, "BTC-USDT", 5_000_000, 4, "alice", 1, 10, "bob", 2, 20)
    assert led.balance("alice", "USDT")[1] == order_need(UNITS, Side.BUY, 5_000_000, 6, 20)
    paid = 4 * 5_000_000 + fee_units(4 * 5_000_000, 10)
    assert led.balance("alice", "USDT")[0] == 10_000_000_000 - paid
    led.check_invariants([_Open(1, "alice", Side.BUY, 5_000_000, 6)])


def test_trade_below_reserved_price_releases_the_price_difference():
    led = funded()
    led.reserve(1, "bob", UNITS, Side.SELL, 4_000_000, 5, 20)
    led.reserve(2, "alice", UNITS, Side.BUY, 5_000_000, 5, 20)  # taker buy at 50000 fills at 40000
    led.settle_trade(5, 1, "BTC-USDT", 4_000_000, 5, "alice", 2, 20, "bob", 1, 10)
    paid = 5 * 4_000_000 + fee_units(5 * 4_000_000, 20)
    assert led.balance("alice", "USDT") == (10_000_000_000 - paid, 0)


def test_release_frees_exactly_what_remains():
    led = funded()
    led.reserve(1, "alice", UNITS, Side.BUY, 5_000_000, 10, 20)
    e = led.release(3, 1)
    assert e.reservations == (("alice", "USDT", -10 * 5_010_000),)
    assert e.postings == ()
    assert led.balance("alice", "USDT") == (10_000_000_000, 0)


def test_self_trade_moves_only_the_fees():
    led = funded()
    led.deposit(1, "alice", "BTC", 1_000_000)
    led.reserve(1, "alice", UNITS, Side.SELL, 5_000_000, 2, 20)
    led.reserve(2, "alice", UNITS, Side.BUY, 5_000_000, 2, 20)
    e = led.settle_trade(5, 1, "BTC-USDT", 5_000_000, 2, "alice", 2, 20, "alice", 1, 10)
    assert led.balance("alice", "BTC") == (1_000_000, 0)
    assert led.balance("alice", "USDT")[0] == 10_000_000_000 - 20_000 - 10_000
    assert ("alice", "BTC", 0) not in e.postings


def test_unbalanced_entry_is_refused():
    with pytest.raises(LedgerError):
        Ledger()._entry(1, "bogus", "x", [("alice", "BTC", 5)])


def test_check_invariants_detects_a_reservation_without_an_open_order():
    led = funded()
    led.reserve(1, "alice", UNITS, Side.BUY, 5_000_000, 10, 20)
    with pytest.raises(LedgerInvariantError, match="without open order"):
        led.check_invariants([])


def test_check_invariants_detects_leaves_that_differ_from_the_book():
    led = funded()
    led.reserve(1, "alice", UNITS, Side.BUY, 5_000_000, 10, 20)
    led.check_invariants([_Open(1, "alice", Side.BUY, 5_000_000, 10)])
    with pytest.raises(LedgerInvariantError, match="leaves"):
        led.check_invariants([_Open(1, "alice", Side.BUY, 5_000_000, 9)])


def test_check_invariants_detects_a_tampered_balance():
    led = funded()
    led._bal[("alice", "USDT")][0] += 1
    with pytest.raises(LedgerInvariantError, match="USDT sums to 1"):
        led.check_invariants([])


def test_snapshot_restore_round_trip():
    led = funded()
    led.reserve(1, "alice", UNITS, Side.BUY, 5_000_000, 10, 20)
    led.reserve(2, "bob", UNITS, Side.SELL, 5_100_000, 3, 20)
    copy = Ledger()
    copy.restore(led.snapshot())
    assert copy.snapshot() == led.snapshot()
    assert copy.release(9, 1) == led.release(9, 1)
