"""Issue 12 over real TCP against a real `venue serve`: one order with a 5,000-digit OrderQty used to
pass the FIX edge, fail the journal write and stop the venue for everyone. Now every numeric value
that breaks its bound is refused at the edge with the right reject and a Text naming the field and
the limit, and afterwards the same session and another one still trade (an order acknowledged, a
cross filled on both sides).
"""

from __future__ import annotations

import time

import pytest

from tests.fix_client import FixClient, now_fix
from tests.venue_proc import VenueProcess
from venue.access.signing import signed_logon_fields

HUGE = "9" * 5000


@pytest.fixture(scope="module")
def venue(tmp_path_factory):
    v = VenueProcess(tmp_path_factory.mktemp("edge-bounds") / "data").start()
    yield v
    if v.alive:
        v.stop()


def fields(msg) -> dict[int, str]:
    return {t: v.decode("latin-1") for t, v in msg.fields}


def expect(c: FixClient, msg_type: str, **want: str) -> dict[int, str]:
    f = fields(c.expect(msg_type))
    for name, value in want.items():
        assert f.get(int(name[1:])) == value, f"tag {name[1:]}: expected {value!r} in {f}"
    return f


def nos(cl: str, side: str = "1", qty: str = "0.01", price: str = "60000") -> list[tuple[int, object]]:
    return [(11, cl), (55, "BTC-USDT"), (54, side), (60, now_fix()), (38, qty), (40, "2"), (44, price), (59, "1")]


def still_trades(buyer: FixClient, seller: FixClient, tag: str) -> None:
    """The buyer's order is acknowledged and the seller's crosses it: both get their fill."""
    buyer.send("D", nos(f"{tag}-B", "1", "0.01", "60000"))
    expect(buyer, "8", t150="0", t39="0", t11=f"{tag}-B")
    seller.send("D", nos(f"{tag}-S", "2", "0.01", "60000"))
    expect(seller, "8", t150="0", t11=f"{tag}-S")
    expect(seller, "8", t150="F", t39="2", t11=f"{tag}-S", t32="0.01", t31="60000")
    expect(buyer, "8", t150="F", t39="2", t11=f"{tag}-B", t32="0.01", t31="60000")


def session_reject(c: FixClient, tag: int, *text: str) -> dict[int, str]:
    f = expect(c, "3", t373="6", t371=str(tag))
    for part in text:
        assert part in f[58], f"Text {f[58]!r} does not say {part!r}"
    return f


def test_oversized_numbers_are_refused_at_the_edge_and_the_venue_keeps_trading(venue):
    demo1 = venue.client("DEMO1", reset=True)
    demo1.settle(0.3)

    # the finding: a 5,000-digit OrderQty (then Price, DisplayQty) -> session Reject 6 naming the limit
    demo1.send("D", nos("HUGE-QTY", qty=HUGE))
    f = session_reject(demo1, 38, "OrderQty (38)", "at most 32 characters")
    assert f[45] == str(demo1.seq - 1) and f[372] == "D"
    demo1.send("D", nos("HUGE-PX", price=HUGE))
    session_reject(demo1, 44, "Price (44)", "at most 32 characters")
    demo1.send("D", [*nos("HUGE-DISP"), (1138, HUGE)])
    session_reject(demo1, 1138, "DisplayQty (1138)")

    # a MsgSeqNum of 400 digits: refused, not echoed as RefSeqNum, the expected seqnum unchanged
    demo1.send("D", nos("HUGE-SEQ"), seq=10**400 - 1)
    f = session_reject(demo1, 34, "MsgSeqNum (34)", "at most 18 digits")
    assert 45 not in f

    # well formed and within the dictionary's bounds, but beyond 2**62 lots / ticks: rejected order
    demo1.send("D", nos("BIG-QTY", qty="9" * 30))
    f = expect(demo1, "8", t150="8", t39="8", t11="BIG-QTY", t7001="7", t103="3")
    assert "OrderQty (38)" in f[58] and "4611686018427387904 lots" in f[58]
    demo1.send("D", nos("BIG-PX", price="9" * 32))
    f = expect(demo1, "8", t150="8", t39="8", t11="BIG-PX", t7001="101")
    assert "Price (44)" in f[58] and "4611686018427387904 ticks" in f[58]
    demo1.send("F", [(11, "BIG-ID"), (37, "9" * 19), (41, "BIG-QTY"), (55, "BTC-USDT"), (54, "1"), (60, now_fix())])
    expect(demo1, "9", t11="BIG-ID", t7001="13")  # an OrderID of more than 18 digits is an unknown order
    # a value past 256 characters in any application message is refused, never echoed
    demo1.send("F", [(11, "HUGE-ID"), (37, HUGE), (41, "BIG-QTY"), (55, "BTC-USDT"), (54, "1"), (60, now_fix())])
    f = expect(demo1, "3", t373="5", t371="37", t372="F")
    assert "5000 characters" in f[58] and "at most 256" in f[58]

    # session-level fields: a huge NewSeqNo and EndSeqNo are refused, a huge BeginSeqNo resends nothing
    demo1.send("4", [(123, "Y"), (36, "9" * 19)], seq=demo1.seq)  # a refused SequenceReset keeps its seqnum
    session_reject(demo1, 36, "NewSeqNo (36)")
    demo1.send("2", [(7, "1"), (16, "9" * 19)])
    session_reject(demo1, 16, "EndSeqNo (16)")
    demo1.send("2", [(7, "9" * 18), (16, "0")])
    # a frame whose BodyLength has 5,000 digits is garbled: dropped, the seqnum stays expected
    demo1.sock.sendall(b"8=FIX.4.4\x019=" + HUGE.encode() + b"\x0135=0\x0110=000\x01")

    # the same session and another one still trade
    demo2 = venue.client("DEMO2", reset=True)
    demo2.settle(0.3)
    still_trades(demo1, demo2, "AFTER")

    # a logon with a huge HeartBtInt is closed without harm; the venue still takes logons and orders
    bad = FixClient("127.0.0.1", venue.port, "DEMODC")
    key, key_id = venue.key("DEMODC")
    st = now_fix()
    bad.send("A", [(98, 0), (108, HUGE), (141, "Y"), *signed_logon_fields(key, key_id, "DEMODC", "VENUE", 1, st)],
             sending_time=st)
    assert bad.closed(5.0)
    bad.close()
    still_trades(demo2, demo1, "AGAIN")

    assert venue.alive
    log = "".join(venue.output)
    assert "Batch commit failed" not in log and "Traceback" not in log, log[-3000:]
    demo1.close()
    demo2.close()


def test_a_huge_group_count_on_market_data_is_refused_and_the_session_goes_on(venue):
    md = venue.client("DEMOMD", reset=True)
    md.settle(0.3)
    request = [(262, "R1"), (263, "1"), (264, "1"), (267, "1"), (269, "0"), (146, "1"), (55, "BTC-USDT")]
    md.send("V", [(t, "99999999999" if t == 267 else v) for t, v in request])
    session_reject(md, 267, "NoMDEntryTypes (267)", "signed 32-bit integer")
    md.send("V", [(t, "2147483647" if t == 267 else v) for t, v in request])
    expect(md, "3", t373="16", t371="267")
    md.send("V", request)
    deadline = time.monotonic() + 5
    while True:  # the well-formed request gets its snapshot
        msg = md.expect("W", max(0.1, deadline - time.monotonic()))
        if msg.get_str(262) == "R1":
            break
    md.close()
