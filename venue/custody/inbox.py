"""The custody inbox: how tools hand signed instructions to a running venue (letters to
``custody`` in the venue's one mailbox, ``venue/mailbox.py``).

A tool (the ``venue`` CLI) posts a letter (a signed withdrawal request, a signed operator decision, a
signed whitelist addition, a top-up or sweep proposal); the venue's ``Custody.process`` drains the
inbox through the same methods as everything else and writes the answer back; the tool waits for it.
The signatures travel as they are: the venue verifies them, not the tool.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from venue import mailbox
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
    return await mailbox.post(engine, "custody", kind, payload, actor)


async def wait(engine: AsyncEngine, item: int, timeout: float = 15.0) -> dict[str, Any]:
    """The venue's answer; InboxError with its reason on refusal, or when it does not answer."""
    try:
        got = await mailbox.wait(engine, item, timeout)
    except mailbox.NoAnswer:
        raise InboxError("the venue did not answer: is custody running in it (Custody.process)?") from None
    if not got.ok:
        rid = got.result.get("request_id")
        raise InboxError(got.result.get("error", "refused") + (f" (request {rid})" if rid else ""))
    return got.result


async def pending(db: AsyncEngine | AsyncConnection) -> list[mailbox.Letter]:
    """The custody instructions not answered yet, oldest first."""
    return await mailbox.pending(db, "custody")
