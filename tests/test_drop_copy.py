"""The drop-copy application with in-memory sessions (no sockets)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fix.application import BusinessReject
from fix.codec import parse_frame
from fix.message import Message
from fix.session import Session, SessionConfig
from sessions.drop_copy import DropCopyApp
from sessions.order_entry_codec import InstrumentView, report
from venue.core import events as ev
from venue.core.types import CancelReason, OrdType, Side, TimeInForce

INST = InstrumentView("BTC-USD", Decimal("0.01"), Decimal("0.001"))


class FakeSession:
    """A real sans-I/O FIX session (not connected: what it is sent is framed and stored, as for a
    broker who is away); ``out`` is what it stored, as messages of MsgType + body."""

    def __init__(self, accounts: tuple[str, ...], comp_id: str = "BRK") -> None:
        self.accounts = accounts
        self.config = SessionConfig("VENUE", comp_id)
        self.session = Session(self.config)
        self.frames: list[bytes] = []

    def send_app_encoded(self, msg_type: bytes, body: bytes, now: float | None = None,
                         body_sum: int | None = None) -> int:
        return self.session.send_app_encoded(msg_type, body, now, body_sum)

    @property
    def out(self) -> list[Message]:
        self.frames += [raw for _, raw in self.session.take_outbound().store_rows]
        return [Message([(t, v) for t, v in parse_frame(raw).fields if t not in (8, 9, 34, 49, 52, 56, 10)])
                for raw in self.frames]


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


# ------------------------------------------- one report per event, shared by owner and copies


def _owner_and_broker():
    """A real core with its risk/ledger stage, the real order-entry app and a drop-copy app wired
    to it as the venue wires them, and real (unconnected) FIX sessions for ALICE, BOB and BRK."""
    from sessions.order_entry import OrderEntryApp
    from venue.core.assets import Assets
    from venue.core.commands import Deposit
    from venue.core.engine import Core
    from venue.core.risk import AccountRisk
    from venue.core.stage import RiskLedgerStage

    from .test_ledger_support import FEES, btc_usdt

    stage = RiskLedgerStage({a: AccountRisk(a) for a in ("alice", "bob")}, Assets(), FEES)
    core = Core([btc_usdt()], hooks=stage)
    for a in ("alice", "bob"):
        core.process(Deposit(1, a, "USDT", 10**9, "seed"))
        core.process(Deposit(1, a, "BTC", 10**7, "seed"))
    view = InstrumentView("BTC-USDT", Decimal("0.01"), Decimal("0.0001"))
    owners = {sid: FakeSession((), sid) for sid in ("ALICE", "BOB")}
    oe = OrderEntryApp(core=core, submit=lambda c, d: None, instrument={"BTC-USDT": view}.get,
                       rights=lambda sid: None, sessions=lambda sid: owners[sid].session, wall=lambda: 1.7e9)
    dc = DropCopyApp(lambda s: s.accounts, reports=oe.reports, wall=lambda: 1.7e9 + 0.5)
    broker = FakeSession(("alice", "bob"))
    dc.on_create(broker)
    return core, oe, dc, owners, broker


def _body(frame: bytes, comp_id: str) -> bytes:
    """What follows the header (ends with TargetCompID, 56) up to the checksum (10)."""
    head, sep, rest = frame.partition(b"\x0156=" + comp_id.encode() + b"\x01")
    assert sep, frame
    return rest[: rest.rindex(b"10=")]


def test_a_drop_copy_is_the_owners_report_byte_for_byte_after_the_header(monkeypatch) -> None:
    from fix.codec import FrameReader
    from sessions import order_entry_codec
    from venue.core.commands import CancelOrder, NewOrder

    translated = []
    real_report = order_entry_codec.report

    def counting(e, *args):
        translated.append(e.seq)
        return real_report(e, *args)

    monkeypatch.setattr(order_entry_codec, "report", counting)
    core, oe, dc, owners, broker = _owner_and_broker()
    commands = [NewOrder(10, "alice", "BTC-USDT", "a1", Side.BUY, 30, OrdType.LIMIT, 5_000_000, TimeInForce.GTC,
                         session="ALICE"),
                NewOrder(11, "bob", "BTC-USDT", "b1", Side.SELL, 10, OrdType.LIMIT, 5_000_000, TimeInForce.GTC,
                         session="BOB"),
                CancelOrder(12, "alice", "BTC-USDT", "a2", orig_cl_ord_id="a1", session="ALICE"),
                CancelOrder(13, "bob", "BTC-USDT", "b2", orig_cl_ord_id="nope", session="BOB")]
    for command in commands:  # as the venue's turn does: owner first, then the copies, same list
        events = core.process(command)
        oe.deliver(events)
        dc.on_core_events(events)

    assert len(translated) == len(set(translated)), "each event translated once, not once per recipient"
    owner_frames = {sid: [raw for _, raw in s.session.take_outbound().store_rows] for sid, s in owners.items()}
    copies = [raw for _, raw in broker.session.take_outbound().store_rows]
    by_exec = {}
    for sid, frames in owner_frames.items():
        for raw in frames:
            by_exec[parse_frame(raw).get_str(17)] = (sid, raw)
    ers = [(sid, raw) for sid, raw in by_exec.values() if parse_frame(raw).msg_type == "8"]
    # new a1, new b1, fill b1, fill a1, cancel a1; b2's OrderCancelReject goes to BOB only
    assert sorted(parse_frame(raw).get_str(150) for _, raw in ers) == ["0", "0", "4", "F", "F"]
    assert len(copies) == len(ers)
    for copy in copies:
        sid, owner = by_exec[parse_frame(copy).get_str(17)]
        assert _body(copy, "BRK") == _body(owner, sid)
        assert parse_frame(copy).get(12) is not None or parse_frame(copy).get_str(150) != "F"
    for raw in copies + [raw for frames in owner_frames.values() for raw in frames]:
        assert FrameReader().feed(raw) == [raw], "BodyLength and CheckSum right for every recipient"
