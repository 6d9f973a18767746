"""What the venue needs from the sessions it serves, as the venue sees them.

The venue never imports the session applications or the FIX engine (``sessions/``, ``fix/``): the
composition root (``tools/wiring.py``) builds them and hands the venue one object with this shape.
Sessions are named by their id (the client's CompID); events and commands are the core's own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from venue import registry


class Outlets(Protocol):
    """The venue's consumers (order entry, drop copy, market data) and the session engine's few
    controls the venue uses (wake it, log a session out, make sure a session exists)."""

    def deliver(self, events: list[Any]) -> None:
        """One command's events, as the core made them: reports to their owner and its drop copies."""

    def refuse(self, command: Any, reason: str) -> None:
        """Tell the session that sent ``command`` it was refused (no ``done`` waits on it)."""

    def publish(self, events: list[Any]) -> list[Any]:
        """A batch's events to the market-data sessions; returns the updates for the MQTT feed."""

    def core_replaced(self, core: Any) -> None:
        """The core was rebuilt (a command broke it): consumers reading it must read this one."""

    def wake(self) -> None:
        """Something waits to be run or written: have a batch run soon."""

    def logged_on(self) -> Iterable[tuple[str, bool]]:
        """Every session known to the engine, with whether it is logged on now."""

    def log_out(self, session_id: str, reason: str) -> None:
        """Send a session a Logout (and drop it if it does not answer)."""

    def on_timer(self) -> None:
        """Once a second: the consumers' own timers (market data's slow consumers)."""

    async def sessions_changed(self, records: dict[str, registry.SessionRecord]) -> None:
        """The registry's sessions as now loaded (create the stores of drop-copy sessions)."""
