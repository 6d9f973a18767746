"""Assets and their integer precision, and the exact unit conversions of an instrument.

Inside the core an amount of an asset is an integer number of its smallest unit
(BTC and ETH: 8 decimals, USDT: 6).  An instrument trades integer lots at integer ticks;
``InstrumentUnits`` holds the two integer factors that turn ticks and lots into asset units:

* ``base_per_lot``        = lot_size * 10**base_decimals
* ``quote_per_tick_lot``  = tick_size * lot_size * 10**quote_decimals

so ``base_units = qty_lots * base_per_lot`` and
``quote_units = price_ticks * qty_lots * quote_per_tick_lot``.  Both factors must be integers;
``instrument_units`` refuses an instrument for which they are not (validate at set-up).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any


class AssetError(ValueError):
    """An amount or an instrument that cannot be represented exactly."""


@dataclass(slots=True, frozen=True)
class Asset:
    code: str
    decimals: int

    def to_units(self, amount: Decimal | str | int) -> int:
        """Decimal amount -> integer smallest units; refuses anything not exactly representable."""
        d = Decimal(str(amount)) if not isinstance(amount, Decimal) else amount
        scaled = d.scaleb(self.decimals)
        if scaled != scaled.to_integral_value():
            raise AssetError(f"{amount} {self.code} has more than {self.decimals} decimals")
        return int(scaled)

    def to_decimal(self, units: int) -> Decimal:
        """Integer smallest units -> exact Decimal amount."""
        return Decimal(units).scaleb(-self.decimals)


DEFAULT_ASSETS: tuple[Asset, ...] = (Asset("BTC", 8), Asset("ETH", 8), Asset("USDT", 6))


class Assets(Mapping[str, Asset]):
    """The venue's asset registry (code -> Asset)."""

    __slots__ = ("_by_code",)

    def __init__(self, assets: Iterable[Asset] = DEFAULT_ASSETS) -> None:
        self._by_code: dict[str, Asset] = {}
        for a in assets:
            if a.decimals < 0 or a.decimals > 18:
                raise AssetError(f"asset {a.code}: decimals {a.decimals} out of range")
            if a.code in self._by_code:
                raise AssetError(f"asset {a.code} defined twice")
            self._by_code[a.code] = a

    @classmethod
    def from_config(cls, cfg: Mapping[str, int]) -> Assets:
        """``{"BTC": 8, "USDT": 6}`` -> Assets."""
        return cls(Asset(code, int(dec)) for code, dec in cfg.items())

    def __getitem__(self, code: str) -> Asset:
        try:
            return self._by_code[code]
        except KeyError:
            raise AssetError(f"unknown asset {code!r}") from None

    def __contains__(self, code: object) -> bool:
        return code in self._by_code

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._by_code)

    def __len__(self) -> int:
        return len(self._by_code)

    def to_config(self) -> dict[str, int]:
        return {a.code: a.decimals for a in self._by_code.values()}


@dataclass(slots=True, frozen=True)
class InstrumentUnits:
    """What the ledger needs to know of an instrument: its assets and exact unit factors."""

    symbol: str
    base: str
    quote: str
    base_per_lot: int
    quote_per_tick_lot: int

    def base_units(self, qty_lots: int) -> int:
        return qty_lots * self.base_per_lot

    def quote_units(self, price_ticks: int, qty_lots: int) -> int:
        return price_ticks * qty_lots * self.quote_per_tick_lot

    def to_dict(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "base": self.base, "quote": self.quote,
                "base_per_lot": self.base_per_lot, "quote_per_tick_lot": self.quote_per_tick_lot}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> InstrumentUnits:
        return cls(d["symbol"], d["base"], d["quote"], int(d["base_per_lot"]), int(d["quote_per_tick_lot"]))


def _exact_int(value: Decimal, what: str) -> int:
    if value <= 0 or value != value.to_integral_value():
        raise AssetError(f"{what} = {value} is not a positive integer")
    return int(value)


def instrument_units(inst: Any, assets: Mapping[str, Asset]) -> InstrumentUnits:
    """Exact unit factors of an instrument (needs ``symbol, base, quote, tick_size, lot_size``).

    Raises AssetError when an asset is unknown or a tick*lot / lot is not a whole number of
    the asset's smallest unit (the instrument cannot be settled exactly).
    """
    base, quote = assets[inst.base], assets[inst.quote]
    tick, lot = Decimal(str(inst.tick_size)), Decimal(str(inst.lot_size))
    bpl = _exact_int(lot.scaleb(base.decimals), f"{inst.symbol}: lot_size*10**{base.decimals}")
    qptl = _exact_int((tick * lot).scaleb(quote.decimals),
                      f"{inst.symbol}: tick_size*lot_size*10**{quote.decimals}")
    return InstrumentUnits(inst.symbol, base.code, quote.code, bpl, qptl)
