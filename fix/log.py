"""Session logs, like QuickFIX's file log.

Every message in and out of a session goes to ``<dir>/<BeginString>-<Sender>-<Target>.messages.log``
as ``<UTC time> IN|OUT <raw frame>`` (SOH kept, as QuickFIX does: ``tr '\\001' '|'`` to read);
events (logon, logout, rejects, resends, disconnects with their reason) go to the same file as
``EVENT`` lines and to the python ``logging`` logger ``venue.fix`` (the venue's log).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import BinaryIO

from fix.codec import format_timestamp

venue_log = logging.getLogger("venue.fix")


class FileLog:
    """One session's log file. Lines are gathered in memory and written by :meth:`flush`, which
    the acceptor calls once per batch (after the commit); past ``max_pending`` parts they are
    written at once.

    The file is opened (append) by the first write and stays open while the session is
    connected; the acceptor calls :meth:`close` once the session has disconnected, so a venue
    that saw thousands of sessions come and go holds no descriptor for them. Lines logged while
    closed (a drop copy stored for an absent client) just reopen it at the next flush."""

    __slots__ = ("session_key", "path", "_file", "_parts", "max_pending", "_now", "_in", "_out")

    def __init__(self, directory: Path | str, session_key: str, max_pending: int = 40_000) -> None:
        self.session_key = session_key
        name = session_key.replace(":", "-").replace("->", "-").replace("/", "_")
        self.path = Path(directory) / f"{name}.messages.log"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO | None = None
        self._parts: list[bytes] = []
        self.max_pending = max_pending
        self._now = -1.0  # line prefixes for this ``now`` (a batch shares one)
        self._in = self._out = b""

    def _prefixes(self, now: float) -> None:
        ts = format_timestamp(now)
        self._now, self._in, self._out = now, ts + b" IN  ", ts + b" OUT "

    def on_incoming(self, raw: bytes, now: float) -> None:
        if now != self._now:
            self._prefixes(now)
        parts = self._parts
        parts += (self._in, raw, b"\n")
        if len(parts) > self.max_pending:
            self.flush()

    def on_outgoing(self, raw: bytes, now: float) -> None:
        if now != self._now:
            self._prefixes(now)
        parts = self._parts
        parts += (self._out, raw, b"\n")
        if len(parts) > self.max_pending:
            self.flush()

    def on_event(self, text: str, now: float) -> None:
        self._parts += (format_timestamp(now), b" EVENT ", text.encode("utf-8", "replace"), b"\n")
        venue_log.info("%s: %s", self.session_key, text)

    @property
    def is_open(self) -> bool:
        return self._file is not None

    def flush(self) -> None:
        if self._parts:
            file = self._file
            if file is None:
                file = self._file = open(self.path, "ab")  # noqa: SIM115 - open while connected
            file.write(b"".join(self._parts))
            self._parts.clear()
            file.flush()

    def close(self) -> None:
        """Write what is pending and release the descriptor (the next write reopens the file)."""
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None


class EventLog:
    """No message file: events only, to the venue log."""

    __slots__ = ("session_key",)

    def __init__(self, session_key: str) -> None:
        self.session_key = session_key

    def on_incoming(self, raw: bytes, now: float) -> None:
        """Messages are not kept by the event log (the file log keeps them)."""

    def on_outgoing(self, raw: bytes, now: float) -> None:
        """Messages are not kept by the event log (the file log keeps them)."""

    def on_event(self, text: str, now: float) -> None:
        venue_log.info("%s: %s", self.session_key, text)

    def flush(self) -> None:
        """The venue log's handlers flush themselves."""

    def close(self) -> None:
        """Nothing of its own to close."""


def log_factory(directory: Path | str | None):
    """A ``session_key -> log`` factory: file logs under ``directory``, or events only if None."""
    if directory is None:
        return EventLog
    return lambda key: FileLog(directory, key)
