"""The venue: database, registry, core, journal, custody; the batch, operator requests, timers.

It knows nothing of FIX or of the session applications: the composition root (``tools/wiring.py``)
builds them around it and hands it their consumers (``venue.outlets.Outlets``). One batch =
everything one loop turn delivered:

1. the FIX sessions hand application messages to the session applications, which turn them into
   venue commands (:meth:`Venue.submit`);
2. ``run_core``: the core runs the batch's commands; the events go to the outlets (execution
   reports, drop copies, market data), which queue FIX messages on the sessions;
3. one transaction: the FIX store writes the outbound messages and sequence numbers, the journal
   writes the commands and events, the audit log its entries (``write_batch``);
4. only then are the bytes written to the sockets and the MQTT feed told (``after_commit``).

A failed commit never wedges the batch loop. What one command carries is checked before it can
reach the commit: each command is encoded for the journal before the core sees it, and its events
right after, before any report leaves; a command that cannot be recorded (or that breaks the core)
is refused to its sender alone (the core rebuilt from the journal if it had applied it). A commit
that fails anyway (the database: locked, full, gone) keeps the whole batch, sends nothing of it
and commits it again, first, with the next batch (see ``_WriteSet``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from venue import audit, operator, refdata, registry
from venue.access.gate import AccessGate, GateConfig
from venue.config import database_url
from venue.core import commands as cmd
from venue.core.assets import Assets
from venue.core.engine import Core
from venue.core.fees import FeeSchedule
from venue.core.risk import AccountRisk, KycLimits
from venue.core.stage import RiskLedgerStage
from venue.core.types import Side, TradingStatus
from venue.custody import store as custody_store
from venue.custody.chain import SimulatedChain
from venue.custody.policy import PolicyError
from venue.custody.ports import CoreLedger, RegistryDirectory, venue_submit
from venue.custody.wallets import WalletSigner
from venue.custody.workflow import Custody
from venue.db import make_engine
from venue.demo import seed_demo
from venue.journal import Journal, JournalEncodeError
from venue.marketdata import MarketData, Units, plain
from venue.mqtt_feed import MqttFeed
from venue.outlets import Outlets

log = logging.getLogger("venue")

DEMO_DEPOSITS = {"BTC": "100", "ETH": "1000", "USDT": "10000000"}


@dataclass(slots=True)
class CommandRefused:
    """What a ``done`` callback gets instead of events when the venue refused the command (it
    cannot be recorded, or it broke the core). Not a core event: no seq, never journaled."""

    command: str
    text: str


@dataclass(slots=True)
class _WriteSet:
    """What one commit writes besides the FIX store: the journal rows of the commands the core ran
    and of their events (encoded as they ran, so writing them cannot fail on their content), audit
    entries and operator answers. Kept whole until its transaction commits; one whose commit
    failed is written again, first, with the next batch (the journal's counters move only on
    commit, so the retry starts where the journal stands)."""

    commands: list[Any] = field(default_factory=list)  # the command objects, to rebuild the core
    command_rows: list[str] = field(default_factory=list)
    event_rows: list[str] = field(default_factory=list)
    audit: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    answers: list[tuple[operator.Request, bool, str, dict[str, Any]]] = field(default_factory=list)
    journaled: tuple[int, int] | None = None  # (cmd_to, seq_to) once written
    snapshot: bool = False

    def __bool__(self) -> bool:
        return bool(self.command_rows or self.audit or self.answers)

    def then(self, later: _WriteSet) -> _WriteSet:
        """This (failed) write set followed by a later one, as one."""
        return _WriteSet(self.commands + later.commands, self.command_rows + later.command_rows,
                         self.event_rows + later.event_rows, self.audit + later.audit, self.answers + later.answers)


class Venue:
    """One venue: build with a configuration, ``await open()``, hand it its consumers
    (``attach``), ``await started(port)``, and ``await stop()``. The composition root
    (``tools/wiring.py``) builds the sessions and the FIX engine around it."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.data_dir = Path(cfg["venue"]["data_dir"])
        self.comp_id = cfg["venue"]["comp_id"]
        self.engine = None
        self.core: Core | None = None
        self.journal: Journal | None = None
        self.outlets: Outlets | None = None
        self.units: dict[str, Units] = {}
        self.market = MarketData()  # the public books: FIX market data and the MQTT feed share them
        self.records: dict[str, registry.SessionRecord] = {}
        self._pending: list[tuple[Any, Callable[[list[Any]], None] | None]] = []
        self._ws = _WriteSet()  # this batch's rows, filling up
        self._writing: _WriteSet | None = None  # written in the transaction now committing
        self._failed: _WriteSet | None = None  # its commit failed: written again with the next
        self._in_flight: set[int] = set()
        self._logging_out: set[str] = set()
        self._in_core = False
        self._custody_idle_logged = False
        self._published: list[Any] = []
        self._events_since_snapshot = 0
        self._tasks: list[asyncio.Task] = []
        self.feed: MqttFeed | None = None

    # ------------------------------------------------------------------ start / stop

    async def open(self) -> None:
        """Database, journal and recovery, registry, access gate, custody, the public books."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        url = database_url(self.cfg)
        self.engine = make_engine(url)
        await registry.create_schema(self.engine)
        await refdata.create_schema(self.engine)
        await audit.create_schema(self.engine)
        await operator.create_schema(self.engine)
        self.journal = await Journal.open(self.engine)
        demo = bool(self.cfg["venue"]["demo"])
        if demo:
            await self._seed_demo()
        instruments = await refdata.load_instruments(self.engine)
        # Risk profiles reach the stage as journaled commands (replayed on recovery), so the stage
        # starts empty and is brought in line with the registry after recovery.
        self.stage = RiskLedgerStage({}, Assets(), FeeSchedule())
        self.core = await Journal.recover(self.engine, instruments, self.stage)
        for inst in self.core.instruments():
            self.units[inst.symbol] = Units(inst.tick_size, inst.lot_size)
        first_start = self.journal.cmd_count == 0
        await self._run_and_journal(await self._risk_sync_commands())
        if demo and first_start:
            await self._demo_deposits(await registry.load_accounts(self.engine))
        self.gate = await AccessGate.load(self.engine, GateConfig.from_config(self.cfg["access"]))
        await self._restore_replay_memory()
        await self._load_sessions()
        self.audit_log = audit.AuditLog(self.engine, audit.load_or_create_audit_key(self.data_dir))
        # Custody: customer funds move through the core (holds journaled like orders; custody's
        # transaction commits while the batch's journal write waits for the lock); the chain
        # adapter is the simulated one (no node can run here). Wallet keys unlock with
        # VENUE_CUSTODY_<TIER>_PASSPHRASE when a transfer must be signed.
        self.chain = SimulatedChain(self.engine)
        self._next_block = 0.0
        self.custody = Custody(self.engine, self.chain,
                               CoreLedger(venue_submit(self.submit), self.stage.ledger),
                               RegistryDirectory(self.engine), WalletSigner(self.engine, _wallet_passphrase))
        await self.custody.setup()
        await self._reconcile_custody_holds()

        for inst in self.core.instruments():
            # RptSeq never goes backwards across a restart: each book continues from the journal's
            # event sequence (a client sees a jump, takes a new snapshot, and carries on)
            book = self.market.book(inst.symbol)
            book.load([(p, q) for p, q, _ in self.core.book_levels(inst.symbol, Side.BUY)],
                      [(p, q) for p, q, _ in self.core.book_levels(inst.symbol, Side.SELL)], self.journal.seq)
            book.status = inst.status
        # the MQTT feed shares the FIX market-data books: both carry literally the same RptSeq
        self.feed = MqttFeed.from_config(self.cfg["mqtt"], self.units.get, self.market)
        if self.feed is not None:
            self.feed.start()

    def attach(self, outlets: Outlets) -> None:
        """The consumers of the venue's results, built by the composition root."""
        self.outlets = outlets

    async def started(self, port: int) -> None:
        """The sessions are being served on ``port``: start the venue's timers."""
        self._tasks.append(asyncio.create_task(self._housekeeping()))
        log.info("venue listening on %s:%d (database %s, journal at command %d, event %d)",
                 self.cfg["fix"]["host"], port, self.engine.dialect.name, self.journal.cmd_count, self.journal.seq)
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
        await self._run_and_journal(cmds)

    async def _run_and_journal(self, cmds: list[Any]) -> None:
        """Before the acceptor runs: process commands and journal them in one transaction."""
        if not cmds:
            return
        events = self.core.process_batch(cmds)
        async with self.engine.begin() as conn:
            await self.journal.write(conn, cmds, events)

    async def _risk_sync_commands(self) -> list[Any]:
        """Commands bringing the stage's risk profiles and KYC-tier limits in line with the registry."""
        accounts = await registry.load_accounts(self.engine)
        tiers = await registry.load_kyc_tiers(self.engine)
        return self.stage.sync_commands(time.time_ns(), [AccountRisk.from_record(a) for a in accounts],
                                        [KycLimits.from_record(t) for t in tiers])

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

    async def _load_sessions(self) -> None:
        self.records = {r.sender_comp_id: r for r in await registry.load_sessions(self.engine)}

    # ------------------------------------------------------------------ the batch

    def submit(self, command: Any, done: Callable[[list[Any]], None] | None = None) -> None:
        """Queue a command for this batch; ``done(events)`` runs once the core has processed it.

        ``command`` None queues just ``done([])``: a reply that must keep its place behind the
        commands submitted before it (run at once if the core's turn is already running)."""
        if command is None and self._in_core:
            done([])
            return
        self._pending.append((command, done))
        if self.outlets is not None:
            self.outlets.wake()

    def audit(self, kind: str, **kwargs: Any) -> None:
        """Queue an audit entry (made storable now); it is written in the batch's transaction."""
        self._ws.audit.append(audit.recordable(kind, kwargs))
        if self.outlets is not None:
            self.outlets.wake()

    async def run_core(self) -> None:
        """The core's turn: every queued command in arrival order, each one's reports sent to its
        owner and its drop copies before the next command runs; then market data for the batch.

        Each command is encoded for the journal before the core sees it and its events right
        after, before anything of it is delivered: one that cannot be recorded, or that makes the
        core raise, is refused alone (``_refuse``), the core rebuilt without it if it had run."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        events: list[Any] = []
        ws, encode = self._ws, self.journal.codec.encode_row
        deliver = self.outlets.deliver
        self._in_core = True
        try:
            for command, done in pending:
                if command is None:
                    done([])
                    continue
                try:
                    row = encode(command)
                except JournalEncodeError as exc:
                    self._refuse(command, done, str(exc))
                    continue
                try:
                    out = self.core.process(command)
                    rows = [encode(e) for e in out]
                except Exception as exc:
                    reason = str(exc) if isinstance(exc, JournalEncodeError) else f"internal error: {type(exc).__name__}"
                    if not isinstance(exc, JournalEncodeError):  # the details go to the log, not the client
                        log.exception("the core failed on %s", type(command).__name__)
                    self._in_core = False  # replies queued meanwhile wait for the next turn
                    await self._rewind()
                    self._in_core = True
                    self._refuse(command, done, reason)
                    continue
                ws.commands.append(command)
                ws.command_rows.append(row)
                ws.event_rows.extend(rows)
                events.extend(out)
                deliver(out)
                if done is not None:
                    done(out)
        finally:
            self._in_core = False
        if events:
            self._published.extend(self.outlets.publish(events))

    async def _rewind(self) -> None:
        """Rebuild the core (and the stage, in place: custody holds a reference to its ledger) as it
        was before the command being run: the journal, as at start-up, then the commands run since
        the last commit. The core is deterministic, so this is exactly the state every report
        already queued was made from; the command that failed is simply not among them."""
        started = time.monotonic()
        instruments = await refdata.load_instruments(self.engine)
        core = await Journal.recover(self.engine, instruments, RiskLedgerStage({}, Assets(), FeeSchedule()))
        for command in (self._failed.commands if self._failed is not None else []) + self._ws.commands:
            core.process(command)
        self.core = Core.from_snapshot(core.snapshot(), self.stage)
        self.outlets.core_replaced(self.core)
        log.warning("core rebuilt from the journal + %d uncommitted command(s) in %.3f s",
                    len(self._ws.commands) + (len(self._failed.commands) if self._failed else 0),
                    time.monotonic() - started)

    def _refuse(self, command: Any, done: Callable[[list[Any]], None] | None, reason: str) -> None:
        """Refuse one command: logged once, audited, and its sender told why (an ExecutionReport
        rejected or an OrderCancelReject with the reason as Text, or ``done([CommandRefused])`` to
        whoever waits on it: operator, custody, mass cancel); the rest of the batch goes on."""
        name = type(command).__name__
        sid = str(getattr(command, "session", "") or "")
        log.error("%s%s refused: %s", name, f" of {sid}" if sid else "", reason)
        self.audit("command.refused", actor=sid or "venue", subject=str(getattr(command, "account", "") or ""),
                   source=sid or None, details={"command": name, "cl_ord_id": getattr(command, "cl_ord_id", None),
                                                "reason": reason})
        if done is not None:
            done([CommandRefused(name, reason)])
        elif sid:
            self.outlets.refuse(command, reason)

    def has_pending_write(self) -> bool:
        return bool(self._ws) or self._failed is not None

    async def write_batch(self, conn) -> None:
        """Write the batch (after any write set whose commit failed) into the acceptor's transaction."""
        if self._writing is not None:  # committed, though the acceptor did not get to after_flush
            self._committed(self._writing)
        ws, self._ws = self._ws, _WriteSet()
        if self._failed is not None:
            ws, self._failed = self._failed.then(ws), None
        self._writing = ws
        if ws.command_rows:
            ws.journaled = await self.journal.write_rows(conn, ws.command_rows, ws.event_rows)
            if self._events_since_snapshot + len(ws.event_rows) >= int(self.cfg["core"]["snapshot_every"]):
                try:
                    await self.journal.write_snapshot(conn, self.core, at=ws.journaled)
                    ws.snapshot = True
                except JournalEncodeError as exc:  # the journal alone still recovers the core
                    log.error("snapshot skipped: %s", exc)
                    self._events_since_snapshot = 0
        entries = list(ws.audit)
        for req, ok, result, details in ws.answers:
            await operator.answer(conn, req.id, ok, result)
            entries.append(audit.recordable(f"operator.{req.kind}", details))
        await audit.append_many(conn, entries)  # one INSERT for the batch's entries

    def _committed(self, ws: _WriteSet) -> None:
        if ws.journaled is not None:
            self.journal.committed(*ws.journaled)
            self._events_since_snapshot = 0 if ws.snapshot else self._events_since_snapshot + len(ws.event_rows)
        for req, *_ in ws.answers:
            self._in_flight.discard(req.id)

    def write_failed(self, exc: Exception) -> None:
        """The acceptor's transaction failed: nothing of it committed, nothing of it was sent.
        Keep the write set; the acceptor keeps its messages and retries both together."""
        ws, self._writing = self._writing, None
        if ws is not None:
            ws.journaled, ws.snapshot = None, False
            self._failed = ws

    def after_commit(self) -> None:
        if self._writing is not None:
            self._committed(self._writing)
            self._writing = None
        published, self._published = self._published, []
        if published and self.feed is not None:
            self.feed.publish_updates(published)

    # ------------------------------------------------------------------ operator requests

    async def poll_operator(self) -> None:
        for req in await operator.pending(self.engine):
            if req.id in self._in_flight:
                continue
            self._in_flight.add(req.id)
            account = req.payload.get("account")
            if account is not None and not str(account).startswith("@") and account not in self.gate.accounts:
                await self.gate.reload(self.engine)  # registered since the last reload?
                if account not in self.gate.accounts:
                    # the CLI checks too; this guards rows written by other means
                    self._answer(req, False, {"error": f"unknown account {account}"})
                    continue
            try:
                self._operator_request(req)
            except (KeyError, ValueError, TypeError) as exc:
                self._answer(req, False, {"error": f"bad request: {exc}"})

    def _answer(self, req: operator.Request, ok: bool, result: dict[str, Any]) -> None:
        """Queue the answer to an operator request and its audit entry: the decision with its
        outcome and reason, both written in the batch's transaction."""
        details: dict[str, Any] = {**req.payload, "request": req.id, "outcome": "ok" if ok else "refused"}
        if not ok:
            details["reason"] = str(result.get("error", "refused"))
        elif "cancelled" in result:
            details["cancelled"] = result["cancelled"]
        subject = req.payload.get("account") or req.payload.get("instrument") or ""
        entry = {"actor": req.operator, "subject": str(subject), "source": "cli", "details": details}
        self._ws.answers.append((req, ok, operator.encode_result(result), entry))
        if self.outlets is not None:
            self.outlets.wake()

    def _operator_request(self, req: operator.Request) -> None:
        p, now = req.payload, time.time_ns()

        def done(events: list[Any]) -> None:
            names = [type(e).__name__ for e in events]
            refused = [getattr(e, "text", "") for e in events
                       if type(e).__name__ in ("LedgerRejected", "OrderRejected", "CommandRefused")]
            cancelled = sum(1 for n in names if n == "OrderCancelled")
            if refused:
                self._answer(req, False, {"error": refused[0], "events": names})
            else:
                self._answer(req, True, {"events": names, "cancelled": cancelled})

        if req.kind == "balances":
            account = p["account"]
            assets = Assets()
            out = {code: {"total": plain(assets[code].to_decimal(total)), "reserved": plain(assets[code].to_decimal(res)),
                          "available": plain(assets[code].to_decimal(total - res))}
                   for code, (total, res) in sorted(self.stage.balances(account).items())}
            self._answer(req, True, {"account": account, "balances": out})
            return
        if req.kind == "trading_status":
            if self.core.instrument(p["instrument"]) is None:
                raise ValueError(f"unknown instrument {p['instrument']}")
            command: Any = cmd.SetTradingStatus(ts=now, instrument=p["instrument"], status=TradingStatus(p["status"]))
        elif req.kind == "kill_switch":
            command = cmd.SetKillSwitch(ts=now, account=p["account"], on=bool(p["on"]), session="operator")
        elif req.kind in ("deposit", "withdraw"):
            asset = Assets()[p["asset"]]
            kind = cmd.Deposit if req.kind == "deposit" else cmd.Withdraw
            command = kind(ts=now, account=p["account"], asset=asset.code, amount=asset.to_units(p["amount"]),
                           ref=p.get("ref") or f"operator:{req.id}")
        elif req.kind == "mass_cancel":
            command = cmd.MassCancel(ts=now, cl_ord_id=f"OP{req.id}", account=p.get("account"),
                                     instrument=p.get("instrument"), side=Side(p["side"]) if p.get("side") else None,
                                     reason="operator", session="operator")
        elif req.kind == "end_of_session":
            command = cmd.EndOfSession(ts=now, instrument=p.get("instrument"))
        else:
            raise ValueError(f"unknown kind {req.kind}")
        self.submit(command, done)

    # ------------------------------------------------------------------ housekeeping

    async def _reconcile_custody_holds(self) -> None:
        """After recovery, make the ledger's custody holds match custody's requests: custody commits
        its request and the core journals its hold in two transactions, so a crash between them can
        leave one without the other. A hold with no request holding funds is released; a request
        holding funds the ledger does not hold is held again (refused if the balance moved on,
        which `venue custody status` then reports)."""
        r = custody_store.requests
        async with self.engine.connect() as conn:
            held = {row.id: (row.account, row.asset, int(row.amount)) for row in (await conn.execute(
                select(r.c.id, r.c.account, r.c.asset, r.c.amount).where(r.c.funds == "held"))).all()}
        holds = dict(self.stage.ledger.holds)
        now = time.time_ns()
        cmds: list[Any] = [cmd.ReleaseHold(ts=now, ref=ref) for ref in sorted(holds) if ref not in held]
        cmds += [cmd.HoldFunds(ts=now, account=a, asset=asset, amount=n, ref=rid)
                 for rid, (a, asset, n) in sorted(held.items()) if rid not in holds]
        if cmds:
            log.warning("custody holds reconciled after recovery: %s",
                        ", ".join(f"{type(c).__name__} {c.ref}" for c in cmds))
            await self._run_and_journal(cmds)
            await self.audit_log.append("custody.holds_reconciled", actor="venue", subject="custody",
                                        details={"commands": [[type(c).__name__, c.ref] for c in cmds]})

    async def _custody_turn(self, now: int) -> None:
        """Custody's pass (inbox, approvals, broadcasts, deposits, hot wallet), once a policy exists."""
        try:
            await self.custody.policy()
        except PolicyError:
            if not self._custody_idle_logged:
                log.info("custody is not set up (no policy): `venue custody init` starts it")
                self._custody_idle_logged = True
            return
        block_every = float(self.cfg["custody"]["simulated_block_seconds"])
        if block_every > 0 and time.monotonic() >= self._next_block:
            self._next_block = time.monotonic() + block_every
            await self.chain.mine(1)
        await self.custody.process(now)

    def _enforce_registry(self, now: int) -> None:
        """Log out sessions whose KYC lapsed (cancelling their orders) or that were disabled."""
        for sid, logged_on in list(self.outlets.logged_on()):
            if not logged_on:
                self._logging_out.discard(sid)
                continue
            if sid in self._logging_out:
                continue  # Logout sent, waiting for the answer or the timeout
            rec = self.records.get(sid)
            if rec is None or not rec.enabled:
                reason, kind = "session disabled", "session.disabled_logout"
            else:
                reason = self.gate.kyc_reason(sid, now)
                kind = "session.kyc_logout"
                if reason is None:
                    continue
                self.submit(cmd.MassCancel(ts=now, session_filter=sid, reason="kyc", session=sid))
            log.warning("logging %s out: %s", sid, reason)
            self.audit(kind, actor="venue", subject=sid, details={"reason": reason})
            self._logging_out.add(sid)
            self.outlets.log_out(sid, "Logout")

    async def _housekeeping(self) -> None:
        """Once a second: GTD expiry, registry reload, KYC re-check, market-data slow consumers."""
        turn = 0
        while True:
            await asyncio.sleep(0.2)
            turn += 1
            try:
                await self.poll_operator()
                if turn % 5:
                    continue
                now = time.time_ns()
                if any(o.expire_at is not None and o.expire_at <= now for o in self.core.open_orders()):
                    self.submit(cmd.Tick(ts=now))
                await self.gate.reload(self.engine)
                await self._load_sessions()
                await self.outlets.sessions_changed(self.records)
                for command in await self._risk_sync_commands():
                    self.submit(command)
                self._enforce_registry(now)
                self.outlets.on_timer()
                self.outlets.wake()
                await self._custody_turn(now)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("housekeeping failed")


def _wallet_passphrase(tier: str) -> str:
    value = os.environ.get(f"VENUE_CUSTODY_{tier.upper()}_PASSPHRASE")
    if not value:
        raise RuntimeError(f"VENUE_CUSTODY_{tier.upper()}_PASSPHRASE is not set: cannot sign from the {tier} wallet")
    return value
