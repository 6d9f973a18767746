"""The venue's one mailbox: how tools (the ``venue`` CLI) ask a running venue to act.

A tool posts a letter (an operator request, a signed custody instruction) and waits for its
answer; the venue reads what is pending, carries each letter out (an operator request through the
core, so it is journaled like any order; a custody instruction through custody's workflow) and
writes the answer back. One table for both, so one reader, one answer path, one place to look;
letters survive a venue restart (an unanswered one is picked up on start). ``recipient`` says
who handles a letter: ``operator`` (``venue/operator.py``) or ``custody`` (``venue/custody/inbox.py``).
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

letters = Table(
    "mailbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_ns", BigInteger, nullable=False),
    Column("recipient", String(16), nullable=False),  # operator | custody
    Column("actor", String(64), nullable=False),  # who posted it (operator name, custody actor)
    Column("kind", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    # pending -> taken (the venue is carrying it out) -> done | failed; pending -> withdrawn (the
    # tool gave up waiting before the venue took it: never carried out). See take() and withdraw().
    Column("state", String(16), nullable=False, default="pending"),
    Column("result", Text),
)

RECIPIENTS = ("operator", "custody")


@dataclass(slots=True)
class Letter:
    id: int
    to: str
    actor: str
    kind: str
    payload: dict[str, Any]


@dataclass(slots=True)
class Answer:
    """A letter's answer: ``ok`` False when the venue refused it (``result["error"]`` says why)."""

    ok: bool
    result: dict[str, Any]


class NoAnswer(RuntimeError):
    """The venue did not answer within the time asked."""


async def create_schema(engine: AsyncEngine | AsyncConnection) -> None:
    if isinstance(engine, AsyncConnection):
        await engine.run_sync(metadata.create_all)
        return
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)


async def post(engine: AsyncEngine, to: str, kind: str, payload: dict[str, Any], actor: str) -> int:
    """Post a letter; returns its id (the mailbox is created if this database has none yet)."""
    if to not in RECIPIENTS:
        raise ValueError(f"no such recipient {to!r}")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        res = await conn.execute(letters.insert().values(
            created_ns=time.time_ns(), recipient=to, actor=actor, kind=kind, payload=json.dumps(payload), state="pending"))
        return int(res.inserted_primary_key[0])


async def wait(engine: AsyncEngine, letter_id: int, timeout: float) -> Answer:
    """The letter's answer once the venue wrote it; NoAnswer after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        async with engine.connect() as conn:
            row = (await conn.execute(select(letters.c.state, letters.c.result)
                                      .where(letters.c.id == letter_id))).first()
        if row is not None and row.state in ("done", "failed"):
            return Answer(row.state == "done", json.loads(row.result or "{}"))
        if time.monotonic() > deadline:
            raise NoAnswer(letter_id)
        await asyncio.sleep(0.05)


async def withdraw(engine: AsyncEngine, letter_id: int) -> bool:
    """Withdraw a letter the venue has not taken: True when it is now withdrawn (it will never be
    carried out), False when the venue took or answered it first (the one UPDATE decides)."""
    async with engine.begin() as conn:
        res = await conn.execute(update(letters).where(letters.c.id == letter_id, letters.c.state == "pending")
                                 .values(state="withdrawn", result='{"error": "withdrawn: no answer in time"}'))
        return res.rowcount == 1


async def take(engine: AsyncEngine, letter_ids: list[int]) -> list[int]:
    """Mark pending letters as taken by the venue before carrying them out; returns those taken
    (a letter its tool withdrew meanwhile is not). With withdraw(), one of the two wins, never both."""
    taken = []
    async with engine.begin() as conn:
        for i in letter_ids:
            res = await conn.execute(update(letters).where(letters.c.id == i, letters.c.state == "pending")
                                     .values(state="taken"))
            if res.rowcount == 1:
                taken.append(i)
    return taken


async def state(engine: AsyncEngine, letter_id: int) -> str | None:
    async with engine.connect() as conn:
        return (await conn.execute(select(letters.c.state).where(letters.c.id == letter_id))).scalar()


async def pending(db: AsyncEngine | AsyncConnection, to: str, state: str = "pending") -> list[Letter]:
    """The letters for ``to`` in ``state`` (not answered yet: pending, or taken), oldest first."""
    async def _q(conn: AsyncConnection) -> list[Letter]:
        rows = (await conn.execute(select(letters).where(letters.c.state == state, letters.c.recipient == to)
                                   .order_by(letters.c.id))).mappings().all()
        return [Letter(r["id"], r["recipient"], r["actor"], r["kind"], _payload(r["payload"])) for r in rows]

    if isinstance(db, AsyncConnection):
        return await _q(db)
    async with db.connect() as conn:
        return await _q(conn)


def _payload(text: str) -> dict[str, Any]:
    """A letter's payload; one the venue cannot read becomes ``{}`` (refused as a bad request)."""
    try:
        value = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def encode_result(result: dict[str, Any]) -> str:
    """The answer's JSON text, made as the answer is queued: a result that cannot be serialised
    becomes an error saying so instead of failing the transaction that writes it."""
    try:
        return json.dumps(result, default=str)
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        return json.dumps({"error": f"the answer cannot be recorded: {type(exc).__name__}: {str(exc)[:200]}"})


async def answer(conn: AsyncConnection, letter_id: int, ok: bool, result: dict[str, Any] | str) -> None:
    """Write the venue's answer (``result`` a dict, or the text ``encode_result`` made), once."""
    text = result if isinstance(result, str) else encode_result(result)
    await conn.execute(update(letters).where(letters.c.id == letter_id, letters.c.state.in_(("pending", "taken")))
                       .values(state="done" if ok else "failed", result=text))
