"""Order entry at the FIX edge: FIX messages -> venue commands, venue events -> FIX messages.

Pure functions with no session or I/O in them, so the order-entry application and the
drop-copy application produce byte-identical execution reports from the same event.
Decimal strings exist only here; the core sees integer ticks and lots.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Context, Decimal, InvalidOperation

from fix.codec import byte_sum
from fix.field_formats import DECIMAL_MAX_LEN, SEQNUM_MAX_DIGITS, is_decimal
from fix.message import Message
from sessions.errors import EdgeError, EdgeReject
from venue.core import commands as cmd
from venue.core import events as ev
from venue.core.assets import Asset, InstrumentUnits
from venue.core.types import OrdType, RejectCode, Side, StpMode, TimeInForce
from venue.marketdata import Units, plain

Fields = list[tuple[int, str]]

# RejectCode -> OrdRejReason (103)
ORD_REJ_REASON = {
    RejectCode.UNKNOWN_INSTRUMENT: 1,
    RejectCode.INSTRUMENT_HALTED: 2,
    RejectCode.INSTRUMENT_CLOSED: 2,
    RejectCode.QTY_TOO_LARGE: 3,
    RejectCode.RISK_LIMIT: 3,
    RejectCode.INSUFFICIENT_BALANCE: 3,
    RejectCode.DUPLICATE_CL_ORD_ID: 6,
    RejectCode.BAD_LOT: 13,
    RejectCode.QTY_TOO_SMALL: 13,
    RejectCode.NOT_ENTITLED: 15,
    RejectCode.UNKNOWN_ORDER: 5,
    RejectCode.KILL_SWITCH: 0,  # Broker / Exchange option
    RejectCode.INVALID_ORDER: 11,  # Unsupported order characteristic
}
# RejectCode -> CxlRejReason (102)
CXL_REJ_REASON = {
    RejectCode.UNKNOWN_ORDER: 1,
    RejectCode.TOO_LATE_TO_CANCEL: 0,
    RejectCode.DUPLICATE_CL_ORD_ID: 6,
}


_last_time: list = [None, 0, ""]  # ts_ns, precision, formatted
_last_second: list = [None, ""]  # epoch second, its "YYYYMMDD-HH:MM:SS"


def fix_time(ts_ns: int, precision: int = 3) -> str:
    """UTCTimestamp of integer nanoseconds, with 0, 3, 6 or 9 fractional digits.

    The events of one command share its timestamp and a batch's commands mostly share their
    second: the last value and the last second's text are kept, so most calls format nothing."""
    last = _last_time
    if last[0] == ts_ns and last[1] == precision:
        return last[2]
    secs, frac = divmod(ts_ns, 1_000_000_000)
    second = _last_second
    if second[0] != secs:
        second[0], second[1] = secs, datetime.fromtimestamp(secs, UTC).strftime("%Y%m%d-%H:%M:%S")
    base = second[1]
    if precision <= 0:
        value = base
    elif precision == 3:
        value = f"{base}.{frac // 1_000_000:03d}"
    else:
        value = f"{base}.{frac:09d}"[: len(base) + 1 + precision]
    last[0], last[1], last[2] = ts_ns, precision, value
    return value


def parse_fix_time(value: str) -> int:
    """UTCTimestamp -> integer nanoseconds."""
    main, _, frac = value.partition(".")
    dt = datetime.strptime(main, "%Y%m%d-%H:%M:%S").replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)


#: The most lots (quantities) or ticks (prices) an order may carry. The compiled core holds a
#: quantity in a C 64-bit integer and refuses more than 2**62 lots; prices get the same bound, so
#: every value that reaches a command (and the journal) is a bounded integer. Beyond it: a rejected
#: ExecutionReport at the edge, before the core or the journal sees anything.
MAX_UNITS = 2**62
_FIELD_NAMES = {38: "OrderQty", 44: "Price", 99: "StopPx", 1138: "DisplayQty"}
# Exact arithmetic for a quotient of two bounded decimals (the default context keeps 28 digits and
# would round an off-grid value of 30 digits onto the grid).
_EXACT = Context(prec=4 * DECIMAL_MAX_LEN, traps=[InvalidOperation])


def _units(value: Decimal, unit: Decimal) -> tuple[int, bool]:
    """``value / unit`` as (integer part, exact?); MAX_UNITS + 1 when it is larger than MAX_UNITS."""
    if value.adjusted() - unit.adjusted() > 20:  # >= 10**20 units, beyond 2**62 whatever the digits
        return MAX_UNITS + 1, False
    try:
        q, r = _EXACT.divmod(value, unit)
    except InvalidOperation:  # more digits than even the exact context holds: no bounded value has them
        return MAX_UNITS + 1, False
    n = int(q)
    return (n, not r) if n <= MAX_UNITS else (MAX_UNITS + 1, False)


_MEMO = 4096  # formatted values an InstrumentView keeps per kind (forgotten all at once beyond)


class InstrumentView(Units):
    """What the edge needs of an instrument: the market-data formatting (``px``, ``qty``) plus
    exact Decimal -> integer conversions that refuse off-grid values with a venue error code."""

    __slots__ = ("symbol", "_px", "_qty", "_avg")

    def __init__(self, symbol: str, tick: Decimal, lot: Decimal) -> None:
        super().__init__(tick, lot)
        self.symbol = symbol
        # formatted values remembered: a book trades at few prices and sizes, and every report
        # formats four to six of them (Decimal arithmetic and formatting, ~1 us each)
        self._px: dict[int, str] = {}
        self._qty: dict[int, str] = {}
        self._avg: dict[tuple[int, int], str] = {}

    def px(self, ticks: int) -> str:
        text = self._px.get(ticks)
        if text is None:
            if len(self._px) >= _MEMO:
                self._px.clear()
            text = self._px[ticks] = plain(ticks * self.tick)
        return text

    def qty(self, lots: int) -> str:
        text = self._qty.get(lots)
        if text is None:
            if len(self._qty) >= _MEMO:
                self._qty.clear()
            text = self._qty[lots] = plain(lots * self.lot)
        return text

    def ticks(self, price: Decimal, tag: int = 44) -> int:
        n, exact = _units(price, self.tick)
        if n > MAX_UNITS:
            raise EdgeReject(EdgeError.BAD_VALUE, f"{_FIELD_NAMES.get(tag, 'price')} ({tag}) {price} is above the "
                             f"venue's maximum of {MAX_UNITS} ticks of {self.tick}", 99)
        if not exact:
            raise EdgeReject(RejectCode.BAD_TICK, f"price {price} is not a multiple of the tick {self.tick} (tag {tag})", 99)
        return n

    def lots(self, qty: Decimal, tag: int = 38) -> int:
        n, exact = _units(qty, self.lot)
        if n > MAX_UNITS:
            raise EdgeReject(RejectCode.QTY_TOO_LARGE, f"{_FIELD_NAMES.get(tag, 'quantity')} ({tag}) {qty} is above the "
                             f"venue's maximum of {MAX_UNITS} lots of {self.lot}", 3)
        if not exact:
            raise EdgeReject(RejectCode.BAD_LOT, f"quantity {qty} is not a multiple of the lot {self.lot} (tag {tag})", 13)
        return n

    def avg_px(self, cum_notional: int, cum_qty: int) -> str:
        if cum_qty == 0:
            return "0"
        key = (cum_notional, cum_qty)
        text = self._avg.get(key)
        if text is None:
            if len(self._avg) >= _MEMO:
                self._avg.clear()
            text = self._avg[key] = plain(
                (Decimal(cum_notional) * self.tick / cum_qty).quantize(self.tick / 10**6).normalize())
        return text




def _required(msg: Message, tag: int, name: str) -> str:
    value = msg.get_str(tag)
    if value is None or value == "":
        raise EdgeReject(EdgeError.MISSING_FIELD, f"{name} ({tag}) is required")
    return value


def _decimal(msg: Message, tag: int, name: str) -> Decimal | None:
    """A positive plain decimal of at most DECIMAL_MAX_LEN characters (what the dictionary lets
    through; checked again so that no unbounded string is ever converted here)."""
    raw = msg.get(tag)
    if raw is None:
        return None
    if not is_decimal(raw):
        shown = raw[:40].decode("latin-1") + ("..." if len(raw) > 40 else "")
        raise EdgeReject(EdgeError.BAD_VALUE, f"{name} ({tag}) is not a decimal of at most {DECIMAL_MAX_LEN} "
                                              f"characters: {shown!r} ({len(raw)} characters)")
    value = raw.decode("ascii")
    d = Decimal(value)
    if d <= 0:
        raise EdgeReject(EdgeError.BAD_VALUE, f"{name} ({tag}) must be positive: {value!r}")
    return d


_ORD_TYPES = {t.value: t for t in OrdType}
_TIFS = {t.value: t for t in TimeInForce}
_STP = {m.value: m for m in StpMode}


@dataclass(slots=True)
class EdgeContext:
    """Who is sending: the session id, its entitled accounts, and an instrument lookup."""

    session: str
    accounts: tuple[str, ...]
    instrument: Callable[[str], InstrumentView | None]

    def account(self, msg: Message) -> str:
        account = msg.get_str(1)
        if account is None:
            if len(self.accounts) == 1:
                return self.accounts[0]
            raise EdgeReject(EdgeError.MISSING_FIELD, "Account (1) is required: this session trades several accounts")
        if account not in self.accounts:
            raise EdgeReject(RejectCode.NOT_ENTITLED, f"session is not entitled to account {account}", 15)
        return account

    def inst(self, msg: Message) -> InstrumentView:
        symbol = _required(msg, 55, "Symbol")
        inst = self.instrument(symbol)
        if inst is None:
            raise EdgeReject(RejectCode.UNKNOWN_INSTRUMENT, f"unknown instrument {symbol}", 1)
        return inst


def _side(msg: Message) -> Side:
    value = _required(msg, 54, "Side")
    if value not in ("1", "2"):
        raise EdgeReject(EdgeError.BAD_VALUE, f"Side (54) must be 1 (buy) or 2 (sell), got {value}")
    return Side(value)


def new_order(msg: Message, ctx: EdgeContext, ts: int) -> cmd.NewOrder:
    """NewOrderSingle (D) -> NewOrder. Raises EdgeReject with a reason."""
    cl = _required(msg, 11, "ClOrdID")
    account = ctx.account(msg)
    inst = ctx.inst(msg)
    side = _side(msg)
    ord_type = _ORD_TYPES.get(msg.get_str(40, "2"))
    if ord_type is None:
        raise EdgeReject(EdgeError.UNSUPPORTED_ORDER_TYPE, f"OrdType (40) {msg.get_str(40)} is not supported", 11)
    tif = _TIFS.get(msg.get_str(59, "1" if ord_type != OrdType.MARKET else "3"))
    if tif is None:
        raise EdgeReject(EdgeError.UNSUPPORTED_TIME_IN_FORCE, f"TimeInForce (59) {msg.get_str(59)} is not supported", 11)
    qty = _decimal(msg, 38, "OrderQty")
    if qty is None:
        raise EdgeReject(EdgeError.MISSING_FIELD, "OrderQty (38) is required")
    price = _decimal(msg, 44, "Price")
    if ord_type in (OrdType.LIMIT, OrdType.STOP_LIMIT) and price is None:
        raise EdgeReject(EdgeError.MISSING_FIELD, "Price (44) is required for a limit order")
    if ord_type in (OrdType.MARKET, OrdType.STOP) and price is not None:
        raise EdgeReject(EdgeError.BAD_VALUE, "Price (44) is not allowed on a market or stop order")
    stop = _decimal(msg, 99, "StopPx")
    if ord_type in (OrdType.STOP, OrdType.STOP_LIMIT) and stop is None:
        raise EdgeReject(EdgeError.MISSING_FIELD, "StopPx (99) is required for a stop order")
    display = _decimal(msg, 1138, "DisplayQty")
    expire_at = None
    if tif == TimeInForce.GTD:
        text = msg.get_str(126)
        if not text:
            raise EdgeReject(EdgeError.MISSING_FIELD, "ExpireTime (126) is required for GTD")
        try:
            expire_at = parse_fix_time(text)
        except ValueError:
            raise EdgeReject(EdgeError.BAD_VALUE, f"ExpireTime (126) is not a UTCTimestamp: {text}") from None
    post_only = msg.get_str(7003) == "Y" or "6" in (msg.get_str(18) or "").split()
    stp = None
    if (raw := msg.get_str(7002)) is not None:
        stp = _STP.get(raw)
        if stp is None:
            raise EdgeReject(EdgeError.BAD_VALUE, f"SelfTradePreventionMode (7002) {raw} is not one of N T M B D")
    return cmd.NewOrder(
        ts=ts, account=account, instrument=inst.symbol, cl_ord_id=cl, side=side,
        qty=inst.lots(qty), ord_type=ord_type,
        price=inst.ticks(price) if price is not None else None, tif=tif,
        stop_price=inst.ticks(stop, 99) if stop is not None else None,
        display_qty=inst.lots(display, 1138) if display is not None else None,
        post_only=post_only, stp=stp, expire_at=expire_at, session=ctx.session,
    )


def order_id(value: str | None) -> int | None:
    """OrderID (37) as the venue's integer id, or None if it cannot be one (not 1 to 18 digits):
    an id is never converted from an unbounded string."""
    if value and len(value) <= SEQNUM_MAX_DIGITS and value.isdigit() and value.isascii():
        return int(value)
    return None


def _orig(msg: Message) -> tuple[int | None, str | None]:
    order_id_text = msg.get_str(37)
    orig = msg.get_str(41)
    oid = None
    if order_id_text:
        oid = order_id(order_id_text)
        if oid is None:
            shown = order_id_text if len(order_id_text) <= 20 else f"of {len(order_id_text)} characters"
            raise EdgeReject(RejectCode.UNKNOWN_ORDER, f"unknown order {shown}", 1)
    if oid is None and not orig:
        raise EdgeReject(EdgeError.MISSING_FIELD, "OrigClOrdID (41) or OrderID (37) is required")
    return oid, orig


def cancel_order(msg: Message, ctx: EdgeContext, ts: int) -> cmd.CancelOrder:
    cl = _required(msg, 11, "ClOrdID")
    oid, orig = _orig(msg)
    return cmd.CancelOrder(ts=ts, account=ctx.account(msg), instrument=ctx.inst(msg).symbol, cl_ord_id=cl,
                           order_id=oid, orig_cl_ord_id=orig, session=ctx.session)


def replace_order(msg: Message, ctx: EdgeContext, ts: int) -> cmd.ReplaceOrder:
    cl = _required(msg, 11, "ClOrdID")
    oid, orig = _orig(msg)
    inst = ctx.inst(msg)
    qty = _decimal(msg, 38, "OrderQty")
    if qty is None:
        raise EdgeReject(EdgeError.MISSING_FIELD, "OrderQty (38) is required")
    price = _decimal(msg, 44, "Price")
    return cmd.ReplaceOrder(ts=ts, account=ctx.account(msg), instrument=inst.symbol, cl_ord_id=cl,
                            qty=inst.lots(qty), price=inst.ticks(price) if price is not None else None,
                            order_id=oid, orig_cl_ord_id=orig, session=ctx.session)


# ---- events -> messages ---------------------------------------------------------------------

def _status(leaves: int, cum: int, terminal: str | None = None) -> str:
    if terminal is not None and leaves == 0 and terminal:
        return terminal
    if leaves == 0 and cum > 0:
        return "2"
    return "1" if cum > 0 else "0"


def _er(
    e, inst: InstrumentView, exec_type: str, ord_status: str, *, order_id: int | str, cl: str, leaves: int,
    cum: int, cum_notional: int, qty: int | None = None, price: int | None = None, extra: Fields | None = None,
    precision: int = 3,
) -> Fields:
    f: Fields = [
        (37, str(order_id)),
        (11, cl),
        (17, str(e.seq)),
        (150, exec_type),
        (39, ord_status),
        (1, e.account),
        (55, e.instrument),
        (54, e.side.value),
    ]
    if qty is not None:
        f.append((38, inst.qty(qty)))
    if price is not None:
        f.append((44, inst.px(price)))
    f += [
        (151, inst.qty(leaves)),
        (14, inst.qty(cum)),
        (6, inst.avg_px(cum_notional, cum)),
        (60, fix_time(e.ts, precision)),
    ]
    if extra:
        f += extra
    return f


def report(e, inst: InstrumentView, precision: int = 3, commission: str | None = None) -> tuple[str, Fields] | None:
    """Translate one order event into (MsgType, body fields), or None for non-order events.

    ``commission``: for a fill, the fee the ledger booked on the order's account for it (in the
    quote asset), sent as Commission (12) with CommType (13) = 3 (absolute)."""
    if isinstance(e, ev.OrderAccepted):
        extra = [(40, e.ord_type.value), (59, e.tif.value)]
        if e.stop_price is not None:
            extra.append((99, inst.px(e.stop_price)))
        return "8", _er(e, inst, "0", "0", order_id=e.order_id, cl=e.cl_ord_id, leaves=e.leaves_qty, cum=0,
                        cum_notional=0, qty=e.qty, price=e.price, extra=extra, precision=precision)
    if isinstance(e, ev.OrderFilled):
        status = "2" if e.leaves_qty == 0 else "1"
        extra = [(32, inst.qty(e.last_qty)), (31, inst.px(e.last_px)), (880, str(e.trade_id)),
                 (1057, "Y" if e.aggressor else "N")]
        if commission is not None:
            extra += [(12, commission), (13, "3")]
        return "8", _er(e, inst, "F", status, order_id=e.order_id, cl=e.cl_ord_id, leaves=e.leaves_qty,
                        cum=e.cum_qty, cum_notional=e.cum_notional, extra=extra, precision=precision)
    if isinstance(e, ev.OrderCancelled):
        extra = [(41, e.orig_cl_ord_id), (58, f"cancelled: {e.reason}")]
        return "8", _er(e, inst, "4", "4", order_id=e.order_id, cl=e.cl_ord_id, leaves=0, cum=e.cum_qty,
                        cum_notional=e.cum_notional, qty=e.qty, price=e.price, extra=extra, precision=precision)
    if isinstance(e, ev.OrderExpired):
        return "8", _er(e, inst, "C", "C", order_id=e.order_id, cl=e.cl_ord_id, leaves=0, cum=e.cum_qty,
                        cum_notional=e.cum_notional, qty=e.qty, price=e.price,
                        extra=[(58, f"expired: {e.reason}")], precision=precision)
    if isinstance(e, ev.OrderReplaced):
        return "8", _er(e, inst, "5", _status(e.leaves_qty, e.cum_qty), order_id=e.order_id, cl=e.cl_ord_id,
                        leaves=e.leaves_qty, cum=e.cum_qty, cum_notional=e.cum_notional, qty=e.qty,
                        price=e.price, extra=[(41, e.orig_cl_ord_id)], precision=precision)
    if isinstance(e, ev.OrderRestated):
        return "8", _er(e, inst, "D", _status(e.leaves_qty, e.cum_qty), order_id=e.order_id, cl=e.cl_ord_id,
                        leaves=e.leaves_qty, cum=e.cum_qty, cum_notional=e.cum_notional, qty=e.qty,
                        price=e.price, extra=[(378, "8"), (58, f"restated: {e.reason}")], precision=precision)
    if isinstance(e, ev.OrderTriggered):
        return "8", _er(e, inst, "L", "0", order_id=e.order_id, cl=e.cl_ord_id, leaves=e.leaves_qty, cum=0,
                        cum_notional=0, qty=e.qty, price=e.price, precision=precision)
    if isinstance(e, ev.OrderRejected):
        return "8", rejected_report(e.seq, e.ts, e.cl_ord_id, e.account, e.instrument, e.side.value,
                                    int(e.code), e.text, ORD_REJ_REASON.get(RejectCode(e.code), 99)
                                    if e.code in RejectCode._value2member_map_ else 99, precision)
    if isinstance(e, ev.CancelRejected):
        return "9", cancel_reject(e.cl_ord_id, e.orig_cl_ord_id, e.order_id, e.is_replace, int(e.code), e.text,
                                  CXL_REJ_REASON.get(e.code, 99), e.account)
    return None


def fill_commissions(events: list, units: Callable[[str], InstrumentUnits | None],
                     assets: Mapping[str, Asset]) -> dict[tuple[int, int], str]:
    """(order_id, trade_id) -> the fee the ledger booked for that fill, as a decimal string.

    Read from the batch's own ``LedgerEntry(kind="trade", ref="trade:<id>")``: the account's
    quote posting is -(notional + fee) for the buyer and notional - fee for the seller, so the
    fee is exactly what the ledger moved. A self-trade (both orders of one account) books one
    net posting: its whole fee is reported on the aggressor's fill and 0 on the resting one.
    """
    trades: dict[int, ev.Trade] = {}
    entries: dict[int, ev.LedgerEntry] = {}
    for e in events:
        if isinstance(e, ev.Trade):
            trades[e.trade_id] = e
        elif isinstance(e, ev.LedgerEntry) and e.kind == "trade" and e.ref.startswith("trade:"):
            entries[int(e.ref[6:])] = e
    out: dict[tuple[int, int], str] = {}
    for e in events:
        if not isinstance(e, ev.OrderFilled):
            continue
        entry, trade, u = entries.get(e.trade_id), trades.get(e.trade_id), units(e.instrument)
        if entry is None or trade is None or u is None:
            continue
        posted = sum(d for acc, asset, d in entry.postings if acc == e.account and asset == u.quote)
        notional = u.quote_units(e.last_px, e.last_qty)
        if trade.maker_account == trade.taker_account:
            fee = -posted if e.aggressor else 0
        else:
            fee = -posted - notional if e.side == Side.BUY else notional - posted
        out[(e.order_id, e.trade_id)] = plain(assets[u.quote].to_decimal(fee))
    return out


def rejected_report(exec_id: object, ts: int, cl: str, account: str, symbol: str, side: str, code: int,
                    text: str, ord_rej_reason: int, precision: int = 3) -> Fields:
    """ExecutionReport with ExecType=Rejected (8) for an order that never entered the book."""
    return [
        (37, "NONE"), (11, cl), (17, str(exec_id)), (150, "8"), (39, "8"),
        *([(1, account)] if account else []), (55, symbol or "[N/A]"), (54, side or "1"),
        (151, "0"), (14, "0"), (6, "0"), (60, fix_time(ts, precision)),
        (103, str(ord_rej_reason)), (58, text), (7001, str(code)),
    ]


def cancel_reject(cl: str, orig: str | None, order_id: int | None, is_replace: bool, code: int, text: str,
                  cxl_rej_reason: int, account: str = "") -> Fields:
    f: Fields = [(37, str(order_id) if order_id is not None else "NONE"), (11, cl), (41, orig or "NONE"),
                 (39, "8" if order_id is None else "0")]
    if account:
        f.append((1, account))
    f += [(434, "2" if is_replace else "1"), (102, str(cxl_rej_reason)), (58, text), (7001, str(code))]
    return f


# ---- a batch's reports, made once --------------------------------------------------------------

def encode_body(fields: Iterable[tuple[int, object]]) -> bytes:
    """Body fields -> ``tag=value\x01...`` in wire order, the bytes ``Message.build`` and the
    session would put on the wire (values: str, int or bytes)."""
    fields = list(fields)
    if any(v.__class__ is bytes for _, v in fields):
        return b"".join([b"%d=%s\x01" % (t, v if v.__class__ is bytes else str(v).encode()) for t, v in fields])
    return "".join([f"{t}={v}\x01" for t, v in fields]).encode()


class Report:
    """One event's message, encoded once: MsgType, body and the body's byte sum. Every session
    that gets it (the owner, each drop copy) adds only its own header and checksum."""

    __slots__ = ("msg_type", "body", "body_sum")

    def __init__(self, msg_type: bytes, body: bytes) -> None:
        self.msg_type, self.body, self.body_sum = msg_type, body, byte_sum(body)


Translate = Callable[[object], "tuple[str, Fields] | None"]


class Reports:
    """The reports of the core's events, each translated and encoded once.

    The order-entry application and the drop-copy application are handed the same events (one
    command's, in order) one after the other; whichever asks first makes the reports and the
    other gets the very same ones, so a drop copy carries exactly its owner's body. A different
    list of events is translated afresh (nothing is kept beyond the last one)."""

    __slots__ = ("instrument", "precision", "commissions", "translate", "_events", "_n", "_first", "_last",
                 "_out")

    def __init__(self, instrument: Callable[[str], InstrumentView | None] | None = None, precision: int = 3,
                 commissions: Callable[[list], dict[tuple[int, int], str]] | None = None,
                 translate: Translate | None = None) -> None:
        """``instrument(symbol)``: the edge's view of an instrument; ``commissions(events)``:
        (order_id, trade_id) -> Commission (12) of each fill; ``translate(event)``: a full
        replacement of the translation (``(MsgType, body fields)`` or None)."""
        if instrument is None and translate is None:
            raise ValueError("Reports needs instrument or translate")
        self.instrument, self.precision = instrument, precision
        self.commissions, self.translate = commissions, translate
        self._events: object = None
        self._n, self._first, self._last = 0, None, None
        self._out: list[tuple[object, Report]] = []

    def of(self, events: Iterable[object]) -> list[tuple[object, Report]]:
        """``(event, report)`` for each event that has one, in order."""
        if events is self._events and len(events) == self._n and (  # type: ignore[arg-type]
                not self._n or (events[0] is self._first and events[-1] is self._last)):  # type: ignore[index]
            return self._out
        given = events
        events = events if isinstance(events, list) else list(events)
        out: list[tuple[object, Report]] = []
        if self.translate is not None:
            for e in events:
                r = self.translate(e)
                if r is not None:
                    out.append((e, Report(r[0].encode(), encode_body(r[1]))))
        else:
            fees = (self.commissions(events) if self.commissions is not None
                    and any(isinstance(e, ev.OrderFilled) for e in events) else None)
            instrument, precision = self.instrument, self.precision
            for e in events:
                inst = instrument(getattr(e, "instrument", ""))
                if inst is None:
                    continue
                fee = fees.get((e.order_id, e.trade_id)) if fees and isinstance(e, ev.OrderFilled) else None
                r = report(e, inst, precision, fee)
                if r is not None:
                    out.append((e, Report(r[0].encode(), "".join([f"{t}={v}\x01" for t, v in r[1]]).encode())))
        if given is events:  # a list: the next consumer may be handed the same one
            self._events, self._n = given, len(events)
            self._first, self._last = (events[0], events[-1]) if events else (None, None)
            self._out = out
        return out
