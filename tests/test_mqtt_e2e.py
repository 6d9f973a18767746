"""The real `venue serve` with the MQTT feed on, against the Mosquitto at 127.0.0.1:1883."""

from __future__ import annotations

import json
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest

from tests.fix_client import now_fix
from tests.venue_proc import VenueProcess
from venue.mqtt_feed import BookFollower

SYMBOL = "BTC-USDT"


@pytest.fixture(scope="module")
def feed_venue(tmp_path_factory):
    prefix = f"test/{uuid.uuid4().hex[:10]}"
    v = VenueProcess(tmp_path_factory.mktemp("mqtt-e2e") / "data",
                     env={"VENUE_MQTT_URL": "mqtt://127.0.0.1:1883", "VENUE_MQTT_TOPIC_PREFIX": prefix}).start()
    yield v, prefix
    if v.alive:
        v.stop()


class Follower:
    """A plain MQTT consumer (paho, no venue code but BookFollower) of one instrument."""

    def __init__(self, prefix: str) -> None:
        self.book = BookFollower()
        self.status: str | None = None
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"e2e-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", 1883)
        self.client.subscribe(f"{prefix}/{SYMBOL}/#", qos=1)
        self.client.loop_start()

    def _on_message(self, _c, _u, msg) -> None:
        payload = json.loads(msg.payload)
        with self.lock:
            if msg.topic.endswith("/book/snapshot"):
                self.book.on_snapshot(payload)
            elif msg.topic.endswith("/book"):
                self.book.on_book(payload)
            elif msg.topic.endswith("/status"):
                self.status = payload["status"]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _md_snapshot(v: VenueProcess) -> tuple[int, dict[str, str], dict[str, str]]:
    md = v.client("DEMOMD", reset=True)
    md.send("V", [(262, "snap"), (263, 0), (264, 0), (267, 2), (269, 0), (269, 1), (146, 1), (55, SYMBOL)])
    w = md.expect("W")
    md.close()
    bids: dict[str, str] = {}
    asks: dict[str, str] = {}
    side = None
    for tag, value in w.fields:
        if tag == 269:
            side = bids if value == b"0" else asks
        elif tag == 270:
            px = value.decode()
        elif tag == 271 and side is not None:
            side[px] = value.decode()
    return int(w.get_str(83)), bids, asks


def test_mqtt_subscriber_book_equals_the_venues_fix_snapshot(feed_venue):
    v, prefix = feed_venue
    traders = [v.client("DEMO1", reset=True), v.client("DEMO2", reset=True)]
    follower = Follower(prefix)
    try:
        for i in range(40):
            c = traders[i % 2]
            side = "1" if i % 2 == 0 else "2"
            px = 59_900 + (i * 7) % 150 if side == "1" else 59_960 + (i * 11) % 150
            c.send("D", [(11, f"MQ{i}"), (55, SYMBOL), (54, side), (60, now_fix()), (38, "0.05"), (40, "2"),
                         (44, px), (59, "1")])
            c.expect("8")
        seq, bids, asks = _md_snapshot(v)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with follower.lock:
                if follower.book.synced and follower.book.seq >= seq:
                    break
            time.sleep(0.05)
        with follower.lock:
            assert follower.book.synced and follower.book.seq == seq
            assert (follower.book.bids, follower.book.asks) == (bids, asks) and bids and asks
            assert follower.status == "open"
    finally:
        follower.close()
        for c in traders:
            c.send("q", [(11, f"CLEAN-{time.monotonic_ns()}"), (530, "7"), (60, now_fix())])
            c.close()
