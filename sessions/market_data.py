"""The market-data FIX application: MarketDataRequest (V) in; W, X, Y and h out.

One :class:`MarketDataApp` serves every market-data session. The server calls
:meth:`MarketDataApp.on_core_events` with each committed batch of core events (and
:meth:`MarketDataApp.on_timer` now and then); the app keeps its own
:class:`~venue.marketdata.MarketData` and fans the changes out to the subscriptions.

* ``263=0`` snapshot, ``263=1`` snapshot + updates, ``263=2`` unsubscribe (by MDReqID).
* ``264=0`` full book, ``264=N`` top N levels (N <= ``max_depth``); ``265=1`` incremental (X) or
  ``265=0`` full refresh (a new W per change); ``269`` 0 bid, 1 offer, 2 trade; ``146/55`` one or
  many instruments.
* RptSeq (83) is gapless per instrument and depth over bids, offers and trades; a W carries the
  sequence it is at (body-level 83), each X entry its own.
* Bad requests: MarketDataRequestReject (Y) with MDReqRejReason (281) and Text.
* Halt / resume: TradingSessionStatus (h) with TradingSessionID (336) = the instrument's symbol.
* Order messages and anything else: BusinessMessageReject (j) 380=3 (raised as ``BusinessReject``).
  No accounts, no order ids.

Slow consumers: updates for a session wait in its own bounded :class:`ConflatingQueue`; they are
handed to the session only while its outbound backlog (``backlog(session)``, supplied by the
wiring) is under ``high_water``. A queue that overflows is conflated: the instruments concerned
get a fresh W instead of the dropped X. A session held back longer than ``max_hold`` seconds is
disconnected (``disconnect(session, reason)``). Nothing here ever waits on a session.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fix.application import Application, BusinessReject
from fix.message import Message
from venue.core.types import TradingStatus
from venue.marketdata import (
    ConflatingQueue,
    EntryType,
    MarketData,
    MDUpdate,
    Snapshot,
    StatusUpdate,
    Units,
)

log = logging.getLogger("venue.marketdata")

MAX_ENTRIES = 200  # MDEntries per X message

# MDReqRejReason (281)
REJ_UNKNOWN_SYMBOL = "0"
REJ_DUPLICATE_ID = "1"
REJ_UNSUPPORTED_SUBSCRIPTION = "4"
REJ_UNSUPPORTED_DEPTH = "5"
REJ_UNSUPPORTED_UPDATE_TYPE = "6"
REJ_UNSUPPORTED_AGGREGATED = "7"
REJ_UNSUPPORTED_ENTRY_TYPE = "8"

TRAD_SES_STATUS = {TradingStatus.OPEN: "2", TradingStatus.HALTED: "1", TradingStatus.CLOSED: "3"}
ORDER_MSG_TYPES = frozenset({"D", "F", "G", "H", "q", "AF", "8", "9", "E", "s", "AB", "AC"})


class RequestError(Exception):
    def __init__(self, reason: str | None, text: str) -> None:
        super().__init__(text)
        self.reason = reason
        self.text = text


@dataclass(slots=True)
class Subscription:
    req_id: str
    instruments: tuple[str, ...]
    depth: int
    entry_types: frozenset[EntryType]
    incremental: bool = True  # 265=1; False: a full refresh (W) per change


@dataclass(slots=True)
class MDSessionState:
    session: Any
    subs: dict[str, Subscription] = field(default_factory=dict)
    queue: ConflatingQueue = field(default_factory=ConflatingQueue)
    held_since: float | None = None
    sent: int = 0
    keys: set[tuple[str, int]] = field(default_factory=set)  # (instrument, depth) subscribed

    def resubscribed(self) -> None:
        self.keys = {(name, s.depth) for s in self.subs.values() for name in s.instruments}


def parse_request(msg: Message, known: Callable[[str], bool], max_depth: int) -> tuple[str, str, Subscription]:
    """MarketDataRequest -> (MDReqID, SubscriptionRequestType, Subscription); raises RequestError."""
    req_id = msg.get_str(262) or ""
    if not req_id:
        raise RequestError(None, "MDReqID (262) is required")
    srt = msg.get_str(263, "")
    if srt not in ("0", "1", "2"):
        raise RequestError(REJ_UNSUPPORTED_SUBSCRIPTION, f"SubscriptionRequestType (263) {srt!r} is not supported")
    if srt == "2":
        return req_id, srt, Subscription(req_id, (), 0, frozenset())
    depth = msg.get_int(264)
    if depth is None or depth < 0 or depth > max_depth:
        raise RequestError(REJ_UNSUPPORTED_DEPTH,
                           f"MarketDepth (264) {msg.get_str(264)!r} is not supported (0 = full book, 1..{max_depth})")
    update_type = msg.get_str(265, "1")
    if update_type not in ("0", "1"):
        raise RequestError(REJ_UNSUPPORTED_UPDATE_TYPE, f"MDUpdateType (265) {update_type!r} is not supported")
    if msg.get_str(266, "Y") != "Y":
        raise RequestError(REJ_UNSUPPORTED_AGGREGATED, "only aggregated books (266=Y) are published")
    types: list[EntryType] = []
    symbols: list[str] = []
    for tag, value in msg.fields:
        if tag == 269:
            v = value.decode("latin-1")
            if v not in ("0", "1", "2"):
                raise RequestError(REJ_UNSUPPORTED_ENTRY_TYPE,
                                   f"MDEntryType (269) {v!r} is not supported (0 bid, 1 offer, 2 trade)")
            types.append(EntryType(v))
        elif tag == 55:
            symbols.append(value.decode("latin-1"))
    if not types:
        raise RequestError(REJ_UNSUPPORTED_ENTRY_TYPE, "at least one MDEntryType (269) is required")
    if not symbols:
        raise RequestError(REJ_UNKNOWN_SYMBOL, "at least one Symbol (55) is required")
    for s in symbols:
        if not known(s):
            raise RequestError(REJ_UNKNOWN_SYMBOL, f"unknown instrument {s}")
    instruments = tuple(dict.fromkeys(symbols))
    return req_id, srt, Subscription(req_id, instruments, depth, frozenset(types), update_type == "1")


class MarketDataApp(Application):
    """The market-data application for every session of kind ``market_data``."""

    def __init__(
        self,
        units: Callable[[str], Units | None],
        market: MarketData | None = None,
        *,
        backlog: Callable[[Any], int] | None = None,
        disconnect: Callable[[Any, str], None] | None = None,
        queue_limit: int = 2000,
        high_water: int = 256 * 1024,
        max_hold: float = 5.0,
        max_depth: int = 100,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] | None = None,
        wake: Callable[[], None] | None = None,
    ) -> None:
        """``units(symbol)``: the instrument's tick/lot formatting, None for an unknown symbol.
        ``backlog(session)``: its outbound bytes/messages not yet written; ``disconnect(session,
        reason)``: drop it; ``wall()``: epoch seconds for SendingTime of messages sent outside a
        session callback (None: the session's own last ``now``); ``wake()``: called after
        :meth:`on_timer` queued messages (``acceptor.schedule_flush``)."""
        self._wake = wake
        self.units = units
        self._wall = wall
        self.market = market if market is not None else MarketData()
        self._backlog = backlog or (lambda s: int(getattr(s, "outbound_backlog", 0) or 0))
        self._disconnect = disconnect or _default_disconnect
        self.queue_limit = queue_limit
        self.high_water = high_water
        self.max_hold = max_hold
        self.max_depth = max_depth
        self.clock = clock
        self.sessions: dict[int, MDSessionState] = {}
        self.disconnected = 0

    # -- seeding -----------------------------------------------------------------------------
    def seed(self, instrument: str, bids: Iterable[tuple[int, int]], asks: Iterable[tuple[int, int]],
             status: TradingStatus = TradingStatus.OPEN, seq: int = 0) -> None:
        """Load an instrument's current book (at start-up, from the core's ``book_levels``);
        ``seq``: where its RptSeq continues from."""
        book = self.market.book(instrument)
        book.load(bids, asks, seq)
        book.status = status

    # -- Application callbacks ---------------------------------------------------------------
    def on_logon(self, session: Any) -> None:
        self.sessions[id(session)] = MDSessionState(session, queue=ConflatingQueue(self.queue_limit))

    def on_logout(self, session: Any, reason: str = "") -> None:
        self.sessions.pop(id(session), None)

    def from_app(self, session: Any, msg: Message) -> None:
        state = self.sessions.get(id(session))
        if state is None:
            state = self.sessions[id(session)] = MDSessionState(session, queue=ConflatingQueue(self.queue_limit))
        mt = msg.msg_type or ""
        if mt != "V":
            raise BusinessReject(3, "market-data session: only MarketDataRequest (V) is accepted"
                                 if mt in ORDER_MSG_TYPES else f"message type {mt} is not supported here")
        self._request(state, msg)

    def _request(self, state: MDSessionState, msg: Message) -> None:
        session = state.session
        try:
            req_id, srt, sub = parse_request(msg, self._known, self.max_depth)
            if srt == "2":
                if state.subs.pop(req_id, None) is None:
                    raise RequestError(None, f"no subscription with MDReqID {req_id}")
                state.resubscribed()
                return
            if req_id in state.subs:
                raise RequestError(REJ_DUPLICATE_ID, f"MDReqID {req_id} is already subscribed")
        except RequestError as exc:
            fields: list[tuple[int, object]] = [(35, "Y"), (262, msg.get_str(262) or "UNKNOWN")]
            if exc.reason is not None:
                fields.append((281, exc.reason))
            fields.append((58, exc.text))
            self._out(session, Message.build(fields))
            return
        # a fresh snapshot replaces whatever updates are pending for these instruments
        if srt == "1":
            state.subs[req_id] = sub
            state.resubscribed()
        for name in sub.instruments:
            self._out(session, self._snapshot_msg(sub, self.market.book(name).snapshot(sub.depth)))
            state.sent += 1

    def _out(self, session: Any, msg: Message) -> None:
        if self._wall is None:
            session.send_app(msg)
        else:
            session.send_app(msg, now=self._wall())

    def _known(self, symbol: str) -> bool:
        return self.units(symbol) is not None

    # -- core side ---------------------------------------------------------------------------
    def on_core_events(self, events: Iterable[object]) -> list[MDUpdate | StatusUpdate]:
        """Apply a batch of core events, send what each subscription needs; return the updates."""
        updates = self.market.apply_events(events)
        if not updates or not self.sessions:
            return updates
        if any(isinstance(u, StatusUpdate) for u in updates):  # rare: keep the core order exactly
            for state in self.sessions.values():
                keys = state.keys
                state.queue.push(u for u in updates if isinstance(u, StatusUpdate)
                                 or (u.instrument, u.depth) in keys)
        else:
            groups: dict[tuple[str, int], list[MDUpdate]] = {}
            for u in updates:
                key = (u.instrument, u.depth)
                group = groups.get(key)
                if group is None:
                    groups[key] = [u]
                else:
                    group.append(u)
            cache: dict[tuple[int, frozenset[EntryType]], list[tuple[int, bytes]]] = {}
            for state in self.sessions.values():
                keys = state.keys
                if not keys or keys.isdisjoint(groups):
                    continue
                if (not state.queue.pending and not state.queue.stale and state.held_since is None
                        and self._backlog(state.session) <= self.high_water):
                    self._send_groups(state, groups, cache)  # the common case: no copy, no queue
                else:
                    state.queue.push(u for key in keys for u in groups.get(key, ()))
        self.flush()
        return updates

    def on_timer(self) -> None:
        """Call periodically: hands held updates to sessions that caught up; drops the hopeless."""
        sent = sum(st.sent for st in self.sessions.values())
        self.flush()
        if self._wake is not None and sum(st.sent for st in self.sessions.values()) != sent:
            self._wake()

    def flush(self) -> None:
        """Hand queued updates to every session that can take them; drop the hopeless."""
        now = self.clock()
        cache: dict[tuple[int, frozenset[EntryType]], list[tuple[int, bytes]]] = {}
        for state in list(self.sessions.values()):
            if not state.queue.pending and not state.queue.stale:
                state.held_since = None
                continue
            if self._backlog(state.session) > self.high_water:
                if state.held_since is None:
                    state.held_since = now
                elif now - state.held_since > self.max_hold:
                    self._drop(state, f"slow consumer: outbound backlog over {self.high_water} for {self.max_hold}s")
                continue
            state.held_since = None
            self._send(state, cache)

    def _drop(self, state: MDSessionState, reason: str) -> None:
        log.warning("market-data session %s disconnected: %s", getattr(state.session, "key", state.session), reason)
        self.sessions.pop(id(state.session), None)
        self.disconnected += 1
        self._disconnect(state.session, reason)
        if self._wake is not None:
            self._wake()

    def _send(self, state: MDSessionState, cache: dict[tuple[int, frozenset[EntryType]], list[tuple[int, bytes]]],
              ) -> None:
        stale, pending = state.queue.drain()
        session = state.session
        for name in stale:
            for sub in state.subs.values():
                if name in sub.instruments:
                    self._out(session, self._snapshot_msg(sub, self.market.book(name).snapshot(sub.depth)))
                    state.sent += 1
        groups: dict[tuple[str, int], list[MDUpdate]] = {}
        for u in pending:  # book updates and status changes, in core order
            if isinstance(u, StatusUpdate):
                self._send_groups(state, groups, cache)
                groups = {}
                self._out(session, self._status_msg(u))
                state.sent += 1
            else:
                groups.setdefault((u.instrument, u.depth), []).append(u)
        self._send_groups(state, groups, cache)

    def _send_groups(self, state: MDSessionState, groups: dict[tuple[str, int], list[MDUpdate]],
                     cache: dict[tuple[int, frozenset[EntryType]], list[tuple[int, bytes]]]) -> None:
        """One X (or W for 265=0) per subscription and instrument with updates in ``groups``."""
        if not groups:
            return
        session = state.session
        for sub in state.subs.values():
            for name in sub.instruments:
                ups = groups.get((name, sub.depth))
                if not ups:
                    continue
                if not sub.incremental:
                    self._out(session, self._snapshot_msg(sub, self.market.book(name).snapshot(sub.depth)))
                    state.sent += 1
                    continue
                key = (id(ups), sub.entry_types)
                chunks = cache.get(key)
                if chunks is None:
                    chunks = cache[key] = self._chunks([u for u in ups if u.entry in sub.entry_types])
                rid = sub.req_id.encode()
                for n, blob in chunks:
                    # the entries are pre-encoded once for every session: the group travels as the
                    # value of its first tag (279), which the session frames as b"279=" + blob + SOH
                    self._out(session, Message([(35, b"X"), (262, rid), (268, b"%d" % n), (279, blob)]))
                    state.sent += 1

    def _chunks(self, ups: list[MDUpdate]) -> list[tuple[int, bytes]]:
        out = []
        for i in range(0, len(ups), MAX_ENTRIES):
            chunk = ups[i:i + MAX_ENTRIES]
            raw = b"".join(b"".join(b"%d=%s\x01" % (t, str(v).encode()) for t, v in self._entry(u)) for u in chunk)
            out.append((len(chunk), raw[4:-1]))  # without the leading b"279=" and the last SOH
        return out

    # -- messages ----------------------------------------------------------------------------
    def _u(self, name: str) -> Units:
        return self.units(name) or Units()

    def _entry(self, u: MDUpdate) -> list[tuple[int, object]]:
        units = self._u(u.instrument)
        f: list[tuple[int, object]] = [(279, u.action.value), (269, u.entry.value)]
        if u.trade_id is not None:
            f.append((278, u.trade_id))
        f += [(55, u.instrument), (270, units.px(u.price)), (271, units.qty(u.qty)), (273, _time_only(u.ts))]
        if u.entry is not EntryType.TRADE and u.qty:
            f.append((346, u.orders))
        f.append((83, u.seq))
        return f

    def _snapshot_msg(self, sub: Subscription, snap: Snapshot) -> Message:
        units = self._u(snap.instrument)
        entries: list[tuple[int, object]] = []
        n = 0
        if EntryType.BID in sub.entry_types:
            for pos, (p, q) in enumerate(snap.bids, 1):
                entries += [(269, "0"), (270, units.px(p)), (271, units.qty(q)), (290, pos)]
                n += 1
        if EntryType.OFFER in sub.entry_types:
            for pos, (p, q) in enumerate(snap.asks, 1):
                entries += [(269, "1"), (270, units.px(p)), (271, units.qty(q)), (290, pos)]
                n += 1
        if EntryType.TRADE in sub.entry_types and snap.last_trade is not None:
            t = snap.last_trade
            entries += [(269, "2"), (270, units.px(t.price)), (271, units.qty(t.qty))]
            n += 1
        return Message.build([(35, "W"), (262, sub.req_id), (55, snap.instrument), (83, snap.seq),
                              (268, n), *entries])

    def _status_msg(self, u: StatusUpdate) -> Message:
        return Message.build([(35, "h"), (336, u.instrument), (325, "Y"), (340, TRAD_SES_STATUS[u.status]),
                              (58, f"{u.instrument} {u.status.value}")])


def _time_only(ts_ns: int) -> str:
    """MDEntryTime (273), UTCTimeOnly with milliseconds, of the core event's timestamp."""
    secs, ns = divmod(ts_ns, 1_000_000_000)
    return time.strftime("%H:%M:%S", time.gmtime(secs)) + f".{ns // 1_000_000:03d}"


def _default_disconnect(session: Any, reason: str) -> None:
    for name in ("disconnect", "close"):
        fn = getattr(session, name, None)
        if callable(fn):
            fn(reason) if name == "disconnect" else fn()
            return
