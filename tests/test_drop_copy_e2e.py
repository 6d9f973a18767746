"""Drop copy end to end over TCP against the real `venue serve`.

Demo set-up plus one more drop-copy session, DC1, entitled to DEMO1-ACC only; DEMODC is entitled
to both demo accounts. DEMO1 trades DEMO1-ACC, DEMO2 trades DEMO2-ACC.
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from fix.message import Message
from tests.fix_client import FixClient, now_fix
from tests.venue_proc import VenueProcess
from venue import registry
from venue.db import make_engine, sqlite_url

SYMBOL = "BTC-USDT"
HEADER = {8, 9, 10, 34, 43, 49, 52, 56, 97, 122}


@pytest.fixture(scope="module")
def venue(tmp_path_factory):
    v = VenueProcess(tmp_path_factory.mktemp("dc-e2e") / "data").start()  # seeds the demo set-up
    v.stop()

    async def add_dc1() -> None:
        engine = make_engine(sqlite_url(v.data_dir))
        try:
            await registry.create_session(engine, "DC1", firm_id="DEMO", kind="drop_copy",
                                          entitled_accounts=["DEMO1-ACC"], require_signature=False)
        finally:
            await engine.dispose()

    asyncio.run(add_dc1())
    v.start()
    yield v
    if v.alive:
        v.stop()


def _client(venue: VenueProcess, sender: str, reset: bool = True, seq: int = 1) -> FixClient:
    c = FixClient("127.0.0.1", venue.port, sender)
    c.seq = seq
    if sender.startswith("DEMO"):
        key, key_id = venue.key(sender)
        c.logon(key=key, key_id=key_id, reset=reset)
    else:
        c.logon(reset=reset)
    return c


def _collect(c: FixClient, quiet: float = 0.4, limit: float = 15) -> list[Message]:
    """Every application message until nothing arrives for ``quiet`` seconds."""
    out = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        msg = c.recv(quiet)
        if msg is None:
            break
        if msg.msg_type == "1":
            c.send("0", [(112, msg.get_str(112))])
        elif msg.msg_type not in ("0", "4", "A", "5"):
            out.append(msg)
    return out


def _body(msg: Message) -> list[tuple[int, bytes]]:
    return [(t, v) for t, v in msg.fields if t not in HEADER]


def _reports(msgs: list[Message]) -> list[Message]:
    return [m for m in msgs if m.msg_type == "8"]


def _wait(c: FixClient, cl: str, timeout: float = 10) -> None:
    """Until the answer to ``cl`` arrived (every message stays in ``c.received``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = c.recv(max(0.01, deadline - time.monotonic()))
        if msg is None:
            continue
        if msg.msg_type == "1":
            c.send("0", [(112, msg.get_str(112))])
        elif msg.get_str(11) == cl:
            return
    raise AssertionError(f"{c.sender}: no answer to {cl}")


def _order(c: FixClient, cl: str, side: str, qty: str, px: str) -> None:
    c.send("D", [(11, cl), (55, SYMBOL), (54, side), (60, now_fix()), (38, qty), (40, "2"), (44, px), (59, "1")])
    _wait(c, cl)


def _cancel(c: FixClient, cl: str, orig: str, side: str) -> None:
    c.send("F", [(41, orig), (11, cl), (55, SYMBOL), (54, side), (60, now_fix())])
    _wait(c, cl)


def _cancel_all(*clients: FixClient) -> None:
    for c in clients:
        cl = f"CLEAN-{time.monotonic_ns()}"
        c.send("q", [(11, cl), (530, "7"), (60, now_fix())])
        _wait(c, cl)


def _trade(d1: FixClient, d2: FixClient, tag: str) -> None:
    """Resting orders, a partial fill, a full fill, a cancel and a replace on both accounts."""
    _order(d1, f"{tag}-B1", "1", "0.3", "59000")
    _order(d1, f"{tag}-B2", "1", "0.1", "58000")
    _order(d2, f"{tag}-S1", "2", "0.2", "59000")   # fills 0.2 of B1
    _order(d2, f"{tag}-S2", "2", "0.1", "61000")
    _cancel(d1, f"{tag}-C1", f"{tag}-B2", "1")
    d2.send("G", [(41, f"{tag}-S2"), (11, f"{tag}-S2R"), (55, SYMBOL), (54, "2"), (60, now_fix()), (38, "0.2"),
                  (40, "2"), (44, "61500")])
    _wait(d2, f"{tag}-S2R")
    _order(d2, f"{tag}-S3", "2", "0.1", "59000")   # fills the rest of B1
    _cancel_all(d1, d2)


def test_broker_sees_exactly_its_clients_reports_in_core_order_and_no_others(venue):
    dc_all = _client(venue, "DEMODC")
    dc1 = _client(venue, "DC1")
    d1, d2 = _client(venue, "DEMO1"), _client(venue, "DEMO2")
    _trade(d1, d2, "T1")
    _collect(d1)
    _collect(d2)
    r1, r2 = _reports(d1.received), _reports(d2.received)
    got_all, got_1 = _reports(_collect(dc_all)), _reports(_collect(dc1))
    assert {m.get_str(150) for m in r1} >= {"0", "F", "4"} and {m.get_str(150) for m in r2} >= {"0", "F", "5", "4"}
    core_order = sorted(r1 + r2, key=lambda m: int(m.get_str(17)))
    assert [_body(m) for m in got_all] == [_body(m) for m in core_order]
    assert [_body(m) for m in got_1] == [_body(m) for m in r1]
    assert {m.get_str(1) for m in got_1} == {"DEMO1-ACC"}
    for c in (dc_all, dc1, d1, d2):
        c.close()


def test_drop_copy_session_is_read_only(venue):
    dc = _client(venue, "DEMODC")
    dc.send("D", [(11, "DC-ORDER"), (55, SYMBOL), (54, "1"), (60, now_fix()), (38, "0.1"), (40, "2"),
                  (44, "59000"), (59, "1")])
    rej = [m for m in _collect(dc) if m.msg_type == "j"]
    assert rej and rej[0].get_str(372) == "D" and rej[0].get_str(380) == "3" and "read-only" in rej[0].get_str(58)
    dc.close()


def _recover(venue: VenueProcess, expected_in: int, next_out: int) -> list[Message]:
    """Reconnect DC1 without resetting and ask for everything from ``expected_in``."""
    dc1 = _client(venue, "DC1", reset=False, seq=next_out)
    logon = dc1.received[-1]
    assert int(logon.get_str(34)) > expected_in, "nothing was sent while the broker was away"
    dc1.send("2", [(7, expected_in), (16, 0)])
    resent = _reports(_collect(dc1))
    assert all(m.get_str(43) == "Y" for m in resent)
    dc1.close()
    return resent


def _away(venue: VenueProcess) -> tuple[int, int]:
    """DC1 logs on, then drops its connection; returns (next seq it expects, next seq it sends)."""
    dc1 = _client(venue, "DC1")
    _collect(dc1, quiet=0.2)
    expected_in = max(int(m.get_str(34)) for m in dc1.received) + 1
    next_out = dc1.seq
    dc1.sock.shutdown(socket.SHUT_RDWR)
    dc1.close()
    time.sleep(0.2)
    return expected_in, next_out


def test_broker_recovers_a_gap_with_resend_request_after_reconnecting(venue):
    expected_in, next_out = _away(venue)
    d1, d2 = _client(venue, "DEMO1"), _client(venue, "DEMO2")
    _trade(d1, d2, "T2")
    _collect(d1)
    _collect(d2)
    r1 = _reports(d1.received)
    resent = _recover(venue, expected_in, next_out)
    assert [_body(m) for m in resent] == [_body(m) for m in r1] and r1
    d1.close()
    d2.close()


def test_broker_recovers_copies_across_a_venue_restart(venue):
    expected_in, next_out = _away(venue)
    d1, d2 = _client(venue, "DEMO1"), _client(venue, "DEMO2")
    _trade(d1, d2, "T3")
    _collect(d1)
    _collect(d2)
    before = _reports(d1.received)
    d1.close()
    d2.close()
    venue.stop()
    venue.start()
    d1, d2 = _client(venue, "DEMO1"), _client(venue, "DEMO2")
    _trade(d1, d2, "T4")  # while the broker is still away: stored for it by the restarted venue
    _collect(d1)
    _collect(d2)
    after = _reports(d1.received)
    resent = _recover(venue, expected_in, next_out)
    assert [_body(m) for m in resent] == [_body(m) for m in before + after]
    assert {m.get_str(11)[:2] for m in resent} >= {"T3", "T4"}
    d1.close()
    d2.close()
