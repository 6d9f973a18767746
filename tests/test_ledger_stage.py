"""The stage driven by event sequences (MiniCore): settlement, releases, ledger events, snapshots."""

import copy

from tests.test_ledger_support import T0, MiniCore, btc_usdt, eth_btc, make_stage, order
from venue.core.commands import Deposit, ReplaceOrder, Withdraw
from venue.core.events import LedgerEntry, LedgerRejected, OrderAccepted, OrderCancelled
from venue.core.fees import fee_units
from venue.core.ledger import EXTERNAL, order_need
from venue.core.risk import AccountRisk
from venue.core.types import OrdType, RejectCode, Side, TimeInForce

USDT = 10**12  # 1,000,000 USDT
BTC = 10**9  # 10 BTC


def funded_core(*accounts: str, **profiles: AccountRisk) -> MiniCore:
    stage = make_stage(*accounts, **profiles)
    core = MiniCore(stage, [btc_usdt(), eth_btc()])
    for acc in stage.accounts:
        core.apply(Deposit(T0, acc, "USDT", USDT, f"dep-{acc}-usdt"))
        core.apply(Deposit(T0, acc, "BTC", BTC, f"dep-{acc}-btc"))
        core.apply(Deposit(T0, acc, "ETH", BTC, f"dep-{acc}-eth"))
    return core


def entries(events, kind=None):
    return [e for e in events if isinstance(e, LedgerEntry) and (kind is None or e.kind == kind)]


def test_deposit_command_produces_a_ledger_entry():
    core = MiniCore(make_stage("alice"), [btc_usdt()])
    (e,) = core.apply(Deposit(T0, "alice", "USDT", 5, "bank-1"))
    assert isinstance(e, LedgerEntry) and e.kind == "deposit" and e.ref == "bank-1" and e.seq == 1
    assert core.stage.balance("alice", "USDT") == (5, 0)


def test_withdraw_over_available_produces_a_rejection_and_moves_nothing():
    core = funded_core("alice")
    (e,) = core.apply(Withdraw(T0, "alice", "USDT", USDT + 1, "w-1"))
    assert isinstance(e, LedgerRejected) and e.code == RejectCode.INSUFFICIENT_BALANCE
    assert core.stage.balance("alice", "USDT") == (USDT, 0)


def test_withdraw_of_unknown_asset_is_rejected():
    core = funded_core("alice")
    (e,) = core.apply(Withdraw(T0, "alice", "DOGE", 1))
    assert isinstance(e, LedgerRejected) and e.code == RejectCode.INVALID_ORDER


def test_accepted_order_emits_a_reserve_entry_after_the_core_events():
    core = funded_core("alice")
    evs = core.new(order(T0, "alice", Side.BUY, 10, 5_000_000))
    assert isinstance(evs[0], OrderAccepted)
    (e,) = entries(evs)
    need = order_need(core.stage.ledger.units["BTC-USDT"], Side.BUY, 5_000_000, 10, 20)
    assert e.kind == "reserve" and e.reservations == (("alice", "USDT", need),) and e.postings == ()
    assert [ev.seq for ev in evs] == list(range(evs[0].seq, evs[0].seq + len(evs)))


def test_crossing_orders_settle_at_the_maker_price_with_maker_and_taker_fees():
    core = funded_core("alice", "bob")
    core.new(order(T0, "bob", Side.SELL, 10, 4_900_000))  # maker sells 0.001 BTC at 49000
    core.new(order(T0 + 1, "alice", Side.BUY, 10, 5_000_000))  # taker buys, limit 50000
    quote = 10 * 4_900_000
    assert core.stage.balance("alice", "BTC") == (BTC + 100_000, 0)
    assert core.stage.balance("alice", "USDT") == (USDT - quote - fee_units(quote, 20), 0)
    assert core.stage.balance("bob", "BTC") == (BTC - 100_000, 0)
    assert core.stage.balance("bob", "USDT") == (USDT + quote - fee_units(quote, 10), 0)
    assert core.stage.balance("@fees", "USDT") == (fee_units(quote, 20) + fee_units(quote, 10), 0)
    core.stage.check_invariants(core.open_orders())


def test_partial_fill_keeps_exactly_what_the_rest_needs_reserved():
    core = funded_core("alice", "bob")
    core.new(order(T0, "alice", Side.BUY, 10, 5_000_000))
    core.new(order(T0 + 1, "bob", Side.SELL, 4, 5_000_000))
    units = core.stage.ledger.units["BTC-USDT"]
    assert core.stage.balance("alice", "USDT")[1] == order_need(units, Side.BUY, 5_000_000, 6, 20)
    core.stage.check_invariants(core.open_orders())


def test_cancel_releases_what_remains():
    core = funded_core("alice", "bob")
    core.new(order(T0, "alice", Side.SELL, 10, 5_000_000))
    core.new(order(T0 + 1, "bob", Side.BUY, 3, 5_000_000))
    evs = core.cancel(T0 + 2, 1)
    (e,) = entries(evs, "release")
    assert e.reservations == (("alice", "BTC", -7 * 10_000),)
    assert core.stage.balance("alice", "BTC") == (BTC - 30_000, 0)


def test_ioc_remainder_expiry_releases_the_reservation():
    core = funded_core("alice")
    core.new(order(T0, "alice", Side.BUY, 10, 5_000_000, tif=TimeInForce.IOC))
    assert core.stage.balance("alice", "USDT") == (USDT, 0)
    assert not core.stage.ledger.orders


def test_market_buy_sweeps_and_releases_the_band_top_surplus():
    core = funded_core("alice", "bob")
    core.new(order(T0, "bob", Side.SELL, 2, 5_000_000))
    core.new(order(T0, "bob", Side.SELL, 3, 5_100_000))
    core.new(order(T0 + 1, "alice", Side.BUY, 10, None, ord_type=OrdType.MARKET))
    paid = 2 * 5_000_000 + fee_units(2 * 5_000_000, 20) + 3 * 5_100_000 + fee_units(3 * 5_100_000, 20)
    assert core.stage.balance("alice", "USDT") == (USDT - paid, 0)
    assert core.stage.balance("alice", "BTC") == (BTC + 50_000, 0)
    core.stage.check_invariants(core.open_orders())


def test_replace_to_a_higher_price_reserves_the_difference():
    core = funded_core("alice")
    core.new(order(T0, "alice", Side.BUY, 10, 5_000_000))
    evs = core.replace(ReplaceOrder(T0 + 1, "alice", "BTC-USDT", "r1", 12, 5_100_000, order_id=1))
    units = core.stage.ledger.units["BTC-USDT"]
    (e,) = entries(evs, "replace")
    assert e.reservations[0][2] == (order_need(units, Side.BUY, 5_100_000, 12, 20)
                                    - order_need(units, Side.BUY, 5_000_000, 10, 20))
    core.stage.check_invariants(core.open_orders())


def test_replace_after_partial_fill_reserves_for_the_new_leaves():
    core = funded_core("alice", "bob")
    core.new(order(T0, "alice", Side.SELL, 10, 5_000_000))
    core.new(order(T0 + 1, "bob", Side.BUY, 4, 5_000_000))
    core.replace(ReplaceOrder(T0 + 2, "alice", "BTC-USDT", "r1", 8, None, order_id=1))
    assert core.stage.balance("alice", "BTC")[1] == 4 * 10_000
    core.stage.check_invariants(core.open_orders())


def test_stp_decrement_releases_the_decremented_quantity():
    core = funded_core("alice")
    core.new(order(T0, "alice", Side.SELL, 10, 5_000_000))
    core.new(order(T0 + 1, "alice", Side.BUY, 4, 5_000_000))  # decrement: sell 6 left, buy cancelled
    assert core.stage.balance("alice", "BTC")[1] == 6 * 10_000
    assert core.stage.balance("alice", "USDT")[1] == 0
    core.stage.check_invariants(core.open_orders())


def test_order_refused_by_the_core_after_pre_new_emits_no_ledger_event():
    core = funded_core("alice")
    stage = core.stage
    assert stage.pre_new(order(T0, "alice", Side.BUY, 1, 5_000_000), 99, btc_usdt()) is None
    assert stage.on_events([]) == []
    stage.check_invariants([])


def test_cancelled_event_of_an_unknown_order_is_ignored():
    core = funded_core("alice")
    ev = OrderCancelled(1, T0, 12345, "x", "y", "alice", "BTC-USDT", Side.BUY, 1, 1, 1, 0, 0, "client", "", "")
    assert core.stage.on_events([ev]) == []


def test_cross_quoted_instrument_settles_in_its_own_assets():
    core = funded_core("alice", "bob")
    core.new(order(T0, "bob", Side.SELL, 7, 5_000, inst="ETH-BTC"))
    core.new(order(T0 + 1, "alice", Side.BUY, 7, 5_000, inst="ETH-BTC"))
    assert core.stage.balance("alice", "ETH") == (BTC + 700_000, 0)
    assert core.stage.balance("@fees", "BTC") == (fee_units(35_000, 20) + fee_units(35_000, 10), 0)
    core.stage.check_invariants(core.open_orders())


def test_every_ledger_entry_is_balanced_per_asset():
    core = funded_core("alice", "bob")
    core.new(order(T0, "bob", Side.SELL, 10, 4_900_000))
    core.new(order(T0 + 1, "alice", Side.BUY, 15, 5_000_000))
    core.cancel(T0 + 2, 2)
    for e in entries(core.log):
        per_asset: dict[str, int] = {}
        for _, asset, delta in e.postings:
            per_asset[asset] = per_asset.get(asset, 0) + delta
        assert not any(per_asset.values()), e


def test_vip_fee_tier_pays_its_own_rates():
    core = funded_core("bob", alice=AccountRisk("alice", fee_tier="vip"))
    core.new(order(T0, "alice", Side.SELL, 10, 5_000_000))  # maker 0 bps
    core.new(order(T0 + 1, "bob", Side.BUY, 10, 5_000_000))  # taker 20 bps
    assert core.stage.balance("alice", "USDT") == (USDT + 50_000_000, 0)
    assert core.stage.balance("@fees", "USDT") == (fee_units(50_000_000, 20), 0)


def test_sums_change_only_by_deposits_and_withdrawals():
    core = funded_core("alice", "bob")
    core.new(order(T0, "bob", Side.SELL, 10, 4_900_000))
    core.new(order(T0 + 1, "alice", Side.BUY, 15, 5_000_000))
    core.apply(Withdraw(T0 + 2, "bob", "USDT", 1_000_000))
    led = core.stage.ledger
    assert led.asset_total("USDT") == 2 * USDT - 1_000_000 == -led.balance(EXTERNAL, "USDT")[0]
    assert led.asset_total("BTC") == 2 * BTC


def test_snapshot_restore_continues_identically():
    a = funded_core("alice", "bob")
    a.new(order(T0, "bob", Side.SELL, 10, 4_900_000))
    a.new(order(T0 + 1, "alice", Side.BUY, 15, 5_000_000))
    b = funded_core("alice", "bob")
    b.stage.restore(a.stage.snapshot())
    b.orders, b.next_oid, b.next_trade = copy.deepcopy(a.orders), a.next_oid, a.next_trade
    ev_a = a.new(order(T0 + 2, "bob", Side.SELL, 20, 5_000_000))
    ev_b = b.new(order(T0 + 2, "bob", Side.SELL, 20, 5_000_000))
    strip = [(type(e).__name__, getattr(e, "postings", None), getattr(e, "reservations", None),
              getattr(e, "entry_id", None)) for e in ev_a]
    assert strip == [(type(e).__name__, getattr(e, "postings", None), getattr(e, "reservations", None),
                      getattr(e, "entry_id", None)) for e in ev_b]
    assert a.stage.snapshot() == b.stage.snapshot()
