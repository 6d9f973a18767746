"""End to end over TCP against the real `venue serve`: logon, cross, fill, restart, bad input."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import time
import uuid

import pytest

from fix.dictionary import DataDictionary
from fix.message import Message
from tests.venue_proc import VenueProcess
from tools.wiring import dictionary_paths


@pytest.fixture(scope="module")
def dictionary() -> DataDictionary:
    return DataDictionary.load(*dictionary_paths())


@pytest.fixture
def venue(tmp_path):
    v = VenueProcess(tmp_path / "data").start()
    yield v
    if v.alive:
        v.stop()


def fields(msg: Message) -> dict[int, str]:
    return {t: v.decode() for t, v in msg.fields}


def check(msg: Message, dictionary: DataDictionary, **expected: str) -> dict[int, str]:
    assert dictionary.validate(msg) is None, f"venue sent an invalid message: {msg!r}"
    f = fields(msg)
    for name, value in expected.items():
        tag = int(name[1:])
        assert f.get(tag) == value, f"tag {tag}: expected {value!r}, got {f.get(tag)!r} in {msg!r}"
    return f


def order(cl: str, side: str, qty: str, price: str, symbol: str = "BTC-USDT") -> list[tuple[int, object]]:
    return [(11, cl), (55, symbol), (54, side), (60, "20261125-00:00:00.000"), (38, qty), (40, "2"), (44, price),
            (59, "1")]


def test_two_clients_cross_and_both_sides_get_every_report_field(venue, dictionary):
    buyer, seller = venue.client("DEMO1"), venue.client("DEMO2")
    buyer.send("D", order("B-1", "1", "0.5", "60000"))
    new_b = check(buyer.expect("8"), dictionary, t150="0", t39="0", t11="B-1", t1="DEMO1-ACC", t55="BTC-USDT",
                  t54="1", t38="0.5", t44="60000", t151="0.5", t14="0", t6="0", t40="2", t59="1")
    seller.send("D", order("S-1", "2", "0.2", "59990"))
    new_s = check(seller.expect("8"), dictionary, t150="0", t39="0", t11="S-1", t1="DEMO2-ACC", t54="2",
                  t38="0.2", t44="59990", t151="0.2", t14="0", t6="0")
    fill_s = check(seller.expect("8"), dictionary, t150="F", t39="2", t11="S-1", t37=new_s[37], t32="0.2",
                   t31="60000", t151="0", t14="0.2", t6="60000", t1057="Y", t55="BTC-USDT", t54="2")
    fill_b = check(buyer.expect("8"), dictionary, t150="F", t39="1", t11="B-1", t37=new_b[37], t32="0.2",
                   t31="60000", t151="0.3", t14="0.2", t6="60000", t1057="N", t1="DEMO1-ACC")
    assert fill_b[880] == fill_s[880], "both sides carry the same trade id"
    exec_ids = [new_b[17], new_s[17], fill_s[17], fill_b[17]]
    assert len(set(exec_ids)) == 4, "every ExecID is unique"
    assert new_b[37] != new_s[37]
    # the rest of the buy order is taken by a second sell: the buyer is now filled
    seller.send("D", order("S-2", "2", "0.3", "60000"))
    check(seller.expect("8"), dictionary, t150="0", t11="S-2")
    check(seller.expect("8"), dictionary, t150="F", t39="2", t32="0.3", t31="60000")
    check(buyer.expect("8"), dictionary, t150="F", t39="2", t32="0.3", t151="0", t14="0.5", t6="60000")
    buyer.close()
    seller.close()


@pytest.fixture
def postgres_url():
    """A new, empty PostgreSQL database for one venue, dropped afterwards."""
    import asyncpg

    name = f"venue_e2e_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f"CREATE DATABASE {name}"))
    except OSError:
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def test_resting_order_survives_a_restart(tmp_path, dictionary):
    restart_keeps_resting_order(tmp_path, dictionary, {})


def test_resting_order_survives_a_restart_on_postgresql(tmp_path, dictionary, postgres_url):
    restart_keeps_resting_order(tmp_path, dictionary, {"VENUE_DATABASE_URL": postgres_url})


def restart_keeps_resting_order(tmp_path, dictionary, env: dict[str, str]) -> None:
    v = VenueProcess(tmp_path / "data", env=env).start()
    c = v.client("DEMO1")
    c.send("D", order("REST-1", "1", "0.1", "55000"))
    new = check(c.expect("8"), dictionary, t150="0")
    c.send("5")
    c.expect("5")
    c.close()
    assert v.stop() == 0
    v2 = VenueProcess(tmp_path / "data", port=v.port, env=env).start()
    try:
        c = v2.client("DEMO1", logon=False)  # the session resumes its sequence numbers
        c.seq = 4
        key, key_id = v2.key("DEMO1")
        logon = c.logon(key=key, key_id=key_id)
        assert fields(logon)[34] == "4", "the venue's own sequence resumes after 1 logon, 1 report, 1 logout"
        c.send("H", [(11, "REST-1"), (55, "BTC-USDT"), (54, "1")])
        status = check(c.expect("8"), dictionary, t150="I", t39="0", t37=new[37], t151="0.1", t44="55000")
        assert status[11] == "REST-1"
        seller = v2.client("DEMO2")
        seller.send("D", order("S-R", "2", "0.1", "55000"))
        check(seller.expect("8"), dictionary, t150="0")
        check(seller.expect("8"), dictionary, t150="F", t31="55000", t32="0.1")
        check(c.expect("8"), dictionary, t150="F", t37=new[37], t39="2")
    finally:
        v2.stop()


def test_malformed_frames_and_unknown_compids_do_not_disturb_other_sessions(venue, dictionary):
    good = venue.client("DEMO1")
    junk = socket.create_connection(("127.0.0.1", venue.port))
    junk.sendall(b"this is not FIX\x01\x01\x01 8=FIX.4.4\x019=5\x0135=A\x0110=000\x01")
    stranger = venue.client("NOBODY", logon=False)
    stranger.send("A", [(98, 0), (108, 30)])
    assert stranger.closed(5), "an unknown CompID is disconnected"
    probe = socket.create_connection(("127.0.0.1", venue.port))
    probe.close()
    good.send("D", order("G-1", "1", "0.01", "58000"))
    check(good.expect("8"), dictionary, t150="0", t11="G-1")
    junk.close()
    assert venue.alive


def test_disabling_a_logged_on_session_logs_it_out(venue):
    c = venue.client("DEMO2")
    other = venue.client("DEMO1")
    subprocess.run([sys.executable, "-m", "tools.cli", "session", "disable", "DEMO2", "--data-dir",
                    str(venue.data_dir)], check=True, capture_output=True, timeout=60)
    logout = c.expect("5", timeout=10)
    assert logout.get_str(58) == "Logout"
    c.send("5")
    assert c.closed(5)
    other.send("D", order("STILL-1", "1", "0.01", "58000"))
    assert other.expect("8").get_str(150) == "0", "other sessions trade on"


def test_sigterm_sends_logout_to_connected_sessions_and_exits_cleanly(tmp_path):
    v = VenueProcess(tmp_path / "data").start()
    c = v.client("DEMO1")
    v.proc.send_signal(15)
    logout = c.expect("5", timeout=10)
    assert "shutting down" in (logout.get_str(58) or "")
    c.send("5")
    assert v.proc.wait(20) == 0
    assert "venue stopped" in "".join(v.output)


def test_fix_over_tls_when_a_certificate_is_configured(tmp_path, dictionary):
    import ssl

    from tests.fix_client import FixClient
    from tests.test_fix_tls import _self_signed

    cert, key = _self_signed(tmp_path)
    v = VenueProcess(tmp_path / "data", env={"VENUE_FIX_TLS_CERT": str(cert), "VENUE_FIX_TLS_KEY": str(key)}).start()
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        c = FixClient("127.0.0.1", v.port, "DEMO1", ssl_context=ctx)
        signing_key, key_id = v.key("DEMO1")
        c.logon(key=signing_key, key_id=key_id)
        c.send("D", order("TLS-1", "1", "0.01", "58000"))
        check(c.expect("8"), dictionary, t150="0", t11="TLS-1")
        c.send("5")
        c.expect("5")
        plain = FixClient("127.0.0.1", v.port, "DEMO2")
        plain.send("A", [(98, 0), (108, 30)])
        assert plain.recv(2) is None, "plain TCP gets nothing from a TLS acceptor"
    finally:
        v.stop()


def test_replies_keep_the_order_of_the_requests_within_one_read(venue, dictionary):
    from fix.message import encode
    from tests.fix_client import now_fix

    c = venue.client("DEMO1")

    def frame(msg_type: str, body: list[tuple[int, object]]) -> bytes:
        head = [(35, msg_type), (49, "DEMO1"), (56, "VENUE"), (34, c.seq), (52, now_fix())]
        c.seq += 1
        return encode(Message.build(head + body).fields)

    c.sock.sendall(frame("D", order("ORD-1", "1", "0.01", "58000"))
                   + frame("D", order("ORD-2", "1", "0.01", "58000.001"))  # refused at the edge: bad tick
                   + frame("H", [(11, "ORD-1"), (55, "BTC-USDT"), (54, "1")]))  # sees ORD-1 already
    first, second, third = (check(c.expect("8"), dictionary) for _ in range(3))
    assert (first[11], first[150]) == ("ORD-1", "0")
    assert (second[11], second[150], second[7001]) == ("ORD-2", "8", "4")
    assert (third[11], third[150], third[39]) == ("ORD-1", "I", "0")


def test_orders_refused_at_the_edge_are_copied_to_drop_copy_in_order(venue, dictionary):
    broker = venue.client("DEMODC")
    c = venue.client("DEMO1")
    c.send("D", order("EDGE-OK", "1", "0.01", "58000"))
    c.send("D", order("EDGE-BAD", "1", "0.01", "58000.001"))
    c.send("D", order("EDGE-NOT-MINE", "1", "0.01", "58000") + [(1, "DEMO2-ACC")])
    for _ in range(3):
        c.expect("8")
    first = check(broker.expect("8"), dictionary, t11="EDGE-OK", t150="0", t1="DEMO1-ACC")
    second = check(broker.expect("8"), dictionary, t11="EDGE-BAD", t150="8", t7001="4", t1="DEMO1-ACC")
    assert first[17] != second[17]
    assert broker.recv(1.0) is None, "an attempt on an account the sender may not trade is not copied"


def test_a_signed_logon_cannot_be_replayed_after_a_restart(tmp_path):
    from fix.message import encode
    from tests.fix_client import FixClient, now_fix
    from venue.access.signing import signed_logon_fields

    env = {"VENUE_ACCESS_LOGON_WINDOW": "30"}  # wide enough to span the restart
    v = VenueProcess(tmp_path / "data", env=env).start()
    key, key_id = v.key("DEMO1")
    st = now_fix()
    logon = encode(Message.build([(35, "A"), (49, "DEMO1"), (56, "VENUE"), (34, 1), (52, st), (98, 0), (108, 30),
                                  (141, "Y"), *signed_logon_fields(key, key_id, "DEMO1", "VENUE", 1, st)]).fields)
    c = FixClient("127.0.0.1", v.port, "DEMO1")
    c.sock.sendall(logon)
    c.expect("A")
    c.seq = 2
    c.send("5")
    c.expect("5")
    c.close()
    v.stop()
    v2 = VenueProcess(tmp_path / "data", port=v.port, env=env).start()
    try:
        replay = FixClient("127.0.0.1", v2.port, "DEMO1")
        replay.sock.sendall(logon)
        refusal = replay.expect("5")
        assert refusal.get_str(58) == "Logon rejected", "the client learns nothing of why"
        assert replay.closed(5)
        tail = subprocess.run([sys.executable, "-m", "tools.cli", "audit", "tail", "-n", "5", "--data-dir",
                               str(tmp_path / "data")], capture_output=True, text=True, timeout=60).stdout
        assert "replayed" in tail
    finally:
        v2.stop()


def test_a_drop_copy_session_added_while_running_collects_copies_before_its_first_logon(venue, tmp_path):
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from tests.fix_client import FixClient

    key_file = tmp_path / "newdc.pem"
    out = subprocess.run([sys.executable, "-m", "tools.cli", "session", "create", "NEWDC", "--firm", "DEMO",
                          "--kind", "drop_copy", "--account", "DEMO1-ACC", "--key-out", str(key_file),
                          "--data-dir", str(venue.data_dir)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    key_id = re.search(r"key id:? *(\S+)", out.stdout + out.stderr, re.I).group(1)
    time.sleep(2.5)  # the venue reads the registry every second
    trader = venue.client("DEMO1")
    trader.send("D", order("FOR-NEWDC", "1", "0.01", "58000"))
    trader.expect("8")
    broker = FixClient("127.0.0.1", venue.port, "NEWDC")
    broker.logon(key=load_pem_private_key(key_file.read_bytes(), None), key_id=key_id)
    broker.send("2", [(7, 1), (16, 0)])
    copy = broker.expect("8")
    assert copy.get_str(11) == "FOR-NEWDC" and copy.get_str(43) == "Y", "stored while the broker was away"


def test_market_data_sequence_never_goes_backwards_across_a_restart(tmp_path):
    def snapshot_seq(v: VenueProcess, req_id: str) -> int:
        md = v.client("DEMOMD", reset=True)
        md.send("V", [(262, req_id), (263, "0"), (264, 0), (267, 2), (269, "0"), (269, "1"), (146, 1),
                      (55, "BTC-USDT")])
        w = md.expect("W")
        md.close()
        return int(w.get_str(83))

    v = VenueProcess(tmp_path / "data").start()
    c = v.client("DEMO1")
    for i in range(3):
        c.send("D", order(f"MD-{i}", "1", "0.01", str(58000 + i)))
        c.expect("8")
    before = snapshot_seq(v, "before")
    assert before > 0
    v.stop()
    v2 = VenueProcess(tmp_path / "data", port=v.port).start()
    try:
        assert snapshot_seq(v2, "after") >= before
    finally:
        v2.stop()
