"""What custody needs from the rest of the venue, as narrow interfaces, and their real implementations.

* ``CustomerLedger``: the customer ledger (what the venue owes): hold / release / consume funds of a
  withdrawal, credit a deposit, read balances. ``CoreLedger`` implements it through the matching
  core's command path (HoldFunds, ReleaseHold, ConsumeHold, Deposit -> RiskLedgerStage.apply ->
  journaled LedgerEntry events) and reads the core's ``Ledger``; ``JournalLedger`` journals in the
  caller's transaction with the venue stopped, ``venue.custody.turns.TurnLedger`` in the running
  venue's turn.
* ``Directory``: KYC of accounts and operators' approval keys; ``RegistryDirectory`` reads
  venue.registry.
"""

from __future__ import annotations

import base64
import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from venue.core.commands import ConsumeHold, Deposit, HoldFunds, ReleaseHold
from venue.core.events import LedgerEntry, LedgerRejected
from venue.core.ledger import EXTERNAL, Ledger


class LedgerRefused(Exception):
    """The ledger refused a custody command (``reason`` says why)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CustomerLedger(Protocol):
    """``conn``: the caller's open transaction, for a ledger that journals into the same database
    (so the custody state change and the ledger entry commit together); others ignore it."""

    async def hold(self, ts: int, account: str, asset: str, amount: int, ref: str,
                   conn: AsyncConnection | None = None) -> None:
        """Reserve available funds under ``ref``; LedgerRefused if short."""

    async def release(self, ts: int, ref: str, conn: AsyncConnection | None = None) -> None:
        """Give the hold back; LedgerRefused if it is not open (already released or consumed)."""

    async def consume(self, ts: int, ref: str, conn: AsyncConnection | None = None) -> None:
        """Debit the held funds to the outside world; LedgerRefused if the hold is not open."""

    async def deposit(self, ts: int, account: str, asset: str, amount: int, ref: str,
                      conn: AsyncConnection | None = None) -> None: ...

    async def available(self, account: str, asset: str) -> int: ...

    async def balance(self, account: str, asset: str) -> tuple[int, int]:
        """(total, reserved)."""

    async def owed(self, asset: str) -> int:
        """What the venue owes all customers in ``asset`` (sum of totals, venue accounts excluded)."""

    async def net_deposits(self, asset: str) -> int:
        """Deposits minus withdrawals ever: what the wallets must hold (owed + the venue's own fees)."""

    async def open_holds(self) -> dict[str, tuple[str, str, int]]:
        """Every open hold: ref -> (account, asset, amount)."""


Submit = Callable[[Any], Sequence[Any] | Awaitable[Sequence[Any]]]


class CoreLedger:
    """``CustomerLedger`` through the core: ``submit(cmd)`` runs a command through the core (and its
    journal) and returns its events; ``ledger`` is the core's Ledger (read only)."""

    def __init__(self, submit: Submit, ledger: Ledger) -> None:
        self._submit = submit
        self.ledger = ledger

    async def _run(self, cmd: Any, conn: AsyncConnection | None = None) -> LedgerEntry:
        events = self._submit(cmd)
        if inspect.isawaitable(events):
            events = await events
        return self._entry(events, cmd)

    @staticmethod
    def _entry(events: Sequence[Any] | None, cmd: Any) -> LedgerEntry:
        for ev in events or ():
            if isinstance(ev, LedgerRejected):
                raise LedgerRefused(ev.text)
            if isinstance(ev, LedgerEntry):
                return ev
        raise LedgerRefused(f"the core produced no ledger entry for {type(cmd).__name__}")

    async def hold(self, ts: int, account: str, asset: str, amount: int, ref: str,
                   conn: AsyncConnection | None = None) -> None:
        await self._run(HoldFunds(ts, account, asset, amount, ref), conn)

    async def release(self, ts: int, ref: str, conn: AsyncConnection | None = None) -> None:
        await self._run(ReleaseHold(ts, ref), conn)

    async def consume(self, ts: int, ref: str, conn: AsyncConnection | None = None) -> None:
        await self._run(ConsumeHold(ts, ref), conn)

    async def deposit(self, ts: int, account: str, asset: str, amount: int, ref: str,
                      conn: AsyncConnection | None = None) -> None:
        await self._run(Deposit(ts, account, asset, amount, ref), conn)

    async def available(self, account: str, asset: str) -> int:
        return self.ledger.available(account, asset)

    async def balance(self, account: str, asset: str) -> tuple[int, int]:
        return self.ledger.balance(account, asset)

    async def owed(self, asset: str) -> int:
        return sum(self.ledger.balance(acc, asset)[0] for acc in self.ledger.accounts() if not acc.startswith("@"))

    async def net_deposits(self, asset: str) -> int:
        return -self.ledger.balance(EXTERNAL, asset)[0]

    async def open_holds(self) -> dict[str, tuple[str, str, int]]:
        return dict(self.ledger.holds)


class JournalLedger(CoreLedger):
    """``CustomerLedger`` for tools run while the venue is stopped: the core is recovered from the
    journal (snapshot + replay) and every custody command is processed by it and journaled in the
    caller's transaction, exactly as the running venue would. Never use it while the venue runs:
    the journal has one writer (``venue_running`` tells)."""

    #: custody may call it inside its own transaction: the command is journaled there, atomically
    journals_in_caller_transaction = True

    def __init__(self, engine: AsyncEngine, core: Any, ledger: Ledger, journal: Any) -> None:
        super().__init__(core.process, ledger)
        self.engine = engine
        self.core = core
        self.journal = journal

    @classmethod
    async def open(cls, engine: AsyncEngine) -> JournalLedger:
        from venue import refdata, registry
        from venue.core.assets import Assets
        from venue.core.fees import FeeSchedule
        from venue.core.risk import AccountRisk
        from venue.core.stage import RiskLedgerStage
        from venue.journal import Journal

        await refdata.create_schema(engine)
        instruments = await refdata.load_instruments(engine)
        accounts = await registry.load_accounts(engine)
        stage = RiskLedgerStage({a.account_id: AccountRisk.from_record(a) for a in accounts}, Assets(),
                                FeeSchedule())
        journal = await Journal.open(engine)
        core = await Journal.recover(engine, instruments, stage)
        return cls(engine, core, stage.ledger, journal)

    async def _run(self, cmd: Any, conn: AsyncConnection | None = None) -> LedgerEntry:
        events = self.core.process(cmd)
        if conn is not None:  # a refused command is journaled too: its events are numbered
            await self.journal.write(conn, [cmd], events)
        else:
            async with self.engine.begin() as own:
                await self.journal.write(own, [cmd], events)
        return self._entry(events, cmd)


async def venue_running(engine: AsyncEngine) -> bool:
    """True while a venue holds the database's writer lock (venue.lock): the audit log's
    started/stopped entries are history, which a refused second venue or a crash makes lie."""
    from venue import lock

    return await lock.holder(engine) is not None


@dataclass(slots=True, frozen=True)
class Kyc:
    status: str
    tier: int
    expires: date | None

    def problem(self, now_ns: int) -> str | None:
        if self.status != "verified":
            return f"KYC status is {self.status}"
        today = datetime.fromtimestamp(now_ns / 1e9, UTC).date()
        if self.expires is not None and today > self.expires:
            return f"KYC expired on {self.expires.isoformat()}"
        return None


@dataclass(slots=True, frozen=True)
class Operator:
    name: str
    role: str
    public_key: bytes  # 32 raw bytes of the operator's approval key


class Directory(Protocol):
    async def kyc(self, account: str) -> Kyc | None: ...

    async def operator(self, name: str) -> Operator | None: ...

    async def approvers(self) -> list[str]:
        """Operators who may approve (the n of m-of-n)."""


APPROVER_ROLES = ("admin", "operator")


class RegistryDirectory:
    """``Directory`` over venue.registry (accounts' KYC, operators and their keys)."""

    def __init__(self, engine: AsyncEngine, approver_roles: Sequence[str] = APPROVER_ROLES) -> None:
        self.engine = engine
        self.approver_roles = tuple(approver_roles)

    async def kyc(self, account: str) -> Kyc | None:
        from venue import registry

        for a in await registry.load_accounts(self.engine):
            if a.account_id == account:
                return Kyc(a.kyc_status, a.tier, a.kyc_expires)
        return None

    async def operator(self, name: str) -> Operator | None:
        from venue import registry

        for o in await registry.load_operators(self.engine):
            if o.name == name:
                return Operator(o.name, o.role, base64.b64decode(o.public_key))
        return None

    async def approvers(self) -> list[str]:
        from venue import registry

        return [o.name for o in await registry.load_operators(self.engine) if o.role in self.approver_roles]
