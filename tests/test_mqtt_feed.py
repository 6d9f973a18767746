"""The MQTT feed against a real Mosquitto: rebuild the book, retained snapshot, reconnect."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import aiomqtt
import pytest

from tests.test_marketdata import _core_run, _random_events
from venue.core.events import TradingStatusChanged
from venue.core.types import Side, TradingStatus
from venue.marketdata import MarketData, Units
from venue.mqtt_feed import BookFollower, MqttFeed, MqttFeedConfig

BROKER = "mqtt://127.0.0.1:1883"
UNITS = Units("0.5", "0.001")


def _prefix() -> str:
    return f"test/{uuid.uuid4().hex[:10]}"


def _venue_book(feed: MqttFeed, name: str) -> tuple[dict[str, str], dict[str, str]]:
    book = feed.market.books[name]
    return ({UNITS.px(p): UNITS.qty(q) for p, q in book.levels(Side.BUY)},
            {UNITS.px(p): UNITS.qty(q) for p, q in book.levels(Side.SELL)})


class Subscriber:
    """An MQTT consumer following one instrument's book, snapshot first."""

    def __init__(self, host: str, port: int, prefix: str, name: str) -> None:
        self.host, self.port, self.prefix, self.name = host, port, prefix, name
        self.follower = BookFollower()
        self.status: str | None = None
        self.top: dict | None = None
        self.ready = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def run(self) -> None:
        async with aiomqtt.Client(self.host, self.port, identifier=f"sub-{uuid.uuid4().hex[:8]}") as client:
            await client.subscribe(f"{self.prefix}/{self.name}/#", qos=1)
            self.ready.set()
            async for msg in client.messages:
                payload = json.loads(msg.payload)
                topic = str(msg.topic)[len(self.prefix) + len(self.name) + 2:]
                if topic == "book/snapshot":
                    self.follower.on_snapshot(payload)
                elif topic == "book":
                    self.follower.on_book(payload)
                elif topic == "status":
                    self.status = payload["status"]
                elif topic == "top":
                    self.top = payload

    async def __aenter__(self) -> Subscriber:
        self.task = asyncio.create_task(self.run())
        await asyncio.wait_for(self.ready.wait(), 5)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def wait_seq(self, seq: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not (self.follower.synced and self.follower.seq >= seq):
            if time.monotonic() > deadline:
                raise AssertionError(f"subscriber at seq {self.follower.seq} (synced={self.follower.synced}), want {seq}")
            await asyncio.sleep(0.02)


def _feed(prefix: str, url: str = BROKER, **kw: object) -> MqttFeed:
    return MqttFeed(MqttFeedConfig(url=url, topic_prefix=prefix, snapshot_interval=0.2, backoff_initial=0.05,
                                   backoff_max=0.5, **kw), units=lambda _n: UNITS)


def test_subscriber_rebuilds_the_venue_book_after_a_random_core_run() -> None:
    async def main() -> None:
        prefix = _prefix()
        feed = _feed(prefix)
        core, commands = _core_run(13, 5000)
        cmds = list(commands)
        for c in cmds[:1000]:  # a book exists before anyone subscribes
            feed.publish_events(core.process(c))
        feed.start()
        await asyncio.wait_for(feed.connected.wait(), 5)
        async with Subscriber("127.0.0.1", 1883, prefix, "BTC-USD") as sub:
            for i in range(1000, len(cmds), 10):  # batches, as the core commits them
                feed.publish_events(core.process_batch(cmds[i:i + 10]))
                if i % 500 == 0:
                    await asyncio.sleep(0)
            await sub.wait_seq(feed.market.books["BTC-USD"].seq)
            core_bids = {UNITS.px(p): UNITS.qty(q) for p, q, _ in core.book_levels("BTC-USD", Side.BUY)}
            core_asks = {UNITS.px(p): UNITS.qty(q) for p, q, _ in core.book_levels("BTC-USD", Side.SELL)}
            assert sub.follower.bids == core_bids and sub.follower.asks == core_asks and core_bids
            assert sub.follower.gaps == 0 and sub.follower.trades
            assert sub.top is not None
        await feed.stop()

    asyncio.run(main())


def test_late_subscriber_starts_from_the_retained_snapshot() -> None:
    async def main() -> None:
        prefix = _prefix()
        feed = _feed(prefix)
        feed.start()
        await asyncio.wait_for(feed.connected.wait(), 5)
        events = _random_events(random.Random(9), 2000, "ETH-USD")
        for i in range(0, len(events), 20):
            feed.publish_events(events[i:i + 20])
        feed.publish_events([TradingStatusChanged(10_000, 10_000, "ETH-USD", TradingStatus.HALTED)])
        await asyncio.sleep(0.6)  # the idle publisher refreshes the retained snapshot
        async with Subscriber("127.0.0.1", 1883, prefix, "ETH-USD") as sub:
            await sub.wait_seq(feed.market.books["ETH-USD"].seq, timeout=5)
            bids, asks = _venue_book(feed, "ETH-USD")
            assert (sub.follower.bids, sub.follower.asks) == (bids, asks)
            await asyncio.sleep(0.1)
            assert sub.status == "halted"
        await feed.stop()

    asyncio.run(main())


def test_queue_overflow_conflates_to_a_snapshot_and_subscriber_stays_exact() -> None:
    async def main() -> None:
        prefix = _prefix()
        feed = _feed(prefix, queue_limit=50)
        feed.start()
        await asyncio.wait_for(feed.connected.wait(), 5)
        async with Subscriber("127.0.0.1", 1883, prefix, "BTC-USD") as sub:
            events = _random_events(random.Random(2), 5000, "BTC-USD")
            for i in range(0, len(events), 5):  # no await: the publisher cannot keep up
                feed.publish_events(events[i:i + 5])
            assert feed.conflations > 0
            await sub.wait_seq(feed.market.books["BTC-USD"].seq)
            bids, asks = _venue_book(feed, "BTC-USD")
            assert (sub.follower.bids, sub.follower.asks) == (bids, asks)
        await feed.stop()

    asyncio.run(main())


async def _retained(prefix: str, name: str, topics: set[str], timeout: float = 5) -> dict[str, dict]:
    """What a new subscriber receives as retained on these topics of one instrument."""
    got: dict[str, dict] = {}
    async with aiomqtt.Client("127.0.0.1", 1883, identifier=f"ret-{uuid.uuid4().hex[:8]}") as client:
        await client.subscribe(f"{prefix}/{name}/#", qos=1)
        async with asyncio.timeout(timeout):
            async for msg in client.messages:
                topic = str(msg.topic)[len(prefix) + len(name) + 2:]
                if msg.retain and topic in topics:
                    got[topic] = json.loads(msg.payload)
                    if set(got) == topics:
                        return got
    raise AssertionError("unreachable")


RETAINED = {"book/snapshot", "top", "status"}


def test_retained_state_rebuilt_after_a_restart_carries_the_time_it_was_published_not_zero() -> None:
    async def main() -> None:
        prefix = _prefix()
        market = MarketData()
        # as the venue seeds its books at start-up: the core's levels, the journal's sequence, no event yet
        market.book("BTC-USD").load([(200, 5, 1)], [(204, 3, 2)], seq=4321)
        feed = MqttFeed(MqttFeedConfig(url=BROKER, topic_prefix=prefix), units=lambda _n: UNITS, market_data=market)
        before = time.time_ns()
        feed.start()
        await asyncio.wait_for(feed.connected.wait(), 5)
        retained = await _retained(prefix, "BTC-USD", RETAINED)
        after = time.time_ns()
        for topic, payload in retained.items():
            assert before <= payload["ts"] <= after, (topic, payload)
        assert retained["book/snapshot"]["seq"] == 4321 and retained["top"]["bid"] == {"price": "100", "qty": "0.005"}
        await feed.stop()

    asyncio.run(main())


def test_retained_state_changed_by_an_event_carries_that_events_timestamp() -> None:
    async def main() -> None:
        prefix = _prefix()
        feed = _feed(prefix)
        stamp = 1_764_111_111_000_000_000
        feed.publish_events([TradingStatusChanged(1, stamp, "ETH-USD", TradingStatus.HALTED)])
        feed.start()
        await asyncio.wait_for(feed.connected.wait(), 5)
        retained = await _retained(prefix, "ETH-USD", RETAINED)
        assert {topic: p["ts"] for topic, p in retained.items()} == dict.fromkeys(RETAINED, stamp)
        assert retained["status"]["status"] == "halted"
        await feed.stop()

    asyncio.run(main())


def test_no_broker_configured_means_no_feed() -> None:
    assert MqttFeed.from_config({"url": "", "topic_prefix": "venue/v1"}) is None
    feed = MqttFeed.from_config({"url": "mqtt://127.0.0.1:1883", "topic_prefix": "x/y"})
    assert feed is not None and feed.config.host_port == ("127.0.0.1", 1883) and feed.topic("A", "top") == "x/y/A/top"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


def _start_broker(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([MOSQUITTO, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("mosquitto did not start")


@pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto binary not installed")
def test_feed_reconnects_after_the_broker_restarts_and_republishes_state() -> None:
    port = _free_port()
    broker = _start_broker(port)

    async def main() -> None:
        nonlocal broker
        prefix = _prefix()
        feed = _feed(prefix, url=f"mqtt://127.0.0.1:{port}")
        feed.start()
        await asyncio.wait_for(feed.connected.wait(), 5)
        events = _random_events(random.Random(4), 3000, "BTC-USD")
        feed.publish_events(events[:1000])
        await asyncio.sleep(0.2)
        broker.kill()
        broker.wait()
        feed.publish_events(events[1000:2000])  # the core goes on while the broker is away
        await asyncio.sleep(0.5)
        assert not feed.connected.is_set()
        broker = _start_broker(port)  # a fresh broker: no retained messages
        await asyncio.wait_for(feed.connected.wait(), 10)
        assert feed.connects == 2
        feed.publish_events(events[2000:])
        async with Subscriber("127.0.0.1", port, prefix, "BTC-USD") as sub:
            await sub.wait_seq(feed.market.books["BTC-USD"].seq)
            bids, asks = _venue_book(feed, "BTC-USD")
            assert (sub.follower.bids, sub.follower.asks) == (bids, asks)
        await feed.stop()

    try:
        asyncio.run(main())
    finally:
        broker.kill()
        broker.wait()
