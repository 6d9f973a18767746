"""Custody in the venue's transaction (issue 13): a withdrawal's request, its ledger hold and its
state change commit together, in the turn that journals the HoldFunds, or none of them does. So a
crash anywhere cannot leave a hold without its request nor a request without its hold, and the
start-up reconciliation is a check that finds nothing.

(Before, custody committed its request first and the core journaled the hold in a later turn: a
crash, or a failed commit, between the two left the request without its hold.)"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import select

from tests.test_batch_isolation import journal_of
from tests.test_custody_venue_e2e import ENV, venue_cli
from tests.venue_proc import ROOT, VenueProcess
from tools.wiring import Server
from venue import config as vconfig
from venue.core import commands as cmd
from venue.core.assets import Assets
from venue.core.fees import FeeSchedule
from venue.core.stage import RiskLedgerStage
from venue.custody import store
from venue.custody.policy import starter_policy
from venue.custody.requests import SignedRequest
from venue.db import make_engine, sqlite_url
from venue.journal import Journal


class FailingWriter:
    """A writer placed after custody's in the turn: while ``failing``, its part of the transaction
    raises, so the whole turn (custody's rows, the journal, everything) rolls back."""

    def __init__(self) -> None:
        self.failing = True
        self.failures = 0

    async def begin_batch(self) -> None:
        return None

    def stage_batch(self) -> bool:
        return False

    async def write_staged(self, conn) -> None:
        if self.failing:
            self.failures += 1
            raise OSError("injected: the disk went away")

    async def staged_failed(self, exc: Exception) -> None:
        return None

    def staged_committed(self) -> None:
        return None


def prepare(tmp_path: Path, amount: str = "0.5") -> tuple[Path, SignedRequest]:
    """A demo venue's data directory with custody set up (policy, a customer's withdrawal key, a
    whitelisted address) and a signed withdrawal request of DEMO1-ACC, not yet handed in."""
    data = tmp_path / "data"
    VenueProcess(data, env=ENV, args=["--no-fix"]).start().stop()  # the demo accounts and balances
    venue_cli("custody", "init", "--assets", "BTC", data_dir=data)
    policy = json.loads(starter_policy({"BTC": 8}).to_json())
    policy["whitelist_timelock_ns"] = 0
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    venue_cli("custody", "policy", "--set", str(tmp_path / "policy.json"), data_dir=data)
    key = tmp_path / "d1.key"
    venue_cli("withdraw", "keygen", "--account", "DEMO1-ACC", "--out", str(key), data_dir=data)
    venue_cli("address", "add", "dest-1", "--account", "DEMO1-ACC", "--asset", "BTC", "--key", str(key),
              data_dir=data)
    req = tmp_path / "req.json"
    venue_cli("withdraw", "request", "--account", "DEMO1-ACC", "--asset", "BTC", "--amount", amount,
              "--destination", "dest-1", "--out", str(req))
    venue_cli("withdraw", "sign", str(req), "--key", str(key), "--no-submit", data_dir=data)
    return data, SignedRequest.from_json(req.read_text())


def server_for(data: Path) -> Server:
    cfg = vconfig.load(None, overrides={"venue": {"data_dir": str(data)}, "fix": {"host": None, "port": None}})
    cfg["custody"]["simulated_block_seconds"] = 0
    return Server(cfg, fix=False)


async def wait_for(condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


async def custody_rows(server: Server, rid: str) -> list[tuple[str, str]]:
    async with server.engine.connect() as conn:
        return [(r.state, r.funds) for r in (await conn.execute(
            select(store.requests.c.state, store.requests.c.funds).where(store.requests.c.id == rid))).all()]


def test_a_failed_commit_after_custody_staged_its_rows_leaves_neither_request_nor_hold(tmp_path):
    data, signed = prepare(tmp_path)
    rid = signed.request.request_id

    async def crash_while_the_turn_cannot_commit() -> None:
        server = server_for(data)
        await server.start()
        v = server.venue
        failing = FailingWriter()
        v.pipeline.writers.append(failing)
        request = asyncio.create_task(v.custody.custody.request_withdrawal(signed, time.time_ns()))
        # the core has run the hold (in memory) and the turn holding it failed to commit, twice
        await wait_for(lambda: rid in v.pipeline.stage.ledger.holds, "the core never ran the hold")
        seen = failing.failures
        await wait_for(lambda: failing.failures >= seen + 2 or request.done(), "the turn was not retried", 40)
        assert not request.done(), "custody answered before its transaction committed"
        # kill: nothing more is written; the process's memory is gone
        await v.stop_timers()
        request.cancel()
        await v.pipeline.stop()
        await v.engine.dispose()

    async def restart_and_hand_it_in_again() -> None:
        server = server_for(data)
        await server.start()
        v = server.venue
        try:
            # after the crash: neither the request nor its hold, and the check finds nothing
            assert await custody_rows(server, rid) == []
            assert rid not in v.pipeline.stage.ledger.holds
            assert v.pipeline.stage.ledger.balance("DEMO1-ACC", "BTC")[1] == 0
            assert v.custody.mismatches == []
            # the same signed request (its nonce was never used): one failed commit, then it commits
            # whole on the retry, the request with its hold
            failing = FailingWriter()
            v.pipeline.writers.append(failing)
            request = asyncio.create_task(v.custody.custody.request_withdrawal(signed, time.time_ns()))
            await wait_for(lambda: failing.failures >= 1, "the injected failure never happened")
            failing.failing = False
            view = await asyncio.wait_for(request, 20)
            assert (view.state, view.funds) == ("approved", "held")
        finally:
            await server.stop()

    async def restart_and_check() -> None:
        server = server_for(data)
        await server.start()
        v = server.venue
        try:
            assert await custody_rows(server, rid) == [("approved", "held")]
            assert v.pipeline.stage.ledger.holds[rid] == ("DEMO1-ACC", "BTC", 50_000_000)
            assert v.custody.mismatches == []
        finally:
            await server.stop()

    asyncio.run(crash_while_the_turn_cannot_commit())
    asyncio.run(restart_and_hand_it_in_again())
    asyncio.run(restart_and_check())
    commands, _ = asyncio.run(journal_of(data))
    assert [c.ref for c in commands if isinstance(c, cmd.HoldFunds)] == [rid], "one hold, journaled once"


def cli_may_fail(*args: str, data_dir: Path) -> str:
    """The real CLI against a venue that may be dead at any moment: any exit code is accepted."""
    out = subprocess.run([sys.executable, "-m", "tools.cli", *args, "--data-dir", str(data_dir)], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, **ENV}, timeout=120)
    return out.stdout + out.stderr


async def holds_and_requests(data: Path) -> tuple[dict[str, tuple], dict[str, tuple], list[str]]:
    """What the journal says is held (the ledger recovered as at start-up), what custody says it
    holds, and the requests that never left ``requested`` (their request committed without routing)."""
    engine = make_engine(sqlite_url(data))
    try:
        from venue import refdata

        core_stage = RiskLedgerStage({}, Assets(), FeeSchedule())
        await Journal.recover(engine, await refdata.load_instruments(engine), core_stage)
        r = store.requests
        async with engine.connect() as conn:
            rows = (await conn.execute(select(r.c.id, r.c.account, r.c.asset, r.c.amount, r.c.state, r.c.funds)
                                       .where(r.c.kind == "withdrawal"))).all()
        held = {x.id: (x.account, x.asset, int(x.amount)) for x in rows if x.funds in ("held", "consuming", "releasing")}
        stuck = [x.id for x in rows if x.state == "requested"]
        return dict(core_stage.ledger.holds), held, stuck
    finally:
        await engine.dispose()


def test_kill_9_under_withdrawals_through_the_cli_leaves_every_hold_with_its_request(tmp_path):
    """A real `venue serve`, withdrawals requested, approved and rejected through the real CLI in a
    loop, and SIGKILL at random moments: after every restart each open hold of the recovered ledger
    belongs to a request holding exactly it and vice versa, and the venue's start-up check (which
    audits ``custody.holds_mismatch``) reports nothing."""
    data = tmp_path / "data"
    env = {**ENV, "VENUE_CUSTODY_SIMULATED_BLOCK_SECONDS": "0.2"}
    v = VenueProcess(data, env=env, args=["--no-fix"]).start()
    venue_cli("custody", "init", "--assets", "BTC", data_dir=data)
    policy = json.loads(starter_policy({"BTC": 8}).to_json())
    policy["whitelist_timelock_ns"] = policy["approval_timelock_ns"] = 0
    policy["confirmations"] = 1
    policy["assets"]["BTC"]["auto_threshold"] = 10**8  # 1 BTC and up: approvals
    policy["assets"]["BTC"]["approvals"] = 1
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    venue_cli("custody", "policy", "--set", str(tmp_path / "policy.json"), data_dir=data)
    key = tmp_path / "w.key"
    venue_cli("withdraw", "keygen", "--account", "DEMO1-ACC", "--out", str(key), data_dir=data)
    venue_cli("address", "add", "dest-1", "--account", "DEMO1-ACC", "--asset", "BTC", "--key", str(key),
              data_dir=data)
    # on-chain deposits to the hot wallet (credited through the core, in custody's transaction), so
    # withdrawals are signed, broadcast and consumed
    for _ in range(2):
        venue_cli("deposit", "--account", "DEMO1-ACC", "--asset", "BTC", "--amount", "10", data_dir=data)
    op_key = tmp_path / "op.pem"
    venue_cli("keygen", "--out", str(op_key))
    venue_cli("operator", "add", "checker", "--role", "operator", "--public-key", str(op_key), data_dir=data)
    desk_key = tmp_path / "desk.pem"  # the submitting operator (four eyes: not the one who approves)
    venue_cli("keygen", "--out", str(desk_key))
    venue_cli("operator", "add", "desk", "--role", "operator", "--public-key", str(desk_key), data_dir=data)

    stop = threading.Event()
    done = [0]

    def withdrawals() -> None:
        """Small ones go out automatically (held, signed, broadcast, consumed); large ones wait for
        an approval and are approved or rejected (released). Failures are expected: the venue dies."""
        i = 0
        while not stop.is_set():
            i += 1
            amount = "0.01" if i % 2 else "1.5"
            req = tmp_path / f"req-{i}.json"
            venue_cli("withdraw", "request", "--account", "DEMO1-ACC", "--asset", "BTC", "--amount", amount,
                      "--destination", "dest-1", "--out", str(req))
            out = cli_may_fail("withdraw", "sign", str(req), "--key", str(key), "--operator", "desk",
                               "--operator-key", str(desk_key), data_dir=data)
            m = re.search(r"withdrawal (W\w+): pending_approval", out)
            if m:
                decision = "approve" if i % 4 == 2 else "reject"
                cli_may_fail("withdrawals", decision, m.group(1), "--operator", "checker", "--key", str(op_key),
                             data_dir=data)
            done[0] += 1

    rng = random.Random(13)
    thread = threading.Thread(target=withdrawals)
    thread.start()
    try:
        for round_ in range(3):
            target = done[0] + 2
            deadline = time.monotonic() + 120
            while done[0] < target:
                assert time.monotonic() < deadline and thread.is_alive(), "the CLI loop made no progress"
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.5))
            v.kill()
            holds, held, stuck = asyncio.run(holds_and_requests(data))
            assert holds == held, f"round {round_}: ledger holds {holds} != custody's {held}"
            assert stuck == [], f"round {round_}: requests committed without their hold/routing: {stuck}"
            v = VenueProcess(data, env=env, args=["--no-fix"]).start()
    finally:
        stop.set()
        thread.join(180)
    try:
        tail = venue_cli("audit", "tail", "-n", "100000", "--kind", "custody.holds_mismatch", data_dir=data)
        assert "custody.holds_mismatch" not in tail, tail
        status = cli_may_fail("custody", "status", data_dir=data)  # (other breaches: exit code 3)
        assert "without a custody request" not in status and "the ledger does not" not in status, status
    finally:
        assert v.stop() == 0
    holds, held, stuck = asyncio.run(holds_and_requests(data))
    assert holds == held and stuck == []
    states = asyncio.run(withdrawal_states(data))
    assert len(states) >= 6, f"too few withdrawals to mean anything: {states}"
    assert {"confirmed", "rejected"} <= set(states), states


async def withdrawal_states(data: Path) -> list[str]:
    engine = make_engine(sqlite_url(data))
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(select(store.requests.c.state).where(
                store.requests.c.kind == "withdrawal"))).scalars())
    finally:
        await engine.dispose()
