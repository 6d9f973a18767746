"""What custody needs from the rest of the venue, as narrow interfaces, and their real implementations.

* ``CustomerLedger``: the customer ledger (what the venue owes): hold / release / consume funds of a
  withdrawal, credit a deposit, read balances. ``CoreLedger`` implements it through the matching
  core's command path (HoldFunds, ReleaseHold, ConsumeHold, Deposit -> RiskLedgerStage.apply ->
  journaled LedgerEntry events) and reads the core's ``Ledger``.
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

from sqlalchemy.ext.asyncio import AsyncEngine

from venue.core.commands import ConsumeHold, Deposit, HoldFunds, ReleaseHold
from venue.core.events import LedgerEntry, LedgerRejected
from venue.core.ledger import EXTERNAL, Ledger


class LedgerRefused(Exception):
    """The ledger refused a custody command (``reason`` says why)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CustomerLedger(Protocol):
    async def hold(self, ts: int, account: str, asset: str, amount: int, ref: str) -> None:
        """Reserve available funds under ``ref``; LedgerRefused if short."""

    async def release(self, ts: int, ref: str) -> None:
        """Give the hold back; LedgerRefused if it is not open (already released or consumed)."""

    async def consume(self, ts: int, ref: str) -> None:
        """Debit the held funds to the outside world; LedgerRefused if the hold is not open."""

    async def deposit(self, ts: int, account: str, asset: str, amount: int, ref: str) -> None: ...

    async def available(self, account: str, asset: str) -> int: ...

    async def balance(self, account: str, asset: str) -> tuple[int, int]:
        """(total, reserved)."""

    async def owed(self, asset: str) -> int:
        """What the venue owes all customers in ``asset`` (sum of totals, venue accounts excluded)."""

    async def net_deposits(self, asset: str) -> int:
        """Deposits minus withdrawals ever: what the wallets must hold (owed + the venue's own fees)."""


Submit = Callable[[Any], Sequence[Any] | Awaitable[Sequence[Any]]]


class CoreLedger:
    """``CustomerLedger`` through the core: ``submit(cmd)`` runs a command through the core (and its
    journal) and returns its events; ``ledger`` is the core's Ledger (read only)."""

    def __init__(self, submit: Submit, ledger: Ledger) -> None:
        self._submit = submit
        self.ledger = ledger

    async def _run(self, cmd: Any) -> LedgerEntry:
        events = self._submit(cmd)
        if inspect.isawaitable(events):
            events = await events
        for ev in events or ():
            if isinstance(ev, LedgerRejected):
                raise LedgerRefused(ev.text)
            if isinstance(ev, LedgerEntry):
                return ev
        raise LedgerRefused(f"the core produced no ledger entry for {type(cmd).__name__}")

    async def hold(self, ts: int, account: str, asset: str, amount: int, ref: str) -> None:
        await self._run(HoldFunds(ts, account, asset, amount, ref))

    async def release(self, ts: int, ref: str) -> None:
        await self._run(ReleaseHold(ts, ref))

    async def consume(self, ts: int, ref: str) -> None:
        await self._run(ConsumeHold(ts, ref))

    async def deposit(self, ts: int, account: str, asset: str, amount: int, ref: str) -> None:
        await self._run(Deposit(ts, account, asset, amount, ref))

    async def available(self, account: str, asset: str) -> int:
        return self.ledger.available(account, asset)

    async def balance(self, account: str, asset: str) -> tuple[int, int]:
        return self.ledger.balance(account, asset)

    async def owed(self, asset: str) -> int:
        return sum(self.ledger.balance(acc, asset)[0] for acc in self.ledger.accounts() if not acc.startswith("@"))

    async def net_deposits(self, asset: str) -> int:
        return -self.ledger.balance(EXTERNAL, asset)[0]


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
