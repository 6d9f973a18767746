# cython: language_level=3, embedsignature=True, boundscheck=False, wraparound=False
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

Compiled with Cython (the ``venue bench core`` target needs it; the same logic ran at ~300,000
ops/s as Python): the book, its levels and the core are extension types with typed fields, an order
is a ``list`` row indexed by C constants without bounds checks (rows are only built here and in
venue/core/rows.py, which holds the layout, checked at import; the module is compiled with
``boundscheck=False, wraparound=False``), and the hot commands and events -- plain slotted
dataclasses, unchanged for everyone else -- are read and built through their slots' offsets
(``_Layout``, every slot found by its field's name and checked at import) instead of attribute
lookups and the generated ``__init__``. Rows and hot events hold only atomic values and are kept out
of the cycle collector. Semantics are those of the plain-Python reference core
(venue/core/reference.py): the differential and property suites run both cores on both books and
require the same events (determinism, hypothesis properties, journal replay), plus tests of the
compiled parts (tests/test_core_event_construction.py, tests/test_core_compiled.py).
"""

import dataclasses
import heapq
import types
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Mapping

cimport cython
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_DECREF, Py_INCREF
from sortedcontainers import SortedDict

from venue.core import rows as _rows
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
from venue.core.hooks import NoHooks
from venue.core.instruments import Instrument
from venue.core.rows import Order, row_from_json, row_to_json
from venue.core.types import OrdType, RejectCode, Side, StpMode, TimeInForce, TradingStatus


cdef extern from "structmember.h":
    ctypedef struct PyMemberDef:
        const char* name
        int type
        Py_ssize_t offset
    enum: T_OBJECT_EX

cdef extern from "Python.h":
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member
    object _PyObject_GC_New(PyTypeObject* t)
    void PyObject_GC_UnTrack(void* op)


# ---------------------------------------------------------------------------------- order rows
cdef enum:
    ORDER_ID = 0
    CL_ORD_ID = 1
    ACCOUNT = 2
    INSTRUMENT = 3
    SIDE = 4
    ORD_TYPE = 5
    TIF = 6
    PRICE = 7
    QTY = 8
    LEAVES_QTY = 9
    CUM_QTY = 10
    CUM_NOTIONAL = 11
    DISPLAY_QTY = 12
    VISIBLE_QTY = 13
    STOP_PRICE = 14
    STP = 15
    POST_ONLY = 16
    EXPIRE_AT = 17
    SESSION = 18
    TS = 19
    TRIGGERED = 20
    LIVE = 21
    N_FIELDS = 22

_ROW_LAYOUT = {
    "order_id": ORDER_ID, "cl_ord_id": CL_ORD_ID, "account": ACCOUNT, "instrument": INSTRUMENT,
    "side": SIDE, "ord_type": ORD_TYPE, "tif": TIF, "price": PRICE, "qty": QTY,
    "leaves_qty": LEAVES_QTY, "cum_qty": CUM_QTY, "cum_notional": CUM_NOTIONAL,
    "display_qty": DISPLAY_QTY, "visible_qty": VISIBLE_QTY, "stop_price": STOP_PRICE, "stp": STP,
    "post_only": POST_ONLY, "expire_at": EXPIRE_AT, "session": SESSION, "ts": TS,
    "triggered": TRIGGERED, "live": LIVE,
}
if dict(zip(_rows.FIELDS, range(len(_rows.FIELDS)), strict=True)) != _ROW_LAYOUT:
    raise ImportError("venue/core/engine.pyx: the row layout differs from venue/core/rows.py FIELDS")


cdef object ZERO = 0


# ------------------------------------------------------------------- slotted dataclasses in C
cdef class _Layout:
    """Where a slotted dataclass keeps its fields, found by NAME: ``off[i]`` is the offset of the
    slot of ``names[i]`` (the member descriptor the class has under that name), so a hot command is
    read and a hot event built without attribute lookups or the generated ``__init__``.

    For an event, ``names`` lists the fields in the order its ``ev_*`` builder sets them (``f[i]``
    is ``names[i]``), and the check at import is that they are exactly the class's fields: a field
    added to the event, or renamed or removed, stops the import here (a builder that left a slot unset
    would hand out uninitialised memory); fields reordered in venue/core/events.py change nothing.
    ``seq`` (numbered by ``process``) is found by name too. Also checked: every field is a slot of the
    class itself, no ``__dict__`` or weakref slot, nothing else in the object, the default allocator."""

    cdef type cls
    cdef Py_ssize_t n
    cdef Py_ssize_t off[24]
    cdef Py_ssize_t seq  # offset of the ``seq`` slot (-1: none)
    cdef dict index

    def __init__(self, type cls, tuple names=None):
        fields = tuple(f.name for f in dataclasses.fields(cls))
        if names is None:  # a command: every field readable through ``at(name)``
            names = fields
        where = f"venue/core/engine.pyx cannot lay out {cls.__module__}.{cls.__name__}"
        unknown = [n for n in names if n not in fields]
        unset = [n for n in fields if n not in names]
        if unknown or unset or len(set(names)) != len(names) or len(names) > 24:
            raise ImportError(f"{where}: its builder sets {list(names)}, the class has {list(fields)} "
                              f"(not fields: {unknown}; never set: {unset})")
        if (sorted(getattr(cls, "__slots__", ())) != sorted(fields) or cls.__dictoffset__
                or cls.__weakrefoffset__ or cls.__new__ is not object.__new__ or cls.__base__ is not object
                or cls.__itemsize__
                or cls.__basicsize__ != object.__basicsize__ + len(fields) * sizeof(PyObject*)):
            raise ImportError(f"{where}: not a plain slotted dataclass (one slot per field, nothing else)")
        self.cls = cls
        self.n = len(names)
        self.index = {}
        for i, name in enumerate(names):
            d = cls.__dict__.get(name)
            if (type(d) is not types.MemberDescriptorType or d.__objclass__ is not cls
                    or (<PyMemberDescrObject*>d).d_member.type != T_OBJECT_EX):
                raise ImportError(f"{where}: {name} is not one of its slots")
            self.off[i] = (<PyMemberDescrObject*>d).d_member.offset
            self.index[name] = i
        self.seq = self.at("seq") if "seq" in self.index else -1

    cdef Py_ssize_t at(self, str name) except -1:
        return self.off[self.index[name]]


cdef inline object _fresh(_Layout lay):
    """A new instance whose slots are NOT initialised: the caller sets every one of them with
    ``_put`` before anything else can see the object (the ``ev_*`` builders do; ``_Layout`` checked
    that the slots are all there is). Allocated like ``PyObject_GC_New``: not zeroed, and not tracked
    by the cycle collector -- a hot event holds only ints, strings, enum members, bools and None, so
    it can never be part of a reference cycle (same for order rows, see ``Row``)."""
    return _PyObject_GC_New(<PyTypeObject*>lay.cls)


@cython.final
@cython.no_gc
cdef class Row:
    """An open order inside the core: one object with the quantities inline (C integers), where a
    list row cost a second allocation for its items and one int object per changed quantity.

    ``row[i]`` / ``row[i] = v`` / ``row[:n]`` address the fields by their index in
    venue/core/rows.py ``FIELDS`` (the naive book, snapshots and tests use that form). Not tracked by
    the cycle collector: it holds only ints, strings, enum members, bools and None, so it can never
    be part of a cycle, and thousands of resting orders would otherwise be traversed by every
    young-generation collection. Quantities are at most ``MAX_QTY`` (the core rejects larger ones).
    """

    cdef public object order_id
    cdef public object cl_ord_id
    cdef public object account
    cdef public object instrument
    cdef public object side
    cdef public object ord_type
    cdef public object tif
    cdef public object price
    cdef public long long qty
    cdef public long long leaves_qty
    cdef public long long cum_qty
    cdef public object cum_notional
    cdef public object display_qty
    cdef public long long visible_qty
    cdef public object stop_price
    cdef public object stp
    cdef public bint post_only
    cdef public object expire_at
    cdef public object session
    cdef public object ts
    cdef public bint triggered
    cdef public bint live

    def __init__(self, *values):
        """``Row(*values)``: the fields in ``FIELDS`` order (``live`` may be left out: True)."""
        if len(values) not in (N_FIELDS - 1, N_FIELDS):
            raise TypeError(f"a row has {N_FIELDS} fields, got {len(values)}")
        self.live = True
        for i, v in enumerate(values):
            self[i] = v

    def __len__(self):
        return N_FIELDS

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(N_FIELDS))]
        return getattr(self, _FIELD_NAMES[_field_index(i)])

    def __setitem__(self, i, v):
        setattr(self, _FIELD_NAMES[_field_index(i)], v)

    def __repr__(self):
        return f"Row({', '.join(repr(v) for v in self[:])})"

    cdef Row copy(self):
        cdef Row n = Row.__new__(Row)
        n.order_id = self.order_id
        n.cl_ord_id = self.cl_ord_id
        n.account = self.account
        n.instrument = self.instrument
        n.side = self.side
        n.ord_type = self.ord_type
        n.tif = self.tif
        n.price = self.price
        n.qty = self.qty
        n.leaves_qty = self.leaves_qty
        n.cum_qty = self.cum_qty
        n.cum_notional = self.cum_notional
        n.display_qty = self.display_qty
        n.visible_qty = self.visible_qty
        n.stop_price = self.stop_price
        n.stp = self.stp
        n.post_only = self.post_only
        n.expire_at = self.expire_at
        n.session = self.session
        n.ts = self.ts
        n.triggered = self.triggered
        n.live = self.live
        return n


_FIELD_NAMES = tuple(_ROW_LAYOUT)
MAX_QTY = 2**62


cdef Py_ssize_t _field_index(i) except -1:
    if type(i) is not int:
        raise TypeError("row fields are indexed by int")
    if i < 0:
        i += N_FIELDS
    if not 0 <= i < N_FIELDS:
        raise IndexError("row index out of range")
    return i


cdef inline Row _row(oid, cl, account, sym, side, ot, tif, price, long long qty, disp, long long vis, stop, stp,
                     bint post_only, expire_at, session, ts):
    """A fresh open order (leaves = qty, nothing filled)."""
    cdef Row o = Row.__new__(Row)
    o.order_id = oid
    o.cl_ord_id = cl
    o.account = account
    o.instrument = sym
    o.side = side
    o.ord_type = ot
    o.tif = tif
    o.price = price
    o.qty = qty
    o.leaves_qty = qty
    o.cum_qty = 0
    o.cum_notional = ZERO
    o.display_qty = disp
    o.visible_qty = vis
    o.stop_price = stop
    o.stp = stp
    o.post_only = post_only
    o.expire_at = expire_at
    o.session = session
    o.ts = ts
    o.triggered = False
    o.live = True
    return o


cdef inline void _put(object obj, Py_ssize_t off, object value):
    """Set an empty slot."""
    Py_INCREF(value)
    (<PyObject**>((<char*><PyObject*>obj) + off))[0] = <PyObject*>value


cdef inline void _reput(object obj, Py_ssize_t off, object value):
    """Replace a set slot."""
    cdef PyObject** p = <PyObject**>((<char*><PyObject*>obj) + off)
    cdef PyObject* old = p[0]
    Py_INCREF(value)
    p[0] = <PyObject*>value
    if old is not NULL:
        Py_DECREF(<object>old)


cdef inline object _get(object obj, Py_ssize_t off):
    cdef PyObject* v = (<PyObject**>((<char*><PyObject*>obj) + off))[0]
    if v is NULL:
        raise AttributeError("a field of a command was never set")
    return <object>v


cdef _Layout L_NEW = _Layout(NewOrder)
cdef _Layout L_CANCEL = _Layout(CancelOrder)


# NewOrder / CancelOrder fields read on the hot path
cdef Py_ssize_t NO_TS = L_NEW.at("ts")
cdef Py_ssize_t NO_ACCOUNT = L_NEW.at("account")
cdef Py_ssize_t NO_INSTRUMENT = L_NEW.at("instrument")
cdef Py_ssize_t NO_CL_ORD_ID = L_NEW.at("cl_ord_id")
cdef Py_ssize_t NO_SIDE = L_NEW.at("side")
cdef Py_ssize_t NO_QTY = L_NEW.at("qty")
cdef Py_ssize_t NO_ORD_TYPE = L_NEW.at("ord_type")
cdef Py_ssize_t NO_PRICE = L_NEW.at("price")
cdef Py_ssize_t NO_TIF = L_NEW.at("tif")
cdef Py_ssize_t NO_STOP_PRICE = L_NEW.at("stop_price")
cdef Py_ssize_t NO_DISPLAY_QTY = L_NEW.at("display_qty")
cdef Py_ssize_t NO_POST_ONLY = L_NEW.at("post_only")
cdef Py_ssize_t NO_STP = L_NEW.at("stp")
cdef Py_ssize_t NO_SESSION = L_NEW.at("session")
cdef Py_ssize_t CO_TS = L_CANCEL.at("ts")
cdef Py_ssize_t CO_ACCOUNT = L_CANCEL.at("account")
cdef Py_ssize_t CO_INSTRUMENT = L_CANCEL.at("instrument")
cdef Py_ssize_t CO_CL_ORD_ID = L_CANCEL.at("cl_ord_id")
cdef Py_ssize_t CO_ORDER_ID = L_CANCEL.at("order_id")
cdef Py_ssize_t CO_SESSION = L_CANCEL.at("session")


# The hot events, each with the fields its builder below sets, by name, in the order it sets them
# (``f[i]`` is the i-th name): checked at import against the event class (``_Layout``).
cdef _Layout L_ACCEPTED = _Layout(OrderAccepted, (
    "seq", "ts", "order_id", "cl_ord_id", "account", "instrument", "side", "ord_type", "tif", "price",
    "qty", "stop_price", "display_qty", "leaves_qty", "session"))


cdef object ev_accepted(object ts, object oid, object cl, object account, object sym, object side,
                        object ot, object tif, object price, object qty, object stop, object disp,
                        object leaves, object session):
    cdef object e = _fresh(L_ACCEPTED)
    cdef Py_ssize_t* f = L_ACCEPTED.off
    _put(e, f[0], ZERO)  # seq
    _put(e, f[1], ts)
    _put(e, f[2], oid)  # order_id
    _put(e, f[3], cl)  # cl_ord_id
    _put(e, f[4], account)
    _put(e, f[5], sym)  # instrument
    _put(e, f[6], side)
    _put(e, f[7], ot)  # ord_type
    _put(e, f[8], tif)
    _put(e, f[9], price)
    _put(e, f[10], qty)
    _put(e, f[11], stop)  # stop_price
    _put(e, f[12], disp)  # display_qty
    _put(e, f[13], leaves)  # leaves_qty
    _put(e, f[14], session)
    return e


cdef _Layout L_FILLED = _Layout(OrderFilled, (
    "seq", "ts", "order_id", "cl_ord_id", "account", "instrument", "side", "trade_id", "last_px",
    "last_qty", "leaves_qty", "cum_qty", "cum_notional", "aggressor", "session"))


cdef object ev_filled(object ts, object oid, object cl, object account, object sym, object side,
                      object tid, object px, object qty, object leaves, object cum, object cumn,
                      object aggressor, object session):
    cdef object e = _fresh(L_FILLED)
    cdef Py_ssize_t* f = L_FILLED.off
    _put(e, f[0], ZERO)  # seq
    _put(e, f[1], ts)
    _put(e, f[2], oid)  # order_id
    _put(e, f[3], cl)  # cl_ord_id
    _put(e, f[4], account)
    _put(e, f[5], sym)  # instrument
    _put(e, f[6], side)
    _put(e, f[7], tid)  # trade_id
    _put(e, f[8], px)  # last_px
    _put(e, f[9], qty)  # last_qty
    _put(e, f[10], leaves)  # leaves_qty
    _put(e, f[11], cum)  # cum_qty
    _put(e, f[12], cumn)  # cum_notional
    _put(e, f[13], aggressor)
    _put(e, f[14], session)
    return e


cdef _Layout L_TRADE = _Layout(Trade, (
    "seq", "ts", "trade_id", "instrument", "price", "qty", "aggressor_side", "maker_order_id",
    "taker_order_id", "maker_account", "taker_account"))


cdef object ev_trade(object ts, object tid, object sym, object px, object qty, object aggressor_side,
                     object maker_id, object taker_id, object maker_account, object taker_account):
    cdef object e = _fresh(L_TRADE)
    cdef Py_ssize_t* f = L_TRADE.off
    _put(e, f[0], ZERO)  # seq
    _put(e, f[1], ts)
    _put(e, f[2], tid)  # trade_id
    _put(e, f[3], sym)  # instrument
    _put(e, f[4], px)  # price
    _put(e, f[5], qty)
    _put(e, f[6], aggressor_side)
    _put(e, f[7], maker_id)  # maker_order_id
    _put(e, f[8], taker_id)  # taker_order_id
    _put(e, f[9], maker_account)
    _put(e, f[10], taker_account)
    return e


cdef _Layout L_CANCELLED = _Layout(OrderCancelled, (
    "seq", "ts", "order_id", "cl_ord_id", "orig_cl_ord_id", "account", "instrument", "side",
    "price", "qty", "cancelled_qty", "cum_qty", "cum_notional", "reason", "session", "owner_session"))


cdef object ev_cancelled(object ts, Row o, object cl, object reason, object session):
    """OrderCancelled of row ``o`` (its leaves are the cancelled quantity)."""
    cdef object e = _fresh(L_CANCELLED)
    cdef Py_ssize_t* f = L_CANCELLED.off
    _put(e, f[0], ZERO)  # seq
    _put(e, f[1], ts)
    _put(e, f[2], o.order_id)
    _put(e, f[3], cl or o.cl_ord_id)  # cl_ord_id
    _put(e, f[4], o.cl_ord_id)  # orig_cl_ord_id
    _put(e, f[5], o.account)
    _put(e, f[6], o.instrument)
    _put(e, f[7], o.side)
    _put(e, f[8], o.price)
    _put(e, f[9], o.qty)
    _put(e, f[10], o.leaves_qty)  # cancelled_qty
    _put(e, f[11], o.cum_qty)
    _put(e, f[12], o.cum_notional)
    _put(e, f[13], reason)
    _put(e, f[14], session)
    _put(e, f[15], o.session)  # owner_session
    return e


cdef _Layout L_EXPIRED = _Layout(OrderExpired, (
    "seq", "ts", "order_id", "cl_ord_id", "account", "instrument", "side", "price", "qty",
    "expired_qty", "cum_qty", "cum_notional", "reason", "session"))


cdef object ev_expired(object ts, Row o, object reason):
    """OrderExpired of row ``o`` (its leaves are the expired quantity)."""
    cdef object e = _fresh(L_EXPIRED)
    cdef Py_ssize_t* f = L_EXPIRED.off
    _put(e, f[0], ZERO)  # seq
    _put(e, f[1], ts)
    _put(e, f[2], o.order_id)
    _put(e, f[3], o.cl_ord_id)
    _put(e, f[4], o.account)
    _put(e, f[5], o.instrument)
    _put(e, f[6], o.side)
    _put(e, f[7], o.price)
    _put(e, f[8], o.qty)
    _put(e, f[9], o.leaves_qty)  # expired_qty
    _put(e, f[10], o.cum_qty)
    _put(e, f[11], o.cum_notional)
    _put(e, f[12], reason)
    _put(e, f[13], o.session)
    return e


cdef _Layout L_LEVEL = _Layout(BookLevel, (
    "seq", "ts", "instrument", "side", "price", "qty", "orders"))


cdef object ev_level(object ts, object sym, object side, object price, object qty, object count):
    cdef object e = _fresh(L_LEVEL)
    cdef Py_ssize_t* f = L_LEVEL.off
    _put(e, f[0], ZERO)  # seq
    _put(e, f[1], ts)
    _put(e, f[2], sym)  # instrument
    _put(e, f[3], side)
    _put(e, f[4], price)
    _put(e, f[5], qty)
    _put(e, f[6], count)  # orders
    return e


# ------------------------------------------------------------------------------- enumerations
cdef object BUY = Side.BUY
cdef object SELL = Side.SELL
cdef object LIMIT = OrdType.LIMIT
cdef object MARKET = OrdType.MARKET
cdef object STOP = OrdType.STOP
cdef object STOP_LIMIT = OrdType.STOP_LIMIT
cdef object GTC = TimeInForce.GTC
cdef object IOC = TimeInForce.IOC
cdef object FOK = TimeInForce.FOK
cdef object DAY = TimeInForce.DAY
cdef object GTD = TimeInForce.GTD
cdef object OPEN = TradingStatus.OPEN
cdef object HALTED = TradingStatus.HALTED
cdef object STP_NONE = StpMode.NONE
cdef object EXPIRE_TAKER = StpMode.EXPIRE_TAKER
cdef object EXPIRE_MAKER = StpMode.EXPIRE_MAKER
cdef object EXPIRE_BOTH = StpMode.EXPIRE_BOTH
cdef object DECREMENT = StpMode.DECREMENT_CANCEL
cdef object DEFAULT_STP = StpMode.EXPIRE_TAKER
cdef object TRUE = True
cdef object FALSE = False

# value -> member maps: normalise plain strings to enum members in one dict lookup
cdef dict _SIDES = {m: m for m in Side}
cdef dict _ORD_TYPES = {m: m for m in OrdType}
cdef dict _TIFS = {m: m for m in TimeInForce}
cdef dict _STPS = {m: m for m in StpMode}

SNAPSHOT_VERSION = 1


# ------------------------------------------------------------------------------------ the book
cdef class Level:
    """One price level: visible quantity, live order count, orders in arrival order.

    ``orders[head:]`` is the queue (a list with a moving head: C-level append and pop-front, where a
    deque costs a method call each); the consumed front is cut off once it is half the list. Entries
    may be dead (``live`` False: cancelled), skipped at the front and compacted by ``Book.remove``."""

    cdef public object price
    cdef public object qty
    cdef public Py_ssize_t count
    cdef public list orders
    cdef public Py_ssize_t head

    def __init__(self, price):
        self.price = price
        self.qty = 0
        self.count = 0
        self.orders = []
        self.head = 0

    def queue(self):
        """The orders in arrival order (dead ones included)."""
        return self.orders[self.head:]


cdef inline Row _front(Level lvl):
    """The first live order of a non-empty level (dead ones at the front are dropped)."""
    cdef list q = lvl.orders
    cdef Row o = q[lvl.head]
    while not o.live:
        _pop_front(lvl)
        o = q[lvl.head]
    return o


cdef inline void _pop_front(Level lvl) except *:
    lvl.head += 1
    if lvl.head >= 32 and 2 * lvl.head >= len(lvl.orders):
        del lvl.orders[:lvl.head]
        lvl.head = 0


cdef inline void _compact(Level lvl) except *:
    """Drop dead entries once they outnumber the live ones."""
    if len(lvl.orders) - lvl.head > 2 * lvl.count + 16:
        lvl.orders = [x for x in lvl.orders[lvl.head:] if (<Row>x).live]
        lvl.head = 0


cdef class Book:
    """The fast book: price levels in a dict per side plus the side's prices in a sorted list
    (``bisect``: C-level insertion and removal, cheaper than a ``SortedDict`` for the few hundred
    levels a book near its band holds); each level keeps its orders in arrival order (``Level``).
    Removal is O(1): a cancelled order is flagged dead (``live = False``) and the level's aggregates
    are updated at once; dead entries are skipped at the head and compacted when they outnumber the
    live ones."""

    cdef public dict bids
    cdef public dict asks
    cdef public list bid_px  # ascending prices of the levels of each side
    cdef public list ask_px
    cdef public object best_bid
    cdef public object best_ask
    cdef public dict dirty

    def __init__(self):
        self.bids = {}
        self.asks = {}
        self.bid_px = []
        self.ask_px = []
        self.best_bid = None
        self.best_ask = None
        self.dirty = {}

    cpdef Level add(self, Row o):
        """Rest ``o`` at the back of its price level (``o.visible_qty`` counts as visible);
        returns the level (its state after the change)."""
        cdef Level lvl
        price = o.price
        if o.side is BUY:
            lvl = self.bids.get(price)
            if lvl is None:
                lvl = Level(price)
                self.bids[price] = lvl
                insort(self.bid_px, price)
                if self.best_bid is None or price > self.best_bid:
                    self.best_bid = price
            self.dirty[-price] = None
        else:
            lvl = self.asks.get(price)
            if lvl is None:
                lvl = Level(price)
                self.asks[price] = lvl
                insort(self.ask_px, price)
                if self.best_ask is None or price < self.best_ask:
                    self.best_ask = price
            self.dirty[price] = None
        o.live = True
        lvl.orders.append(o)
        lvl.qty += o.visible_qty
        lvl.count += 1
        return lvl

    @cython.wraparound(True)
    cpdef _drop_level(self, side, price):
        cdef list px
        if side is BUY:
            del self.bids[price]
            px = self.bid_px
            if price == self.best_bid:
                px.pop()
                self.best_bid = px[-1] if px else None
            else:
                del px[bisect_left(px, price)]
        else:
            del self.asks[price]
            px = self.ask_px
            if price == self.best_ask:
                del px[0]
                self.best_ask = px[0] if px else None
            else:
                del px[bisect_left(px, price)]

    cpdef Level remove(self, Row o):
        """Take a resting order out of the book (O(1): flagged dead, aggregates updated);
        returns the level (its state after the change; qty 0 and count 0 when it is gone)."""
        cdef Level lvl
        price = o.price
        if o.side is BUY:
            lvl = self.bids[price]
            self.dirty[-price] = None
        else:
            lvl = self.asks[price]
            self.dirty[price] = None
        o.live = False
        lvl.qty -= o.visible_qty
        lvl.count -= 1
        if lvl.count == 0:
            self._drop_level(o.side, price)
        else:
            _compact(lvl)
        return lvl

    cpdef object head(self, side):
        """The first order in time priority at the best price of ``side``."""
        if side is BUY:
            if self.best_bid is None:
                return None
            return _front(self.bids[self.best_bid])
        if self.best_ask is None:
            return None
        return _front(self.asks[self.best_ask])

    cpdef fill(self, Row o, qty):
        """``o`` (the head of its side) traded ``qty`` of its visible quantity; ``o.leaves_qty`` is
        already reduced. Refreshes an iceberg (back of the level) or removes a finished order."""
        cdef Level lvl
        price = o.price
        if o.side is BUY:
            lvl = self.bids[price]
            self.dirty[-price] = None
        else:
            lvl = self.asks[price]
            self.dirty[price] = None
        o.visible_qty -= qty
        lvl.qty -= qty
        if o.visible_qty == 0:
            _pop_front(lvl)
            if o.leaves_qty > 0:
                vis = o.display_qty if o.display_qty < o.leaves_qty else o.leaves_qty
                o.visible_qty = vis
                lvl.qty += vis
                lvl.orders.append(o)
            else:
                o.live = False
                lvl.count -= 1
                if lvl.count == 0:
                    self._drop_level(o.side, price)

    cpdef reduce(self, Row o, leaves):
        """Lower a resting order's leaves in place (keeps time priority); ``leaves`` > 0."""
        cdef Level lvl
        vis = o.visible_qty if o.visible_qty < leaves else leaves
        if o.side is BUY:
            lvl = self.bids[o.price]
            self.dirty[-o.price] = None
        else:
            lvl = self.asks[o.price]
            self.dirty[o.price] = None
        lvl.qty -= o.visible_qty - vis
        o.visible_qty = vis
        o.leaves_qty = leaves

    def level(self, side, price):
        """(visible qty, order count) at a price; (0, 0) when there is no level."""
        lvl = (self.bids if side is BUY else self.asks).get(price)
        return (0, 0) if lvl is None else ((<Level>lvl).qty, (<Level>lvl).count)

    def levels(self, side, depth=None):
        """[(price, visible qty, order count)] best first."""
        cdef Level lvl
        if side is BUY:
            prices = reversed(self.bid_px)
            book = self.bids
        else:
            prices = iter(self.ask_px)
            book = self.asks
        out = []
        for p in prices:
            if depth is not None and len(out) >= depth:
                break
            lvl = book[p]
            out.append((p, lvl.qty, lvl.count))
        return out

    def orders(self, side):
        """Resting orders of ``side`` in priority order."""
        if side is BUY:
            book = self.bids
            prices = reversed(self.bid_px[:])
        else:
            book = self.asks
            prices = iter(self.ask_px[:])
        for p in prices:
            for o in (<Level>book[p]).queue():
                if o.live:
                    yield o

    cpdef list take_dirty(self):
        """[(side, price, qty, count)] for each level touched since the last call."""
        cdef list out = []
        cdef Level lvl
        for k in self.dirty:
            if k > 0:
                x = self.asks.get(k)
                if x is None:
                    out.append((SELL, k, 0, 0))
                else:
                    lvl = x
                    out.append((SELL, k, lvl.qty, lvl.count))
            else:
                x = self.bids.get(-k)
                if x is None:
                    out.append((BUY, -k, 0, 0))
                else:
                    lvl = x
                    out.append((BUY, -k, lvl.qty, lvl.count))
        self.dirty.clear()
        return out


# ------------------------------------------------------------------------------------ the core
cdef class _Market:
    """Per-instrument state: the book, waiting stops, last trade, cached band."""

    cdef public object inst
    cdef public object sym
    cdef public object book
    cdef public bint fast  # the book is a ``Book`` (its methods are called, and inlined, in C)
    cdef public object stops_buy
    cdef public object stops_sell
    cdef public object last_px
    cdef public object band_lo
    cdef public object band_hi
    cdef public object trade_lo
    cdef public object trade_hi
    cdef public object aggressor
    # the instrument's limits, read on the hot path without attribute lookups (the core's copy of
    # the instrument changes only through the core: status by SetTradingStatus, ref price by trades)
    cdef public bint is_open
    cdef public bint banded
    cdef public object min_qty
    cdef public object max_qty
    cdef public object min_notional

    def __init__(self, inst, book):
        self.inst = inst
        self.sym = inst.symbol
        self.book = book
        self.fast = type(book) is Book
        self.stops_buy = SortedDict()
        self.stops_sell = SortedDict()
        self.last_px = None
        self.trade_lo = 0
        self.trade_hi = 0
        self.aggressor = BUY
        self.is_open = inst.status is OPEN
        self.banded = inst.band_bps is not None
        self.min_qty = inst.min_qty
        self.max_qty = min(inst.max_qty, MAX_QTY)
        self.min_notional = inst._min_notional_units
        self.set_band()

    cpdef set_band(self):
        band = self.inst.band()
        self.band_lo = None if band is None else band[0]
        self.band_hi = None if band is None else band[1]


cdef void _flush(_Market mkt, object ts, list out) except *:
    """One ``BookLevel`` per level the command touched (the fast book's dirty set read in place)."""
    cdef Book fbook
    cdef Level lvl
    sym = mkt.sym
    if mkt.fast:
        fbook = mkt.book
        if not fbook.dirty:
            return
        for k in fbook.dirty:
            if k > 0:
                x = fbook.asks.get(k)
                if x is None:
                    out.append(ev_level(ts, sym, SELL, k, ZERO, ZERO))
                else:
                    lvl = x
                    out.append(ev_level(ts, sym, SELL, k, lvl.qty, lvl.count))
            else:
                price = -k
                x = fbook.bids.get(price)
                if x is None:
                    out.append(ev_level(ts, sym, BUY, price, ZERO, ZERO))
                else:
                    lvl = x
                    out.append(ev_level(ts, sym, BUY, price, lvl.qty, lvl.count))
        fbook.dirty.clear()
        return
    book = mkt.book
    if book.dirty:
        for side, price, qty, count in book.take_dirty():
            out.append(ev_level(ts, sym, side, price, qty, count))


cdef void _reject(cmd, list out, code, text) except *:
    out.append(OrderRejected(0, cmd.ts, cmd.cl_ord_id, cmd.account, cmd.instrument, cmd.side,
                             cmd.qty, cmd.price, code, text, cmd.session))


cdef void _cxl_reject(cmd, list out, bint is_replace, code, text) except *:
    out.append(CancelRejected(0, cmd.ts, cmd.cl_ord_id, cmd.orig_cl_ord_id, cmd.order_id, cmd.account,
                              cmd.instrument, is_replace, code, text, cmd.session))


cdef inline void _expire(Row o, reason, ts, list out) except *:
    out.append(ev_expired(ts, o, reason))
    o.leaves_qty = 0


cdef void _pop_triggered(stops, bint buy, bound, pending) except *:
    while stops:
        price = stops.peekitem(0 if buy else -1)[0]
        if (price > bound) if buy else (price < bound):
            return
        lvl = stops.pop(price)
        for s in (<Level>lvl).queue():
            if s.live:
                s.live = False
                pending.append(s)


cdef class Core:
    """The matching core. ``Core(instruments, hooks=None, book_factory=Book)``."""

    cdef public long long seq
    cdef public long long cmd_count
    cdef object _book_factory
    cdef dict _markets
    cdef object _hooks
    cdef bint _plain
    cdef object _pre_new
    cdef object _on_events
    cdef object _on_trigger
    cdef object _next_order_id
    cdef object _next_trade_id
    cdef dict _orders
    cdef dict _by_clid
    cdef dict _stp_default
    cdef set _kill
    cdef list _gtd

    def __init__(self, instruments, hooks=None, book_factory=Book):
        if isinstance(instruments, Mapping):
            instruments = instruments.values()
        self._book_factory = book_factory
        self._markets = {}
        for inst in instruments:
            self._markets[inst.symbol] = _Market(dataclasses.replace(inst), book_factory())
        self._hooks = hooks if hooks is not None else NoHooks()
        self._plain = type(self._hooks) is NoHooks
        self._pre_new = None if self._plain else self._hooks.pre_new
        self._on_events = None if self._plain else self._hooks.on_events
        self._on_trigger = None if self._plain else getattr(self._hooks, "on_trigger", None)
        self.seq = 0
        self.cmd_count = 0
        self._next_order_id = 1
        self._next_trade_id = 1
        self._orders = {}
        self._by_clid = {}
        self._stp_default = {}
        self._kill = set()
        self._gtd = []

    # ------------------------------------------------------------------ processing
    def process(self, cmd):
        """Apply one command; return its events (numbered, hooks' extras appended)."""
        cdef list out = []
        cdef long long seq
        t = type(cmd)
        if t is L_NEW.cls:  # the hot types are compared through the layouts (C pointers), not globals
            self._new(cmd, out)
        elif t is L_CANCEL.cls:
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
            self._stp_default[cmd.account] = _STPS[cmd.stp]
        elif t is SetKillSwitch:
            self._set_kill(cmd, out)
        else:
            extra = self._hooks.apply(cmd)
            if extra:
                out.extend(extra)
        seq = self.seq
        for e in out:
            seq += 1
            t = type(e)
            if t is L_FILLED.cls:
                _reput(e, L_FILLED.seq, seq)
            elif t is L_LEVEL.cls:
                _reput(e, L_LEVEL.seq, seq)
            elif t is L_TRADE.cls:
                _reput(e, L_TRADE.seq, seq)
            elif t is L_ACCEPTED.cls:
                _reput(e, L_ACCEPTED.seq, seq)
            elif t is L_CANCELLED.cls:
                _reput(e, L_CANCELLED.seq, seq)
            elif t is L_EXPIRED.cls:
                _reput(e, L_EXPIRED.seq, seq)
            else:
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

    def process_batch(self, cmds):
        cdef list out = []
        for cmd in cmds:
            out.extend(self.process(cmd))
        return out

    # ------------------------------------------------------------------ queries
    def instrument(self, symbol):
        mkt = self._markets.get(symbol)
        return None if mkt is None else (<_Market>mkt).inst

    def instruments(self):
        return [(<_Market>m).inst for m in self._markets.values()]

    def order(self, order_id):
        """A snapshot of an open order (None once it is closed)."""
        o = self._orders.get(order_id)
        return None if o is None else Order.from_row(o)

    def order_by_cl_ord_id(self, account, cl_ord_id):
        clids = self._by_clid.get(account)
        o = None if clids is None else clids.get(cl_ord_id)
        return None if o is None else Order.from_row(o)

    def open_orders(self, account=None, instrument=None, session=None):
        """Snapshots of the open orders (resting and waiting stops) matching all filters, by id."""
        src = self._orders.values() if account is None else self._by_clid.get(account, {}).values()
        rows = sorted(
            (o for o in src if (instrument is None or o.instrument == instrument)
             and (session is None or o.session == session)),
            key=_by_id,
        )
        return [Order.from_row(o) for o in rows]

    def book_levels(self, instrument, side, depth=None):
        """[(price, visible qty, order count)], best first."""
        return (<_Market>self._markets[instrument]).book.levels(_SIDES[side], depth)

    def book(self, instrument):
        return (<_Market>self._markets[instrument]).book

    def last_price(self, instrument):
        return (<_Market>self._markets[instrument]).last_px

    def kill_switch(self, account):
        return account in self._kill

    def account_stp(self, account):
        return self._stp_default.get(account, DEFAULT_STP)

    # ------------------------------------------------------------------ helpers
    cdef void _register(self, Row o) except *:
        self._orders[o.order_id] = o
        clids = self._by_clid.get(o.account)
        if clids is None:
            clids = self._by_clid[o.account] = {}
        clids[o.cl_ord_id] = o

    cdef void _unregister(self, Row o) except *:
        del self._orders[o.order_id]
        del self._by_clid[o.account][o.cl_ord_id]

    cdef void _flush_all(self, ts, list out) except *:
        for mkt in self._markets.values():
            _flush(mkt, ts, out)

    cdef void _take_out(self, _Market mkt, Row o) except *:
        """Remove an open order from wherever it rests (book or stop book) and the registry."""
        cdef Level lvl
        if o.stop_price is not None and not o.triggered:
            stops = mkt.stops_buy if o.side is BUY else mkt.stops_sell
            lvl = stops[o.stop_price]
            o.live = False
            lvl.count -= 1
            if lvl.count == 0:
                del stops[o.stop_price]
            else:
                _compact(lvl)
        else:
            mkt.book.remove(o)
        self._unregister(o)

    cdef void _cancel_order(self, _Market mkt, Row o, ts, list out, reason, cl_ord_id, session) except *:
        self._take_out(mkt, o)
        out.append(ev_cancelled(ts, o, cl_ord_id, reason, session))
        o.leaves_qty = 0

    cdef void _rest(self, _Market mkt, Row o) except *:
        d = o.display_qty
        o.visible_qty = d if d is not None and d < o.leaves_qty else o.leaves_qty
        mkt.book.add(o)
        self._register(o)

    cdef void _add_stop(self, _Market mkt, Row o) except *:
        cdef Level lvl
        stops = mkt.stops_buy if o.side is BUY else mkt.stops_sell
        x = stops.get(o.stop_price)
        if x is None:
            lvl = Level(o.stop_price)
            stops[o.stop_price] = lvl
        else:
            lvl = x
        o.live = True
        lvl.orders.append(o)
        lvl.count += 1
        self._register(o)

    # ------------------------------------------------------------------ new order
    cdef void _new(self, cmd, list out) except *:
        cdef _Market mkt
        cdef Book fbook = None
        cdef Level lvl
        cdef Row o
        cdef bint passive
        side = _get(cmd, NO_SIDE)
        tif = _get(cmd, NO_TIF)
        if (_get(cmd, NO_ORD_TYPE) is LIMIT and (tif is GTC or tif is IOC) and (side is BUY or side is SELL)
                and _get(cmd, NO_STOP_PRICE) is None and _get(cmd, NO_DISPLAY_QTY) is None
                and _get(cmd, NO_POST_ONLY) is FALSE and _get(cmd, NO_STP) is None):
            # fast path for a plain GTC / IOC limit order that passes every check; any doubt falls
            # through to the general path below, which re-checks in the documented order
            x = self._markets.get(_get(cmd, NO_INSTRUMENT))
            qty = _get(cmd, NO_QTY)
            price = _get(cmd, NO_PRICE)
            account = _get(cmd, NO_ACCOUNT)
            if (x is not None and type(qty) is int and type(price) is int and price > 0
                    and not (self._kill and account in self._kill)):
                mkt = x
                inst = mkt.inst
                lo = mkt.band_lo
                cl = _get(cmd, NO_CL_ORD_ID)
                clids = self._by_clid.get(account)
                if (mkt.is_open and mkt.min_qty <= qty <= mkt.max_qty
                        and (lo is None or lo <= price <= mkt.band_hi)
                        and price * qty >= mkt.min_notional
                        and (clids is None or cl not in clids)):
                    oid = self._next_order_id
                    if self._pre_new is not None:
                        verdict = self._pre_new(cmd, oid, inst)
                        if verdict is not None:
                            _reject(cmd, out, verdict[0], verdict[1])
                            return
                    self._next_order_id = oid + 1
                    stp = self._stp_default.get(account, DEFAULT_STP) if self._stp_default else DEFAULT_STP
                    ts = _get(cmd, NO_TS)
                    session = _get(cmd, NO_SESSION)
                    sym = mkt.sym
                    o = _row(oid, cl, account, sym, side, LIMIT, tif, price, qty, None, 0, None, stp, False, None,
                             session, ts)
                    out.append(ev_accepted(ts, oid, cl, account, sym, side, LIMIT, tif, price, qty, None, None,
                                           qty, session))
                    book = mkt.book
                    if mkt.fast:
                        fbook = book
                        passive = tif is GTC and (
                            (fbook.best_ask is None or price < fbook.best_ask) if side is BUY
                            else (fbook.best_bid is None or price > fbook.best_bid))
                    else:
                        passive = tif is GTC and (
                            (book.best_ask is None or price < book.best_ask) if side is BUY
                            else (book.best_bid is None or price > book.best_bid))
                    if passive:
                        o.visible_qty = qty
                        if mkt.fast:  # Book.add inlined (no dirty mark: reported just below)
                            x = (fbook.bids if side is BUY else fbook.asks).get(price)
                            if x is None:
                                lvl = fbook.add(o)
                                fbook.dirty.clear()
                            else:
                                lvl = x
                                lvl.orders.append(o)
                                lvl.qty += qty
                                lvl.count += 1
                            out.append(ev_level(ts, sym, side, price, lvl.qty, lvl.count))
                        else:
                            lx = book.add(o)
                            book.dirty.clear()
                            out.append(ev_level(ts, sym, side, price, lx.qty, lx.count))
                        self._orders[oid] = o
                        if clids is None:
                            self._by_clid[account] = {cl: o}
                        else:
                            clids[cl] = o
                        return
                    if self._work(mkt, o, ts, out) and (mkt.stops_buy or mkt.stops_sell):
                        self._run_stops(mkt, ts, out, None)
                    _flush(mkt, ts, out)
                    return
        x = self._markets.get(cmd.instrument)
        if x is None:
            _reject(cmd, out, RejectCode.UNKNOWN_INSTRUMENT, "unknown instrument")
            return
        mkt = x
        inst = mkt.inst
        status = inst.status
        if status is not OPEN:
            if status is HALTED:
                _reject(cmd, out, RejectCode.INSTRUMENT_HALTED, "instrument halted")
            else:
                _reject(cmd, out, RejectCode.INSTRUMENT_CLOSED, "instrument closed")
            return
        account = cmd.account
        if account in self._kill:
            _reject(cmd, out, RejectCode.KILL_SWITCH, "kill switch on")
            return
        if side is not BUY and side is not SELL:
            side = _SIDES.get(side)
        ot = cmd.ord_type
        if ot is not LIMIT:
            ot = _ORD_TYPES.get(ot)
        if tif is not GTC:
            tif = _TIFS.get(tif)
        if side is None or ot is None or tif is None:
            _reject(cmd, out, RejectCode.INVALID_ORDER, "bad side, order type or time in force")
            return
        qty = cmd.qty
        if type(qty) is not int or qty <= 0:
            _reject(cmd, out, RejectCode.BAD_LOT, "quantity must be a positive number of lots")
            return
        if qty < inst.min_qty:
            _reject(cmd, out, RejectCode.QTY_TOO_SMALL, "quantity below minimum")
            return
        if qty > mkt.max_qty:
            _reject(cmd, out, RejectCode.QTY_TOO_LARGE, "quantity above maximum")
            return
        price = cmd.price
        if ot is LIMIT or ot is STOP_LIMIT:
            if type(price) is not int or price <= 0:
                _reject(cmd, out, RejectCode.BAD_TICK, "price must be a positive number of ticks")
                return
            lo = mkt.band_lo
            if lo is not None and (price < lo or price > mkt.band_hi):
                _reject(cmd, out, RejectCode.OUTSIDE_PRICE_BAND, "price outside the band")
                return
            if price * qty < inst._min_notional_units:
                _reject(cmd, out, RejectCode.NOTIONAL_TOO_SMALL, "notional below minimum")
                return
        elif price is not None:
            _reject(cmd, out, RejectCode.INVALID_ORDER, "market and stop orders take no price")
            return
        stop = cmd.stop_price
        if ot is STOP or ot is STOP_LIMIT:
            if type(stop) is not int or stop <= 0:
                _reject(cmd, out, RejectCode.BAD_TICK, "stop price must be a positive number of ticks")
                return
        elif stop is not None:
            _reject(cmd, out, RejectCode.INVALID_ORDER, "stop price on a non-stop order")
            return
        disp = cmd.display_qty
        if disp is not None and (
            price is None or tif is IOC or tif is FOK or type(disp) is not int or not 0 < disp <= qty
        ):
            _reject(cmd, out, RejectCode.INVALID_ORDER, "bad display quantity")
            return
        post_only = cmd.post_only
        if post_only and (ot is not LIMIT or tif is IOC or tif is FOK):
            _reject(cmd, out, RejectCode.INVALID_ORDER, "post-only needs a GTC/DAY/GTD limit")
            return
        expire_at = cmd.expire_at
        ts = cmd.ts
        if tif is GTD:
            if type(expire_at) is not int or expire_at <= ts:
                _reject(cmd, out, RejectCode.INVALID_ORDER, "GTD needs a future expire_at")
                return
        else:
            expire_at = None
        clids = self._by_clid.get(account)
        if clids is not None and cmd.cl_ord_id in clids:
            _reject(cmd, out, RejectCode.DUPLICATE_CL_ORD_ID, "duplicate ClOrdID")
            return
        book = mkt.book
        if post_only:
            if side is BUY:
                best = book.best_ask
                if best is not None and price >= best:
                    _reject(cmd, out, RejectCode.POST_ONLY_WOULD_TAKE, "post-only would take")
                    return
            else:
                best = book.best_bid
                if best is not None and price <= best:
                    _reject(cmd, out, RejectCode.POST_ONLY_WOULD_TAKE, "post-only would take")
                    return
        stp = cmd.stp
        if stp is None:
            stp = self._stp_default.get(account, DEFAULT_STP) if self._stp_default else DEFAULT_STP
        elif stp is not EXPIRE_TAKER:
            stp = _STPS.get(stp)
            if stp is None:
                _reject(cmd, out, RejectCode.INVALID_ORDER, "bad self-trade prevention mode")
                return
        oid = self._next_order_id
        if self._pre_new is not None:
            verdict = self._pre_new(cmd, oid, inst)
            if verdict is not None:
                _reject(cmd, out, verdict[0], verdict[1])
                return
        self._next_order_id = oid + 1
        cl = cmd.cl_ord_id
        session = cmd.session
        sym = mkt.sym
        o = _row(oid, cl, account, sym, side, ot, tif, price, qty, disp, 0, stop, stp, post_only, expire_at,
                 session, ts)
        out.append(ev_accepted(ts, oid, cl, account, sym, side, ot, tif, price, qty, stop, disp, qty, session))
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
            o.visible_qty = disp if disp is not None and disp < qty else qty
            lx = book.add(o)
            book.dirty.clear()
            self._orders[oid] = o
            if clids is None:
                self._by_clid[account] = {cl: o}
            else:
                clids[cl] = o
            out.append(ev_level(ts, sym, side, price, lx.qty, lx.count))
            return
        elif self._work(mkt, o, ts, out) and (mkt.stops_buy or mkt.stops_sell):
            self._run_stops(mkt, ts, out, None)
        _flush(mkt, ts, out)

    # ------------------------------------------------------------------ matching
    cdef bint _work(self, _Market mkt, Row o, ts, list out) except? -1:
        """An accepted/triggered/re-priced order (not registered, not resting) meets the book:
        FOK check, matching, then rest or expire the remainder. Returns True if it traded."""
        cdef bint buy = o.side is BUY
        cdef bint traded
        if o.price is None:
            limit = mkt.band_hi if buy else mkt.band_lo
        else:
            limit = o.price
        if o.tif is FOK and self._available(mkt.book, o, limit) < o.leaves_qty:
            _expire(o, "fok", ts, out)
            return False
        traded = self._match(mkt, o, limit, ts, out)
        if o.leaves_qty == 0:
            return traded
        if o.price is None:
            best = mkt.book.best_ask if buy else mkt.book.best_bid
            _expire(o, "market_no_liquidity" if best is None else "price_band", ts, out)
        elif o.tif is IOC:
            _expire(o, "ioc", ts, out)
        elif o.tif is FOK:  # guarded by _available
            _expire(o, "fok", ts, out)
        else:
            self._rest(mkt, o)
        return traded

    cdef object _available(self, book, Row o, limit):
        """What ``o`` would fill if matched now, counting STP stops exactly (FOK check)."""
        cdef bint buy = o.side is BUY
        cdef Row m
        stp = o.stp
        cdef bint stp_on = stp is not STP_NONE
        need = o.leaves_qty
        before = 0  # fully consumable quantity at better levels
        level_px = None
        level_all = 0  # all leaves at the current level
        level_ahead = 0  # what is reachable before an own order at the current level
        for x in book.orders(SELL if buy else BUY):
            m = x
            p = m.price
            if limit is not None and (p > limit if buy else p < limit):
                break
            if p != level_px:
                before += level_all
                if before >= need:
                    return before
                level_px, level_all, level_ahead = p, 0, 0
            if stp_on and m.account == o.account:
                if stp is EXPIRE_MAKER:
                    continue
                return before + level_ahead
            level_all += m.leaves_qty
            level_ahead += m.leaves_qty if m.display_qty is None else m.visible_qty
        return before + level_all

    cdef bint _match(self, _Market mkt, Row o, limit, ts, list out) except? -1:
        """Match taker ``o`` against the opposite side down to ``limit`` (None: no limit)."""
        cdef Book fbook = None
        cdef Level lvl = None
        cdef Row m
        cdef long long q, leaves, vis, m_leaves, m_cum, o_cum, d
        cdef dict levels = None
        cdef dict dirty = None
        cdef dict orders = self._orders
        cdef dict by_clid = self._by_clid
        book = mkt.book
        side = o.side
        cdef bint buy = side is BUY
        mside = SELL if buy else BUY
        account = o.account
        stp = o.stp
        cdef bint stp_on = stp is not STP_NONE
        cdef bint fast = mkt.fast  # the fast book's head/fill inlined below (same logic as Book)
        sym = o.instrument
        o_id = o.order_id
        o_cl = o.cl_ord_id
        o_sess = o.session
        first = None
        px = None
        dirty_p = None
        if fast:
            fbook = book
            levels = fbook.asks if buy else fbook.bids
            dirty = fbook.dirty
        while True:
            if fast:
                p = fbook.best_ask if buy else fbook.best_bid
            else:
                p = book.best_ask if buy else book.best_bid
            if p is None or (limit is not None and (p > limit if buy else p < limit)):
                break
            if fast:
                lvl = levels[p]
                m = _front(lvl)
            else:
                m = book.head(mside)
            if stp_on and m.account == account:
                if stp is EXPIRE_TAKER:
                    _expire(o, "self_trade", ts, out)
                    break
                if stp is EXPIRE_MAKER or stp is EXPIRE_BOTH:
                    book.remove(m)
                    self._unregister(m)
                    _expire(m, "self_trade", ts, out)
                    if stp is EXPIRE_BOTH:
                        _expire(o, "self_trade", ts, out)
                        break
                    continue
                # decrement and cancel: both lose the smaller leaves
                d = o.leaves_qty if o.leaves_qty < m.leaves_qty else m.leaves_qty
                if m.leaves_qty == d:
                    book.remove(m)
                    self._unregister(m)
                    _expire(m, "self_trade", ts, out)
                else:
                    m.qty -= d
                    book.reduce(m, m.leaves_qty - d)
                    out.append(OrderRestated(0, ts, m.order_id, m.cl_ord_id, m.account, sym, m.side, m.price,
                                             m.qty, m.leaves_qty, m.cum_qty, m.cum_notional, "self_trade",
                                             m.session))
                if o.leaves_qty == d:
                    _expire(o, "self_trade", ts, out)
                    break
                o.qty -= d
                o.leaves_qty -= d
                out.append(OrderRestated(0, ts, o.order_id, o.cl_ord_id, account, sym, o.side, o.price, o.qty,
                                         o.leaves_qty, o.cum_qty, o.cum_notional, "self_trade", o.session))
                continue
            leaves = o.leaves_qty
            vis = m.visible_qty
            q = leaves if leaves < vis else vis
            tid = self._next_trade_id
            self._next_trade_id = tid + 1
            n = p * q
            m_leaves = m.leaves_qty - q
            m.leaves_qty = m_leaves
            m_cum = m.cum_qty + q
            m.cum_qty = m_cum
            m_cumn = m.cum_notional + n
            m.cum_notional = m_cumn
            leaves = leaves - q
            o.leaves_qty = leaves
            o_cum = o.cum_qty + q
            o.cum_qty = o_cum
            o_cumn = o.cum_notional + n
            o.cum_notional = o_cumn
            if fast:
                if p is not dirty_p:  # one mark per level (the loop stays on a level for several fills)
                    dirty[p if buy else -p] = None
                    dirty_p = p
                vis = vis - q
                m.visible_qty = vis
                lvl.qty -= q
                if vis == 0:
                    _pop_front(lvl)
                    if m_leaves > 0:  # iceberg refresh: back of the level
                        vis = m.display_qty
                        if vis > m_leaves:
                            vis = m_leaves
                        m.visible_qty = vis
                        lvl.qty += vis
                        lvl.orders.append(m)
                    else:
                        m.live = False
                        lvl.count -= 1
                        if lvl.count == 0:
                            fbook._drop_level(mside, p)
            else:
                book.fill(m, q)
            m_id = m.order_id
            m_acct = m.account
            if m_leaves == 0:
                del orders[m_id]
                del by_clid[m_acct][m.cl_ord_id]
            out.append(ev_filled(ts, m_id, m.cl_ord_id, m_acct, sym, mside, tid, p, q, m_leaves, m_cum, m_cumn,
                                 FALSE, m.session))
            out.append(ev_filled(ts, o_id, o_cl, account, sym, side, tid, p, q, leaves, o_cum, o_cumn, TRUE,
                                 o_sess))
            out.append(ev_trade(ts, tid, sym, p, q, side, m_id, o_id, m_acct, account))
            if first is None:
                first = p
            px = p
            if leaves == 0:
                break
        if px is None:
            return False
        mkt.last_px = px
        mkt.aggressor = side
        if buy:
            mkt.trade_lo, mkt.trade_hi = first, px
        else:
            mkt.trade_lo, mkt.trade_hi = px, first
        if mkt.banded:
            mkt.inst.ref_price = px
            mkt.set_band()
        return True

    # ------------------------------------------------------------------ stops
    cdef void _collect_triggers(self, _Market mkt, pending) except *:
        """Stops reached by the last matching run, in the order their prices were reached."""
        if mkt.aggressor is BUY:  # prices went up from trade_lo to trade_hi
            _pop_triggered(mkt.stops_sell, False, mkt.trade_lo, pending)
            _pop_triggered(mkt.stops_buy, True, mkt.trade_hi, pending)
        else:
            _pop_triggered(mkt.stops_buy, True, mkt.trade_hi, pending)
            _pop_triggered(mkt.stops_sell, False, mkt.trade_lo, pending)

    cdef void _run_stops(self, _Market mkt, ts, list out, pending) except *:
        """Trigger and work stops one at a time; each may trade and trigger more."""
        cdef Row o
        if pending is None:
            pending = deque()
            self._collect_triggers(mkt, pending)
        while pending:
            o = pending.popleft()
            if o.order_id in self._orders:
                del self._orders[o.order_id]
                del self._by_clid[o.account][o.cl_ord_id]
            o.triggered = True
            out.append(OrderTriggered(0, ts, o.order_id, o.cl_ord_id, o.account, o.instrument, o.side, o.price,
                                      o.qty, o.leaves_qty, o.session))
            if o.price is not None and mkt.band_lo is not None and not mkt.band_lo <= o.price <= mkt.band_hi:
                _expire(o, "price_band", ts, out)
                continue
            if self._on_trigger is not None:
                # the stage re-values the order at the band of this moment, which bounds its matching
                verdict = self._on_trigger(Order.from_row(o), mkt.inst)
                if verdict is not None:
                    _expire(o, verdict[1], ts, out)
                    continue
            if self._work(mkt, o, ts, out):
                self._collect_triggers(mkt, pending)

    # ------------------------------------------------------------------ cancel / replace
    cdef object _find(self, cmd):
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

    cdef void _cancel(self, cmd, list out) except *:
        cdef Row o
        cdef Level lvl
        cdef _Market mkt
        oid = _get(cmd, CO_ORDER_ID)
        if oid is not None:  # _find, inlined for the common case
            x = self._orders.get(oid)
            if x is not None:
                o = x
                sym = _get(cmd, CO_INSTRUMENT)
                if o.account != _get(cmd, CO_ACCOUNT) or (sym and o.instrument != sym):
                    x = None
        else:
            x = self._find(cmd)
        if x is None:
            _cxl_reject(cmd, out, False, RejectCode.UNKNOWN_ORDER, "unknown order")
            return
        o = x
        ts = _get(cmd, CO_TS)
        mkt = self._markets[o.instrument]
        if (o.stop_price is not None and not o.triggered) or not mkt.fast:
            self._cancel_order(mkt, o, ts, out, "client", _get(cmd, CO_CL_ORD_ID), _get(cmd, CO_SESSION))
            _flush(mkt, ts, out)
            return
        # fast path: one order out of the book, one level reported
        lvl = (<Book>mkt.book).remove(o)
        (<Book>mkt.book).dirty.clear()
        del self._orders[o.order_id]
        del self._by_clid[o.account][o.cl_ord_id]
        out.append(ev_cancelled(ts, o, _get(cmd, CO_CL_ORD_ID), "client", _get(cmd, CO_SESSION)))
        o.leaves_qty = 0
        out.append(ev_level(ts, o.instrument, o.side, lvl.price, lvl.qty, lvl.count))

    cdef void _replace(self, cmd, list out) except *:
        cdef _Market mkt
        cdef Row o, n
        x = self._find(cmd)
        if x is None:
            _cxl_reject(cmd, out, True, RejectCode.UNKNOWN_ORDER, "unknown order")
            return
        o = x
        mkt = self._markets[o.instrument]
        inst = mkt.inst
        ts = cmd.ts
        if inst.status is not OPEN:
            code = RejectCode.INSTRUMENT_HALTED if inst.status is HALTED else RejectCode.INSTRUMENT_CLOSED
            _cxl_reject(cmd, out, True, code, f"instrument {inst.status.value}")
            return
        if o.account in self._kill:
            _cxl_reject(cmd, out, True, RejectCode.KILL_SWITCH, "kill switch on")
            return
        qty = cmd.qty
        if type(qty) is not int or qty <= 0:
            _cxl_reject(cmd, out, True, RejectCode.BAD_LOT, "quantity must be a positive number of lots")
            return
        price = o.price if cmd.price is None else cmd.price
        if cmd.price is not None:
            if o.price is None:
                _cxl_reject(cmd, out, True, RejectCode.INVALID_ORDER, "order has no limit price")
                return
            if type(price) is not int or price <= 0:
                _cxl_reject(cmd, out, True, RejectCode.BAD_TICK, "price must be a positive number of ticks")
                return
        cl = cmd.cl_ord_id
        clids = self._by_clid[o.account]
        if cl != o.cl_ord_id and cl in clids:
            _cxl_reject(cmd, out, True, RejectCode.DUPLICATE_CL_ORD_ID, "duplicate ClOrdID")
            return
        if qty <= o.cum_qty:
            self._cancel_order(mkt, o, ts, out, "client", cl, cmd.session)
            _flush(mkt, ts, out)
            return
        if qty < inst.min_qty:
            _cxl_reject(cmd, out, True, RejectCode.QTY_TOO_SMALL, "quantity below minimum")
            return
        if qty > mkt.max_qty:
            _cxl_reject(cmd, out, True, RejectCode.QTY_TOO_LARGE, "quantity above maximum")
            return
        if price is not None:
            if price != o.price and mkt.band_lo is not None and not mkt.band_lo <= price <= mkt.band_hi:
                _cxl_reject(cmd, out, True, RejectCode.OUTSIDE_PRICE_BAND, "price outside the band")
                return
            if price * qty < inst._min_notional_units:
                _cxl_reject(cmd, out, True, RejectCode.NOTIONAL_TOO_SMALL, "notional below minimum")
                return
        waiting_stop = o.stop_price is not None and not o.triggered
        book = mkt.book
        if o.post_only and not waiting_stop:
            best = book.best_ask if o.side is BUY else book.best_bid
            if best is not None and (price >= best if o.side is BUY else price <= best):
                _cxl_reject(cmd, out, True, RejectCode.POST_ONLY_WOULD_TAKE, "post-only would take")
                return
        if not self._plain:
            verdict = self._hooks.pre_replace(cmd, Order.from_row(o), inst)
            if verdict is not None:
                _cxl_reject(cmd, out, True, verdict[0], verdict[1])
                return
        old_price, old_qty, old_cl = o.price, o.qty, o.cl_ord_id
        leaves = qty - o.cum_qty
        kept = price == old_price and qty <= old_qty
        if kept:
            if waiting_stop:
                o.leaves_qty = leaves
            else:
                book.reduce(o, leaves)
            o.qty = qty
            if cl != old_cl:
                del clids[old_cl]
                o.cl_ord_id = cl
                clids[cl] = o
            out.append(OrderReplaced(0, ts, o.order_id, cl, old_cl, o.account, o.instrument, o.side, price, qty,
                                     old_price, old_qty, leaves, o.cum_qty, o.cum_notional, True, cmd.session))
        else:
            self._take_out(mkt, o)
            n = o.copy()
            n.price = price
            n.qty = qty
            n.leaves_qty = leaves
            n.cl_ord_id = cl
            n.visible_qty = 0
            out.append(OrderReplaced(0, ts, n.order_id, cl, old_cl, n.account, n.instrument, n.side, price, qty,
                                     old_price, old_qty, leaves, n.cum_qty, n.cum_notional, False, cmd.session))
            if waiting_stop:
                self._add_stop(mkt, n)
            elif self._work(mkt, n, ts, out) and (mkt.stops_buy or mkt.stops_sell):
                self._run_stops(mkt, ts, out, None)
        _flush(mkt, ts, out)

    cdef void _mass_cancel(self, cmd, list out) except *:
        if cmd.account is not None:
            src = self._by_clid.get(cmd.account, {}).values()
        else:
            src = self._orders.values()
        instrument, side, session_filter, spare_gtc = cmd.instrument, cmd.side, cmd.session_filter, cmd.spare_gtc
        victims = sorted(
            (o for o in src
             if (instrument is None or o.instrument == instrument)
             and (side is None or o.side == side)
             and (session_filter is None or o.session == session_filter)
             and not (spare_gtc and o.tif is GTC)),
            key=_by_id,
        )
        for o in victims:
            self._cancel_order(self._markets[o.instrument], o, cmd.ts, out, cmd.reason, cmd.cl_ord_id, cmd.session)
        self._flush_all(cmd.ts, out)

    cdef void _set_kill(self, cmd, list out) except *:
        if not cmd.on:
            self._kill.discard(cmd.account)
            return
        self._kill.add(cmd.account)
        for o in sorted(self._by_clid.get(cmd.account, {}).values(), key=_by_id):
            self._cancel_order(self._markets[o.instrument], o, cmd.ts, out, "kill_switch", "", cmd.session)
        self._flush_all(cmd.ts, out)

    # ------------------------------------------------------------------ status and time
    cdef void _set_status(self, cmd, list out) except *:
        cdef _Market mkt
        x = self._markets.get(cmd.instrument)
        if x is None:
            return
        mkt = x
        mkt.inst.status = TradingStatus(cmd.status)
        mkt.is_open = mkt.inst.status is OPEN
        out.append(TradingStatusChanged(0, cmd.ts, mkt.sym, mkt.inst.status))

    cdef void _end_of_session(self, cmd, list out) except *:
        instrument = cmd.instrument
        victims = sorted(
            (o for o in self._orders.values()
             if o.tif is DAY and (instrument is None or o.instrument == instrument)),
            key=_by_id,
        )
        for o in victims:
            self._take_out(self._markets[o.instrument], o)
            _expire(o, "day", cmd.ts, out)
        self._flush_all(cmd.ts, out)

    cdef void _tick(self, cmd, list out) except *:
        cdef list heap = self._gtd
        ts = cmd.ts
        touched = False
        while heap and heap[0][0] <= ts:
            _, oid = heapq.heappop(heap)
            o = self._orders.get(oid)
            if o is not None and o.expire_at is not None and o.expire_at <= ts:
                self._take_out(self._markets[o.instrument], o)
                _expire(o, "gtd", ts, out)
                touched = True
        if touched:
            self._flush_all(ts, out)

    # ------------------------------------------------------------------ snapshot
    def snapshot(self):
        """The whole state as a JSON-serialisable dict (restorable with ``Core.from_snapshot``)."""
        cdef _Market mkt
        markets = {}
        for sym, x in self._markets.items():
            mkt = x
            markets[sym] = {
                "last_px": mkt.last_px,
                "bids": [row_to_json(o) for o in mkt.book.orders(BUY)],
                "asks": [row_to_json(o) for o in mkt.book.orders(SELL)],
                "stops_buy": [row_to_json(o) for lvl in mkt.stops_buy.values() for o in (<Level>lvl).queue()
                              if o.live],
                "stops_sell": [row_to_json(o) for lvl in mkt.stops_sell.values() for o in (<Level>lvl).queue()
                               if o.live],
            }
        return {
            "version": SNAPSHOT_VERSION,
            "seq": self.seq,
            "cmd_count": self.cmd_count,
            "next_order_id": self._next_order_id,
            "next_trade_id": self._next_trade_id,
            "instruments": [(<_Market>m).inst.to_dict() for m in self._markets.values()],
            "markets": markets,
            "stp_defaults": {a: m.value for a, m in sorted(self._stp_default.items())},
            "kill": sorted(self._kill),
            "gtd": [list(x) for x in self._gtd],
            "hooks": self._hooks.snapshot(),
        }

    @classmethod
    def from_snapshot(cls, d, hooks=None, book_factory=Book):
        cdef Core core
        cdef _Market mkt
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

    def add_instrument(self, inst):
        """Add an instrument the core does not have yet (e.g. after restoring an older snapshot)."""
        if inst.symbol not in self._markets:
            self._markets[inst.symbol] = _Market(dataclasses.replace(inst), self._book_factory())


def _by_id(o):
    return (<Row>o).order_id
