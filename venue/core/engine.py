"""The matching core: one thread, commands in, numbered events out; no I/O, no clock, integers only.

``Core.process(cmd)`` validates, matches and returns the command's events, numbered in one gapless
sequence (``Core.seq``). Semantics in brief (details in the method docstrings):

- price-time priority; limit, market (bounded by the price band; remainder expired "price_band" or
  "market_no_liquidity"), stop / stop-limit (triggered by the last trade price, in trigger order),
  iceberg (visible ``display_qty``; each refresh goes to the back of the level);
- TIF GTC, IOC and FOK (accepted, then remainder / everything expired "ioc" / "fok"), DAY (expired
  "day" by ``EndOfSession``), GTD (expired "gtd" by ``Tick`` once ``expire_at <= ts``);
- post-only rejected (``POST_ONLY_WOULD_TAKE``) when it would take;
- self-trade prevention decided by the taker's mode (order override, else the account default,
  else ``EXPIRE_TAKER``): expired orders get ``OrderExpired(reason="self_trade")``, a decremented
  one ``OrderRestated(reason="self_trade")`` with its qty lowered;
- replace keeps time priority when the price is unchanged and the qty not raised; qty <= cum_qty
  cancels; a replaced order that now crosses trades as a taker;
- the reference price of the band is the last trade price (initially the instrument's).

Only OPEN orders are kept (``order``, ``order_by_cl_ord_id``, ``open_orders``); closed orders
live in the journal.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace as dc_replace
from typing import Any

from sortedcontainers import SortedDict

from venue.core.book import (
    ACCOUNT,
    CL_ORD_ID,
    CUM_NOTIONAL,
    CUM_QTY,
    DISPLAY_QTY,
    EXPIRE_AT,
    INSTRUMENT,
    LEAVES_QTY,
    LIVE,
    ORDER_ID,
    POST_ONLY,
    PRICE,
    QTY,
    SESSION,
    SIDE,
    STOP_PRICE,
    STP,
    TIF,
    TRIGGERED,
    VISIBLE_QTY,
    Book,
    Level,
    Order,
    Row,
    row_from_json,
    row_to_json,
)
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
from venue.core.types import OrdType, RejectCode, Side, StpMode, TimeInForce, TradingStatus

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET, STOP, STOP_LIMIT = OrdType.LIMIT, OrdType.MARKET, OrdType.STOP, OrdType.STOP_LIMIT
GTC, IOC, FOK, DAY, GTD = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY, TimeInForce.GTD
OPEN, HALTED = TradingStatus.OPEN, TradingStatus.HALTED
STP_NONE, EXPIRE_TAKER, EXPIRE_MAKER, EXPIRE_BOTH, DECREMENT = (
    StpMode.NONE, StpMode.EXPIRE_TAKER, StpMode.EXPIRE_MAKER, StpMode.EXPIRE_BOTH, StpMode.DECREMENT_CANCEL,
)
DEFAULT_STP = EXPIRE_TAKER

# value -> member maps: normalise plain strings to enum members in one dict lookup
_SIDES = {m: m for m in Side}
_ORD_TYPES = {m: m for m in OrdType}
_TIFS = {m: m for m in TimeInForce}
_STPS = {m: m for m in StpMode}

SNAPSHOT_VERSION = 1

# Hot-path events are built field by field on an ``object.__new__`` instance: the same dataclass
# objects as their constructor makes, at about half the cost of the generated ``__init__`` (a call
# from C into a Python frame). tests/test_core_event_construction.py checks that every field is
# set and that each such event equals its constructor-built twin; a field added to one of these
# event classes must be added here too (that test fails until it is).
_alloc = object.__new__


def _book_level(ts: int, sym: str, side: Side, price: int, qty: int, count: int) -> BookLevel:
    e = _alloc(BookLevel)
    e.seq = 0
    e.ts = ts
    e.instrument = sym
    e.side = side
    e.price = price
    e.qty = qty
    e.orders = count
    return e


class _Market:
    """Per-instrument state: the book, waiting stops, last trade, cached band."""

    __slots__ = ("inst", "sym", "book", "stops_buy", "stops_sell", "last_px", "band_lo", "band_hi",
                 "trade_lo", "trade_hi", "aggressor")

    def __init__(self, inst: Instrument, book) -> None:
        self.inst = inst
        self.sym = inst.symbol
        self.book = book
        self.stops_buy: SortedDict = SortedDict()
        self.stops_sell: SortedDict = SortedDict()
        self.last_px: int | None = None
        self.trade_lo: int | None = 0
        self.trade_hi: int | None = 0
        self.aggressor = BUY
        self.set_band()

    def set_band(self) -> None:
        band = self.inst.band()
        self.band_lo: int | None = None if band is None else band[0]
        self.band_hi: int | None = None if band is None else band[1]


class Core:
    """The matching core. ``Core(instruments, hooks=None, book_factory=Book)``."""

    def __init__(
        self,
        instruments: Iterable[Instrument] | Mapping[str, Instrument],
        hooks: CoreHooks | None = None,
        book_factory: Callable[[], object] = Book,
    ) -> None:
        if isinstance(instruments, Mapping):
            instruments = instruments.values()
        self._book_factory = book_factory
        self._markets: dict[str, _Market] = {}
        for inst in instruments:
            self._markets[inst.symbol] = _Market(dc_replace(inst), book_factory())
        self._hooks: CoreHooks = hooks if hooks is not None else NoHooks()
        plain = self._plain = type(self._hooks) is NoHooks
        self._pre_new = None if plain else self._hooks.pre_new
        self._on_events = None if plain else self._hooks.on_events
        self._on_trigger = None if plain else getattr(self._hooks, "on_trigger", None)
        self.seq = 0
        self.cmd_count = 0
        self._next_order_id = 1
        self._next_trade_id = 1
        self._orders: dict[int, Row] = {}
        self._by_clid: dict[str, dict[str, Row]] = {}
        self._stp_default: dict[str, StpMode] = {}
        self._kill: set[str] = set()
        self._gtd: list[tuple[int, int]] = []
        self._handlers: dict[type, Callable[[Any, list], None]] = {
            NewOrder: self._new,
            CancelOrder: self._cancel,
            ReplaceOrder: self._replace,
            MassCancel: self._mass_cancel,
            SetTradingStatus: self._set_status,
            EndOfSession: self._end_of_session,
            Tick: self._tick,
            SetAccountStp: self._set_stp,
            SetKillSwitch: self._set_kill,
        }

    # ------------------------------------------------------------------ processing
    def process(self, cmd) -> list[Event]:
        """Apply one command; return its events (numbered, hooks' extras appended)."""
        out: list = []
        handler = self._handlers.get(type(cmd))
        if handler is None:
            extra = self._hooks.apply(cmd)
            if extra:
                out.extend(extra)
        else:
            handler(cmd, out)
        seq = self.seq
        for e in out:
            seq += 1
            e.seq = seq
        self.seq = seq
        self.cmd_count += 1
        if self._on_events is not None:
            extra = self._on_events(out)
            if extra:
                for e in extra:
                    seq += 1
                    e.seq = seq
                self.seq = seq
                out.extend(extra)
        return out

    def process_batch(self, cmds: Iterable) -> list[Event]:
        out: list = []
        process = self.process
        for cmd in cmds:
            out.extend(process(cmd))
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
        clids = self._by_clid.get(account)
        o = None if clids is None else clids.get(cl_ord_id)
        return None if o is None else Order.from_row(o)

    def open_orders(self, account: str | None = None, instrument: str | None = None,
                    session: str | None = None) -> list[Order]:
        """Snapshots of the open orders (resting and waiting stops) matching all filters, by id."""
        src: Iterable[Row] = self._orders.values() if account is None else self._by_clid.get(account, {}).values()
        rows = sorted(
            (o for o in src if (instrument is None or o[INSTRUMENT] == instrument)
             and (session is None or o[SESSION] == session)),
            key=_by_id,
        )
        return [Order.from_row(o) for o in rows]

    def book_levels(self, instrument: str, side: Side, depth: int | None = None) -> list[tuple[int, int, int]]:
        """[(price, visible qty, order count)], best first."""
        return self._markets[instrument].book.levels(_SIDES[side], depth)

    def book(self, instrument: str):
        return self._markets[instrument].book

    def last_price(self, instrument: str) -> int | None:
        return self._markets[instrument].last_px

    def kill_switch(self, account: str) -> bool:
        return account in self._kill

    def account_stp(self, account: str) -> StpMode:
        return self._stp_default.get(account, DEFAULT_STP)

    # ------------------------------------------------------------------ helpers
    def _register(self, o: Row) -> None:
        self._orders[o[ORDER_ID]] = o
        clids = self._by_clid.get(o[ACCOUNT])
        if clids is None:
            clids = self._by_clid[o[ACCOUNT]] = {}
        clids[o[CL_ORD_ID]] = o

    def _unregister(self, o: Row) -> None:
        del self._orders[o[ORDER_ID]]
        del self._by_clid[o[ACCOUNT]][o[CL_ORD_ID]]

    def _flush(self, mkt: _Market, ts: int, out: list) -> None:
        book = mkt.book
        if book.dirty:
            sym = mkt.sym
            for side, price, qty, count in book.take_dirty():
                out.append(BookLevel(0, ts, sym, side, price, qty, count))

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
    def _expire(o: Row, reason: str, ts: int, out: list) -> None:
        out.append(OrderExpired(0, ts, o[ORDER_ID], o[CL_ORD_ID], o[ACCOUNT], o[INSTRUMENT], o[SIDE], o[PRICE],
                                o[QTY], o[LEAVES_QTY], o[CUM_QTY], o[CUM_NOTIONAL], reason, o[SESSION]))
        o[LEAVES_QTY] = 0

    def _take_out(self, mkt: _Market, o: Row) -> None:
        """Remove an open order from wherever it rests (book or stop book) and the registry."""
        if o[STOP_PRICE] is not None and not o[TRIGGERED]:
            stops = mkt.stops_buy if o[SIDE] is BUY else mkt.stops_sell
            lvl = stops[o[STOP_PRICE]]
            o[LIVE] = False
            lvl.count -= 1
            if lvl.count == 0:
                del stops[o[STOP_PRICE]]
            elif len(lvl.orders) > 2 * lvl.count + 16:
                lvl.orders = deque([x for x in lvl.orders if x[LIVE]])
        else:
            mkt.book.remove(o)
        self._unregister(o)

    def _cancel_order(self, mkt: _Market, o: Row, ts: int, out: list, reason: str, cl_ord_id: str,
                      session: str) -> None:
        self._take_out(mkt, o)
        out.append(OrderCancelled(0, ts, o[ORDER_ID], cl_ord_id or o[CL_ORD_ID], o[CL_ORD_ID], o[ACCOUNT],
                                  o[INSTRUMENT], o[SIDE], o[PRICE], o[QTY], o[LEAVES_QTY], o[CUM_QTY],
                                  o[CUM_NOTIONAL], reason, session, o[SESSION]))
        o[LEAVES_QTY] = 0

    def _rest(self, mkt: _Market, o: Row) -> None:
        d = o[DISPLAY_QTY]
        o[VISIBLE_QTY] = d if d is not None and d < o[LEAVES_QTY] else o[LEAVES_QTY]
        mkt.book.add(o)
        self._register(o)

    def _add_stop(self, mkt: _Market, o: Row) -> None:
        stops = mkt.stops_buy if o[SIDE] is BUY else mkt.stops_sell
        lvl = stops.get(o[STOP_PRICE])
        if lvl is None:
            lvl = stops[o[STOP_PRICE]] = Level(o[STOP_PRICE])
        o[LIVE] = True
        lvl.orders.append(o)
        lvl.count += 1
        self._register(o)

    # ------------------------------------------------------------------ new order
    def _new(self, cmd: NewOrder, out: list) -> None:
        side: Side | None = cmd.side
        tif: TimeInForce | None = cmd.tif
        if (cmd.ord_type is LIMIT and (tif is GTC or tif is IOC) and (side is BUY or side is SELL)
                and cmd.stop_price is None and cmd.display_qty is None and not cmd.post_only and cmd.stp is None):
            # fast path for a plain GTC / IOC limit order that passes every check; any doubt falls
            # through to the general path below, which re-checks in the documented order
            mkt = self._markets.get(cmd.instrument)
            qty = cmd.qty
            price = cmd.price
            account = cmd.account
            if (mkt is not None and type(qty) is int and type(price) is int and price > 0
                    and account not in self._kill):
                inst = mkt.inst
                lo = mkt.band_lo
                cl = cmd.cl_ord_id
                clids = self._by_clid.get(account)
                if (inst.status is OPEN and inst.min_qty <= qty <= inst.max_qty
                        and (lo is None or lo <= price <= mkt.band_hi)  # type: ignore[operator]
                        and price * qty >= inst._min_notional_units
                        and (clids is None or cl not in clids)):
                    oid = self._next_order_id
                    if self._pre_new is not None:
                        verdict = self._pre_new(cmd, oid, inst)
                        if verdict is not None:
                            return self._reject(cmd, out, verdict[0], verdict[1])
                    self._next_order_id = oid + 1
                    stp = self._stp_default.get(account, DEFAULT_STP) if self._stp_default else DEFAULT_STP
                    ts = cmd.ts
                    session = cmd.session
                    sym = mkt.sym
                    o = [oid, cl, account, sym, side, LIMIT, tif, price, qty, qty, 0, 0, None, 0, None, stp,
                         False, None, session, ts, False, True]
                    e = _alloc(OrderAccepted)  # = OrderAccepted(0, ts, oid, ...) at half the cost
                    e.seq = 0
                    e.ts = ts
                    e.order_id = oid
                    e.cl_ord_id = cl
                    e.account = account
                    e.instrument = sym
                    e.side = side
                    e.ord_type = LIMIT
                    e.tif = tif
                    e.price = price
                    e.qty = qty
                    e.stop_price = None
                    e.display_qty = None
                    e.leaves_qty = qty
                    e.session = session
                    out.append(e)
                    book = mkt.book
                    if tif is GTC and (
                        (book.best_ask is None or price < book.best_ask) if side is BUY
                        else (book.best_bid is None or price > book.best_bid)
                    ):
                        o[VISIBLE_QTY] = qty
                        if type(book) is Book:  # Book.add inlined (no dirty mark: reported just below)
                            levels = book.bids if side is BUY else book.asks
                            lvl = levels.get(price)
                            if lvl is None:
                                lvl = book.add(o)
                                book.dirty.clear()
                            else:
                                lvl.orders.append(o)
                                lvl.qty += qty
                                lvl.count += 1
                        else:
                            lvl = book.add(o)
                            book.dirty.clear()
                        self._orders[oid] = o
                        if clids is None:
                            self._by_clid[account] = {cl: o}
                        else:
                            clids[cl] = o
                        out.append(_book_level(ts, sym, side, price, lvl.qty, lvl.count))
                        return
                    if self._work(mkt, o, ts, out) and (mkt.stops_buy or mkt.stops_sell):
                        self._run_stops(mkt, ts, out, None)
                    if book.dirty:
                        for bside, bprice, bqty, bcount in book.take_dirty():
                            out.append(_book_level(ts, sym, bside, bprice, bqty, bcount))
                    return
        mkt = self._markets.get(cmd.instrument)
        if mkt is None:
            return self._reject(cmd, out, RejectCode.UNKNOWN_INSTRUMENT, "unknown instrument")
        inst = mkt.inst
        status = inst.status
        if status is not OPEN:
            if status is HALTED:
                return self._reject(cmd, out, RejectCode.INSTRUMENT_HALTED, "instrument halted")
            return self._reject(cmd, out, RejectCode.INSTRUMENT_CLOSED, "instrument closed")
        account = cmd.account
        if account in self._kill:
            return self._reject(cmd, out, RejectCode.KILL_SWITCH, "kill switch on")
        if side is not BUY and side is not SELL:
            side = _SIDES.get(side)  # type: ignore[arg-type]
        ot: OrdType | None = cmd.ord_type
        if ot is not LIMIT:
            ot = _ORD_TYPES.get(ot)  # type: ignore[arg-type]
        if tif is not GTC:
            tif = _TIFS.get(tif)  # type: ignore[arg-type]
        if side is None or ot is None or tif is None:
            return self._reject(cmd, out, RejectCode.INVALID_ORDER, "bad side, order type or time in force")
        qty = cmd.qty
        if type(qty) is not int or qty <= 0:
            return self._reject(cmd, out, RejectCode.BAD_LOT, "quantity must be a positive number of lots")
        if qty < inst.min_qty:
            return self._reject(cmd, out, RejectCode.QTY_TOO_SMALL, "quantity below minimum")
        if qty > inst.max_qty:
            return self._reject(cmd, out, RejectCode.QTY_TOO_LARGE, "quantity above maximum")
        price = cmd.price
        if ot is LIMIT or ot is STOP_LIMIT:
            if type(price) is not int or price <= 0:
                return self._reject(cmd, out, RejectCode.BAD_TICK, "price must be a positive number of ticks")
            lo = mkt.band_lo
            if lo is not None and (price < lo or price > mkt.band_hi):  # type: ignore[operator]
                return self._reject(cmd, out, RejectCode.OUTSIDE_PRICE_BAND, "price outside the band")
            if price * qty < inst._min_notional_units:
                return self._reject(cmd, out, RejectCode.NOTIONAL_TOO_SMALL, "notional below minimum")
        elif price is not None:
            return self._reject(cmd, out, RejectCode.INVALID_ORDER, "market and stop orders take no price")
        stop = cmd.stop_price
        if ot is STOP or ot is STOP_LIMIT:
            if type(stop) is not int or stop <= 0:
                return self._reject(cmd, out, RejectCode.BAD_TICK, "stop price must be a positive number of ticks")
        elif stop is not None:
            return self._reject(cmd, out, RejectCode.INVALID_ORDER, "stop price on a non-stop order")
        disp = cmd.display_qty
        if disp is not None and (
            price is None or tif is IOC or tif is FOK or type(disp) is not int or not 0 < disp <= qty
        ):
            return self._reject(cmd, out, RejectCode.INVALID_ORDER, "bad display quantity")
        post_only = cmd.post_only
        if post_only and (ot is not LIMIT or tif is IOC or tif is FOK):
            return self._reject(cmd, out, RejectCode.INVALID_ORDER, "post-only needs a GTC/DAY/GTD limit")
        expire_at = cmd.expire_at
        ts = cmd.ts
        if tif is GTD:
            if type(expire_at) is not int or expire_at <= ts:
                return self._reject(cmd, out, RejectCode.INVALID_ORDER, "GTD needs a future expire_at")
        else:
            expire_at = None
        clids = self._by_clid.get(account)
        if clids is not None and cmd.cl_ord_id in clids:
            return self._reject(cmd, out, RejectCode.DUPLICATE_CL_ORD_ID, "duplicate ClOrdID")
        book = mkt.book
        if post_only:
            if side is BUY:
                best = book.best_ask
                if best is not None and price >= best:
                    return self._reject(cmd, out, RejectCode.POST_ONLY_WOULD_TAKE, "post-only would take")
            else:
                best = book.best_bid
                if best is not None and price <= best:
                    return self._reject(cmd, out, RejectCode.POST_ONLY_WOULD_TAKE, "post-only would take")
        stp = cmd.stp
        if stp is None:
            stp = self._stp_default.get(account, DEFAULT_STP) if self._stp_default else DEFAULT_STP
        elif stp is not EXPIRE_TAKER:
            stp = _STPS.get(stp)
            if stp is None:
                return self._reject(cmd, out, RejectCode.INVALID_ORDER, "bad self-trade prevention mode")
        oid = self._next_order_id
        if self._pre_new is not None:
            verdict = self._pre_new(cmd, oid, inst)
            if verdict is not None:
                return self._reject(cmd, out, verdict[0], verdict[1])
        self._next_order_id = oid + 1
        cl = cmd.cl_ord_id
        session = cmd.session
        sym = mkt.sym
        o = [oid, cl, account, sym, side, ot, tif, price, qty, qty, 0, 0, disp, 0, stop, stp,
             post_only, expire_at, session, ts, False, True]
        out.append(OrderAccepted(0, ts, oid, cl, account, sym, side, ot, tif, price, qty, stop, disp, qty,
                                 session))
        if expire_at is not None:
            heapq.heappush(self._gtd, (expire_at, oid))
        if stop is not None:
            last = mkt.last_px
            if last is not None and (last >= stop if side is BUY else last <= stop):
                self._run_stops(mkt, ts, out, deque((o,)))
            else:
                self._add_stop(mkt, o)
        elif ot is LIMIT and tif is not IOC and tif is not FOK and (
            (book.best_ask is None or price < book.best_ask) if side is BUY
            else (book.best_bid is None or price > book.best_bid)
        ):
            # passive fast path: one level touched, reported directly
            o[VISIBLE_QTY] = disp if disp is not None and disp < qty else qty
            lvl = book.add(o)
            book.dirty.clear()
            self._orders[oid] = o
            if clids is None:
                self._by_clid[account] = {cl: o}
            else:
                clids[cl] = o
            out.append(BookLevel(0, ts, sym, side, price, lvl.qty, lvl.count))  # type: ignore[arg-type]
            return
        elif self._work(mkt, o, ts, out) and (mkt.stops_buy or mkt.stops_sell):
            self._run_stops(mkt, ts, out, None)
        if book.dirty:
            for bside, bprice, bqty, bcount in book.take_dirty():
                out.append(BookLevel(0, ts, sym, bside, bprice, bqty, bcount))

    # ------------------------------------------------------------------ matching
    def _work(self, mkt: _Market, o: Row, ts: int, out: list) -> bool:
        """An accepted/triggered/re-priced order (not registered, not resting) meets the book:
        FOK check, matching, then rest or expire the remainder. Returns True if it traded."""
        buy = o[SIDE] is BUY
        if o[PRICE] is None:
            limit = mkt.band_hi if buy else mkt.band_lo
        else:
            limit = o[PRICE]
        if o[TIF] is FOK and self._available(mkt.book, o, limit) < o[LEAVES_QTY]:
            self._expire(o, "fok", ts, out)
            return False
        traded = self._match(mkt, o, limit, ts, out)
        if o[LEAVES_QTY] == 0:
            return traded
        if o[PRICE] is None:
            best = mkt.book.best_ask if buy else mkt.book.best_bid
            self._expire(o, "market_no_liquidity" if best is None else "price_band", ts, out)
        elif o[TIF] is IOC:
            self._expire(o, "ioc", ts, out)
        elif o[TIF] is FOK:  # pragma: no cover - guarded by _available
            self._expire(o, "fok", ts, out)
        else:
            self._rest(mkt, o)
        return traded

    def _available(self, book, o: Row, limit: int | None) -> int:
        """What ``o`` would fill if matched now, counting STP stops exactly (FOK check)."""
        buy = o[SIDE] is BUY
        stp = o[STP]
        stp_on = stp is not STP_NONE
        need = o[LEAVES_QTY]
        before = 0  # fully consumable quantity at better levels
        level_px = None
        level_all = 0  # all leaves at the current level
        level_ahead = 0  # what is reachable before an own order at the current level
        for m in book.orders(SELL if buy else BUY):
            p = m[PRICE]
            if limit is not None and (p > limit if buy else p < limit):
                break
            if p != level_px:
                before += level_all
                if before >= need:
                    return before
                level_px, level_all, level_ahead = p, 0, 0
            if stp_on and m[ACCOUNT] == o[ACCOUNT]:
                if stp is EXPIRE_MAKER:
                    continue
                return before + level_ahead
            level_all += m[LEAVES_QTY]
            level_ahead += m[LEAVES_QTY] if m[DISPLAY_QTY] is None else m[VISIBLE_QTY]
        return before + level_all

    def _match(self, mkt: _Market, o: Row, limit: int | None, ts: int, out: list) -> bool:
        """Match taker ``o`` against the opposite side down to ``limit`` (None: no limit)."""
        book = mkt.book
        buy = o[SIDE] is BUY
        mside = SELL if buy else BUY
        account = o[ACCOUNT]
        stp = o[STP]
        stp_on = stp is not STP_NONE
        sym = o[INSTRUMENT]
        side = o[SIDE]
        o_id, o_cl, o_sess = o[ORDER_ID], o[CL_ORD_ID], o[SESSION]
        orders, by_clid = self._orders, self._by_clid
        first: int | None = None
        px: int | None = None
        append = out.append
        alloc = _alloc
        fast = type(book) is Book  # the fast book's head/fill inlined below (same logic as Book)
        if fast:
            levels = book.asks if buy else book.bids
            dirty = book.dirty
        while True:
            p = book.best_ask if buy else book.best_bid
            if p is None or (limit is not None and (p > limit if buy else p < limit)):
                break
            if fast:
                lvl = levels[p]
                dq = lvl.orders
                m = dq[0]
                while not m[LIVE]:
                    dq.popleft()
                    m = dq[0]
            else:
                m = book.head(mside)
            if stp_on and m[ACCOUNT] == account:
                if stp is EXPIRE_TAKER:
                    self._expire(o, "self_trade", ts, out)
                    break
                if stp is EXPIRE_MAKER or stp is EXPIRE_BOTH:
                    book.remove(m)
                    self._unregister(m)
                    self._expire(m, "self_trade", ts, out)
                    if stp is EXPIRE_BOTH:
                        self._expire(o, "self_trade", ts, out)
                        break
                    continue
                # decrement and cancel: both lose the smaller leaves
                d = o[LEAVES_QTY] if o[LEAVES_QTY] < m[LEAVES_QTY] else m[LEAVES_QTY]
                if m[LEAVES_QTY] == d:
                    book.remove(m)
                    self._unregister(m)
                    self._expire(m, "self_trade", ts, out)
                else:
                    m[QTY] -= d
                    book.reduce(m, m[LEAVES_QTY] - d)
                    append(OrderRestated(0, ts, m[ORDER_ID], m[CL_ORD_ID], m[ACCOUNT], sym, m[SIDE], m[PRICE], m[QTY],
                                         m[LEAVES_QTY], m[CUM_QTY], m[CUM_NOTIONAL], "self_trade", m[SESSION]))
                if o[LEAVES_QTY] == d:
                    self._expire(o, "self_trade", ts, out)
                    break
                o[QTY] -= d
                o[LEAVES_QTY] -= d
                append(OrderRestated(0, ts, o[ORDER_ID], o[CL_ORD_ID], account, sym, o[SIDE], o[PRICE], o[QTY],
                                     o[LEAVES_QTY], o[CUM_QTY], o[CUM_NOTIONAL], "self_trade", o[SESSION]))
                continue
            leaves = o[LEAVES_QTY]
            vis = m[VISIBLE_QTY]
            q = leaves if leaves < vis else vis
            tid = self._next_trade_id
            self._next_trade_id = tid + 1
            n = p * q
            m_leaves = m[LEAVES_QTY] = m[LEAVES_QTY] - q
            m_cum = m[CUM_QTY] = m[CUM_QTY] + q
            m_cumn = m[CUM_NOTIONAL] = m[CUM_NOTIONAL] + n
            leaves = o[LEAVES_QTY] = leaves - q
            o_cum = o[CUM_QTY] = o[CUM_QTY] + q
            o_cumn = o[CUM_NOTIONAL] = o[CUM_NOTIONAL] + n
            if fast:
                dirty[p if buy else -p] = None
                vis -= q
                m[VISIBLE_QTY] = vis
                lvl.qty -= q
                if vis == 0:
                    dq.popleft()
                    if m_leaves > 0:  # iceberg refresh: back of the level
                        d = m[DISPLAY_QTY]
                        vis = d if d < m_leaves else m_leaves
                        m[VISIBLE_QTY] = vis
                        lvl.qty += vis
                        dq.append(m)
                    else:
                        m[LIVE] = False
                        lvl.count -= 1
                        if lvl.count == 0:
                            book._drop_level(mside, p)
            else:
                book.fill(m, q)
            m_id = m[ORDER_ID]
            m_acct = m[ACCOUNT]
            if m_leaves == 0:
                del orders[m_id]
                del by_clid[m_acct][m[CL_ORD_ID]]
            # OrderFilled(0, ts, m_id, ...) (maker), OrderFilled(0, ts, o_id, ...) (taker) and
            # Trade(0, ts, tid, ...), built field by field: half the cost of the dataclass __init__
            e = alloc(OrderFilled)
            e.seq = 0
            e.ts = ts
            e.order_id = m_id
            e.cl_ord_id = m[CL_ORD_ID]
            e.account = m_acct
            e.instrument = sym
            e.side = mside
            e.trade_id = tid
            e.last_px = p
            e.last_qty = q
            e.leaves_qty = m_leaves
            e.cum_qty = m_cum
            e.cum_notional = m_cumn
            e.aggressor = False
            e.session = m[SESSION]
            append(e)
            e = alloc(OrderFilled)
            e.seq = 0
            e.ts = ts
            e.order_id = o_id
            e.cl_ord_id = o_cl
            e.account = account
            e.instrument = sym
            e.side = side
            e.trade_id = tid
            e.last_px = p
            e.last_qty = q
            e.leaves_qty = leaves
            e.cum_qty = o_cum
            e.cum_notional = o_cumn
            e.aggressor = True
            e.session = o_sess
            append(e)
            e = alloc(Trade)
            e.seq = 0
            e.ts = ts
            e.trade_id = tid
            e.instrument = sym
            e.price = p
            e.qty = q
            e.aggressor_side = side
            e.maker_order_id = m_id
            e.taker_order_id = o_id
            e.maker_account = m_acct
            e.taker_account = account
            append(e)
            if first is None:
                first = p
            px = p
            if leaves == 0:
                break
        if px is None:
            return False
        mkt.last_px = px
        mkt.aggressor = o[SIDE]
        if buy:
            mkt.trade_lo, mkt.trade_hi = first, px
        else:
            mkt.trade_lo, mkt.trade_hi = px, first
        if mkt.inst.band_bps is not None:
            mkt.inst.ref_price = px
            mkt.set_band()
        return True

    # ------------------------------------------------------------------ stops
    @staticmethod
    def _pop_triggered(stops: SortedDict, buy: bool, bound: Any, pending: deque) -> None:
        while stops:
            price = stops.peekitem(0 if buy else -1)[0]
            if (price > bound) if buy else (price < bound):
                return
            lvl = stops.pop(price)
            for s in lvl.orders:
                if s[LIVE]:
                    s[LIVE] = False
                    pending.append(s)

    def _collect_triggers(self, mkt: _Market, pending: deque) -> None:
        """Stops reached by the last matching run, in the order their prices were reached."""
        if mkt.aggressor is BUY:  # prices went up from trade_lo to trade_hi
            self._pop_triggered(mkt.stops_sell, False, mkt.trade_lo, pending)
            self._pop_triggered(mkt.stops_buy, True, mkt.trade_hi, pending)
        else:
            self._pop_triggered(mkt.stops_buy, True, mkt.trade_hi, pending)
            self._pop_triggered(mkt.stops_sell, False, mkt.trade_lo, pending)

    def _run_stops(self, mkt: _Market, ts: int, out: list, pending: deque | None) -> None:
        """Trigger and work stops one at a time; each may trade and trigger more."""
        if pending is None:
            pending = deque()
            self._collect_triggers(mkt, pending)
        while pending:
            o = pending.popleft()
            if o[ORDER_ID] in self._orders:
                del self._orders[o[ORDER_ID]]
                del self._by_clid[o[ACCOUNT]][o[CL_ORD_ID]]
            o[TRIGGERED] = True
            out.append(OrderTriggered(0, ts, o[ORDER_ID], o[CL_ORD_ID], o[ACCOUNT], o[INSTRUMENT], o[SIDE], o[PRICE],
                                      o[QTY], o[LEAVES_QTY], o[SESSION]))
            if o[PRICE] is not None and mkt.band_lo is not None and not mkt.band_lo <= o[PRICE] <= mkt.band_hi:
                self._expire(o, "price_band", ts, out)
                continue
            if self._on_trigger is not None:
                # the stage re-values the order at the band of this moment, which bounds its matching
                verdict = self._on_trigger(Order.from_row(o), mkt.inst)
                if verdict is not None:
                    self._expire(o, verdict[1], ts, out)
                    continue
            if self._work(mkt, o, ts, out):
                self._collect_triggers(mkt, pending)

    # ------------------------------------------------------------------ cancel / replace
    def _find(self, cmd) -> Row | None:
        if cmd.order_id is not None:
            o = self._orders.get(cmd.order_id)
            if o is not None and o[ACCOUNT] != cmd.account:
                return None
        elif cmd.orig_cl_ord_id is not None:
            o = self._by_clid.get(cmd.account, {}).get(cmd.orig_cl_ord_id)
        else:
            return None
        if o is not None and cmd.instrument and o[INSTRUMENT] != cmd.instrument:
            return None
        return o

    def _cancel(self, cmd: CancelOrder, out: list) -> None:
        oid = cmd.order_id
        if oid is not None:  # _find, inlined for the common case
            o = self._orders.get(oid)
            if o is not None and (o[ACCOUNT] != cmd.account or (cmd.instrument and o[INSTRUMENT] != cmd.instrument)):
                o = None
        else:
            o = self._find(cmd)
        if o is None:
            return self._cxl_reject(cmd, out, False, RejectCode.UNKNOWN_ORDER, "unknown order")
        ts = cmd.ts
        if o[STOP_PRICE] is not None and not o[TRIGGERED]:
            mkt = self._markets[o[INSTRUMENT]]
            self._cancel_order(mkt, o, ts, out, "client", cmd.cl_ord_id, cmd.session)
            return
        # fast path: one order out of the book, one level reported
        book = self._markets[o[INSTRUMENT]].book
        lvl = book.remove(o)
        book.dirty.clear()
        oid, clo, acct, sym, side, _, _, price, qty, leaves, cum, cumn = o[:12]
        del self._orders[oid]
        del self._by_clid[acct][clo]
        e = _alloc(OrderCancelled)  # = OrderCancelled(0, ts, oid, ...) at half the cost
        e.seq = 0
        e.ts = ts
        e.order_id = oid
        e.cl_ord_id = cmd.cl_ord_id or clo
        e.orig_cl_ord_id = clo
        e.account = acct
        e.instrument = sym
        e.side = side
        e.price = price
        e.qty = qty
        e.cancelled_qty = leaves
        e.cum_qty = cum
        e.cum_notional = cumn
        e.reason = "client"
        e.session = cmd.session
        e.owner_session = o[SESSION]
        out.append(e)
        o[LEAVES_QTY] = 0
        out.append(_book_level(ts, sym, side, lvl.price, lvl.qty, lvl.count))

    def _replace(self, cmd: ReplaceOrder, out: list) -> None:
        o = self._find(cmd)
        if o is None:
            return self._cxl_reject(cmd, out, True, RejectCode.UNKNOWN_ORDER, "unknown order")
        mkt = self._markets[o[INSTRUMENT]]
        inst = mkt.inst
        ts = cmd.ts
        if inst.status is not OPEN:
            code = RejectCode.INSTRUMENT_HALTED if inst.status is HALTED else RejectCode.INSTRUMENT_CLOSED
            return self._cxl_reject(cmd, out, True, code, f"instrument {inst.status.value}")
        if o[ACCOUNT] in self._kill:
            return self._cxl_reject(cmd, out, True, RejectCode.KILL_SWITCH, "kill switch on")
        qty = cmd.qty
        if type(qty) is not int or qty <= 0:
            return self._cxl_reject(cmd, out, True, RejectCode.BAD_LOT, "quantity must be a positive number of lots")
        price = o[PRICE] if cmd.price is None else cmd.price
        if cmd.price is not None:
            if o[PRICE] is None:
                return self._cxl_reject(cmd, out, True, RejectCode.INVALID_ORDER, "order has no limit price")
            if type(price) is not int or price <= 0:
                return self._cxl_reject(cmd, out, True, RejectCode.BAD_TICK, "price must be a positive number of ticks")
        cl = cmd.cl_ord_id
        clids = self._by_clid[o[ACCOUNT]]
        if cl != o[CL_ORD_ID] and cl in clids:
            return self._cxl_reject(cmd, out, True, RejectCode.DUPLICATE_CL_ORD_ID, "duplicate ClOrdID")
        if qty <= o[CUM_QTY]:
            self._cancel_order(mkt, o, ts, out, "client", cl, cmd.session)
            return self._flush(mkt, ts, out)
        if qty < inst.min_qty:
            return self._cxl_reject(cmd, out, True, RejectCode.QTY_TOO_SMALL, "quantity below minimum")
        if qty > inst.max_qty:
            return self._cxl_reject(cmd, out, True, RejectCode.QTY_TOO_LARGE, "quantity above maximum")
        if price is not None:
            if price != o[PRICE] and mkt.band_lo is not None and not mkt.band_lo <= price <= mkt.band_hi:  # type: ignore[operator]
                return self._cxl_reject(cmd, out, True, RejectCode.OUTSIDE_PRICE_BAND, "price outside the band")
            if price * qty < inst._min_notional_units:
                return self._cxl_reject(cmd, out, True, RejectCode.NOTIONAL_TOO_SMALL, "notional below minimum")
        waiting_stop = o[STOP_PRICE] is not None and not o[TRIGGERED]
        book = mkt.book
        if o[POST_ONLY] and not waiting_stop:
            best = book.best_ask if o[SIDE] is BUY else book.best_bid
            if best is not None and (price >= best if o[SIDE] is BUY else price <= best):
                return self._cxl_reject(cmd, out, True, RejectCode.POST_ONLY_WOULD_TAKE, "post-only would take")
        if not self._plain:
            verdict = self._hooks.pre_replace(cmd, Order.from_row(o), inst)
            if verdict is not None:
                return self._cxl_reject(cmd, out, True, verdict[0], verdict[1])
        old_price, old_qty, old_cl = o[PRICE], o[QTY], o[CL_ORD_ID]
        leaves = qty - o[CUM_QTY]
        kept = price == old_price and qty <= old_qty
        if kept:
            if waiting_stop:
                o[LEAVES_QTY] = leaves
            else:
                book.reduce(o, leaves)
            o[QTY] = qty
            if cl != old_cl:
                del clids[old_cl]
                o[CL_ORD_ID] = cl
                clids[cl] = o
            out.append(OrderReplaced(0, ts, o[ORDER_ID], cl, old_cl, o[ACCOUNT], o[INSTRUMENT], o[SIDE], price, qty,
                                     old_price, old_qty, leaves, o[CUM_QTY], o[CUM_NOTIONAL], True, cmd.session))
        else:
            self._take_out(mkt, o)
            n = o[:]
            n[PRICE], n[QTY], n[LEAVES_QTY], n[CL_ORD_ID], n[VISIBLE_QTY] = price, qty, leaves, cl, 0
            out.append(OrderReplaced(0, ts, n[ORDER_ID], cl, old_cl, n[ACCOUNT], n[INSTRUMENT], n[SIDE], price, qty,
                                     old_price, old_qty, leaves, n[CUM_QTY], n[CUM_NOTIONAL], False, cmd.session))
            if waiting_stop:
                self._add_stop(mkt, n)
            elif self._work(mkt, n, ts, out) and (mkt.stops_buy or mkt.stops_sell):
                self._run_stops(mkt, ts, out, None)
        self._flush(mkt, ts, out)

    def _mass_cancel(self, cmd: MassCancel, out: list) -> None:
        src: Iterable[Row]
        if cmd.account is not None:
            src = self._by_clid.get(cmd.account, {}).values()
        else:
            src = self._orders.values()
        victims = sorted(
            (o for o in src
             if (cmd.instrument is None or o[INSTRUMENT] == cmd.instrument)
             and (cmd.side is None or o[SIDE] == cmd.side)
             and (cmd.session_filter is None or o[SESSION] == cmd.session_filter)
             and not (cmd.spare_gtc and o[TIF] is GTC)),
            key=_by_id,
        )
        for o in victims:
            self._cancel_order(self._markets[o[INSTRUMENT]], o, cmd.ts, out, cmd.reason, cmd.cl_ord_id, cmd.session)
        self._flush_all(cmd.ts, out)

    def _set_kill(self, cmd: SetKillSwitch, out: list) -> None:
        if not cmd.on:
            self._kill.discard(cmd.account)
            return
        self._kill.add(cmd.account)
        for o in sorted(self._by_clid.get(cmd.account, {}).values(), key=_by_id):
            self._cancel_order(self._markets[o[INSTRUMENT]], o, cmd.ts, out, "kill_switch", "", cmd.session)
        self._flush_all(cmd.ts, out)

    def _set_stp(self, cmd: SetAccountStp, out: list) -> None:
        self._stp_default[cmd.account] = _STPS[cmd.stp]

    # ------------------------------------------------------------------ status and time
    def _set_status(self, cmd: SetTradingStatus, out: list) -> None:
        mkt = self._markets.get(cmd.instrument)
        if mkt is None:
            return
        mkt.inst.status = TradingStatus(cmd.status)
        out.append(TradingStatusChanged(0, cmd.ts, mkt.sym, mkt.inst.status))

    def _end_of_session(self, cmd: EndOfSession, out: list) -> None:
        victims = sorted(
            (o for o in self._orders.values()
             if o[TIF] is DAY and (cmd.instrument is None or o[INSTRUMENT] == cmd.instrument)),
            key=_by_id,
        )
        for o in victims:
            self._take_out(self._markets[o[INSTRUMENT]], o)
            self._expire(o, "day", cmd.ts, out)
        self._flush_all(cmd.ts, out)

    def _tick(self, cmd: Tick, out: list) -> None:
        heap = self._gtd
        ts = cmd.ts
        touched = False
        while heap and heap[0][0] <= ts:
            _, oid = heapq.heappop(heap)
            o = self._orders.get(oid)
            if o is not None and o[EXPIRE_AT] is not None and o[EXPIRE_AT] <= ts:
                self._take_out(self._markets[o[INSTRUMENT]], o)
                self._expire(o, "gtd", ts, out)
                touched = True
        if touched:
            self._flush_all(ts, out)

    # ------------------------------------------------------------------ snapshot
    def snapshot(self) -> dict:
        """The whole state as a JSON-serialisable dict (restorable with ``Core.from_snapshot``)."""
        markets = {}
        for sym, mkt in self._markets.items():
            markets[sym] = {
                "last_px": mkt.last_px,
                "bids": [row_to_json(o) for o in mkt.book.orders(BUY)],
                "asks": [row_to_json(o) for o in mkt.book.orders(SELL)],
                "stops_buy": [row_to_json(o) for lvl in mkt.stops_buy.values() for o in lvl.orders if o[LIVE]],
                "stops_sell": [row_to_json(o) for lvl in mkt.stops_sell.values() for o in lvl.orders if o[LIVE]],
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
                      book_factory: Callable[[], object] = Book) -> Core:
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
                for row in m[key]:
                    o = row_from_json(row)
                    mkt.book.add(o)
                    core._register(o)
            for key in ("stops_buy", "stops_sell"):
                for row in m[key]:
                    core._add_stop(mkt, row_from_json(row))
            mkt.book.dirty.clear()
        core._hooks.restore(d.get("hooks") or {})
        return core

    def add_instrument(self, inst: Instrument) -> None:
        """Add an instrument the core does not have yet (e.g. after restoring an older snapshot)."""
        if inst.symbol not in self._markets:
            self._markets[inst.symbol] = _Market(dc_replace(inst), self._book_factory())


def _by_id(o: Row) -> int:
    return o[ORDER_ID]
