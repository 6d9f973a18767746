"""Pre-trade risk: per-account limits, KYC-tier notional limits, kill switch (deterministic).

Limits are decimal amounts of an asset, as the registry stores them (``reg_accounts`` and
``reg_kyc_tiers``): ``max_order_qty`` in the instrument's *base* asset, notionals in its *quote*
asset.  They are compared exactly against integer units (a limit is converted once per
(account, asset) with the asset's precision, rounding down).

The per-day notional of an account (per quote asset) is the notional of the orders it placed
during the UTC day of the command timestamp (``ts // 86_400 s``; no clock is read), less the
unfilled notional of those orders cancelled, expired or reduced on the same day.  Market orders
count at the top of the price band.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from venue.core.assets import Asset
from venue.core.types import RejectCode

NS_PER_DAY = 86_400 * 1_000_000_000


def day_of(ts: int) -> int:
    """UTC day number of a command timestamp (ns since the epoch)."""
    return ts // NS_PER_DAY


def _dec(v: Any) -> Decimal | None:
    return None if v is None or v == "" else Decimal(str(v))


@dataclass(slots=True, frozen=True)
class KycLimits:
    """Notional limits a KYC tier allows (None: unlimited), in the quote asset."""

    tier: int
    max_order_notional: Decimal | None = None
    max_daily_notional: Decimal | None = None

    @classmethod
    def from_record(cls, rec: Any) -> KycLimits:
        """From a ``venue.registry.KycTier`` (or anything with the same attributes)."""
        return cls(int(rec.tier), _dec(rec.max_order_notional), _dec(rec.max_daily_notional))


@dataclass(slots=True)
class AccountRisk:
    """An account's risk profile, loaded by the venue from its registry."""

    account: str
    kyc_tier: int | None = None  # None: no KYC-tier limits
    fee_tier: str | None = None  # None: the fee schedule's default tier
    max_order_qty: Decimal | None = None  # base-asset amount per order (None: unlimited)
    max_order_notional: Decimal | None = None  # quote-asset amount per order (None: unlimited)

    @classmethod
    def from_record(cls, rec: Any, fee_tier: str | None = None) -> AccountRisk:
        """From a ``venue.registry.AccountRecord`` (account_id, tier, max_order_qty, max_order_notional)."""
        return cls(rec.account_id, int(rec.tier), fee_tier, _dec(rec.max_order_qty), _dec(rec.max_order_notional))

    @classmethod
    def from_config(cls, account: str, cfg: Mapping[str, Any]) -> AccountRisk:
        """``{"kyc_tier": 1, "fee_tier": "vip", "max_order_qty": "5", "max_order_notional": "100000"}``."""
        tier = cfg.get("kyc_tier")
        return cls(account, None if tier is None else int(tier), cfg.get("fee_tier"),
                   _dec(cfg.get("max_order_qty")), _dec(cfg.get("max_order_notional")))


def limit_units(limit: Decimal | None, asset: Asset) -> int | None:
    """A decimal limit as integer units of ``asset`` (rounded down: never more than allowed)."""
    if limit is None:
        return None
    return int(limit.scaleb(asset.decimals).to_integral_value(rounding=ROUND_FLOOR))


Reject = tuple[int, str]


class RiskState:
    """Kill switches and per-day notional usage; the rules are pure checks on it."""

    __slots__ = ("killed", "usage", "order_day", "_limits_cache")

    def __init__(self) -> None:
        self.killed: set[str] = set()
        self.usage: dict[tuple[str, str], list[int]] = {}  # (account, quote asset) -> [day, units]
        self.order_day: dict[int, int] = {}  # order id -> day it was counted on
        self._limits_cache: dict[tuple[str, str, str], int | None] = {}

    # --- kill switch -----------------------------------------------------------------------------

    def set_kill_switch(self, account: str, on: bool) -> None:
        if on:
            self.killed.add(account)
        else:
            self.killed.discard(account)

    # --- daily usage ------------------------------------------------------------------------------

    def used_today(self, account: str, asset: str, day: int) -> int:
        u = self.usage.get((account, asset))
        return u[1] if u is not None and u[0] == day else 0

    def add_usage(self, order_id: int, account: str, asset: str, day: int, units: int) -> None:
        u = self.usage.get((account, asset))
        if u is None or u[0] != day:
            u = self.usage[(account, asset)] = [day, 0]
        u[1] += units
        self.order_day.setdefault(order_id, day)

    def give_back(self, order_id: int, account: str, asset: str, day: int, units: int) -> None:
        """Unfilled notional of an order placed on ``day`` left the market on ``day``."""
        u = self.usage.get((account, asset))
        if units > 0 and u is not None and u[0] == day and self.order_day.get(order_id) == day:
            u[1] = max(0, u[1] - units)

    def forget(self, order_id: int) -> None:
        self.order_day.pop(order_id, None)

    # --- rules -----------------------------------------------------------------------------------

    def _limit(self, prof: AccountRisk, what: str, value: Decimal | None, asset: Asset) -> int | None:
        key = (prof.account, what, asset.code)
        if key not in self._limits_cache:
            self._limits_cache[key] = limit_units(value, asset)
        return self._limits_cache[key]

    def invalidate_all(self) -> None:
        self._limits_cache.clear()

    def invalidate(self, account: str) -> None:
        """Forget cached integer limits of an account whose profile changed."""
        for key in [k for k in self._limits_cache if k[0] == account]:
            del self._limits_cache[key]

    def check_order(self, prof: AccountRisk, kyc: KycLimits | None, base: Asset, quote: Asset,
                    base_units: int, notional: int, day: int, added_notional: int | None = None) -> Reject | None:
        """All limit rules of one order (``added_notional``: what it adds to today's usage)."""
        if prof.account in self.killed:
            return (RejectCode.KILL_SWITCH, f"kill switch is on for account {prof.account}")
        max_qty = self._limit(prof, "qty", prof.max_order_qty, base)
        if max_qty is not None and base_units > max_qty:
            return (RejectCode.RISK_LIMIT, f"order quantity {base.to_decimal(base_units)} {base.code} exceeds "
                    f"the account's maximum {prof.max_order_qty}")
        max_notional = self._limit(prof, "notional", prof.max_order_notional, quote)
        if max_notional is not None and notional > max_notional:
            return (RejectCode.RISK_LIMIT, f"order notional {quote.to_decimal(notional)} {quote.code} exceeds "
                    f"the account's maximum {prof.max_order_notional}")
        if kyc is not None:
            tier_order = self._limit(prof, "kyc_order", kyc.max_order_notional, quote)
            if tier_order is not None and notional > tier_order:
                return (RejectCode.RISK_LIMIT, f"order notional {quote.to_decimal(notional)} {quote.code} exceeds "
                        f"KYC tier {kyc.tier} maximum {kyc.max_order_notional}")
            tier_day = self._limit(prof, "kyc_day", kyc.max_daily_notional, quote)
            added = notional if added_notional is None else added_notional
            if tier_day is not None and added > 0:
                used = self.used_today(prof.account, quote.code, day)
                if used + added > tier_day:
                    return (RejectCode.RISK_LIMIT, f"daily notional {quote.to_decimal(used + added)} {quote.code} "
                            f"would exceed KYC tier {kyc.tier} maximum {kyc.max_daily_notional}")
        return None

    # --- snapshot --------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "killed": sorted(self.killed),
            "usage": [[acc, asset, d, u] for (acc, asset), (d, u) in sorted(self.usage.items())],
            "order_day": [[oid, d] for oid, d in sorted(self.order_day.items())],
        }

    def restore(self, d: Mapping[str, Any]) -> None:
        self.killed = set(d["killed"])
        self.usage = {(acc, asset): [int(day), int(u)] for acc, asset, day, u in d["usage"]}
        self.order_day = {int(oid): int(day) for oid, day in d["order_day"]}
        self._limits_cache.clear()


def kyc_table(limits: Iterable[KycLimits]) -> dict[int, KycLimits]:
    return {k.tier: k for k in limits}
