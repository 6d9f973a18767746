"""The drop-copy application with in-memory sessions (no sockets)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fix.application import BusinessReject
from fix.message import Message
from sessions.drop_copy import DropCopyApp
from sessions.order_entry_codec import InstrumentView, report
from venue.core import events as ev
from venue.core.types import CancelReason, OrdType, Side, TimeInForce

INST = InstrumentView("BTC-USD", Decimal("0.01"), Decimal("0.001"))


class FakeSession:
    def __init__(self, accounts: tuple[str, ...]) -> None:
        self.accounts = accounts
        self.out: list[Message] = []

    def send_app(self, msg: Message) -> None:
        self.out.append(msg)


def _app() -> DropCopyApp:
    return DropCopyApp(lambda s: s.accounts, lambda sym: INST if sym == "BTC-USD" else None)


def _events() -> list[object]:
    return [
        ev.OrderAccepted(1, 10, 1, "c1", "A1", "BTC-USD", Side.BUY, OrdType.LIMIT, TimeInForce.GTC, 100, 5, None,
                         None, 5, "S1"),
        ev.OrderAccepted(2, 11, 2, "c2", "B1", "BTC-USD", Side.SELL, OrdType.LIMIT, TimeInForce.GTC, 100, 3, None,
                         None, 3, "S2"),
        ev.OrderFilled(3, 11, 2, "c2", "B1", "BTC-USD", Side.SELL, 9, 100, 3, 0, 3, 300, True, "S2"),
        ev.OrderFilled(4, 11, 1, "c1", "A1", "BTC-USD", Side.BUY, 9, 100, 3, 2, 3, 300, False, "S1"),
        ev.Trade(5, 11, 9, "BTC-USD", 100, 3, Side.SELL, 1, 2, "A1", "B1"),
        ev.BookLevel(6, 11, "BTC-USD", Side.BUY, 100, 2, 1),
        ev.OrderCancelled(7, 12, 1, "c1", "c1", "A1", "BTC-USD", Side.BUY, 100, 5, 2, 3, 300,
                          CancelReason.KILL_SWITCH, "", "S1"),
        ev.CancelRejected(8, 13, "x", "c1", 1, "A1", "BTC-USD", False, 13, "unknown order", "S1"),
    ]


def test_copies_every_report_of_entitled_accounts_in_core_order_with_same_contents() -> None:
    app = _app()
    broker = FakeSession(("A1",))
    app.on_create(broker)
    events = _events()
    app.on_core_events(events)
    expected = [report(e, INST)[1] for e in events if getattr(e, "account", None) == "A1"
                and not isinstance(e, ev.CancelRejected)]
    got = [[(t, v.decode()) for t, v in m.fields[1:]] for m in broker.out]
    assert got == expected and len(got) == 3
    assert all(m.msg_type == "8" for m in broker.out)
    assert [m.get_str(150) for m in broker.out] == ["0", "F", "4"]  # new, fill, cancel by kill switch


def test_no_copies_of_other_accounts() -> None:
    app = _app()
    a, b, both = FakeSession(("A1",)), FakeSession(("B1",)), FakeSession(("A1", "B1"))
    for s in (a, b, both):
        app.on_logon(s)
    app.on_core_events(_events())
    assert {m.get_str(1) for m in a.out} == {"A1"}
    assert {m.get_str(1) for m in b.out} == {"B1"}
    assert [m.get_str(17) for m in both.out] == ["1", "2", "3", "4", "7"]


def test_registering_twice_does_not_duplicate_copies() -> None:
    app = _app()
    s = FakeSession(("A1",))
    app.on_create(s)
    app.on_logon(s)
    app.on_core_events(_events()[:1])
    assert len(s.out) == 1


def test_drop_copy_session_is_read_only() -> None:
    app = _app()
    s = FakeSession(("A1",))
    app.on_logon(s)
    with pytest.raises(BusinessReject) as info:
        app.from_app(s, Message.build([(35, "D"), (11, "x")]))
    assert info.value.reason == 3 and "read-only" in (info.value.text or "")


def test_fill_copies_carry_the_commission_the_order_entry_app_reports() -> None:
    app = DropCopyApp(lambda s: s.accounts, lambda sym: INST, commissions=lambda evs: {(1, 9): "0.42"})
    broker = FakeSession(("A1",))
    app.on_create(broker)
    events = _events()
    app.on_core_events(events)
    fill = next(m for m in broker.out if m.get_str(150) == "F")
    assert (fill.get_str(12), fill.get_str(13)) == ("0.42", "3")
    assert [(t, v.decode()) for t, v in fill.fields[1:]] == report(events[3], INST, 3, "0.42")[1]


def test_edge_reject_reports_can_be_copied_to_entitled_sessions_only() -> None:
    app = _app()
    a, b = FakeSession(("A1",)), FakeSession(("B1",))
    app.on_create(a)
    app.on_create(b)
    fields = [(37, "NONE"), (11, "bad"), (17, "R1"), (150, "8"), (39, "8"), (1, "A1"), (55, "BTC-USD")]
    app.copy("A1", "8", fields)
    assert [(t, v.decode()) for t, v in a.out[0].fields[1:]] == fields and not b.out
