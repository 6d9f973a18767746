"""Custody against the real running venue: deposits credit the trading ledger through the core, a
withdrawal holds the funds at request time and consumes them once the chain confirms it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

from tests.venue_proc import ROOT, VenueProcess
from venue.custody.policy import starter_policy

ENV = {"VENUE_CUSTODY_HOT_PASSPHRASE": "hot-pass", "VENUE_CUSTODY_WARM_PASSPHRASE": "warm-pass",
       "VENUE_CUSTODY_COLD_PASSPHRASE": "cold-pass", "VENUE_KEY_PASSPHRASE": "key-pass",
       "VENUE_CUSTODY_SIMULATED_BLOCK_SECONDS": "0.5"}


def venue_cli(*args: str, data_dir=None, ok: bool = True) -> str:
    extra = ["--data-dir", str(data_dir)] if data_dir is not None else []
    out = subprocess.run([sys.executable, "-m", "tools.cli", *args, *extra], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, **ENV}, timeout=120)
    assert (out.returncode == 0) == ok, out.stdout + out.stderr
    return out.stdout + out.stderr


def btc_balance(data_dir) -> tuple[str, str, str]:
    row = next(line for line in venue_cli("account", "balances", "DEMO1-ACC", data_dir=data_dir).splitlines()
               if "BTC" in line)
    total, reserved, available = re.findall(r"[\d.]+", row)[:3]
    return total, reserved, available


def test_deposit_and_withdrawal_move_the_trading_balance_of_a_running_venue(tmp_path):
    data = tmp_path / "data"
    v = VenueProcess(data, env=ENV).start()
    try:
        venue_cli("custody", "init", "--assets", "BTC", data_dir=data)
        policy = json.loads(starter_policy({"BTC": 8}).to_json())
        policy["whitelist_timelock_ns"] = 0  # the 24 h time-lock has its own tests
        policy["confirmations"] = 1
        (tmp_path / "policy.json").write_text(json.dumps(policy))
        venue_cli("custody", "policy", "--set", str(tmp_path / "policy.json"), data_dir=data)

        assert "deposited 2 BTC to DEMO1-ACC" in venue_cli("deposit", "--account", "DEMO1-ACC", "--asset", "BTC",
                                                           "--amount", "2", data_dir=data)
        assert btc_balance(data) == ("102", "0", "102")

        key = tmp_path / "d1.key"
        venue_cli("withdraw", "keygen", "--account", "DEMO1-ACC", "--out", str(key), data_dir=data)
        venue_cli("address", "add", "dest-1", "--account", "DEMO1-ACC", "--asset", "BTC", "--key", str(key),
                  data_dir=data)
        op_key = tmp_path / "desk.pem"  # the operator who submits it (an authenticated submitter)
        venue_cli("keygen", "--out", str(op_key))
        venue_cli("operator", "add", "desk", "--role", "operator", "--public-key", str(op_key), data_dir=data)
        submitter = ("--operator", "desk", "--operator-key", str(op_key))
        req = tmp_path / "req.json"
        venue_cli("withdraw", "request", "--account", "DEMO1-ACC", "--asset", "BTC", "--amount", "0.5",
                  "--destination", "dest-1", "--out", str(req))
        out = venue_cli("withdraw", "sign", str(req), "--key", str(key), *submitter, data_dir=data)
        wid = re.search(r"withdrawal (W\w+)", out).group(1)
        deadline = time.monotonic() + 30
        while "confirmed" not in (status := venue_cli("withdraw", "status", wid, data_dir=data)):
            assert time.monotonic() < deadline, status
            time.sleep(0.5)
        assert btc_balance(data) == ("101.5", "0", "101.5"), "the hold was consumed exactly once"
        assert "replayed request" in venue_cli("withdraw", "sign", str(req), "--key", str(key), *submitter,
                                               data_dir=data, ok=False)
        assert btc_balance(data) == ("101.5", "0", "101.5")
    finally:
        v.stop()


def test_a_hold_without_its_withdrawal_is_reported_at_start_never_repaired(tmp_path):
    """A request and its hold commit in one transaction, so the start-up reconciliation is a check:
    a hold with no request (forged here, straight into the journal) is logged and audited as a
    mismatch for a person to look at, and not silently released."""
    import asyncio

    from venue import refdata
    from venue.core.assets import Assets
    from venue.core.commands import HoldFunds
    from venue.core.fees import FeeSchedule
    from venue.core.stage import RiskLedgerStage
    from venue.db import make_engine, sqlite_url
    from venue.journal import Journal

    data = tmp_path / "data"
    VenueProcess(data, env=ENV).start().stop()

    async def orphan_hold() -> None:  # forged: the venue commits a hold with its request, so cannot make one
        engine = make_engine(sqlite_url(data))
        try:
            journal = await Journal.open(engine)
            core = await Journal.recover(engine, await refdata.load_instruments(engine),
                                         RiskLedgerStage({}, Assets(), FeeSchedule()))
            cmds = [HoldFunds(ts=time.time_ns(), account="DEMO1-ACC", asset="BTC", amount=5 * 10**8, ref="W-lost")]
            events = core.process_batch(cmds)
            async with engine.begin() as conn:
                await journal.write(conn, cmds, events)
        finally:
            await engine.dispose()

    asyncio.run(orphan_hold())
    v = VenueProcess(data, env=ENV).start()
    try:
        # the start-up check reports it (audit, log) and leaves the ledger as the journal says
        assert btc_balance(data) == ("100", "5", "95")
        tail = venue_cli("audit", "tail", "-n", "10", data_dir=data)
        assert "custody.holds_mismatch" in tail and "W-lost" in tail, tail
    finally:
        v.stop()
