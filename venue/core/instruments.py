"""Instruments: static trading parameters and exact Decimal <-> integer (ticks, lots) conversion.

Inside the core every price is an integer number of ticks and every quantity an integer number of
lots; decimal strings exist only at the edges (FIX, CLI, config), converted here exactly. Floats
are refused everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from venue.core.types import TradingStatus

BPS = 10_000


class OffGridError(ValueError):
    """A decimal price or quantity that is not an exact multiple of the tick or lot."""


def _dec(value: Decimal | str | int) -> Decimal:
    if isinstance(value, float):
        raise TypeError("floats are not accepted for prices or quantities; use Decimal or str")
    if isinstance(value, Decimal):
        return value
    try:
        return Decimal(value)
    except InvalidOperation as exc:
        raise OffGridError(f"not a number: {value!r}") from exc


def _to_units(value: Decimal | str | int, unit: Decimal, what: str) -> int:
    d = _dec(value)
    if not d.is_finite():
        raise OffGridError(f"{what} {value!r} is not finite")
    units, rest = divmod(d, unit)
    if rest != 0:
        raise OffGridError(f"{what} {d} is not a multiple of {unit}")
    return int(units)


@dataclass(slots=True)
class Instrument:
    """One tradable instrument.

    ``min_qty`` / ``max_qty`` are in lots, ``min_notional`` in the quote asset, ``band_bps`` is the
    price band half-width in basis points around the reference price (ticks; the core moves it to
    the last trade price), ``None`` meaning no band.
    """

    symbol: str
    base: str
    quote: str
    tick_size: Decimal
    lot_size: Decimal
    min_qty: int = 1
    max_qty: int = 10**15
    min_notional: Decimal = Decimal(0)
    band_bps: int | None = None
    ref_price: int | None = None
    status: TradingStatus = TradingStatus.OPEN
    _min_notional_units: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.tick_size = _dec(self.tick_size)
        self.lot_size = _dec(self.lot_size)
        self.min_notional = _dec(self.min_notional)
        if self.tick_size <= 0 or self.lot_size <= 0:
            raise ValueError("tick_size and lot_size must be positive")
        if self.min_qty < 1 or self.max_qty < self.min_qty:
            raise ValueError("need 1 <= min_qty <= max_qty")
        self.status = TradingStatus(self.status)
        unit = self.tick_size * self.lot_size
        q, r = divmod(self.min_notional, unit)
        self._min_notional_units = int(q) + (1 if r > 0 else 0)

    # -- conversions -------------------------------------------------------------------------
    def price_to_ticks(self, price: Decimal | str | int) -> int:
        """Exact price -> ticks; raises OffGridError when the price is not on the tick."""
        return _to_units(price, self.tick_size, "price")

    def ticks_to_price(self, ticks: int) -> Decimal:
        return Decimal(ticks) * self.tick_size

    def qty_to_lots(self, qty: Decimal | str | int) -> int:
        """Exact quantity -> lots; raises OffGridError when the quantity is not a whole lot."""
        return _to_units(qty, self.lot_size, "quantity")

    def lots_to_qty(self, lots: int) -> Decimal:
        return Decimal(lots) * self.lot_size

    def notional(self, ticks_times_lots: int) -> Decimal:
        """A sum of price*qty in ticks*lots (e.g. ``cum_notional``) as an amount of the quote asset."""
        return Decimal(ticks_times_lots) * self.tick_size * self.lot_size

    # -- limits ------------------------------------------------------------------------------
    @property
    def min_notional_units(self) -> int:
        """``min_notional`` in ticks*lots, rounded up, for integer comparison."""
        return self._min_notional_units

    def band(self, ref: int | None = None) -> tuple[int, int] | None:
        """(lowest, highest) allowed price in ticks around ``ref`` (default: the reference price)."""
        ref = self.ref_price if ref is None else ref
        if self.band_bps is None or ref is None:
            return None
        lo = -((-ref * (BPS - self.band_bps)) // BPS)  # ceil
        hi = (ref * (BPS + self.band_bps)) // BPS
        return max(lo, 1), hi

    # -- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "symbol": self.symbol, "base": self.base, "quote": self.quote,
            "tick_size": str(self.tick_size), "lot_size": str(self.lot_size),
            "min_qty": self.min_qty, "max_qty": self.max_qty, "min_notional": str(self.min_notional),
            "band_bps": self.band_bps, "ref_price": self.ref_price, "status": self.status.value,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Instrument:
        return cls(
            symbol=d["symbol"], base=d["base"], quote=d["quote"],
            tick_size=Decimal(d["tick_size"]), lot_size=Decimal(d["lot_size"]),
            min_qty=d["min_qty"], max_qty=d["max_qty"], min_notional=Decimal(d["min_notional"]),
            band_bps=d["band_bps"], ref_price=d["ref_price"], status=TradingStatus(d["status"]),
        )
