"""What the venue needs from the sessions it serves, as the venue sees them.

The venue never imports the session applications or the FIX engine (``sessions/``, ``fix/``): the
composition root (``tools/wiring.py``) builds them and hands the venue one object with this shape.
Sessions are named by their id (the client's CompID); events and commands are the core's own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

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


class Writer(Protocol):
    """A producer and writer in the pipeline's turn (the FIX acceptor: ``fix.acceptor.Acceptor``
    driven by the pipeline). It wakes the pipeline when it has work; the pipeline's turn calls
    these in order, its transaction around ``write_staged``."""

    async def begin_batch(self) -> None:
        """The turn begins: hand this turn's input to the producers (commands get submitted)."""

    def stage_batch(self) -> bool:
        """The core has run: take this turn's output; True if there is any to write."""

    async def write_staged(self, conn: AsyncConnection) -> None:
        """Write it in the turn's transaction."""

    async def staged_failed(self, exc: Exception) -> None:
        """The transaction failed: nothing was sent; keep the output for the retry."""

    def staged_committed(self) -> None:
        """The transaction committed: send."""
