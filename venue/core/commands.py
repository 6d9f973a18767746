"""Commands the core accepts. Every command carries its own timestamp (``ts``, integer
nanoseconds since the epoch, stamped at the edge) so the core never reads a clock.

Prices are integer ticks and quantities integer lots of the instrument; the edges convert.
``session`` is an opaque owner id (the FIX session that sent it) echoed into events.
"""

from __future__ import annotations

from dataclasses import dataclass

from venue.core.types import OrdType, Side, StpMode, TimeInForce, TradingStatus


@dataclass(slots=True)
class NewOrder:
    ts: int
    account: str
    instrument: str
    cl_ord_id: str
    side: Side
    qty: int
    ord_type: OrdType = OrdType.LIMIT
    price: int | None = None
    tif: TimeInForce = TimeInForce.GTC
    stop_price: int | None = None
    display_qty: int | None = None  # iceberg: visible part
    post_only: bool = False
    stp: StpMode | None = None  # None: the account's default
    expire_at: int | None = None  # GTD, ns since epoch
    session: str = ""


@dataclass(slots=True)
class CancelOrder:
    ts: int
    account: str
    instrument: str
    cl_ord_id: str
    order_id: int | None = None
    orig_cl_ord_id: str | None = None
    session: str = ""


@dataclass(slots=True)
class ReplaceOrder:
    ts: int
    account: str
    instrument: str
    cl_ord_id: str
    qty: int
    price: int | None = None
    order_id: int | None = None
    orig_cl_ord_id: str | None = None
    session: str = ""


@dataclass(slots=True)
class MassCancel:
    """Cancel every open order matching all given filters (None = any)."""

    ts: int
    cl_ord_id: str = ""
    account: str | None = None
    instrument: str | None = None
    side: Side | None = None
    session_filter: str | None = None  # only orders entered by this session
    spare_gtc: bool = False
    reason: str = "mass_cancel"
    session: str = ""


@dataclass(slots=True)
class SetTradingStatus:
    ts: int
    instrument: str
    status: TradingStatus


@dataclass(slots=True)
class EndOfSession:
    """Expire DAY orders (of one instrument, or all when None)."""

    ts: int
    instrument: str | None = None


@dataclass(slots=True)
class Tick:
    """Time passes: expire GTD orders whose expire_at <= ts."""

    ts: int


@dataclass(slots=True)
class SetAccountStp:
    ts: int
    account: str
    stp: StpMode




@dataclass(slots=True)
class SetKillSwitch:
    """On: cancel every open order of the account and refuse new ones until switched off."""

    ts: int
    account: str
    on: bool
    session: str = ""


@dataclass(slots=True)
class Deposit:
    """Credit an account (amount in the asset's smallest integer unit)."""

    ts: int
    account: str
    asset: str
    amount: int
    ref: str = ""


@dataclass(slots=True)
class Withdraw:
    ts: int
    account: str
    asset: str
    amount: int
    ref: str = ""


Command = (
    NewOrder | CancelOrder | ReplaceOrder | MassCancel | SetTradingStatus | EndOfSession | Tick
    | SetAccountStp | SetKillSwitch | Deposit | Withdraw
)


# --- Custody holds (venue/custody): a withdrawal reserves funds at request time and the hold is
# released or consumed exactly once (the ledger refuses a second release/consume of the same ref).


@dataclass(slots=True)
class HoldFunds:
    """Reserve ``amount`` of the account's available balance under hold id ``ref`` (refused if short)."""

    ts: int
    account: str
    asset: str
    amount: int
    ref: str


@dataclass(slots=True)
class ReleaseHold:
    """Give a hold back to the account's available balance."""

    ts: int
    ref: str


@dataclass(slots=True)
class ConsumeHold:
    """The withdrawal left the venue: debit the held amount from the account to "@external"."""

    ts: int
    ref: str


# --- Risk profiles (venue/core/stage.py): configuration changes enter the core as commands so they
# are journaled and a replay takes the same risk decisions.


@dataclass(slots=True)
class SetAccountRisk:
    """Set (replace) an account's risk profile; limits are decimal strings, None = unlimited."""

    ts: int
    account: str
    kyc_tier: int | None = None
    fee_tier: str | None = None
    max_order_qty: str | None = None  # base-asset amount per order
    max_order_notional: str | None = None  # quote-asset amount per order


@dataclass(slots=True)
class SetKycLimits:
    """Set the notional limits (quote asset, decimal strings, None = unlimited) of a KYC tier."""

    ts: int
    tier: int
    max_order_notional: str | None = None
    max_daily_notional: str | None = None
