"""Operator requests: how the `venue` CLI asks a running venue to act (letters to ``operator`` in
the venue's one mailbox, ``venue/mailbox.py``).

The CLI posts a request; the venue turns it into core commands (so the action is journaled like any
other) or a query (``venue/operator_requests.py``) and writes the answer, with its audit entry, in
the batch's transaction. The CLI waits for the answer. Any number of operator tools can post.

A request reported as failed must never run later (an operator who retries would, say, credit a
deposit twice). So a request is posted only while a venue holds the writer lock; the venue takes a
request (pending -> taken, one UPDATE) before carrying it out; a tool that got no answer in time
withdraws it (pending -> withdrawn, one UPDATE): exactly one of the two wins. A request the venue
took but did not answer is waited for a while longer, then reported as of unknown outcome (with
how to check). A taken request a venue did not answer before it stopped was not carried out (the
answer commits with the journal): the next venue refuses it rather than running it late.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from venue import lock, mailbox
from venue.mailbox import Letter as Request
from venue.mailbox import create_schema, encode_result

__all__ = ["KINDS", "OperatorError", "Request", "create_schema", "encode_result", "pending", "require_running",
           "submit", "wait"]

requests = mailbox.letters  # the mailbox's table (operator requests are its letters to "operator")

KINDS = ("trading_status", "kill_switch", "deposit", "withdraw", "mass_cancel", "end_of_session", "balances")


class OperatorError(RuntimeError):
    """The venue refused the request, or did not answer."""


async def submit(engine: AsyncEngine, kind: str, payload: dict[str, Any], operator: str = "operator") -> int:
    if kind not in KINDS:
        raise OperatorError(f"unknown request kind {kind!r}")
    return await mailbox.post(engine, "operator", kind, payload, operator)


async def require_running(engine: AsyncEngine) -> None:
    """Refuse before posting when no venue runs on this database: a request nobody takes now
    would otherwise run whenever a venue next starts, long after the tool reported a failure."""
    if await lock.holder(engine) is None:
        raise OperatorError("no venue is running on this database (start `venue serve`): nothing was requested")


async def wait(engine: AsyncEngine, request_id: int, timeout: float = 10.0, grace: float = 20.0) -> dict[str, Any]:
    """The result of a request once the venue has handled it; raises OperatorError on refusal.

    No answer within ``timeout``: the request is withdrawn (it will never be carried out), unless
    the venue already took it; then its answer is awaited ``grace`` seconds more, and if none
    comes the error says the outcome is unknown and how to find it."""
    try:
        got = await mailbox.wait(engine, request_id, timeout)
    except mailbox.NoAnswer:
        if await mailbox.withdraw(engine, request_id):
            raise OperatorError(f"the venue did not answer within {timeout:g} s: request {request_id} was withdrawn "
                                "and will not be carried out (nothing changed; is `venue serve` responsive?)") from None
        try:  # the venue took it (or answered just now): its answer is coming
            got = await mailbox.wait(engine, request_id, grace)
        except mailbox.NoAnswer:
            raise OperatorError(
                f"outcome unknown: the venue took request {request_id} but did not answer within "
                f"{timeout + grace:g} s. Do not retry blindly: look for its entry with "
                f"`venue audit tail --kind operator.<kind> --json` (details.request = {request_id}, "
                "details.outcome) or check the balances/status; if the venue stops before answering, "
                "the request is not carried out") from None
    if not got.ok:
        raise OperatorError(got.result.get("error", "refused"))
    return got.result


async def pending(engine: AsyncEngine) -> list[Request]:
    """The operator requests not answered yet, oldest first."""
    return await mailbox.pending(engine, "operator")
