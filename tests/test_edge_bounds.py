"""Every numeric value is bounded at the FIX edge (issue 12: a NewOrderSingle whose OrderQty had
about 5,000 digits passed the edge and made every later journal write fail).

Per dictionary type, the bound is part of the value's memoised check: at the limit a value passes,
one past it is refused with SessionRejectReason 6 and a Text that names the field and the limit,
on the first message of a tag sequence and on the dictionary's learned fast path alike. The
session never converts an unbounded number (with or without a dictionary) and never echoes one
back; the order-entry codec turns decimals into at most 2**62 lots or ticks, exactly.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from fix.application import Application
from fix.codec import FrameReader, format_timestamp, parse_frame
from fix.dictionary import DataDictionary
from fix.message import Message, encode, parse_fields
from fix.session import Session, SessionConfig
from sessions import order_entry_codec as codec
from sessions.errors import EdgeError, EdgeReject
from venue.core.types import RejectCode

CONFIG = Path(__file__).resolve().parents[1] / "config"
T = "20260101-12:00:00"
T0 = 1_800_000_000.0
HUGE = "9" * 5000

# One user-defined field of every bounded type on Heartbeat (35=0), so each type is checked alone.
TYPES = ["INT", "LENGTH", "NUMINGROUP", "TAGNUM", "SEQNUM", "DAYOFMONTH",
         "FLOAT", "QTY", "PRICE", "PRICEOFFSET", "AMT", "PERCENTAGE"]
TAG = {t: 9900 + i for i, t in enumerate(TYPES)}
EXTENSION = (
    '<fix type="FIX" major="4" minor="4" servicepack="0"><header/><messages>'
    '<message name="Heartbeat" msgtype="0" msgcat="admin">'
    + "".join(f'<field name="Bound{t}" required="N"/>' for t in TYPES)
    + "</message></messages><trailer/><components/><fields>"
    + "".join(f'<field number="{TAG[t]}" name="Bound{t}" type="{t}"/>' for t in TYPES)
    + "</fields></fix>"
)

LIMIT_TEXT = {
    **{t: "a signed 32-bit integer (-2147483648 to 2147483647)" for t in ("INT", "LENGTH", "NUMINGROUP", "TAGNUM")},
    "SEQNUM": "at most 18 digits (0 to 999999999999999999)",
    "DAYOFMONTH": "1 to 31",
    **{t: "at most 32 characters" for t in ("FLOAT", "QTY", "PRICE", "PRICEOFFSET", "AMT", "PERCENTAGE")},
}
DECIMAL_AT_LIMIT = "-" + "1" * 20 + "." + "5" * 10  # 32 characters
# (type, largest accepted values, smallest refused values)
TABLE = [
    *[(t, ["2147483647", "-2147483648", "0"], ["2147483648", "-2147483649", "12345678901", HUGE])
      for t in ("INT", "LENGTH", "NUMINGROUP", "TAGNUM")],
    ("SEQNUM", ["999999999999999999", "0"], ["1000000000000000000", "18446744073709551615", "9" * 400, HUGE]),
    ("DAYOFMONTH", ["1", "31"], ["0", "32"]),
    *[(t, [DECIMAL_AT_LIMIT, "9" * 32, "0." + "0" * 29 + "1"], [DECIMAL_AT_LIMIT + "5", "9" * 33, HUGE, "1." + HUGE])
      for t in ("FLOAT", "QTY", "PRICE", "PRICEOFFSET", "AMT", "PERCENTAGE")],
]


@pytest.fixture(scope="module")
def bounded() -> DataDictionary:
    return DataDictionary.from_xml((CONFIG / "FIX44.xml").read_bytes(), EXTENSION)


@pytest.fixture(scope="module")
def venue_dd() -> DataDictionary:
    return DataDictionary.load(CONFIG / "FIX44.xml", CONFIG / "venue-fix44.xml")


def frame(pairs: list[tuple[int, str]]) -> Message:
    """A complete frame (real BodyLength and CheckSum) from 35 on."""
    return Message(parse_fields(encode([(t, v.encode()) for t, v in pairs])))


def heartbeat(tag: int, value: str) -> Message:
    return frame([(35, "0"), (34, "2"), (49, "TW"), (52, T), (56, "ISLD"), (tag, value)])


# ------------------------------------------------------------------ dictionary, type by type


@pytest.mark.parametrize(("type_name", "good", "bad"), TABLE, ids=[row[0] for row in TABLE])
def test_each_numeric_type_passes_at_its_limit_and_is_refused_past_it(bounded, type_name, good, bad):
    tag = TAG[type_name]
    for value in good:
        assert bounded.validate(heartbeat(tag, value)) is None, (type_name, value)
    for value in bad:
        rej = bounded.validate(heartbeat(tag, value))
        assert rej is not None, (type_name, value[:40])
        assert (rej.reason, rej.ref_tag, rej.ref_msg_type) == (6, tag, "0")
        assert rej.text.startswith("Incorrect data format for value: ")
        assert f"Bound{type_name} ({tag})" in rej.text and LIMIT_TEXT[type_name] in rej.text, rej.text
        assert len(rej.text) < 200  # the value itself is never copied into the Text


@pytest.mark.parametrize(("type_name", "good", "bad"), TABLE, ids=[row[0] for row in TABLE])
def test_the_learned_fast_path_applies_the_same_bounds(bounded, type_name, good, bad):
    """Once a tag sequence passed, only its (memoised) value checks run: they carry the bounds."""
    tag = TAG[type_name]
    assert bounded.validate(heartbeat(tag, good[0])) is None  # learns the shape
    for value in bad:
        assert bounded.validate(heartbeat(tag, value)).reason == 6


def test_malformed_values_keep_quickfixs_bare_text(bounded):
    """Only a value refused for its size gets the detailed Text; bad syntax keeps QuickFIX's."""
    for type_name, value in [("INT", "12a"), ("SEQNUM", "-1"), ("QTY", "1e5"), ("PRICE", "+1"), ("DAYOFMONTH", "x")]:
        rej = bounded.validate(heartbeat(TAG[type_name], value))
        assert (rej.reason, rej.text) == (6, "Incorrect data format for value"), (type_name, rej)


HDR = [(34, "2"), (49, "TW"), (52, T), (56, "ISLD")]
NOS = [(11, "ID"), (21, "1"), (38, "1"), (40, "2"), (44, "100"), (54, "1"), (55, "BTC-USDT"), (60, T)]


def with_value(body: list[tuple[int, str]], tag: int, value: str) -> list[tuple[int, str]]:
    return [(t, value if t == tag else v) for t, v in body] + ([] if any(t == tag for t, _ in body) else [(tag, value)])


@pytest.mark.parametrize(
    ("msg_type", "body", "tag", "name", "value"),
    [
        ("D", NOS, 38, "OrderQty", HUGE),
        ("D", NOS, 44, "Price", HUGE),
        ("D", NOS, 99, "StopPx", "1" * 33),
        ("D", NOS, 1138, "DisplayQty", HUGE),
        ("D", NOS, 111, "MaxFloor", HUGE),
        ("D", NOS, 110, "MinQty", HUGE),
        ("D", NOS, 152, "CashOrderQty", HUGE),
        ("0", [], 34, "MsgSeqNum", "9" * 400),
        ("0", [], 34, "MsgSeqNum", HUGE),
        ("4", [(36, "5")], 36, "NewSeqNo", "9" * 19),
        ("2", [(7, "1"), (16, "0")], 7, "BeginSeqNo", HUGE),
        ("2", [(7, "1"), (16, "0")], 16, "EndSeqNo", "9" * 19),
        ("3", [(45, "1")], 45, "RefSeqNum", HUGE),
        ("A", [(98, "0"), (108, "30")], 108, "HeartBtInt", HUGE),
        ("A", [(98, "0"), (108, "30"), (95, "2"), (96, "ab")], 95, "RawDataLength", "9" * 12),
        ("V", [(262, "R"), (263, "0"), (264, "1"), (267, "1"), (269, "0"), (146, "1"), (55, "BTC-USDT")],
         267, "NoMDEntryTypes", "99999999999"),
    ],
)
def test_the_venue_dictionary_bounds_the_tags_of_the_finding(venue_dd, msg_type, body, tag, name, value):
    pairs = [(35, msg_type), *HDR, *body]
    assert venue_dd.validate(frame(pairs)) is None  # the message is fine with a small value
    rej = venue_dd.validate(frame(with_value(pairs, tag, value)))
    assert (rej.reason, rej.ref_tag) == (6, tag), rej
    assert f"{name} ({tag})" in rej.text, rej.text


def test_a_numingroup_within_32_bits_but_not_the_instances_sent_is_an_incorrect_count(venue_dd):
    body = [(262, "R"), (263, "0"), (264, "1"), (267, "2147483647"), (269, "0"), (146, "1"), (55, "BTC-USDT")]
    rej = venue_dd.validate(frame([(35, "V"), *HDR, *body]))
    assert (rej.reason, rej.ref_tag) == (16, 267)


# ------------------------------------------------------------------ the session


class Orders(Application):
    def __init__(self) -> None:
        self.orders: list[bytes] = []

    def from_app(self, session, msg):
        self.orders.append(msg.get(11))


def session_frame(msg_type: str, seq: str, *body: tuple[int, object]) -> bytes:
    fields = [(35, msg_type), (34, seq), (49, "TW"), (52, format_timestamp(T0, 0).decode()), (56, "ISLD"), *body]
    return encode([(t, str(v).encode()) for t, v in fields])


def replies(session: Session) -> list[Message]:
    o = session.take_outbound()
    return [parse_frame(f) for f in FrameReader().feed(o.data)]


def new_session(dictionary: DataDictionary | None, **cfg) -> tuple[Session, Orders]:
    app = Orders()
    session = Session(SessionConfig("ISLD", "TW", **cfg), dictionary=dictionary, application=app)
    session.connection_made(T0, ("127.0.0.1", 1))
    return session, app


def logged_on(dictionary: DataDictionary | None) -> tuple[Session, Orders]:
    session, app = new_session(dictionary)
    session.receive_data(session_frame("A", "1", (98, 0), (108, 30)), T0)
    assert [m.get(35) for m in replies(session)] == [b"A"]
    return session, app


def order(seq: str, cl: str, qty: str = "1") -> bytes:
    return session_frame("D", seq, (11, cl), (21, 1), (38, qty), (40, 2), (44, 100), (54, 1), (55, "BTC-USDT"),
                         (60, format_timestamp(T0, 0).decode()))


@pytest.mark.parametrize("seq", ["9" * 400, HUGE, "1" + "0" * 18])
def test_a_huge_msgseqnum_is_rejected_without_echo_and_the_session_goes_on(venue_dd, seq):
    session, app = logged_on(venue_dd)
    session.receive_data(order(seq, "BIG"), T0)
    [rej] = replies(session)
    assert (rej.get(35), rej.get(373), rej.get(371)) == (b"3", b"6", b"34")
    assert b"MsgSeqNum (34)" in rej.get(58) and b"at most 18 digits" in rej.get(58)
    assert rej.get(45) is None, "an out-of-bound MsgSeqNum is not echoed as RefSeqNum"
    assert session.next_target == 2 and session.is_logged_on
    session.receive_data(order("2", "NEXT"), T0)
    assert app.orders == [b"NEXT"] and session.next_target == 3


def test_an_order_refused_for_its_size_keeps_its_refseqnum_and_consumes_its_seqnum(venue_dd):
    session, app = logged_on(venue_dd)
    session.receive_data(order("2", "BIG", qty=HUGE), T0)
    [rej] = replies(session)
    assert (rej.get(35), rej.get(45), rej.get(371), rej.get(373)) == (b"3", b"2", b"38", b"6")
    assert rej.get(58) == b"Incorrect data format for value: OrderQty (38) has 5000 characters; a QTY is at most 32 characters"
    session.receive_data(order("3", "NEXT"), T0)
    assert app.orders == [b"NEXT"]


def test_a_huge_heartbtint_on_logon_closes_the_connection(venue_dd):
    session, _ = new_session(venue_dd)
    session.receive_data(session_frame("A", "1", (98, 0), (108, HUGE)), T0)
    out = session.take_outbound()
    assert not session.connected and "HeartBtInt (108)" in out.close


def test_a_gap_fill_to_the_largest_seqnum_is_taken_and_one_past_it_is_refused(venue_dd):
    session, _ = logged_on(venue_dd)
    session.receive_data(session_frame("4", "2", (123, "Y"), (36, "9" * 19)), T0)
    [rej] = replies(session)
    assert (rej.get(35), rej.get(371), rej.get(373)) == (b"3", b"36", b"6")
    assert session.next_target == 2
    session.receive_data(session_frame("4", "2", (123, "Y"), (36, "9" * 18)), T0)
    assert session.next_target == 10**18 - 1
    assert session.take_outbound().next_target == 10**18 - 1  # what the store persists fits 64 bits


def test_a_resend_request_for_billions_asks_the_store_only_for_what_was_sent(venue_dd):
    session, _ = logged_on(venue_dd)
    session.receive_data(session_frame("2", "2", (7, 1), (16, "9" * 18)), T0)
    assert session.resend_wanted == (1, session.next_sender - 1) == (1, 1)
    session.complete_resend([], T0)
    [gap_fill] = replies(session)
    assert (gap_fill.get(35), gap_fill.get(36)) == (b"4", b"2")
    session.receive_data(session_frame("2", "3", (7, "9" * 18), (16, 0)), T0)
    assert session.resend_wanted is None and replies(session) == []


# Without a dictionary nothing validates the values first: the session itself must stay bounded.


def test_without_a_dictionary_a_huge_msgseqnum_disconnects_instead_of_raising():
    session, _ = logged_on(None)
    session.receive_data(order(HUGE, "BIG"), T0)
    assert not session.connected and session.take_outbound().close == "MsgSeqNum missing or not a number"


def test_without_a_dictionary_a_huge_heartbtint_is_out_of_range():
    session, _ = new_session(None)
    session.receive_data(session_frame("A", "1", (98, 0), (108, HUGE)), T0)
    [logout] = replies(session)
    assert logout.get(35) == b"5" and logout.get(58) == b"HeartBtInt out of range" and not session.connected


@pytest.mark.parametrize(
    ("msg_type", "body", "tag"),
    [("4", [(123, "Y"), (36, HUGE)], 36), ("2", [(7, HUGE), (16, 0)], 7), ("2", [(7, 1), (16, "9" * 19)], 16)],
)
def test_without_a_dictionary_huge_sequence_fields_are_rejected(msg_type, body, tag):
    session, _ = logged_on(None)
    session.receive_data(session_frame(msg_type, "2", *body), T0)
    [rej] = replies(session)
    assert (rej.get(35), rej.get(371), rej.get(373)) == (b"3", str(tag).encode(), b"6")
    assert session.resend_wanted is None and session.next_target < 10


# ------------------------------------------------------------------ the order-entry codec

INST = codec.InstrumentView("BTC-USDT", Decimal("0.01"), Decimal("0.00001"))
CTX = codec.EdgeContext("DEMO1", ("DEMO1-ACC",), lambda s: INST if s == "BTC-USDT" else None)


def nos(**values: str) -> Message:
    fields = {11: "C1", 55: "BTC-USDT", 54: "1", 38: "1", 40: "2", 44: "100", 60: T}
    fields.update({int(k[1:]): v for k, v in values.items()})
    return Message.build(sorted(fields.items()))


def edge_reject(msg: Message, convert=codec.new_order) -> EdgeReject:
    with pytest.raises(EdgeReject) as info:
        convert(msg, CTX, 0)
    return info.value


MAX = codec.MAX_UNITS


@pytest.mark.parametrize(
    ("field", "value", "code", "ord_rej_reason", "text"),
    [
        ("t38", str(Decimal(MAX + 1) * INST.lot), RejectCode.QTY_TOO_LARGE, 3, "OrderQty (38)"),
        ("t38", "9" * 30, RejectCode.QTY_TOO_LARGE, 3, f"maximum of {MAX} lots"),
        ("t1138", "9" * 30, RejectCode.QTY_TOO_LARGE, 3, "DisplayQty (1138)"),
        ("t44", str(Decimal(MAX + 1) * INST.tick), EdgeError.BAD_VALUE, 99, f"maximum of {MAX} ticks"),
        ("t44", "9" * 32, EdgeError.BAD_VALUE, 99, "Price (44)"),
        ("t38", HUGE, EdgeError.BAD_VALUE, 99, "OrderQty (38) is not a decimal of at most 32 characters"),
        ("t44", "1e400", EdgeError.BAD_VALUE, 99, "Price (44) is not a decimal"),
        ("t38", "Infinity", EdgeError.BAD_VALUE, 99, "OrderQty (38) is not a decimal"),
    ],
)
def test_well_formed_but_huge_quantities_and_prices_never_become_a_command(field, value, code, ord_rej_reason, text):
    rej = edge_reject(nos(**{field: value}))
    assert (rej.code, rej.ord_rej_reason) == (int(code), ord_rej_reason)
    assert text in rej.text and len(rej.text) < 200, rej.text


def test_the_largest_quantity_and_price_convert_exactly():
    cmd = codec.new_order(nos(t38=str(Decimal(MAX) * INST.lot), t44=str(Decimal(MAX) * INST.tick)), CTX, 0)
    assert cmd.qty == MAX and cmd.price == MAX


def test_an_off_grid_value_of_thirty_digits_is_not_rounded_onto_the_grid():
    """28-digit Decimal arithmetic used to round 1.00000000000000000000000000001 / 0.00001 to 100000."""
    rej = edge_reject(nos(t38="1.0000000000000000000000000001"))
    assert rej.code == RejectCode.BAD_LOT
    rej = edge_reject(nos(t44="100.000000000000000000000000001"))
    assert rej.code == RejectCode.BAD_TICK


def test_a_replace_is_bounded_the_same_way():
    msg = Message.build([(11, "C2"), (38, "9" * 30), (41, "C1"), (54, "1"), (55, "BTC-USDT"), (60, T)])
    assert edge_reject(msg, codec.replace_order).code == RejectCode.QTY_TOO_LARGE


@pytest.mark.parametrize("order_id", [HUGE, "9" * 19, "-5", "１２"])
def test_an_order_id_that_cannot_be_the_venues_is_an_unknown_order(order_id):
    assert codec.order_id(order_id) is None
    msg = Message.build([(11, "C2"), (37, order_id), (54, "1"), (55, "BTC-USDT"), (60, T)])
    rej = edge_reject(msg, codec.cancel_order)
    assert rej.code == RejectCode.UNKNOWN_ORDER and len(rej.text) < 100
    assert codec.order_id("123456789012345678") == 123456789012345678


def test_oversized_values_never_become_keys_of_the_memoised_checks(venue_dd):
    """The fast path's checks are lru_caches keyed by the value: a frame over 1 KiB skips them (and
    is judged by the full pass), so no one can park thousands of 5,000-byte keys in the caches."""
    from fix.dictionary import _MEMO

    def nos_frame(qty: str) -> Message:
        return parse_frame(encode([(t, v.encode()) for t, v in [(35, "D"), *HDR, *with_value(NOS, 38, qty)]]))

    assert venue_dd.validate(nos_frame("1")) is None  # the shape is learned
    assert venue_dd.validate(nos_frame("2")) is None  # and served from the fast path
    sizes = {check: memo.cache_info().currsize for check, memo in _MEMO.items()}
    for i in range(50):
        rej = venue_dd.validate(nos_frame(f"{i}" + "9" * 2000))
        assert (rej.reason, rej.ref_tag) == (6, 38)
    assert {check: memo.cache_info().currsize for check, memo in _MEMO.items()} == sizes
