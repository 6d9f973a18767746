"""Framing, parsing and timestamps (fix.codec)."""

from __future__ import annotations

import calendar

import pytest

from fix.codec import FrameReader, format_timestamp, parse_frame, parse_timestamp
from fix.message import encode

HB = encode([(35, b"0"), (34, b"2"), (49, b"TW"), (52, b"20260101-00:00:00"), (56, b"ISLD")])
TR = encode([(35, b"1"), (34, b"3"), (49, b"TW"), (52, b"20260101-00:00:00"), (56, b"ISLD"), (112, b"X")])


def test_a_frame_split_into_single_bytes_comes_out_once_complete():
    reader = FrameReader()
    out = []
    for i in range(len(HB)):
        out += reader.feed(HB[i:i + 1])
    assert out == [HB]
    assert reader.buffered == 0


def test_several_frames_in_one_read_come_out_in_order():
    assert FrameReader().feed(HB + TR + HB) == [HB, TR, HB]


def test_garbage_between_frames_is_skipped_and_recorded():
    reader = FrameReader()
    assert reader.feed(b"noise" + HB + b"\r\nmore noise" + TR) == [HB, TR]
    assert [g.reason for g in reader.garbled] == ["bytes outside a frame", "bytes outside a frame"]


def test_bad_checksum_is_dropped_and_the_next_frame_survives():
    bad = HB[:-4] + b"%03d\x01" % ((int(HB[-4:-1]) + 1) % 256)
    reader = FrameReader()
    assert reader.feed(bad + TR) == [TR]
    assert reader.garbled[0].reason == "CheckSum mismatch"


def _with_body_length(frame: bytes, delta: int) -> bytes:
    """``frame`` with its BodyLength off by ``delta`` (CheckSum left as it was: the framing decides)."""
    declared = parse_frame(frame).get(9)
    return frame.replace(b"\x019=" + declared + b"\x01", b"\x019=%d\x01" % (int(declared) + delta), 1)


def test_body_length_too_short_drops_that_frame_alone():
    bad = _with_body_length(HB, -20)
    reader = FrameReader()
    assert reader.feed(bad + TR) == [TR]
    assert [(g.raw, g.reason) for g in reader.garbled] == [(bad, "BodyLength too short")]


def test_body_length_too_long_swallows_the_message_it_runs_into_and_the_one_after_is_read():
    """QuickFIX's framing: the frame runs to the first CheckSum field after the declared end."""
    bad = _with_body_length(HB, 20)  # the declared end lands inside TR
    reader = FrameReader()
    assert reader.feed(bad + TR + HB) == [HB]
    assert [(g.raw, g.reason) for g in reader.garbled] == [(bad + TR, "BodyLength too long")]


def test_body_length_too_long_by_a_few_bytes_inside_its_own_trailer_still_runs_to_the_next_checksum():
    bad = _with_body_length(HB, 3)  # the declared end lands inside "10=xxx"
    reader = FrameReader()
    assert reader.feed(bad + TR + HB) == [HB]
    assert reader.garbled[0].raw == bad + TR


def test_body_length_too_long_waits_for_the_declared_bytes_while_nothing_follows():
    bad = _with_body_length(HB, 500)
    reader = FrameReader()
    assert reader.feed(bad) == []
    assert reader.garbled == [] and reader.buffered == len(bad)


def test_body_length_far_too_long_does_not_hold_a_complete_next_message_hostage():
    """Declared end far past the buffer: once the next message is complete the two are dropped
    together, and what follows is read at once instead of waiting for bytes that never come."""
    bad = _with_body_length(HB, 100_000)
    reader = FrameReader()
    assert reader.feed(bad) == []
    assert reader.feed(TR[:-3]) == []  # the next message is not complete yet: keep waiting
    assert reader.feed(TR[-3:] + HB) == [HB]
    assert [(g.raw, g.reason) for g in reader.garbled] == [(bad + TR, "BodyLength too long")]
    assert reader.buffered == 0


@pytest.mark.parametrize("delta", [-20, -1, 1, 3, 20, 100_000])
def test_framing_of_a_wrong_body_length_does_not_depend_on_how_the_bytes_arrive(delta):
    stream = _with_body_length(HB, delta) + TR + HB + TR
    whole = FrameReader()
    expected = (whole.feed(stream), [g.raw for g in whole.garbled])
    assert expected[0] and expected[1]
    for cut in range(1, len(stream)):
        reader = FrameReader()
        got = reader.feed(stream[:cut]) + reader.feed(stream[cut:])
        assert (got, [g.raw for g in reader.garbled]) == expected, cut


def test_third_tag_not_msgtype_is_garbled():
    body = b"34=2\x0135=0\x0149=TW\x0152=20260101-00:00:00\x0156=ISLD\x01"
    frame = b"8=FIX.4.4\x019=%d\x01" % len(body) + body
    frame += b"10=%03d\x01" % (sum(frame) & 0xFF)
    reader = FrameReader()
    assert reader.feed(frame + HB) == [HB]
    assert reader.garbled[0].reason == "third tag is not MsgType (35)"


def test_non_numeric_body_length_is_garbled():
    reader = FrameReader()
    assert reader.feed(b"8=FIX.4.4\x019=abc\x0135=0\x0110=000\x01" + HB) == [HB]
    assert reader.garbled[0].reason == "BodyLength is not a number"


def test_non_numeric_tag_fails_parsing():
    body = b"35=0\x0134=2\x014garbled9=TW\x01"
    frame = b"8=FIX.4.4\x019=%d\x01" % len(body) + body
    frame += b"10=%03d\x01" % (sum(frame) & 0xFF)
    assert FrameReader().feed(frame) == [frame]  # framing is fine...
    with pytest.raises(ValueError):
        parse_frame(frame)  # ...but the session treats it as garbled


def test_parse_keeps_values_as_bytes_in_wire_order():
    msg = parse_frame(TR)
    assert [t for t, _ in msg.fields] == [8, 9, 35, 34, 49, 52, 56, 112, 10]
    assert msg.get(112) == b"X" and msg.get_int(34) == 3


def test_data_field_containing_soh_is_kept_whole():
    frame = encode([(35, b"A"), (34, b"1"), (95, b"5"), (96, b"a\x01b=c")])
    reader = FrameReader()
    assert reader.feed(frame) == [frame]
    assert parse_frame(frame).get(96) == b"a\x01b=c"


def test_oversized_garbage_does_not_grow_the_buffer_forever():
    reader = FrameReader(max_frame=1000)
    reader.feed(b"8=FIX.4.4\x019=999999\x0135=0\x01" + b"x" * 5000)
    assert reader.buffered == 0
    assert reader.garbled[0].reason == "frame too long"
    reader.feed(b"y" * 20000)
    assert reader.buffered <= 4  # only a possible partial "8=FIX" is kept


def test_timestamps_have_milliseconds_by_default():
    t = calendar.timegm((2026, 1, 2, 3, 4, 5)) + 0.678
    assert format_timestamp(t) == b"20260102-03:04:05.678"
    assert format_timestamp(t, 0) == b"20260102-03:04:05"
    assert format_timestamp(t, 6).startswith(b"20260102-03:04:05.67")
    assert len(format_timestamp(t, 9)) == 27


def test_timestamp_parsing_accepts_seconds_and_fractions_and_rejects_junk():
    base = calendar.timegm((2026, 1, 2, 3, 4, 5))
    assert parse_timestamp(b"20260102-03:04:05") == base
    assert parse_timestamp(b"20260102-03:04:05.250") == base + 0.25
    for junk in (b"", b"2026010203:04:05", b"20261302-03:04:05", b"20260102-03:04:05.", b"20260102-03:04:05.x"):
        assert parse_timestamp(junk) is None


def test_tag_sequence_is_kept_only_when_the_raw_parts_match_the_fields_one_to_one():
    plain = parse_frame(encode([(35, b"D"), (34, b"2"), (11, b"a")]))
    assert plain.shape == (8, 9, 35, 34, 11, 10)
    with_eq = parse_frame(encode([(35, b"D"), (34, b"2"), (58, b"a=b")]))
    assert with_eq.shape is None and with_eq.get(58) == b"a=b"
    with_data = parse_frame(encode([(35, b"D"), (34, b"2"), (95, b"3"), (96, b"x\x01y")]))
    assert with_data.shape is None and with_data.get(96) == b"x\x01y"
