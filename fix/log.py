"""Session logs, like QuickFIX's file log.

Every message in and out of a session goes to ``<dir>/<BeginString>-<Sender>-<Target>.messages.log``
as ``<UTC time> IN|OUT <raw frame>`` (SOH kept, as QuickFIX does: ``tr '\\001' '|'`` to read);
events (logon, logout, rejects, resends, disconnects with their reason) go to the same file as
``EVENT`` lines and to the python ``logging`` logger ``venue.fix`` (the venue's log).
"""

from __future__ import annotations

import logging
from pathlib import Path

from fix.codec import format_timestamp

venue_log = logging.getLogger("venue.fix")


class FileLog:
    """One session's log file (buffered; the acceptor calls :meth:`flush` once per batch)."""

    __slots__ = ("session_key", "path", "_file", "_lines")

    def __init__(self, directory: Path | str, session_key: str) -> None:
        self.session_key = session_key
        name = session_key.replace(":", "-").replace("->", "-").replace("/", "_")
        self.path = Path(directory) / f"{name}.messages.log"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab", buffering=1 << 16)  # noqa: SIM115 - long-lived
        self._lines: list[bytes] = []

    def on_incoming(self, raw: bytes, now: float) -> None:
        self._file.write(format_timestamp(now) + b" IN  " + raw + b"\n")

    def on_outgoing(self, raw: bytes, now: float) -> None:
        self._file.write(format_timestamp(now) + b" OUT " + raw + b"\n")

    def on_event(self, text: str, now: float) -> None:
        self._file.write(format_timestamp(now) + b" EVENT " + text.encode("utf-8", "replace") + b"\n")
        venue_log.info("%s: %s", self.session_key, text)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class EventLog:
    """No message file: events only, to the venue log."""

    __slots__ = ("session_key",)

    def __init__(self, session_key: str) -> None:
        self.session_key = session_key

    def on_incoming(self, raw: bytes, now: float) -> None:
        pass

    def on_outgoing(self, raw: bytes, now: float) -> None:
        pass

    def on_event(self, text: str, now: float) -> None:
        venue_log.info("%s: %s", self.session_key, text)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def log_factory(directory: Path | str | None):
    """A ``session_key -> log`` factory: file logs under ``directory``, or events only if None."""
    if directory is None:
        return EventLog
    return lambda key: FileLog(directory, key)
