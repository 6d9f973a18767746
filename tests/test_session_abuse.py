"""Issue 12, over real TCP against a real `venue serve`: what a logged-on client could do to the
venue without sending a single order.

- Garbled frames and admin messages bypass the order throttle, so they have their own budget per
  session (50 a second): past it the session is logged out with a Text naming the limit, the
  garbled frames are logged a bounded number of times, and another session keeps trading.
- A TestReqID (112) is echoed up to 256 characters; a longer one gets a Reject, not an echo, and
  so does any longer value in an application message (ClOrdID, Account, OrdStatusReqID, MDReqID).
- A SequenceReset to the largest MsgSeqNum does not leave the session stuck rejecting everything:
  once the next expected number would pass the bound, the venue logs it out naming the bound.
- OrderStatusRequest: an OrderID (37) that is present but no OrderID is an unknown order (never a
  fallback to the ClOrdID).
- A BusinessMessageReject (j) from a client is never answered with another one.
"""

from __future__ import annotations

import threading

import pytest

from fix.field_formats import SEQNUM_MAX
from tests.fix_client import FixClient, now_fix
from tests.venue_proc import VenueProcess

GARBLED = b"8=FIX.4.4\x019=20\x0135=0\x0134=999\x0110=000\x01"  # BodyLength and CheckSum both wrong
BUDGET = 50  # garbled frames + admin messages a second (SessionConfig.max_admin_per_second)


@pytest.fixture(scope="module")
def venue(tmp_path_factory):
    v = VenueProcess(tmp_path_factory.mktemp("session-abuse") / "data").start()
    yield v
    if v.alive:
        v.stop()


_open: list[FixClient] = []


@pytest.fixture(autouse=True)
def _close_clients():
    """Every client a test opened is closed after it, whatever happened (the next test logs on)."""
    yield
    while _open:
        _open.pop().close()


def client(venue: VenueProcess, sender: str) -> FixClient:
    for attempt in range(3):  # the venue may not have seen the previous test's close yet
        c = FixClient("127.0.0.1", venue.port, sender)
        _open.append(c)
        key, key_id = venue.key(sender)
        try:
            c.logon(key=key, key_id=key_id, reset=True)
            break
        except AssertionError:
            if attempt == 2:
                raise
    c.settle(0.3)
    return c


def logged_out(c: FixClient, *text: str) -> str:
    """The venue's Logout (its Text returned, checked to contain ``text``), then the close."""
    while True:
        msg = c.recv(10.0)
        assert msg is not None, f"{c.sender}: the venue sent no Logout"
        if msg.msg_type == "5":
            break
    reason = msg.get_str(58) or ""
    for part in text:
        assert part in reason, f"Logout Text {reason!r} does not say {part!r}"
    assert c.closed(10.0), f"{c.sender}: the venue did not close the connection after its Logout"
    return reason


def nos(cl: str) -> list[tuple[int, object]]:
    return [(11, cl), (55, "BTC-USDT"), (54, "1"), (60, now_fix()), (38, "0.01"), (40, "2"), (44, "60000"), (59, "1")]


def test_a_garbled_flood_is_logged_out_its_log_is_bounded_and_others_trade(venue):
    flooder, quiet = client(venue, "DEMO1"), client(venue, "DEMO2")
    log = venue.data_dir / "venue.log"
    before = log.read_bytes().count(b"Garbled message dropped")
    stop = threading.Event()
    sent = [0]

    def flood() -> None:  # batches of 50 garbled frames until the venue hangs up
        while not stop.is_set():
            try:
                flooder.send_raw(GARBLED * 50)
            except OSError:
                return
            sent[0] += 50
            if sent[0] >= 20_000:
                return

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    quiet.send("D", nos("QUIET-1"))  # acknowledged while the flood runs
    ack = quiet.expect("8", 10.0)
    assert (ack.get_str(150), ack.get_str(11)) == ("0", "QUIET-1"), ack.get_str(58)
    logged_out(flooder, "rate limit exceeded", f"{BUDGET} per second")
    stop.set()
    thread.join(10.0)
    assert sent[0] > BUDGET

    # each garbled frame was not logged with its bytes: at most 10 lines for this minute
    quiet.send("1", [(112, "SYNC")])  # the venue has handled all that came before it
    assert quiet.expect("0").get_str(112) == "SYNC"
    assert log.read_bytes().count(b"Garbled message dropped") - before <= 10
    # and the quiet session still trades
    quiet.send("D", nos("QUIET-2"))
    assert quiet.expect("8").get_str(11) == "QUIET-2"
    quiet.close()
    flooder.close()


def test_an_admin_message_flood_is_logged_out(venue):
    flooder = client(venue, "DEMO1")
    flooder.send_raw(b"".join(flooder.frame("0") for _ in range(BUDGET + 10)))
    logged_out(flooder, "Garbled or admin message rate limit exceeded")
    flooder.close()
    # within the budget nothing happens: the next logon trades normally
    again = client(venue, "DEMO1")
    again.send_raw(b"".join(again.frame("0") for _ in range(BUDGET // 2)))
    again.send("D", nos("AFTER-ADMIN"))
    assert again.expect("8").get_str(11) == "AFTER-ADMIN"
    again.close()


def test_a_long_test_req_id_is_rejected_not_echoed(venue):
    c = client(venue, "DEMO2")
    longest = "T" * 256
    c.send("1", [(112, longest)])
    assert c.expect("0").get_str(112) == longest
    c.send("1", [(112, "X" * 20_000)])
    msg = c.recv(5.0)
    assert msg is not None and msg.msg_type == "3", f"expected a Reject, got {msg and msg.msg_type}"
    assert (msg.get_str(373), msg.get_str(371), msg.get_str(45)) == ("5", "112", str(c.seq - 1))
    assert "TestReqID (112)" in (msg.get_str(58) or "") and "256" in (msg.get_str(58) or "")
    c.send("1", [(112, "NEXT")])  # the session goes on, in sequence
    assert c.expect("0").get_str(112) == "NEXT"
    c.close()


@pytest.mark.parametrize(("sender", "msg_type", "tag"), [
    ("DEMO1", "D", 11), ("DEMO1", "D", 1), ("DEMO1", "H", 790), ("DEMOMD", "V", 262),
])
def test_a_long_value_in_an_application_message_is_rejected_not_echoed(venue, sender, msg_type, tag):
    c = client(venue, sender)
    body = {
        "D": nos("LONG-OK"),
        "H": [(11, "LONG-OK"), (55, "BTC-USDT"), (54, "1"), (790, "R1")],
        "V": [(262, "M1"), (263, "0"), (264, "1"), (267, "1"), (269, "0"), (146, "1"), (55, "BTC-USDT")],
    }[msg_type]
    long = "L" * 20_000
    fields = [(t, long if t == tag else v) for t, v in body]
    if tag not in dict(body):
        fields.append((tag, long))
    c.send(msg_type, fields)
    msg = c.recv(5.0)
    while msg is not None and msg.msg_type in ("0", "W", "X"):  # market data may already flow
        msg = c.recv(5.0)
    assert msg is not None and msg.msg_type == "3", f"expected a Reject, got {msg and msg.msg_type}"
    assert (msg.get_str(373), msg.get_str(371), msg.get_str(372)) == ("5", str(tag), msg_type)
    assert "20000 characters" in (msg.get_str(58) or "") and "at most 256" in (msg.get_str(58) or "")
    assert all(len(v) < 300 for _, v in msg.fields)  # nothing echoed at length
    c.send("1", [(112, "NEXT")])  # the session goes on, in sequence
    assert c.expect("0").get_str(112) == "NEXT"


def test_a_session_at_the_seqnum_bound_is_logged_out_naming_it(venue):
    c = client(venue, "DEMOMD")
    c.send("4", [(123, "Y"), (36, SEQNUM_MAX)])
    c.seq = SEQNUM_MAX
    c.send("0")  # 34=999999999999999999: accepted, and nothing can follow it
    logged_out(c, "MsgSeqNum reached its bound", str(SEQNUM_MAX), "141=Y")
    c.close()
    # the way out it names: a logon with ResetSeqNumFlag=Y
    again = client(venue, "DEMOMD")
    again.send("1", [(112, "BACK")])
    assert again.expect("0").get_str(112) == "BACK"
    again.close()


@pytest.mark.parametrize("order_id", ["-1", "+1", "1e5", "0x10", "0", "\u00b2", "9" * 19, " 1"])
def test_order_status_with_an_invalid_order_id_is_an_unknown_order(venue, order_id):
    c = client(venue, "DEMO1")
    cl = "ST-" + order_id.encode().hex()[:30]
    c.send("D", nos(cl))
    ack = c.expect("8")
    assert ack.get_str(11) == cl and ack.get_str(150) == "0"
    status = [(11, cl), (55, "BTC-USDT"), (54, "1")]
    c.send("H", [*status, (37, ack.get_str(37))])  # the real OrderID finds it
    found = c.expect("8")
    assert (found.get_str(150), found.get_str(39), found.get_str(11)) == ("I", "0", cl)
    c.send("H", [*status, (37, order_id)])  # 37 is used instead of 11: no such order
    unknown = c.expect("8")
    assert (unknown.get_str(150), unknown.get_str(39), unknown.get_str(7001)) == ("I", "8", "13")
    assert unknown.get_str(58) == "unknown order"
    c.close()


@pytest.mark.parametrize("sender", ["DEMO1", "DEMOMD", "DEMODC"])
def test_a_business_message_reject_is_never_answered_with_one(venue, sender):
    c = client(venue, sender)
    c.send("j", [(45, 1), (372, "8"), (380, 0), (58, "your report puzzles me")])
    c.send("1", [(112, "AFTER-J")])
    first = c.recv(5.0)
    while first is not None and first.msg_type == "0" and first.get_str(112) != "AFTER-J":
        first = c.recv(5.0)  # a heartbeat of the venue's own
    assert first is not None and first.msg_type == "0", f"{sender}: the j was answered: {first!r}"
    assert first.get_str(112) == "AFTER-J"  # answered in sequence: the j's MsgSeqNum counted
    c.close()


def test_the_admin_budget_is_a_venue_setting(tmp_path):
    """`fix.max_admin_per_second` (here through its VENUE_FIX_ variable) sets the budget."""
    v = VenueProcess(tmp_path / "data", env={"VENUE_FIX_MAX_ADMIN_PER_SECOND": "5"}).start()
    try:
        flooder = client(v, "DEMO1")
        flooder.send_raw(b"".join(flooder.frame("0") for _ in range(10)))  # well within the default 50
        assert "(5 per second)" in logged_out(flooder, "Garbled or admin message rate limit exceeded")
    finally:
        v.stop()
