"""Custody inside the running venue: set up with the venue, holds reconciled after recovery, and
one pass of custody's pump per housekeeping turn (its mailbox letters, approvals, broadcasts,
deposits, the hot wallet) once a policy exists.

Customer funds move through the core (holds journaled like orders); the chain adapter is the
simulated one (no node can run here). Wallet keys unlock with VENUE_CUSTODY_<TIER>_PASSPHRASE when a
transfer must be signed.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from sqlalchemy import select

from venue import audit
from venue.core import commands as cmd
from venue.custody import store as custody_store
from venue.custody.chain import SimulatedChain
from venue.custody.policy import PolicyError
from venue.custody.ports import CoreLedger, RegistryDirectory, venue_submit
from venue.custody.wallets import WalletSigner
from venue.custody.workflow import Custody
from venue.pipeline import Pipeline

log = logging.getLogger("venue")


def wallet_passphrase(tier: str) -> str:
    value = os.environ.get(f"VENUE_CUSTODY_{tier.upper()}_PASSPHRASE")
    if not value:
        raise RuntimeError(f"VENUE_CUSTODY_{tier.upper()}_PASSPHRASE is not set: cannot sign from the {tier} wallet")
    return value


class CustodyScheduler:
    """Custody's place in the venue: its workflow over the venue's pipeline and ledger."""

    def __init__(self, engine: Any, pipeline: Pipeline, audit_log: audit.AuditLog, block_seconds: float) -> None:
        self.engine = engine
        self.pipeline = pipeline
        self.audit_log = audit_log
        self.block_seconds = block_seconds
        self.chain = SimulatedChain(engine)
        self.custody = Custody(engine, self.chain, CoreLedger(venue_submit(pipeline.submit), pipeline.stage.ledger),
                               RegistryDirectory(engine), WalletSigner(engine, wallet_passphrase))
        self._next_block = 0.0
        self._idle_logged = False

    async def setup(self) -> None:
        await self.custody.setup()
        await self._reconcile_holds()

    async def _reconcile_holds(self) -> None:
        """After recovery, make the ledger's custody holds match custody's requests: custody commits
        its request and the core journals its hold in two transactions, so a crash between them can
        leave one without the other. A hold with no request holding funds is released; a request
        holding funds the ledger does not hold is held again (refused if the balance moved on,
        which `venue custody status` then reports)."""
        r = custody_store.requests
        async with self.engine.connect() as conn:
            held = {row.id: (row.account, row.asset, int(row.amount)) for row in (await conn.execute(
                select(r.c.id, r.c.account, r.c.asset, r.c.amount).where(r.c.funds == "held"))).all()}
        holds = dict(self.pipeline.stage.ledger.holds)
        now = time.time_ns()
        cmds: list[Any] = [cmd.ReleaseHold(ts=now, ref=ref) for ref in sorted(holds) if ref not in held]
        cmds += [cmd.HoldFunds(ts=now, account=a, asset=asset, amount=n, ref=rid)
                 for rid, (a, asset, n) in sorted(held.items()) if rid not in holds]
        if cmds:
            log.warning("custody holds reconciled after recovery: %s",
                        ", ".join(f"{type(c).__name__} {c.ref}" for c in cmds))
            await self.pipeline.run_and_journal(cmds)
            await self.audit_log.append("custody.holds_reconciled", actor="venue", subject="custody",
                                        details={"commands": [[type(c).__name__, c.ref] for c in cmds]})

    async def turn(self, now: int) -> None:
        """Custody's pass (its letters, approvals, broadcasts, deposits, hot wallet), once a policy exists."""
        try:
            await self.custody.policy()
        except PolicyError:
            if not self._idle_logged:
                log.info("custody is not set up (no policy): `venue custody init` starts it")
                self._idle_logged = True
            return
        if self.block_seconds > 0 and time.monotonic() >= self._next_block:
            self._next_block = time.monotonic() + self.block_seconds
            await self.chain.mine(1)
        await self.custody.process(now)
