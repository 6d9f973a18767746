"""The reference matching core: plain Python, written to be read, not to be fast.

``ReferenceCore`` has the public interface of the compiled ``venue.core.engine.Core`` (``process``,
``process_batch``, the queries, ``snapshot`` / ``from_snapshot``, ``add_instrument``, the hooks of
venue/core/hooks.py) and the same semantics, described in engine.pyx. It has none of the compiled
core's shortcuts: no fast paths for plain limit orders or cancels (every command takes the one
general path, which reports touched levels through the book's ``take_dirty``), events built by
their dataclass constructors, the hooks always called (``NoHooks`` answers as if they were not).

Its job is to be the second opinion: the differential and property suites run every pairing of
{compiled core, reference core} x {fast book, naive book} on the same command streams and require
the same events, event for event (tests/conftest.py, tests/core_helpers.py). The venue never runs it.

An open order is a ``Row`` of venue/core/rows.py's ``FIELDS`` (``row.price`` or ``row[PRICE]``):
with the compiled ``Book`` (whose methods take only compiled rows) the compiled ``engine.Row``,
with any other book the plain-Python ``PyRow`` below, so reference core + ``NaiveBook`` runs no
compiled matching code at all.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace as dc_replace
from typing import Any

from sortedcontainers import SortedDict

from venue.core import engine
from venue.core.book import NaiveBook
from venue.core.commands import (
    CancelOrder,
    EndOfSession,
    MassCancel,
    NewOrder,
    ReplaceOrder,
    SetAccountStp,
    SetKillSwitch,
    SetTradingStatus,
    Tick,
)
from venue.core.events import (
    BookLevel,
    CancelRejected,
    Event,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    OrderRestated,
    OrderTriggered,
    Trade,
    TradingStatusChanged,
)
from venue.core.hooks import CoreHooks, NoHooks
from venue.core.instruments import Instrument
from venue.core.rows import FIELDS, LIVE, Order, row_to_json
from venue.core.types import OrdType, RejectCode, Side, StpMode, TimeInForce, TradingStatus

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET, STOP, STOP_LIMIT = OrdType.LIMIT, OrdType.MARKET, OrdType.STOP, OrdType.STOP_LIMIT
GTC, IOC, FOK, DAY, GTD = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY, TimeInForce.GTD
OPEN, HALTED = TradingStatus.OPEN, TradingStatus.HALTED
DEFAULT_STP = StpMode.EXPIRE_TAKER
SNAPSHOT_VERSION = 1
# The compiled row holds quantities as C long long, so the core refuses anything above this many
# lots (QTY_TOO_LARGE) whatever the instrument allows; the reference refuses the same orders.
MAX_QTY = 2**62


def _member(enum: type, value: Any) -> Any:
    """``value`` as a member of ``enum`` (members and their plain values accepted), else None."""
    try:
        return enum(value)
    except ValueError:
        return None


class PyRow:
    """An open order in plain Python: ``FIELDS`` as attributes, also addressed as ``row[i]``
    (the naive book and ``Order.from_row`` use that form). Compared by identity, like ``engine.Row``."""

    __slots__ = FIELDS

    def __init__(self, *values: Any) -> None:
        if len(values) not in (len(FIELDS) - 1, len(FIELDS)):
            raise TypeError(f"a row has {len(FIELDS)} fields, got {len(values)}")
        self.live = True
        for name, v in zip(FIELDS, values, strict=False):
            setattr(self, name, v)

    def __len__(self) -> int:
        return len(FIELDS)

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return [getattr(self, name) for name in FIELDS[i]]
        return getattr(self, FIELDS[i])

    def __setitem__(self, i: int, v: Any) -> None:
        setattr(self, FIELDS[i], v)


class _Market:
    """Per-instrument state: the book, the waiting stops (price -> rows in arrival order), the last
    trade and the band derived from the instrument's reference price."""

    def __init__(self, inst: Instrument, book: Any) -> None:
        self.inst = inst
        self.book = book
        self.row = engine.Row if type(book) is engine.Book else PyRow
        self.stops: dict[Side, SortedDict] = {BUY: SortedDict(), SELL: SortedDict()}
        self.last_px: int | None = None
        # the range of prices the last matching run traded through, and who took
        self.trade_lo: int | None = 0
        self.trade_hi: int | None = 0
        self.aggressor = BUY

    @property
    def band(self) -> tuple[int, int] | None:
        return self.inst.band()

    @property
    def max_qty(self) -> int:
        return min(self.inst.max_qty, MAX_QTY)

    def in_band(self, price: int) -> bool:
        band = self.band
        return band is None or band[0] <= price <= band[1]

    def new_row(self, *values: Any) -> Any:
        return self.row(*values)

    def copy_row(self, o: Any) -> Any:
        return self.row(*o[:])


def _by_id(o: Any) -> int:
    return o.order_id


class ReferenceCore:
    """The matching core in plain Python. ``ReferenceCore(instruments, hooks=None, book_factory=NaiveBook)``."""

    def __init__(
        self,
        instruments: Iterable[Instrument] | Mapping[str, Instrument],
        hooks: CoreHooks | None = None,
        book_factory: Callable[[], Any] = NaiveBook,
    ) -> None:
        if isinstance(instruments, Mapping):
            instruments = instruments.values()
        self._book_factory = book_factory
        self._markets: dict[str, _Market] = {
            inst.symbol: _Market(dc_replace(inst), book_factory()) for inst in instruments
        }
        self._hooks: CoreHooks = hooks if hooks is not None else NoHooks()
        self.seq = 0
        self.cmd_count = 0
        self._next_order_id = 1
        self._next_trade_id = 1
        self._orders: dict[int, Any] = {}  # open orders (resting or waiting stops) by id
        self._by_clid: dict[str, dict[str, Any]] = {}  # account -> ClOrdID -> open order
        self._stp_default: dict[str, StpMode] = {}
        self._kill: set[str] = set()
        self._gtd: list[tuple[int, int]] = []  # heap of (expire_at, order_id)

    # ------------------------------------------------------------------ processing
    def process(self, cmd: Any) -> list[Event]:
        """Apply one command; return its events (numbered, hooks' extras appended)."""
        out: list = []
        t = type(cmd)
        if t is NewOrder:
            self._new(cmd, out)
        elif t is CancelOrder:
            self._cancel(cmd, out)
        elif t is ReplaceOrder:
            self._replace(cmd, out)
        elif t is MassCancel:
            self._mass_cancel(cmd, out)
        elif t is SetTradingStatus:
            self._set_status(cmd, out)
        elif t is EndOfSession:
            self._end_of_session(cmd, out)
        elif t is Tick:
            self._tick(cmd, out)
        elif t is SetAccountStp:
            self._stp_default[cmd.account] = StpMode(cmd.stp)
        elif t is SetKillSwitch:
            self._set_kill(cmd, out)
        else:
            out.extend(self._hooks.apply(cmd) or [])
        self._number(out)
        self.cmd_count += 1
        extra = self._hooks.on_events(out)
        if extra:
            self._number(extra)
            out.extend(extra)
        return out

    def _number(self, events: list) -> None:
        for e in events:
            self.seq += 1
            e.seq = self.seq

    def process_batch(self, cmds: Iterable) -> list[Event]:
        out: list = []
        for cmd in cmds:
            out.extend(self.process(cmd))
        return out

    # ------------------------------------------------------------------ queries
    def instrument(self, symbol: str) -> Instrument | None:
        mkt = self._markets.get(symbol)
        return None if mkt is None else mkt.inst

    def instruments(self) -> list[Instrument]:
        return [m.inst for m in self._markets.values()]

    def order(self, order_id: int) -> Order | None:
        """A snapshot of an open order (None once it is closed)."""
        o = self._orders.get(order_id)
        return None if o is None else Order.from_row(o)

    def order_by_cl_ord_id(self, account: str, cl_ord_id: str) -> Order | None:
        o = self._by_clid.get(account, {}).get(cl_ord_id)
        return None if o is None else Order.from_row(o)

    def open_orders(self, account: str | None = None, instrument: str | None = None,
                    session: str | None = None) -> list[Order]:
        """Snapshots of the open orders (resting and waiting stops) matching all filters, by id."""
        return [Order.from_row(o) for o in sorted(self._orders.values(), key=_by_id)
                if (account is None or o.account == account)
                and (instrument is None or o.instrument == instrument)
                and (session is None or o.session == session)]

    def book_levels(self, instrument: str, side: Side, depth: int | None = None) -> list[tuple[int, int, int]]:
        """[(price, visible qty, order count)], best first."""
        return self._markets[instrument].book.levels(Side(side), depth)

    def book(self, instrument: str) -> Any:
        return self._markets[instrument].book

    def last_price(self, instrument: str) -> int | None:
        return self._markets[instrument].last_px

    def kill_switch(self, account: str) -> bool:
        return account in self._kill

    def account_stp(self, account: str) -> StpMode:
        return self._stp_default.get(account, DEFAULT_STP)

    # ------------------------------------------------------------------ bookkeeping
    def _register(self, o: Any) -> None:
        self._orders[o.order_id] = o
        self._by_clid.setdefault(o.account, {})[o.cl_ord_id] = o

    def _unregister(self, o: Any) -> None:
        del self._orders[o.order_id]
        del self._by_clid[o.account][o.cl_ord_id]

    def _flush(self, mkt: _Market, ts: int, out: list) -> None:
        """One ``BookLevel`` per level the command touched, in the order the book first marked them."""
        for side, price, qty, count in mkt.book.take_dirty():
            out.append(BookLevel(0, ts, mkt.inst.symbol, side, price, qty, count))

    def _flush_all(self, ts: int, out: list) -> None:
        for mkt in self._markets.values():
            self._flush(mkt, ts, out)

    @staticmethod
    def _reject(cmd: NewOrder, out: list, code: int, text: str) -> None:
        out.append(OrderRejected(0, cmd.ts, cmd.cl_ord_id, cmd.account, cmd.instrument, cmd.side,
                                 cmd.qty, cmd.price, code, text, cmd.session))

    @staticmethod
    def _cxl_reject(cmd: Any, out: list, is_replace: bool, code: int, text: str) -> None:
        out.append(CancelRejected(0, cmd.ts, cmd.cl_ord_id, cmd.orig_cl_ord_id, cmd.order_id, cmd.account,
                                  cmd.instrument, is_replace, code, text, cmd.session))

    @staticmethod
    def _expire(o: Any, reason: str, ts: int, out: list) -> None:
        out.append(OrderExpired(0, ts, o.order_id, o.cl_ord_id, o.account, o.instrument, o.side, o.price,
                                o.qty, o.leaves_qty, o.cum_qty, o.cum_notional, reason, o.session))
        o.leaves_qty = 0

    @staticmethod
    def _waiting_stop(o: Any) -> bool:
        return o.stop_price is not None and not o.triggered

    def _take_out(self, mkt: _Market, o: Any) -> None:
        """Remove an open order from wherever it rests (book or stop book) and the registry."""
        if self._waiting_stop(o):
            stops = mkt.stops[o.side]
            waiting = stops[o.stop_price]
            waiting.remove(o)
            o.live = False
            if not waiting:
                del stops[o.stop_price]
        else:
            mkt.book.remove(o)
        self._unregister(o)

    def _cancel_order(self, mkt: _Market, o: Any, ts: int, out: list, reason: str, cl_ord_id: str,
                      session: str) -> None:
        self._take_out(mkt, o)
        out.append(OrderCancelled(0, ts, o.order_id, cl_ord_id or o.cl_ord_id, o.cl_ord_id, o.account,
                                  o.instrument, o.side, o.price, o.qty, o.leaves_qty, o.cum_qty,
                                  o.cum_notional, reason, session, o.session))
        o.leaves_qty = 0

    def _rest(self, mkt: _Market, o: Any) -> None:
        o.visible_qty = o.leaves_qty if o.display_qty is None else min(o.display_qty, o.leaves_qty)
        mkt.book.add(o)
        self._register(o)

    def _add_stop(self, mkt: _Market, o: Any) -> None:
        o.live = True
        mkt.stops[o.side].setdefault(o.stop_price, []).append(o)
        self._register(o)

    # ------------------------------------------------------------------ new order
    def _new(self, cmd: NewOrder, out: list) -> None:
        """Validate in the documented order (the first failed check is the reject), accept, then
        park a stop, trigger it at once (last trade already through its stop price) or work the order."""
        mkt = self._markets.get(cmd.instrument)
        if mkt is None:
            return self._reject(cmd, out, RejectCode.UNKNOWN_INSTRUMENT, "unknown instrument")
        inst = mkt.inst
        if inst.status is not OPEN:
            if inst.status is HALTED:
                return self._reject(cmd, out, RejectCode.INSTRUMENT_HALTED, "instrument halted")
            return self._reject(cmd, out, RejectCode.INSTRUMENT_CLOSED, "instrument closed")
        account = cmd.account
        if account in self._kill:
            return self._reject(cmd, out, RejectCode.KILL_SWITCH, "kill switch on")
        side, ot, tif = _member(Side, cmd.side), _member(OrdType, cmd.ord_type), _member(TimeInForce, cmd.tif)
        if side is None or ot is None or tif is None:
            return self._reject(cmd, out, RejectCode.INVALID_ORDER, "bad side, order type or time in force")
        qty = cmd.qty
        if type(qty) is not int or qty <= 0:
            return self._reject(cmd, out, RejectCode.BAD_LOT, "quantity must be a positive number of lots")
        if qty < inst.min_qty:
            return self._reject(cmd, out, RejectCode.QTY_TOO_SMALL, "quantity below minimum")
        if qty > mkt.max_qty:
            return self._reject(cmd, out, RejectCode.QTY_TOO_LARGE, "quantity above maximum")
        price = cmd.price
        if ot in (LIMIT, STOP_LIMIT):
            if type(price) is not int or price <= 0:
                return self._reject(cmd, out, RejectCode.BAD_TICK, "price must be a positive number of ticks")
            if not mkt.in_band(price):
                return self._reject(cmd, out, RejectCode.OUTSIDE_PRICE_BAND, "price outside the band")
            if price * qty < inst._min_notional_units:
                return self._reject(cmd, out, RejectCode.NOTIONAL_TOO_SMALL, "notional below minimum")
        elif price is not None:
            return self._reject(cmd, out, RejectCode.INVALID_ORDER, "market and stop orders take no price")
        stop = cmd.stop_price
        if ot in (STOP, STOP_LIMIT):
            if type(stop) is not int or stop <= 0:
                return self._reject(cmd, out, RejectCode.BAD_TICK, "stop price must be a positive number of ticks")
        elif stop is not None:
            return self._reject(cmd, out, RejectCode.INVALID_ORDER, "stop price on a non-stop order")
        disp = cmd.display_qty
        if disp is not None and (
            price is None or tif in (IOC, FOK) or type(disp) is not int or not 0 < disp <= qty
        ):
            return self._reject(cmd, out, RejectCode.INVALID_ORDER, "bad display quantity")
        post_only = bool(cmd.post_only)
        if post_only and (ot is not LIMIT or tif in (IOC, FOK)):
            return self._reject(cmd, out, RejectCode.INVALID_ORDER, "post-only needs a GTC/DAY/GTD limit")
        ts = cmd.ts
        expire_at = cmd.expire_at if tif is GTD else None
        if tif is GTD and (type(expire_at) is not int or expire_at <= ts):
            return self._reject(cmd, out, RejectCode.INVALID_ORDER, "GTD needs a future expire_at")
        if cmd.cl_ord_id in self._by_clid.get(account, {}):
            return self._reject(cmd, out, RejectCode.DUPLICATE_CL_ORD_ID, "duplicate ClOrdID")
        if post_only and self._would_take(mkt, side, price):
            return self._reject(cmd, out, RejectCode.POST_ONLY_WOULD_TAKE, "post-only would take")
        if cmd.stp is None:
            stp = self._stp_default.get(account, DEFAULT_STP)
        else:
            stp = _member(StpMode, cmd.stp)
            if stp is None:
                return self._reject(cmd, out, RejectCode.INVALID_ORDER, "bad self-trade prevention mode")
        oid = self._next_order_id
        verdict = self._hooks.pre_new(cmd, oid, inst)
        if verdict is not None:
            return self._reject(cmd, out, verdict[0], verdict[1])
        self._next_order_id = oid + 1
        cl, session, sym = cmd.cl_ord_id, cmd.session, inst.symbol
        o = mkt.new_row(oid, cl, account, sym, side, ot, tif, price, qty, qty, 0, 0, disp, 0, stop, stp,
                        post_only, expire_at, session, ts, False, True)
        out.append(OrderAccepted(0, ts, oid, cl, account, sym, side, ot, tif, price, qty, stop, disp, qty,
                                 session))
        if expire_at is not None:
            heapq.heappush(self._gtd, (expire_at, oid))
        if stop is not None:
            last = mkt.last_px
            if last is not None and (last >= stop if side is BUY else last <= stop):
                self._run_stops(mkt, ts, out, deque([o]))
            else:
                self._add_stop(mkt, o)
        elif self._work(mkt, o, ts, out):
            self._run_stops(mkt, ts, out, None)
        self._flush(mkt, ts, out)

    @staticmethod
    def _would_take(mkt: _Market, side: Side, price: int) -> bool:
        best = mkt.book.best_ask if side is BUY else mkt.book.best_bid
        return best is not None and (price >= best if side is BUY else price <= best)

    # ------------------------------------------------------------------ matching
    def _work(self, mkt: _Market, o: Any, ts: int, out: list) -> bool:
        """An accepted/triggered/re-priced order (not registered, not resting) meets the book:
        FOK check, matching, then rest or expire the remainder. Returns True if it traded."""
        band = mkt.band
        if o.price is not None:
            limit = o.price
        elif band is None:
            limit = None
        else:
            limit = band[1] if o.side is BUY else band[0]
        if o.tif is FOK and self._available(mkt.book, o, limit) < o.leaves_qty:
            self._expire(o, "fok", ts, out)
            return False
        traded = self._match(mkt, o, limit, ts, out)
        if o.leaves_qty == 0:
            return traded
        if o.price is None:
            best = mkt.book.best_ask if o.side is BUY else mkt.book.best_bid
            self._expire(o, "market_no_liquidity" if best is None else "price_band", ts, out)
        elif o.tif in (IOC, FOK):
            self._expire(o, "ioc" if o.tif is IOC else "fok", ts, out)
        else:
            self._rest(mkt, o)
        return traded

    @staticmethod
    def _crosses(buy: bool, p: int, limit: int | None) -> bool:
        return limit is None or (p <= limit if buy else p >= limit)

    def _available(self, book: Any, o: Any, limit: int | None) -> int:
        """What ``o`` would fill if matched now (FOK check): every better level in full; at the
        level where the taker meets its own order (STP), only what is ahead of it."""
        buy = o.side is BUY
        stp = o.stp
        by_level: dict[int, list] = {}
        for m in book.orders(SELL if buy else BUY):
            if not self._crosses(buy, m.price, limit):
                break
            by_level.setdefault(m.price, []).append(m)
        total = 0
        for orders in by_level.values():
            if total >= o.leaves_qty:
                break
            ahead = 0
            for m in orders:
                if stp is not StpMode.NONE and m.account == o.account:
                    if stp is StpMode.EXPIRE_MAKER:
                        continue
                    return total + ahead
                ahead += m.leaves_qty if m.display_qty is None else m.visible_qty
            total += sum(m.leaves_qty for m in orders
                         if not (stp is not StpMode.NONE and m.account == o.account))
        return total

    def _match(self, mkt: _Market, o: Any, limit: int | None, ts: int, out: list) -> bool:
        """Match taker ``o`` against the opposite side down to ``limit`` (None: no limit)."""
        book = mkt.book
        buy = o.side is BUY
        first = last = None
        while o.leaves_qty > 0:
            p = book.best_ask if buy else book.best_bid
            if p is None or not self._crosses(buy, p, limit):
                break
            m = book.head(SELL if buy else BUY)
            if o.stp is not StpMode.NONE and m.account == o.account:
                if not self._prevent_self_trade(book, o, m, ts, out):
                    break
                continue
            q = min(o.leaves_qty, m.visible_qty)
            tid = self._next_trade_id
            self._next_trade_id += 1
            for x in (m, o):
                x.leaves_qty -= q
                x.cum_qty += q
                x.cum_notional += p * q
            book.fill(m, q)
            if m.leaves_qty == 0:
                self._unregister(m)
            out.append(OrderFilled(0, ts, m.order_id, m.cl_ord_id, m.account, m.instrument, m.side, tid, p, q,
                                   m.leaves_qty, m.cum_qty, m.cum_notional, False, m.session))
            out.append(OrderFilled(0, ts, o.order_id, o.cl_ord_id, o.account, o.instrument, o.side, tid, p, q,
                                   o.leaves_qty, o.cum_qty, o.cum_notional, True, o.session))
            out.append(Trade(0, ts, tid, o.instrument, p, q, o.side, m.order_id, o.order_id, m.account,
                             o.account))
            first = p if first is None else first
            last = p
        if last is None:
            return False
        mkt.last_px = last
        mkt.aggressor = o.side
        mkt.trade_lo, mkt.trade_hi = (first, last) if buy else (last, first)
        if mkt.inst.band_bps is not None:
            mkt.inst.ref_price = last
        return True

    def _prevent_self_trade(self, book: Any, o: Any, m: Any, ts: int, out: list) -> bool:
        """Taker ``o`` meets its own account's resting ``m``: apply the taker's STP mode. Returns
        whether the taker goes on matching."""
        stp = o.stp
        if stp is StpMode.EXPIRE_TAKER:
            self._expire(o, "self_trade", ts, out)
            return False
        if stp in (StpMode.EXPIRE_MAKER, StpMode.EXPIRE_BOTH):
            book.remove(m)
            self._unregister(m)
            self._expire(m, "self_trade", ts, out)
            if stp is StpMode.EXPIRE_BOTH:
                self._expire(o, "self_trade", ts, out)
                return False
            return True
        # DECREMENT_CANCEL: both lose the smaller leaves; an order left with none expires
        d = min(o.leaves_qty, m.leaves_qty)
        if m.leaves_qty == d:
            book.remove(m)
            self._unregister(m)
            self._expire(m, "self_trade", ts, out)
        else:
            m.qty -= d
            book.reduce(m, m.leaves_qty - d)
            out.append(OrderRestated(0, ts, m.order_id, m.cl_ord_id, m.account, m.instrument, m.side, m.price,
                                     m.qty, m.leaves_qty, m.cum_qty, m.cum_notional, "self_trade", m.session))
        if o.leaves_qty == d:
            self._expire(o, "self_trade", ts, out)
            return False
        o.qty -= d
        o.leaves_qty -= d
        out.append(OrderRestated(0, ts, o.order_id, o.cl_ord_id, o.account, o.instrument, o.side, o.price, o.qty,
                                 o.leaves_qty, o.cum_qty, o.cum_notional, "self_trade", o.session))
        return True

    # ------------------------------------------------------------------ stops
    @staticmethod
    def _pop_reached(stops: SortedDict, buy: bool, bound: int | None, pending: deque) -> None:
        """Move the stops whose price ``bound`` reached (buy stops at or below it, sell stops at or
        above it) to ``pending``, nearest price first, arrival order within a price."""
        while stops:
            price = stops.keys()[0 if buy else -1]
            if (price > bound) if buy else (price < bound):
                return
            for s in stops.pop(price):
                s.live = False
                pending.append(s)

    def _collect_triggers(self, mkt: _Market, pending: deque) -> None:
        """Stops reached by the last matching run, in the order their prices were reached."""
        if mkt.aggressor is BUY:  # prices went up from trade_lo to trade_hi
            self._pop_reached(mkt.stops[SELL], False, mkt.trade_lo, pending)
            self._pop_reached(mkt.stops[BUY], True, mkt.trade_hi, pending)
        else:
            self._pop_reached(mkt.stops[BUY], True, mkt.trade_hi, pending)
            self._pop_reached(mkt.stops[SELL], False, mkt.trade_lo, pending)

    def _run_stops(self, mkt: _Market, ts: int, out: list, pending: deque | None) -> None:
        """Trigger and work stops one at a time; each may trade and trigger more."""
        if pending is None:
            pending = deque()
            self._collect_triggers(mkt, pending)
        while pending:
            o = pending.popleft()
            if o.order_id in self._orders:
                self._unregister(o)
            o.triggered = True
            out.append(OrderTriggered(0, ts, o.order_id, o.cl_ord_id, o.account, o.instrument, o.side, o.price,
                                      o.qty, o.leaves_qty, o.session))
            if o.price is not None and not mkt.in_band(o.price):
                self._expire(o, "price_band", ts, out)
                continue
            on_trigger = getattr(self._hooks, "on_trigger", None)
            if on_trigger is not None:
                # the stage re-values the order at the band of this moment, which bounds its matching
                verdict = on_trigger(Order.from_row(o), mkt.inst)
                if verdict is not None:
                    self._expire(o, verdict[1], ts, out)
                    continue
            if self._work(mkt, o, ts, out):
                self._collect_triggers(mkt, pending)

    # ------------------------------------------------------------------ cancel / replace
    def _find(self, cmd: Any) -> Any:
        """The caller's open order named by ``order_id`` (else ``orig_cl_ord_id``), on the named instrument."""
        if cmd.order_id is not None:
            o = self._orders.get(cmd.order_id)
            if o is not None and o.account != cmd.account:
                return None
        elif cmd.orig_cl_ord_id is not None:
            o = self._by_clid.get(cmd.account, {}).get(cmd.orig_cl_ord_id)
        else:
            return None
        if o is not None and cmd.instrument and o.instrument != cmd.instrument:
            return None
        return o

    def _cancel(self, cmd: CancelOrder, out: list) -> None:
        o = self._find(cmd)
        if o is None:
            return self._cxl_reject(cmd, out, False, RejectCode.UNKNOWN_ORDER, "unknown order")
        mkt = self._markets[o.instrument]
        self._cancel_order(mkt, o, cmd.ts, out, "client", cmd.cl_ord_id, cmd.session)
        self._flush(mkt, cmd.ts, out)

    def _replace(self, cmd: ReplaceOrder, out: list) -> None:
        o = self._find(cmd)
        if o is None:
            return self._cxl_reject(cmd, out, True, RejectCode.UNKNOWN_ORDER, "unknown order")
        mkt = self._markets[o.instrument]
        inst = mkt.inst
        ts = cmd.ts
        if inst.status is not OPEN:
            code = RejectCode.INSTRUMENT_HALTED if inst.status is HALTED else RejectCode.INSTRUMENT_CLOSED
            return self._cxl_reject(cmd, out, True, code, f"instrument {inst.status.value}")
        if o.account in self._kill:
            return self._cxl_reject(cmd, out, True, RejectCode.KILL_SWITCH, "kill switch on")
        qty = cmd.qty
        if type(qty) is not int or qty <= 0:
            return self._cxl_reject(cmd, out, True, RejectCode.BAD_LOT, "quantity must be a positive number of lots")
        price = o.price if cmd.price is None else cmd.price
        if cmd.price is not None:
            if o.price is None:
                return self._cxl_reject(cmd, out, True, RejectCode.INVALID_ORDER, "order has no limit price")
            if type(price) is not int or price <= 0:
                return self._cxl_reject(cmd, out, True, RejectCode.BAD_TICK, "price must be a positive number of ticks")
        cl = cmd.cl_ord_id
        clids = self._by_clid[o.account]
        if cl != o.cl_ord_id and cl in clids:
            return self._cxl_reject(cmd, out, True, RejectCode.DUPLICATE_CL_ORD_ID, "duplicate ClOrdID")
        if qty <= o.cum_qty:  # nothing would be left: the replace cancels the order
            self._cancel_order(mkt, o, ts, out, "client", cl, cmd.session)
            return self._flush(mkt, ts, out)
        if qty < inst.min_qty:
            return self._cxl_reject(cmd, out, True, RejectCode.QTY_TOO_SMALL, "quantity below minimum")
        if qty > mkt.max_qty:
            return self._cxl_reject(cmd, out, True, RejectCode.QTY_TOO_LARGE, "quantity above maximum")
        if price is not None:
            if price != o.price and not mkt.in_band(price):
                return self._cxl_reject(cmd, out, True, RejectCode.OUTSIDE_PRICE_BAND, "price outside the band")
            if price * qty < inst._min_notional_units:
                return self._cxl_reject(cmd, out, True, RejectCode.NOTIONAL_TOO_SMALL, "notional below minimum")
        waiting_stop = self._waiting_stop(o)
        if o.post_only and not waiting_stop and self._would_take(mkt, o.side, price):
            return self._cxl_reject(cmd, out, True, RejectCode.POST_ONLY_WOULD_TAKE, "post-only would take")
        verdict = self._hooks.pre_replace(cmd, Order.from_row(o), inst)
        if verdict is not None:
            return self._cxl_reject(cmd, out, True, verdict[0], verdict[1])
        old_price, old_qty, old_cl = o.price, o.qty, o.cl_ord_id
        leaves = qty - o.cum_qty
        if price == old_price and qty <= old_qty:  # in place, time priority kept
            if waiting_stop:
                o.leaves_qty = leaves
            else:
                mkt.book.reduce(o, leaves)
            o.qty = qty
            if cl != old_cl:
                del clids[old_cl]
                o.cl_ord_id = cl
                clids[cl] = o
            out.append(OrderReplaced(0, ts, o.order_id, cl, old_cl, o.account, o.instrument, o.side, price, qty,
                                     old_price, old_qty, leaves, o.cum_qty, o.cum_notional, True, cmd.session))
        else:  # out and back in as a new arrival, which may trade
            self._take_out(mkt, o)
            n = mkt.copy_row(o)
            n.price, n.qty, n.leaves_qty, n.cl_ord_id, n.visible_qty = price, qty, leaves, cl, 0
            out.append(OrderReplaced(0, ts, n.order_id, cl, old_cl, n.account, n.instrument, n.side, price, qty,
                                     old_price, old_qty, leaves, n.cum_qty, n.cum_notional, False, cmd.session))
            if waiting_stop:
                self._add_stop(mkt, n)
            elif self._work(mkt, n, ts, out):
                self._run_stops(mkt, ts, out, None)
        self._flush(mkt, ts, out)

    def _mass_cancel(self, cmd: MassCancel, out: list) -> None:
        victims = [o for o in sorted(self._orders.values(), key=_by_id)
                   if (cmd.account is None or o.account == cmd.account)
                   and (cmd.instrument is None or o.instrument == cmd.instrument)
                   and (cmd.side is None or o.side == cmd.side)
                   and (cmd.session_filter is None or o.session == cmd.session_filter)
                   and not (cmd.spare_gtc and o.tif is GTC)]
        for o in victims:
            self._cancel_order(self._markets[o.instrument], o, cmd.ts, out, cmd.reason, cmd.cl_ord_id, cmd.session)
        self._flush_all(cmd.ts, out)

    def _set_kill(self, cmd: SetKillSwitch, out: list) -> None:
        if not cmd.on:
            self._kill.discard(cmd.account)
            return
        self._kill.add(cmd.account)
        for o in sorted(self._by_clid.get(cmd.account, {}).values(), key=_by_id):
            self._cancel_order(self._markets[o.instrument], o, cmd.ts, out, "kill_switch", "", cmd.session)
        self._flush_all(cmd.ts, out)

    # ------------------------------------------------------------------ status and time
    def _set_status(self, cmd: SetTradingStatus, out: list) -> None:
        mkt = self._markets.get(cmd.instrument)
        if mkt is None:
            return
        mkt.inst.status = TradingStatus(cmd.status)
        out.append(TradingStatusChanged(0, cmd.ts, mkt.inst.symbol, mkt.inst.status))

    def _end_of_session(self, cmd: EndOfSession, out: list) -> None:
        for o in sorted(self._orders.values(), key=_by_id):
            if o.tif is DAY and (cmd.instrument is None or o.instrument == cmd.instrument):
                self._take_out(self._markets[o.instrument], o)
                self._expire(o, "day", cmd.ts, out)
        self._flush_all(cmd.ts, out)

    def _tick(self, cmd: Tick, out: list) -> None:
        touched = False
        while self._gtd and self._gtd[0][0] <= cmd.ts:
            _, oid = heapq.heappop(self._gtd)
            o = self._orders.get(oid)
            if o is not None and o.expire_at is not None and o.expire_at <= cmd.ts:
                self._take_out(self._markets[o.instrument], o)
                self._expire(o, "gtd", cmd.ts, out)
                touched = True
        if touched:
            self._flush_all(cmd.ts, out)

    # ------------------------------------------------------------------ snapshot
    def snapshot(self) -> dict:
        """The whole state as a JSON-serialisable dict (the compiled core's format; either core
        restores the other's snapshot)."""
        markets = {}
        for sym, mkt in self._markets.items():
            markets[sym] = {
                "last_px": mkt.last_px,
                "bids": [row_to_json(o) for o in mkt.book.orders(BUY)],
                "asks": [row_to_json(o) for o in mkt.book.orders(SELL)],
                "stops_buy": [row_to_json(o) for rows in mkt.stops[BUY].values() for o in rows],
                "stops_sell": [row_to_json(o) for rows in mkt.stops[SELL].values() for o in rows],
            }
        return {
            "version": SNAPSHOT_VERSION,
            "seq": self.seq,
            "cmd_count": self.cmd_count,
            "next_order_id": self._next_order_id,
            "next_trade_id": self._next_trade_id,
            "instruments": [m.inst.to_dict() for m in self._markets.values()],
            "markets": markets,
            "stp_defaults": {a: m.value for a, m in sorted(self._stp_default.items())},
            "kill": sorted(self._kill),
            "gtd": [list(x) for x in self._gtd],
            "hooks": self._hooks.snapshot(),
        }

    @classmethod
    def from_snapshot(cls, d: dict, hooks: CoreHooks | None = None,
                      book_factory: Callable[[], Any] = NaiveBook) -> ReferenceCore:
        if d.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported snapshot version {d.get('version')!r}")
        core = cls([Instrument.from_dict(x) for x in d["instruments"]], hooks, book_factory)
        core.seq = d["seq"]
        core.cmd_count = d["cmd_count"]
        core._next_order_id = d["next_order_id"]
        core._next_trade_id = d["next_trade_id"]
        core._stp_default = {a: StpMode(v) for a, v in d["stp_defaults"].items()}
        core._kill = set(d["kill"])
        core._gtd = [tuple(x) for x in d["gtd"]]
        for sym, m in d["markets"].items():
            mkt = core._markets[sym]
            mkt.last_px = m["last_px"]
            for key in ("bids", "asks"):
                for v in m[key]:
                    o = _row_from_json(mkt, v)
                    mkt.book.add(o)
                    core._register(o)
            for key in ("stops_buy", "stops_sell"):
                for v in m[key]:
                    core._add_stop(mkt, _row_from_json(mkt, v))
            mkt.book.take_dirty()
        core._hooks.restore(d.get("hooks") or {})
        return core

    def add_instrument(self, inst: Instrument) -> None:
        """Add an instrument the core does not have yet (e.g. after restoring an older snapshot)."""
        if inst.symbol not in self._markets:
            self._markets[inst.symbol] = _Market(dc_replace(inst), self._book_factory())


def _row_from_json(mkt: _Market, v: list) -> Any:
    """A snapshot row (``row_to_json``) as a row of the market's kind."""
    values = list(v[:LIVE])
    for i, enum in ((FIELDS.index("side"), Side), (FIELDS.index("ord_type"), OrdType),
                    (FIELDS.index("tif"), TimeInForce), (FIELDS.index("stp"), StpMode)):
        values[i] = enum(values[i])
    return mkt.new_row(*values)
