"""The composition root: the venue, the session applications and the FIX acceptor, put together.

``venue/`` knows neither the FIX engine nor the session applications; this module, where the
process starts (``venue serve``), builds them around a :class:`venue.venue.Venue` and hands the
venue their consumers through :class:`Outlets` (the shape ``venue.outlets`` asks for). The
acceptor's one application is :class:`Router`: access checks, then each session kind's own app.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import ssl
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fix.acceptor import Acceptor
from fix.application import Application
from fix.dictionary import DataDictionary
from fix.log import log_factory
from fix.message import Message
from fix.session import Session, SessionConfig
from sessions.drop_copy import DropCopyApp
from sessions.errors import EdgeError
from sessions.market_data import MarketDataApp
from sessions.order_entry import OrderEntryApp, SessionRights
from sessions.order_entry_codec import InstrumentView, cancel_reject, rejected_report
from venue import registry
from venue.config import database_url
from venue.core import commands as cmd
from venue.venue import Venue

log = logging.getLogger("venue")

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


def dictionary_paths() -> list[Path]:
    """The venue's FIX dialect: QuickFIX's FIX 4.4 dictionary and the venue's extension."""
    return [CONFIG_DIR / "FIX44.xml", CONFIG_DIR / "venue-fix44.xml"]


class Server:
    """One venue process: the venue, its session applications and the acceptor serving them.
    Build with a configuration, ``await start()`` (returns the FIX port), ``await stop()``.
    ``fix=False``: no acceptor (no FIX port); the venue still runs operator requests, custody and
    its timers through its own pipeline."""

    def __init__(self, cfg: dict[str, Any], *, fix: bool = True) -> None:
        self.cfg = cfg
        self.fix = fix
        self.venue = Venue(cfg)
        self.comp_id = cfg["venue"]["comp_id"]
        self.precision = int(cfg["fix"]["timestamp_precision"])
        self.acceptor: Acceptor | None = None
        self.port: int | None = None
        self.views: dict[str, InstrumentView] = {}
        self._refusal_ids = 0

    @property
    def engine(self) -> Any:
        return self.venue.engine

    async def start(self) -> int:
        v = self.venue
        await v.open()
        for inst in v.core.instruments():
            self.views[inst.symbol] = InstrumentView(inst.symbol, inst.tick_size, inst.lot_size)
        self.dictionary = DataDictionary.load(*dictionary_paths())
        self.order_entry = OrderEntryApp(core=v.core, submit=v.submit, instrument=self.views.get,
                                         rights=self._rights, sessions=self.session_of, precision=self.precision,
                                         copy=lambda account, mt, fields: self.drop_copy.copy(account, mt, fields))
        self.drop_copy = DropCopyApp(self._accounts_of, self.views.get, precision=self.precision,
                                     reports=self.order_entry.reports, wall=time.time)
        self.market_data = MarketDataApp(v.units.get, v.market, wall=time.time,
                                         backlog=lambda session: self.acceptor.write_backlog(session),
                                         disconnect=lambda s, reason: self.acceptor.logout(s, reason))
        if not self.fix:
            v.attach(Outlets(self))
            await v.started(None)
            return 0
        fixlog = v.data_dir / self.cfg["fix"]["log_dir"]
        self.acceptor = Acceptor(self._lookup, Router(self), v.engine, dictionary=self.dictionary,
                                 log_factory=log_factory(fixlog))
        # the venue's pipeline runs the batches; the acceptor is one producer and one writer in them
        self.acceptor.driven_by(v.pipeline)
        v.attach(Outlets(self), writers=[self.acceptor])
        await self.acceptor.store.create_tables()
        await self.ensure_drop_copy_sessions(v.records)
        self.port = await self.acceptor.start(self.cfg["fix"]["host"], int(self.cfg["fix"]["port"]),
                                              ssl_context=self._ssl_context(), create_tables=False)
        await v.started(self.port)
        return self.port

    async def stop(self) -> None:
        """Stop the venue's timers, finish the batch in hand (committed, then sent), Logout to
        connected sessions, close the venue."""
        await self.venue.stop_timers()
        if self.acceptor is not None:
            await self.acceptor.flush()
            await self.acceptor.stop()
        await self.venue.stop()

    def _ssl_context(self) -> ssl.SSLContext | None:
        cert, key = self.cfg["fix"]["tls_cert"], self.cfg["fix"]["tls_key"]
        if not cert:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key or None)
        return ctx

    # ------------------------------------------------------------------ the registry, as FIX sees it

    async def ensure_drop_copy_sessions(self, records: dict[str, registry.SessionRecord]) -> None:
        """Drop-copy sessions exist before their broker logs on: copies are stored for them
        (and resent on request) from the moment the registry has them."""
        for rec in records.values():
            if rec.kind == "drop_copy" and rec.enabled:
                await self.acceptor.ensure_session("FIX.4.4", rec.target_comp_id, rec.sender_comp_id)

    def _lookup(self, begin: str, ours: str, theirs: str) -> SessionConfig | None:
        rec = self.venue.records.get(theirs)
        if begin != "FIX.4.4" or rec is None or rec.target_comp_id != ours or not rec.enabled:
            return None
        f = self.cfg["fix"]
        return SessionConfig(
            sender_comp_id=ours, target_comp_id=theirs,
            min_heart_bt_int=max(int(f["heartbeat_min"]), rec.heartbeat_min),
            max_heart_bt_int=min(int(f["heartbeat_max"]), rec.heartbeat_max),
            timestamp_precision=self.precision, max_latency=float(f["max_latency"]),
            logout_timeout=float(f["logout_timeout"]), extra={"kind": rec.kind},
            max_admin_per_second=int(f["max_admin_per_second"]), garbled_log_limit=int(f["garbled_log_limit"]),
            max_echo_length=int(f["max_echo_length"]),
            persist_messages=rec.kind != "market_data",  # market data is never resent: gap fill
        )

    def _rights(self, sid: str) -> SessionRights | None:
        rec = self.venue.records.get(sid)
        if rec is None or rec.kind != "order_entry":
            return None
        return SessionRights(tuple(rec.accounts), rec.throttle_rate, rec.throttle_burst, rec.cancel_on_disconnect,
                             rec.spare_gtc)

    def _accounts_of(self, session: Session) -> tuple[str, ...]:
        rec = self.venue.records.get(session.config.target_comp_id)
        return tuple(rec.accounts) if rec else ()

    def session_of(self, sid: str) -> Session | None:
        return self.acceptor.find_session(sid, self.comp_id) if self.acceptor else None

    @staticmethod
    def kind_of(session: Session) -> str:
        return session.config.extra.get("kind", "order_entry")

    def refuse(self, command: Any, reason: str) -> None:
        """A command the venue refused (it cannot be recorded, or it broke the core), told to the
        session that sent it: a rejected ExecutionReport or an OrderCancelReject, Text = why."""
        sid = str(getattr(command, "session", "") or "")
        session = self.session_of(sid) if sid else None
        if session is None:
            return
        text = f"refused: {reason}"
        if isinstance(command, cmd.NewOrder):
            self._refusal_ids += 1
            fields = rejected_report(f"X{self.order_entry._id_prefix}-{self._refusal_ids}", time.time_ns(),
                                     command.cl_ord_id, command.account, command.instrument, command.side.value,
                                     EdgeError.BAD_VALUE, text, 99, self.precision)
            session.send_app([(35, "8"), *fields], time.time())
            self.drop_copy.copy(command.account, "8", fields)
        elif isinstance(command, cmd.CancelOrder | cmd.ReplaceOrder):
            fields = cancel_reject(command.cl_ord_id, command.orig_cl_ord_id, command.order_id,
                                   isinstance(command, cmd.ReplaceOrder), EdgeError.BAD_VALUE, text, 99, command.account)
            session.send_app([(35, "9"), *fields], time.time())


class Outlets:
    """The venue's consumers (``venue.outlets.Outlets``): the session applications and the acceptor."""

    def __init__(self, server: Server) -> None:
        self.s = server
        self.deliver_owner = server.order_entry.deliver
        self.copy = server.drop_copy.on_core_events

    def deliver(self, events: list[Any]) -> None:
        self.deliver_owner(events)
        self.copy(events)

    def refuse(self, command: Any, reason: str) -> None:
        self.s.refuse(command, reason)

    def publish(self, events: list[Any]) -> list[Any]:
        return self.s.market_data.on_core_events(events)

    def core_replaced(self, core: Any) -> None:
        self.s.order_entry.core = core

    def wake(self) -> None:
        self.s.venue.pipeline.wake()

    def logged_on(self) -> Iterable[tuple[str, bool]]:
        if self.s.acceptor is None:
            return []
        return [(session.config.target_comp_id, session.is_logged_on)
                for session in list(self.s.acceptor.sessions.values())]

    def log_out(self, session_id: str, reason: str) -> None:
        session = self.s.session_of(session_id)
        if session is not None:
            self.s.acceptor.logout(session, reason)

    def on_timer(self) -> None:
        self.s.market_data.on_timer()

    async def sessions_changed(self, records: dict[str, registry.SessionRecord]) -> None:
        if self.s.acceptor is not None:
            await self.s.ensure_drop_copy_sessions(records)


def _peer_ip(peer: Any) -> str:
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "")


# control characters (C0, DEL, C1) and Unicode line/paragraph separators, escaped
_UNPRINTABLE = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))} | {
    0x2028: "\\u2028", 0x2029: "\\u2029"}


def _loggable(text: str) -> str:
    """An untrusted value (a CompID, a reason built from one) as one line of the venue log: a Logon
    with ``49=EVIL\\n<forged log line>`` must not write a line of its own."""
    return text.translate(_UNPRINTABLE)


class Router(Application):
    """The acceptor's one application: access checks here, then each session kind's own app."""

    def __init__(self, server: Server) -> None:
        self.s = server
        self.v = server.venue

    def _app(self, session: Session) -> Application:
        kind = self.s.kind_of(session)
        if kind == "drop_copy":
            return self.s.drop_copy
        if kind == "market_data":
            return self.s.market_data
        return self.s.order_entry

    def on_create(self, session: Session) -> None:
        self._app(session).on_create(session)

    def accept_connection(self, peer_addr: Any) -> bool:
        ip = _peer_ip(peer_addr)
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            return False
        if self.v.gate.allows_address(ip):
            return True
        log.warning("connection from %s refused: no session allows this address", ip)
        self.v.audit("connection.refused", actor=ip, subject="", source=ip,
                     details={"reason": "address not in any session's allow-list"})
        return False

    def on_logon_request(self, session: Session, logon: Message, peer_addr: Any) -> str | None:
        ip = _peer_ip(peer_addr)
        fields = {t: v.decode("latin-1") for t, v in logon.fields}
        sender = session.config.target_comp_id
        # SendingTime is judged against when the Logon's bytes arrived, not when its turn came
        received = int(session.received_at * 1e9) if session.received_at else None
        decision = self.v.gate.check_logon(sender, session.config.sender_comp_id, fields, ip, time.time_ns(),
                                           received)
        kind = "logon.accepted" if decision.ok else "logon.refused"
        details = {**decision.audit_details(), "seq": fields.get(34, ""), "sending_time": fields.get(52, "")}
        self.v.audit(kind, actor=sender, subject=sender, source=ip, details=details)
        if decision.ok:
            return None
        log.warning("logon of %s from %s refused: %s", _loggable(sender), _loggable(ip), _loggable(decision.reason))
        return decision.reason

    # what the FIX engine says when it refuses a Logon itself (fix/acceptor.py, fix/session.py) -> audit code
    _ENGINE_REFUSALS = (
        ("Unknown session", ""),  # no such session: the gate says why (unknown, disabled, wrong target)
        ("already logged on", "duplicate_logon"),
        ("already in progress", "duplicate_logon"),
        ("SendingTime accuracy", "sending_time_out_of_range"),
        ("CompID problem", "wrong_comp_id"),
        ("MsgSeqNum too low", "seq_too_low"),
        ("HeartBtInt", "heartbeat_out_of_range"),
        ("Incorrect BeginString", "wrong_begin_string"),
        ("not a Logon", "not_a_logon"),
    )

    def on_logon_refused(self, peer_addr: Any, begin: str, sender: str, target: str, reason: str) -> None:
        """Every Logon the engine refuses before asking us is audited too (``logon.refused``, with
        the gate's code and reason where the registry explains it, else the engine's reason)."""
        ip = _peer_ip(peer_addr)
        code = next((c for text, c in self._ENGINE_REFUSALS if text in reason), "invalid_logon")
        if code:
            details: dict[str, Any] = {"result": "refused", "code": code, "reason": reason}
        else:
            decision = self.v.gate.refuse_unbound(begin, sender, target)
            details = {**decision.audit_details(), "engine": reason}
        details.update(begin_string=begin, target=target)
        log.warning("logon of %s from %s refused: %s", _loggable(sender or "?"), _loggable(ip),
                    _loggable(details["reason"]))
        self.v.audit("logon.refused", actor=sender, subject=sender, source=ip, details=details)

    def on_logon(self, session: Session) -> None:
        self._app(session).on_logon(session)

    def on_logout(self, session: Session, reason: str) -> None:
        self.v.audit("session.logout", actor=session.config.target_comp_id, subject=session.config.target_comp_id,
                     details={"reason": reason})
        self._app(session).on_logout(session, reason)

    def from_app(self, session: Session, msg: Message) -> None:
        self._app(session).from_app(session, msg)

    # The venue's pipeline drives the batches (Acceptor.driven_by): the acceptor only calls these
    # when it probes which session's rows the database refuses (its rows, then the venue's).
    async def write_batch(self, conn) -> None:
        await self.v.pipeline.write_batch(conn)

    def write_failed(self, exc: Exception) -> None:
        self.v.pipeline.write_failed(exc)


async def serve(cfg: dict[str, Any], ready: Callable[[Server], None] | None = None, *, fix: bool = True) -> None:
    """Run until SIGINT or SIGTERM (``fix`` False: without the FIX acceptor)."""
    from venue import lock as writer_lock

    # one writer per database: raises VenueLocked (naming the holder's pid) if a venue runs on it
    held = await writer_lock.acquire(database_url(cfg), "venue serve")
    try:
        server = Server(cfg, fix=fix)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        if ready is not None:
            ready(server)
        try:
            await stop.wait()
        finally:
            log.info("stopping")
            await server.stop()
    finally:
        await held.release()
