"""Access control end to end over TCP against the real `venue serve`: every refusal, and the
audit entry it leaves (exact reason and source address), while the client only sees a generic Logout.

Each test uses its own FIX session and its own loopback source address, so that failure counters
and lockouts of one test never touch another. Sessions and accounts are made with the real CLI
against the running venue, which picks them up on its once-a-second registry reload.
"""

from __future__ import annotations

import socket
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.fix_client import FixClient
from tests.venue_proc import VenueProcess
from tools.cli import main as venue_cli
from venue.access import signing
from venue.audit import AuditEntry

LOCKOUT_FAILURES = 3
GENERIC = "Logon rejected"  # the same text for every refusal: no hint of which check failed
# session -> (entitled account, the only address it allows)
SESSIONS = {
    "EOK": ("DEMO1-ACC", "127.0.0.10"),
    "EBADSIG": ("DEMO1-ACC", "127.0.0.11"),
    "EUNKEY": ("DEMO1-ACC", "127.0.0.12"),
    "ESTALE": ("DEMO1-ACC", "127.0.0.13"),
    "EFUTURE": ("DEMO1-ACC", "127.0.0.14"),
    "EREPLAY": ("DEMO1-ACC", "127.0.0.15"),
    "EADDR": ("DEMO1-ACC", "127.0.0.1"),  # approached from 127.0.0.2, which only EOTHER allows
    "EOTHER": ("DEMO1-ACC", "127.0.0.2"),
    "EPEND": ("KYCPEND-ACC", "127.0.0.16"),
    "EEXP": ("KYCEXP-ACC", "127.0.0.17"),
    "ELOCK": ("DEMO1-ACC", "127.0.0.18"),
    "EROT": ("DEMO1-ACC", "127.0.0.19"),
    "EKYCX": ("KYCX-ACC", "127.0.0.20"),
}


def cli(data_dir: Path, *args: str) -> str:
    result = CliRunner().invoke(venue_cli, [*args, "--data-dir", str(data_dir), "--actor", "e2e"])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def venue(tmp_path_factory):
    data = tmp_path_factory.mktemp("access-e2e") / "data"
    v = VenueProcess(data, env={"VENUE_ACCESS_LOCKOUT_FAILURES": str(LOCKOUT_FAILURES),
                                "VENUE_ACCESS_LOCKOUT_SECONDS": "300"}).start()
    try:
        keys = data / "e2e-keys"
        cli(data, "account", "create", "KYCPEND-ACC", "--firm", "DEMO", "--status", "pending")
        cli(data, "account", "create", "KYCEXP-ACC", "--firm", "DEMO", "--status", "verified",
            "--expires", "2020-01-01")
        cli(data, "account", "create", "KYCX-ACC", "--firm", "DEMO", "--status", "verified",
            "--expires", "2099-01-01")
        for sender, (account, ip) in SESSIONS.items():
            cli(data, "session", "create", sender, "--firm", "DEMO", "--account", account, "--allow", f"{ip}/32",
                "--key-out", str(keys / f"{sender}.pem"))
        for sender in ("DEMO1", "DEMO2", "DEMODC", "DEMOMD"):  # no session allows 127.0.0.3 any more
            cli(data, "session", "allow", sender, "--replace", "127.0.0.1/32", "::1/128")
        time.sleep(1.6)  # the venue reloads its registry once a second
        yield v
    finally:
        if v.alive:
            v.stop()


def key_of(v: VenueProcess, sender: str):
    key = signing.load_private_key_file(v.data_dir / "e2e-keys" / f"{sender}.pem")
    return key, signing.key_id_for(key.public_key())


def fix_time(dt: datetime | None = None) -> str:
    return (dt or datetime.now(UTC)).strftime("%Y%m%d-%H:%M:%S.%f")[:-3]


class Client(FixClient):
    """FixClient connecting from a chosen loopback source address."""

    def __init__(self, port: int, sender: str, source_ip: str) -> None:
        self.sender, self.target = sender, "VENUE"
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source_ip, 0))
        self.buf = b""
        self.seq = 1
        self.received = []

    def signed_logon(self, key, key_id: str, *, sending_time: str | None = None, sign_seq: int | None = None,
                     reset: bool = True) -> list[tuple[int, object]]:
        st = sending_time or fix_time()
        fields: list[tuple[int, object]] = [(98, 0), (108, 30)] + ([(141, "Y")] if reset else [])
        fields += signing.signed_logon_fields(key, key_id, self.sender, self.target,
                                              self.seq if sign_seq is None else sign_seq, st)
        self.send("A", fields, sending_time=st)
        return fields


def connect(v: VenueProcess, sender: str, ip: str | None = None) -> Client:
    return Client(v.port, sender, ip or SESSIONS[sender][1])


def expect_refused(c: Client) -> None:
    """The generic Logout, then the venue closes the connection."""
    msg = c.expect("5")
    assert msg.get_str(58) == GENERIC
    assert c.closed()
    c.close()


def audit_rows(v: VenueProcess, kind: str, subject: str | None = None, timeout: float = 5.0) -> list[AuditEntry]:
    """Audit entries of a kind (and subject), waiting for the venue's batch to commit them."""
    deadline = time.monotonic() + timeout
    while True:
        with sqlite3.connect(f"file:{v.data_dir / 'venue.db'}?mode=ro", uri=True) as db:
            q = "SELECT seq, time_ns, kind, actor, subject, source, details, prev_hash, hash FROM audit_log " \
                "WHERE kind = ?" + (" AND subject = ?" if subject is not None else "") + " ORDER BY seq"
            rows = [AuditEntry(*r) for r in db.execute(q, (kind,) if subject is None else (kind, subject))]
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def refusal(v: VenueProcess, sender: str, code: str) -> AuditEntry:
    deadline = time.monotonic() + 5
    while True:
        rows = [r for r in audit_rows(v, "logon.refused", sender) if r.data["code"] == code]
        if rows or time.monotonic() > deadline:
            assert rows, f"no logon.refused/{code} audit entry for {sender}"
            return rows[-1]
        time.sleep(0.05)


def test_signed_logon_is_accepted_and_audited(venue):
    c = connect(venue, "EOK")
    key, kid = key_of(venue, "EOK")
    c.signed_logon(key, kid)
    c.expect("A")
    [entry] = audit_rows(venue, "logon.accepted", "EOK")
    assert entry.source == "127.0.0.10" and entry.data["key_id"] == kid
    c.close()


def test_bad_signature_is_refused(venue):
    c = connect(venue, "EBADSIG")
    key, kid = key_of(venue, "EBADSIG")
    c.signed_logon(key, kid, sign_seq=7)  # signature over another MsgSeqNum
    expect_refused(c)
    entry = refusal(venue, "EBADSIG", "bad_signature")
    assert entry.source == "127.0.0.11" and kid in entry.data["reason"]


def test_unknown_key_id_is_refused(venue):
    c = connect(venue, "EUNKEY")
    key, _ = key_of(venue, "EUNKEY")
    c.signed_logon(key, "feedfacefeedface")
    expect_refused(c)
    entry = refusal(venue, "EUNKEY", "unknown_key")
    assert entry.source == "127.0.0.12" and "feedfacefeedface" in entry.data["reason"]


def test_stale_sending_time_is_refused(venue):
    c = connect(venue, "ESTALE")
    key, kid = key_of(venue, "ESTALE")
    c.signed_logon(key, kid, sending_time=fix_time(datetime.now(UTC) - timedelta(seconds=30)))
    expect_refused(c)
    entry = refusal(venue, "ESTALE", "sending_time_stale")
    assert entry.source == "127.0.0.13" and "s old" in entry.data["reason"]


def test_future_sending_time_is_refused(venue):
    c = connect(venue, "EFUTURE")
    key, kid = key_of(venue, "EFUTURE")
    c.signed_logon(key, kid, sending_time=fix_time(datetime.now(UTC) + timedelta(seconds=30)))
    expect_refused(c)
    entry = refusal(venue, "EFUTURE", "sending_time_future")
    assert "s ahead" in entry.data["reason"]


def test_replayed_logon_is_refused(venue):
    key, kid = key_of(venue, "EREPLAY")
    first = connect(venue, "EREPLAY")
    st = fix_time()
    fields = first.signed_logon(key, kid, sending_time=st)
    first.expect("A")
    first.send("5")
    first.expect("5")
    first.close()
    replay = connect(venue, "EREPLAY")
    replay.send("A", fields, seq=1, sending_time=st)  # the captured logon, byte for byte
    expect_refused(replay)
    entry = refusal(venue, "EREPLAY", "replayed")
    assert entry.source == "127.0.0.15"


def test_connection_from_an_address_no_session_allows_is_closed_at_accept(venue):
    s = socket.create_connection(("127.0.0.1", venue.port), timeout=5, source_address=("127.0.0.3", 0))
    s.settimeout(5)
    assert s.recv(100) == b""  # closed before we sent a byte
    s.close()
    rows = [r for r in audit_rows(venue, "connection.refused") if r.source == "127.0.0.3"]
    assert rows, "no connection.refused audit entry for 127.0.0.3"


def test_logon_from_an_address_outside_the_sessions_allow_list_is_refused(venue):
    c = connect(venue, "EADDR", ip="127.0.0.2")
    key, kid = key_of(venue, "EADDR")
    c.signed_logon(key, kid)
    expect_refused(c)
    entry = refusal(venue, "EADDR", "address_not_allowed")
    assert entry.source == "127.0.0.2" and "127.0.0.2" in entry.data["reason"]


def test_unverified_kyc_is_refused(venue):
    c = connect(venue, "EPEND")
    key, kid = key_of(venue, "EPEND")
    c.signed_logon(key, kid)
    expect_refused(c)
    entry = refusal(venue, "EPEND", "kyc")
    assert "KYCPEND-ACC KYC status is pending" in entry.data["reason"]


def test_expired_kyc_is_refused(venue):
    c = connect(venue, "EEXP")
    key, kid = key_of(venue, "EEXP")
    c.signed_logon(key, kid)
    expect_refused(c)
    entry = refusal(venue, "EEXP", "kyc")
    assert "KYCEXP-ACC KYC expired on 2020-01-01" in entry.data["reason"]


def test_lockout_after_repeated_failures(venue):
    key, kid = key_of(venue, "ELOCK")
    for i in range(LOCKOUT_FAILURES):
        c = connect(venue, "ELOCK")
        c.signed_logon(key, kid, sign_seq=100 + i)
        expect_refused(c)
    guess = connect(venue, "ELOCK")
    guess.signed_logon(key, kid, sign_seq=200)  # one more guess: locked out now
    expect_refused(guess)
    entry = refusal(venue, "ELOCK", "locked_out")
    assert entry.source == "127.0.0.18" and "locked out" in entry.data["reason"]
    assert len([r for r in audit_rows(venue, "logon.refused", "ELOCK") if r.data["code"] == "bad_signature"]) == 3
    good = connect(venue, "ELOCK")
    good.signed_logon(key, kid)  # a signature cannot be guessed: never refused for a lockout
    assert good.expect("A")
    good.close()


def test_key_rotation_without_downtime(venue):
    old_key, old_id = key_of(venue, "EROT")
    new_pem = venue.data_dir / "e2e-keys" / "EROT-new.pem"
    cli(venue.data_dir, "session", "rotate-key", "EROT", "--key-out", str(new_pem))
    new_key = signing.load_private_key_file(new_pem)
    new_id = signing.key_id_for(new_key.public_key())
    time.sleep(1.6)
    for key, kid in ((old_key, old_id), (new_key, new_id)):  # the overlap: both work
        c = connect(venue, "EROT")
        c.signed_logon(key, kid)
        c.expect("A")
        c.send("5")
        c.expect("5")
        c.close()
    cli(venue.data_dir, "session", "retire-key", "EROT", old_id)
    time.sleep(1.6)
    c = connect(venue, "EROT")
    c.signed_logon(old_key, old_id)
    expect_refused(c)
    assert refusal(venue, "EROT", "key_retired").data["key_id"] == old_id
    c = connect(venue, "EROT")
    c.signed_logon(new_key, new_id)
    c.expect("A")
    c.close()


def order(cl: str, side: str, qty: str, price: str) -> list[tuple[int, object]]:
    return [(11, cl), (1, "DEMO1-ACC" if side == "1" else "DEMO2-ACC"), (55, "BTC-USDT"), (54, side),
            (60, fix_time()), (38, qty), (40, "2"), (44, price), (59, "1")]


def test_kyc_revoked_while_logged_on_logs_out_and_cancels_orders(venue):
    buyer = venue.client("DEMO1")
    buyer.send("D", order("KYC-B1", "1", "0.1", "60000"))
    new = buyer.expect("8")
    assert new.get_str(150) == "0", new
    cli(venue.data_dir, "account", "kyc", "DEMO1-ACC", "--status", "rejected")
    buyer.expect("5", timeout=5)
    buyer.send("5")
    assert buyer.closed()
    buyer.close()
    entries = audit_rows(venue, "session.kyc_logout", "DEMO1")
    assert entries and all("DEMO1-ACC KYC status is rejected" in e.data["reason"] for e in entries)
    # the buy order is gone: a sell at its price no longer trades
    seller = venue.client("DEMO2")
    seller.send("D", order("KYC-S1", "2", "0.1", "60000"))
    ack = seller.expect("8")
    assert (ack.get_str(150), ack.get_str(39)) == ("0", "0")
    later = seller.recv(timeout=1.0)
    assert later is None or later.get_str(150) != "F", f"the revoked account's order traded: {later!r}"
    seller.close()
    # and DEMO1 cannot log on again while its KYC is revoked
    again = FixClient("127.0.0.1", venue.port, "DEMO1")
    key, kid = venue.key("DEMO1")
    again.send("A", [(98, 0), (108, 30), (141, "Y")] + signing.signed_logon_fields(
        key, kid, "DEMO1", "VENUE", 1, st := fix_time()), seq=1, sending_time=st)
    expect_refused(again)


def test_kyc_expiring_while_logged_on_logs_out(venue):
    c = connect(venue, "EKYCX")
    key, kid = key_of(venue, "EKYCX")
    c.signed_logon(key, kid)
    c.expect("A")
    cli(venue.data_dir, "account", "kyc", "KYCX-ACC", "--status", "verified", "--expires", "2020-01-01", "--force")
    c.expect("5", timeout=5)
    c.send("5")  # answer the venue's Logout, as a client does
    assert c.closed()
    c.close()
    entries = audit_rows(venue, "session.kyc_logout", "EKYCX")
    assert entries and all("KYCX-ACC KYC expired on 2020-01-01" in e.data["reason"] for e in entries)


def test_audit_log_of_the_run_verifies_and_the_venue_is_still_up(venue):
    assert venue.alive
    out = cli(venue.data_dir, "audit", "verify")
    assert "audit log intact" in out
