"""Every attack on the withdrawal path is refused with a clear reason and changes no balance."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from tests.access_db import BACKENDS, database, engine_for
from tests.custody_env import BTC, CUSTOMERS, EXTERNAL, T0, Env, make_env
from venue import audit
from venue.custody import store
from venue.custody.policy import HOUR, NS
from venue.custody.requests import SignedApproval, SignedRequest, WithdrawalRequest, sign_request
from venue.custody.wallets import adjust
from venue.custody.workflow import Refused


def run(backend, tmp_path, body, **env_kw):
    with database(backend, tmp_path) as url:
        async def main():
            engine = engine_for(url)
            try:
                env = await make_env(engine, **env_kw)
                return await body(env)
            finally:
                await engine.dispose()

        return asyncio.run(main())


async def snapshot(env: Env) -> tuple:
    """Every customer balance (total, reserved) and every wallet book and chain balance."""
    sts = await env.custody.status()
    return (tuple(env.balance(a, asset) for a in CUSTOMERS for asset in ("BTC", "USDT")),
            tuple((s.asset, tuple(sorted(s.book.items())), tuple(sorted(s.chain.items())), s.in_flight)
                  for s in sts))


async def funded(env: Env, amount: int = 4 * BTC, account: str = "A2") -> tuple:
    await env.deposit(account, amount)
    return await snapshot(env)


async def refused(env: Env, coro, match: str, before: tuple) -> Refused:
    with pytest.raises(Refused) as info:
        await coro
    assert match in info.value.reason, info.value.reason
    assert await snapshot(env) == before
    return info.value


async def last_audit(env: Env, kind_prefix: str) -> audit.AuditEntry:
    entries = [e for e in await audit.tail(env.engine, 50) if e.kind.startswith(kind_prefix)]
    assert entries, f"no audit entry {kind_prefix}*"
    return entries[-1]


# ---- requests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_request_signed_with_another_key_is_refused_as_forged(backend, tmp_path):
    async def body(env):
        before = await funded(env)
        key_id, _ = env.customer_keys["A2"]
        forged = sign_request(Ed25519PrivateKey.generate(), key_id,
                              WithdrawalRequest("A2", "BTC", "0.5", EXTERNAL, "n-forged", T0 // NS + 600))
        await refused(env, env.custody.request_withdrawal(forged, T0), "bad signature", before)
        entry = await last_audit(env, "custody.request_refused")
        assert "bad signature" in entry.details

    run(backend, tmp_path, body)


@pytest.mark.parametrize("backend", BACKENDS)
def test_request_altered_after_signing_is_refused(backend, tmp_path):
    async def body(env):
        before = await funded(env)
        good = env.request("A2", BTC // 2)
        for change in ({"amount": "3"}, {"destination": "attacker-addr"}, {"account": "A1"}):
            altered = SignedRequest(dataclasses.replace(good.request, **change), good.key_id, good.signature)
            await refused(env, env.custody.request_withdrawal(altered, T0), "", before)
        # the untouched request still works (the refusals did not burn its nonce)
        assert (await env.custody.request_withdrawal(good, T0)).state == "approved"

    run(backend, tmp_path, body)


@pytest.mark.parametrize("backend", BACKENDS)
def test_replayed_request_is_refused(backend, tmp_path):
    async def body(env):
        await funded(env)
        signed = env.request("A2", BTC // 2)
        await env.custody.request_withdrawal(signed, T0)
        after_first = await snapshot(env)
        await refused(env, env.custody.request_withdrawal(signed, T0 + NS), "replayed request", after_first)
        # same nonce, new amount, properly signed: still a replay
        again = env.request("A2", BTC // 4, nonce=signed.request.nonce)
        await refused(env, env.custody.request_withdrawal(again, T0 + NS), "nonce", after_first)

    run(backend, tmp_path, body)


@pytest.mark.parametrize("backend", BACKENDS)
def test_expired_request_is_refused(backend, tmp_path):
    async def body(env):
        before = await funded(env)
        late = env.request("A2", BTC // 2, ttl=60)
        await refused(env, env.custody.request_withdrawal(late, T0 + 61 * NS), "expired", before)

    run(backend, tmp_path, body)


@pytest.mark.parametrize("backend", BACKENDS)
def test_destination_not_on_whitelist_is_refused(backend, tmp_path):
    async def body(env):
        before = await funded(env)
        e = await refused(env, env.custody.request_withdrawal(
            env.request("A2", BTC // 2, destination="somewhere-else"), T0), "not on the whitelist", before)
        assert (await env.custody.get(e.request_id)).state == "rejected"
        assert (await env.custody.get(e.request_id)).funds == "released"

    run(backend, tmp_path, body)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fresh_whitelist_address_is_refused_until_its_time_lock_passes(backend, tmp_path):
    async def body(env):
        before = await funded(env)
        usable_from = await env.custody.add_address("A2", "BTC", "new-addr", T0)
        assert usable_from == T0 + 24 * HOUR
        await refused(env, env.custody.request_withdrawal(
            env.request("A2", BTC // 2, destination="new-addr", now=T0 + 23 * HOUR), T0 + 23 * HOUR),
            "whitelisted too recently", before)
        later = T0 + 24 * HOUR + NS
        view = await env.custody.request_withdrawal(env.request("A2", BTC // 2, destination="new-addr",
                                                                now=later), later)
        assert view.state == "approved"

    run(backend, tmp_path, body)


@pytest.mark.parametrize("backend", BACKENDS)
def test_withdrawal_above_the_tier_limit_is_refused(backend, tmp_path):
    async def body(env):
        # A1 is KYC tier 1: 2 BTC per withdrawal, 3 BTC per 24 h
        before = await funded(env, 10 * BTC, "A1")
        await refused(env, env.custody.request_withdrawal(env.request("A1", 2 * BTC + 1), T0),
                      "above the tier 1 limit per withdrawal", before)
        first = await env.custody.request_withdrawal(env.request("A1", 2 * BTC), T0)
        assert first.state == "pending_approval"
        mid = await snapshot(env)
        await refused(env, env.custody.request_withdrawal(env.request("A1", BTC + 1, now=T0 + HOUR), T0 + HOUR),
                      "24 h limit", mid)

    run(backend, tmp_path, body)


@pytest.mark.parametrize("backend", BACKENDS)
def test_withdrawal_above_the_hot_wallet_caps_is_refused(backend, tmp_path):
    async def body(env):
        # tier 2 may take 50 BTC a day, but the hot wallet pays at most 5 per tx and 20 per 24 h
        before = await funded(env, 40 * BTC, "A2")
        await refused(env, env.custody.request_withdrawal(env.request("A2", 5 * BTC + 1), T0),
                      "hot wallet per-transaction cap", before)
        await env.deposit("A3", 40 * BTC)
        for i in range(4):
            v = await env.custody.request_withdrawal(env.request("A2" if i % 2 else "A3", 5 * BTC), T0 + i)
            assert v.state == "pending_approval"
        full = await snapshot(env)
        await refused(env, env.custody.request_withdrawal(env.request("A2", BTC // 2), T0 + 10),
                      "hot wallet 24 h cap", full)

    run(backend, tmp_path, body)


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_concurrent_withdrawals_cannot_spend_the_same_balance(backend, tmp_path):
    async def body(env):
        await funded(env, BTC, "A2")
        a, b = env.request("A2", 3 * BTC // 4), env.request("A2", 3 * BTC // 4)
        results = await asyncio.gather(env.custody.request_withdrawal(a, T0), env.custody.request_withdrawal(b, T0),
                                       return_exceptions=True)
        ok = [r for r in results if not isinstance(r, Exception)]
        bad = [r for r in results if isinstance(r, Exception)]
        assert len(ok) == 1 and len(bad) == 1
        assert isinstance(bad[0], Refused) and "insufficient available balance" in bad[0].reason
        assert env.balance("A2") == (BTC, 3 * BTC // 4)  # one hold only
        await env.settle(T0)
        assert env.balance("A2") == (BTC // 4, 0)
        assert await env.chain.balance(EXTERNAL, "BTC") == 3 * BTC // 4

    run(backend, tmp_path, body)


# ---- approvals -----------------------------------------------------------------------------------


async def pending(env: Env, amount: int = 3 * BTC) -> str:
    await env.deposit("A2", 4 * BTC)
    view = await env.custody.request_withdrawal(env.request("A2", amount), T0)
    assert view.state == "pending_approval" and view.approvals_required == 2
    return view.id


@pytest.mark.parametrize("backend", BACKENDS)
def test_forged_approval_is_refused(backend, tmp_path):
    async def body(env):
        rid = await pending(env)
        before = await snapshot(env)
        forged = await env.approval("op1", rid, key=Ed25519PrivateKey.generate())
        await refused(env, env.custody.decide(forged, T0), "bad approval signature", before)
        # an approval signed by op2 but claiming to be op1's
        stolen = await env.approval("op1", rid, key=env.operator_keys["op2"])
        await refused(env, env.custody.decide(stolen, T0), "bad approval signature", before)
        assert (await env.custody.get(rid)).approvals == ()
        assert "bad approval signature" in (await last_audit(env, "custody.approval_refused")).details

    run(backend, tmp_path, body)


@pytest.mark.parametrize("backend", BACKENDS)
def test_replayed_approval_is_refused(backend, tmp_path):
    async def body(env):
        rid = await pending(env)
        ap = await env.approval("op1", rid)
        await env.custody.decide(ap, T0)
        before = await snapshot(env)
        await refused(env, env.custody.decide(ap, T0 + NS), "replayed approval", before)
        # replayed onto another request: the digest and request id are signed, so it is refused
        await env.deposit("A3", 4 * BTC)
        second = await env.custody.request_withdrawal(env.request("A3", 3 * BTC), T0)
        moved = dataclasses.replace(ap.approval, request_id=second.id, digest=second.digest)
        await refused(env, env.custody.decide(SignedApproval(moved, ap.signature), T0), "bad approval signature",
                      await snapshot(env))
        assert [a.operator for a in (await env.custody.get(rid)).approvals] == ["op1"]
        assert (await env.custody.get(rid)).state == "pending_approval"

    run(backend, tmp_path, body)


@pytest.mark.parametrize("backend", BACKENDS)
def test_initiator_cannot_approve_their_own_top_up(backend, tmp_path):
    async def body(env):
        await env.deposit("A2", 4 * BTC)
        # move funds to cold so a top-up is possible
        sweep = await env.custody.sweep("BTC", T0)
        assert sweep is None  # 4 BTC is below target: nothing to sweep
        async with env.engine.begin() as conn:  # put 3 BTC in cold (the chain agrees)
            await adjust(conn, "BTC", "hot", -3 * BTC)
            await adjust(conn, "BTC", "cold", 3 * BTC)
        topup = await env.custody.propose_topup("BTC", BTC, "op1", T0)
        before = await snapshot(env)
        await refused(env, env.custody.decide(await env.approval("op1", topup.id), T0),
                      "initiated this request and cannot approve it", before)
        assert (await env.custody.get(topup.id)).approvals == ()

    run(backend, tmp_path, body)


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_operator_cannot_approve_twice(backend, tmp_path):
    async def body(env):
        rid = await pending(env)
        await env.custody.decide(await env.approval("op1", rid), T0)
        before = await snapshot(env)
        await refused(env, env.custody.decide(await env.approval("op1", rid), T0 + NS), "already decided", before)
        view = await env.custody.get(rid)
        assert view.state == "pending_approval" and len(view.approvals) == 1

    run(backend, tmp_path, body)


@pytest.mark.parametrize("backend", BACKENDS)
def test_expired_approval_is_refused_and_stale_approvals_do_not_count(backend, tmp_path):
    async def body(env):
        rid = await pending(env)
        before = await snapshot(env)
        stale = await env.approval("op1", rid, ttl=60)
        await refused(env, env.custody.decide(stale, T0 + 61 * NS), "approval expired", before)
        await env.custody.decide(await env.approval("op2", rid, ttl=60), T0)
        # op2's approval has lapsed by the time op3 approves: one valid approval of two needed
        late = T0 + 120 * NS
        view = await env.custody.decide(await env.approval("op3", rid, now=late), late)
        assert view.state == "pending_approval"
        view = await env.custody.decide(await env.approval("op4", rid, now=late), late)
        assert view.state == "approved"

    run(backend, tmp_path, body)


@pytest.mark.parametrize("backend", BACKENDS)
def test_operator_without_approver_role_cannot_approve(backend, tmp_path):
    async def body(env):
        rid = await pending(env)
        before = await snapshot(env)
        await refused(env, env.custody.decide(await env.approval("viewer1", rid, key=Ed25519PrivateKey.generate()),
                                              T0), "not an operator allowed to approve", before)

    run(backend, tmp_path, body)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_rejection_ends_the_request_and_releases_its_funds(backend, tmp_path):
    async def body(env):
        rid = await pending(env)
        assert env.balance("A2") == (4 * BTC, 3 * BTC)
        await env.custody.decide(await env.approval("op1", rid), T0)
        view = await env.custody.decide(await env.approval("op2", rid, "reject"), T0)
        assert view.state == "rejected" and "rejected by op2" in view.reason and view.funds == "released"
        assert env.balance("A2") == (4 * BTC, 0)
        with pytest.raises(Refused, match="not pending approval"):
            await env.custody.decide(await env.approval("op3", rid), T0)
        async with env.engine.connect() as conn:
            kinds = [r.to_state for r in (await conn.execute(
                select(store.transitions).where(store.transitions.c.request_id == rid))).all()]
        assert kinds == ["requested", "screened", "pending_approval", "rejected"]

    run(backend, tmp_path, body)


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_custody_workers_cannot_spend_the_same_balance_or_replay_a_request(backend, tmp_path):
    async def body(env):
        from venue.custody.workflow import Custody

        await funded(env, BTC, "A2")
        other = Custody(env.engine, env.chain, env.custody.ledger, env.custody.directory, env.custody.signer,
                        env.custody.assets)  # a second worker: its own lock, the same database and core
        same = env.request("A2", BTC // 2)
        results = await asyncio.gather(env.custody.request_withdrawal(same, T0), other.request_withdrawal(same, T0),
                                       return_exceptions=True)
        assert sorted(type(r).__name__ for r in results) == ["Refused", "RequestView"], results
        assert "replayed request" in next(r for r in results if isinstance(r, Refused)).reason
        a, b = env.request("A2", 3 * BTC // 8), env.request("A2", 3 * BTC // 8)
        results = await asyncio.gather(env.custody.request_withdrawal(a, T0), other.request_withdrawal(b, T0),
                                       return_exceptions=True)
        assert sorted(type(r).__name__ for r in results) == ["Refused", "RequestView"], results
        assert env.balance("A2") == (BTC, BTC // 2 + 3 * BTC // 8)

    run(backend, tmp_path, body)


@pytest.mark.parametrize("backend", BACKENDS)
def test_whitelist_addition_must_be_signed_by_the_customer_and_cannot_be_replayed(backend, tmp_path):
    async def body(env):
        from venue.custody.requests import AddressAddition, sign_address

        key_id, key = env.customer_keys["A2"]
        add = AddressAddition("A2", "BTC", "attacker-addr", "", "addr-n1", T0 // NS + 300)
        forged = sign_address(Ed25519PrivateKey.generate(), key_id, add)
        with pytest.raises(Refused, match="bad signature"):
            await env.custody.add_address_signed(forged, T0)
        good = sign_address(key, key_id, add)
        with pytest.raises(Refused, match="expired"):
            await env.custody.add_address_signed(good, T0 + 301 * NS)
        assert await env.custody.add_address_signed(good, T0) == T0 + 24 * HOUR
        with pytest.raises(Refused, match="replayed"):
            await env.custody.add_address_signed(good, T0 + NS)
        async with env.engine.connect() as conn:
            rows = (await conn.execute(select(store.whitelist.c.address).where(
                store.whitelist.c.account == "A2", store.whitelist.c.asset == "BTC"))).scalars().all()
        assert sorted(rows) == sorted([EXTERNAL, "attacker-addr"])
        refusals = [e.details for e in await audit.tail(env.engine, 50) if e.kind == "custody.address_refused"]
        assert len(refusals) == 3 and "bad signature" in refusals[0] and "replayed" in refusals[2]

    run(backend, tmp_path, body)
