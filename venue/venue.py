"""The venue: its parts put together over one database, one core and one journal.

- the pipeline (``venue/pipeline.py``): the sequencer, the batch and its transaction;
- housekeeping (``venue/housekeeping.py``): timers, registry enforcement, GTD expiry, KYC;
- operator requests (``venue/operator_requests.py``): the operator's letters as commands;
- custody (``venue/custody/scheduler.py``): custody's workflow over the venue's ledger;
- the one mailbox all tools write to (``venue/mailbox.py``).

It knows nothing of FIX or of the session applications: the composition root (``tools/wiring.py``)
builds them around it and hands it their consumers (``venue.outlets.Outlets``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from venue import audit, mailbox, refdata, registry
from venue.access.gate import AccessGate, GateConfig
from venue.config import database_url
from venue.core import commands as cmd
from venue.core.assets import Assets
from venue.core.engine import Core
from venue.core.fees import FeeSchedule
from venue.core.stage import RiskLedgerStage
from venue.core.types import Side
from venue.custody.scheduler import CustodyScheduler
from venue.db import make_engine
from venue.demo import seed_demo
from venue.housekeeping import Housekeeping, Registry
from venue.journal import Journal
from venue.marketdata import MarketData, Units
from venue.mqtt_feed import MqttFeed
from venue.operator_requests import OperatorRequests
from venue.outlets import Outlets, Writer
from venue.pipeline import Pipeline

log = logging.getLogger("venue")

DEMO_DEPOSITS = {"BTC": "100", "ETH": "1000", "USDT": "10000000"}


class Venue:
    """One venue: build with a configuration, ``await open()``, hand it its consumers
    (``attach``), ``await started(port)``, and ``await stop()``."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.data_dir = Path(cfg["venue"]["data_dir"])
        self.comp_id = cfg["venue"]["comp_id"]
        self.engine = None
        self.journal: Journal | None = None
        self.pipeline: Pipeline | None = None
        self.units: dict[str, Units] = {}
        self.market = MarketData()  # the public books: FIX market data and the MQTT feed share them
        self.feed: MqttFeed | None = None
        self._tasks: list[asyncio.Task] = []

    # what the composition root and the tests reach through the venue
    @property
    def core(self) -> Core:
        return self.pipeline.core  # the pipeline rebuilds it when a command breaks it

    @property
    def records(self) -> dict[str, registry.SessionRecord]:
        return self.registry.sessions

    def submit(self, command: Any, done: Any = None) -> None:
        self.pipeline.submit(command, done)

    def audit(self, kind: str, **kwargs: Any) -> None:
        self.pipeline.audit(kind, **kwargs)

    # ------------------------------------------------------------------ start / stop

    async def open(self) -> None:
        """Database, journal and recovery, registry, access gate, custody, the public books."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(database_url(self.cfg))
        await registry.create_schema(self.engine)
        await refdata.create_schema(self.engine)
        await audit.create_schema(self.engine)
        await mailbox.create_schema(self.engine)
        self.journal = await Journal.open(self.engine)
        demo = bool(self.cfg["venue"]["demo"])
        if demo:
            await self._seed_demo()
        instruments = await refdata.load_instruments(self.engine)
        # Risk profiles reach the stage as journaled commands (replayed on recovery), so the stage
        # starts empty and is brought in line with the registry after recovery.
        self.stage = RiskLedgerStage({}, Assets(), FeeSchedule())
        core = await Journal.recover(self.engine, instruments, self.stage)
        self.pipeline = Pipeline(self.engine, self.journal, core, self.stage, int(self.cfg["core"]["snapshot_every"]))
        for inst in core.instruments():
            self.units[inst.symbol] = Units(inst.tick_size, inst.lot_size)
        first_start = self.journal.cmd_count == 0
        self.registry = Registry(self.engine)
        await self.pipeline.run_and_journal(await self.registry.risk_sync_commands(self.pipeline))
        if demo and first_start:
            await self._demo_deposits(await registry.load_accounts(self.engine))
        self.gate = await AccessGate.load(self.engine, GateConfig.from_config(self.cfg["access"]))
        await self._restore_replay_memory()
        await self.registry.load_sessions()
        self.audit_log = audit.AuditLog(self.engine, audit.load_or_create_audit_key(self.data_dir))
        self.custody = CustodyScheduler(self.engine, self.pipeline, self.audit_log,
                                        float(self.cfg["custody"]["simulated_block_seconds"]))
        await self.custody.setup()
        self.operator_requests = OperatorRequests(self.engine, self.pipeline, self.gate)
        self.housekeeping = Housekeeping(self.pipeline, self.registry, self.gate, self.operator_requests,
                                         self.custody)
        core = self.pipeline.core
        for inst in core.instruments():
            # RptSeq never goes backwards across a restart: each book continues from the journal's
            # event sequence (a client sees a jump, takes a new snapshot, and carries on)
            book = self.market.book(inst.symbol)
            book.load([(p, q) for p, q, _ in core.book_levels(inst.symbol, Side.BUY)],
                      [(p, q) for p, q, _ in core.book_levels(inst.symbol, Side.SELL)], self.journal.seq)
            book.status = inst.status
        # the MQTT feed shares the FIX market-data books: both carry literally the same RptSeq
        self.feed = self.pipeline.feed = MqttFeed.from_config(self.cfg["mqtt"], self.units.get, self.market)
        if self.feed is not None:
            self.feed.start()

    def attach(self, outlets: Outlets, writers: list[Writer] = ()) -> None:
        """The consumers of the venue's results and the writers in its transaction (the FIX
        acceptor), built by the composition root; the pipeline's loop starts."""
        self.pipeline.outlets = outlets
        # custody's transactions first: they run inside the turn's, with the journal rows they make
        self.pipeline.writers = [self.custody.turns, *writers]
        self.pipeline.start()

    async def started(self, port: int | None) -> None:
        """The sessions are being served on ``port`` (None: no FIX): start the venue's timers."""
        self._tasks.append(asyncio.create_task(self.housekeeping.run()))
        where = f"listening on {self.cfg['fix']['host']}:{port}" if port is not None else "running without FIX"
        log.info("venue %s (database %s, journal at command %d, event %d)",
                 where, self.engine.dialect.name, self.journal.cmd_count, self.journal.seq)
        await self.audit_log.append("venue.started", actor="venue", subject=self.comp_id,
                                    details={"port": port, "database": self.engine.dialect.name})

    async def stop_timers(self) -> None:
        """Stop the venue's own tasks (first, so that nothing new is submitted while stopping)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                continue
            except Exception:
                log.exception("background task failed while stopping")
        self._tasks = []

    async def stop(self) -> None:
        """Close: the MQTT feed, the audit log's checkpoint, the database (the sessions are stopped
        first, by whoever built them, with their last batch committed)."""
        await self.stop_timers()
        if self.pipeline is not None:
            await self.pipeline.flush()  # what the timers left
            await self.pipeline.stop()
        if self.feed is not None:
            await self.feed.stop()
        if self.engine is not None:
            try:
                await self.audit_log.append("venue.stopped", actor="venue", subject=self.comp_id)
                await self.audit_log.checkpoint()
            finally:
                await self.engine.dispose()

    # ------------------------------------------------------------------ set-up helpers

    async def _seed_demo(self) -> None:
        async with self.engine.begin() as conn:
            have = {i.symbol for i in await refdata.load_instruments(conn)}
            for inst in refdata.DEMO_INSTRUMENTS:
                if inst.symbol not in have:
                    await refdata.save_instrument(conn, inst)
        await seed_demo(self.engine, self.data_dir)

    async def _demo_deposits(self, accounts: list[registry.AccountRecord]) -> None:
        assets = Assets()
        ts = time.time_ns()
        cmds = [cmd.Deposit(ts=ts, account=a.account_id, asset=code, amount=assets[code].to_units(amount), ref="demo")
                for a in accounts if a.firm_id == "DEMO" for code, amount in DEMO_DEPOSITS.items()]
        await self.pipeline.run_and_journal(cmds)

    async def _restore_replay_memory(self) -> None:
        """Signed logons accepted within the logon window before a restart stay used."""
        cutoff = time.time_ns() - int((float(self.cfg["access"]["logon_window"]) + 2) * 1e9)
        log_table = audit.audit_log
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                select(log_table.c.subject, log_table.c.details)
                .where(log_table.c.kind == "logon.accepted", log_table.c.time_ns >= cutoff))).all()
        for sender, details in rows:
            d = json.loads(details or "{}")
            if d.get("seq") and d.get("sending_time"):
                self.gate.remember_logon(d.get("key_id"), "A", sender, self.comp_id, d["seq"], d["sending_time"])
