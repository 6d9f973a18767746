"""The withdrawal state machine: approvals, time-lock, broadcast retries, expiry, hot-wallet management."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from tests.access_db import BACKENDS, database, engine_for
from tests.custody_env import BTC, EXTERNAL, T0, default_policy, make_env
from venue.custody import store
from venue.custody.policy import HOUR, NS
from venue.custody.ports import LedgerRefused
from venue.custody.workflow import OPEN, TERMINAL, TRANSITIONS, Custody, Refused, State, TransitionError


def run(backend, tmp_path, body, **env_kw):
    with database(backend, tmp_path) as url:
        async def main():
            engine = engine_for(url)
            try:
                return await body(await make_env(engine, **env_kw))
            finally:
                await engine.dispose()

        return asyncio.run(main())


def states(view) -> list[str]:
    return [h[2] for h in view.history]


def test_transition_table_has_exits_from_every_open_state_and_none_from_ends():
    assert TERMINAL == {State.CONFIRMED, State.REJECTED, State.EXPIRED, State.CANCELLED, State.FAILED}
    for s in OPEN:
        assert TRANSITIONS[s], s
    # every state is reachable from requested
    seen, todo = {State.REQUESTED}, [State.REQUESTED]
    while todo:
        for n in TRANSITIONS[todo.pop()]:
            if n not in seen:
                seen.add(n)
                todo.append(n)
    assert seen == set(State)
    # nothing skips approval or signing
    assert State.BROADCAST not in TRANSITIONS[State.APPROVED]
    assert State.SIGNING not in TRANSITIONS[State.PENDING_APPROVAL]


def test_a_move_outside_the_table_raises_at_the_one_place_states_change(tmp_path):
    async def body(env):
        await env.deposit("A2", 4 * BTC)
        view = await env.custody.request_withdrawal(env.request("A2", 3 * BTC), T0)
        async with env.engine.begin() as conn:
            with pytest.raises(TransitionError, match="pending_approval -> broadcast"):
                await env.custody._move(conn, view.id, State.PENDING_APPROVAL, State.BROADCAST, T0)
            with pytest.raises(TransitionError, match="no longer approved"):
                await env.custody._move(conn, view.id, State.APPROVED, State.SIGNING, T0)

    run("sqlite", tmp_path, body)


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_withdrawal_waits_for_quorum_and_time_lock_then_is_paid_once(backend, tmp_path):
    policy = default_policy()
    policy = type(policy)(**{**{f: getattr(policy, f) for f in policy.__dataclass_fields__},
                             "approval_timelock_ns": HOUR})

    async def body(env):
        await env.deposit("A2", 4 * BTC)
        view = await env.custody.request_withdrawal(env.request("A2", 3 * BTC), T0)
        assert view.state == "pending_approval" and env.balance("A2") == (4 * BTC, 3 * BTC)
        await env.settle(T0)  # nothing moves without approvals
        assert (await env.custody.get(view.id)).state == "pending_approval"
        await env.custody.decide(await env.approval("op1", view.id), T0)
        view = await env.custody.decide(await env.approval("op2", view.id), T0)
        assert view.state == "approved" and view.release_at == T0 + HOUR
        await env.settle(T0 + HOUR - 1)  # time-lock not passed
        assert (await env.custody.get(view.id)).state == "approved"
        await env.settle(T0 + HOUR)
        view = await env.custody.get(view.id)
        assert states(view) == ["requested", "screened", "pending_approval", "approved", "signing", "broadcast",
                                "confirmed"]
        assert view.funds == "consumed"
        assert env.balance("A2") == (1 * BTC, 0)
        assert await env.chain.balance(EXTERNAL, "BTC") == 3 * BTC
        assert env.ledger.net_deposits("BTC") == BTC
        # the hold is gone: the ledger refuses to consume or release it again
        with pytest.raises(LedgerRefused, match="no open hold"):
            await env.custody.ledger.consume(T0, view.id)
        with pytest.raises(LedgerRefused, match="no open hold"):
            await env.custody.ledger.release(T0, view.id)

    run(backend, tmp_path, body, policy=policy)


@pytest.mark.parametrize("backend", BACKENDS)
def test_refused_broadcast_is_retried_then_confirmed_without_paying_twice(backend, tmp_path):
    async def body(env):
        await env.deposit("A2", 2 * BTC)
        await env.chain.inject_faults(reject=2)
        view = await env.custody.request_withdrawal(env.request("A2", BTC // 2), T0)
        await env.settle(T0)
        view = await env.custody.get(view.id)
        assert view.state == "confirmed" and view.attempts == 2
        assert states(view).count("signing") == 3
        assert await env.chain.balance(EXTERNAL, "BTC") == BTC // 2
        assert env.balance("A2") == (3 * BTC // 2, 0)
        (st,) = [s for s in await env.custody.status() if s.asset == "BTC"]
        assert st.book["hot"] == st.chain["hot"] == 3 * BTC // 2 and not st.breaches

    run(backend, tmp_path, body)


@pytest.mark.parametrize("backend", BACKENDS)
def test_broadcast_refused_every_time_fails_and_returns_the_funds(backend, tmp_path):
    async def body(env):
        await env.deposit("A2", 2 * BTC)
        await env.chain.inject_faults(reject=3)
        view = await env.custody.request_withdrawal(env.request("A2", BTC // 2), T0)
        await env.settle(T0)
        view = await env.custody.get(view.id)
        assert view.state == "failed" and view.funds == "released" and "funds returned" in view.reason
        assert env.balance("A2") == (2 * BTC, 0)
        assert await env.chain.balance(EXTERNAL, "BTC") == 0
        (st,) = [s for s in await env.custody.status() if s.asset == "BTC"]
        assert st.book["hot"] == st.chain["hot"] == 2 * BTC and st.in_flight == 0

    run(backend, tmp_path, body)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropped_transaction_is_rebroadcast_under_a_new_txid_and_paid_once(backend, tmp_path):
    async def body(env):
        await env.deposit("A2", 2 * BTC)
        await env.chain.inject_faults(drop=1)
        view = await env.custody.request_withdrawal(env.request("A2", BTC // 2), T0)
        await env.custody.process(T0)
        first = (await env.custody.get(view.id)).txid
        (st,) = [s for s in await env.custody.status() if s.asset == "BTC"]
        assert st.in_flight == BTC // 2 and st.book["hot"] == 3 * BTC // 2
        await env.settle(T0)
        view = await env.custody.get(view.id)
        assert view.state == "confirmed" and view.txid != first
        assert (await env.chain.status(first)).state == "dropped"
        assert await env.chain.balance(EXTERNAL, "BTC") == BTC // 2
        assert env.balance("A2") == (3 * BTC // 2, 0)

    run(backend, tmp_path, body)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pending_request_expires_and_releases_its_hold(backend, tmp_path):
    async def body(env):
        await env.deposit("A2", 4 * BTC)
        view = await env.custody.request_withdrawal(env.request("A2", 3 * BTC, ttl=600), T0)
        await env.custody.process(T0 + 599 * NS)
        assert (await env.custody.get(view.id)).state == "pending_approval"
        await env.custody.process(T0 + 600 * NS)
        view = await env.custody.get(view.id)
        assert view.state == "expired" and view.funds == "released"
        assert env.balance("A2") == (4 * BTC, 0)

    run(backend, tmp_path, body)


def test_customer_can_cancel_before_signing_but_not_after(tmp_path):
    async def body(env):
        await env.deposit("A2", 4 * BTC)
        big = await env.custody.request_withdrawal(env.request("A2", 3 * BTC), T0)
        with pytest.raises(Refused, match="does not belong"):
            await env.custody.cancel(big.id, "A1", T0)
        view = await env.custody.cancel(big.id, "A2", T0)
        assert view.state == "cancelled" and env.balance("A2") == (4 * BTC, 0)
        small = await env.custody.request_withdrawal(env.request("A2", BTC // 2), T0)
        await env.custody.process(T0)
        with pytest.raises(Refused, match="too late to cancel"):
            await env.custody.cancel(small.id, "A2", T0)

    run("sqlite", tmp_path, body)


def test_kyc_not_verified_refuses_a_withdrawal(tmp_path):
    async def body(env):
        from venue import registry

        await env.deposit("A2", BTC)
        await registry.set_kyc(env.engine, "A2", "expired")
        with pytest.raises(Refused, match="KYC status is expired"):
            await env.custody.request_withdrawal(env.request("A2", BTC // 2), T0)
        assert env.balance("A2") == (BTC, 0)

    run("sqlite", tmp_path, body)


@pytest.mark.parametrize("backend", BACKENDS)
def test_hot_wallet_above_high_water_is_swept_to_cold(backend, tmp_path):
    async def body(env):
        await env.deposit("A2", 35 * BTC)  # high water 30, target 10
        await env.settle(T0)
        (st,) = [s for s in await env.custody.status() if s.asset == "BTC"]
        assert st.book["hot"] == 10 * BTC and st.book["cold"] == 25 * BTC
        assert st.chain == st.book and not st.breaches
        sweeps = [v for v in await env.custody.list() if v.kind == "sweep"]
        assert len(sweeps) == 1 and sweeps[0].state == "confirmed" and sweeps[0].approvals == ()

    run(backend, tmp_path, body)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cold_to_hot_top_up_proposed_at_low_water_needs_the_larger_quorum(backend, tmp_path):
    async def body(env):
        await env.deposit("A2", 35 * BTC)
        await env.settle(T0)  # hot 10, cold 25
        for i in range(3):  # three 3-BTC withdrawals approved by two operators: hot 10 -> 1 (< low water 2)
            v = await env.custody.request_withdrawal(env.request("A2", 3 * BTC), T0 + i)
            await env.custody.decide(await env.approval("op1", v.id), T0 + i)
            await env.custody.decide(await env.approval("op2", v.id), T0 + i)
            await env.settle(T0 + i)
        topups = [v for v in await env.custody.list() if v.kind == "topup"]
        assert len(topups) == 1
        t = topups[0]
        assert t.state == "pending_approval" and t.approvals_required == 3 and t.amount == 9 * BTC
        assert t.initiator == "venue"
        await env.custody.process(T0 + 10)  # no second proposal while one is open
        assert len([v for v in await env.custody.list() if v.kind == "topup"]) == 1
        for op in ("op1", "op2"):
            await env.custody.decide(await env.approval(op, t.id), T0 + 10)
        await env.settle(T0 + 10)
        assert (await env.custody.get(t.id)).state == "pending_approval"  # 2 approvals: not enough
        await env.custody.decide(await env.approval("op3", t.id), T0 + 11)
        await env.settle(T0 + 11)
        t = await env.custody.get(t.id)
        assert t.state == "confirmed"
        (st,) = [s for s in await env.custody.status() if s.asset == "BTC"]
        assert st.book == st.chain == {"hot": 10 * BTC, "warm": 0, "cold": 16 * BTC}
        assert st.owed == 26 * BTC and st.breaches == []

    run(backend, tmp_path, body)


def test_every_step_is_in_the_audit_log_and_the_chain_verifies(tmp_path):
    async def body(env):
        from venue import audit

        await env.deposit("A2", 4 * BTC)
        view = await env.custody.request_withdrawal(env.request("A2", 3 * BTC), T0)
        await env.custody.decide(await env.approval("op1", view.id), T0)
        await env.custody.decide(await env.approval("op2", view.id), T0)
        await env.settle(T0)
        entries = [e for e in await audit.entries(env.engine) if e.subject == view.id]
        kinds = [e.kind for e in entries]
        for k in ("custody.requested", "custody.screened", "custody.pending_approval", "custody.approve",
                  "custody.approved", "custody.signing", "custody.broadcast", "custody.confirmed"):
            assert k in kinds, k
        assert await audit.verify(env.engine) == []

    run("sqlite", tmp_path, body)


def test_policy_is_versioned_and_a_request_keeps_its_version(tmp_path):
    async def body(env):
        await env.deposit("A2", 4 * BTC)
        v1 = await env.custody.request_withdrawal(env.request("A2", BTC // 2), T0)
        p2 = await env.custody.set_policy(default_policy(), "admin", T0 + 1)
        assert p2.version == v1.policy_version + 1
        v2 = await env.custody.request_withdrawal(env.request("A2", BTC // 2), T0 + 2)
        assert v2.policy_version == p2.version
        async with env.engine.connect() as conn:
            versions = list((await conn.execute(select(store.policies.c.version))).scalars())
        assert versions == [1, 2]

    run("sqlite", tmp_path, body)


def test_custody_has_no_knowledge_of_the_simulation():
    import inspect

    import venue.custody.workflow as wf

    src = inspect.getsource(wf)
    assert "SimulatedChain" not in src and "mine(" not in src and "inject_faults" not in src
    assert Custody.__init__.__annotations__["chain"] == "ChainAdapter"


def test_status_reports_a_ledger_hold_that_no_request_accounts_for(tmp_path):
    async def body(env):
        await env.deposit("A2", 4 * BTC)
        view = await env.custody.request_withdrawal(env.request("A2", 3 * BTC), T0)
        (st,) = [s for s in await env.custody.status() if s.asset == "BTC"]
        assert st.breaches == []
        await env.custody.ledger.hold(T0, "A2", "BTC", BTC // 2, "stray")  # behind custody's back
        (st,) = [s for s in await env.custody.status() if s.asset == "BTC"]
        assert st.breaches == ["ledger hold stray without a custody request"]
        await env.custody.ledger.release(T0, view.id)  # custody still thinks it holds these funds
        (st,) = [s for s in await env.custody.status() if s.asset == "BTC"]
        assert f"request {view.id} holds funds the ledger does not" in st.breaches

    run("sqlite", tmp_path, body)


def test_ledger_holds_survive_snapshot_and_count_in_its_invariants():
    from venue.core.ledger import Ledger

    led = Ledger()
    led.deposit(1, "A", "BTC", 100)
    led.hold(2, "A", "BTC", 60, "w1")
    led.check_invariants()
    again = Ledger()
    again.restore(led.snapshot())
    assert again.holds == {"w1": ("A", "BTC", 60)} and again.available("A", "BTC") == 40
    again.check_invariants()
    again.holds.clear()  # a reservation without its hold is caught
    with pytest.raises(AssertionError, match="reserved 60"):
        again.check_invariants()


def test_a_request_that_cannot_be_signed_is_reported_and_does_not_stop_the_others(tmp_path):
    async def body(env):
        from venue.custody.wallets import WalletSigner

        await env.deposit("A2", 35 * BTC)
        await env.settle(T0)  # swept: hot 10, cold 25
        env.custody.signer = WalletSigner(env.engine, {"hot": "hot-pass", "cold": "not-the-passphrase"})
        topup = await env.custody.propose_topup("BTC", BTC, "op1", T0)
        for op in ("op2", "op3", "op4"):
            await env.custody.decide(await env.approval(op, topup.id), T0)
        w = await env.custody.request_withdrawal(env.request("A2", BTC // 2), T0)
        report = await env.custody.process(T0)
        assert [rid for rid, _ in report.errors] == [topup.id]
        assert "wrong passphrase" in report.errors[0][1]
        assert (w.id, "broadcast") in report.moved
        assert (await env.custody.get(topup.id)).state == "signing"  # waits for a signer that can unlock

    run("sqlite", tmp_path, body)
