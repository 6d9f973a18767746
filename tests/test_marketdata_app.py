"""The market-data FIX application with in-memory sessions (no sockets)."""

from __future__ import annotations

import random

import pytest

from fix.application import BusinessReject
from fix.message import Message, encode, parse_fields
from sessions.market_data import MarketDataApp
from tests.test_marketdata import _random_events
from venue.core.events import BookLevel, TradingStatusChanged
from venue.core.types import Side, TradingStatus
from venue.marketdata import Units

UNITS = Units("0.01", "0.1")
SYMBOLS = {"BTC-USD", "ETH-USD"}


class FakeSession:
    def __init__(self) -> None:
        self.out: list[Message] = []
        self.outbound_backlog = 0
        self.closed: str | None = None

    def send_app(self, msg: Message) -> None:
        # framed and parsed again, as the session's wire format (the app pre-encodes groups)
        self.out.append(Message(parse_fields(encode(msg.fields)[len(b"8=FIX.4.4\x01"):])[1:-1]))

    def disconnect(self, reason: str) -> None:
        self.closed = reason


def _app(**kw: object) -> MarketDataApp:
    return MarketDataApp(lambda s: UNITS if s in SYMBOLS else None, **kw)


def _request(req_id: str, symbols: list[str], srt: str = "1", depth: int = 0, types: tuple[str, ...] = ("0", "1", "2"),
             extra: list[tuple[int, object]] | None = None) -> Message:
    fields: list[tuple[int, object]] = [(35, "V"), (34, 5), (262, req_id), (263, srt), (264, depth), (265, 1),
                                        *(extra or []), (267, len(types))]
    fields += [(269, t) for t in types]
    fields += [(146, len(symbols))] + [(55, s) for s in symbols]
    return Message.build(fields)


class FixBook:
    """A FIX client's book: W resets it, X entries apply with an RptSeq check."""

    def __init__(self) -> None:
        self.books: dict[str, dict[str, dict[str, str]]] = {}
        self.seq: dict[str, int] = {}
        self.trades = 0

    def on(self, msg: Message) -> None:
        if msg.msg_type == "W":
            sym = msg.get_str(55)
            book = self.books[sym] = {"0": {}, "1": {}}
            self.seq[sym] = msg.get_int(83)
            entry: dict[int, str] = {}
            for tag, value in [*msg.fields[msg.fields.index((268, msg.get(268))) + 1:], (269, b"end")]:
                if tag == 269 and entry:
                    if entry[269] in book:
                        book[entry[269]][entry[270]] = entry[271]
                    entry = {}
                entry[tag] = value.decode()
        elif msg.msg_type == "X":
            entries: list[dict[int, str]] = []
            for tag, value in msg.fields:
                if tag == 279:
                    entries.append({})
                if entries:
                    entries[-1][tag] = value.decode()
            for e in entries:
                sym = e[55]
                assert int(e[83]) == self.seq[sym] + 1, f"gap: {self.seq[sym]} -> {e[83]}"
                self.seq[sym] = int(e[83])
                if e[269] == "2":
                    self.trades += 1
                    continue
                side = self.books[sym][e[269]]
                if e[279] == "2":
                    del side[e[270]]
                elif e[279] == "0":
                    assert e[270] not in side
                    side[e[270]] = e[271]
                else:
                    assert e[270] in side
                    side[e[270]] = e[271]


def _venue(app: MarketDataApp, sym: str, depth: int = 0) -> dict[str, dict[str, str]]:
    book = app.market.books[sym]
    return {"0": {UNITS.px(p): UNITS.qty(q) for p, q in book.levels(Side.BUY, depth)},
            "1": {UNITS.px(p): UNITS.qty(q) for p, q in book.levels(Side.SELL, depth)}}


def test_snapshot_and_incrementals_rebuild_full_and_top_n_books() -> None:
    app = _app()
    full, top5 = FakeSession(), FakeSession()
    app.on_logon(full)
    app.on_logon(top5)
    events = _random_events(random.Random(1), 6000, "BTC-USD")
    app.on_core_events(events[:500])
    app.from_app(full, _request("f", ["BTC-USD"]))
    app.from_app(top5, _request("t", ["BTC-USD"], depth=5))
    for i in range(500, len(events), 7):
        app.on_core_events(events[i:i + 7])
    a, b = FixBook(), FixBook()
    for m in full.out:
        a.on(m)
    for m in top5.out:
        b.on(m)
    assert a.books["BTC-USD"] == _venue(app, "BTC-USD") and a.trades > 0
    assert b.books["BTC-USD"] == _venue(app, "BTC-USD", 5)
    assert all(m.get_str(262) == "f" for m in full.out)
    assert not any(m.get(1) or m.get(37) for m in full.out)  # no accounts, no order ids


def test_several_instruments_in_one_request_each_get_a_snapshot() -> None:
    app = _app()
    s = FakeSession()
    app.on_logon(s)
    app.from_app(s, _request("r", ["BTC-USD", "ETH-USD"]))
    assert [(m.msg_type, m.get_str(55)) for m in s.out] == [("W", "BTC-USD"), ("W", "ETH-USD")]
    app.on_core_events([BookLevel(1, 1, "ETH-USD", Side.BUY, 100, 5, 1)])
    assert s.out[-1].msg_type == "X" and s.out[-1].get_str(55) == "ETH-USD" and s.out[-1].get_str(279) == "0"


def _reject(app: MarketDataApp, msg: Message) -> Message:
    s = FakeSession()
    app.on_logon(s)
    app.from_app(s, _request("dup", ["BTC-USD"]))
    s.out.clear()
    app.from_app(s, msg)
    (out,) = s.out
    assert out.msg_type == "Y" and out.get_str(58)
    return out


def test_rejects_carry_the_reason() -> None:
    app = _app()
    assert _reject(app, _request("a", ["NOPE"])).get_str(281) == "0"
    assert _reject(app, _request("dup", ["BTC-USD"])).get_str(281) == "1"
    assert _reject(app, _request("b", ["BTC-USD"], srt="7")).get_str(281) == "4"
    assert _reject(app, _request("c", ["BTC-USD"], depth=-1)).get_str(281) == "5"
    assert _reject(app, _request("d", ["BTC-USD"], types=("0", "4"))).get_str(281) == "8"
    assert _reject(app, _request("e", ["BTC-USD"], extra=[(266, "N")])).get_str(281) == "7"


def test_unsubscribe_stops_updates() -> None:
    app = _app()
    s = FakeSession()
    app.on_logon(s)
    app.from_app(s, _request("r", ["BTC-USD"]))
    app.from_app(s, _request("r", ["BTC-USD"], srt="2"))
    n = len(s.out)
    app.on_core_events([BookLevel(1, 1, "BTC-USD", Side.BUY, 100, 5, 1)])
    assert len(s.out) == n


def test_snapshot_only_request_gets_no_updates() -> None:
    app = _app()
    s = FakeSession()
    app.on_logon(s)
    app.from_app(s, _request("r", ["BTC-USD"], srt="0"))
    app.on_core_events([BookLevel(1, 1, "BTC-USD", Side.BUY, 100, 5, 1)])
    assert [m.msg_type for m in s.out] == ["W"]


def test_order_message_gets_business_message_reject() -> None:
    app = _app()
    s = FakeSession()
    app.on_logon(s)
    with pytest.raises(BusinessReject) as info:
        app.from_app(s, Message.build([(35, "D"), (34, 9), (11, "x"), (55, "BTC-USD")]))
    assert info.value.reason == 3 and info.value.text and not s.out


def test_halt_and_resume_send_trading_session_status() -> None:
    app = _app()
    s = FakeSession()
    app.on_logon(s)
    app.on_core_events([TradingStatusChanged(1, 1, "BTC-USD", TradingStatus.HALTED)])
    app.on_core_events([TradingStatusChanged(2, 2, "BTC-USD", TradingStatus.OPEN)])
    assert [(m.msg_type, m.get_str(336), m.get_str(340)) for m in s.out] == [("h", "BTC-USD", "1"),
                                                                              ("h", "BTC-USD", "2")]


def test_slow_session_is_conflated_then_disconnected_without_affecting_others() -> None:
    now = [0.0]
    app = _app(queue_limit=50, high_water=10, max_hold=2.0, clock=lambda: now[0])
    slow, fast = FakeSession(), FakeSession()
    for s in (slow, fast):
        app.on_logon(s)
        app.from_app(s, _request("r", ["BTC-USD"]))
    events = _random_events(random.Random(8), 3000, "BTC-USD")
    slow.outbound_backlog = 100  # its socket is not draining
    for i in range(0, 1500, 10):
        app.on_core_events(events[i:i + 10])
    n = len(slow.out)
    slow.outbound_backlog = 0  # it catches up: gets a fresh snapshot, not the dropped updates
    app.on_timer()
    assert slow.out[n].msg_type == "W"
    for i in range(1500, len(events), 10):
        app.on_core_events(events[i:i + 10])
    for s in (slow, fast):
        b = FixBook()
        for m in s.out:
            b.on(m)
        assert b.books["BTC-USD"] == _venue(app, "BTC-USD")
    slow.outbound_backlog = 100
    app.on_core_events(events[:10])
    now[0] = 3.0
    app.on_core_events(events[10:20])
    assert slow.closed and "slow consumer" in slow.closed and fast.closed is None
    assert id(slow) not in app.sessions


def test_every_message_sent_validates_against_the_venue_dictionary() -> None:
    from fix.codec import parse_frame
    from fix.dictionary import DataDictionary
    from tools.wiring import dictionary_paths

    dd = DataDictionary.load(*dictionary_paths())  # the venue's dialect (FIX44.xml + venue-fix44.xml)
    app = _app()
    s = FakeSession()
    app.on_logon(s)
    app.from_app(s, _request("empty", ["ETH-USD"], srt="0"))  # an empty book: NoMDEntries=0
    app.on_core_events(_random_events(random.Random(1), 300))
    app.from_app(s, _request("a", ["BTC-USD"]))
    app.from_app(s, _request("b", ["BTC-USD"], depth=3, types=("0",)))
    app.from_app(s, _request("c", ["NOPE"]))
    app.from_app(s, _request("d", ["BTC-USD"], srt="2"))
    app.on_core_events(_random_events(random.Random(2), 300))
    app.on_core_events([TradingStatusChanged(1, 1, "BTC-USD", TradingStatus.HALTED)])
    kinds = set()
    for n, m in enumerate(s.out, 1):  # framed with a header as the session would
        header = [(35, m.get(35)), (49, b"VENUE"), (56, b"CLIENT"), (34, str(n).encode()),
                  (52, b"20261125-00:00:00.000")]
        msg = parse_frame(encode(header + [(t, v) for t, v in m.fields if t != 35]))
        assert dd.validate(msg) is None, (dd.validate(msg), msg)
        kinds.add(msg.msg_type)
        if msg.msg_type == "X":
            kinds.update("279=" + a.decode() for t, a in msg.fields if t == 279)
    assert {"W", "X", "Y", "h", "279=0", "279=1", "279=2"} <= kinds


def test_full_refresh_update_type_sends_a_snapshot_per_change() -> None:
    app = _app()
    s = FakeSession()
    app.on_logon(s)
    req = Message([(t, b"0" if t == 265 else v) for t, v in _request("r", ["BTC-USD"]).fields])
    app.from_app(s, req)
    app.on_core_events([BookLevel(1, 1, "BTC-USD", Side.BUY, 100, 5, 1)])
    app.on_core_events([BookLevel(2, 2, "BTC-USD", Side.SELL, 101, 3, 1)])
    assert [m.msg_type for m in s.out] == ["W", "W", "W"]
    assert [m.get_int(83) for m in s.out] == [0, 1, 2] and s.out[-1].get_int(268) == 2
