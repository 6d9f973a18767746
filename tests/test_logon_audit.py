"""Every logon decision leaves an audit entry with its outcome and reason, including the refusals the
FIX engine makes before the access gate is asked: unknown or disabled session, wrong TargetCompID,
duplicate logon, SendingTime out of range, HeartBtInt out of range.

Over real TCP against `venue serve`; the entries are read back with the real `venue audit tail`.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.test_access_e2e import Client, fix_time
from tests.venue_proc import VenueProcess
from tools.cli import main as venue_cli
from venue.access import signing

SESSIONS = {  # session -> (the only address it allows, extra `session create` flags)
    "ADIS": ("127.0.0.60", ["--disabled"]),
    "AWRONG": ("127.0.0.61", []),
    "ADUP": ("127.0.0.62", []),
    "ATIME": ("127.0.0.63", []),
    "AHB": ("127.0.0.64/31", []),  # .64 and .65 (.65 claims an unknown CompID)
    "APROBE": ("127.0.0.1", []),  # created last: once the venue knows it, it knows all of them
}


def cli(data_dir: Path, *args: str) -> str:
    result = CliRunner().invoke(venue_cli, [*args, "--data-dir", str(data_dir), "--actor", "audit-test"])
    assert result.exit_code == 0, result.output
    return result.output


def key_of(v: VenueProcess, sender: str):
    key = signing.load_private_key_file(v.data_dir / "audit-keys" / f"{sender}.pem")
    return key, signing.key_id_for(key.public_key())


def ip_of(sender: str) -> str:
    return SESSIONS[sender][0].split("/")[0]


def signed_logon(v: VenueProcess, sender: str, ip: str | None = None, *, target: str = "VENUE",
                 sending_time: str | None = None, heartbeat: int = 30) -> Client:
    c = Client(v.port, sender, ip or ip_of(sender))
    c.target = target
    key, kid = key_of(v, sender)
    st = sending_time or fix_time()
    c.send("A", [(98, 0), (108, heartbeat), (141, "Y")]
           + signing.signed_logon_fields(key, kid, sender, target, c.seq, st), sending_time=st)
    return c


def refused_entries(v: VenueProcess, subject: str, code: str, timeout: float = 5.0) -> list[dict]:
    """`venue audit tail --kind logon.refused --json` entries for ``subject`` with ``code``."""
    deadline = time.monotonic() + timeout
    while True:
        out = cli(v.data_dir, "audit", "tail", "-n", "1000", "--kind", "logon.refused", "--json")
        rows = [e for e in map(json.loads, out.splitlines())
                if e["subject"] == subject and e["details"].get("code") == code]
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


@pytest.fixture(scope="module")
def venue(tmp_path_factory):
    data = tmp_path_factory.mktemp("logon-audit") / "data"
    v = VenueProcess(data).start()
    try:
        for sender, (net, flags) in SESSIONS.items():
            cli(data, "session", "create", sender, "--firm", "DEMO", "--account", "DEMO1-ACC", "--allow", net,
                *flags, "--key-out", str(data / "audit-keys" / f"{sender}.pem"))
        deadline = time.monotonic() + 10
        while True:  # the venue reloads its registry once a second
            c = signed_logon(v, "APROBE")
            msg = c.recv(5)
            c.close()
            if msg is not None and msg.msg_type == "A":
                break
            assert time.monotonic() < deadline, "the venue never picked up the new sessions"
            time.sleep(0.2)
        yield v
    finally:
        if v.alive:
            v.stop()


def test_a_disabled_session_is_refused_and_audited(venue):
    c = signed_logon(venue, "ADIS")
    assert c.closed()
    [entry] = refused_entries(venue, "ADIS", "session_disabled")
    assert entry["source"] == "127.0.0.60" and entry["details"]["result"] == "refused"
    assert entry["details"]["reason"] == "session ADIS is disabled"


def test_an_unknown_comp_id_is_refused_and_audited(venue):
    c = Client(venue.port, "ANOBODY", "127.0.0.65")
    c.send("A", [(98, 0), (108, 30), (141, "Y")])
    assert c.closed()
    [entry] = refused_entries(venue, "ANOBODY", "unknown_session")
    assert entry["source"] == "127.0.0.65" and "unknown SenderCompID 'ANOBODY'" in entry["details"]["reason"]


def test_a_wrong_target_comp_id_is_refused_and_audited(venue):
    c = signed_logon(venue, "AWRONG", target="NOTVENUE")
    assert c.closed()
    [entry] = refused_entries(venue, "AWRONG", "wrong_target")
    assert entry["source"] == "127.0.0.61"
    assert entry["details"]["reason"] == "TargetCompID 'NOTVENUE', expected 'VENUE'"


def test_a_duplicate_logon_is_refused_and_audited_and_the_first_stays_on(venue):
    first = signed_logon(venue, "ADUP")
    first.expect("A")
    second = signed_logon(venue, "ADUP")
    assert second.closed()
    [entry] = refused_entries(venue, "ADUP", "duplicate_logon")
    assert entry["source"] == "127.0.0.62" and "already logged on" in entry["details"]["reason"]
    first.send("1", [(112, "STILL-THERE")])  # the first connection is untouched
    assert first.expect("0").get_str(112) == "STILL-THERE"
    first.close()


def test_a_sending_time_out_of_range_is_refused_and_audited(venue):
    ten_minutes_ago = fix_time(datetime.now(UTC) - timedelta(minutes=10))  # beyond [fix] max_latency
    c = signed_logon(venue, "ATIME", sending_time=ten_minutes_ago)
    assert c.closed()
    [entry] = refused_entries(venue, "ATIME", "sending_time_out_of_range")
    assert entry["source"] == "127.0.0.63" and "SendingTime accuracy problem" in entry["details"]["reason"]


def test_a_heartbeat_interval_out_of_range_is_refused_and_audited(venue):
    c = signed_logon(venue, "AHB", heartbeat=100_000)
    c.expect("5")
    assert c.closed()
    [entry] = refused_entries(venue, "AHB", "heartbeat_out_of_range")
    assert entry["source"] == "127.0.0.64" and "HeartBtInt 100000 out of range" in entry["details"]["reason"]


def test_an_accepted_logon_is_audited_with_its_outcome(venue):
    out = cli(venue.data_dir, "audit", "tail", "-n", "1000", "--kind", "logon.accepted", "--json")
    [entry] = [e for e in map(json.loads, out.splitlines()) if e["subject"] == "APROBE"]
    assert entry["details"]["result"] == "accepted" and entry["source"] == "127.0.0.1"


def test_a_garbled_logon_is_refused_and_audited(venue):
    c = Client(venue.port, "AHB", "127.0.0.65")
    frame = b"8=FIX.4.4\x019=5\x0135=A\x0110=000\x01"  # BodyLength and CheckSum both wrong
    c.sock.sendall(frame)
    assert c.closed()
    [entry] = [e for e in refused_entries(venue, "", "invalid_logon") if e["source"] == "127.0.0.65"]
    assert "Garbled message before Logon" in entry["details"]["reason"]
