"""Maker/taker fee schedule: basis points per account tier, charged in the quote asset.

Rounding (deterministic, documented for clients): the fee of one fill is
``ceil(quote_units * bps / 10_000)`` in the quote asset's smallest unit, i.e. any fraction of a
unit is rounded up (against the account, in favour of the venue).  Rates are integers >= 0 and
a taker rate is never below the maker rate of the same tier, so the taker fee is the maximum
fee an order can be charged — which is what a buy order reserves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

BPS = 10_000


def fee_units(quote_units: int, bps: int) -> int:
    """Fee on ``quote_units`` at ``bps`` basis points, rounded up to a whole unit."""
    return -((-quote_units * bps) // BPS)


@dataclass(slots=True, frozen=True)
class FeeTier:
    maker_bps: int
    taker_bps: int

    def __post_init__(self) -> None:
        if not (0 <= self.maker_bps <= self.taker_bps <= BPS):
            raise ValueError(f"fee tier needs 0 <= maker_bps <= taker_bps <= {BPS}: {self}")


@dataclass(slots=True)
class FeeSchedule:
    """Fee tiers by name; an account's tier not in the table falls back to ``default``."""

    tiers: dict[str, FeeTier] = field(default_factory=lambda: {"standard": FeeTier(10, 20)})
    default: str = "standard"
    fee_account: str = "@fees"

    def __post_init__(self) -> None:
        if self.default not in self.tiers:
            raise ValueError(f"default fee tier {self.default!r} not in {sorted(self.tiers)}")

    def tier(self, name: str | None) -> FeeTier:
        return self.tiers.get(name or self.default) or self.tiers[self.default]

    def maker_fee(self, tier: str | None, quote_units: int) -> int:
        return fee_units(quote_units, self.tier(tier).maker_bps)

    def taker_fee(self, tier: str | None, quote_units: int) -> int:
        return fee_units(quote_units, self.tier(tier).taker_bps)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> FeeSchedule:
        """``{"default": "standard", "fee_account": "@fees", "tiers": {"standard": {"maker_bps": 10,
        "taker_bps": 20}}}`` -> FeeSchedule."""
        tiers = {name: FeeTier(int(t["maker_bps"]), int(t["taker_bps"])) for name, t in cfg["tiers"].items()}
        return cls(tiers, cfg.get("default", next(iter(tiers))), cfg.get("fee_account", "@fees"))

    def to_config(self) -> dict[str, Any]:
        return {"default": self.default, "fee_account": self.fee_account,
                "tiers": {n: {"maker_bps": t.maker_bps, "taker_bps": t.taker_bps} for n, t in self.tiers.items()}}
