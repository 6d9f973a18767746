"""Order entry end to end over TCP against the real `venue serve`: every message type the venue
takes, every reject path, commission, cancel-on-disconnect, throttles, and the exported dictionary.

One venue process serves the whole module; every test logs its clients on with
ResetSeqNumFlag=Y (except where it shows sequence recovery), cancels what it left open, and every
message any client received is checked against the venue dictionary and against the file written
by ``venue dictionary export`` alone.  Set ``VENUE_E2E_TRANSCRIPT=FILE`` to write every message
sent and received (| for SOH), which is where docs/rules-of-engagement.md's examples come from.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from fix.dictionary import DataDictionary
from fix.message import Message
from tests.fix_client import FixClient
from tests.venue_proc import VenueProcess
from tools.cli import main as venue_cli
from tools.wiring import dictionary_paths
from venue import operator
from venue.db import make_engine, sqlite_url

TRANSCRIPT: list[str] = []


# ---------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def venue(tmp_path_factory):
    v = VenueProcess(tmp_path_factory.mktemp("order-entry") / "data").start()
    yield v
    if v.alive:
        v.stop()
    if path := os.environ.get("VENUE_E2E_TRANSCRIPT"):
        Path(path).write_text("\n".join(TRANSCRIPT) + "\n")


@pytest.fixture(scope="module")
def dictionary() -> DataDictionary:
    return DataDictionary.load(*dictionary_paths())


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("dictionary") / "venue-FIX44.xml"
    res = CliRunner().invoke(venue_cli, ["dictionary", "export", str(path)])
    assert res.exit_code == 0, res.output
    return path


@pytest.fixture(scope="module")
def exported_dictionary(exported) -> DataDictionary:
    return DataDictionary.load(exported)


class Tap:
    """A socket stand-in that records every byte sent and received (for the transcript)."""

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock, self.name = sock, name

    def sendall(self, data: bytes) -> None:
        TRANSCRIPT.append(f"{self.name} -> VENUE  {data.decode('latin-1').replace(chr(1), '|')}")
        self.sock.sendall(data)

    def recv(self, n: int) -> bytes:
        data = self.sock.recv(n)
        if data:
            TRANSCRIPT.append(f"VENUE -> {self.name}  {data.decode('latin-1').replace(chr(1), '|')}")
        return data

    def settimeout(self, t: float | None) -> None:
        self.sock.settimeout(t)

    def close(self) -> None:
        self.sock.close()


class Clients:
    """Opens logged-on clients; at the end cancels what they left open and validates all they got."""

    def __init__(self, venue: VenueProcess) -> None:
        self.venue = venue
        self.all: list[FixClient] = []

    def open(self, sender: str, *, reset: bool = True, seq: int = 1) -> FixClient:
        c = self.venue.client(sender, logon=False)
        c.sock = Tap(c.sock, sender)
        c.seq = seq
        key, key_id = self.venue.key(sender)
        c.logon(key=key, key_id=key_id, reset=reset)
        self.all.append(c)
        return c

    def cleanup(self) -> None:
        for c in self.all:
            if c.sender in ("DEMO1", "DEMO2"):
                try:
                    c.send("q", [(11, f"CLEAN-{time.monotonic_ns()}"), (530, "7"), (60, now())])
                    drain(c, "r")
                except (AssertionError, OSError):
                    pass  # clean-up of a session a test already logged out
            c.close()


@pytest.fixture
def clients(venue, dictionary, exported_dictionary):
    cs = Clients(venue)
    yield cs
    cs.cleanup()
    for c in cs.all:
        for msg in c.received:
            assert dictionary.validate(msg) is None, f"invalid against the venue dictionary: {msg!r}"
            assert exported_dictionary.validate(msg) is None, f"invalid against the exported file: {msg!r}"


# ---------------------------------------------------------------------------------------- helpers


def now() -> str:
    from tests.fix_client import now_fix

    return now_fix()


def fields(msg: Message) -> dict[int, str]:
    return {t: v.decode() for t, v in msg.fields}


def expect(c: FixClient, msg_type: str, **want: str) -> dict[int, str]:
    f = fields(c.expect(msg_type))
    for name, value in want.items():
        tag = int(name[1:])
        assert f.get(tag) == value, f"tag {tag}: expected {value!r}, got {f.get(tag)!r} in {f}"
    return f


def drain(c: FixClient, msg_type: str, timeout: float = 5.0) -> dict[int, str]:
    """Skip ExecutionReports and other application messages until one of ``msg_type``."""
    deadline = time.monotonic() + timeout
    while True:
        msg = c.recv(max(0.0, deadline - time.monotonic()))
        if msg is None:
            raise AssertionError(f"{c.sender}: no {msg_type}")
        if msg.msg_type == "1":
            c.send("0", [(112, msg.get_str(112))])
        elif msg.msg_type == msg_type:
            return fields(msg)


def nos(cl: str, side: str, qty: str, price: str | None, symbol: str = "BTC-USDT", tif: str = "1",
        **extra: object) -> list[tuple[int, object]]:
    f: list[tuple[int, object]] = [(11, cl), (55, symbol), (54, side), (60, now()), (38, qty)]
    f += [(40, "2"), (44, price)] if price is not None else [(40, "1")]
    f.append((59, tif))
    f += [(int(k[1:]), v) for k, v in extra.items()]  # t1="ACC" -> (1, "ACC")
    return f


def place(c: FixClient, cl: str, side: str, qty: str, price: str, symbol: str = "BTC-USDT",
          tif: str = "1", **extra: object) -> dict[int, str]:
    c.send("D", nos(cl, side, qty, price, symbol, tif, **extra))
    return expect(c, "8", t150="0", t39="0", t11=cl)


def rejected(c: FixClient, code: int, reason: str, text: str, **want: str) -> dict[int, str]:
    """The next ExecutionReport is a reject with this VenueErrorCode, OrdRejReason and Text."""
    f = expect(c, "8", t150="8", t39="8", t7001=str(code), t103=reason, **want)
    assert text in f[58], f"Text {f[58]!r} does not say {text!r}"
    return f


def cancel_rejected(c: FixClient, code: int, reason: str, text: str, **want: str) -> dict[int, str]:
    f = expect(c, "9", t7001=str(code), t102=reason, **want)
    assert text in f[58], f"Text {f[58]!r} does not say {text!r}"
    return f


def cli(venue: VenueProcess, *args: str) -> str:
    res = CliRunner().invoke(venue_cli, [*args, "--data-dir", str(venue.data_dir), "--actor", "e2e"])
    assert res.exit_code == 0, res.output
    return res.output


def balances(venue: VenueProcess, account: str) -> dict[str, dict[str, Decimal]]:
    """The running venue's ledger balances of ``account`` (an operator request, like the CLI's)."""

    async def ask() -> dict:
        engine = make_engine(sqlite_url(venue.data_dir))
        try:
            rid = await operator.submit(engine, "balances", {"account": account}, "e2e")
            return await operator.wait(engine, rid, 10)
        finally:
            await engine.dispose()

    res = asyncio.run(ask())
    return {a: {k: Decimal(v) for k, v in b.items()} for a, b in res["balances"].items()}


def last_seq(c: FixClient) -> int:
    return max(int(m.get_str(34)) for m in c.received)


# ------------------------------------------------------------------------------- message types


def test_new_order_single_is_acknowledged_with_every_report_field(clients):
    c = clients.open("DEMO1")
    c.send("D", nos("NEW-1", "1", "0.25", "57000.5"))
    f = expect(c, "8", t150="0", t39="0", t11="NEW-1", t1="DEMO1-ACC", t55="BTC-USDT", t54="1", t38="0.25",
               t44="57000.5", t40="2", t59="1", t151="0.25", t14="0", t6="0")
    assert f[37].isdigit() and f[17] and f[60]


def test_order_cancel_request_gives_a_cancelled_report_with_orig_cl_ord_id(clients):
    c = clients.open("DEMO1")
    new = place(c, "CXL-O", "1", "0.1", "57001")
    c.send("F", [(41, "CXL-O"), (11, "CXL-1"), (55, "BTC-USDT"), (54, "1"), (60, now())])
    expect(c, "8", t150="4", t39="4", t11="CXL-1", t41="CXL-O", t37=new[37], t151="0", t14="0")


def test_replace_lowering_only_quantity_keeps_priority(clients):
    buyer, seller = clients.open("DEMO1"), clients.open("DEMO2")
    place(buyer, "PRIO-A", "1", "0.3", "59000")
    place(buyer, "PRIO-B", "1", "0.3", "59000")
    buyer.send("G", [(41, "PRIO-A"), (11, "PRIO-A2"), (55, "BTC-USDT"), (54, "1"), (60, now()), (38, "0.2"),
                     (40, "2"), (44, "59000")])
    expect(buyer, "8", t150="5", t39="0", t11="PRIO-A2", t41="PRIO-A", t38="0.2", t151="0.2", t44="59000")
    place(seller, "PRIO-S", "2", "0.1", "59000")
    fill = expect(buyer, "8", t150="F", t32="0.1", t31="59000")
    assert fill[11] == "PRIO-A2", "the order whose quantity only went down is still first in the queue"


def test_replace_raising_quantity_loses_priority(clients):
    buyer, seller = clients.open("DEMO1"), clients.open("DEMO2")
    place(buyer, "LOSE-A", "1", "0.3", "58900")
    place(buyer, "LOSE-B", "1", "0.3", "58900")
    buyer.send("G", [(41, "LOSE-A"), (11, "LOSE-A2"), (55, "BTC-USDT"), (54, "1"), (60, now()), (38, "0.4"),
                     (40, "2"), (44, "58900")])
    expect(buyer, "8", t150="5", t39="0", t11="LOSE-A2", t38="0.4", t151="0.4")
    place(seller, "LOSE-S", "2", "0.1", "58900")
    fill = expect(buyer, "8", t150="F", t32="0.1", t31="58900")
    assert fill[11] == "LOSE-B", "a larger order goes to the back of the queue"


def test_replace_changing_price_loses_priority(clients):
    buyer, seller = clients.open("DEMO1"), clients.open("DEMO2")
    place(buyer, "PX-A", "1", "0.3", "58800")
    place(buyer, "PX-B", "1", "0.3", "58800")
    buyer.send("G", [(41, "PX-A"), (11, "PX-A2"), (55, "BTC-USDT"), (54, "1"), (60, now()), (38, "0.3"),
                     (40, "2"), (44, "58799")])
    expect(buyer, "8", t150="5", t11="PX-A2", t44="58799")
    buyer.send("G", [(41, "PX-A2"), (11, "PX-A3"), (55, "BTC-USDT"), (54, "1"), (60, now()), (38, "0.3"),
                     (40, "2"), (44, "58800")])
    expect(buyer, "8", t150="5", t11="PX-A3", t44="58800")
    place(seller, "PX-S", "2", "0.1", "58800")
    fill = expect(buyer, "8", t150="F", t32="0.1")
    assert fill[11] == "PX-B", "a re-priced order joins the back of its new level"


def test_order_status_request_reports_the_order_with_exec_type_i(clients):
    c = clients.open("DEMO1")
    new = place(c, "STAT-1", "2", "0.5", "62000")
    c.send("H", [(11, "STAT-1"), (55, "BTC-USDT"), (54, "2"), (790, "REQ-7")])
    expect(c, "8", t150="I", t39="0", t37=new[37], t11="STAT-1", t151="0.5", t14="0", t44="62000", t790="REQ-7")


def test_order_mass_cancel_request_reports_how_many_orders_it_cancelled(clients):
    c = clients.open("DEMO1")
    for i in range(3):
        place(c, f"MC-{i}", "1", "0.01", f"{55000 + i}")
    place(c, "MC-ETH", "1", "0.1", "2800", "ETH-USDT")
    c.send("q", [(11, "MC-REQ"), (530, "1"), (55, "BTC-USDT"), (60, now())])
    got = [fields(c.recv()) for _ in range(4)]  # the report and the 3 cancels, in any order
    report = next(f for f in got if f[35] == "r")
    assert (report[11], report[530], report[531], report[533], report[55]) == ("MC-REQ", "1", "1", "3", "BTC-USDT")
    cancels = [f for f in got if f[35] == "8"]
    assert all(f[150] == "4" for f in cancels)
    assert sorted(f[41] for f in cancels) == ["MC-0", "MC-1", "MC-2"]
    c.send("H", [(11, "MC-ETH"), (55, "ETH-USDT"), (54, "1")])
    expect(c, "8", t150="I", t39="0")  # the other instrument's order is still open


def test_order_mass_status_request_sends_one_report_per_open_order_and_flags_the_last(clients):
    c = clients.open("DEMO1")
    ids = [place(c, f"MS-{i}", "2", "0.01", f"{62100 + i}")[37] for i in range(3)]
    c.send("AF", [(584, "MS-REQ"), (585, "7")])
    reports = [expect(c, "8", t150="I", t584="MS-REQ", t911="3") for _ in range(3)]
    assert [r[37] for r in reports] == ids
    assert [r[912] for r in reports] == ["N", "N", "Y"]


def test_order_mass_status_request_with_no_open_orders_sends_one_empty_last_report(clients):
    c = clients.open("DEMO2")
    c.send("AF", [(584, "MS-NONE"), (585, "7")])
    f = expect(c, "8", t150="I", t37="NONE", t584="MS-NONE", t911="0", t912="Y")
    assert "no open orders" in f[58]


def test_security_list_gives_each_instrument_tick_lot_limits_and_status(clients):
    c = clients.open("DEMO1")
    c.send("x", [(320, "SL-1"), (559, "4")])
    msg = c.expect("y")
    f = fields(msg)
    assert f[320] == "SL-1" and f[560] == "0"
    groups: dict[str, dict[int, str]] = {}
    current: dict[int, str] | None = None
    for tag, value in msg.fields:
        if tag == 55:
            current = groups.setdefault(value.decode(), {})
        elif current is not None and tag in (15, 561, 562, 969, 7004, 7005, 7006):
            current[tag] = value.decode()
    assert int(f[146]) == len(groups) >= 2
    assert groups["BTC-USDT"][969] == "0.01" and groups["BTC-USDT"][561] == "0.0001"
    assert groups["ETH-USDT"][969] == "0.01" and groups["ETH-USDT"][561] == "0.001"
    for g in groups.values():
        assert g[7006] == "17" and g[15] and Decimal(g[7004]) > 0 and Decimal(g[562]) > 0 and 7005 in g


def test_unsupported_message_type_gets_business_message_reject_3(clients):
    c = clients.open("DEMO1")
    c.send("c", [(320, "SD-1"), (321, "3")])
    f = expect(c, "j", t380="3", t372="c", t7001="105", t379="SD-1")
    assert "Unsupported" in f[58]


# ------------------------------------------------------------------------------- reject paths


def test_insufficient_balance_is_rejected_with_code_14(venue, clients):
    c = clients.open("DEMO1")
    available = balances(venue, "DEMO1-ACC")["USDT"]["available"]
    keep = Decimal("100000")
    cli(venue, "account", "withdraw", "DEMO1-ACC", "USDT", str(available - keep))
    try:
        c.send("D", nos("POOR-1", "1", "2", "60000"))
        rejected(c, 14, "3", "available", t11="POOR-1", t1="DEMO1-ACC")
    finally:
        cli(venue, "account", "deposit", "DEMO1-ACC", "USDT", str(available - keep))
    place(c, "RICH-1", "1", "2", "55000")


def test_order_over_the_kyc_tier_notional_limit_is_rejected_with_code_18(clients):
    c = clients.open("DEMO1")
    c.send("D", nos("KYC-1", "1", "20", "60000"))  # 1,200,000 USDT > tier 1's 1,000,000 per order
    rejected(c, 18, "3", "exceeds", t11="KYC-1")


def test_price_off_the_tick_is_rejected_with_code_4(clients):
    c = clients.open("DEMO1")
    c.send("D", nos("TICK-1", "1", "0.1", "60000.005"))
    rejected(c, 4, "99", "tick", t11="TICK-1", t1="DEMO1-ACC")


def test_quantity_off_the_lot_is_rejected_with_code_5(clients):
    c = clients.open("DEMO1")
    c.send("D", nos("LOT-1", "1", "0.00005", "60000"))
    rejected(c, 5, "13", "lot", t11="LOT-1")


def test_price_outside_the_band_is_rejected_with_code_9(clients):
    c = clients.open("DEMO1")
    c.send("D", nos("BAND-1", "2", "0.1", "70000"))
    rejected(c, 9, "99", "band", t11="BAND-1")


def test_unknown_instrument_is_rejected_with_code_1(clients):
    c = clients.open("DEMO1")
    c.send("D", nos("UNK-1", "1", "1", "1", symbol="DOGE-USDT"))
    rejected(c, 1, "1", "unknown instrument", t11="UNK-1", t55="DOGE-USDT")


def test_halted_instrument_rejects_new_orders_but_still_cancels(venue, clients):
    c = clients.open("DEMO1")
    place(c, "HALT-O", "1", "0.1", "2900", "ETH-USDT")
    cli(venue, "instrument", "status", "ETH-USDT", "halted")
    try:
        c.send("D", nos("HALT-1", "1", "0.1", "2900", "ETH-USDT"))
        rejected(c, 2, "2", "halted", t11="HALT-1")
        c.send("F", [(41, "HALT-O"), (11, "HALT-C"), (55, "ETH-USDT"), (54, "1"), (60, now())])
        expect(c, "8", t150="4", t41="HALT-O")
    finally:
        cli(venue, "instrument", "status", "ETH-USDT", "open")
    place(c, "HALT-2", "1", "0.1", "2900", "ETH-USDT")


def test_kill_switch_cancels_open_orders_and_rejects_new_ones_until_lifted(venue, clients):
    c = clients.open("DEMO1")
    new = place(c, "KILL-O", "1", "0.1", "56000")
    cli(venue, "account", "kill-switch", "DEMO1-ACC", "on")
    try:
        expect(c, "8", t150="4", t39="4", t37=new[37])
        c.send("D", nos("KILL-1", "1", "0.1", "56000"))
        rejected(c, 15, "0", "kill switch", t11="KILL-1")
    finally:
        cli(venue, "account", "kill-switch", "DEMO1-ACC", "off")
    place(c, "KILL-2", "1", "0.1", "56000")


def test_account_of_another_session_is_not_entitled(clients):
    c = clients.open("DEMO1")
    c.send("D", nos("ENT-1", "1", "0.1", "60000", t1="DEMO2-ACC"))
    rejected(c, 16, "15", "not entitled", t11="ENT-1", t1="DEMO2-ACC")


def test_duplicate_cl_ord_id_is_rejected_with_code_12(clients):
    c = clients.open("DEMO1")
    place(c, "DUP-1", "1", "0.1", "56100")
    c.send("D", nos("DUP-1", "1", "0.1", "56100"))
    rejected(c, 12, "6", "duplicate", t11="DUP-1")


def test_cancel_of_an_unknown_order_gets_order_cancel_reject_1(clients):
    c = clients.open("DEMO1")
    c.send("F", [(41, "NEVER-SENT"), (11, "CXL-UNK"), (55, "BTC-USDT"), (54, "1"), (60, now())])
    cancel_rejected(c, 13, "1", "unknown order", t11="CXL-UNK", t41="NEVER-SENT", t434="1")


def test_burst_past_the_bucket_is_rejected_with_code_17(clients):
    c = clients.open("DEMO1")
    burst = b"".join(_encoded(c, "D", nos(f"BURST-{i}", "2", "0.001", "70000")) for i in range(150))
    c.sock.sendall(burst)
    reports = [expect(c, "8", t150="8") for _ in range(150)]
    code = {f[11]: f[7001] for f in reports}
    assert [code[f"BURST-{i}"] for i in range(100)] == ["9"] * 100, \
        "within the burst they reach the core (and are refused there: outside the band)"
    throttled = [f for f in reports if f[7001] == "17"]
    assert throttled, "past the burst of 100, messages are throttled"
    assert all(f[103] == "99" and "throttled" in f[58] for f in throttled)


def test_a_flooding_session_is_logged_out_while_another_keeps_trading(clients):
    flooder, other = clients.open("DEMO2"), clients.open("DEMO1")
    flood = b"".join(_encoded(flooder, "D", nos(f"FLOOD-{i}", "2", "0.001", "70000")) for i in range(400))
    flooder.sock.sendall(flood)
    t0 = time.monotonic()
    place(other, "CALM-1", "1", "0.01", "57500")
    other.send("F", [(41, "CALM-1"), (11, "CALM-C"), (55, "BTC-USDT"), (54, "1"), (60, now())])
    expect(other, "8", t150="4", t41="CALM-1")
    assert time.monotonic() - t0 < 5
    logout = drain(flooder, "5", timeout=10)
    assert "Throttle" in logout.get(58, "")
    assert flooder.closed(10)
    got = [fields(m).get(7001) for m in flooder.received if m.msg_type == "8"]
    assert "17" in got and len(got) < 400


def _encoded(c: FixClient, msg_type: str, body: list[tuple[int, object]]) -> bytes:
    """The bytes FixClient.send would write (to send many messages in one write)."""
    from fix.message import encode

    head = [(35, msg_type), (49, c.sender), (56, c.target), (34, c.seq), (52, now())]
    c.seq += 1
    return encode(Message.build(head + body).fields)


# ------------------------------------------------------------------------------ cancel-on-disconnect


def test_dropped_connection_cancels_day_orders_reported_by_resend_and_drop_copy(venue, clients):
    dc = clients.open("DEMODC")
    c = clients.open("DEMO1")
    day = place(c, "COD-DAY", "1", "0.1", "56500", tif="0")
    gtc = place(c, "COD-GTC", "1", "0.1", "56400", tif="1")
    expected_in, next_out = last_seq(c) + 1, c.seq
    c.sock.sock.shutdown(socket.SHUT_RDWR)
    c.close()
    copy = None
    deadline = time.monotonic() + 10
    while copy is None or copy.get(37) != day[37]:
        assert time.monotonic() < deadline, "drop copy never saw the cancel"
        copy = drain(dc, "8")
        if copy.get(150) != "4":
            copy = None
    assert copy[1] == "DEMO1-ACC" and "cancel_on_disconnect" in copy[58]
    c2 = clients.open("DEMO1", reset=False, seq=next_out)
    assert last_seq(c2) > expected_in - 1, "the venue sent something while the client was away"
    c2.send("2", [(7, expected_in), (16, 0)])
    resent = drain(c2, "8")
    while resent.get(150) != "4":
        resent = drain(c2, "8")
    assert resent[37] == day[37] and resent[43] == "Y" and resent[39] == "4"
    c2.send("H", [(11, "COD-GTC"), (55, "BTC-USDT"), (54, "1")])
    status = drain(c2, "8")
    while status.get(150) != "I":
        status = drain(c2, "8")
    assert status[37] == gtc[37] and status[39] == "0", "the GTC order is spared"


# ------------------------------------------------------------------------------------ commission


def test_fill_reports_carry_the_commission_the_ledger_booked(venue, clients):
    maker, taker = clients.open("DEMO1"), clients.open("DEMO2")
    before = {a: balances(venue, a)["USDT"]["total"] for a in ("DEMO1-ACC", "DEMO2-ACC")}
    place(maker, "FEE-M", "2", "0.1", "60000.01")
    place(taker, "FEE-T", "1", "0.1", "60000.01")
    t = expect(taker, "8", t150="F", t39="2", t13="3", t1057="Y")
    m = expect(maker, "8", t150="F", t39="2", t13="3", t1057="N")
    assert t[880] == m[880]
    after = {a: balances(venue, a)["USDT"]["total"] for a in ("DEMO1-ACC", "DEMO2-ACC")}
    notional = Decimal("0.1") * Decimal("60000.01")
    assert after["DEMO2-ACC"] - before["DEMO2-ACC"] == -(notional + Decimal(t[12])), "the buyer paid notional + fee"
    assert after["DEMO1-ACC"] - before["DEMO1-ACC"] == notional - Decimal(m[12]), "the seller got notional - fee"
    assert Decimal(t[12]) > Decimal(m[12]) > 0, "the taker pays more than the maker"


def test_resting_side_fill_report_is_stamped_when_sent_not_before_the_trade(clients):
    maker, taker = clients.open("DEMO1"), clients.open("DEMO2")
    place(maker, "TS-M", "2", "0.01", "60000.03")
    time.sleep(0.1)  # the maker's session has seen nothing since: its SendingTime must still be current
    place(taker, "TS-T", "1", "0.01", "60000.03")
    fill = expect(maker, "8", t150="F", t11="TS-M")
    assert fill[52] >= fill[60], f"SendingTime {fill[52]} is before TransactTime {fill[60]}"


# ------------------------------------------------------------------------- the exported dictionary


def test_exported_dictionary_loads_standalone_and_validates_every_kind_of_message_sent(clients,
                                                                                      exported_dictionary):
    assert {"8", "9", "j", "r", "y", "A", "5", "0", "3"} <= set(exported_dictionary.msg_types())
    buyer, seller = clients.open("DEMO1"), clients.open("DEMO2")
    place(buyer, "DD-B", "1", "0.01", "60000.02")
    place(seller, "DD-S", "2", "0.01", "60000.02")
    expect(seller, "8", t150="F")
    expect(buyer, "8", t150="F")
    place(buyer, "DD-R", "1", "0.01", "55500")
    buyer.send("G", [(41, "DD-R"), (11, "DD-R2"), (55, "BTC-USDT"), (54, "1"), (60, now()), (38, "0.02"),
                     (40, "2"), (44, "55500")])
    expect(buyer, "8", t150="5")
    buyer.send("D", nos("DD-X", "1", "0.01", "99999"))
    expect(buyer, "8", t150="8")
    buyer.send("F", [(41, "DD-NONE"), (11, "DD-C"), (55, "BTC-USDT"), (54, "1"), (60, now())])
    expect(buyer, "9")
    buyer.send("c", [(320, "DD-SD"), (321, "3")])
    expect(buyer, "j")
    buyer.send("x", [(320, "DD-SL"), (559, "4")])
    buyer.expect("y")
    buyer.send("AF", [(584, "DD-MS"), (585, "7")])
    expect(buyer, "8", t150="I")
    buyer.send("q", [(11, "DD-Q"), (530, "7"), (60, now())])
    drain(buyer, "r")
    buyer.send("1", [(112, "PING")])
    assert drain(buyer, "0")[112] == "PING"
    buyer.send("5")
    buyer.expect("5")
    kinds = set()
    for c in (buyer, seller):
        for msg in c.received:
            assert exported_dictionary.validate(msg) is None, f"invalid against the exported file: {msg!r}"
            kinds.add(msg.msg_type if msg.msg_type != "8" else "8/" + fields(msg)[150])
    assert {"A", "0", "5", "8/0", "8/F", "8/5", "8/8", "8/I", "8/4", "9", "j", "y", "r"} <= kinds


def test_quickfix_loads_the_exported_dictionary_and_validates_an_execution_report(clients, exported):
    quickfix = pytest.importorskip("quickfix")
    c = clients.open("DEMO1")
    c.send("D", nos("QF-1", "1", "0.01", "55600"))
    c.expect("8")
    raw = c.received[-1].raw.decode("latin-1")
    dd = quickfix.DataDictionary(str(exported))
    msg = quickfix.Message(raw, dd, True)
    dd.validate(msg)
    assert msg.getHeader().getField(35) == "8"
