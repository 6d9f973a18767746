"""Operator requests: how the `venue` CLI asks a running venue to act (letters to ``operator`` in
the venue's one mailbox, ``venue/mailbox.py``).

The CLI posts a request; the venue turns it into core commands (so the action is journaled like any
other) or a query (``venue/operator_requests.py``) and writes the answer, with its audit entry, in
the batch's transaction. The CLI waits for the answer. Any number of operator tools can post; an
unanswered request is picked up when the venue (re)starts.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from venue import mailbox
from venue.mailbox import Letter as Request
from venue.mailbox import create_schema, encode_result

__all__ = ["KINDS", "OperatorError", "Request", "create_schema", "encode_result", "pending", "submit", "wait"]

requests = mailbox.letters  # the mailbox's table (operator requests are its letters to "operator")

KINDS = ("trading_status", "kill_switch", "deposit", "withdraw", "mass_cancel", "end_of_session", "balances")


class OperatorError(RuntimeError):
    """The venue refused the request, or did not answer."""


async def submit(engine: AsyncEngine, kind: str, payload: dict[str, Any], operator: str = "operator") -> int:
    if kind not in KINDS:
        raise OperatorError(f"unknown request kind {kind!r}")
    return await mailbox.post(engine, "operator", kind, payload, operator)


async def wait(engine: AsyncEngine, request_id: int, timeout: float = 10.0) -> dict[str, Any]:
    """The result of a request once the venue has handled it; raises OperatorError on refusal."""
    try:
        got = await mailbox.wait(engine, request_id, timeout)
    except mailbox.NoAnswer:
        raise OperatorError("the venue did not answer: is `venue serve` running on this database?") from None
    if not got.ok:
        raise OperatorError(got.result.get("error", "refused"))
    return got.result


async def pending(engine: AsyncEngine) -> list[Request]:
    """The operator requests not answered yet, oldest first."""
    return await mailbox.pending(engine, "operator")
