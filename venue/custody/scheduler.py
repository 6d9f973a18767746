"""Custody inside the running venue: set up with the venue, its holds checked against its requests
after recovery, and one pass of custody's pump per housekeeping turn (its mailbox letters,
approvals, broadcasts, deposits, the hot wallet) once a policy exists.

Customer funds move through the core (holds journaled like orders) in the venue's turn transaction,
with custody's own rows (venue/custody/turns.py); the chain adapter is the simulated one (no node
can run here). Wallet keys unlock with VENUE_CUSTODY_<TIER>_PASSPHRASE when a transfer must be signed.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from sqlalchemy import select

from venue import audit
from venue.custody import store as custody_store
from venue.custody.chain import SimulatedChain
from venue.custody.policy import PolicyError
from venue.custody.ports import RegistryDirectory
from venue.custody.turns import TurnLedger, TurnTransactions
from venue.custody.wallets import WalletSigner
from venue.custody.workflow import SETTLING, Custody
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
        self.turns = TurnTransactions(pipeline)  # the pipeline's first writer (venue.venue.Venue.attach)
        self.custody = Custody(engine, self.chain, TurnLedger(pipeline),
                               RegistryDirectory(engine), WalletSigner(engine, wallet_passphrase),
                               transaction=self.turns.transaction)
        self.mismatches: list[str] = []  # what the start-up check found (nothing, in normal operation)
        self._next_block = 0.0
        self._idle_logged = False

    async def setup(self) -> None:
        await self.custody.setup()
        self.mismatches = await self.check_holds()

    async def check_holds(self) -> list[str]:
        """After recovery: does every open hold of the ledger belong to a request holding funds, and
        every such request have its hold, of the same account, asset and amount? A request, its hold
        and its state change commit in one transaction (venue/custody/turns.py), so this finds
        nothing; what it finds is logged, audited (``custody.holds_mismatch``) and returned, never
        repaired behind anyone's back (``venue custody status`` shows it as a breach too)."""
        r = custody_store.requests
        async with self.engine.connect() as conn:
            held = {row.id: (row.account, row.asset, int(row.amount)) for row in (await conn.execute(
                select(r.c.id, r.c.account, r.c.asset, r.c.amount).where(
                    r.c.funds.in_(("held", *SETTLING))))).all()}
        holds = {ref: tuple(h) for ref, h in self.pipeline.stage.ledger.holds.items()}
        found = [f"ledger hold {ref} {holds[ref]} without a custody request holding it"
                 for ref in sorted(holds) if ref not in held]
        found += [f"request {rid} holds {held[rid]} but the ledger has no such hold"
                  for rid in sorted(held) if rid not in holds]
        found += [f"hold {ref}: ledger {holds[ref]}, custody {held[ref]}"
                  for ref in sorted(set(holds) & set(held)) if holds[ref] != held[ref]]
        if found:
            log.error("custody holds do not match custody's requests: %s", "; ".join(found))
            await self.audit_log.append("custody.holds_mismatch", actor="venue", subject="custody",
                                        details={"mismatches": found})
        return found

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
