"""Market-data books derived from core events (sans-I/O: no asyncio, no clock, no sockets).

A :class:`MarketDataBook` per instrument is maintained from the core's ``BookLevel``, ``Trade``
and ``TradingStatusChanged`` events. Every book change and every trade gets a gapless
per-instrument sequence number (FIX RptSeq, tag 83), so a consumer applying incrementals can
detect a gap and ask for a fresh snapshot.

Consumers asking for a limited depth (top N levels) read a :class:`DepthView`: it keeps the top
N levels of each side, turns book changes into the changes *of that view* (a level that enters
the top N because a better one left is a ``NEW``; one pushed out is a ``DELETE``) and numbers
them in its own gapless sequence. Depth 0 means the full book, whose sequence is the
instrument's own (the one the MQTT feed publishes).

:class:`ConflatingQueue` is the per-subscriber buffer: bounded; when a subscriber falls behind,
its pending updates for an instrument are dropped and replaced by one fresh snapshot taken when
the subscriber is next drained, so its book is still exact.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from sortedcontainers import SortedDict

from venue.core.events import BookLevel, Trade, TradingStatusChanged
from venue.core.types import Side, TradingStatus


class EntryType(StrEnum):
    """MDEntryType (269)."""

    BID = "0"
    OFFER = "1"
    TRADE = "2"


class Action(StrEnum):
    """MDUpdateAction (279)."""

    NEW = "0"
    CHANGE = "1"
    DELETE = "2"


SIDE_ENTRY = {Side.BUY: EntryType.BID, Side.SELL: EntryType.OFFER}


@dataclass(slots=True)
class MDUpdate:
    """One incremental entry: a level change (bid/offer) or a trade, for one view of one book."""

    instrument: str
    depth: int  # the view it belongs to: 0 = full book, N = top N levels
    seq: int  # RptSeq within (instrument, depth)
    action: Action
    entry: EntryType
    price: int
    qty: int
    ts: int
    event_seq: int  # the core event that caused it
    orders: int = 0
    trade_id: int | None = None
    aggressor: Side | None = None


@dataclass(slots=True)
class StatusUpdate:
    """The instrument's trading status changed (not sequenced)."""

    instrument: str
    status: TradingStatus
    ts: int
    event_seq: int


@dataclass(slots=True)
class Snapshot:
    """A book (or its top N levels) as of sequence ``seq``; bids and asks best first."""

    instrument: str
    depth: int
    seq: int
    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]
    status: TradingStatus
    last_trade: MDUpdate | None = None
    ts: int = 0


def _levels(book: SortedDict, depth: int) -> list[tuple[int, int]]:
    items = book.items() if depth <= 0 else book.items()[:depth]
    return [(abs(k), v) for k, v in items]


@dataclass(slots=True)
class DepthView:
    """The top ``depth`` levels of each side of a book, with its own gapless sequence."""

    depth: int
    seq: int = 0
    bids: dict[int, int] = field(default_factory=dict)
    asks: dict[int, int] = field(default_factory=dict)

    def _side(self, side: Side) -> dict[int, int]:
        return self.bids if side is Side.BUY else self.asks


class MarketDataBook:
    """The public book of one instrument: price -> visible qty per side, sequence, status."""

    def __init__(self, instrument: str, status: TradingStatus = TradingStatus.OPEN) -> None:
        self.instrument = instrument
        self.status = status
        self.seq = 0
        self.ts = 0
        # keys: -price for bids (best first), price for asks
        self._bids: SortedDict = SortedDict()
        self._asks: SortedDict = SortedDict()
        self._orders: dict[tuple[Side, int], int] = {}
        self.last_trade: MDUpdate | None = None
        self._views: dict[int, DepthView] = {}

    # -- reading -----------------------------------------------------------------------------
    def _book(self, side: Side) -> SortedDict:
        return self._bids if side is Side.BUY else self._asks

    @staticmethod
    def _key(side: Side, price: int) -> int:
        return -price if side is Side.BUY else price

    def levels(self, side: Side, depth: int = 0) -> list[tuple[int, int]]:
        """``(price, qty)`` best first; depth 0 = every level."""
        return _levels(self._book(side), depth)

    def top(self) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        """Best bid and best offer as ``(price, qty)`` or None."""
        bids = self.levels(Side.BUY, 1)
        asks = self.levels(Side.SELL, 1)
        return (bids[0] if bids else None, asks[0] if asks else None)

    def snapshot(self, depth: int = 0) -> Snapshot:
        """The book (top ``depth`` levels, 0 = full) with the sequence of that view."""
        if depth > 0:
            view = self.view(depth)
            seq = view.seq
            bids = sorted(view.bids.items(), key=lambda kv: -kv[0])
            asks = sorted(view.asks.items())
        else:
            seq = self.seq
            bids = self.levels(Side.BUY)
            asks = self.levels(Side.SELL)
        last = self.last_trade
        return Snapshot(self.instrument, depth, seq, bids, asks, self.status, last, self.ts)

    def view(self, depth: int) -> DepthView:
        """The top-``depth`` view, created (from the current book) on first use."""
        view = self._views.get(depth)
        if view is None:
            view = DepthView(depth)
            view.bids = dict(self.levels(Side.BUY, depth))
            view.asks = dict(self.levels(Side.SELL, depth))
            self._views[depth] = view
        return view

    # -- seeding -----------------------------------------------------------------------------
    def load(self, bids: Iterable[tuple[int, ...]], asks: Iterable[tuple[int, ...]], seq: int = 0) -> None:
        """Replace the book with these ``(price, qty[, orders])`` levels (after a restart:
        ``core.book_levels(instrument, side)``)."""
        self._bids.clear()
        self._asks.clear()
        self._orders.clear()
        for side, levels in ((Side.BUY, bids), (Side.SELL, asks)):
            book = self._book(side)
            for level in levels:
                price, qty = level[0], level[1]
                if qty > 0:
                    book[self._key(side, price)] = qty
                    self._orders[(side, price)] = level[2] if len(level) > 2 else 0
        self.seq = seq
        for depth, view in list(self._views.items()):
            view.bids = dict(self.levels(Side.BUY, depth))
            view.asks = dict(self.levels(Side.SELL, depth))

    # -- applying events ---------------------------------------------------------------------
    def apply(self, event: object) -> list[MDUpdate | StatusUpdate]:
        """Apply one core event; return the updates it causes."""
        return self.apply_batch((event,))

    def apply_batch(self, events: Iterable[object]) -> list[MDUpdate | StatusUpdate]:
        """Apply a batch of this instrument's events; return the updates, netted per batch.

        A level touched several times in the batch gives one entry (its final quantity, at the
        place of its first change; none if it ends as it began). Trades and status changes keep
        their order. Depth views are diffed once at the end of the batch.
        """
        before: dict[tuple[Side, int], int] = {}
        last: dict[tuple[Side, int], BookLevel] = {}
        order: list[object] = []
        trades: list[MDUpdate] = []
        for ev in events:
            if isinstance(ev, BookLevel):
                side = Side(ev.side)
                key = (side, ev.price)
                book = self._book(side)
                bkey = self._key(side, ev.price)
                if key not in before:
                    before[key] = book.get(bkey, 0)
                    order.append(key)
                last[key] = ev
                if ev.qty <= 0:
                    book.pop(bkey, None)
                    self._orders.pop(key, None)
                else:
                    book[bkey] = ev.qty
                    self._orders[key] = ev.orders
            else:
                order.append(ev)
        out: list[MDUpdate | StatusUpdate] = []
        for item in order:
            if isinstance(item, tuple):
                side, price = item
                old = before[item]
                new = self._book(side).get(self._key(side, price), 0)
                if old == new:
                    continue
                ev = last[item]
                action = Action.DELETE if new == 0 else Action.NEW if old == 0 else Action.CHANGE
                self.seq += 1
                self.ts = ev.ts
                out.append(MDUpdate(self.instrument, 0, self.seq, action, SIDE_ENTRY[side], price, new, ev.ts,
                                    ev.seq, orders=self._orders.get(item, 0) if new else 0))
            elif isinstance(item, Trade):
                self.seq += 1
                self.ts = item.ts
                trade = MDUpdate(self.instrument, 0, self.seq, Action.NEW, EntryType.TRADE, item.price, item.qty,
                                 item.ts, item.seq, trade_id=item.trade_id, aggressor=Side(item.aggressor_side))
                self.last_trade = trade
                trades.append(trade)
                out.append(trade)
            elif isinstance(item, TradingStatusChanged):
                self.status = item.status
                self.ts = item.ts
                out.append(StatusUpdate(self.instrument, item.status, item.ts, item.seq))
        if self._views and (before or trades):
            sides = {side for side, _ in before}
            ts = self.ts
            ev_seq = max([e.seq for e in last.values()] + [t.event_seq for t in trades], default=0)
            for view in self._views.values():
                for side in (Side.BUY, Side.SELL):
                    if side in sides:
                        out.extend(self._diff_view(view, side, ts, ev_seq))
                for t in trades:
                    view.seq += 1
                    out.append(MDUpdate(self.instrument, view.depth, view.seq, Action.NEW, EntryType.TRADE, t.price,
                                        t.qty, t.ts, t.event_seq, trade_id=t.trade_id, aggressor=t.aggressor))
        return out

    def _diff_view(self, view: DepthView, side: Side, ts: int, ev_seq: int) -> list[MDUpdate]:
        mine = view._side(side)
        new = dict(self.levels(side, view.depth))
        out: list[MDUpdate] = []
        entry = SIDE_ENTRY[side]
        # deletes first (a client applying in order never holds more than depth levels)
        for price in [p for p in mine if p not in new]:
            del mine[price]
            view.seq += 1
            out.append(MDUpdate(self.instrument, view.depth, view.seq, Action.DELETE, entry, price, 0, ts, ev_seq))
        for price, qty in new.items():
            old = mine.get(price)
            if old == qty:
                continue
            mine[price] = qty
            view.seq += 1
            action = Action.NEW if old is None else Action.CHANGE
            out.append(MDUpdate(self.instrument, view.depth, view.seq, action, entry, price, qty, ts, ev_seq,
                                orders=self._orders.get((side, price), 0)))
        return out


class MarketData:
    """Every instrument's :class:`MarketDataBook`, fed with the core's events in order."""

    def __init__(self, instruments: Iterable[str] = ()) -> None:
        self.books: dict[str, MarketDataBook] = {}
        for name in instruments:
            self.book(name)

    def book(self, instrument: str) -> MarketDataBook:
        book = self.books.get(instrument)
        if book is None:
            book = self.books[instrument] = MarketDataBook(instrument)
        return book

    def __contains__(self, instrument: str) -> bool:
        return instrument in self.books

    def apply_events(self, events: Iterable[object]) -> list[MDUpdate | StatusUpdate]:
        """Apply a batch of core events (others are ignored); return the updates, netted per
        instrument over the batch (see :meth:`MarketDataBook.apply_batch`)."""
        per: dict[str, list[object]] = {}
        for ev in events:
            if isinstance(ev, (BookLevel, Trade, TradingStatusChanged)):
                lst = per.get(ev.instrument)
                if lst is None:
                    per[ev.instrument] = [ev]
                else:
                    lst.append(ev)
        out: list[MDUpdate | StatusUpdate] = []
        for name, evs in per.items():
            out.extend(self.book(name).apply_batch(evs))
        return out


class ClientBook:
    """What a consumer rebuilds from one snapshot plus incrementals (used by tests and tools).

    ``apply`` raises :class:`GapError` when an update's sequence is not the next one.
    """

    class GapError(Exception):
        """An incremental whose RptSeq does not follow the last one: take a new snapshot."""

    def __init__(self, snapshot: Snapshot | None = None) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.seq = 0
        self.trades: list[tuple[int, int]] = []
        if snapshot is not None:
            self.reset(snapshot)

    def reset(self, snap: Snapshot) -> None:
        self.bids = dict(snap.bids)
        self.asks = dict(snap.asks)
        self.seq = snap.seq

    def apply(self, u: MDUpdate) -> None:
        if u.seq <= self.seq:
            return  # already in the snapshot
        if u.seq != self.seq + 1:
            raise ClientBook.GapError(f"expected seq {self.seq + 1}, got {u.seq}")
        self.seq = u.seq
        if u.entry is EntryType.TRADE:
            self.trades.append((u.price, u.qty))
            return
        side = self.bids if u.entry is EntryType.BID else self.asks
        if u.action is Action.DELETE:
            if u.price not in side:
                raise ClientBook.GapError(f"delete of unknown level {u.price}")
            del side[u.price]
        elif u.action is Action.NEW:
            if u.price in side:
                raise ClientBook.GapError(f"new for existing level {u.price}")
            side[u.price] = u.qty
        else:
            if u.price not in side:
                raise ClientBook.GapError(f"change of unknown level {u.price}")
            side[u.price] = u.qty

    def levels(self, side: Side) -> list[tuple[int, int]]:
        book = self.bids if side is Side.BUY else self.asks
        return sorted(book.items(), key=lambda kv: -kv[0] if side is Side.BUY else kv[0])


@dataclass(slots=True)
class ConflatingQueue:
    """A bounded per-subscriber queue of updates.

    When more than ``limit`` updates are pending, the subscriber is slow: every pending level
    update of the instruments concerned is dropped and the instrument is marked stale; further
    level updates and trades for a stale instrument are dropped too. ``drain`` then returns the
    stale instruments (the caller sends each a fresh snapshot, taken at that moment, which
    includes everything dropped) and the remaining updates, in order. Status updates are never
    dropped.
    """

    limit: int = 1000
    pending: list[MDUpdate | StatusUpdate] = field(default_factory=list)
    stale: set[str] = field(default_factory=set)
    conflations: int = 0

    def push(self, items: Iterable[MDUpdate | StatusUpdate]) -> None:
        stale = self.stale
        pending = self.pending
        for item in items:
            if isinstance(item, MDUpdate) and item.instrument in stale:
                continue
            pending.append(item)
        if len(pending) > self.limit:
            self.conflate()

    def conflate(self) -> None:
        """Drop pending book updates; mark their instruments stale."""
        self.conflations += 1
        for item in self.pending:
            if isinstance(item, MDUpdate):
                self.stale.add(item.instrument)
        self.pending = [i for i in self.pending if isinstance(i, StatusUpdate)]

    def __len__(self) -> int:
        return len(self.pending) + len(self.stale)

    def drain(self) -> tuple[list[str], list[MDUpdate | StatusUpdate]]:
        """``(stale instruments needing a snapshot, pending updates)``; empties the queue."""
        stale = sorted(self.stale)
        pending = self.pending
        self.stale = set()
        self.pending = []
        return stale, pending


class Units:
    """Integer ticks/lots of an instrument -> plain decimal strings (the edges' format)."""

    __slots__ = ("tick", "lot")

    def __init__(self, tick: Decimal | str = "1", lot: Decimal | str = "1") -> None:
        self.tick = Decimal(tick)
        self.lot = Decimal(lot)

    def px(self, ticks: int) -> str:
        return plain(ticks * self.tick)

    def qty(self, lots: int) -> str:
        return plain(lots * self.lot)


def plain(d: Decimal) -> str:
    """A Decimal without exponent or trailing zeros ("1.50" -> "1.5", "1E+2" -> "100")."""
    text = format(d, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"
