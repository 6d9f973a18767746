"""Events the core emits, each numbered (``seq``) in one gapless sequence per core.

Order events carry the order's state *after* the event (``leaves_qty``, ``cum_qty``,
``cum_notional`` = sum of price*qty in ticks*lots), so an execution report is a pure
translation of one event. ``ts`` is the timestamp of the command that caused the event.
"""

from __future__ import annotations

from dataclasses import dataclass

from venue.core.types import OrdType, Side, TimeInForce, TradingStatus


@dataclass(slots=True)
class OrderAccepted:
    seq: int
    ts: int
    order_id: int
    cl_ord_id: str
    account: str
    instrument: str
    side: Side
    ord_type: OrdType
    tif: TimeInForce
    price: int | None
    qty: int
    stop_price: int | None
    display_qty: int | None
    leaves_qty: int
    session: str


@dataclass(slots=True)
class OrderRejected:
    seq: int
    ts: int
    cl_ord_id: str
    account: str
    instrument: str
    side: Side
    qty: int
    price: int | None
    code: int  # RejectCode
    text: str
    session: str


@dataclass(slots=True)
class OrderFilled:
    """One side of a trade, from the point of view of one order."""

    seq: int
    ts: int
    order_id: int
    cl_ord_id: str
    account: str
    instrument: str
    side: Side
    trade_id: int
    last_px: int
    last_qty: int
    leaves_qty: int
    cum_qty: int
    cum_notional: int
    aggressor: bool  # True: this order took liquidity
    session: str


@dataclass(slots=True)
class Trade:
    """The public print (market data, ledger settlement)."""

    seq: int
    ts: int
    trade_id: int
    instrument: str
    price: int
    qty: int
    aggressor_side: Side
    maker_order_id: int
    taker_order_id: int
    maker_account: str
    taker_account: str


@dataclass(slots=True)
class OrderCancelled:
    seq: int
    ts: int
    order_id: int
    cl_ord_id: str  # the cancel request's id (or the order's own when unsolicited)
    orig_cl_ord_id: str
    account: str
    instrument: str
    side: Side
    price: int | None
    qty: int
    cancelled_qty: int
    cum_qty: int
    cum_notional: int
    reason: str  # CancelReason
    session: str  # who asked (may differ from the order's owner)
    owner_session: str


@dataclass(slots=True)
class OrderReplaced:
    seq: int
    ts: int
    order_id: int
    cl_ord_id: str
    orig_cl_ord_id: str
    account: str
    instrument: str
    side: Side
    price: int | None
    qty: int
    old_price: int | None
    old_qty: int
    leaves_qty: int
    cum_qty: int
    cum_notional: int
    kept_priority: bool
    session: str


@dataclass(slots=True)
class CancelRejected:
    seq: int
    ts: int
    cl_ord_id: str
    orig_cl_ord_id: str | None
    order_id: int | None
    account: str
    instrument: str
    is_replace: bool
    code: int  # RejectCode
    text: str
    session: str


@dataclass(slots=True)
class OrderExpired:
    seq: int
    ts: int
    order_id: int
    cl_ord_id: str
    account: str
    instrument: str
    side: Side
    price: int | None
    qty: int
    expired_qty: int
    cum_qty: int
    cum_notional: int
    reason: str  # "day", "gtd", "ioc", "fok", "self_trade", "market_no_liquidity", "price_band"
    session: str


@dataclass(slots=True)
class OrderTriggered:
    """A stop / stop-limit order's trigger price was reached; it now works as market / limit."""

    seq: int
    ts: int
    order_id: int
    cl_ord_id: str
    account: str
    instrument: str
    side: Side
    price: int | None
    qty: int
    leaves_qty: int
    session: str


@dataclass(slots=True)
class OrderRestated:
    """A change the client did not ask for (an iceberg refresh, an STP decrement)."""

    seq: int
    ts: int
    order_id: int
    cl_ord_id: str
    account: str
    instrument: str
    side: Side
    price: int | None
    qty: int
    leaves_qty: int
    cum_qty: int
    cum_notional: int
    reason: str
    session: str


@dataclass(slots=True)
class BookLevel:
    """Aggregated visible quantity at one price level after a command (qty 0: level gone)."""

    seq: int
    ts: int
    instrument: str
    side: Side
    price: int
    qty: int
    orders: int


@dataclass(slots=True)
class TradingStatusChanged:
    seq: int
    ts: int
    instrument: str
    status: TradingStatus


Event = (
    OrderAccepted
    | OrderRejected
    | OrderFilled
    | Trade
    | OrderCancelled
    | OrderReplaced
    | CancelRejected
    | OrderExpired
    | OrderTriggered
    | OrderRestated
    | BookLevel
    | TradingStatusChanged
)


# --- Ledger events (venue/core/ledger.py, added by the ledger/risk stage) ---------------------------


@dataclass(slots=True)
class LedgerEntry:
    """One balanced double-entry posting set of the ledger.

    ``postings``: (account, asset, delta) on account totals, in the asset's smallest unit; for every
    asset the deltas sum to zero (deposits and withdrawals post against the ``"@external"`` account).
    ``reservations``: (account, asset, delta) on the reserved part of the account's balance
    (available = total - reserved); it moves no value.  ``kind``: deposit, withdraw, reserve,
    release, replace, trade, reprice (a triggered stop-market buy's reservation topped up to the
    band of that moment), hold and hold_release (custody withdrawals; a consumed hold is a
    withdraw).  ``ref``: "order:<id>", "trade:<id>" or the deposit/withdraw reference.
    """

    seq: int
    ts: int
    entry_id: int
    kind: str
    ref: str
    postings: tuple[tuple[str, str, int], ...]
    reservations: tuple[tuple[str, str, int], ...] = ()


@dataclass(slots=True)
class LedgerRejected:
    """A ledger command (Deposit / Withdraw) that was refused (``code``: RejectCode)."""

    seq: int
    ts: int
    kind: str
    account: str
    asset: str
    amount: int
    ref: str
    code: int
    text: str


@dataclass(slots=True)
class AccountRiskChanged:
    """An account's risk profile was set (SetAccountRisk); limits as decimal strings or None."""

    seq: int
    ts: int
    account: str
    kyc_tier: int | None
    fee_tier: str | None
    max_order_qty: str | None
    max_order_notional: str | None


@dataclass(slots=True)
class KycLimitsChanged:
    """A KYC tier's notional limits were set (SetKycLimits)."""

    seq: int
    ts: int
    tier: int
    max_order_notional: str | None
    max_daily_notional: str | None


LedgerEvent = LedgerEntry | LedgerRejected | AccountRiskChanged | KycLimitsChanged
AnyEvent = Event | LedgerEvent
"""Every event a core with the ledger stage can emit."""
