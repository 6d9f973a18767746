"""The request state machine's vocabulary: states, the transition table, views and errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from venue.custody.policy import NS


class State(StrEnum):
    REQUESTED = "requested"
    SCREENED = "screened"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    SIGNING = "signing"
    BROADCAST = "broadcast"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    FAILED = "failed"


S = State
TRANSITIONS: dict[State, frozenset[State]] = {
    S.REQUESTED: frozenset({S.SCREENED, S.REJECTED}),
    S.SCREENED: frozenset({S.PENDING_APPROVAL, S.APPROVED, S.REJECTED}),
    S.PENDING_APPROVAL: frozenset({S.APPROVED, S.REJECTED, S.EXPIRED, S.CANCELLED}),
    S.APPROVED: frozenset({S.SIGNING, S.CANCELLED}),
    S.SIGNING: frozenset({S.SIGNING, S.BROADCAST, S.FAILED}),  # signing -> signing: a retried broadcast
    S.BROADCAST: frozenset({S.CONFIRMED, S.SIGNING, S.FAILED}),  # broadcast -> signing: dropped, retry
    S.CONFIRMED: frozenset(),
    S.REJECTED: frozenset(),
    S.EXPIRED: frozenset(),
    S.CANCELLED: frozenset(),
    S.FAILED: frozenset(),
}
TERMINAL = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
OPEN = frozenset(State) - TERMINAL
DAY = 24 * 3600 * NS


class TransitionError(Exception):
    """A move the table does not allow, or a request that moved under us (concurrent writer)."""


class Refused(Exception):
    """A request or decision the venue refuses; ``reason`` is for the caller and the audit log."""

    def __init__(self, reason: str, request_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.request_id = request_id


@dataclass(slots=True, frozen=True)
class ApprovalView:
    operator: str
    decision: str
    expiry: int
    ts: int


@dataclass(slots=True, frozen=True)
class RequestView:
    id: str
    kind: str
    account: str | None
    asset: str
    amount: int
    source: str
    destination: str
    state: str
    route: str
    approvals_required: int
    initiator: str
    digest: str
    funds: str
    txid: str | None
    attempts: int
    reason: str
    created_at: int
    updated_at: int
    expiry: int | None
    release_at: int | None
    policy_version: int
    approvals: tuple[ApprovalView, ...] = ()
    history: tuple[tuple[int, str, str, str], ...] = ()  # (ts, from, to, reason)
    submitted_by: str | None = None  # who handed a withdrawal in: never one of its approvers


@dataclass(slots=True)
class ProcessReport:
    """What one ``process`` pass did (for logs, the CLI and tests)."""

    moved: list[tuple[str, str]] = field(default_factory=list)  # (request id, new state)
    deposits: list[str] = field(default_factory=list)  # credited txids
    proposed: list[str] = field(default_factory=list)  # request ids created (sweeps, top-ups)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (request id, what went wrong)
    answered: int = 0  # inbox instructions carried out (or refused)
