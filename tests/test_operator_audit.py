"""Every operator request is audited as a decision: its outcome (ok / refused) and the reason,
written by the running venue in the same transaction as its answer to the CLI.

The finding: the venue audited each request when it picked it up, before deciding, so in
`venue audit tail` a refused deposit looked exactly like a successful one.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest
from click.testing import CliRunner

from tests.venue_proc import VenueProcess
from tools.cli import main as venue_cli
from venue import operator
from venue.db import make_engine, sqlite_url


@pytest.fixture(scope="module")
def venue(tmp_path_factory):
    v = VenueProcess(tmp_path_factory.mktemp("operator-audit") / "data").start()
    yield v
    if v.alive:
        v.stop()


def cli(venue: VenueProcess, *args: str):
    return CliRunner().invoke(venue_cli, [*args, "--data-dir", str(venue.data_dir), "--actor", "alice"])


def audited(venue: VenueProcess, kind: str) -> list[dict]:
    """`venue audit tail --kind KIND --json`, as the operator reads it."""
    res = cli(venue, "audit", "tail", "--kind", kind, "-n", "50", "--json")
    assert res.exit_code == 0, res.output
    return [json.loads(line) for line in res.output.splitlines() if line.strip()]


def request_ids(venue: VenueProcess, kind: str) -> list[int]:
    async def ids() -> list[int]:
        engine = make_engine(sqlite_url(venue.data_dir))
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(operator.requests.select().where(operator.requests.c.kind == kind)
                                          .order_by(operator.requests.c.id))
                return [r.id for r in rows]
        finally:
            await engine.dispose()

    return asyncio.run(ids())


def test_an_accepted_deposit_is_audited_ok_with_its_request(venue):
    res = cli(venue, "account", "deposit", "DEMO1-ACC", "USDT", "5")
    assert res.exit_code == 0, res.output
    rid = request_ids(venue, "deposit")[-1]
    (entry,) = [e for e in audited(venue, "operator.deposit") if e["details"]["request"] == rid]
    assert entry["actor"] == "alice" and entry["subject"] == "DEMO1-ACC" and entry["source"] == "cli"
    assert entry["details"]["outcome"] == "ok"
    assert Decimal(entry["details"]["amount"]) == 5 and "reason" not in entry["details"]


def test_a_withdrawal_the_ledger_refuses_is_audited_refused_with_the_reason(venue):
    res = cli(venue, "account", "withdraw", "DEMO1-ACC", "BTC", "1000000")
    assert res.exit_code != 0
    assert "available" in res.output, res.output
    rid = request_ids(venue, "withdraw")[-1]
    (entry,) = [e for e in audited(venue, "operator.withdraw") if e["details"]["request"] == rid]
    assert entry["details"]["outcome"] == "refused"
    assert "available" in entry["details"]["reason"], entry


def test_a_deposit_the_venue_refuses_is_audited_refused_not_as_a_success(venue):
    """Sent as the CLI sends it (a row in the request table): the venue alone decides here."""

    async def ask(payload: dict) -> tuple[int, str]:
        engine = make_engine(sqlite_url(venue.data_dir))
        try:
            rid = await operator.submit(engine, "deposit", payload, "bob")
            with pytest.raises(operator.OperatorError) as refused:
                await operator.wait(engine, rid, 10)
            return rid, str(refused.value)
        finally:
            await engine.dispose()

    cases = [({"account": "DEMO1-ACC", "asset": "BTC", "amount": "0.000000001"}, "more than 8 decimals"),
             ({"account": "DEMO1-ACC", "asset": "NOPE", "amount": "1"}, "NOPE"),
             ({"account": "@external", "asset": "BTC", "amount": "1"}, "venue account"),
             ({"account": "NOPE-ACC", "asset": "USDT", "amount": "5"}, "unknown account NOPE-ACC")]
    for payload, why in cases:
        rid, answer = asyncio.run(ask(payload))
        assert why in answer, answer
        (entry,) = [e for e in audited(venue, "operator.deposit") if e["details"]["request"] == rid]
        assert entry["actor"] == "bob"
        assert entry["details"]["outcome"] == "refused" and why in entry["details"]["reason"], entry


def test_every_answered_request_has_exactly_one_audit_entry(venue):
    assert cli(venue, "account", "balances", "DEMO2-ACC").exit_code == 0
    assert cli(venue, "account", "kill-switch", "DEMO2-ACC", "on").exit_code == 0
    assert cli(venue, "account", "kill-switch", "DEMO2-ACC", "off").exit_code == 0
    for kind in ("balances", "kill_switch", "deposit", "withdraw"):
        rids = request_ids(venue, kind)
        assert rids
        entries = [e["details"]["request"] for e in audited(venue, f"operator.{kind}")]
        assert sorted(entries) == rids, kind
    switches = audited(venue, "operator.kill_switch")
    assert [(e["details"]["on"], e["details"]["outcome"]) for e in switches][-2:] == [(True, "ok"), (False, "ok")]
