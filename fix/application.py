"""The Application interface: the seam between the FIX engine and whatever sits behind it.

QuickFIX vocabulary. The acceptor and the session call these hooks; every method has a harmless
default, so an application overrides only what it needs. Sync hooks are called from inside the
session's processing of a message (``from_app`` may call ``session.send_app(...)`` and the reply gets
the next sequence number at once, in order).

Standalone (the certification echo, the benchmarks) the acceptor runs its own batch loop and the async
hooks are its batch seam:

1. the acceptor hands every byte one socket read / loop turn delivered to the sessions (which call
   ``from_app`` etc.);
2. ``await app.before_flush()`` — the application does the batch's work and queues the resulting
   messages on sessions with ``session.send_app``;
3. one database transaction: the FIX store writes all pending outbound messages and both seqnums of
   every session (``store.flush(conn)``) and ``await app.write_batch(conn)`` adds the application's
   rows to the same transaction;
4. only after the commit are the bytes written to the sockets (one write per socket per batch).

Driven by an owner (``Acceptor.driven_by``: the venue's pipeline owns the loop turn), the acceptor is
one producer and one writer of that turn instead: the owner asks it for its input, lets it stage its
output, commits everything in its own transaction and then has it write the bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy.ext.asyncio import AsyncConnection

    from fix.message import Message
    from fix.session import Session


class UnsupportedMessageType(Exception):  # noqa: N818 - QuickFIX name
    """Raise from ``from_app``: the session answers with BusinessMessageReject 380=3."""


class BusinessReject(Exception):  # noqa: N818 - QuickFIX-style name
    """Raise from ``from_app`` to answer with a BusinessMessageReject (35=j)."""

    def __init__(self, reason: int, text: str | None = None, ref_tag: int | None = None) -> None:
        super().__init__(text or str(reason))
        self.reason = reason
        self.text = text
        self.ref_tag = ref_tag


class Application:
    """Base application: override the hooks you need."""

    def on_create(self, session: Session) -> None:
        """A session object was created (once per session, before any connection)."""

    def accept_connection(self, peer_addr: Any) -> bool:
        """Called at accept, before any byte is read; ``False`` closes the socket (IP allow-lists)."""
        return True

    def on_logon_request(self, session: Session, logon: Message, peer_addr: Any) -> str | None:
        """A valid Logon arrived. ``None`` accepts it; a string refuses it: the client gets a Logout
        with a generic text (the string goes to the venue log only) and the connection closes."""
        return None

    def on_logon_refused(self, peer_addr: Any, begin: str, sender: str, target: str, reason: str) -> None:
        """A Logon was refused before :meth:`on_logon_request` could decide on it: by the acceptor
        (no such session, already logged on, a logon for it in progress, not a Logon) or by the
        session layer (SendingTime accuracy, CompID, MsgSeqNum too low, HeartBtInt out of range, an
        invalid or garbled Logon). ``sender``/``target`` are the Logon's 49/56 ("" when unknown);
        ``reason`` is the engine's. The connection is closed whatever this does (audit it here)."""

    def on_logon(self, session: Session) -> None:
        """The session is logged on (our Logon response is queued)."""

    def on_logout(self, session: Session, reason: str) -> None:
        """The session stopped being logged on (logout handshake, timeout, disconnect...)."""

    def from_admin(self, session: Session, msg: Message) -> None:
        """An administrative message passed the session checks (informational)."""

    def from_app(self, session: Session, msg: Message) -> None:
        """An application message passed validation and sequencing. Reply with ``session.send_app``.
        Raise :class:`UnsupportedMessageType` or :class:`BusinessReject` to reject it."""
        raise UnsupportedMessageType()

    async def before_flush(self) -> None:
        """Once per batch, after all inbound bytes of the batch were processed, before the commit."""

    async def write_batch(self, conn: AsyncConnection) -> None:
        """Inside the batch's single transaction, after the FIX store wrote its rows."""

    def has_pending_write(self) -> bool:
        """True when ``write_batch`` has rows to write even though no session has output."""
        return False

    async def after_flush(self) -> None:
        """After the batch's commit and socket writes (publish to feeds that need no store)."""

    def write_failed(self, exc: Exception) -> None:
        """The batch's transaction failed (nothing of it committed or sent): the acceptor keeps the
        batch's messages and commits them again, first, with the next batch; keep yours too."""
