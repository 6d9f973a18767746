"""Custody's transactions inside the venue's turn: a withdrawal's request, its ledger hold and its
state change commit together.

In the running venue, custody's transaction IS the turn's (``venue.pipeline.Pipeline``): a custody
method opens ``TurnTransactions.transaction()``, which waits for the next turn; the turn hands it
its connection inside a savepoint (custody's writes are the first of the turn's transaction), the
method's body runs on it, and every ledger command the body gives (``TurnLedger``: HoldFunds,
ReleaseHold, ConsumeHold, Deposit) runs through the core at once (``Pipeline.process_now``), its
journal rows joining the turn's write set. The journal rows, custody's rows and custody's audit
entries then commit in one transaction with the FIX store and the rest of the turn, or none of
them does. No custody transaction ever awaits the core, so nothing waits for the write lock it
holds (the deadlock that once made custody commit first and settle holds afterwards).

A body that raises is rolled back to its savepoint (a hold it had placed is given back by a
ReleaseHold in the same transaction, so the journal never keeps a hold without its request). A
turn whose commit fails keeps everything: the pipeline writes its journal rows again with the next
turn, and custody replays the write statements it recorded (``Recorder``), first, in that same
transaction, while the methods that made them still wait (holding custody's lock, so nothing else
of custody reads or writes in between).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, false
from sqlalchemy.ext.asyncio import AsyncConnection

from venue.core.commands import HoldFunds, ReleaseHold
from venue.core.events import LedgerEntry
from venue.custody import store
from venue.custody.ports import CoreLedger

log = logging.getLogger("venue")


class Recorder:
    """The turn's connection as custody's body sees it: statements run on it, and the writes
    (INSERT / UPDATE / DELETE) are recorded to be replayed if the turn's commit fails; audit entries
    are kept here and handed to the turn only if the body completes."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.writes: list[tuple[Any, Any]] = []
        self.audit: list[tuple[str, dict[str, Any]]] = []
        self.ledger: list[tuple[Any, bool]] = []  # (command, it changed the ledger)

    async def execute(self, statement: Any, parameters: Any = None, **kw: Any) -> Any:
        result = await self.conn.execute(statement, parameters, **kw)
        if getattr(statement, "is_dml", False):
            self.writes.append((statement, parameters))
        return result

    def __getattr__(self, name: str) -> Any:  # dialect, scalar, ...: the connection's own
        return getattr(self.conn, name)


@dataclass(slots=True, eq=False)
class _Slot:
    conn: asyncio.Future  # the turn's connection, handed to the waiting body
    body: asyncio.Future  # None when the body completed, else its exception
    committed: asyncio.Future  # the turn's transaction committed
    recorder: Recorder | None = None
    writes: list[tuple[Any, Any]] = field(default_factory=list)


class TurnTransactions:
    """The pipeline's writer for custody (``venue.outlets.Writer``): runs custody's waiting
    transactions in the turn's transaction, first, and replays them if that commit failed."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self._waiting: list[_Slot] = []  # bodies waiting for a turn
        self._done: list[_Slot] = []  # ran in this turn's transaction: answered when it commits
        self._retry: list[_Slot] = []  # ran in a transaction whose commit failed: written again first

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Recorder]:
        """A custody transaction inside the venue's next turn; returns once that turn committed.
        The body must never wait for the pipeline (it runs while the turn waits for it)."""
        loop = asyncio.get_running_loop()
        slot = _Slot(loop.create_future(), loop.create_future(), loop.create_future())
        self._waiting.append(slot)
        self.pipeline.wake()
        try:
            conn = await slot.conn
        except BaseException as exc:
            if slot in self._waiting:
                self._waiting.remove(slot)
            elif slot.conn.done() and not slot.conn.cancelled():  # handed over as we were cancelled
                slot.body.set_result(exc)
            raise
        slot.recorder = Recorder(conn)
        try:
            yield slot.recorder
        except BaseException as exc:
            slot.body.set_result(exc)
            raise
        slot.body.set_result(None)
        await slot.committed

    # ------------------------------------------------------------------ the Writer protocol

    async def begin_batch(self) -> None:
        return None

    def stage_batch(self) -> bool:
        return bool(self._waiting or self._retry)

    async def write_staged(self, conn: AsyncConnection) -> None:
        retry, self._retry = self._retry, []
        self._done.extend(retry)  # (kept for the next retry if this transaction fails too)
        for slot in retry:  # the same writes, in the same order, on the same (rolled back) state
            for statement, parameters in slot.writes:
                await conn.execute(statement, parameters)
        if self._waiting and conn.dialect.name == "sqlite":
            # pysqlite opens the transaction lazily, at the first INSERT/UPDATE/DELETE: a SAVEPOINT
            # before any would start one of its own, and RELEASE would commit it on the spot
            await conn.execute(delete(store.request_nonces).where(false()))
        while self._waiting:
            slot = self._waiting.pop(0)
            if slot.conn.done():  # its caller was cancelled while waiting
                continue
            savepoint = await conn.begin_nested()
            slot.conn.set_result(conn)
            failure = await asyncio.shield(slot.body)
            rec = slot.recorder
            if failure is None:
                self._done.append(slot)
                await savepoint.commit()
                slot.writes = rec.writes
                for kind, kw in rec.audit:
                    self.pipeline.audit(kind, **kw)
                continue
            await savepoint.rollback()
            for command, changed in reversed(rec.ledger if rec is not None else []):
                if changed and isinstance(command, HoldFunds):  # its request was rolled back: give it back
                    log.error("custody transaction failed after holding %s (%r): hold released", command.ref, failure)
                    self.pipeline.process_now(ReleaseHold(command.ts, command.ref))
                elif changed:
                    log.error("custody transaction failed after %s %s (%r): the start-up check will report it",
                              type(command).__name__, command.ref, failure)

    async def staged_failed(self, exc: Exception) -> None:
        self._retry, self._done = self._done + self._retry, []

    def staged_committed(self) -> None:
        done, self._done = self._done, []
        for slot in done:
            if not slot.committed.done():
                slot.committed.set_result(None)


class TurnLedger(CoreLedger):
    """``CustomerLedger`` of the running venue: only inside a custody transaction (``conn`` given),
    where the command runs through the core at once and is journaled in the turn's transaction, with
    custody's rows. Outside one it refuses: waiting for the pipeline from custody's code is what
    deadlocked (and inside a turn it would wait for itself)."""

    journals_in_caller_transaction = True

    def __init__(self, pipeline: Any) -> None:
        super().__init__(self._outside, pipeline.stage.ledger)
        self.pipeline = pipeline

    @staticmethod
    def _outside(cmd: Any) -> list[Any]:
        raise RuntimeError(f"{type(cmd).__name__} outside a custody transaction: custody's ledger commands "
                           "run inside the venue's turn (Custody._txn)")

    async def _run(self, cmd: Any, conn: AsyncConnection | None = None) -> LedgerEntry:
        if conn is None:
            self._outside(cmd)
        events = self.pipeline.process_now(cmd)
        if isinstance(conn, Recorder):
            conn.ledger.append((cmd, any(isinstance(e, LedgerEntry) for e in events)))
        return self._entry(events, cmd)
