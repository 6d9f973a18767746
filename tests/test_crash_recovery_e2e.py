"""SIGKILL the real venue mid-stream: everything a client was told is in the journal after restart."""

from __future__ import annotations

import asyncio
import threading
import time

from tests.fix_client import FixClient
from tests.venue_proc import VenueProcess
from venue.core import events as ev
from venue.db import make_engine, sqlite_url
from venue.journal import Journal


def journaled_events(data_dir) -> list:
    async def read() -> list:
        engine = make_engine(sqlite_url(data_dir))
        try:
            return await Journal(engine).events_since(0)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def stream_orders(client: FixClient, side: str, prices: list[str], stop: threading.Event) -> None:
    n = 0
    while not stop.is_set() and n < 5000:
        price = prices[n % len(prices)]
        try:
            client.send("D", [(11, f"{client.sender}-{n}"), (55, "BTC-USDT"), (54, side),
                              (60, "20261125-00:00:00"), (38, "0.001"), (40, "2"), (44, price), (59, "1")])
        except OSError:
            return
        n += 1
        time.sleep(0.025)  # under the demo throttle (50 messages/s)


def collect(client: FixClient, until: float) -> None:
    while time.monotonic() < until:
        if client.recv(0.2) is None and client.sock.fileno() < 0:
            return


def test_sigkill_between_batches_loses_nothing_that_was_acknowledged(tmp_path):
    data = tmp_path / "data"
    v = VenueProcess(data).start()
    buyer, seller = v.client("DEMO1"), v.client("DEMO2")
    stop = threading.Event()
    threads = [
        threading.Thread(target=stream_orders, args=(buyer, "1", ["59990", "60000", "60010"], stop)),
        threading.Thread(target=stream_orders, args=(seller, "2", ["60000", "60010", "60020"], stop)),
    ]
    for t in threads:
        t.start()
    readers = [threading.Thread(target=collect, args=(c, time.monotonic() + 3.0)) for c in (buyer, seller)]
    for r in readers:
        r.start()
    time.sleep(1.5)
    v.kill()  # SIGKILL: no shutdown, no last commit
    stop.set()
    for t in threads + readers:
        t.join(10)

    reports = [m for c in (buyer, seller) for m in c.received if m.msg_type == "8"]
    assert all(m.get_str(17).isdigit() for m in reports), "no order was refused at the edge"
    assert len(reports) > 50, "the clients were told about their orders before the kill"
    fills = [m for m in reports if m.get_str(150) == "F"]
    assert fills, "some orders traded before the kill"

    v2 = VenueProcess(data, port=v.port).start()  # recovery: snapshot + replay
    try:
        by_seq = {e.seq: e for e in journaled_events(data)}
        for m in reports:
            e = by_seq.get(int(m.get_str(17)))
            assert e is not None, f"acknowledged report {m!r} is not in the journal"
            assert str(getattr(e, "order_id", "NONE")) == m.get_str(37)
            assert getattr(e, "cl_ord_id", None) == m.get_str(11)
            if m.get_str(150) == "F":
                assert isinstance(e, ev.OrderFilled) and str(e.trade_id) == m.get_str(880)

        # the recovered books hold exactly the orders the journal says are open
        open_ids: set[int] = set()
        for e in sorted(by_seq.values(), key=lambda e: e.seq):
            if isinstance(e, ev.OrderAccepted) and e.account == "DEMO1-ACC":
                open_ids.add(e.order_id)
            elif isinstance(e, (ev.OrderCancelled, ev.OrderExpired)) or (
                    isinstance(e, ev.OrderFilled) and e.leaves_qty == 0):
                open_ids.discard(e.order_id)
        c = FixClient("127.0.0.1", v2.port, "DEMO1")
        c.seq = buyer.seq
        key, key_id = v2.key("DEMO1")
        c.logon(key=key, key_id=key_id)
        c.settle(1.0)  # orders the venue received but never committed are gap-filled, not lost silently
        c.send("AF", [(584, "after-crash"), (585, "7")])
        listed: set[int] = set()
        while True:
            m = c.expect("8", timeout=10)
            if m.get_str(584) != "after-crash":
                continue
            if m.get_str(37) != "NONE":
                listed.add(int(m.get_str(37)))
            if m.get_str(912) == "Y":
                break
        assert listed == open_ids
        c.close()
    finally:
        v2.stop()
