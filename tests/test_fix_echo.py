"""The certification echo application behind a real session (no sockets)."""

from __future__ import annotations

from fix.session import Session, SessionConfig
from sessions.echo import EchoApplication
from tests.test_fix_session import DD, T0, frame, out


def _session() -> Session:
    session = Session(SessionConfig(sender_comp_id="ISLD", target_comp_id="TW"), dictionary=DD,
                      application=EchoApplication())
    session.connection_made(T0)
    session.receive_data(frame("A", 1, (98, 0), (108, 30)), T0)
    out(session)
    return session


def test_order_comes_back_with_body_fields_in_ascending_tag_order():
    session = _session()
    session.receive_data(frame("D", 2, (55, "MSFT"), (60, "20260101-00:00:00"), (54, 1), (21, 3), (11, "id"),
                               (40, 1)), T0)
    (echo,) = out(session)
    assert [t for t, _ in echo.fields][7:-1] == [11, 21, 40, 54, 55, 60]
    assert echo.get(55) == b"MSFT" and echo.get(49) == b"ISLD" and echo.get(34) == b"2"


def test_a_repeating_group_stays_whole_after_its_count_field():
    session = _session()
    session.receive_data(frame("D", 2, (11, "id"), (21, 1), (40, 1), (54, 1), (55, "X"), (60, "20260101-00:00:00"),
                               (453, 1), (448, "P1"), (447, "D"), (452, 1), (38, 5)), T0)
    (echo,) = out(session)
    tags = [t for t, _ in echo.fields][7:-1]
    assert tags == [11, 21, 38, 40, 54, 55, 60, 453, 448, 447, 452]


def test_possresend_of_an_order_already_seen_is_dropped_but_a_new_one_is_echoed():
    session = _session()
    order = ((11, "id"), (21, 3), (40, 1), (54, 1), (55, "MSFT"), (60, "20260101-00:00:00"))
    session.receive_data(frame("D", 2, *order), T0)
    session.receive_data(frame("D", 3, *order, header=((97, "Y"),)), T0)
    session.receive_data(frame("D", 4, (11, "new"), *order[1:], header=((97, "Y"),)), T0)
    echoes = out(session)
    assert [m.get(11) for m in echoes] == [b"id", b"new"]
    assert session.next_target == 5


def test_other_application_messages_get_business_reject_3():
    session = _session()
    session.receive_data(frame("V", 2, (262, "r"), (263, 0), (264, 1), (267, 1), (269, 0), (146, 1), (55, "X")), T0)
    (bmr,) = out(session)
    assert (bmr.get(35), bmr.get(380), bmr.get(58)) == (b"j", b"3", b"Unsupported Message Type")


def test_echo_picked_from_the_raw_parts_is_byte_identical_to_the_field_by_field_encoding():
    from fix.codec import parse_frame
    from fix.message import Message

    raw = frame("D", 2, (11, "id"), (21, 1), (40, 1), (54, 1), (55, "X"), (60, "20260101-00:00:00"),
                (453, 2), (448, "P1"), (447, "D"), (452, 1), (448, "P2"), (447, "D"), (452, 3), (38, 5))
    fast = parse_frame(raw)
    assert fast.shape is not None  # the raw-parts path is the one taken
    slow = Message(list(fast.fields), raw)  # no shape: the general path
    sent = []
    for msg in (fast, slow):
        session = _session()
        session.now = T0
        EchoApplication().from_app(session, msg)
        sent.append(session.take_outbound().data)
    assert sent[0] == sent[1] and b"453=2\x01448=P1\x01447=D\x01452=1\x01448=P2\x01" in sent[0]


def test_a_possresend_order_comes_back_with_possresend_in_the_header_as_quickfix_echoes_it():
    session = _session()
    session.receive_data(frame("D", 2, (11, "new"), (21, 3), (40, 1), (54, 1), (55, "MSFT"),
                               (60, "20260101-00:00:00"), header=((97, "Y"),)), T0)
    (echo,) = out(session)
    assert [t for t, _ in echo.fields] == [8, 9, 35, 34, 49, 52, 56, 97, 11, 21, 40, 54, 55, 60, 10]
    assert echo.get(97) == b"Y" and echo.get(49) == b"ISLD" and echo.get(56) == b"TW"


def test_the_echo_keeps_routing_header_fields_but_not_possdup_or_origsendingtime():
    """QuickFIX's Session::send rewrites 8/9/34/35/49/52/56 and removes 43 and 122; the rest stays."""
    session = _session()
    session.receive_data(frame("D", 2, (11, "id"), (21, 3), (40, 1), (54, 1), (55, "MSFT"), (60, "20260101-00:00:00"),
                               header=((43, "Y"), (115, "JCD"), (122, "20260101-00:00:00"))), T0)
    (echo,) = out(session)
    assert [t for t, _ in echo.fields][:9] == [8, 9, 35, 34, 49, 52, 56, 115, 11]
    assert echo.get(115) == b"JCD" and echo.get(43) is None and echo.get(122) is None
