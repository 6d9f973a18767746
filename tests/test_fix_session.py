"""The sans-I/O session state machine, driven with bytes and ticks only (no sockets, no clock)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fix.application import Application, UnsupportedMessageType
from fix.codec import FrameReader, format_timestamp, parse_frame
from fix.dictionary import DataDictionary
from fix.message import Message, encode
from fix.session import Session, SessionConfig

SPEC = Path(__file__).resolve().parents[1] / "config" / "FIX44.xml"  # the repository's own copy
DD = DataDictionary.load(SPEC)
T0 = 1_800_000_000.0


class Recorder(Application):
    def __init__(self, refuse: str | None = None) -> None:
        self.app_msgs: list[Message] = []
        self.logons = 0
        self.logouts: list[str] = []
        self.refuse = refuse

    def on_logon_request(self, session, logon, peer_addr):
        return self.refuse

    def on_logon(self, session):
        self.logons += 1

    def on_logout(self, session, reason):
        self.logouts.append(reason)

    def from_app(self, session, msg):
        if msg.get(35) != b"D":
            raise UnsupportedMessageType()
        self.app_msgs.append(msg)
        session.send_app([(35, "8"), (11, msg.get(11)), (150, "0")])


def frame(msg_type: str, seq: int, *body: tuple[int, object], now: float = T0, sender: str = "TW",
          target: str = "ISLD", sending_time: bytes | None = None, header=(), begin: bytes = b"FIX.4.4") -> bytes:
    st = sending_time if sending_time is not None else format_timestamp(now, 0)
    fields = [(35, msg_type), (34, seq), (49, sender), (52, st), (56, target), *header, *body]
    return encode([(t, v if isinstance(v, bytes) else str(v).encode()) for t, v in fields], begin)


def out(session: Session) -> list[Message]:
    o = session.take_outbound()
    reader = FrameReader()
    msgs = [parse_frame(f) for f in reader.feed(o.data)]
    assert not reader.garbled and reader.buffered == 0  # everything we send is well formed
    return msgs


def types(msgs: list[Message]) -> list[str]:
    return [m.get_str(35) for m in msgs]


def new_session(app: Application | None = None, **cfg) -> tuple[Session, Recorder]:
    app = app or Recorder()
    config = SessionConfig(sender_comp_id="ISLD", target_comp_id="TW", **cfg)
    session = Session(config, dictionary=DD, application=app)
    session.connection_made(T0, ("127.0.0.1", 1))
    return session, app


def logged_on(hb: int = 30, **cfg) -> tuple[Session, Recorder]:
    session, app = new_session(**cfg)
    session.receive_data(frame("A", 1, (98, 0), (108, hb)), T0)
    assert types(out(session)) == ["A"]
    return session, app


def nos(seq: int, cl: str = "ID", **kw) -> bytes:
    return frame("D", seq, (11, cl), (21, 1), (38, 100), (40, 1), (54, 1), (55, "INTC"),
                 (60, format_timestamp(T0, 0)), **kw)


# ------------------------------------------------------------------ logon


def test_logon_is_answered_with_the_clients_heartbtint():
    session, app = new_session()
    session.receive_data(frame("A", 1, (98, 0), (108, 17)), T0)
    (reply,) = out(session)
    assert reply.get(35) == b"A" and reply.get(108) == b"17" and reply.get(34) == b"1"
    assert reply.get(49) == b"ISLD" and reply.get(56) == b"TW"
    assert session.is_logged_on and app.logons == 1


def test_reset_seq_num_flag_resets_both_seqnums_and_is_echoed():
    session, _ = new_session()
    session.next_sender, session.next_target = 40, 50
    session.receive_data(frame("A", 1, (98, 0), (108, 30), (141, "Y")), T0)
    o = session.take_outbound()
    reply = parse_frame(FrameReader().feed(o.data)[0])
    assert reply.get(141) == b"Y" and reply.get(34) == b"1"
    assert (o.next_sender, o.next_target, o.reset) == (2, 2, True)


def test_reset_on_logon_option_resets_even_without_the_flag():
    session, _ = new_session(reset_on_logon=True)
    session.next_sender, session.next_target = 40, 50
    session.receive_data(frame("A", 1, (98, 0), (108, 30)), T0)
    assert out(session)[0].get(34) == b"1" and session.next_target == 2


def test_first_message_not_a_logon_disconnects_without_reply():
    session, _ = new_session()
    session.receive_data(frame("0", 1), T0)
    o = session.take_outbound()
    assert o.data == b"" and o.close and not session.connected


def test_logon_with_bad_sending_time_disconnects_without_reply():
    session, _ = new_session()
    session.receive_data(frame("A", 1, (98, 0), (108, 30), now=T0 - 3600), T0)
    o = session.take_outbound()
    assert o.data == b"" and o.close


def test_refused_logon_gets_a_generic_logout_and_closes():
    session, _ = new_session(Recorder(refuse="bad signature"))
    session.receive_data(frame("A", 1, (98, 0), (108, 30)), T0)
    o = session.take_outbound()
    (logout,) = [parse_frame(f) for f in FrameReader().feed(o.data)]
    assert logout.get(35) == b"5" and logout.get(58) == b"Logon rejected"
    assert "bad signature" in o.close


def test_heartbtint_outside_the_bounds_is_refused():
    session, _ = new_session(max_heart_bt_int=60)
    session.receive_data(frame("A", 1, (98, 0), (108, 600)), T0)
    (logout,) = out(session)
    assert logout.get(35) == b"5" and not session.connected


# ------------------------------------------------------------------ timers


def test_heartbeat_after_heartbtint_of_silence_then_test_request_then_disconnect():
    session, app = logged_on(hb=10)
    session.tick(T0 + 9.9)
    assert out(session) == []
    session.tick(T0 + 10)
    assert types(out(session)) == ["0"]
    session.tick(T0 + 12)
    (tr,) = out(session)
    assert tr.get(35) == b"1" and tr.get(112) == b"TEST"
    session.tick(T0 + 20)
    assert out(session) == []  # no heartbeat while a test request is outstanding
    session.tick(T0 + 24)
    assert session.connected is False and app.logouts == ["Timed out waiting for heartbeat"]


def test_incoming_traffic_resets_the_test_request_timer():
    session, _ = logged_on(hb=10)
    session.receive_data(frame("0", 2, now=T0 + 9), T0 + 9)
    session.tick(T0 + 20)  # 11 s after the last message: heartbeat due, no test request yet
    assert types(out(session)) == ["0"]


def test_test_request_is_answered_with_its_id():
    session, _ = logged_on()
    session.receive_data(frame("1", 2, (112, "HELLO")), T0)
    (hb,) = out(session)
    assert hb.get(35) == b"0" and hb.get(112) == b"HELLO"


def test_logon_timeout_closes_a_silent_connection():
    session, _ = new_session(logon_timeout=5)
    session.tick(T0 + 5)
    assert not session.connected


# ------------------------------------------------------------------ sequence numbers


def test_seqnum_too_high_sends_one_resend_request_and_replays_the_queue_in_order():
    session, app = logged_on()
    session.receive_data(nos(5, "C5") + nos(6, "C6"), T0)
    (rr,) = out(session)  # only one ResendRequest for the whole gap
    assert rr.get(35) == b"2" and rr.get(7) == b"2" and rr.get(16) == b"0"
    session.receive_data(nos(2, "C2") + nos(3, "C3") + nos(4, "C4"), T0)
    assert [m.get(11) for m in app.app_msgs] == [b"C2", b"C3", b"C4", b"C5", b"C6"]
    assert session.next_target == 7


def test_seqnum_too_low_without_possdup_logs_out_with_the_reference_text():
    session, _ = logged_on()
    session.receive_data(frame("0", 2) + frame("0", 3) + frame("0", 2), T0)
    (logout,) = out(session)
    assert logout.get(58) == b"MsgSeqNum too low, expecting 4 but received 2"
    assert not session.connected


def test_possdup_duplicate_is_ignored():
    session, app = logged_on()
    session.receive_data(nos(2) + nos(2, header=[(43, "Y"), (122, format_timestamp(T0, 0))]), T0)
    assert len(app.app_msgs) == 1 and session.next_target == 3
    assert types(out(session)) == ["8"]


def test_possdup_without_orig_sending_time_is_rejected_as_required_tag_missing():
    session, _ = logged_on()
    session.receive_data(frame("0", 2) + frame("0", 2, header=[(43, "Y")]), T0)
    (rej,) = out(session)
    assert (rej.get(35), rej.get(371), rej.get(373)) == (b"3", b"122", b"1")
    assert session.is_logged_on


def test_possdup_with_orig_sending_time_after_sending_time_is_rejected_and_logged_out():
    session, _ = logged_on()
    later = format_timestamp(T0 + 10, 0)
    session.receive_data(frame("0", 2) + frame("0", 2, header=[(43, "Y"), (122, later)]), T0)
    rej, logout = out(session)
    assert (rej.get(35), rej.get(373), rej.get(58)) == (b"3", b"10", b"SendingTime accuracy problem")
    assert logout.get(35) == b"5" and session.sent_logout


def test_sequence_reset_gap_fill_moves_the_expected_seqnum():
    session, _ = logged_on()
    session.receive_data(frame("4", 2, (36, 20), (123, "Y")), T0)
    assert session.next_target == 20


def test_sequence_reset_reset_mode_lower_newseqno_is_rejected_with_value_incorrect():
    session, _ = logged_on()
    session.receive_data(frame("4", 0, (36, 1)), T0)
    (rej,) = out(session)
    assert (rej.get(373), rej.get(372), rej.get(45)) == (b"5", b"4", b"0")
    assert 371 not in rej and session.next_target == 2


def test_sending_time_out_of_range_is_rejected_and_logged_out():
    session, _ = logged_on()
    session.receive_data(frame("0", 2, now=T0 - 121), T0)
    rej, logout = out(session)
    assert rej.get(373) == b"10" and logout.get(35) == b"5"


def test_comp_id_problem_is_rejected_then_logout_and_the_answer_closes():
    session, app = logged_on()
    session.receive_data(frame("0", 2, sender="WT"), T0)
    rej, logout = out(session)
    assert (rej.get(373), rej.get(58)) == (b"9", b"CompID problem") and logout.get(35) == b"5"
    session.receive_data(frame("5", 3), T0)
    assert out(session) == [] and not session.connected and app.logouts


def test_wrong_begin_string_logs_out_and_disconnects():
    session, _ = logged_on()
    session.receive_data(frame("0", 2, begin=b"FIX.4.2"), T0)
    (logout,) = out(session)
    assert logout.get(58) == b"Incorrect BeginString" and not session.connected


# ------------------------------------------------------------------ validation and rejects


def test_invalid_msgtype_is_rejected_with_reason_11_and_consumes_the_seqnum():
    session, _ = logged_on()
    session.receive_data(frame("*", 2), T0)
    (rej,) = out(session)
    assert (rej.get(373), rej.get(372), rej.get(58)) == (b"11", b"*", b"Invalid MsgType")
    assert session.next_target == 3


def test_reject_reverses_the_routing_fields():
    session, _ = logged_on()
    bad = frame("D", 2, (11, "ID"), (21, 3), (38, 100), (40, "w"), (54, 1), (55, "INTC"),
                (60, format_timestamp(T0, 0)), header=[(115, "JCD"), (116, "CS"), (144, "CHI")])
    session.receive_data(bad, T0)
    (rej,) = out(session)
    assert (rej.get(128), rej.get(129), rej.get(145)) == (b"JCD", b"CS", b"CHI")
    assert 115 not in rej and rej.get(371) == b"40" and rej.get(373) == b"5"


def test_unsupported_application_message_gets_a_business_reject():
    session, _ = logged_on()
    session.receive_data(frame("8", 2, (37, "id"), (17, "id"), (150, 0), (39, 0), (55, "X"), (54, 1),
                               (151, 100), (14, 0), (6, "0.0")), T0)
    (bmr,) = out(session)
    assert (bmr.get(35), bmr.get(380), bmr.get(58), bmr.get(372)) == (b"j", b"3", b"Unsupported Message Type", b"8")
    assert session.next_target == 3


# ------------------------------------------------------------------ resend and store


def test_outbound_application_messages_are_handed_over_for_storage_admin_ones_are_not():
    session, _ = logged_on()
    session.receive_data(nos(2) + frame("1", 3, (112, "X")), T0)
    o = session.take_outbound()
    assert [seq for seq, _ in o.store_rows] == [2]
    assert (o.next_sender, o.next_target) == (4, 4)


def test_resend_request_replays_app_messages_and_gap_fills_admin_runs():
    session, _ = logged_on()
    session.receive_data(frame("1", 2, (112, "A")) + nos(3, "X") + frame("1", 4, (112, "B")), T0)
    stored = session.take_outbound().store_rows
    assert [s for s, _ in stored] == [3]
    session.receive_data(frame("2", 5, (7, 1), (16, 0)), T0 + 5)
    assert session.resend_wanted == (1, 4)
    session.complete_resend(stored, T0 + 5)
    gap1, resent, gap2 = out(session)
    assert (gap1.get(35), gap1.get(34), gap1.get(36), gap1.get(123), gap1.get(43)) == (b"4", b"1", b"3", b"Y", b"Y")
    assert (resent.get(35), resent.get(34), resent.get(43)) == (b"8", b"3", b"Y")
    original = parse_frame(stored[0][1])
    assert resent.get(122) == original.get(52) and resent.get(52) != original.get(52)
    assert (gap2.get(34), gap2.get(36)) == (b"4", b"5")
    assert session.next_sender == 5  # resends do not consume sequence numbers


def test_frames_after_a_resend_request_wait_for_the_resend():
    session, _ = logged_on()
    session.receive_data(nos(2), T0)
    stored = session.take_outbound().store_rows
    session.receive_data(frame("2", 3, (7, 2), (16, 2)) + frame("1", 4, (112, "after")), T0)
    assert out(session) == []
    session.complete_resend(stored, T0)
    msgs = out(session)
    assert types(msgs) == ["8", "0"] and msgs[1].get(112) == b"after"


def test_logout_initiated_by_us_times_out_into_a_disconnect():
    session, app = logged_on(logout_timeout=2)
    assert session.state == "logged_on"
    session.logout("KYC revoked", T0)
    (logout,) = out(session)
    assert logout.get(58) == b"KYC revoked" and session.state == "logout_sent"
    session.tick(T0 + 2)
    assert session.state == "disconnected" and app.logouts == ["Timed out waiting for logout response"]


def test_unsolicited_logout_is_answered_and_disconnects():
    session, app = logged_on()
    session.receive_data(frame("5", 2), T0)
    (logout,) = out(session)
    assert logout.get(35) == b"5" and not session.connected and len(app.logouts) == 1


def test_garbled_frame_does_not_consume_a_seqnum():
    session, _ = logged_on()
    good = frame("1", 2, (112, "X"))
    garbled = good[:-4] + b"000\x01"
    session.receive_data(garbled + good, T0)
    (hb,) = out(session)
    assert hb.get(112) == b"X" and session.next_target == 3


def _body_length_off(raw: bytes, delta: int) -> bytes:
    declared = parse_frame(raw).get(9)
    return raw.replace(b"\x019=" + declared + b"\x01", b"\x019=%d\x01" % (int(declared) + delta), 1)


def test_body_length_too_long_drops_the_message_it_runs_into_and_the_gap_is_recovered():
    """As QuickFIX frames: order C2's length runs into C3, both are dropped; C4 is read, too high,
    so the gap is asked for. The client resends C2 and gap-fills 3: C3 is never processed."""
    session, app = logged_on()
    session.receive_data(_body_length_off(nos(2, "C2"), 15), T0)
    assert out(session) == [] and app.app_msgs == []  # waits for the declared bytes
    session.receive_data(nos(3, "C3") + nos(4, "C4"), T0)
    (rr,) = out(session)
    assert (rr.get(35), rr.get(7), rr.get(16)) == (b"2", b"2", b"0") and app.app_msgs == []
    dup = ((43, "Y"), (122, format_timestamp(T0, 0)))
    session.receive_data(nos(2, "C2", header=dup) + frame("4", 3, (36, 4), (123, "Y"), header=dup), T0)
    assert [m.get(11) for m in app.app_msgs] == [b"C2", b"C4"]
    assert session.next_target == 5 and session.connected


def test_body_length_too_short_is_garbled_and_the_same_seqnum_is_then_accepted():
    session, app = logged_on()
    session.receive_data(_body_length_off(nos(2, "SHORT"), -12) + nos(2, "OK"), T0)
    assert [m.get(11) for m in app.app_msgs] == [b"OK"] and session.next_target == 3


@pytest.mark.parametrize("precision,length", [(0, 17), (3, 21), (6, 24)])
def test_sending_time_precision_is_configurable(precision, length):
    session, _ = logged_on(timestamp_precision=precision)
    session.receive_data(frame("1", 2, (112, "X")), T0)
    assert len(out(session)[0].get(52)) == length


def test_garbled_frame_right_after_the_logon_in_the_same_read_is_just_ignored():
    session, _ = new_session()
    good = frame("1", 2, (112, "X"))
    session.receive_data(frame("A", 1, (98, 0), (108, 30)) + good[:-4] + b"000\x01", T0)
    assert types(out(session)) == ["A"] and session.is_logged_on


def test_garbled_frame_before_any_logon_drops_the_connection():
    session, _ = new_session()
    logon = frame("A", 1, (98, 0), (108, 30))
    session.receive_data(logon[:-4] + b"000\x01", T0)
    assert not session.connected and out(session) == []


def test_logon_with_seqnum_too_high_is_answered_then_the_gap_is_requested():
    session, _ = new_session()
    session.receive_data(frame("A", 5, (98, 0), (108, 30)), T0)
    logon, rr = out(session)
    assert logon.get(35) == b"A" and (rr.get(35), rr.get(7), rr.get(16)) == (b"2", b"1", b"0")
    session.receive_data(frame("4", 1, (36, 5), (123, "Y"), header=((43, "Y"), (122, format_timestamp(T0, 0)))), T0)
    assert session.next_target == 6  # the gap fill, then the queued Logon itself


def test_gap_fill_with_seqnum_too_high_is_queued_behind_a_resend_request():
    session, _ = logged_on()
    session.receive_data(frame("4", 5, (36, 20), (123, "Y")), T0)
    (rr,) = out(session)
    assert rr.get(7) == b"2" and session.next_target == 2
    session.receive_data(frame("4", 2, (36, 5), (123, "Y"), header=((43, "Y"), (122, format_timestamp(T0, 0)))), T0)
    assert session.next_target == 20


def test_business_reject_raised_by_the_application_carries_its_reason_and_text():
    from fix.application import BusinessReject

    class Picky(Recorder):
        def from_app(self, session, msg):
            raise BusinessReject(5, "Conditionally required field missing", ref_tag=44)

    session, _ = new_session(Picky())
    session.receive_data(frame("A", 1, (98, 0), (108, 30)) + nos(2), T0)
    _, bmr = out(session)
    assert (bmr.get(35), bmr.get(380), bmr.get(371), bmr.get(45)) == (b"j", b"5", b"44", b"2")
    assert session.next_target == 3


def test_send_app_puts_header_fields_in_the_header_in_tag_order():
    session, _ = logged_on()
    session.send_app([(35, "8"), (11, "X"), (128, "DESK"), (97, "Y"), (150, "0")])
    (msg,) = out(session)
    assert [t for t, _ in msg.fields] == [8, 9, 35, 34, 49, 52, 56, 97, 128, 11, 150, 10]


def test_a_message_sent_while_disconnected_is_stored_and_not_sent():
    session, _ = logged_on()
    session.receive_data(frame("5", 2), T0)
    session.take_outbound()
    seq = session.send_app([(35, "8"), (11, "later")])
    o = session.take_outbound()
    assert o.data == b"" and [s for s, _ in o.store_rows] == [seq]
