"""The pipeline (the sequencer): commands in arrival order through the core, results to their
consumers, one transaction for everything the batch produced, and only then the bytes.

The pipeline owns the batch loop (:meth:`Pipeline.run`); one turn = everything that arrived since
the last one:

1. producers queue commands (:meth:`Pipeline.submit`, which wakes the loop): operator requests,
   custody, the venue's timers, and the writers' sessions, whose input is handed over when the
   turn begins (``Writer.begin_batch``: the FIX acceptor is one producer among them);
2. :meth:`Pipeline.run_core`: the core runs the queue; each command's events go to the outlets
   (execution reports, drop copies), the batch's to market data;
3. one transaction for everything the turn produced: each writer's rows (the FIX message store:
   outbound messages, sequence numbers) and the pipeline's (:meth:`Pipeline.write_batch`: the
   journal's commands and events, audit entries, the answers to mailbox letters);
4. only after the commit: each writer sends its bytes, the journal's counters move, the MQTT feed
   is told (:meth:`Pipeline.after_commit`).

A failed commit never wedges the pipeline. What one command carries is checked before it can reach
the commit: each command is encoded for the journal before the core sees it, and its events right
after, before any report leaves; a command that cannot be recorded (or that breaks the core) is
refused to its sender alone (the core rebuilt from the journal if it had applied it). A commit that
fails anyway (the database: locked, full, gone) keeps the whole batch, sends nothing of it and
commits it again, first, with the next batch (see ``_WriteSet``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from venue import audit, mailbox, refdata
from venue.core.assets import Assets
from venue.core.engine import Core
from venue.core.fees import FeeSchedule
from venue.core.stage import RiskLedgerStage
from venue.db import write_and_commit
from venue.journal import Journal, JournalEncodeError
from venue.mqtt_feed import MqttFeed
from venue.outlets import Outlets, Writer

log = logging.getLogger("venue")

Done = Callable[[list[Any]], None]


@dataclass(slots=True)
class CommandRefused:
    """What a ``done`` callback gets instead of events when the venue refused the command (it
    cannot be recorded, or it broke the core). Not a core event: no seq, never journaled."""

    command: str
    text: str


@dataclass(slots=True)
class Reply:
    """The answer to a mailbox letter and its audit entry, written in the batch's transaction."""

    letter: int
    ok: bool
    result: str  # mailbox.encode_result's text
    audit: tuple[str, dict[str, Any]]  # audit.recordable(kind, entry)


@dataclass(slots=True)
class _WriteSet:
    """What one commit writes besides the FIX store: the journal rows of the commands the core ran
    and of their events (encoded as they ran, so writing them cannot fail on their content), audit
    entries and mailbox answers. Kept whole until its transaction commits; one whose commit
    failed is written again, first, with the next batch (the journal's counters move only on
    commit, so the retry starts where the journal stands)."""

    commands: list[Any] = field(default_factory=list)  # the command objects, to rebuild the core
    command_rows: list[str] = field(default_factory=list)
    event_rows: list[str] = field(default_factory=list)
    audit: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    journaled: tuple[int, int] | None = None  # (cmd_to, seq_to) once written
    snapshot: bool = False

    def __bool__(self) -> bool:
        return bool(self.command_rows or self.audit or self.replies)

    def then(self, later: _WriteSet) -> _WriteSet:
        """This (failed) write set followed by a later one, as one."""
        return _WriteSet(self.commands + later.commands, self.command_rows + later.command_rows,
                         self.event_rows + later.event_rows, self.audit + later.audit, self.replies + later.replies)


class Pipeline:
    """The venue's sequencer over one core and its journal."""

    def __init__(self, engine: Any, journal: Journal, core: Core, stage: RiskLedgerStage, snapshot_every: int) -> None:
        self.engine = engine
        self.journal = journal
        self.core = core
        self.stage = stage
        self.snapshot_every = snapshot_every
        self.outlets: Outlets | None = None
        self.feed: MqttFeed | None = None
        self.on_replied: Callable[[int], None] = lambda letter: None  # a reply's transaction committed
        self._pending: list[tuple[Any, Done | None]] = []
        self._ws = _WriteSet()  # this batch's rows, filling up
        self._writing: _WriteSet | None = None  # written in the transaction now committing
        self._failed: _WriteSet | None = None  # its commit failed: written again with the next
        self._in_core = False
        self._published: list[Any] = []
        self._events_since_snapshot = 0
        self.writers: list[Writer] = []  # who writes in the turn's transaction and sends after it
        self.turns = 0  # committed turns
        self._event = asyncio.Event()
        self._lock = asyncio.Lock()
        self._conn: Any = None  # the loop's own connection, kept open
        self._failures = 0  # failed commits in a row

    def wake(self) -> None:
        """Something to run or write: a turn soon."""
        self._event.set()

    _wake = wake

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        """The batch loop: one turn per wake-up, until cancelled."""
        event = self._event
        while True:
            await event.wait()
            event.clear()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pipeline turn failed")
                await asyncio.sleep(0.1)
                event.set()

    async def flush(self) -> None:
        """Run one turn now (the loop does this when woken)."""
        async with self._lock:
            await self._turn()

    async def _turn(self) -> None:
        writers = self.writers
        for w in writers:
            await w.begin_batch()
        await self.run_core()
        staged = [w.stage_batch() for w in writers]
        if not any(staged) and not self.has_pending_write():
            return
        conn = self._conn
        try:
            if conn is None or conn.closed:
                conn = self._conn = await self.engine.connect()
            driver = await self._one_hop_driver(conn, staged)
            if driver is not None:
                await self._write_one_hop(driver, staged)
            else:
                async with conn.begin():
                    for w in writers:
                        await w.write_staged(conn)
                    await self.write_batch(conn)
        except Exception as exc:
            self.write_failed(exc)
            self._conn = None
            try:
                await conn.close()
            except Exception:
                log.debug("closing the failed connection", exc_info=True)
            for w in writers:
                await w.staged_failed(exc)  # (may probe which session's rows the database refuses)
            self._failures += 1
            if not writers:
                log.warning("commit failed (%d in a row): %r", self._failures, exc)
            asyncio.get_running_loop().call_later(min(0.05 * 2 ** min(self._failures, 5), 1.0), self.wake)
            return
        self._failures = 0
        self.turns += 1
        for w in writers:
            w.staged_committed()
        self.after_commit()

    async def _one_hop_driver(self, conn: Any, staged: list[bool]) -> Any:
        """The aiosqlite connection when this turn's transaction can run as ONE call on its thread
        (SQLite; every writer with output gives plain statements; the write set is journal rows
        only: no audit entries, answers or snapshot, which keep the general path); else None.
        A writer whose ``stage_batch`` returned False writes nothing."""
        if conn.dialect.name != "sqlite" or conn.in_transaction():
            return None
        if not all(hasattr(w, "staged_statements") for w, s in zip(self.writers, staged, strict=True) if s):
            return None
        ws, failed = self._ws, self._failed
        if ws.audit or ws.replies or (failed is not None and (failed.audit or failed.replies)):
            return None
        events = len(ws.event_rows) + (len(failed.event_rows) if failed is not None else 0)
        if events and self._events_since_snapshot + events >= self.snapshot_every:
            return None
        driver = (await conn.get_raw_connection()).driver_connection
        return driver if hasattr(driver, "_execute") and hasattr(driver, "_conn") else None

    async def _write_one_hop(self, driver: Any, staged: list[bool]) -> None:
        """The turn's transaction as one function on the database thread: the writers' statements,
        the journal's one row, the commit (``venue.db.write_and_commit``)."""
        statements: list[tuple[str, Any]] = []
        for w, s in zip(self.writers, staged, strict=True):
            if s:
                statements.extend(w.staged_statements())
        ws = self._take_write_set()
        if ws.command_rows:
            sql, params, ws.journaled = self.journal.rows_statement(ws.command_rows, ws.event_rows)
            statements.append((sql, params))
        if statements:
            await driver._execute(write_and_commit, driver._conn, statements)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        """Stop the loop between turns (never inside one), then close its connection."""
        task, self._task = getattr(self, "_task", None), None
        if task is not None:
            async with self._lock:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    # ------------------------------------------------------------------ producers

    def submit(self, command: Any, done: Done | None = None) -> None:
        """Queue a command for this batch; ``done(events)`` runs once the core has processed it.

        ``command`` None queues just ``done([])``: a reply that must keep its place behind the
        commands submitted before it (run at once if the core's turn is already running)."""
        if command is None and self._in_core:
            done([])
            return
        self._pending.append((command, done))
        self._wake()

    def audit(self, kind: str, **kwargs: Any) -> None:
        """Queue an audit entry (made storable now); it is written in the batch's transaction."""
        self._ws.audit.append(audit.recordable(kind, kwargs))
        self._wake()

    def process_now(self, command: Any) -> list[Any]:
        """Run one command through the core at once, from inside the turn's transaction (custody's
        transactions, venue/custody/turns.py): its journal rows join this turn's write set, so they
        commit with the participant's rows. Never from outside a turn."""
        encode = self.journal.codec.encode_row
        row = encode(command)
        out = self.core.process(command)
        rows = [encode(e) for e in out]
        ws = self._ws
        ws.commands.append(command)
        ws.command_rows.append(row)
        ws.event_rows.extend(rows)
        self.outlets.deliver(out)
        self._published.extend(self.outlets.publish(out))
        return out

    def reply(self, reply: Reply) -> None:
        """Queue the answer to a mailbox letter (with its audit entry) for the batch's transaction."""
        self._ws.replies.append(reply)
        self._wake()

    async def run_and_journal(self, cmds: list[Any]) -> None:
        """Before any session is served: process commands and journal them in one transaction."""
        if not cmds:
            return
        events = self.core.process_batch(cmds)
        async with self.engine.begin() as conn:
            await self.journal.write(conn, cmds, events)

    # ------------------------------------------------------------------ the core's turn

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

    def _refuse(self, command: Any, done: Done | None, reason: str) -> None:
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

    # ------------------------------------------------------------------ the transaction

    def has_pending_write(self) -> bool:
        return bool(self._ws) or self._failed is not None

    async def write_batch(self, conn) -> None:
        """Write the batch (after any write set whose commit failed) into the writer's transaction."""
        ws = self._take_write_set()
        if ws.command_rows:
            ws.journaled = await self.journal.write_rows(conn, ws.command_rows, ws.event_rows)
            if self._events_since_snapshot + len(ws.event_rows) >= self.snapshot_every:
                try:
                    await self.journal.write_snapshot(conn, self.core, at=ws.journaled)
                    ws.snapshot = True
                except JournalEncodeError as exc:  # the journal alone still recovers the core
                    log.error("snapshot skipped: %s", exc)
                    self._events_since_snapshot = 0
        entries = list(ws.audit)
        for r in ws.replies:
            await mailbox.answer(conn, r.letter, r.ok, r.result)
            entries.append(r.audit)
        await audit.append_many(conn, entries)  # the batch's entries in one INSERT, in this order

    def _take_write_set(self) -> _WriteSet:
        """This batch's write set (after a failed one, first), now the one being written."""
        if self._writing is not None:  # committed, though the writer did not get to after_commit
            self._committed(self._writing)
        ws, self._ws = self._ws, _WriteSet()
        if self._failed is not None:
            ws, self._failed = self._failed.then(ws), None
        self._writing = ws
        return ws

    def _committed(self, ws: _WriteSet) -> None:
        if ws.journaled is not None:
            self.journal.committed(*ws.journaled)
            self._events_since_snapshot = 0 if ws.snapshot else self._events_since_snapshot + len(ws.event_rows)
        for r in ws.replies:
            self.on_replied(r.letter)

    def write_failed(self, exc: Exception) -> None:
        """The writer's transaction failed: nothing of it committed, nothing of it was sent.
        Keep the write set; the writer keeps its messages and retries both together."""
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
