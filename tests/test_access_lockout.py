"""Lockouts against the real `venue serve` over TCP: a stranger locks out only itself.

Lockouts stop guessing, and a signature cannot be guessed: a logon signed with an active key of its
session is never refused for a lockout. Failed logons count against their source address; against a
CompID only a bad signature under one of its key ids from an address the session allows; KYC and
SendingTime refusals count nowhere. Clients connect from chosen loopback addresses (Linux routes
all of 127/8 to lo), so "another machine" is 127.0.0.2.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.test_access_e2e import Client, audit_rows, expect_refused, fix_time
from tests.test_access_gate import NOW, S, World
from tests.venue_proc import VenueProcess
from tools.cli import main as venue_cli
from venue.access import signing
from venue.access.gate import GateConfig

FAILURES = 5  # the default lockout_failures
ACCOUNTS = {"LKYC": "LKYC-ACC"}  # else DEMO1-ACC
# session -> the networks it allows
SESSIONS = {
    "LSTRANGER": ["127.0.0.2/32"],  # a legitimate session elsewhere: 127.0.0.2 may connect at all
    "LSHARED": ["127.0.0.32/30"],  # 127.0.0.32 .. 127.0.0.35
    "LUNSIGNED": ["127.0.0.40/30"],
    "LSTALE": ["127.0.0.44/32"],
    "LNOKEY": ["127.0.0.48/30"],
    "LNAT1": ["127.0.0.52/32"],  # two firms' sessions behind one NAT address
    "LNAT2": ["127.0.0.52/32"],
    "LKYC": ["127.0.0.56/32"],  # its account becomes KYC-pending; LKYCNEIGHBOUR shares the address
    "LKYCNEIGHBOUR": ["127.0.0.56/32"],
    "LPROBE": ["127.0.0.1/32"],  # created last: once the venue knows it, it knows all of them
}


def cli(data_dir: Path, *args: str) -> str:
    result = CliRunner().invoke(venue_cli, [*args, "--data-dir", str(data_dir), "--actor", "lockout-test"])
    assert result.exit_code == 0, result.output
    return result.output


def key_of(v: VenueProcess, sender: str):
    if sender == "DEMO1":
        return v.key("DEMO1")
    key = signing.load_private_key_file(v.data_dir / "lockout-keys" / f"{sender}.pem")
    return key, signing.key_id_for(key.public_key())


def logon(v: VenueProcess, sender: str, ip: str, **kw) -> Client:
    """A signed logon of ``sender`` from ``ip`` (kw: sending_time, sign_seq)."""
    c = Client(v.port, sender, ip)
    c.signed_logon(*key_of(v, sender), **kw)
    return c


def logs_on(v: VenueProcess, sender: str, ip: str) -> bool:
    """A signed logon is accepted (then logged out, so the session can log on again at once)."""
    c = logon(v, sender, ip)
    msg = c.recv(5)
    if msg is None or msg.msg_type != "A":
        c.close()
        return False
    c.send("5")
    c.expect("5")
    assert c.closed()
    c.close()
    return True


def unsigned_logon(v: VenueProcess, sender: str, ip: str, extra: tuple = ()) -> None:
    c = Client(v.port, sender, ip)
    c.send("A", [(98, 0), (108, 30), (141, "Y"), *extra])
    expect_refused(c)


def refusals(v: VenueProcess, sender: str, source: str, code: str, count: int, timeout: float = 5) -> list:
    """Wait until ``count`` logon.refused entries of ``code`` for ``sender`` from ``source`` are in."""
    deadline = time.monotonic() + timeout
    while True:
        rows = [r for r in audit_rows(v, "logon.refused", sender, timeout) if r.source == source and r.data["code"] == code]
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


@pytest.fixture(scope="module")
def venue(tmp_path_factory):
    data = tmp_path_factory.mktemp("lockout") / "data"
    v = VenueProcess(data, env={"VENUE_ACCESS_LOCKOUT_FAILURES": str(FAILURES),
                                "VENUE_ACCESS_LOCKOUT_SECONDS": "300"}).start()
    try:
        cli(data, "session", "allow", "DEMO1", "--replace", "127.0.0.1/32")
        cli(data, "account", "create", "LKYC-ACC", "--firm", "DEMO", "--status", "verified")
        for sender, networks in SESSIONS.items():
            cli(data, "session", "create", sender, "--firm", "DEMO", "--account", ACCOUNTS.get(sender, "DEMO1-ACC"),
                *[a for n in networks for a in ("--allow", n)],
                "--key-out", str(data / "lockout-keys" / f"{sender}.pem"))
        deadline = time.monotonic() + 10
        while not logs_on(v, "LPROBE", "127.0.0.1"):  # the venue reloads its registry once a second
            assert time.monotonic() < deadline, "the venue never picked up the new sessions"
            time.sleep(0.2)
        yield v
    finally:
        if v.alive:
            v.stop()


@pytest.mark.timeout(60)
def test_unsigned_logons_claiming_a_comp_id_from_another_address_lock_out_only_that_address(venue):
    for _ in range(FAILURES):
        unsigned_logon(venue, "DEMO1", "127.0.0.2")  # outside DEMO1's allow-list
    assert len(refusals(venue, "DEMO1", "127.0.0.2", "address_not_allowed", FAILURES)) == FAILURES
    # the real DEMO1, from its own address, is not locked out
    assert logs_on(venue, "DEMO1", "127.0.0.1")
    # the stranger's address is, for anything not signed by a session's key ...
    unsigned_logon(venue, "LSTRANGER", "127.0.0.2")
    [locked] = refusals(venue, "LSTRANGER", "127.0.0.2", "locked_out", 1)
    assert "address 127.0.0.2 is locked out" in locked.data["reason"]
    # ... but a signature cannot be guessed: the session that allows it logs on there
    assert logs_on(venue, "LSTRANGER", "127.0.0.2")


@pytest.mark.timeout(60)
def test_unsigned_logons_from_an_allowed_address_do_not_lock_out_the_comp_id(venue):
    for _ in range(FAILURES):
        unsigned_logon(venue, "LUNSIGNED", "127.0.0.40")
    assert len(refusals(venue, "LUNSIGNED", "127.0.0.40", "signature_missing", FAILURES)) == FAILURES
    assert logs_on(venue, "LUNSIGNED", "127.0.0.41")  # its other address
    unsigned_logon(venue, "LUNSIGNED", "127.0.0.40")  # the address that failed is locked
    [locked] = refusals(venue, "LUNSIGNED", "127.0.0.40", "locked_out", 1)
    assert "address 127.0.0.40" in locked.data["reason"]


@pytest.mark.timeout(60)
def test_bad_signatures_from_allowed_addresses_still_lock_out_the_comp_id(venue):
    for i in range(FAILURES):  # spread over the session's own addresses: no address reaches the limit
        c = logon(venue, "LSHARED", f"127.0.0.{32 + i % 3}", sign_seq=100 + i)  # signed for another MsgSeqNum
        expect_refused(c)
    assert sum(len(refusals(venue, "LSHARED", f"127.0.0.{32 + i}", "bad_signature", 1)) for i in range(3)) == FAILURES
    c = logon(venue, "LSHARED", "127.0.0.35", sign_seq=200)  # one more guess from a fresh allowed address
    expect_refused(c)
    [locked] = refusals(venue, "LSHARED", "127.0.0.35", "locked_out", 1)
    assert "CompID LSHARED is locked out" in locked.data["reason"]
    assert logs_on(venue, "LSHARED", "127.0.0.35")  # its owner's signature is never refused for a lockout


@pytest.mark.timeout(60)
def test_logons_under_a_key_id_the_comp_id_does_not_have_lock_out_no_comp_id(venue):
    """The attack: from an allowed address, knowing nothing, `95=4|96=AAAA|553=nosuchkey` five times
    locked the CompID out everywhere for 300 s, renewable forever."""
    for _ in range(FAILURES):
        unsigned_logon(venue, "LNOKEY", "127.0.0.48", extra=((95, 4), (96, "AAAA"), (553, "nosuchkey")))
    assert len(refusals(venue, "LNOKEY", "127.0.0.48", "unknown_key", FAILURES)) == FAILURES
    assert logs_on(venue, "LNOKEY", "127.0.0.49")  # from its other address
    assert logs_on(venue, "LNOKEY", "127.0.0.48")  # and from the attacker's: the signature is no guess
    unsigned_logon(venue, "LNOKEY", "127.0.0.48", extra=((95, 4), (96, "AAAA"), (553, "nosuchkey")))
    [locked] = refusals(venue, "LNOKEY", "127.0.0.48", "locked_out", 1)  # the guesser's address is locked
    assert "address 127.0.0.48" in locked.data["reason"]


@pytest.mark.timeout(60)
def test_unsigned_logons_from_a_shared_address_refuse_no_correctly_signed_logon_there(venue):
    """The attack: 5 unsigned logons claiming a CompID from address A locked A, and then the real,
    correctly signed session (and every other firm behind that NAT address) was refused for 300 s."""
    for _ in range(FAILURES):
        unsigned_logon(venue, "LNAT1", "127.0.0.52")
    assert len(refusals(venue, "LNAT1", "127.0.0.52", "signature_missing", FAILURES)) == FAILURES
    assert logs_on(venue, "LNAT1", "127.0.0.52")
    assert logs_on(venue, "LNAT2", "127.0.0.52")
    assert not refusals(venue, "LNAT2", "127.0.0.52", "locked_out", 1)


@pytest.mark.timeout(60)
def test_kyc_refusals_of_an_owners_signed_logon_count_nowhere(venue):
    """An auto-reconnecting client whose account became KYC-pending must not lock out the other
    sessions at its address (nor, once KYC is verified again, itself)."""
    cli(venue.data_dir, "account", "kyc", "LKYC-ACC", "--status", "pending")
    deadline = time.monotonic() + 10
    while logs_on(venue, "LKYC", "127.0.0.56"):  # the venue reloads its registry once a second
        assert time.monotonic() < deadline, "the venue never picked up the KYC change"
        time.sleep(0.2)
    for _ in range(FAILURES):
        expect_refused(logon(venue, "LKYC", "127.0.0.56"))
    assert len(refusals(venue, "LKYC", "127.0.0.56", "kyc", FAILURES + 1)) == FAILURES + 1
    assert logs_on(venue, "LKYCNEIGHBOUR", "127.0.0.56")
    cli(venue.data_dir, "account", "kyc", "LKYC-ACC", "--status", "verified")
    deadline = time.monotonic() + 10
    while not logs_on(venue, "LKYC", "127.0.0.56"):
        assert time.monotonic() < deadline, "refused after KYC was verified again"
        time.sleep(0.2)
    assert not refusals(venue, "LKYC", "127.0.0.56", "locked_out", 1, timeout=0)


@pytest.mark.timeout(60)
def test_stale_sending_times_count_toward_no_lockout(venue):
    old = fix_time(datetime.now(UTC) - timedelta(seconds=30))
    for i in range(FAILURES + 1):
        c = logon(venue, "LSTALE", "127.0.0.44", sending_time=old)
        expect_refused(c)
        assert len(refusals(venue, "LSTALE", "127.0.0.44", "sending_time_stale", i + 1)) == i + 1
    assert logs_on(venue, "LSTALE", "127.0.0.44")


# ---- the same rules on the gate alone (no venue): where each refusal counts ----------------------


def _gate_world(networks=("127.0.0.0/29",)):
    return World(networks=networks, config=GateConfig(lockout_failures=3, lockout_seconds=60))


def test_the_window_is_judged_as_of_arrival_however_late_the_check_runs():
    w = _gate_world()
    late = NOW + 30 * S  # the venue got round to this logon 30 s after it arrived
    assert w.logon(w.fields(sent=NOW), now=late).code == "sending_time_stale"
    d = w.gate.check_logon("C1", "VENUE", w.fields(seq=2, sent=NOW), "127.0.0.1", late, NOW)
    assert d.ok, d.reason


@pytest.mark.parametrize("code, fields_of", [
    ("signature_missing", lambda w: {35: "A", 34: "1", 52: w.fields()[52]}),
    ("replayed", None),
    ("sending_time_stale", lambda w: w.fields(sent=NOW - 60 * S)),
    ("sending_time_future", lambda w: w.fields(sent=NOW + 60 * S)),
])
def test_refusals_anyone_can_cause_never_lock_out_the_comp_id(code, fields_of):
    w = _gate_world()
    captured = w.fields(seq=99)
    assert w.logon(captured, ip="127.0.0.1").ok
    for i in range(3):  # from three different allowed addresses: no address reaches the limit alone
        f = captured if fields_of is None else fields_of(w)
        assert w.logon(f, ip=f"127.0.0.{2 + i % 2}").code == code
    assert not w.gate.is_locked_out(None, "C1", NOW)
    assert w.logon(w.fields(seq=100), ip="127.0.0.4").ok


def test_credential_failures_from_outside_the_allow_list_count_against_the_address_only():
    w = _gate_world(networks=("127.0.0.1/32",))
    for i in range(3):
        assert w.logon(w.fields(seq=i + 1, key_id="0000000000000000"), ip="127.0.0.9").code == "address_not_allowed"
    assert w.gate.is_locked_out("127.0.0.9", None, NOW)
    assert not w.gate.is_locked_out(None, "C1", NOW)
    assert w.logon(w.fields(seq=10), ip="127.0.0.1").ok
    locked = w.logon(w.fields(seq=11), ip="127.0.0.9")
    assert locked.code == "locked_out" and "address 127.0.0.9" in locked.reason


def test_logons_the_engine_found_no_session_for_are_explained_but_not_counted():
    w = _gate_world()
    for _ in range(5):
        assert w.gate.refuse_unbound("FIX.4.4", "NOBODY", "VENUE").code == "unknown_session"
    assert w.gate.refuse_unbound("FIX.4.4", "C1", "OTHER").reason == "TargetCompID 'OTHER', expected 'VENUE'"
    assert not w.gate.is_locked_out("127.0.0.1", None, NOW)


def test_a_replay_that_waited_in_the_backlog_is_still_refused():
    w = _gate_world()
    original = w.fields(seq=1, sent=NOW)
    assert w.gate.check_logon("C1", "VENUE", original, "127.0.0.1", NOW, NOW).ok
    later = NOW + 30 * S  # a logon checked 30 s on prunes the replay memory as of then
    assert w.gate.check_logon("C1", "VENUE", w.fields(seq=2, sent=later), "127.0.0.1", later, later).ok
    # the captured logon, replayed 1 s after the original and only checked now, within its window as of arrival
    d = w.gate.check_logon("C1", "VENUE", original, "127.0.0.2", later, NOW + 1 * S)
    assert d.code == "replayed", d.reason


def test_arrival_counts_at_most_max_backlog_before_the_check():
    w = World(config=GateConfig(logon_window_s=5, max_backlog_s=60))
    d = w.gate.check_logon("C1", "VENUE", w.fields(sent=NOW), "127.0.0.1", NOW + 70 * S, NOW)
    assert d.code == "sending_time_stale" and "10.000 s old" in d.reason
