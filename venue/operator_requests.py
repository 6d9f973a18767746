"""Operator requests, translated: a letter to ``operator`` in the mailbox becomes a core command
(journaled like any order) or a query; its answer and its audit entry (the decision, with outcome
and reason) are written in the batch's transaction (``Pipeline.reply``)."""

from __future__ import annotations

import re
import time
from typing import Any

from venue import audit, mailbox, operator
from venue.access.gate import AccessGate
from venue.core import commands as cmd
from venue.core.assets import Assets
from venue.core.types import Side, TradingStatus
from venue.marketdata import plain
from venue.pipeline import Pipeline, Reply

REFUSALS = ("LedgerRejected", "OrderRejected", "CommandRefused")  # events that mean "not done"
_LEDGER_UNITS = re.compile(r"(withdraw|deposit|hold) (\d+) ([A-Z0-9]+): available (-?\d+)")


def in_asset_terms(text: str) -> str:
    """A ledger refusal in the asset's terms for the operator (the core counts in integer units:
    "withdraw 99999999999000000 USDT: available 9171083000000" -> "... 99999999999 USDT: available
    9171083 USDT")."""
    m = _LEDGER_UNITS.fullmatch(text)
    if m is None or m[3] not in Assets():
        return text
    a = Assets()[m[3]]
    return f"{m[1]} {plain(a.to_decimal(int(m[2])))} {a.code}: available {plain(a.to_decimal(int(m[4])))} {a.code}"


class OperatorRequests:
    """Reads the operator's letters and carries each out once (a letter in flight is not read again
    until its answer has committed)."""

    def __init__(self, engine: Any, pipeline: Pipeline, gate: AccessGate) -> None:
        self.engine = engine
        self.pipeline = pipeline
        self.gate = gate
        self._in_flight: set[int] = set()
        self._started = False
        pipeline.on_replied = self._in_flight.discard

    async def poll(self) -> None:
        if not self._started:
            self._started = True
            # taken by a venue that stopped before answering: not carried out (the answer commits
            # with the journal), and its tool has reported a failure or an unknown outcome by now
            for req in await mailbox.pending(self.engine, "operator", state="taken"):
                self._in_flight.add(req.id)
                self.answer(req, False, {"error": "not carried out: the venue stopped before answering it"})
        fresh = [r for r in await operator.pending(self.engine) if r.id not in self._in_flight]
        if not fresh:
            return
        taken = set(await mailbox.take(self.engine, [r.id for r in fresh]))  # withdrawn ones are not
        for req in fresh:
            if req.id not in taken:
                continue
            self._in_flight.add(req.id)
            account = req.payload.get("account")
            if account is not None and not str(account).startswith("@") and account not in self.gate.accounts:
                await self.gate.reload(self.engine)  # registered since the last reload?
                if account not in self.gate.accounts:
                    # the CLI checks too; this guards rows written by other means
                    self.answer(req, False, {"error": f"unknown account {account}"})
                    continue
            try:
                self.carry_out(req)
            except (KeyError, ValueError, TypeError) as exc:
                self.answer(req, False, {"error": f"bad request: {exc}"})

    def answer(self, req: operator.Request, ok: bool, result: dict[str, Any]) -> None:
        """Queue the answer to an operator request and its audit entry: the decision with its
        outcome and reason, both written in the batch's transaction."""
        details: dict[str, Any] = {**req.payload, "request": req.id, "outcome": "ok" if ok else "refused"}
        if not ok:
            details["reason"] = str(result.get("error", "refused"))
        elif "cancelled" in result:
            details["cancelled"] = result["cancelled"]
        subject = req.payload.get("account") or req.payload.get("instrument") or ""
        entry = {"actor": req.actor, "subject": str(subject), "source": "cli", "details": details}
        self.pipeline.reply(Reply(req.id, ok, mailbox.encode_result(result),
                                  audit.recordable(f"operator.{req.kind}", entry)))

    def carry_out(self, req: operator.Request) -> None:
        """The request as a core command (answered once the core ran it) or a query (answered now)."""
        p, now = req.payload, time.time_ns()

        def done(events: list[Any]) -> None:
            names = [type(e).__name__ for e in events]
            refused = [getattr(e, "text", "") for e in events if type(e).__name__ in REFUSALS]
            cancelled = sum(1 for n in names if n == "OrderCancelled")
            if refused:
                self.answer(req, False, {"error": in_asset_terms(refused[0]), "events": names})
            else:
                self.answer(req, True, {"events": names, "cancelled": cancelled})

        if req.kind == "balances":
            account = p["account"]
            assets = Assets()
            out = {code: {"total": plain(assets[code].to_decimal(total)), "reserved": plain(assets[code].to_decimal(res)),
                          "available": plain(assets[code].to_decimal(total - res))}
                   for code, (total, res) in sorted(self.pipeline.stage.balances(account).items())}
            self.answer(req, True, {"account": account, "balances": out})
            return
        if req.kind == "trading_status":
            if self.pipeline.core.instrument(p["instrument"]) is None:
                raise ValueError(f"unknown instrument {p['instrument']}")
            command: Any = cmd.SetTradingStatus(ts=now, instrument=p["instrument"], status=TradingStatus(p["status"]))
        elif req.kind == "kill_switch":
            command = cmd.SetKillSwitch(ts=now, account=p["account"], on=bool(p["on"]), session="operator")
        elif req.kind in ("deposit", "withdraw"):
            asset = Assets()[p["asset"]]
            kind = cmd.Deposit if req.kind == "deposit" else cmd.Withdraw
            command = kind(ts=now, account=p["account"], asset=asset.code, amount=asset.to_units(p["amount"]),
                           ref=p.get("ref") or f"operator:{req.id}")
        elif req.kind == "mass_cancel":
            command = cmd.MassCancel(ts=now, cl_ord_id=f"OP{req.id}", account=p.get("account"),
                                     instrument=p.get("instrument"), side=Side(p["side"]) if p.get("side") else None,
                                     reason="operator", session="operator")
        elif req.kind == "end_of_session":
            command = cmd.EndOfSession(ts=now, instrument=p.get("instrument"))
        else:
            raise ValueError(f"unknown kind {req.kind}")
        self.pipeline.submit(command, done)
