"""An operator request the CLI reported as failed never runs later: with no venue running nothing
is posted; a request a live venue did not take in time is withdrawn (and the venue ignores it); a
request the venue took but never answered is reported as of unknown outcome, and is not run by
the next venue either. (Before: the row stayed pending and the next `venue serve` credited it, so
an operator who retried was credited twice.)"""

from __future__ import annotations

import asyncio
import os
import signal
from decimal import Decimal

from click.testing import CliRunner
from sqlalchemy import select

from tests.venue_proc import VenueProcess
from tools.cli import main
from venue import mailbox, operator
from venue.db import make_engine, sqlite_url


def cli(v: VenueProcess, *args: str):
    return CliRunner().invoke(main, [*args, "--data-dir", str(v.data_dir), "--actor", "ops"])


def usdt_total(v: VenueProcess, account: str = "DEMO1-ACC") -> Decimal:
    r = cli(v, "account", "balances", account)
    assert r.exit_code == 0, r.output
    return Decimal(next(line for line in r.output.splitlines() if "USDT" in line).split("│")[2].strip())


def letters(v: VenueProcess) -> list[tuple[int, str, str]]:
    async def go():
        engine = make_engine(sqlite_url(v.data_dir))
        try:
            async with engine.connect() as conn:
                return [tuple(r) for r in await conn.execute(
                    select(mailbox.letters.c.id, mailbox.letters.c.kind, mailbox.letters.c.state)
                    .where(mailbox.letters.c.recipient == "operator").order_by(mailbox.letters.c.id))]
        finally:
            await engine.dispose()

    return asyncio.run(go())


def status_of(v: VenueProcess, symbol: str) -> str:
    r = cli(v, "instrument", "list")
    assert r.exit_code == 0, r.output
    cells = [c.strip() for c in next(line for line in r.output.splitlines() if symbol in line).split("│")]
    return [c for c in cells if c][-1]


def test_with_the_venue_stopped_nothing_is_posted_and_the_next_venue_runs_nothing(tmp_path):
    v = VenueProcess(tmp_path / "data").start()
    before = usdt_total(v)
    assert v.stop() == 0
    posted = letters(v)

    for args in (("account", "deposit", "DEMO1-ACC", "USDT", "5"), ("instrument", "status", "ETH-USDT", "halted")):
        r = cli(v, *args)
        assert r.exit_code == 1, r.output
        assert "no venue is running" in r.output and "nothing was requested" in r.output, r.output
    assert letters(v) == posted

    v.start()
    try:
        assert usdt_total(v) == before  # not credited by the venue that started afterwards
        assert status_of(v, "ETH-USDT") == "open"
    finally:
        assert v.stop() == 0


def test_a_request_a_live_venue_did_not_take_in_time_is_withdrawn_and_never_run(tmp_path):
    v = VenueProcess(tmp_path / "data").start()
    try:
        before = usdt_total(v)
        os.kill(v.proc.pid, signal.SIGSTOP)  # alive (holds the writer lock) but not answering
        try:
            r = cli(v, "account", "deposit", "DEMO1-ACC", "USDT", "5")
        finally:
            os.kill(v.proc.pid, signal.SIGCONT)
        assert r.exit_code == 1, r.output
        assert "withdrawn" in r.output and "will not be carried out" in r.output, r.output
        rid, kind, state = letters(v)[-1]
        assert (kind, state) == ("deposit", "withdrawn")
        # the balances request is posted after the withdrawn one and answered: the venue has read past it
        assert usdt_total(v) == before
        assert [s for i, _, s in letters(v) if i == rid] == ["withdrawn"]
    finally:
        assert v.stop() == 0
    v.start()
    try:
        assert usdt_total(v) == before  # nor by a restarted venue
    finally:
        assert v.stop() == 0


def test_a_request_taken_but_unanswered_is_an_unknown_outcome_and_is_not_run_late(tmp_path):
    v = VenueProcess(tmp_path / "data").start()
    before = usdt_total(v)
    assert v.stop() == 0

    async def taken_and_abandoned() -> tuple[int, str]:
        engine = make_engine(sqlite_url(v.data_dir))
        try:  # as a venue that took the request and stopped before answering leaves it
            rid = await operator.submit(engine, "deposit", {"account": "DEMO1-ACC", "asset": "USDT", "amount": "5"},
                                        "ops")
            assert await mailbox.take(engine, [rid]) == [rid]
            assert not await mailbox.withdraw(engine, rid)  # taken: the tool cannot withdraw it any more
            try:
                await operator.wait(engine, rid, timeout=0.2, grace=0.3)
            except operator.OperatorError as exc:
                return rid, str(exc)
            raise AssertionError("no error for an unanswered request")
        finally:
            await engine.dispose()

    rid, message = asyncio.run(taken_and_abandoned())
    assert message.startswith("outcome unknown") and f"request {rid}" in message and "venue audit" in message

    v.start()
    try:
        assert usdt_total(v) == before  # the next venue refused it instead of running it late
        assert [s for i, _, s in letters(v) if i == rid] == ["failed"]
    finally:
        assert v.stop() == 0


def test_the_venue_ignores_a_withdrawn_request(tmp_path):
    v = VenueProcess(tmp_path / "data").start()
    try:
        before = usdt_total(v)
        os.kill(v.proc.pid, signal.SIGSTOP)

        async def withdrawn() -> int:
            engine = make_engine(sqlite_url(v.data_dir))
            try:
                rid = await operator.submit(engine, "deposit",
                                            {"account": "DEMO1-ACC", "asset": "USDT", "amount": "7"}, "ops")
                assert await mailbox.withdraw(engine, rid)
                assert await mailbox.take(engine, [rid]) == []  # withdrawn: the venue cannot take it
                return rid
            finally:
                await engine.dispose()

        try:
            rid = asyncio.run(withdrawn())
        finally:
            os.kill(v.proc.pid, signal.SIGCONT)
        assert usdt_total(v) == before
        assert [s for i, _, s in letters(v) if i == rid] == ["withdrawn"]
    finally:
        assert v.stop() == 0
