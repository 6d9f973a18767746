"""The order-entry FIX application: what a client firm's FIX engine talks to.

Each inbound application message becomes a venue command (or a reject with a Text and a
VenueErrorCode 7001); the venue runs the core on the whole batch and hands the events back
through :meth:`OrderEntryApp.deliver`, which turns them into ExecutionReports and
OrderCancelRejects for the session that owns the order. The translation itself lives in
``sessions.order_entry_codec`` (shared with drop copy).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from fix.application import Application
from fix.message import Message
from sessions import order_entry_codec as codec
from sessions.errors import EdgeError, EdgeReject
from sessions.throttle import TokenBucket
from venue.core import commands as cmd
from venue.core import events as ev
from venue.core.assets import AssetError, Assets, InstrumentUnits, instrument_units
from venue.core.types import RejectCode, Side, TradingStatus
from venue.marketdata import plain

log = logging.getLogger("venue.order_entry")

# MassCancelRequestType (530) values the venue takes: 1 by security, 7 all orders.
MASS_CANCEL_BY_SECURITY = "1"
MASS_CANCEL_ALL = "7"


@dataclass(slots=True)
class SessionRights:
    """What the registry says about one order-entry session."""

    accounts: tuple[str, ...]
    throttle_rate: float = 0.0
    throttle_burst: int = 0
    cancel_on_disconnect: bool = False
    spare_gtc: bool = False


class CoreView(Protocol):
    def order(self, order_id: int) -> Any: ...
    def instrument(self, symbol: str) -> Any: ...
    def order_by_cl_ord_id(self, account: str, cl_ord_id: str) -> Any: ...
    def open_orders(self, account: str | None = None, instrument: str | None = None,
                    session: str | None = None) -> list[Any]: ...
    def instruments(self) -> list[Any]: ...


class Refused(Exception):  # noqa: N818 - answered with a BusinessMessageReject
    """A request the venue answers with BusinessMessageReject: reason (380), text, VenueErrorCode."""

    def __init__(self, reason: int, text: str, code: int) -> None:
        super().__init__(text)
        self.reason, self.text, self.code = reason, text, int(code)


Submit = Callable[[Any, Callable[[list[Any]], None] | None], None]


class OrderEntryApp(Application):
    """Behind every session of kind ``order_entry``; ``session.config.target_comp_id`` is its id."""

    def __init__(
        self,
        *,
        core: CoreView,
        submit: Submit,
        instrument: Callable[[str], codec.InstrumentView | None],
        rights: Callable[[str], SessionRights | None],
        sessions: Callable[[str], Any],
        precision: int = 3,
        clock_ns: Callable[[], int] = time.time_ns,
        assets: Assets | None = None,
        wall: Callable[[], float] = time.time,
        copy: Callable[[str, str, list[tuple[int, Any]]], None] | None = None,
    ) -> None:
        """``copy(account, msg_type, fields)``: hand a report made at the edge (never a core event)
        to the drop-copy sessions of an account the sender is entitled to."""
        self.core = core
        self.copy = copy
        self.submit = submit
        self.instrument = instrument
        self.rights = rights
        self.session_by_id = sessions
        self.precision = precision
        self.clock_ns = clock_ns
        self.assets = assets or Assets()
        self.wall = wall  # SendingTime of messages sent outside the session's own callbacks
        self._units: dict[str, InstrumentUnits] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._flooders: set[str] = set()
        self._reject_ids = itertools.count(1)
        # ExecIDs the edge makes (rejects "R", status "S") carry the start time: unique across restarts
        self._id_prefix = format(clock_ns() // 1_000_000, "x")
        self.reports = codec.Reports(instrument, precision, self.commissions)
        """The events' reports, made once per command: hand it to the drop-copy app too."""

    # ------------------------------------------------------------------ session life

    @staticmethod
    def session_id(session: Any) -> str:
        return session.config.target_comp_id

    def on_create(self, session: Any) -> None:
        session.screen = self.screen  # the throttle runs before the session validates a message

    def on_logon(self, session: Any) -> None:
        sid = self.session_id(session)
        r = self.rights(sid)
        self._buckets[sid] = TokenBucket(r.throttle_rate if r else 0.0, r.throttle_burst if r else 0)
        self._flooders.discard(sid)

    def on_logout(self, session: Any, reason: str) -> None:
        sid = self.session_id(session)
        r = self.rights(sid)
        if r is not None and r.cancel_on_disconnect:
            log.info("cancel-on-disconnect for %s (%s)", sid, reason)
            self.submit(cmd.MassCancel(ts=self.clock_ns(), session_filter=sid, spare_gtc=r.spare_gtc,
                                       reason="cancel_on_disconnect", session=sid), None)

    # ------------------------------------------------------------------ inbound

    def screen(self, session: Any, msg: Message) -> Callable[[], None] | None:
        """The throttle, asked by the session before any other work on an in-sequence application
        message (no dictionary validation, no handler): None admits it; otherwise the answer to
        give instead (the session still counts its MsgSeqNum)."""
        bucket = self._buckets.get(self.session_id(session))
        if bucket is None or bucket.take(time.monotonic()):
            return None
        return lambda: self._on_throttled(session, msg, bucket)

    def _on_throttled(self, session: Any, msg: Message, bucket: TokenBucket) -> None:
        """Reject a throttled message; a session that keeps flooding is logged out, and what it
        sends after that Logout is dropped unanswered (answering a flood is the flood's cost)."""
        sid = self.session_id(session)
        if sid in self._flooders:
            return
        self._throttled(session, msg)
        if bucket.flooding():
            log.warning("%s keeps flooding: logging it out", sid)
            self._flooders.add(sid)
            # in order: the throttle rejects already queued go out before the Logout
            self._in_order(lambda: session.logout("Throttle limit exceeded repeatedly"))

    def from_app(self, session: Any, msg: Message) -> None:
        sid = self.session_id(session)
        mt = msg.msg_type
        handler = self._handlers.get(mt)
        if handler is None and mt == "j":  # a reject is never answered with a reject (a loop)
            log.info("%s sent BusinessMessageReject %s: %s", sid, msg.get_str(34), msg.get_str(58))
            return
        if handler is None:
            self._business_reject(session, msg, 3, f"Unsupported Message Type {mt}", EdgeError.UNSUPPORTED_MESSAGE)
            return
        rights = self.rights(sid)
        if rights is None:
            self._business_reject(session, msg, 6, "session has no trading rights", RejectCode.NOT_ENTITLED)
            return
        ctx = codec.EdgeContext(sid, rights.accounts, self.instrument)

        def handle() -> None:
            try:
                handler(self, session, msg, ctx)
            except Refused as exc:
                self._business_reject(session, msg, exc.reason, exc.text, exc.code)

        if mt in self._queries:
            self._in_order(handle)  # sees the core after this batch's earlier commands
        else:
            handle()

    def _reply(self, session: Any, fields: Any) -> None:
        """Answer in order: ``submit(None, fn)`` runs ``fn`` at its place in the batch, after the
        commands submitted before it (at once when the core's turn is already running), so a
        reply never overtakes the reports of earlier orders."""
        self.submit(None, lambda _events: session.send_app(fields, self.wall()))

    def _in_order(self, fn: Callable[[], None]) -> None:
        self.submit(None, lambda _events: fn())

    def _business_reject(self, session: Any, msg: Message, reason: int, text: str, code: int) -> None:
        """BusinessMessageReject (j) with BusinessRejectReason (380), Text (58) and VenueErrorCode (7001)."""
        fields: list[tuple[int, object]] = [(35, "j")]
        if (seq := msg.get_str(34)) is not None:
            fields.append((45, seq))
        fields.append((372, msg.msg_type))
        if (ref := msg.get_str(11) or msg.get_str(584) or msg.get_str(320)) is not None:
            fields.append((379, ref))
        fields += [(380, reason), (58, text), (7001, int(code))]
        self._reply(session, fields)

    def _throttled(self, session: Any, msg: Message) -> None:
        text = "throttled: message rate limit exceeded"
        mt = msg.msg_type
        if mt == "D":
            self._reject_new(session, msg, EdgeReject(RejectCode.THROTTLED, text, 99))
        elif mt in ("F", "G"):
            self._reject_cancel(session, msg, EdgeReject(RejectCode.THROTTLED, text, 99))
        else:
            self._business_reject(session, msg, 0, text, RejectCode.THROTTLED)

    def _on_new(self, session: Any, msg: Message, ctx: codec.EdgeContext) -> None:
        try:
            command = codec.new_order(msg, ctx, self.clock_ns())
        except EdgeReject as rej:
            self._reject_new(session, msg, rej)
            return
        self.submit(command, None)

    def _on_cancel(self, session: Any, msg: Message, ctx: codec.EdgeContext) -> None:
        try:
            command = codec.cancel_order(msg, ctx, self.clock_ns())
        except EdgeReject as rej:
            self._reject_cancel(session, msg, rej)
            return
        self.submit(command, None)

    def _on_replace(self, session: Any, msg: Message, ctx: codec.EdgeContext) -> None:
        try:
            command = codec.replace_order(msg, ctx, self.clock_ns())
        except EdgeReject as rej:
            self._reject_cancel(session, msg, rej)
            return
        self.submit(command, None)

    def _on_status(self, session: Any, msg: Message, ctx: codec.EdgeContext) -> None:
        try:
            account = ctx.account(msg)
            inst = ctx.inst(msg)
        except EdgeReject as rej:
            raise Refused(2 if rej.code == RejectCode.UNKNOWN_INSTRUMENT else 0, rej.text, rej.code) from None
        order = None
        if (order_id := msg.get_str(37)) is not None:  # 37 wins over 11: one that is no OrderID is unknown
            order = self.core.order(oid) if (oid := codec.order_id(order_id)) is not None else None
        elif (cl := msg.get_str(11)) is not None:
            order = self.core.order_by_cl_ord_id(account, cl)
        extra = [(790, v)] if (v := msg.get_str(790)) else []
        if order is None or order.account != account:
            fields = codec.rejected_report(self._exec_id("S"), self.clock_ns(), msg.get_str(11) or "",
                                           account, inst.symbol, msg.get_str(54) or "1",
                                           int(RejectCode.UNKNOWN_ORDER), "unknown order", 5, self.precision)
            fields = [(t, "I" if t == 150 else v) for t, v in fields] + extra
            self._reply(session, [(35, "8"), *fields])
            return
        self._reply(session, [(35, "8"), *self._status_fields(order, extra)])

    def _status_fields(self, order: Any, extra: list[tuple[int, str]]) -> list[tuple[int, str]]:
        inst = self.instrument(order.instrument)
        status = "1" if order.cum_qty else "0"
        return [
            (37, str(order.order_id)), (11, order.cl_ord_id), (17, self._exec_id("S")), (150, "I"),
            (39, status), (1, order.account), (55, order.instrument), (54, order.side.value),
            (38, inst.qty(order.qty)), *([(44, inst.px(order.price))] if order.price is not None else []),
            (40, order.ord_type.value), (59, order.tif.value),
            (151, inst.qty(order.leaves_qty)), (14, inst.qty(order.cum_qty)),
            (6, inst.avg_px(order.cum_notional, order.cum_qty)),
            (60, codec.fix_time(self.clock_ns(), self.precision)), *extra,
        ]

    def _on_mass_status(self, session: Any, msg: Message, ctx: codec.EdgeContext) -> None:
        req_id = msg.get_str(584) or ""
        req_type = msg.get_str(585) or "7"
        symbol = None
        if req_type == "1":
            try:
                symbol = ctx.inst(msg).symbol
            except EdgeReject as rej:
                raise Refused(2 if rej.code == RejectCode.UNKNOWN_INSTRUMENT else 0, rej.text, rej.code) from None
        elif req_type not in ("7", "8"):
            raise Refused(0, f"MassStatusReqType (585) {req_type} is not supported; use 1, 7 or 8",
                          EdgeError.BAD_VALUE)
        accounts = ctx.accounts
        if msg.get_str(1) is not None:
            try:
                accounts = (ctx.account(msg),)
            except EdgeReject as rej:
                raise Refused(2 if rej.code == RejectCode.UNKNOWN_INSTRUMENT else 0, rej.text, rej.code) from None
        orders = [o for a in accounts for o in self.core.open_orders(account=a, instrument=symbol)]
        orders.sort(key=lambda o: o.order_id)
        if not orders:
            self._reply(session, [(35, "8"), (37, "NONE"), (11, "NONE"), (17, self._exec_id("S")),
                              (150, "I"), (39, "0"), (54, "1"), (151, "0"), (14, "0"), (6, "0"),
                              (584, req_id), (911, "0"), (912, "Y"), (58, "no open orders")])
            return
        for i, order in enumerate(orders, 1):
            self._reply(session, [(35, "8"), *self._status_fields(
                order, [(584, req_id), (911, str(len(orders))), (912, "Y" if i == len(orders) else "N")])])

    def _on_mass_cancel(self, session: Any, msg: Message, ctx: codec.EdgeContext) -> None:
        cl = msg.get_str(11) or ""
        req_type = msg.get_str(530) or ""
        side_raw = msg.get_str(54)
        sid = ctx.session

        def report(response: str, affected: int, text: str | None = None, code: int | None = None) -> None:
            fields: list[tuple[int, object]] = [(35, "r"), (11, cl), (37, cl or "NONE"), (530, req_type),
                                                (531, response)]
            if response == "0":
                fields.append((532, "99"))
            fields.append((533, affected))
            if msg.get_str(55):
                fields.append((55, msg.get_str(55)))
            if side_raw:
                fields.append((54, side_raw))
            if text:
                fields.append((58, text))
            if code is not None:
                fields.append((7001, code))
            self._reply(session, fields)

        try:
            if req_type not in (MASS_CANCEL_BY_SECURITY, MASS_CANCEL_ALL):
                raise EdgeReject(EdgeError.BAD_VALUE, f"MassCancelRequestType (530) {req_type} is not supported; use 1 or 7")
            symbol = ctx.inst(msg).symbol if req_type == MASS_CANCEL_BY_SECURITY else None
            side = None
            if side_raw is not None:
                if side_raw not in ("1", "2"):
                    raise EdgeReject(EdgeError.BAD_VALUE, f"Side (54) {side_raw} must be 1 or 2")
                side = Side(side_raw)
            accounts = (ctx.account(msg),) if msg.get_str(1) is not None else ctx.accounts
        except EdgeReject as rej:
            report("0", 0, rej.text, rej.code)
            return
        ts = self.clock_ns()
        remaining = [len(accounts)]
        affected = [0]

        def done(events: list[Any]) -> None:
            affected[0] += sum(1 for e in events if isinstance(e, ev.OrderCancelled))
            remaining[0] -= 1
            if remaining[0] == 0:
                report(req_type, affected[0])

        for account in accounts:
            self.submit(cmd.MassCancel(ts=ts, cl_ord_id=cl, account=account, instrument=symbol, side=side,
                                       reason="mass_cancel", session=sid), done)

    def _on_security_list(self, session: Any, msg: Message, ctx: codec.EdgeContext) -> None:
        req_id = msg.get_str(320) or ""
        req_type = msg.get_str(559) or "4"
        insts = list(self.core.instruments())
        if req_type == "0" and msg.get_str(55):
            insts = [i for i in insts if i.symbol == msg.get_str(55)]
        elif req_type not in ("0", "4"):
            self._reply(session, [(35, "y"), (320, req_id), (322, req_id or "NONE"), (560, "1"),
                              (58, f"SecurityListRequestType (559) {req_type} is not supported; use 0 or 4")])
            return
        fields: list[tuple[int, object]] = [(35, "y"), (320, req_id), (322, req_id or "NONE"),
                                            (560, "0" if insts else "2"), (393, len(insts)), (893, "Y"),
                                            (146, len(insts))]
        for inst in insts:
            fields += [
                (55, inst.symbol), (15, inst.quote),
                (561, plain(inst.lot_size)),
                (562, plain(inst.lot_size * inst.min_qty)),
                (969, plain(inst.tick_size)),
                (7004, plain(inst.lot_size * inst.max_qty)),
                (7005, plain(inst.min_notional)),
                (7006, {TradingStatus.OPEN: "17", TradingStatus.HALTED: "2", TradingStatus.CLOSED: "18"}[inst.status]),
            ]
        self._reply(session, fields)

    _queries = frozenset({"H", "AF", "x"})
    _handlers: dict[str, Callable[..., None]] = {
        "D": _on_new, "F": _on_cancel, "G": _on_replace, "H": _on_status,
        "q": _on_mass_cancel, "AF": _on_mass_status, "x": _on_security_list,
    }

    # ------------------------------------------------------------------ edge rejects

    def _exec_id(self, kind: str) -> str:
        return f"{kind}{self._id_prefix}-{next(self._reject_ids)}"

    def _account_of(self, session: Any, msg: Message) -> str:
        """Account (1) as sent, else the session's only account (for reports of refused requests)."""
        if (account := msg.get_str(1)) is not None:
            return account
        rights = self.rights(self.session_id(session))
        return rights.accounts[0] if rights is not None and len(rights.accounts) == 1 else ""

    def _reject_new(self, session: Any, msg: Message, rej: EdgeReject) -> None:
        account = self._account_of(session, msg)
        fields = codec.rejected_report(
            self._exec_id("R"), self.clock_ns(), msg.get_str(11) or "NONE", account,
            msg.get_str(55) or "", msg.get_str(54) or "1", rej.code, rej.text, rej.ord_rej_reason, self.precision)
        rights = self.rights(self.session_id(session))
        copy = self.copy if rights is not None and account in rights.accounts else None

        def send(_events: list[Any]) -> None:
            session.send_app([(35, "8"), *fields], self.wall())
            if copy is not None:
                copy(account, "8", fields)

        self.submit(None, send)

    def _reject_cancel(self, session: Any, msg: Message, rej: EdgeReject) -> None:
        order_id = msg.get_str(37)
        fields = codec.cancel_reject(msg.get_str(11) or "NONE", msg.get_str(41), codec.order_id(order_id),
                                     msg.msg_type == "G", rej.code, rej.text,
                                     codec.CXL_REJ_REASON.get(rej.code, 99), self._account_of(session, msg))
        self._reply(session, [(35, "9"), *fields])

    # ------------------------------------------------------------------ outbound

    def units(self, symbol: str) -> InstrumentUnits | None:
        """The ledger's unit factors of an instrument (None if unknown or not settleable)."""
        u = self._units.get(symbol)
        if u is None:
            inst = self.core.instrument(symbol)
            if inst is None:
                return None
            try:
                u = self._units[symbol] = instrument_units(inst, self.assets)
            except (AssetError, KeyError):
                return None
        return u

    def commissions(self, events: list[Any]) -> dict[tuple[int, int], str]:
        """(order_id, trade_id) -> Commission (12) of each fill in ``events``, as the ledger booked it."""
        return codec.fill_commissions(events, self.units, self.assets)

    def deliver(self, events: Iterable[Any]) -> None:
        """Send each order event's report to the session that must get it. Each report is made
        once (``self.reports``, shared with the drop copies) and framed per recipient."""
        now = self.wall()  # one SendingTime for the command's reports
        find = self.session_by_id
        for e, r in self.reports.of(events):
            target = e.owner_session if isinstance(e, ev.OrderCancelled) else e.session
            if not target:
                continue
            session = find(target)
            if session is not None:
                session.send_app_encoded(r.msg_type, r.body, now, r.body_sum)
