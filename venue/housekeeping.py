"""The venue's timers: the mailbox read five times a second; once a second GTD expiry, the
registry reloaded and enforced (KYC lapsed or session disabled: logged out, orders cancelled),
risk profiles kept in line with it, the consumers' own timers (market data's slow consumers) and
custody's pass. What they decide reaches the core as commands through the pipeline."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from venue import registry
from venue.access.gate import AccessGate
from venue.core import commands as cmd
from venue.core.risk import AccountRisk, KycLimits
from venue.custody.scheduler import CustodyScheduler
from venue.operator_requests import OperatorRequests
from venue.pipeline import Pipeline

log = logging.getLogger("venue")


class Registry:
    """The registry as the running venue holds it: sessions by client CompID, risk profiles."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.sessions: dict[str, registry.SessionRecord] = {}

    async def load_sessions(self) -> None:
        self.sessions = {r.sender_comp_id: r for r in await registry.load_sessions(self.engine)}

    async def risk_sync_commands(self, pipeline: Pipeline) -> list[Any]:
        """Commands bringing the stage's risk profiles and KYC-tier limits in line with the registry."""
        accounts = await registry.load_accounts(self.engine)
        tiers = await registry.load_kyc_tiers(self.engine)
        return pipeline.stage.sync_commands(time.time_ns(), [AccountRisk.from_record(a) for a in accounts],
                                            [KycLimits.from_record(t) for t in tiers])


class Housekeeping:
    """One task: every 0.2 s the operator's letters; every second the rest."""

    def __init__(self, pipeline: Pipeline, reg: Registry, gate: AccessGate, requests: OperatorRequests,
                 custody: CustodyScheduler) -> None:
        self.pipeline = pipeline
        self.registry = reg
        self.gate = gate
        self.requests = requests
        self.custody = custody
        self._logging_out: set[str] = set()

    def enforce_registry(self, now: int) -> None:
        """Log out sessions whose KYC lapsed (cancelling their orders) or that were disabled."""
        outlets = self.pipeline.outlets
        for sid, logged_on in list(outlets.logged_on()):
            if not logged_on:
                self._logging_out.discard(sid)
                continue
            if sid in self._logging_out:
                continue  # Logout sent, waiting for the answer or the timeout
            rec = self.registry.sessions.get(sid)
            if rec is None or not rec.enabled:
                reason, kind = "session disabled", "session.disabled_logout"
            else:
                reason = self.gate.kyc_reason(sid, now)
                kind = "session.kyc_logout"
                if reason is None:
                    continue
                self.pipeline.submit(cmd.MassCancel(ts=now, session_filter=sid, reason="kyc", session=sid))
            log.warning("logging %s out: %s", sid, reason)
            self.pipeline.audit(kind, actor="venue", subject=sid, details={"reason": reason})
            self._logging_out.add(sid)
            outlets.log_out(sid, "Logout")

    async def second(self, now: int) -> None:
        """The once-a-second work."""
        p = self.pipeline
        if any(o.expire_at is not None and o.expire_at <= now for o in p.core.open_orders()):
            p.submit(cmd.Tick(ts=now))
        await self.gate.reload(self.registry.engine)
        await self.registry.load_sessions()
        await p.outlets.sessions_changed(self.registry.sessions)
        for command in await self.registry.risk_sync_commands(p):
            p.submit(command)
        self.enforce_registry(now)
        p.outlets.on_timer()
        p.outlets.wake()
        await self.custody.turn(now)

    async def run(self) -> None:
        turn = 0
        while True:
            await asyncio.sleep(0.2)
            turn += 1
            try:
                await self.requests.poll()
                if turn % 5:
                    continue
                await self.second(time.time_ns())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("housekeeping failed")
