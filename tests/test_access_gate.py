"""The access gate: every refusal reason, lockouts, key rotation, KYC re-checks."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from tests.access_db import BACKENDS, database, engine_for
from venue import audit, demo, registry
from venue.access import signing
from venue.access.gate import AccessGate, GateConfig, parse_utc_timestamp, record_decision
from venue.registry import AccountRecord, SessionKey, SessionRecord

NOW = parse_utc_timestamp("20260115-12:00:00.000")
S = 1_000_000_000
TODAY = date(2026, 1, 15)


def ts(ns: int) -> str:
    dt = datetime.fromtimestamp(ns // S, tz=UTC)
    return dt.strftime("%Y%m%d-%H:%M:%S") + f".{(ns % S) // 1_000_000:03d}"


class World:
    """One firm, one account, one session with one key; helpers to build logons."""

    def __init__(self, *, kyc="verified", expires=date(2030, 1, 1), networks=("127.0.0.1/32", "::1/128"),
                 config=None, extra_keys=()):
        self.key = signing.generate_key()
        self.key_id = signing.key_id_for(self.key.public_key())
        keys = [SessionKey(self.key_id, "C1", signing.public_key_b64(self.key.public_key()), "active", 0, None)]
        keys += list(extra_keys)
        self.session = SessionRecord("C1", "VENUE", "order_entry", "F1", ("A1",), tuple(networks), 5, 60, 10.0,
                                     10, True, False, True, True, tuple(keys))
        self.account = AccountRecord("A1", "F1", kyc, 1, expires, "T", None, None)
        self.gate = AccessGate([self.session], [self.account], config or GateConfig())

    def fields(self, *, seq=1, sent=NOW, key=None, key_id=None, sender="C1", target="VENUE"):
        st = ts(sent)
        out = {35: "A", 34: str(seq), 52: st}
        out.update(signing.signed_logon_fields(key or self.key, key_id or self.key_id, sender, target, seq, st))
        return out

    def logon(self, fields=None, *, ip="127.0.0.1", now=NOW, sender="C1", target="VENUE"):
        return self.gate.check_logon(sender, target, fields if fields is not None else self.fields(), ip, now)


def test_valid_signed_logon_is_accepted():
    d = World().logon()
    assert d.ok and d.code == "accepted" and d.session.sender_comp_id == "C1"


def test_unknown_comp_id_is_refused():
    w = World()
    d = w.logon(w.fields(sender="NOBODY"), sender="NOBODY")
    assert (d.ok, d.code, d.session) == (False, "unknown_session", None)


def test_disabled_session_is_refused():
    w = World()
    w.gate = AccessGate([replace(w.session, enabled=False)], [w.account])
    assert w.logon().code == "session_disabled"


def test_wrong_target_comp_id_is_refused():
    w = World()
    assert w.logon(w.fields(target="OTHER"), target="OTHER").code == "wrong_target"


def test_bad_signature_is_refused():
    w = World()
    f = w.fields()
    f[96] = signing.sign_logon(w.key, "A", "C1", "VENUE", 2, f[52])  # signed for another MsgSeqNum
    d = w.logon(f)
    assert (d.ok, d.code) == (False, "bad_signature")


def test_raw_data_length_that_does_not_match_is_refused():
    w = World()
    f = w.fields()
    f[95] = str(int(f[95]) + 1)
    assert w.logon(f).code == "bad_signature"


def test_signature_by_another_key_under_a_valid_key_id_is_refused():
    w = World()
    d = w.logon(w.fields(key=signing.generate_key(), key_id=w.key_id))
    assert d.code == "bad_signature"


def test_unknown_key_id_is_refused():
    w = World()
    d = w.logon(w.fields(key_id="0123456789abcdef"))
    assert (d.ok, d.code) == (False, "unknown_key")


def test_missing_signature_is_refused():
    w = World()
    d = w.logon({35: "A", 34: "1", 52: ts(NOW)})
    assert d.code == "signature_missing"


def test_stale_sending_time_is_refused():
    w = World()
    d = w.logon(w.fields(sent=NOW - 6 * S))
    assert (d.ok, d.code) == (False, "sending_time_stale")


def test_future_sending_time_is_refused():
    w = World()
    d = w.logon(w.fields(sent=NOW + 6 * S))
    assert (d.ok, d.code) == (False, "sending_time_future")


def test_sending_time_inside_the_window_both_ways_is_accepted():
    w = World()
    assert w.logon(w.fields(seq=1, sent=NOW - 4 * S)).ok
    assert w.logon(w.fields(seq=2, sent=NOW + 4 * S)).ok


def test_window_is_configurable():
    w = World(config=GateConfig(logon_window_s=30))
    assert w.logon(w.fields(sent=NOW - 20 * S)).ok


def test_replayed_logon_is_refused():
    w = World()
    f = w.fields()
    assert w.logon(f).ok
    d = w.logon(dict(f), now=NOW + S)
    assert (d.ok, d.code) == (False, "replayed")


def test_replay_memory_survives_a_registry_reload(tmp_path):
    async def main(url):
        engine = engine_for(url)
        try:
            await demo.seed_demo(engine, tmp_path)
            gate = await AccessGate.load(engine)
            key, kid = demo.load_demo_key(tmp_path, "DEMO1")
            f = _signed(key, kid, "DEMO1", 1)
            first = gate.check_logon("DEMO1", "VENUE", f, "127.0.0.1", NOW)
            await gate.reload(engine)
            second = gate.check_logon("DEMO1", "VENUE", f, "127.0.0.1", NOW)
            return first, second
        finally:
            await engine.dispose()

    with database("sqlite", tmp_path) as url:
        first, second = asyncio.run(main(url))
    assert first.ok and second.code == "replayed"


def test_address_outside_the_allow_list_is_refused():
    w = World()
    d = w.logon(ip="127.0.0.2")
    assert (d.ok, d.code) == (False, "address_not_allowed")
    assert "127.0.0.2" in d.reason


def test_connection_allowed_only_from_addresses_some_enabled_session_allows():
    w = World()
    assert w.gate.allows_address("127.0.0.1")
    assert w.gate.allows_address("::1")
    assert w.gate.allows_address("::ffff:127.0.0.1")
    assert not w.gate.allows_address("127.0.0.2")


def test_unverified_kyc_is_refused():
    for status in ("pending", "rejected", "expired"):
        d = World(kyc=status).logon()
        assert (d.ok, d.code) == (False, "kyc")
        assert status in d.reason


def test_expired_kyc_date_is_refused():
    d = World(expires=date(2026, 1, 14)).logon()
    assert (d.ok, d.code) == (False, "kyc")
    assert "expired on 2026-01-14" in d.reason


def test_kyc_valid_through_its_expiry_day():
    assert World(expires=TODAY).logon().ok


def test_lockout_after_repeated_failures_refuses_guesses_but_never_a_good_signature():
    w = World(config=GateConfig(lockout_failures=3, lockout_seconds=60))
    for i in range(3):
        assert w.logon(w.fields(seq=i + 1, key_id="0000000000000000")).code == "unknown_key"
    assert w.gate.is_locked_out("127.0.0.1", None, NOW)
    assert not w.gate.is_locked_out(None, "C1", NOW)  # an unknown key id counts against the address only
    d = w.logon(w.fields(seq=9, key_id="0000000000000000"))
    assert (d.ok, d.code) == (False, "locked_out")
    assert w.logon(w.fields(seq=10)).ok  # a signature cannot be guessed: never refused for a lockout
    assert w.logon(w.fields(seq=11, key_id="0000000000000000")).code == "locked_out"  # and it lifts nothing


def test_lockout_expires_after_the_configured_time():
    w = World(config=GateConfig(lockout_failures=3, lockout_seconds=60))
    for i in range(3):
        w.logon(w.fields(seq=i + 1, key_id="0000000000000000"))
    assert w.logon(w.fields(seq=9, key_id="0000000000000000")).code == "locked_out"
    later = NOW + 61 * S
    assert w.logon(w.fields(seq=10, sent=later, key_id="0000000000000000"), now=later).code == "unknown_key"


def test_lockout_counts_bad_signatures_per_comp_id_across_addresses():
    w = World(networks=("127.0.0.0/8",), config=GateConfig(lockout_failures=3, lockout_seconds=60))
    forger = signing.generate_key()
    for i in range(3):  # its real key id, signed with another key
        assert w.logon(w.fields(seq=i + 1, key=forger), ip=f"127.0.0.{10 + i}").code == "bad_signature"
    d = w.logon(w.fields(seq=9, key=forger), ip="127.0.0.50")
    assert d.code == "locked_out" and "CompID C1" in d.reason
    assert w.logon(w.fields(seq=10), ip="127.0.0.51").ok  # its owner's signature still logs on


def test_lockout_counts_failures_per_address_across_comp_ids():
    w = World(config=GateConfig(lockout_failures=3, lockout_seconds=60))
    for i in range(3):
        w.logon(w.fields(sender=f"X{i}"), sender=f"X{i}")  # unknown CompIDs from one address
    d = w.logon(w.fields(seq=9, key_id="0000000000000000"))
    assert d.code == "locked_out" and "address 127.0.0.1" in d.reason


def test_failures_older_than_the_window_do_not_add_up():
    w = World(config=GateConfig(lockout_failures=3, lockout_seconds=60, failure_window_s=10))
    for i in range(3):
        t = NOW + i * 11 * S
        w.logon(w.fields(seq=i + 1, sent=t, key_id="0000000000000000"), now=t)
    t = NOW + 40 * S
    assert w.logon(w.fields(seq=10, sent=t, key_id="0000000000000000"), now=t).code == "unknown_key"


def test_unsigned_logon_accepted_only_for_sessions_that_do_not_require_signatures():
    w = World()
    w.gate = AccessGate([registry.SessionRecord(
        "CERT", "VENUE", "order_entry", "F1", ("A1",), ("127.0.0.1/32",), 5, 60, 10.0, 10, True, False, True,
        False)], [w.account])
    assert w.gate.check_logon("CERT", "VENUE", {35: "A", 34: "1", 52: ts(NOW)}, "127.0.0.1", NOW).ok


def test_key_rotation_overlap_then_retirement():
    new_key = signing.generate_key()
    new_id = signing.key_id_for(new_key.public_key())
    w = World(extra_keys=[SessionKey(new_id, "C1", signing.public_key_b64(new_key.public_key()), "active", 1, None)])
    assert w.logon(w.fields(seq=1)).ok
    assert w.logon(w.fields(seq=2, key=new_key, key_id=new_id)).ok
    # retire the old key
    s = w.session
    retired = tuple(SessionKey(k.key_id, k.sender_comp_id, k.public_key, "retired" if k.key_id == w.key_id else
                               k.state, k.created_ns, k.retired_ns) for k in s.keys)
    w.gate = AccessGate([replace(s, keys=retired)], [w.account])
    assert w.logon(w.fields(seq=3)).code == "key_retired"
    assert w.logon(w.fields(seq=4, key=new_key, key_id=new_id)).ok


@pytest.mark.parametrize("backend", BACKENDS)
def test_key_rotation_through_the_registry_and_reload(backend, tmp_path):
    async def main(url):
        engine = engine_for(url)
        try:
            await demo.seed_demo(engine, tmp_path)
            gate = await AccessGate.load(engine)
            old_key, old_id = demo.load_demo_key(tmp_path, "DEMO1")
            new_key = signing.generate_key()
            new_id = signing.key_id_for(new_key.public_key())
            await registry.add_session_key(engine, "DEMO1", new_id, signing.public_key_b64(new_key.public_key()))
            await gate.reload(engine)
            results = []
            for seq, (key, kid) in enumerate([(old_key, old_id), (new_key, new_id)], start=1):
                results.append(gate.check_logon("DEMO1", "VENUE", _signed(key, kid, "DEMO1", seq), "127.0.0.1", NOW).code)
            await registry.retire_session_key(engine, "DEMO1", old_id)
            await gate.reload(engine)
            for seq, (key, kid) in enumerate([(old_key, old_id), (new_key, new_id)], start=3):
                results.append(gate.check_logon("DEMO1", "VENUE", _signed(key, kid, "DEMO1", seq), "127.0.0.1", NOW).code)
            return results
        finally:
            await engine.dispose()

    with database(backend, tmp_path) as url:
        codes = asyncio.run(main(url))
    assert codes == ["accepted", "accepted", "key_retired", "accepted"]


def _signed(key, kid, sender, seq, sent=NOW):
    st = ts(sent)
    return {35: "A", 34: str(seq), 52: st, **dict(signing.signed_logon_fields(key, kid, sender, "VENUE", seq, st))}


@pytest.mark.parametrize("backend", BACKENDS)
def test_kyc_violations_lists_sessions_after_revocation_and_expiry(backend, tmp_path):
    async def main(url):
        engine = engine_for(url)
        try:
            await demo.seed_demo(engine, tmp_path)
            gate = await AccessGate.load(engine)
            before = gate.kyc_violations(NOW)
            await registry.set_kyc(engine, "DEMO1-ACC", "rejected")
            await gate.reload(engine)
            revoked = gate.kyc_violations(NOW)
            await registry.set_kyc(engine, "DEMO1-ACC", "verified")
            await registry.set_kyc(engine, "DEMO2-ACC", "verified", expires=date(2026, 1, 14))
            await gate.reload(engine)
            expired = gate.kyc_violations(NOW)
            return before, revoked, expired
        finally:
            await engine.dispose()

    with database(backend, tmp_path) as url:
        before, revoked, expired = asyncio.run(main(url))
    assert before == []
    # DEMOMD has no entitled accounts: its firm's accounts (all of them) gate it
    assert sorted(revoked) == ["DEMO1", "DEMODC", "DEMOMD"]
    assert sorted(expired) == ["DEMO2", "DEMODC", "DEMOMD"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_refusal_is_audited_with_exact_reason_and_source(backend, tmp_path):
    async def main(url):
        engine = engine_for(url)
        try:
            await demo.seed_demo(engine, tmp_path)
            gate = await AccessGate.load(engine)
            key, kid = demo.load_demo_key(tmp_path, "DEMO1")
            d = gate.check_logon("DEMO1", "VENUE", _signed(key, kid, "DEMO1", 1, NOW - 60 * S), "127.0.0.1", NOW)
            await record_decision(engine, d, "DEMO1", "127.0.0.1")
            return await audit.entries(engine, kind="logon.refused")
        finally:
            await engine.dispose()

    with database(backend, tmp_path) as url:
        [entry] = asyncio.run(main(url))
    assert (entry.subject, entry.source) == ("DEMO1", "127.0.0.1")
    assert entry.data["code"] == "sending_time_stale" and "60.000 s old" in entry.data["reason"]


def test_parse_utc_timestamp_precisions():
    base = parse_utc_timestamp("20240627-11:17:25")
    assert parse_utc_timestamp("20240627-11:17:25.223") == base + 223_000_000
    assert parse_utc_timestamp("20240627-11:17:25.223456789") == base + 223_456_789
    with pytest.raises(ValueError):
        parse_utc_timestamp("2024-06-27T11:17:25")
