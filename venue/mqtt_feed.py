"""The MQTT market feed: trades, book changes, top of book and trading status, per instrument.

Off unless a broker URL is configured. The core side calls :meth:`MqttFeed.publish_events`
after each committed batch; it only updates the feed's :class:`~venue.marketdata.MarketData`
and appends to a bounded in-memory queue, so it never blocks. A publisher task (aiomqtt)
drains the queue; when the broker goes away it reconnects with exponential backoff, and on
every (re)connection first republishes a retained snapshot, top of book and status of every
instrument. When the queue overflows, the queued book traffic is dropped and replaced by fresh
snapshots (conflation): subscribers see a sequence jump and resynchronise on the snapshot.

Topic layout (``<prefix>`` defaults to ``venue/v1``; see docs/mqtt-topics.md):

* ``<prefix>/<instrument>/book`` - incrementals: every sequenced entry (levels and trades)
* ``<prefix>/<instrument>/book/snapshot`` - RETAINED full book with its sequence
* ``<prefix>/<instrument>/trades`` - public trades
* ``<prefix>/<instrument>/top`` - RETAINED best bid / best offer
* ``<prefix>/<instrument>/status`` - RETAINED trading status

Payloads are JSON; prices and quantities are decimal strings. ``ts`` is the core's timestamp of the
command that last changed what the message shows; state not changed since the venue started (the
books it rebuilt from the journal, republished retained on connect) carries the wall-clock time it
was published at instead of 0. The feed is an I/O adapter outside the deterministic core, so reading
the clock here is allowed; the core never does.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import aiomqtt

from venue.marketdata import EntryType, MarketData, MarketDataBook, MDUpdate, Snapshot, StatusUpdate, Units

log = logging.getLogger("venue.mqtt")

PUBLISH_BATCH = 200  # messages handed to the client before waiting for their acknowledgements
ACTION_NAMES = {"0": "new", "1": "change", "2": "delete"}
ENTRY_NAMES = {EntryType.BID: "bid", EntryType.OFFER: "offer", EntryType.TRADE: "trade"}
SIDE_NAMES = {"1": "buy", "2": "sell"}


@dataclass(slots=True)
class MqttFeedConfig:
    url: str  # mqtt://host:port
    topic_prefix: str = "venue/v1"
    qos: int = 1
    queue_limit: int = 10_000  # queued publishes before conflating to snapshots
    snapshot_interval: float = 1.0  # seconds between refreshes of a changed retained snapshot
    backoff_initial: float = 0.2
    backoff_max: float = 30.0
    client_id: str = ""

    @property
    def host_port(self) -> tuple[str, int]:
        parsed = urlparse(self.url if "://" in self.url else f"mqtt://{self.url}")
        return parsed.hostname or "127.0.0.1", parsed.port or 1883


@dataclass(slots=True)
class Publish:
    topic: str
    payload: dict[str, Any]
    retain: bool = False


class MqttFeed:
    """Publishes the market to an MQTT broker; ``publish_events`` never blocks the caller."""

    def __init__(
        self,
        config: MqttFeedConfig,
        units: Callable[[str], Units | None] | None = None,
        market_data: MarketData | None = None,
        wall_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.config = config
        self._wall_ns = wall_ns  # ts of state no event has stamped since the start (see module doc)
        self.market = market_data if market_data is not None else MarketData()
        self._units = units or (lambda _name: None)
        self._default_units = Units()
        self._queue: collections.deque[Publish] = collections.deque()
        self._wake = asyncio.Event()
        self._resync = False  # republish every snapshot before the queue
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._snap_seq: dict[str, int] = {}  # seq of the last snapshot queued per instrument
        self._snap_time = time.monotonic()
        self.connected = asyncio.Event()
        self.connects = 0
        self.published = 0
        self.conflations = 0

    @classmethod
    def from_config(cls, mqtt_cfg: dict[str, Any], units: Callable[[str], Units | None] | None = None,
                    market_data: MarketData | None = None) -> MqttFeed | None:
        """The ``[mqtt]`` section -> a feed, or None when no broker URL is configured."""
        url = str(mqtt_cfg.get("url") or "")
        if not url:
            return None
        return cls(MqttFeedConfig(url=url, topic_prefix=str(mqtt_cfg.get("topic_prefix") or "venue/v1")), units,
                   market_data)

    # -- topics and payloads -----------------------------------------------------------------
    def topic(self, instrument: str, *parts: str) -> str:
        return "/".join((self.config.topic_prefix, instrument, *parts))

    def _ts(self, ts: int) -> int:
        """``ts`` of an event, or now for a book that no event has touched since the venue started."""
        return ts or self._wall_ns()

    def _u(self, instrument: str) -> Units:
        return self._units(instrument) or self._default_units

    def _entry(self, u: MDUpdate, units: Units) -> dict[str, Any]:
        d: dict[str, Any] = {"seq": u.seq, "action": ACTION_NAMES[u.action.value], "type": ENTRY_NAMES[u.entry],
                             "price": units.px(u.price), "qty": units.qty(u.qty), "ts": u.ts}
        if u.entry is EntryType.TRADE:
            d["trade_id"] = u.trade_id
            d["aggressor"] = SIDE_NAMES[u.aggressor.value] if u.aggressor is not None else None
        else:
            d["orders"] = u.orders
        return d

    def snapshot_payload(self, snap: Snapshot) -> dict[str, Any]:
        units = self._u(snap.instrument)
        return {
            "instrument": snap.instrument, "seq": snap.seq, "status": snap.status.value, "ts": self._ts(snap.ts),
            "bids": [[units.px(p), units.qty(q)] for p, q in snap.bids],
            "asks": [[units.px(p), units.qty(q)] for p, q in snap.asks],
        }

    def top_payload(self, book: MarketDataBook) -> dict[str, Any]:
        units = self._u(book.instrument)
        bid, ask = book.top()
        return {
            "instrument": book.instrument, "seq": book.seq, "ts": self._ts(book.ts),
            "bid": {"price": units.px(bid[0]), "qty": units.qty(bid[1])} if bid else None,
            "ask": {"price": units.px(ask[0]), "qty": units.qty(ask[1])} if ask else None,
        }

    def _state(self, book: MarketDataBook) -> list[Publish]:
        """Retained state of one instrument: snapshot, top, status."""
        name = book.instrument
        self._snap_seq[name] = book.seq
        return [
            Publish(self.topic(name, "book", "snapshot"), self.snapshot_payload(book.snapshot()), True),
            Publish(self.topic(name, "top"), self.top_payload(book), True),
            Publish(self.topic(name, "status"),
                    {"instrument": name, "status": book.status.value, "ts": self._ts(book.ts)}, True),
        ]

    # -- the core side -----------------------------------------------------------------------
    def publish_events(self, events: Iterable[object]) -> None:
        """Apply a committed batch of core events and queue what it publishes. Never blocks."""
        self.publish_updates(self.market.apply_events(events))

    def publish_updates(self, updates: list[MDUpdate | StatusUpdate]) -> None:
        """Queue already computed updates of ``self.market`` (when the feed shares the FIX
        market-data app's :class:`MarketData`, so both carry literally the same sequence)."""
        if not updates:
            return
        by_inst: dict[str, list[MDUpdate]] = {}
        out: list[Publish] = []
        for u in updates:
            if isinstance(u, StatusUpdate):
                out.append(Publish(self.topic(u.instrument, "status"),
                                   {"instrument": u.instrument, "status": u.status.value, "ts": u.ts}, True))
            elif u.depth == 0:
                by_inst.setdefault(u.instrument, []).append(u)
        for name, ups in by_inst.items():
            units = self._u(name)
            entries = [self._entry(u, units) for u in ups]
            out.append(Publish(self.topic(name, "book"), {"instrument": name, "updates": entries}))
            trades = [e for e in entries if e["type"] == "trade"]
            if trades:
                out.append(Publish(self.topic(name, "trades"), {"instrument": name, "trades": trades}))
            if any(u.entry is not EntryType.TRADE for u in ups):
                out.append(Publish(self.topic(name, "top"), self.top_payload(self.market.books[name]), True))
        now = time.monotonic()
        if now - self._snap_time >= self.config.snapshot_interval:
            self._snap_time = now
            for name, book in self.market.books.items():
                if self._snap_seq.get(name) != book.seq:
                    self._snap_seq[name] = book.seq
                    out.append(Publish(self.topic(name, "book", "snapshot"),
                                       self.snapshot_payload(book.snapshot()), True))
        self._enqueue(out)

    def _enqueue(self, items: list[Publish]) -> None:
        if self._resync:
            return  # everything will be republished from the books
        if len(self._queue) + len(items) > self.config.queue_limit:
            self.conflations += 1
            self._queue.clear()
            self._resync = True
            log.warning("MQTT feed queue over %d: conflating to snapshots", self.config.queue_limit)
        else:
            self._queue.extend(items)
        self._wake.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    # -- the publisher -----------------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        """Start the publisher task (call from the running event loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="mqtt-feed")
        return self._task

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        """Connect, publish, and reconnect with exponential backoff until stopped."""
        host, port = self.config.host_port
        backoff = self.config.backoff_initial
        ident = self.config.client_id or f"venue-feed-{uuid.uuid4().hex[:12]}"
        while not self._stopping:
            try:
                client = aiomqtt.Client(host, port, identifier=ident, keepalive=10, timeout=5,
                                        max_inflight_messages=200)
                client.pending_calls_threshold = 10 * PUBLISH_BATCH  # we pipeline on purpose
                async with client:
                    self.connects += 1
                    backoff = self.config.backoff_initial
                    log.info("MQTT feed connected to %s:%d", host, port)
                    self._resync = True
                    self.connected.set()
                    await self._pump(client)
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                if self._stopping:
                    break
                log.warning("MQTT feed: broker %s:%d unavailable (%s); retrying in %.1fs", host, port, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.config.backoff_max)
        self.connected.clear()

    async def _pump(self, client: aiomqtt.Client) -> None:
        qos = self.config.qos
        while not self._stopping:
            if self._resync:
                self._resync = False
                self._queue.clear()
                batch = [p for book in list(self.market.books.values()) for p in self._state(book)]
            else:
                if not self._queue:
                    batch = self._due_snapshots()
                    if not batch:
                        self._wake.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), self.config.snapshot_interval)
                        continue
                else:
                    batch = [self._queue.popleft() for _ in range(min(len(self._queue), PUBLISH_BATCH))]
            # publish() hands each message to paho synchronously, in order; then wait for the acks
            results = await asyncio.gather(
                *(client.publish(p.topic, json.dumps(p.payload, separators=(",", ":")), qos=qos, retain=p.retain)
                  for p in batch), return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    raise r
            self.published += len(batch)


    def _due_snapshots(self) -> list[Publish]:
        """When idle: refresh the retained snapshot of every instrument that changed since."""
        now = time.monotonic()
        if now - self._snap_time < self.config.snapshot_interval:
            return []
        self._snap_time = now
        out = []
        for name, book in self.market.books.items():
            if self._snap_seq.get(name) != book.seq:
                self._snap_seq[name] = book.seq
                out.append(Publish(self.topic(name, "book", "snapshot"), self.snapshot_payload(book.snapshot()),
                                   True))
        return out


class BookFollower:
    """A feed consumer's book for one instrument, rebuilt from the JSON payloads (reference code).

    Feed it every ``book/snapshot`` and ``book`` payload in arrival order. Until the first
    snapshot, and after a gap, it waits for the next snapshot (``synced`` is False).
    """

    def __init__(self) -> None:
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.seq = 0
        self.synced = False
        self.gaps = 0
        self.trades: list[dict[str, Any]] = []

    def on_snapshot(self, payload: dict[str, Any]) -> None:
        if self.synced and payload["seq"] <= self.seq:
            return  # older than what we hold
        self.bids = {p: q for p, q in payload["bids"]}
        self.asks = {p: q for p, q in payload["asks"]}
        self.seq = payload["seq"]
        self.synced = True

    def on_book(self, payload: dict[str, Any]) -> None:
        for e in payload["updates"]:
            if not self.synced or e["seq"] <= self.seq:
                continue
            if e["seq"] != self.seq + 1:
                self.synced = False
                self.gaps += 1
                continue
            self.seq = e["seq"]
            if e["type"] == "trade":
                self.trades.append(e)
                continue
            side = self.bids if e["type"] == "bid" else self.asks
            if e["action"] == "delete":
                side.pop(e["price"], None)
            else:
                side[e["price"]] = e["qty"]
