"""The custody inbox: how tools hand signed instructions to a running venue.

A tool (the ``venue`` CLI) writes a row (a signed withdrawal request, a signed operator decision, a
signed whitelist addition, a top-up or sweep proposal); the venue's ``Custody.process`` drains the
inbox through the same methods as everything else and writes the answer back; the tool waits for it.
The signatures travel as they are: the venue verifies them, not the tool.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from venue.custody import store
from venue.custody.requests import (
    AddressAddition,
    Approval,
    SignedAddressAddition,
    SignedApproval,
    SignedRequest,
)

KINDS = ("request", "decision", "address", "topup", "sweep")


class InboxError(RuntimeError):
    """The venue refused the instruction (``str`` is its reason) or did not answer."""


def encode_decision(signed: SignedApproval) -> dict[str, Any]:
    return {"approval": asdict(signed.approval), "signature": signed.signature}


def decode_decision(d: dict[str, Any]) -> SignedApproval:
    return SignedApproval(Approval(**d["approval"]), str(d["signature"]))


def encode_address(signed: SignedAddressAddition) -> dict[str, Any]:
    return {"addition": asdict(signed.addition), "key_id": signed.key_id, "signature": signed.signature}


def decode_address(d: dict[str, Any]) -> SignedAddressAddition:
    return SignedAddressAddition(AddressAddition(**d["addition"]), str(d["key_id"]), str(d["signature"]))


def encode_request(signed: SignedRequest) -> dict[str, Any]:
    return json.loads(signed.to_json())


def decode_request(d: dict[str, Any]) -> SignedRequest:
    return SignedRequest.from_json(json.dumps(d))


async def submit(engine: AsyncEngine, kind: str, payload: dict[str, Any], actor: str) -> int:
    if kind not in KINDS:
        raise InboxError(f"unknown instruction kind {kind!r}")
    async with engine.begin() as conn:
        res = await conn.execute(insert(store.inbox).values(created_at=time.time_ns(), kind=kind, actor=actor,
                                                            payload=json.dumps(payload), state="pending"))
        return int(res.inserted_primary_key[0])


async def wait(engine: AsyncEngine, item: int, timeout: float = 15.0) -> dict[str, Any]:
    """The venue's answer; InboxError with its reason on refusal, or when it does not answer."""
    deadline = time.monotonic() + timeout
    while True:
        async with engine.connect() as conn:
            row = (await conn.execute(select(store.inbox.c.state, store.inbox.c.result)
                                      .where(store.inbox.c.id == item))).first()
        if row is not None and row.state != "pending":
            result = json.loads(row.result or "{}")
            if row.state == "failed":
                rid = result.get("request_id")
                raise InboxError(result.get("error", "refused") + (f" (request {rid})" if rid else ""))
            return result
        if time.monotonic() > deadline:
            raise InboxError("the venue did not answer: is custody running in it (Custody.process)?")
        await asyncio.sleep(0.05)
