"""Operator requests: how the `venue` CLI asks a running venue to act.

The CLI writes a request row; the venue polls the table, turns each request into core commands
(so the action is journaled like any other) or a query, and writes the result back in the same
transaction as the batch. The CLI waits for the result. The same table serves any number of
operator tools and survives a venue restart (an unanswered request is picked up on start).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

metadata = MetaData()

requests = Table(
    "operator_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_ns", BigInteger, nullable=False),
    Column("operator", String(64), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("state", String(16), nullable=False, default="pending"),  # pending, done, failed
    Column("result", Text),
)

KINDS = ("trading_status", "kill_switch", "deposit", "withdraw", "mass_cancel", "end_of_session", "balances")


class OperatorError(RuntimeError):
    """The venue refused the request, or did not answer."""


@dataclass(slots=True)
class Request:
    id: int
    operator: str
    kind: str
    payload: dict[str, Any]


async def create_schema(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)


async def submit(engine: AsyncEngine, kind: str, payload: dict[str, Any], operator: str = "operator") -> int:
    if kind not in KINDS:
        raise OperatorError(f"unknown request kind {kind!r}")
    async with engine.begin() as conn:
        res = await conn.execute(requests.insert().values(
            created_ns=time.time_ns(), operator=operator, kind=kind, payload=json.dumps(payload), state="pending"))
        return int(res.inserted_primary_key[0])


async def wait(engine: AsyncEngine, request_id: int, timeout: float = 10.0) -> dict[str, Any]:
    """The result of a request once the venue has handled it; raises OperatorError on refusal."""
    deadline = time.monotonic() + timeout
    while True:
        async with engine.connect() as conn:
            row = (await conn.execute(select(requests.c.state, requests.c.result)
                                      .where(requests.c.id == request_id))).first()
        if row is not None and row.state != "pending":
            result = json.loads(row.result or "{}")
            if row.state == "failed":
                raise OperatorError(result.get("error", "refused"))
            return result
        if time.monotonic() > deadline:
            raise OperatorError("the venue did not answer: is `venue serve` running on this database?")
        await asyncio.sleep(0.05)


async def pending(db: AsyncEngine | AsyncConnection) -> list[Request]:
    async def _q(conn: AsyncConnection) -> list[Request]:
        rows = (await conn.execute(select(requests).where(requests.c.state == "pending")
                                   .order_by(requests.c.id))).mappings().all()
        return [Request(r["id"], r["operator"], r["kind"], _payload(r["payload"])) for r in rows]

    if isinstance(db, AsyncConnection):
        return await _q(db)
    async with db.connect() as conn:
        return await _q(conn)


def _payload(text: str) -> dict[str, Any]:
    """A request's payload; one the venue cannot read becomes ``{}`` (refused as a bad request)."""
    try:
        value = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def encode_result(result: dict[str, Any]) -> str:
    """The answer's JSON text, made as the answer is queued: a result that cannot be serialised
    becomes an error saying so instead of failing the batch's transaction."""
    try:
        return json.dumps(result, default=str)
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        return json.dumps({"error": f"the answer cannot be recorded: {type(exc).__name__}: {str(exc)[:200]}"})


async def answer(conn: AsyncConnection, request_id: int, ok: bool, result: dict[str, Any] | str) -> None:
    """Write the venue's answer (``result`` a dict, or the text ``encode_result`` made)."""
    text = result if isinstance(result, str) else encode_result(result)
    await conn.execute(update(requests).where(requests.c.id == request_id)
                       .values(state="done" if ok else "failed", result=text))
