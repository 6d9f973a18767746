"""The asyncio FIX acceptor: many sessions, group commit, optional TLS.

Each socket read is handed to its session at once (``data_received``); the flusher then runs once
per loop turn for everything that arrived: ``await app.before_flush()``, one DB transaction
(``store.flush(conn)`` + ``await app.write_batch(conn)``), and only after the commit one
``transport.write`` per socket. Driven by an owner instead (:meth:`Acceptor.driven_by`: the
venue's pipeline), the acceptor has no flusher of its own: it is one producer (its sessions hand
the application their input when the owner's turn begins, :meth:`begin_batch`) and one writer
(:meth:`stage_batch`, :meth:`write_staged` in the owner's transaction, then
:meth:`staged_committed` writes the bytes, or :meth:`staged_failed` keeps them for the retry). A connection must start with a valid Logon for a known session that
is not already connected, otherwise it is closed without a reply; connect-and-close probes are
harmless.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fix.application import Application
from fix.codec import FrameReader, parse_frame
from fix.session import Session, SessionConfig
from fix.store import MessageStore

log = logging.getLogger("venue.fix")

SessionLookup = Callable[[str, str, str], "SessionConfig | None | Awaitable[SessionConfig | None]"]
"""``(begin_string, our_comp_id, their_comp_id) -> SessionConfig | None`` (may be async)."""

ISOLATE_AFTER = 3
"""Failed commits of the same batch in a row before the acceptor looks for one session to blame."""

UNBOUND_LIMIT = 64 * 1024
"""Bytes an unauthenticated connection may send before its Logon frame is complete."""

READ_BUDGET = 32 * 1024
"""Bytes of one session's input handled per batch (about 150 orders). The rest is held, with the
socket's reading paused, and handed over a slice per batch: a session flooding the venue gets
its share of each batch, and the others' messages still go out in the next one."""


class _Connection(asyncio.Protocol):
    __slots__ = ("acceptor", "transport", "session", "reader", "pending", "binding", "closed",
                 "peer", "opened_at", "arrived")

    def __init__(self, acceptor: Acceptor) -> None:
        self.acceptor = acceptor
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self.reader = FrameReader()
        self.pending = b""
        self.binding = False
        self.closed = False
        self.peer: Any = None
        self.opened_at = 0.0
        self.arrived = 0.0  # when the read that completed the Logon frame came in

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername")
        self.opened_at = self.acceptor.clock()
        try:
            ok = self.acceptor.application.accept_connection(self.peer)
        except Exception:  # pragma: no cover - defensive
            log.exception("accept_connection failed")
            ok = False
        if not ok:
            log.info("Connection from %s refused by the application", self.peer)
            self.closed = True
            transport.close()
            return
        self.acceptor._unbound.add(self)

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session is not None:
            self.acceptor._receive(self, session, data)
            return
        if self.closed:
            return
        if self.binding:
            self.pending += data
            if len(self.pending) > 16 * UNBOUND_LIMIT:
                self.close("Too much data while the Logon is being checked")
            return
        frames = self.reader.feed(data)
        if self.reader.garbled and self.reader.garbled[0].after == 0:
            self.acceptor._refuse(self, f"Garbled message before Logon ({self.reader.garbled[0].reason})")
            return
        self.reader.garbled.clear()  # after the Logon frame: the session decides
        if not frames:
            if self.reader.buffered > UNBOUND_LIMIT:
                self.close("No Logon frame")
            return
        rest = b"".join(frames[1:]) + self.reader.take_buffer()
        self.arrived = self.acceptor.clock()  # the Logon is judged as of now, however long the checks wait
        self.binding = True
        self.acceptor._spawn(self.acceptor._bind(self, frames[0], rest))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        acceptor = self.acceptor
        acceptor._unbound.discard(self)
        session = self.session
        if session is not None and acceptor._bound.get(session.key) is self:
            del acceptor._bound[session.key]
            if session.connected:
                session.connection_lost(f"Connection lost: {exc}" if exc else "Connection closed by peer")
                acceptor._wake()

    def close(self, reason: str, abort: bool = False) -> None:
        """Close after the pending bytes are written (``abort``: drop them, close now)."""
        if not self.closed:
            log.info("Closing connection from %s: %r", self.peer, reason)  # %r: reason may hold CompIDs
            self.closed = True
            if self.transport is not None:
                if abort:
                    self.transport.abort()
                else:
                    self.transport.close()


class Acceptor:
    """Accepts FIX connections for the sessions ``lookup`` knows.

    Venue seams: ``sessions`` / :meth:`find_session` (live sessions by CompID),
    ``session.send_app(msg)`` then :meth:`schedule_flush` from outside a callback, :meth:`logout`,
    :meth:`stop` (Logout to every logged-on session, flush, close).
    """

    def __init__(
        self,
        lookup: SessionLookup,
        application: Application,
        engine: AsyncEngine,
        *,
        dictionary: Any = None,
        log_factory: Callable[[str], Any] | None = None,
        tick_interval: float = 0.2,
        clock: Callable[[], float] = time.time,
        max_write_buffer: int = 64 << 20,
        read_budget: int = READ_BUDGET,
    ) -> None:
        self.lookup = lookup
        self.application = application
        self.engine = engine
        self.store = MessageStore(engine)
        self.dictionary = dictionary
        self.log_factory = log_factory
        self.tick_interval = tick_interval
        self.clock = clock
        self.sessions: dict[str, Session] = {}
        # does the application add its own rows to the batch transaction?
        self._journals = type(application).write_batch is not Application.write_batch
        self._dirty: set[Session] = set()
        self.max_write_buffer = max_write_buffer
        self.read_budget = read_budget
        self._held: dict[_Connection, bytes] = {}  # input over a session's budget, reading paused
        self._taken: dict[_Connection, int] = {}  # bytes handed to each session for the next batch
        self._bound: dict[str, _Connection] = {}
        self._unbound: set[_Connection] = set()
        self._binding_keys: set[str] = set()
        self._loads: dict[str, list[asyncio.Future]] = {}  # seqnums wanted by new sessions (see _load_seqnums)
        self._loading = False
        self._logs: dict[str, Any] = {}  # session key -> its message log
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task] = set()
        self._event = asyncio.Event()
        self._flusher: asyncio.Task | None = None
        self._ticker: asyncio.Task | None = None
        self._flush_lock = asyncio.Lock()
        self._conn: AsyncConnection | None = None  # the flusher's own connection, kept open
        self._unsent: list[tuple[str, _Connection | None, Any]] = []  # a batch whose commit failed
        self._failures = 0  # failed commits in a row
        self.batches = 0
        self._driver: Any = None  # an owner running the batches (driven_by), else our own flusher
        self._staged: list[tuple[str, _Connection | None, Any]] = []  # the owner's turn: our output

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0, *, ssl_context: ssl.SSLContext | None = None,
                    create_tables: bool = True) -> int:
        """Listen on ``host:port`` (0 = any free port); returns the port.

        Everything alive by then (dictionary, database engine, modules) is moved out of the
        garbage collector's reach (``gc.freeze()``): a full collection otherwise re-walks those
        long-lived objects again and again under load (measured: acceptor CPU per round trip
        about -10 % in ``venue bench session``)."""
        if create_tables:
            await self.store.create_tables()
        gc.freeze()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Connection(self), host, port, ssl=ssl_context)
        self._servers.append(server)
        if self._ticker is None:
            if self._driver is None:
                self._flusher = asyncio.create_task(self._flush_loop())
            self._ticker = asyncio.create_task(self._tick_loop())
        return server.sockets[0].getsockname()[1]

    async def stop(self, timeout: float | None = None) -> None:
        """Graceful shutdown: Logout to every logged-on session, wait for the answers (at most
        ``timeout``, default the sessions' logout_timeout), flush, close everything."""
        for server in self._servers:
            server.close()
        now = self.clock()
        waiting = []
        for session in self.sessions.values():
            if session.is_logged_on:
                session.logout("Acceptor shutting down", now)
                waiting.append(session)
            elif session.connected:
                session.disconnect("Acceptor shutting down")
        await self.flush()
        limit = timeout if timeout is not None else max((s.config.logout_timeout for s in waiting), default=0)
        deadline = time.monotonic() + limit
        while any(s.connected for s in waiting) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for session in self.sessions.values():
            if session.connected:
                session.disconnect("Acceptor stopped")
        await self.flush()
        for conn in list(self._bound.values()) + list(self._unbound):
            stuck = conn.transport is not None and conn.transport.get_write_buffer_size() > 0
            conn.close("Acceptor stopped", abort=stuck)
        for task in (self._flusher, self._ticker, *self._tasks):
            if task is not None:
                task.cancel()
        for task in (self._flusher, self._ticker, *self._tasks):
            if task is not None:
                try:
                    await task
                except asyncio.CancelledError:
                    continue
                except Exception:
                    log.exception("Background task failed while stopping")
        self._flusher = self._ticker = None
        for server in self._servers:
            await server.wait_closed()
        for lg in self._logs.values():
            lg.close()
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    # ------------------------------------------------------------------ venue seams

    def find_session(self, their_comp_id: str, our_comp_id: str | None = None) -> Session | None:
        """The session whose client CompID is ``their_comp_id`` (and ours ``our_comp_id``, if given)."""
        for session in self.sessions.values():
            cfg = session.config
            if cfg.target_comp_id == their_comp_id and (our_comp_id is None or cfg.sender_comp_id == our_comp_id):
                return session
        return None

    def schedule_flush(self) -> None:
        """Make the flusher run soon (after ``session.send_app`` outside a callback; sessions with
        output wake it by themselves, so this is only a nudge)."""
        self._wake()

    def logout(self, session: Session, text: str | None = None) -> None:
        """Log a session out (KYC revoked, shutdown): Logout now, disconnect on answer or timeout."""
        session.logout(text, self.clock())
        self._wake()

    def write_backlog(self, session: Session) -> int:
        """Bytes written to the session's socket that the kernel has not taken yet (slow consumers)."""
        conn = self._bound.get(session.key)
        if conn is None or conn.closed or conn.transport is None:
            return 0
        return conn.transport.get_write_buffer_size()

    def read_backlog(self, session: Session) -> int:
        """Bytes the session sent that wait for a later batch (over its ``read_budget``)."""
        conn = self._bound.get(session.key)
        return len(self._held.get(conn, b"")) if conn is not None else 0

    def transport_of(self, session: Session) -> asyncio.Transport | None:
        """The transport of the session's live connection, if any (socket options, peer, TLS info)."""
        conn = self._bound.get(session.key)
        return None if conn is None or conn.closed else conn.transport

    async def ensure_session(self, begin: str, ours: str, theirs: str) -> Session | None:
        """Create (or find) a session before any connection, e.g. so that a drop-copy session
        collects and stores its copies while its broker is away."""
        return await self._get_session(begin, ours, theirs)

    async def flush(self) -> None:
        """Run one flush now (normally the background flusher, or the owner, does this)."""
        if self._driver is not None:
            await self._driver.flush()
            return
        await self._flush_once()

    def driven_by(self, driver: Any) -> None:
        """Let an owner run the batches (before :meth:`start`): ``driver.wake()`` when the acceptor
        has work (input, output, timers), ``await driver.flush()`` to run one batch now. The owner's
        turn calls :meth:`begin_batch`, then :meth:`stage_batch`, :meth:`write_staged` inside its
        transaction and :meth:`staged_committed` or :meth:`staged_failed`."""
        self._driver = driver

    async def begin_batch(self) -> None:
        """Start of the owner's turn: held input slices handed to their sessions, resends done."""
        if self._held:
            await asyncio.sleep(0)  # what the other sockets sent joins the held slices' batch
        self._next_slices()
        for session in list(self._dirty):
            while session.resend_wanted is not None:
                begin, end = session.resend_wanted
                rows = await self.store.fetch(session.key, begin, end)
                session.complete_resend(rows, self.clock())

    def stage_batch(self) -> bool:
        """Take every session's output of this turn (after a failed turn's, first) into the message
        store's staging; True if there is any to write."""
        self._staged = keyed = self._take_output()
        return bool(keyed)

    async def write_staged(self, conn: AsyncConnection) -> None:
        """The staged output's rows and sequence numbers, in the owner's transaction."""
        await self.store.flush(conn)

    def staged_statements(self) -> list[tuple[str, list]]:
        """Instead of :meth:`write_staged`, on SQLite: the staged output as plain ``sqlite3``
        statements, which the owner runs with the rest of its transaction in one call on the
        database thread (one thread hop per turn instead of one per statement and the commit)."""
        return self.store.take_sqlite_statements()

    async def staged_failed(self, exc: Exception) -> None:
        """The owner's transaction failed: nothing was sent; keep the output for its retry."""
        await self._commit_failed(self._staged, exc)
        self._staged = []

    def staged_committed(self) -> None:
        """The owner's transaction committed: now the bytes."""
        keyed, self._staged = self._staged, []
        self._committed([(c, out) for _, c, out in keyed])

    # ------------------------------------------------------------------ internals

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _wake(self) -> None:
        if self._driver is not None:
            self._driver.wake()
            return
        self._event.set()

    async def _get_session(self, begin: str, ours: str, theirs: str) -> Session | None:
        key = f"{begin}:{ours}->{theirs}"
        session = self.sessions.get(key)
        if session is not None:
            return session
        config = self.lookup(begin, ours, theirs)
        if inspect.isawaitable(config):
            config = await config
        if config is None:
            return None
        session = self.sessions.get(key)  # created meanwhile by a concurrent logon
        if session is not None:
            return session
        next_sender, next_target = await self._load_seqnums(config.key)
        session = self.sessions.get(key)
        if session is not None:
            return session
        slog = self.log_factory(config.key) if self.log_factory is not None else None
        if slog is not None:
            self._logs[config.key] = slog
        session = Session(config, dictionary=self.dictionary, application=self.application, log=slog,
                          next_sender=next_sender, next_target=next_target)
        session.on_dirty = self._on_dirty
        self.sessions[config.key] = session
        self.application.on_create(session)
        return session

    async def _load_seqnums(self, key: str) -> tuple[int, int]:
        """The stored seqnums of a new session. Those asked for while a load runs are loaded together
        by the next one, in one transaction: a logon storm costs a few transactions, not one per
        session (one each kept the event loop waiting on the database for seconds)."""
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._loads.setdefault(key, []).append(future)
        if not self._loading:
            self._loading = True
            self._spawn(self._run_loads())
        return await future

    async def _run_loads(self) -> None:
        try:
            while self._loads:
                await asyncio.sleep(0)  # the binds of this loop turn join the batch
                wanted, self._loads = self._loads, {}
                try:
                    found: dict[str, tuple[int, int]] | None = await self.store.load_many(list(wanted))
                    error: Exception | None = None
                except Exception as exc:
                    found, error = None, exc
                for key, futures in wanted.items():
                    for future in futures:
                        if future.done():
                            continue
                        if found is not None:
                            future.set_result(found[key])
                        else:
                            future.set_exception(error)
        finally:
            self._loading = False

    def _refuse(self, conn: _Connection, reason: str, begin: str = "", sender: str = "", target: str = "") -> None:
        """Close a connection whose Logon the acceptor refuses itself (no session asked), and tell
        the application, which audits it."""
        conn.close(reason)
        try:
            self.application.on_logon_refused(conn.peer, begin, sender, target, reason)
        except Exception:
            log.exception("on_logon_refused failed")

    async def _bind(self, conn: _Connection, first: bytes, rest: bytes) -> None:
        try:
            msg = parse_frame(first)
        except ValueError:
            self._refuse(conn, "Garbled first message")
            return
        begin, ours, theirs = msg.get_str(8) or "", msg.get_str(56) or "", msg.get_str(49) or ""
        if msg.get(35) != b"A":
            self._refuse(conn, "First message is not a Logon", begin, theirs, ours)
            return
        if not (begin and ours and theirs):
            self._refuse(conn, "Logon without BeginString/SenderCompID/TargetCompID", begin, theirs, ours)
            return
        key = f"{begin}:{ours}->{theirs}"
        if key in self._binding_keys:
            self._refuse(conn, f"Logon for {key} already in progress", begin, theirs, ours)
            return
        self._binding_keys.add(key)
        try:
            try:
                session = await self._get_session(begin, ours, theirs)
                failed = ""
            except Exception:
                log.exception("Session lookup failed for %r", key)
                session, failed = None, " (session lookup failed)"
            if conn.closed:
                return
            if session is None:
                self._refuse(conn, f"Unknown session {key}{failed}", begin, theirs, ours)
                return
            if session.key in self._bound or session.connected:
                self._refuse(conn, f"Session {session.key} already logged on", begin, theirs, ours)
                return
            self._unbound.discard(conn)
            self._bound[session.key] = conn
            conn.session = session
            now = self.clock()
            session.connection_made(now, conn.peer)
            data = first + rest + conn.pending
            conn.pending = b""
            data = self._within_budget(conn, data, len(first))  # a flood sent with the Logon waits too
            try:
                session.receive_data(data, now, received=conn.arrived)
            except Exception as exc:
                self._app_failed(session, exc)
        finally:
            self._binding_keys.discard(key)

    async def _flush_loop(self) -> None:
        event = self._event
        while True:
            await event.wait()
            event.clear()
            if self._held:
                await asyncio.sleep(0)  # what the other sockets sent joins the held slices' batch
            self._next_slices()
            try:
                await self._flush_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Flush failed")
                await asyncio.sleep(0.1)
                event.set()

    def _receive(self, conn: _Connection, session: Session, data: bytes) -> None:
        """A read of a logged-on connection: its session gets at most ``read_budget`` bytes per
        batch; the rest is held and the socket's reading paused (TCP then holds the sender back)."""
        held = self._held
        if conn in held:
            held[conn] += data
            return
        data = self._within_budget(conn, data)
        if data:
            self._deliver(session, data)

    def _within_budget(self, conn: _Connection, data: bytes, at_least: int = 0) -> bytes:
        """The part of ``data`` the session may handle in this batch (at least ``at_least`` bytes);
        the rest is held and the connection's reading paused."""
        taken = self._taken.get(conn, 0)
        room = max(self.read_budget - taken, at_least)
        if len(data) > room:
            self._held[conn] = data[room:]
            data = data[:room]
            if conn.transport is not None:
                conn.transport.pause_reading()
            self._wake()
        self._taken[conn] = taken + len(data)
        return data

    def _deliver(self, session: Session, data: bytes) -> None:
        try:
            session.receive_data(data, self.clock())
        except Exception as exc:  # the application failed: QuickFIX disconnects too
            self._app_failed(session, exc)

    def _next_slices(self) -> None:
        """Start of a batch: each held connection gets the rest of its budget from what it holds
        (reading resumes once it holds nothing); input from now on counts toward the next batch."""
        held, taken, budget = self._held, self._taken, self.read_budget
        for conn, data in list(held.items()):
            session = conn.session
            if conn.closed or session is None or not session.connected:
                del held[conn]  # the connection is going: what it still sent is dropped
                continue
            room = budget - taken.get(conn, 0)
            if room <= 0:
                continue
            if len(data) > room:
                held[conn] = data[room:]
                data = data[:room]
            else:
                del held[conn]
                if conn.transport is not None:
                    conn.transport.resume_reading()
            self._deliver(session, data)
        taken.clear()
        if held:
            self._wake()  # more slices after this batch

    async def _flush_once(self) -> None:
        async with self._flush_lock:
            await self._flush_locked()

    def _app_failed(self, session: Session, exc: Exception) -> None:
        """An application callback raised: log it and drop the connection (the session's state up
        to the failing message is kept; the client resynchronises on its next logon)."""
        log.error("%s: application error, disconnecting: %r", session.key, exc, exc_info=exc)
        try:
            session.disconnect(f"Application error: {exc!r}")
        except Exception:  # on_logout failed as well
            log.exception("%s: on_logout failed", session.key)
        self._dirty.add(session)
        self._wake()

    def _on_dirty(self, session: Session) -> None:
        self._dirty.add(session)
        self._wake()

    async def _flush_locked(self) -> None:
        for session in list(self._dirty):
            while session.resend_wanted is not None:
                begin, end = session.resend_wanted
                rows = await self.store.fetch(session.key, begin, end)
                session.complete_resend(rows, self.clock())
        await self.application.before_flush()
        keyed = self._take_output()
        batch = [(c, out) for _, c, out in keyed]
        if not batch and not self.application.has_pending_write():
            return
        conn = self._conn
        try:
            if conn is None or conn.closed:
                conn = self._conn = await self.engine.connect()
            if self._journals:
                async with conn.begin():
                    await self.store.flush(conn)
                    await self.application.write_batch(conn)
            else:
                await self.store.commit_alone(conn)
        except Exception as exc:
            self.application.write_failed(exc)
            try:
                if conn is not None:
                    await conn.close()
            except Exception:
                log.debug("closing the failed connection", exc_info=True)
            finally:
                self._conn = None
            await self._commit_failed(keyed, exc)
            return
        self._committed(batch)
        await self.application.after_flush()

    def _take_output(self) -> list[tuple[str, _Connection | None, Any]]:
        """Every session's output of this batch, staged in the message store (a failed batch's
        first, whole): ``(session key, its connection, its output)``."""
        store = self.store
        bound = self._bound
        unsent, self._unsent = self._unsent, []
        for key, _, out in unsent:  # a failed batch goes first, whole, then this one's output
            store.stage(key, out)
        keyed = list(unsent)
        sessions, self._dirty = self._dirty, set()
        for session in sessions:
            if session.has_output:
                out = session.take_outbound()
                store.stage(session.key, out)
                keyed.append((session.key, bound.get(session.key), out))
        return keyed

    async def _commit_failed(self, keyed: list[tuple[str, _Connection | None, Any]], exc: Exception) -> None:
        """Nothing of this batch was committed, so nothing of it is sent. Keep it whole (store
        rows, seqnums, bytes; the application keeps its rows) and commit it again, first, with the
        next batch, on a fresh connection: a transient failure only delays the batch, no session
        is disconnected and every seqnum stays as the clients will see it. (What one message
        carries cannot fail here: the application refuses that message when it is handled, before
        the commit. If the same batch keeps failing, _isolate looks for one session whose own rows
        the database refuses.)"""
        self._unsent = keyed
        self.store.discard()
        self._failures += 1
        if self._failures == 1:
            log.exception("Batch commit failed; %d session output(s) held back, retrying", len(keyed),
                          exc_info=exc)
        elif self._failures & (self._failures - 1) == 0:  # 2, 4, 8, ...: a lasting outage logs little
            log.warning("Batch commit failed again (%d in a row): %r", self._failures, exc)
        if self._failures % ISOLATE_AFTER == 0 and self._journals and len(keyed) > 0:
            await self._isolate()
        if self._driver is None:  # an owner retries on its own schedule
            asyncio.get_running_loop().call_later(min(0.05 * 2 ** min(self._failures, 5), 1.0), self._wake)

    def _committed(self, batch: list[tuple[_Connection | None, Any]]) -> None:
        """The batch committed: write its bytes, one ``transport.write`` per socket."""
        if self._failures:
            log.warning("Batch commit succeeded after %d failed attempt(s)", self._failures)
            self._failures = 0
        self.batches += 1
        for conn, out in batch:
            if conn is None or conn.closed:
                continue
            if out.data:
                transport = conn.transport
                transport.write(out.data)
                if transport.get_write_buffer_size() > self.max_write_buffer:
                    reason = f"Slow consumer: more than {self.max_write_buffer} bytes unread"
                    conn.close(reason, abort=True)  # a graceful close would wait for the reader
                    if conn.session is not None and conn.session.connected:
                        conn.session.connection_lost(reason)
                    continue
            if out.close:
                conn.close(out.close)
        self._flush_logs()

    def _flush_logs(self) -> None:
        """Write the batch's log lines; close the logs of sessions no longer connected (a log
        reopens on its next write), so open files follow the connected sessions, not every
        session that ever logged on."""
        sessions = self.sessions
        for key, lg in self._logs.items():
            session = sessions.get(key)
            if session is None or not session.connected:
                lg.close()
            else:
                lg.flush()

    async def _isolate(self) -> None:
        """The same batch failed ISOLATE_AFTER times in a row: find out, in transactions rolled
        back, what the database refuses. If the application's rows alone fail, the database itself
        is failing (or the application's rows are): nothing to isolate, keep retrying. Otherwise
        each session's rows are tried alone; a session whose rows are refused (e.g. a sequence
        number too large for its column) is disconnected and that output dropped, as if the venue
        had crashed before sending it (its client resynchronises by resend / gap fill), and the
        retry commits everyone else's."""
        keyed, store = self._unsent, self.store
        try:
            async with self.engine.connect() as conn:
                try:
                    async with conn.begin() as tx:
                        await self.application.write_batch(conn)
                        await tx.rollback()
                finally:
                    self.application.write_failed(RuntimeError("isolation probe"))  # keep its rows
                refused: set[int] = set()
                for i, (key, _, out) in enumerate(keyed):
                    try:
                        async with conn.begin() as tx:
                            store.stage(key, out)
                            await store.flush(conn)
                            await tx.rollback()
                    except Exception as exc:
                        store.discard()
                        refused.add(i)
                        log.error("%s: the database refuses this session's output (%r): dropped, disconnecting",
                                  key, exc)
        except Exception as exc:
            log.warning("Isolation probe failed, the database itself is failing: %r", exc)
            return
        if not refused or len(refused) == len(keyed) > 1:
            return  # nothing singled out: every session fails, or none, as in an outage
        self._unsent = [k for i, k in enumerate(keyed) if i not in refused]
        for i in refused:
            fix_conn = keyed[i][1]
            if fix_conn is not None:
                fix_conn.close("Message store failure")
                if fix_conn.session is not None and fix_conn.session.connected:
                    fix_conn.session.connection_lost("Message store failure")

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            now = self.clock()
            for session in list(self.sessions.values()):
                if session.connected:
                    try:
                        session.tick(now)  # output marks the session dirty, which wakes the flusher
                    except Exception as exc:
                        self._app_failed(session, exc)
            for conn in list(self._unbound):
                if not conn.binding and now - conn.opened_at > 10.0:
                    conn.close("No Logon received")
