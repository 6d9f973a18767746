"""The registry: firms, accounts with KYC, FIX sessions with keys and allow-lists, operators."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal

import pytest

from tests.access_db import BACKENDS, database, engine_for
from venue import audit, demo, registry
from venue.access import signing
from venue.registry import RegistryError


def run(url, body):
    async def main():
        engine = engine_for(url)
        try:
            await registry.create_schema(engine)
            return await body(engine)
        finally:
            await engine.dispose()

    return asyncio.run(main())


async def _firm_and_account(engine, account="A1", **kw):
    await registry.create_firm(engine, "F1", "Firm one")
    await registry.create_account(engine, account, "F1", **kw)


@pytest.mark.parametrize("backend", BACKENDS)
def test_session_round_trips_with_accounts_networks_and_settings(backend, tmp_path):
    async def body(engine):
        await _firm_and_account(engine, kyc_status="verified", max_order_qty="5", max_order_notional="1000.5")
        await registry.create_session(
            engine, "C1", firm_id="F1", kind="drop_copy", target_comp_id="VENUE2", entitled_accounts=["A1"],
            allowed_networks=["10.1.2.0/24", "2001:db8::/32"], heartbeat_min=10, heartbeat_max=60,
            throttle_rate=7.5, throttle_burst=9, cancel_on_disconnect=False, spare_gtc=True,
            require_signature=False,
        )
        [s] = await registry.load_sessions(engine)
        [a] = await registry.load_accounts(engine)
        return s, a

    with database(backend, tmp_path) as url:
        s, a = run(url, body)
    assert (s.sender_comp_id, s.target_comp_id, s.kind, s.firm_id) == ("C1", "VENUE2", "drop_copy", "F1")
    assert s.accounts == ("A1",)
    assert s.allowed_networks == ("10.1.2.0/24", "2001:db8::/32")
    assert (s.heartbeat_min, s.heartbeat_max, s.throttle_rate, s.throttle_burst) == (10, 60, 7.5, 9)
    assert (s.cancel_on_disconnect, s.spare_gtc, s.enabled, s.require_signature) == (False, True, True, False)
    assert a.max_order_qty == Decimal("5") and a.max_order_notional == Decimal("1000.5")
    assert a.kyc_status == "verified"


def test_allow_list_matches_ipv4_ipv6_and_mapped_addresses():
    s = registry.SessionRecord("C", "VENUE", "order_entry", "F", (), ("127.0.0.1/32", "::1/128"),
                               5, 60, 1.0, 1, True, False, True, True)
    assert s.allows("127.0.0.1")
    assert s.allows("::ffff:127.0.0.1")
    assert s.allows("::1")
    assert not s.allows("127.0.0.2")
    assert not s.allows("not-an-ip")


@pytest.mark.parametrize("backend", BACKENDS)
def test_kyc_change_updates_status_tier_and_expiry(backend, tmp_path):
    async def body(engine):
        await _firm_and_account(engine)
        old = await registry.set_kyc(engine, "A1", "verified", tier=2, expires=date(2030, 1, 2))
        [a] = await registry.load_accounts(engine)
        return old, a

    with database(backend, tmp_path) as url:
        old, a = run(url, body)
    assert old.kyc_status == "pending"
    assert (a.kyc_status, a.tier, a.kyc_expires) == ("verified", 2, date(2030, 1, 2))
    assert a.kyc_problem(date(2030, 1, 2)) is None
    assert "expired" in a.kyc_problem(date(2030, 1, 3))


@pytest.mark.parametrize("backend", BACKENDS)
def test_at_most_two_active_keys_and_retired_keys_are_kept(backend, tmp_path):
    async def body(engine):
        await _firm_and_account(engine)
        await registry.create_session(engine, "C1", firm_id="F1", entitled_accounts=["A1"])
        for kid in ("k1", "k2"):
            await registry.add_session_key(engine, "C1", kid, signing.public_key_b64(signing.generate_key().public_key()))
        with pytest.raises(RegistryError, match="retire one first"):
            await registry.add_session_key(engine, "C1", "k3", "x")
        await registry.retire_session_key(engine, "C1", "k1")
        await registry.add_session_key(engine, "C1", "k3", signing.public_key_b64(signing.generate_key().public_key()))
        return await registry.load_session(engine, "C1")

    with database(backend, tmp_path) as url:
        s = run(url, body)
    assert {k.key_id: k.state for k in s.keys} == {"k1": "retired", "k2": "active", "k3": "active"}
    assert [k.key_id for k in s.active_keys] == ["k2", "k3"]
    assert next(k for k in s.keys if k.key_id == "k1").retired_ns is not None


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input_is_refused_with_a_clear_error(backend, tmp_path):
    async def body(engine):
        await _firm_and_account(engine)
        await registry.create_firm(engine, "F2")
        await registry.create_account(engine, "B1", "F2")
        errors = []
        for call in (
            registry.create_session(engine, "C1", firm_id="NOPE"),
            registry.create_session(engine, "C1", firm_id="F1", kind="weird"),
            registry.create_session(engine, "C1", firm_id="F1", allowed_networks=["300.1.1.1/8"]),
            registry.create_session(engine, "C1", firm_id="F1", entitled_accounts=["B1"]),
            registry.set_kyc(engine, "A1", "approved"),
            registry.set_kyc(engine, "NOPE", "verified"),
            registry.create_account(engine, "A1", "F1"),
        ):
            with pytest.raises(RegistryError) as info:
                await call
            errors.append(str(info.value))
        assert await registry.load_sessions(engine) == []
        return errors

    with database(backend, tmp_path) as url:
        errors = run(url, body)
    assert "unknown firm NOPE" in errors[0]
    assert "kind" in errors[1]
    assert "CIDR" in errors[2]
    assert "belongs to firm F2" in errors[3]
    assert "KYC status" in errors[4]
    assert "unknown account NOPE" in errors[5]
    assert "already exists" in errors[6]


@pytest.mark.parametrize("backend", BACKENDS)
def test_demo_seed_creates_sessions_and_usable_key_files_and_is_idempotent(backend, tmp_path):
    async def body(engine):
        await demo.seed_demo(engine, tmp_path)
        first = await registry.load_sessions(engine)
        await demo.seed_demo(engine, tmp_path)
        second = await registry.load_sessions(engine)
        accounts = await registry.load_accounts(engine)
        n_audit = len(await audit.entries(engine))
        return first, second, accounts, n_audit

    with database(backend, tmp_path) as url:
        first, second, accounts, n_audit = run(url, body)
    assert first == second
    assert n_audit == 1
    by = {s.sender_comp_id: s for s in first}
    assert set(by) == {"DEMO1", "DEMO2", "DEMODC", "DEMOMD"}
    assert by["DEMO1"].accounts == ("DEMO1-ACC",) and by["DEMO2"].accounts == ("DEMO2-ACC",)
    assert by["DEMODC"].kind == "drop_copy" and by["DEMODC"].accounts == ("DEMO1-ACC", "DEMO2-ACC")
    assert by["DEMOMD"].kind == "market_data"
    assert by["DEMO1"].allowed_networks == ("127.0.0.0/8", "::1/128")
    assert all(a.kyc_status == "verified" and a.tier == 1 and a.kyc_expires.year >= 2099 for a in accounts)
    for sender, s in by.items():
        key, key_id = demo.load_demo_key(tmp_path, sender)
        [active] = s.active_keys
        assert active.key_id == key_id
        assert active.public_key == signing.public_key_b64(key.public_key())
        assert (tmp_path / "demo-keys" / f"{sender}.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_demo_seed_replaces_a_lost_key_file_and_retires_the_old_key(backend, tmp_path):
    async def body(engine):
        await demo.seed_demo(engine, tmp_path)
        _, old_id = demo.load_demo_key(tmp_path, "DEMO1")
        (tmp_path / "demo-keys" / "DEMO1.pem").unlink()
        await demo.seed_demo(engine, tmp_path)
        return old_id, await registry.load_session(engine, "DEMO1")

    with database(backend, tmp_path) as url:
        old_id, s = run(url, body)
    _, new_id = demo.load_demo_key(tmp_path, "DEMO1")
    assert new_id != old_id
    assert [k.key_id for k in s.active_keys] == [new_id]
    assert {k.key_id: k.state for k in s.keys}[old_id] == "retired"
