"""RiskLedgerStage: the core's hooks object combining pre-trade risk and the ledger.

The core calls it (see venue/core/hooks.py):

* ``pre_new(cmd, order_id, inst)`` after its own validation, before matching: risk rules, then the
  reservation of what the order needs; returns (RejectCode, text) to refuse, None to accept;
* ``pre_replace(cmd, order, inst)``: the same rules for the replaced order (reservation delta);
* ``on_events(events)`` after every command: settles trades, releases what cancelled / expired /
  reduced orders no longer need, and returns the ``LedgerEntry`` events for the core to number;
* ``apply(cmd)`` for the commands the core does not own: Deposit / Withdraw (-> LedgerEntry or
  LedgerRejected), custody holds, SetAccountRisk / SetKycLimits (-> AccountRiskChanged /
  KycLimitsChanged: profile changes are journaled so a replay decides alike), SetKillSwitch if routed;
* ``snapshot()`` / ``restore(d)``: balances, reservations, daily usage and the profiles in force.

Rule order in ``pre_new``: no risk profile -> RISK_LIMIT; kill switch -> KILL_SWITCH; quantity and
notional limits of the account -> RISK_LIMIT; KYC-tier per-order and per-day notional ->
RISK_LIMIT; available balance -> INSUFFICIENT_BALANCE.  Market orders (and stop orders without a
limit price) are valued, and buys reserved, at the top of the price band (``reservation_price``);
on an instrument without a band (or without a reference price) they are refused (RISK_LIMIT).

The kill switch is the core's (``SetKillSwitch`` cancels the account's orders and the core refuses
its new ones); the stage refuses with KILL_SWITCH only if a SetKillSwitch is routed to ``apply``.

A stop (market) buy is reserved two bands above its stop price when it arrives.  One command can
trigger a chain of stops whose trades lift the price further before this stop is worked, so the
core calls ``on_trigger(order, inst)`` right before a triggered stop works: a market buy is
re-valued at the top of the band of that moment (the highest price the core will let it trade at)
and its reservation topped up from the available balance (a "reprice" ``LedgerEntry``, emitted
with the command's other entries); if the balance is short the core expires it with reason
"insufficient_balance_at_trigger".  The available balance used is the ledger's as of the start of
the command (the command's own trades are settled after it): that can only be lower than after
settlement, so the check is conservative and, like everything here, deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from venue.core.assets import AssetError, Assets, InstrumentUnits, instrument_units
from venue.core.commands import (
    ConsumeHold,
    Deposit,
    HoldFunds,
    NewOrder,
    ReleaseHold,
    ReplaceOrder,
    SetAccountRisk,
    SetKillSwitch,
    SetKycLimits,
    Withdraw,
)
from venue.core.events import (
    AccountRiskChanged,
    BookLevel,
    KycLimitsChanged,
    LedgerEntry,
    LedgerRejected,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderReplaced,
    OrderRestated,
    OrderTriggered,
    Trade,
)
from venue.core.fees import FeeSchedule
from venue.core.ledger import InsufficientBalance, Ledger, LedgerError
from venue.core.risk import NS_PER_DAY, AccountRisk, KycLimits, RiskState, day_of
from venue.core.types import RejectCode, Side

Reject = tuple[int, str]


def _s(v: Decimal | None) -> str | None:
    return None if v is None else str(v)


def _d(v: str | None) -> Decimal | None:
    return None if v is None or v == "" else Decimal(v)


def reservation_price(cmd_price: int | None, stop_price: int | None, inst: Any) -> int | None:
    """Price an order is valued and reserved at; None when no price band bounds it.

    * a limit / stop-limit order: its limit price;
    * a market order: the top of the band around the reference price (the core never lets it
      trade above ``inst.band()[1]``, the band it has when the order arrives);
    * a stop (market) order: the top of the band around the top of the band around
      max(reference, stop price).  The core triggers a buy stop after a matching run that started
      below the stop (so traded at most one band above it) and then works it up to one band above
      the last price: two bands above the stop.  (Only a chain of several stops triggered by one
      command can move the price further before this stop is worked: ``on_trigger`` then re-values
      it at the band of that moment; see the module docstring.)
    """
    if cmd_price is not None:
        return cmd_price
    ref = inst.ref_price
    if ref is None and stop_price is None:
        return None
    if stop_price is not None:
        ref = stop_price if ref is None else max(ref, stop_price)
    band = inst.band(ref)
    if band is None:
        return None
    if stop_price is not None:
        band = inst.band(band[1])
    return band[1]


class RiskLedgerStage:
    """Pre-trade risk + double-entry ledger, as the core's hooks."""

    def __init__(self, accounts: Mapping[str, AccountRisk], assets: Assets, fees: FeeSchedule, *,
                 kyc_tiers: Mapping[int, KycLimits] | Iterable[KycLimits] = (),
                 default_account: AccountRisk | None = None) -> None:
        self.accounts: dict[str, AccountRisk] = dict(accounts)
        self.assets = assets
        self.fees = fees
        self.kyc_tiers: dict[int, KycLimits] = (
            dict(kyc_tiers) if isinstance(kyc_tiers, Mapping) else {k.tier: k for k in kyc_tiers})
        self.default_account = default_account
        self.ledger = Ledger(fees.fee_account)
        self.risk = RiskState()
        # reservations made by pre_new in the current command: order_id -> (amount, ts)
        self._pending: dict[int, tuple[int, int]] = {}
        # reservations topped up by on_trigger in the current command: order_id -> (account, asset,
        # extra reserved, extra notional)
        self._repriced: dict[int, tuple[str, str, int, int]] = {}

    # --- configuration -------------------------------------------------------------------------

    @classmethod
    def from_registry(cls, accounts: Iterable[Any], kyc_tiers: Iterable[Any] = (), assets: Assets | None = None,
                      fees: FeeSchedule | None = None, *, fee_tiers: Mapping[str, str] | None = None,
                      default_account: AccountRisk | None = None) -> RiskLedgerStage:
        """From ``venue.registry.load_accounts()`` / ``load_kyc_tiers()`` records (duck-typed);
        ``fee_tiers``: account -> fee tier name (default: the schedule's default tier)."""
        fee_tiers = fee_tiers or {}
        profiles = {r.account_id: AccountRisk.from_record(r, fee_tiers.get(r.account_id)) for r in accounts}
        return cls(profiles, assets or Assets(), fees or FeeSchedule(),
                   kyc_tiers=[KycLimits.from_record(t) for t in kyc_tiers], default_account=default_account)

    def set_account(self, prof: AccountRisk) -> None:
        """Add or change an account's risk profile directly (not journaled: prefer the
        ``SetAccountRisk`` command through the core, see ``sync_commands``)."""
        self.accounts[prof.account] = prof
        self.risk.invalidate(prof.account)

    def set_kyc_limits(self, limits: KycLimits) -> None:
        self.kyc_tiers[limits.tier] = limits
        self.risk.invalidate_all()

    def sync_commands(self, ts: int, accounts: Mapping[str, AccountRisk] | Iterable[AccountRisk],
                      kyc_tiers: Iterable[KycLimits] = ()) -> list[SetKycLimits | SetAccountRisk]:
        """The commands that bring this stage's profiles in line with the given configuration
        (e.g. the registry after recovery); process them through the core so they are journaled."""
        out: list[SetKycLimits | SetAccountRisk] = []
        for k in sorted(kyc_tiers, key=lambda k: k.tier):
            if self.kyc_tiers.get(k.tier) != k:
                out.append(SetKycLimits(ts, k.tier, _s(k.max_order_notional), _s(k.max_daily_notional)))
        profs = accounts.values() if isinstance(accounts, Mapping) else accounts
        for p in sorted(profs, key=lambda p: p.account):
            if self.accounts.get(p.account) != p:
                out.append(SetAccountRisk(ts, p.account, p.kyc_tier, p.fee_tier, _s(p.max_order_qty),
                                          _s(p.max_order_notional)))
        return out

    def profile(self, account: str) -> AccountRisk | None:
        """The account's risk profile (a copy of ``default_account`` for an unlisted one, if set);
        None: the account may not trade (venue accounts such as "@fees" never do)."""
        prof = self.accounts.get(account)
        if prof is None and self.default_account is not None and not account.startswith("@"):
            prof = AccountRisk(account, self.default_account.kyc_tier, self.default_account.fee_tier,
                               self.default_account.max_order_qty, self.default_account.max_order_notional)
            self.accounts[account] = prof
        return prof

    def units(self, inst: Any) -> InstrumentUnits:
        """Exact unit factors of an instrument (cached; raises AssetError if not settleable)."""
        u = self.ledger.units.get(inst.symbol)
        if u is None:
            u = self.ledger.units[inst.symbol] = instrument_units(inst, self.assets)
        return u

    def validate_instrument(self, inst: Any) -> InstrumentUnits:
        """Call at instrument set-up: raises AssetError unless ticks*lots settle exactly."""
        return self.units(inst)

    def _fee_bps(self, account: str, maker: bool) -> int:
        prof = self.accounts.get(account)
        tier = self.fees.tier(prof.fee_tier if prof else None)
        return tier.maker_bps if maker else tier.taker_bps

    def _kyc(self, prof: AccountRisk) -> KycLimits | None | bool:
        """The account's KYC-tier limits; None: not limited (no tier, or no tier table configured);
        False: its tier is missing from a configured table (orders are refused)."""
        if prof.kyc_tier is None or not self.kyc_tiers:
            return None
        return self.kyc_tiers.get(prof.kyc_tier, False)

    # --- hooks: pre-trade ----------------------------------------------------------------------

    def pre_new(self, cmd: NewOrder, order_id: int, inst: Any) -> Reject | None:
        account = cmd.account
        prof = self.accounts.get(account) or self.profile(account)
        if prof is None:
            return (RejectCode.RISK_LIMIT, f"account {account} has no risk profile")
        if account in self.risk.killed:
            return (RejectCode.KILL_SWITCH, f"kill switch is on for account {account}")
        ledger = self.ledger
        units = ledger.units.get(inst.symbol)
        if units is None:
            try:
                units = self.units(inst)
            except AssetError as exc:
                return (RejectCode.INVALID_ORDER, f"instrument cannot be settled: {exc}")
        price = cmd.price
        if price is None:
            price = reservation_price(None, cmd.stop_price, inst)
            if price is None:
                return (RejectCode.RISK_LIMIT, "market order on an instrument without a price band or reference price")
        qty = cmd.qty
        notional = price * qty * units.quote_per_tick_lot
        day = cmd.ts // NS_PER_DAY
        if (prof.max_order_qty is not None or prof.max_order_notional is not None
                or (prof.kyc_tier is not None and self.kyc_tiers)):
            kyc = self._kyc(prof)
            if kyc is False:
                return (RejectCode.RISK_LIMIT, f"account {account}: unknown KYC tier {prof.kyc_tier}")
            rej = self.risk.check_order(prof, kyc, self.assets[units.base], self.assets[units.quote],
                                        qty * units.base_per_lot, notional, day)
            if rej is not None:
                return rej
        fee_bps = self.fees.tier(prof.fee_tier).taker_bps
        amount = ledger.reserve(order_id, account, units, cmd.side, price, qty, fee_bps)
        if amount is None:
            side = Side(cmd.side)
            asset = units.quote if side is Side.BUY else units.base
            need = ledger.need(units, side, price, qty, fee_bps)
            a = self.assets[asset]
            return (RejectCode.INSUFFICIENT_BALANCE,
                    f"needs {a.to_decimal(need)} {asset}, available {a.to_decimal(ledger.available(account, asset))}")
        self.risk.add_usage(order_id, account, units.quote, day, notional)
        self._pending[order_id] = (amount, cmd.ts)
        return None

    def pre_replace(self, cmd: ReplaceOrder, order: Any, inst: Any) -> Reject | None:
        oid = getattr(order, "order_id", None)
        r = self.ledger.orders.get(oid) if oid is not None else None
        if r is None:
            return None  # not reserved here (nothing to check)
        prof = self.profile(r.account)
        if prof is None:
            return (RejectCode.RISK_LIMIT, f"account {r.account} has no risk profile")
        if r.account in self.risk.killed:
            return (RejectCode.KILL_SWITCH, f"kill switch is on for account {r.account}")
        units = self.ledger.units[r.symbol]
        limit_order = getattr(order, "price", None) is not None
        price = cmd.price if cmd.price is not None and limit_order else r.price
        leaves = cmd.qty - r.filled
        if leaves <= 0:
            return None  # the core refuses a replace below the filled quantity
        kyc = self._kyc(prof)
        if kyc is False:
            return (RejectCode.RISK_LIMIT, f"account {r.account}: unknown KYC tier {prof.kyc_tier}")
        base, quote = self.assets[units.base], self.assets[units.quote]
        added = units.quote_units(price, leaves) - units.quote_units(r.price, r.leaves)
        rej = self.risk.check_order(prof, kyc or None, base, quote, units.base_units(cmd.qty),
                                    units.quote_units(price, cmd.qty), day_of(cmd.ts), added_notional=added)
        if rej is not None:
            return rej
        extra = self.ledger.need(units, r.side, price, leaves, r.fee_bps) - r.amount
        available = self.ledger.available(r.account, r.asset)
        if extra > available:
            a = self.assets[r.asset]
            return (RejectCode.INSUFFICIENT_BALANCE,
                    f"replace needs {a.to_decimal(extra)} more {r.asset}, available {a.to_decimal(available)}")
        return None

    def on_trigger(self, order: Any, inst: Any) -> Reject | None:
        """A triggered market stop buy: reserve at the top of the current band (see module doc)."""
        if order.price is not None or order.side != Side.BUY:
            return None
        r = self.ledger.orders.get(order.order_id)
        band = inst.band()
        if r is None or band is None or band[1] <= r.price:
            return None
        old_price = r.price
        delta = self.ledger.reprice(order.order_id, band[1])
        if delta is None:
            return (RejectCode.INSUFFICIENT_BALANCE, "insufficient_balance_at_trigger")
        u = self.ledger.units[r.symbol]
        self._repriced[order.order_id] = (r.account, r.asset, delta,
                                          u.quote_units(band[1], r.leaves) - u.quote_units(old_price, r.leaves))
        return None

    # --- hooks: after every command ----------------------------------------------------------------

    def on_events(self, events: list[Any]) -> list[Any]:
        out: list[Any] = []
        pending = self._pending
        orders = self.ledger.orders
        for ev in events:
            t = type(ev)
            if t is BookLevel:
                continue
            if t is OrderAccepted:
                if pending:
                    p = pending.pop(ev.order_id, None)
                    if p is not None:
                        out.append(self.ledger.reserve_entry(p[1], ev.order_id, p[0]))
            elif t is Trade:
                out.append(self._settle(ev))
            elif t is OrderTriggered:
                if self._repriced:
                    rp = self._repriced.pop(ev.order_id, None)
                    if rp is not None:
                        account, asset, delta, notional = rp
                        if notional > 0:
                            self.risk.add_usage(ev.order_id, account, asset, day_of(ev.ts), notional)
                        out.append(self.ledger.reprice_entry(ev.ts, ev.order_id, account, asset, delta))
            elif t is OrderCancelled or t is OrderExpired:
                r = orders.get(ev.order_id)
                if r is not None:
                    self._give_back(ev.order_id, ev.ts, r.leaves)
                    self.risk.forget(ev.order_id)
                    entry = self.ledger.release(ev.ts, ev.order_id)
                    if entry is not None:
                        out.append(entry)
            elif t is OrderReplaced:
                if ev.order_id in orders:
                    entry = self._replaced(ev)
                    if entry is not None:
                        out.append(entry)
            elif t is OrderRestated:
                r = orders.get(ev.order_id)
                if r is not None and ev.leaves_qty != r.leaves:
                    self._give_back(ev.order_id, ev.ts, r.leaves - ev.leaves_qty)
                    entry = self.ledger.resize(ev.ts, ev.order_id, ev.leaves_qty, kind="restate")
                    if entry is not None:
                        out.append(entry)
        if pending:  # accepted by pre_new but never by the core: undo, no entry
            for oid, (_, ts) in pending.items():
                r = orders[oid]
                u = self.ledger.units[r.symbol]
                self.risk.give_back(oid, r.account, u.quote, day_of(ts), u.quote_units(r.price, r.leaves))
                self.risk.forget(oid)
                self.ledger.unreserve(oid)
            pending.clear()
        self._repriced.clear()
        return out

    def _give_back(self, oid: int, ts: int, lots: int) -> None:
        r = self.ledger.orders[oid]
        u = self.ledger.units[r.symbol]
        self.risk.give_back(oid, r.account, u.quote, day_of(ts), u.quote_units(r.price, lots))

    def _replaced(self, ev: OrderReplaced) -> LedgerEntry | None:
        r = self.ledger.orders[ev.order_id]
        u = self.ledger.units[r.symbol]
        price = ev.price if ev.price is not None else r.price
        delta = u.quote_units(price, ev.leaves_qty) - u.quote_units(r.price, r.leaves)
        day = day_of(ev.ts)
        if delta > 0:
            self.risk.add_usage(ev.order_id, r.account, u.quote, day, delta)
        else:
            self.risk.give_back(ev.order_id, r.account, u.quote, day, -delta)
        return self.ledger.resize(ev.ts, ev.order_id, ev.leaves_qty, price, kind="replace")

    def _settle(self, t: Trade) -> LedgerEntry:
        if t.aggressor_side == Side.BUY:
            buyer, buy_oid, seller, sell_oid = t.taker_account, t.taker_order_id, t.maker_account, t.maker_order_id
            buyer_bps, seller_bps = self._fee_bps(buyer, False), self._fee_bps(seller, True)
        else:
            buyer, buy_oid, seller, sell_oid = t.maker_account, t.maker_order_id, t.taker_account, t.taker_order_id
            buyer_bps, seller_bps = self._fee_bps(buyer, True), self._fee_bps(seller, False)
        entry = self.ledger.settle_trade(t.ts, t.trade_id, t.instrument, t.price, t.qty,
                                         buyer, buy_oid, buyer_bps, seller, sell_oid, seller_bps)
        for oid in (buy_oid, sell_oid):
            if oid not in self.ledger.orders:
                self.risk.forget(oid)
        return entry

    # --- hooks: commands the core does not own -----------------------------------------------------

    def apply(self, cmd: Any) -> list[Any] | None:
        if isinstance(cmd, Deposit | Withdraw):
            kind = "deposit" if isinstance(cmd, Deposit) else "withdraw"
            try:
                if cmd.asset not in self.assets:
                    raise LedgerError(f"unknown asset {cmd.asset!r}")
                if isinstance(cmd, Deposit):
                    return [self.ledger.deposit(cmd.ts, cmd.account, cmd.asset, cmd.amount, cmd.ref)]
                return [self.ledger.withdraw(cmd.ts, cmd.account, cmd.asset, cmd.amount, cmd.ref)]
            except InsufficientBalance as exc:
                code, text = RejectCode.INSUFFICIENT_BALANCE, str(exc)
            except LedgerError as exc:
                code, text = RejectCode.INVALID_ORDER, str(exc)
            return [LedgerRejected(0, cmd.ts, kind, cmd.account, cmd.asset, cmd.amount, cmd.ref, int(code), text)]
        if isinstance(cmd, HoldFunds | ReleaseHold | ConsumeHold):
            return [self._custody_hold(cmd)]
        if isinstance(cmd, SetAccountRisk):
            prof = AccountRisk(cmd.account, cmd.kyc_tier, cmd.fee_tier, _d(cmd.max_order_qty),
                               _d(cmd.max_order_notional))
            self.set_account(prof)
            return [AccountRiskChanged(0, cmd.ts, cmd.account, cmd.kyc_tier, cmd.fee_tier, _s(prof.max_order_qty),
                                       _s(prof.max_order_notional))]
        if isinstance(cmd, SetKycLimits):
            lim = KycLimits(cmd.tier, _d(cmd.max_order_notional), _d(cmd.max_daily_notional))
            self.set_kyc_limits(lim)
            return [KycLimitsChanged(0, cmd.ts, cmd.tier, _s(lim.max_order_notional), _s(lim.max_daily_notional))]
        if isinstance(cmd, SetKillSwitch):
            self.set_kill_switch(cmd.account, cmd.on)
            return []
        return None

    def _custody_hold(self, cmd: HoldFunds | ReleaseHold | ConsumeHold) -> Any:
        """Custody withdrawal holds (venue/custody): reserve, release or consume, each at most once."""
        try:
            if isinstance(cmd, HoldFunds):
                if cmd.asset not in self.assets:
                    raise LedgerError(f"unknown asset {cmd.asset!r}")
                return self.ledger.hold(cmd.ts, cmd.account, cmd.asset, cmd.amount, cmd.ref)
            if isinstance(cmd, ReleaseHold):
                return self.ledger.release_hold(cmd.ts, cmd.ref)
            return self.ledger.consume_hold(cmd.ts, cmd.ref)
        except InsufficientBalance as exc:
            code, text = RejectCode.INSUFFICIENT_BALANCE, str(exc)
        except LedgerError as exc:
            code, text = RejectCode.INVALID_ORDER, str(exc)
        kind = {HoldFunds: "hold", ReleaseHold: "hold_release", ConsumeHold: "hold_consume"}[type(cmd)]
        account, asset, amount = (cmd.account, cmd.asset, cmd.amount) if isinstance(cmd, HoldFunds) else \
            self.ledger.holds.get(cmd.ref, ("", "", 0))
        return LedgerRejected(0, cmd.ts, kind, account, asset, amount, cmd.ref, int(code), text)

    def set_kill_switch(self, account: str, on: bool) -> None:
        """Refuse (on) or allow again (off) the account's new orders; the core cancels its orders."""
        self.risk.set_kill_switch(account, on)

    # --- queries (for sessions, drop copy, CLI) ----------------------------------------------------

    def balance(self, account: str, asset: str) -> tuple[int, int]:
        return self.ledger.balance(account, asset)

    def balances(self, account: str) -> dict[str, tuple[int, int]]:
        return self.ledger.balances(account)

    def check_invariants(self, open_orders: Iterable[Any] = ()) -> None:
        self.ledger.check_invariants(open_orders)

    # --- snapshot ----------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "ledger": self.ledger.snapshot(),
            "risk": self.risk.snapshot(),
            "accounts": [[p.account, p.kyc_tier, p.fee_tier, _s(p.max_order_qty), _s(p.max_order_notional)]
                         for _, p in sorted(self.accounts.items())],
            "kyc_tiers": [[k.tier, _s(k.max_order_notional), _s(k.max_daily_notional)]
                          for _, k in sorted(self.kyc_tiers.items())],
        }

    def restore(self, d: Mapping[str, Any]) -> None:
        self._pending.clear()
        self._repriced.clear()
        if not d:  # a snapshot taken without this stage
            return
        self.ledger.restore(d["ledger"])
        self.risk.restore(d["risk"])
        if "accounts" in d:  # the profiles in force when the snapshot was taken (journaled changes)
            self.accounts = {a: AccountRisk(a, tier, fee, _d(q), _d(n)) for a, tier, fee, q, n in d["accounts"]}
            self.kyc_tiers = {int(t): KycLimits(int(t), _d(o), _d(day)) for t, o, day in d["kyc_tiers"]}
        self._pending.clear()
