"""The stage interface between the matching core and the ledger / pre-trade risk stage.

The core calls a ``CoreHooks`` object at fixed points, all on the core's single thread, all
deterministic (the same commands give the same calls):

1. ``pre_new(cmd, order_id, inst)`` -- for every ``NewOrder`` that passed the core's own validation
   (instrument, status, kill switch, tick/lot/limits, notional, band, duplicate ClOrdID, post-only),
   before it is accepted or matched. Return ``None`` to accept: the stage has then reserved what the
   order needs under ``order_id`` and the core ALWAYS follows with ``OrderAccepted(order_id)`` and,
   eventually, events that close it (fills, ``OrderCancelled``, ``OrderExpired``). Return
   ``(code, text)`` to reject: the core emits ``OrderRejected`` and the order id is not used.
   (FOK orders that cannot fill are accepted then expired, reason "fok", so their reservation is
   released by the ordinary expire event.)
2. ``pre_replace(cmd, order, inst)`` -- for every ``ReplaceOrder`` that found its order and passed
   validation, before the change (``order`` still holds the old price/qty; the new ones are in
   ``cmd``; ``cmd.price`` None means unchanged). ``None`` accepts (the stage adjusts its reservation,
   and will see ``OrderReplaced``); a tuple rejects with ``CancelRejected``. Not called when the
   replace lowers qty to <= cum_qty (that cancels the order: ``OrderCancelled``).
3. ``on_events(events)`` -- after EVERY command, with the events it produced, in order, already
   numbered. Everything that changes an order's reservation is there: ``OrderAccepted``,
   ``OrderFilled`` (+ ``Trade``), ``OrderCancelled``, ``OrderExpired``, ``OrderReplaced``,
   ``OrderRestated`` (STP decrement lowers qty), ``OrderTriggered`` (a stop becomes market/limit).
   Return extra events (e.g. ledger postings): the core numbers them into the same gapless
   sequence, appends them to the command's events and journals them.
4. ``on_trigger(order, inst)`` -- for every triggered stop, right before it starts working (after
   its ``OrderTriggered``; not for a stop-limit whose price is now outside the band, which the core
   expires "price_band" instead; ``order`` is a snapshot, ``inst`` carries the reference price, hence the
   price band, of that moment). A market stop is then matched no higher (buy) / lower (sell) than
   the band of that moment, ``inst.band()``: the stage re-values the order there and tops up its
   reservation. ``None`` lets it work; ``(code, reason)`` makes the core expire it at once with
   ``OrderExpired(reason=reason)`` (e.g. "insufficient_balance_at_trigger"), so it never trades
   beyond what is reserved. Optional: a hooks object without ``on_trigger`` is never called.
5. ``apply(cmd)`` -- commands the core does not own (``Deposit``, ``Withdraw``, and any other type
   the core does not know) are routed here; return their events (or ``None``).
6. ``snapshot()`` / ``restore(d)`` -- the stage's state is stored inside ``Core.snapshot()`` (key
   ``"hooks"``) and given back by ``Core.from_snapshot``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from venue.core.book import Order
    from venue.core.commands import NewOrder, ReplaceOrder
    from venue.core.events import Event
    from venue.core.instruments import Instrument


@runtime_checkable
class CoreHooks(Protocol):
    def pre_new(self, cmd: NewOrder, order_id: int, inst: Instrument) -> tuple[int, str] | None: ...

    def pre_replace(self, cmd: ReplaceOrder, order: Order, inst: Instrument) -> tuple[int, str] | None: ...

    def on_events(self, events: list[Event]) -> list[Event]: ...

    def on_trigger(self, order: Order, inst: Instrument) -> tuple[int, str] | None: ...

    def apply(self, cmd: Any) -> list[Event] | None: ...

    def snapshot(self) -> dict: ...

    def restore(self, d: dict) -> None: ...


class NoHooks:
    """No ledger, no risk: every order passes, foreign commands produce nothing."""

    def pre_new(self, cmd: NewOrder, order_id: int, inst: Instrument) -> tuple[int, str] | None:
        return None

    def pre_replace(self, cmd: ReplaceOrder, order: Order, inst: Instrument) -> tuple[int, str] | None:
        return None

    def on_events(self, events: list[Event]) -> list[Event]:
        return []

    def on_trigger(self, order: Order, inst: Instrument) -> tuple[int, str] | None:
        return None

    def apply(self, cmd: Any) -> list[Event] | None:
        return None

    def snapshot(self) -> dict:
        return {}

    def restore(self, d: dict) -> None:
        return None
