"""The custody CLI end to end: deposit, whitelist, signed withdrawal, approvals, and a cold-to-hot
top-up proposed at low water, approved by the quorum, executed and shown by `venue custody status`."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.access_db import BACKENDS, database, pg_database
from venue import registry
from venue.access.signing import private_key_pem, public_key_b64
from venue.custody.policy import starter_policy
from venue.db import make_engine

ENV = {"VENUE_CUSTODY_HOT_PASSPHRASE": "h", "VENUE_CUSTODY_WARM_PASSPHRASE": "w",
       "VENUE_CUSTODY_COLD_PASSPHRASE": "c", "VENUE_KEY_PASSPHRASE": "customer-pass"}


def _engine(url: str):
    return make_engine(url)


def _db(backend: str, tmp_path: Path):
    """A database URL the CLI can take as it is: a SQLite file, or a fresh PostgreSQL database."""
    return database("sqlite", tmp_path) if backend == "sqlite" else pg_database()


async def _registry(url: str, tmp: Path) -> None:
    engine = _engine(url)
    try:
        await registry.create_schema(engine)
        await registry.create_firm(engine, "F1")
        await registry.create_account(engine, "A2", "F1", kyc_status="verified", tier=2)
        for name in ("op1", "op2", "op3"):
            key = Ed25519PrivateKey.generate()
            await registry.create_operator(engine, name, "operator", public_key_b64(key.public_key()))
            (tmp / f"{name}.pem").write_bytes(private_key_pem(key))
    finally:
        await engine.dispose()


def submitted_by(operator: str, tmp: Path) -> tuple[str, ...]:
    """The options that make ``operator`` (signing with their registered key) the submitter."""
    return ("--operator", operator, "--operator-key", str(tmp / f"{operator}.pem"))


class Cli:
    def __init__(self, url: str, tmp: Path) -> None:
        self.runner = CliRunner()
        self.url, self.tmp = url, tmp

    def __call__(self, *args: str, ok: bool = True, actor: str = "op1") -> str:
        from tools.cli import main

        db = [] if args[0] == "withdraw" and args[1] == "request" else \
            ["--db-url", self.url, "--data-dir", str(self.tmp)]
        if args[0] in ("custody", "withdraw", "withdrawals", "address") and args[1] not in ("request",):
            db += ["--actor", actor]
        elif args[0] == "deposit":
            db += ["--actor", actor]
        result = self.runner.invoke(main, [*args, *db], env=ENV, catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        else:
            assert result.exit_code != 0, result.output
        return result.output


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_cli_withdrawal_and_cold_to_hot_top_up_end_to_end(backend, tmp_path):
    with _db(backend, tmp_path) as url:
        asyncio.run(_registry(url, tmp_path))
        cli = Cli(url, tmp_path)
        cli("custody", "init", "--assets", "BTC")
        policy = json.loads(starter_policy({"BTC": 8}).to_json())
        policy["whitelist_timelock_ns"] = 0
        policy["confirmations"] = 1
        policy["assets"]["BTC"]["hot_tx_cap"] = 10 * 10**8
        (tmp_path / "policy.json").write_text(json.dumps(policy))
        assert "policy v2" in cli("custody", "policy", "--set", str(tmp_path / "policy.json"))

        assert "balance 35 BTC" in cli("deposit", "--account", "A2", "--asset", "BTC", "--amount", "35")
        cli("custody", "process", "--blocks", "1")  # hot 35 > high water 30: swept down to the target
        cli("custody", "process", "--blocks", "1")
        status = cli("custody", "status")
        assert re.search(r"BTC\s*│\s*10\s*│\s*0\s*│\s*25\s*│", status), status

        # a customer withdrawal of 9 BTC: whitelisted address, signed request, two approvals
        cli("withdraw", "keygen", "--account", "A2", "--out", str(tmp_path / "a2.key"))
        assert "unknown withdrawal key" in cli("address", "add", "dest-1", "--account", "A2", "--asset", "BTC", "--key",
                                      str(tmp_path / "op1.pem"), ok=False)  # not A2's key
        cli("address", "add", "dest-1", "--account", "A2", "--asset", "BTC", "--key", str(tmp_path / "a2.key"))
        req = tmp_path / "req.json"
        cli("withdraw", "request", "--account", "A2", "--asset", "BTC", "--amount", "9", "--destination", "dest-1",
            "--out", str(req))
        out = cli("withdraw", "sign", str(req), "--key", str(tmp_path / "a2.key"), *submitted_by("op1", tmp_path))
        wid = re.search(r"withdrawal (W\w+): pending_approval", out).group(1)
        # replaying the signed file is refused
        assert "replayed request" in cli("withdraw", "sign", str(req), "--key", str(tmp_path / "a2.key"),
                                         *submitted_by("op1", tmp_path), ok=False)
        # op1 submitted it (signed with op1's key): four eyes, op1 never approves it; op2 and op3 do
        assert "op1 submitted this request and cannot approve it" in cli(
            "withdrawals", "approve", wid, "--operator", "op1", "--key", str(tmp_path / "op1.pem"), ok=False)
        for op in ("op2", "op3"):
            cli("withdrawals", "approve", wid, "--operator", op, "--key", str(tmp_path / f"{op}.pem"))
        out = cli("custody", "process", "--blocks", "1")  # signed, broadcast; hot 1 < low water 2: top-up proposed
        tid = re.search(r"proposed (T\w+)", out).group(1)
        cli("custody", "process", "--blocks", "1")
        assert "confirmed" in cli("withdraw", "status", wid)

        # the top-up needs 3 approvals (the quorum); the venue proposed it, so every operator counts
        assert "0 of 3" in cli("withdrawals", "show", tid)
        assert "already decided" not in cli("withdrawals", "approve", tid, "--operator", "op1", "--key",
                                            str(tmp_path / "op1.pem"))
        assert "already decided" in cli("withdrawals", "approve", tid, "--operator", "op1", "--key",
                                        str(tmp_path / "op1.pem"), ok=False)
        assert "pending_approval" in cli("withdrawals", "approve", tid, "--operator", "op2", "--key",
                                         str(tmp_path / "op2.pem"))
        assert "approved" in cli("withdrawals", "approve", tid, "--operator", "op3", "--key",
                                 str(tmp_path / "op3.pem"))
        cli("custody", "process", "--blocks", "1")
        cli("custody", "process", "--blocks", "1")
        assert "confirmed" in cli("withdrawals", "show", tid)
        status = cli("custody", "status")
        # hot back to its target (10), cold 25 - 9 = 16, owed 35 - 9 = 26, no breach
        assert re.search(r"BTC\s*│\s*10\s*│\s*0\s*│\s*16\s*│\s*0\s*│\s*26\s*│\s*26\s*│", status), status
        assert "ok" in status and "BREACH" not in status
        assert tid in cli("withdrawals", "list", "--all")


def test_the_operator_who_submitted_a_withdrawal_never_approves_it(tmp_path):
    """Four eyes: op1 hands a customer's signed withdrawal in and then tries to approve it. The venue
    refuses (audited with the reason); the two approvals it needs come from two other operators."""
    from venue import audit

    with database("sqlite", tmp_path) as url:
        asyncio.run(_registry(url, tmp_path))
        cli = Cli(url, tmp_path)
        cli("custody", "init", "--assets", "BTC")
        policy = json.loads(starter_policy({"BTC": 8}).to_json())
        policy["whitelist_timelock_ns"] = 0
        policy["assets"]["BTC"]["hot_tx_cap"] = 10 * 10**8
        (tmp_path / "policy.json").write_text(json.dumps(policy))
        cli("custody", "policy", "--set", str(tmp_path / "policy.json"))
        cli("deposit", "--account", "A2", "--asset", "BTC", "--amount", "20")
        cli("withdraw", "keygen", "--account", "A2", "--out", str(tmp_path / "a2.key"))
        cli("address", "add", "dest-1", "--account", "A2", "--asset", "BTC", "--key", str(tmp_path / "a2.key"))
        req = tmp_path / "req.json"
        cli("withdraw", "request", "--account", "A2", "--asset", "BTC", "--amount", "9", "--destination", "dest-1",
            "--out", str(req))
        # --actor is free text ("x" here): the submitter is the operator whose key signed the submission
        out = cli("withdraw", "sign", str(req), "--key", str(tmp_path / "a2.key"), *submitted_by("op1", tmp_path),
                  actor="x")
        wid = re.search(r"withdrawal (W\w+): pending_approval", out).group(1)
        refused = cli("withdrawals", "approve", wid, "--operator", "op1", "--key", str(tmp_path / "op1.pem"), ok=False)
        assert "op1 submitted this request and cannot approve it" in refused
        shown = cli("withdrawals", "show", wid)  # the refused approval is not recorded
        assert "0 of 2" in shown and re.search(r"submitted by\s*│\s*op1", shown), shown
        assert "pending_approval" in cli("withdrawals", "approve", wid, "--operator", "op2", "--key",
                                         str(tmp_path / "op2.pem"))
        assert "approved" in cli("withdrawals", "approve", wid, "--operator", "op3", "--key",
                                 str(tmp_path / "op3.pem"))

        async def refusals() -> list:
            engine = _engine(url)
            try:
                return await audit.entries(engine, kind="custody.approval_refused")
            finally:
                await engine.dispose()

        (entry,) = asyncio.run(refusals())
        assert (entry.actor, entry.subject) == ("op1", wid)
        assert "submitted this request" in entry.data["reason"]


def test_a_submission_must_be_signed_by_a_registered_operator(tmp_path):
    """Four eyes needs an authenticated submitter: the CLI refuses to submit without an operator and
    their key; the venue refuses a forged or unknown operator's submission and a letter with none
    (whatever its free-text actor says), all before the request exists (its nonce stays unused)."""
    from venue.custody import inbox
    from venue.custody.requests import SignedRequest

    with database("sqlite", tmp_path) as url:
        asyncio.run(_registry(url, tmp_path))
        cli = Cli(url, tmp_path)
        cli("custody", "init", "--assets", "BTC")
        policy = json.loads(starter_policy({"BTC": 8}).to_json())
        policy["whitelist_timelock_ns"] = 0
        policy["assets"]["BTC"]["hot_tx_cap"] = 10 * 10**8
        (tmp_path / "policy.json").write_text(json.dumps(policy))
        cli("custody", "policy", "--set", str(tmp_path / "policy.json"))
        cli("deposit", "--account", "A2", "--asset", "BTC", "--amount", "20")
        a2 = str(tmp_path / "a2.key")
        cli("withdraw", "keygen", "--account", "A2", "--out", a2)
        cli("address", "add", "dest-1", "--account", "A2", "--asset", "BTC", "--key", a2)
        req = tmp_path / "req.json"
        cli("withdraw", "request", "--account", "A2", "--asset", "BTC", "--amount", "9", "--destination", "dest-1",
            "--out", str(req))
        assert "--operator NAME and --operator-key" in cli("withdraw", "sign", str(req), "--key", a2, ok=False)
        cli("withdraw", "sign", str(req), "--key", a2, "--no-submit")
        forged = cli("withdraw", "submit", str(req), "--operator", "op1", "--operator-key", str(tmp_path / "op2.pem"),
                     ok=False)
        assert "bad submission signature" in forged
        assert "mallory is not a registered operator" in cli(
            "withdraw", "submit", str(req), "--operator", "mallory", "--operator-key", str(tmp_path / "op1.pem"),
            ok=False)

        async def post_bare_letter() -> int:  # as a tool that only names an actor would post it
            engine = _engine(url)
            try:
                signed = SignedRequest.from_json(req.read_text())
                return await inbox.submit(engine, "request", inbox.encode_request(signed), "op1")
            finally:
                await engine.dispose()

        async def answer(item: int) -> str:
            engine = _engine(url)
            try:
                await inbox.wait(engine, item, timeout=5)
                return "accepted"
            except inbox.InboxError as exc:
                return str(exc)
            finally:
                await engine.dispose()

        item = asyncio.run(post_bare_letter())
        cli("custody", "process")  # the venue is stopped: the pump carries the inbox out
        assert "submitted by a registered operator" in asyncio.run(answer(item))
        assert "unknown request" in cli("withdrawals", "show", SignedRequest.from_json(req.read_text())
                                        .request.request_id, ok=False)

        out = cli("withdraw", "submit", str(req), *submitted_by("op2", tmp_path), actor="op3")
        assert "pending_approval" in out and "submitted by op2" in out
        wid = re.search(r"withdrawal (W\w+)", out).group(1)
        assert re.search(r"submitted by\s*│\s*op2", cli("withdrawals", "show", wid))
        assert "op2 submitted this request and cannot approve it" in cli(
            "withdrawals", "approve", wid, "--operator", "op2", "--key", str(tmp_path / "op2.pem"), ok=False)


def test_cli_refuses_bad_input_with_clear_errors(tmp_path):
    with database("sqlite", tmp_path) as url:
        asyncio.run(_registry(url, tmp_path))
        cli = Cli(url, tmp_path)
        cli("custody", "init", "--assets", "BTC")
        assert "more than 8 decimals" in cli("deposit", "--account", "A2", "--asset", "BTC", "--amount",
                                             "0.000000001", ok=False)
        assert "unknown asset" in cli("deposit", "--account", "A2", "--asset", "XYZ", "--amount", "1", ok=False)
        assert "unknown account" in cli("deposit", "--account", "NOPE", "--asset", "BTC", "--amount", "1", ok=False)
        assert "unknown request" in cli("withdrawals", "show", "W123", ok=False)
        assert "must be positive" in cli("custody", "topup", "--asset", "BTC", "--amount", "0", ok=False)


def test_cli_hands_instructions_to_a_running_venue_through_the_inbox(tmp_path):
    """With the venue up, the CLI never touches the ledger: the venue's custody pump carries out the
    signed instructions and answers; funds-moving commands that would write the journal are refused."""
    import threading

    from venue import lock as writer_lock
    from venue.custody.chain import SimulatedChain
    from venue.custody.ports import JournalLedger, RegistryDirectory
    from venue.custody.wallets import WalletSigner
    from venue.custody.workflow import Custody

    with database("sqlite", tmp_path) as url:
        asyncio.run(_registry(url, tmp_path))
        cli = Cli(url, tmp_path)
        cli("custody", "init", "--assets", "BTC")
        cli("withdraw", "keygen", "--account", "A2", "--out", str(tmp_path / "a2.key"))
        stop, locked = threading.Event(), threading.Event()
        answered: list[int] = []

        def venue() -> None:  # the running venue's custody pump, in its own thread and loop
            async def main() -> None:
                engine = make_engine(url)
                held = await writer_lock.acquire(engine, "test venue")  # what `venue serve` holds
                locked.set()
                custody = Custody(engine, SimulatedChain(engine), await JournalLedger.open(engine),
                                  RegistryDirectory(engine), WalletSigner(engine, {"hot": "h", "warm": "w", "cold": "c"}))
                while not stop.is_set():
                    answered.append((await custody.process(time.time_ns())).answered)
                    await asyncio.sleep(0.05)
                await held.release()
                await engine.dispose()

            asyncio.run(main())

        t = threading.Thread(target=venue)
        t.start()
        assert locked.wait(10)
        try:
            out = cli("deposit", "--account", "A2", "--asset", "BTC", "--amount", "2")
            assert "deposited 2 BTC to A2" in out and "balance" not in out  # the venue credited it
            cli("address", "add", "dest-1", "--account", "A2", "--asset", "BTC", "--key", str(tmp_path / "a2.key"))
            req = tmp_path / "req.json"
            cli("withdraw", "request", "--account", "A2", "--asset", "BTC", "--amount", "0.5",
                "--destination", "dest-1", "--out", str(req))
            out = cli("withdraw", "sign", str(req), "--key", str(tmp_path / "a2.key"), *submitted_by("op1", tmp_path),
                      ok=False)
            assert "whitelisted too recently" in out  # refused by the venue, reason carried back
            assert "the venue is running" in cli("custody", "process", ok=False)
        finally:
            stop.set()
            t.join(30)
        assert sum(answered) >= 2


def test_a_database_made_before_submitted_by_gets_the_column(tmp_path):
    """create_all never alters a table: a custody database from before four eyes is given the column."""
    import sqlite3

    from venue.custody import store

    db = tmp_path / "venue.db"
    with sqlite3.connect(db) as conn:  # custody_requests as it was (every column but submitted_by)
        cols = ", ".join(f"{c.name} TEXT" for c in store.requests.columns if c.name != "submitted_by")
        conn.execute(f"CREATE TABLE custody_requests ({cols})")

    async def go() -> None:
        engine = _engine(f"sqlite+aiosqlite:///{db}")
        try:
            await store.create_all(engine)
            await store.create_all(engine)  # idempotent
        finally:
            await engine.dispose()

    asyncio.run(go())
    with sqlite3.connect(db) as conn:
        assert "submitted_by" in [r[1] for r in conn.execute("PRAGMA table_info(custody_requests)")]
