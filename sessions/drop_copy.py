"""The drop-copy FIX application: brokers get a copy of every execution report of their accounts.

A drop-copy session is entitled to a set of accounts (the registry's session accounts). For
every order event of the core on one of those accounts, whatever caused it (any order-entry
session, cancel-on-disconnect, a kill switch, an operator), the session is sent the same
ExecutionReport (8) the owner's session gets, in the order the core produced the events.

Copies are ordinary stored application messages: they take the session's next sequence
number and are written by the FIX store in the batch's transaction whether or not the broker
is connected, so a broker that was away recovers them with a ResendRequest (also across a
venue restart, the store being in the database). The session is read-only: any application
message it sends is answered with a BusinessMessageReject (380=3, with Text).

OrderCancelReject (9) answers only the session that asked, so it is not copied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fix.application import Application, BusinessReject
from fix.message import Message
from sessions.order_entry_codec import InstrumentView, Reports, Translate, encode_body


class DropCopyApp(Application):
    """The application behind every session of kind ``drop_copy``."""

    def __init__(
        self,
        accounts_of: Callable[[Any], Iterable[str]],
        instrument: Callable[[str], InstrumentView | None] | None = None,
        *,
        translate: Translate | None = None,
        commissions: Callable[[list[Any]], dict[tuple[int, int], str]] | None = None,
        precision: int = 3,
        wall: Callable[[], float] | None = None,
        reports: Reports | None = None,
    ) -> None:
        """``accounts_of(session)``: the accounts a session is entitled to. ``reports``: the
        order-entry app's ``reports`` (``OrderEntryApp.reports``): each event is then translated
        and encoded once, and a copy is the owner's very report, only its header differs.
        Without it: ``instrument(symbol)`` (the edge's view of an instrument) and
        ``commissions(events)`` ((order_id, trade_id) -> the Commission (12) of each fill of a
        batch, as ``OrderEntryApp.commissions``) make the same reports here, or
        ``translate(event)`` replaces the translation (``(MsgType, body fields)``).
        ``wall()``: epoch seconds for SendingTime (None: the session's own last ``now``)."""
        self._wall = wall
        if reports is None:
            if translate is None and instrument is None:
                raise ValueError("DropCopyApp needs reports, translate or instrument")
            reports = Reports(instrument, precision, commissions, translate)
        self.reports = reports
        self._accounts_of = accounts_of
        self._by_account: dict[str, list[Any]] = {}
        self._sessions: dict[int, Any] = {}
        self.copies = 0

    # -- which sessions ----------------------------------------------------------------------
    def register(self, session: Any) -> None:
        """Start copying to ``session`` (idempotent). Registered sessions get copies while
        disconnected too: the store keeps them for the broker's ResendRequest."""
        if id(session) in self._sessions:
            return
        self._sessions[id(session)] = session
        for account in self._accounts_of(session):
            self._by_account.setdefault(account, []).append(session)

    def unregister(self, session: Any) -> None:
        if self._sessions.pop(id(session), None) is None:
            return
        for subs in self._by_account.values():
            if session in subs:
                subs.remove(session)

    def on_create(self, session: Any) -> None:
        self.register(session)

    def on_logon(self, session: Any) -> None:
        self.unregister(session)  # entitlements may have changed since the session was created
        self.register(session)

    def from_app(self, session: Any, msg: Message) -> None:
        raise BusinessReject(3, f"drop-copy session is read-only: message type {msg.msg_type} is not accepted")

    def copy(self, account: str, msg_type: str, fields: list[tuple[int, Any]]) -> None:
        """Copy a report made outside the core (an order rejected at the FIX edge, before it
        became a command) to the sessions entitled to ``account``; body fields, no MsgType."""
        if msg_type != "8":
            return
        sessions = self._by_account.get(account)
        if not sessions:
            return
        body = encode_body(fields)
        now = None if self._wall is None else self._wall()
        for session in sessions:
            session.send_app_encoded(b"8", body, now)
            self.copies += 1

    # -- core side ---------------------------------------------------------------------------
    def on_core_events(self, events: Iterable[object]) -> None:
        """Copy the execution reports of a committed batch to the entitled sessions, in order."""
        by_account = self._by_account
        if not by_account:
            return
        now = None if self._wall is None else self._wall()
        for e, r in self.reports.of(events):
            if r.msg_type != b"8":
                continue
            targets = by_account.get(getattr(e, "account", None))
            if not targets:
                continue
            body, body_sum = r.body, r.body_sum
            for session in targets:
                session.send_app_encoded(b"8", body, now, body_sum)
                self.copies += 1
