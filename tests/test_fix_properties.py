"""Property tests: random and mutated byte streams never break the codec or the session."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fix.codec import FrameReader, parse_frame
from fix.message import encode
from fix.session import Session, SessionConfig
from sessions.echo import EchoApplication
from tests.test_fix_session import DD, T0, frame, nos

VALID = [
    frame("0", 2),
    frame("1", 3, (112, "PING")),
    nos(4, "A"),
    frame("D", 5, (11, "B"), (21, 1), (40, 1), (54, 1), (55, "X")),  # missing 60: a Reject
    frame("4", 6, (36, 9), (123, "Y")),
    frame("2", 9, (7, 1), (16, 0)),
    frame("*", 10),
    frame("8", 11, (37, "x")),
    frame("0", 30),  # too high: a ResendRequest and a queued message
]
SETTINGS = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points:
        out.append(data[last:p])
        last = p
    out.append(data[last:])
    return out


@SETTINGS
@given(st.binary(max_size=3000))
def test_random_bytes_never_raise_and_the_buffer_stays_bounded(data):
    reader = FrameReader(max_frame=4096)
    for frame_ in reader.feed(data):
        try:
            parse_frame(frame_)
        except ValueError:
            pass  # a garbled frame is refused with ValueError: the allowed outcome
    assert reader.buffered <= len(data)
    assert reader.buffered <= 4096 + 64


@SETTINGS
@given(
    st.lists(st.sampled_from(VALID), min_size=1, max_size=8),
    st.lists(st.binary(max_size=30).filter(lambda b: b"8=FIX" not in b and b"10=" not in b), max_size=8),
    st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
def test_valid_frames_survive_any_chunking_and_interleaved_garbage(frames, garbage, cuts):
    stream = b""
    for i, f in enumerate(frames):
        stream += (garbage[i] if i < len(garbage) else b"") + f
    reader = FrameReader()
    got = []
    for chunk in _chunks(stream, cuts):
        got += reader.feed(chunk)
    assert got == frames


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    buf = bytearray(data)
    for pos, value in edits:
        if not buf:
            break
        i = pos % len(buf)
        if value < 256:
            buf[i] = value
        elif value < 300:
            del buf[i]
        else:
            buf.insert(i, value % 256)
    return bytes(buf)


def _logged_on_session() -> Session:
    session = Session(SessionConfig(sender_comp_id="ISLD", target_comp_id="TW"), dictionary=DD,
                      application=EchoApplication())
    session.connection_made(T0)
    session.receive_data(frame("A", 1, (98, 0), (108, 30)), T0)
    session.take_outbound()
    return session


@SETTINGS
@given(
    st.lists(st.sampled_from(VALID), min_size=1, max_size=10),
    st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 400)), max_size=6),
    st.lists(st.integers(min_value=0, max_value=10_000), max_size=10),
    st.lists(st.floats(min_value=0, max_value=200), max_size=4),
)
def test_session_survives_mutated_streams_and_stays_consistent(frames, edits, cuts, ticks):
    session = _logged_on_session()
    stream = _mutate(b"".join(frames), edits)
    sent: list[int] = []
    stored: dict[int, bytes] = {}
    last_target = session.next_target
    now = T0
    for chunk in _chunks(stream, cuts):
        session.receive_data(chunk, now)
        while session.resend_wanted is not None:
            b, e = session.resend_wanted
            session.complete_resend([(s, r) for s, r in stored.items() if b <= s <= e], now)
        for t in ticks:
            session.tick(T0 + t)
        o = session.take_outbound()
        stored.update(o.store_rows)
        reader = FrameReader()
        out_frames = reader.feed(o.data)
        assert not reader.garbled and reader.buffered == 0  # every byte we emit is a valid frame
        for f in out_frames:
            m = parse_frame(f)
            if m.get(43) != b"Y":  # new messages (not resends/gap fills) are numbered 1, 2, 3...
                sent.append(m.get_int(34))
        if session.connected:
            assert session.next_target >= last_target  # the inbound seqnum never goes backwards
            last_target = session.next_target
        else:
            break
    assert sent == list(range(2, 2 + len(sent)))
    assert session.next_sender == 2 + len(sent)


@SETTINGS
@given(st.binary(max_size=600))
def test_session_never_raises_on_random_bytes_before_or_after_logon(data):
    fresh = Session(SessionConfig(sender_comp_id="ISLD", target_comp_id="TW"), dictionary=DD,
                    application=EchoApplication())
    fresh.connection_made(T0)
    fresh.receive_data(data, T0)
    fresh.tick(T0 + 100)
    session = _logged_on_session()
    session.receive_data(data + encode([(35, b"0"), (34, b"2")]), T0)
    session.tick(T0 + 100)
    session.take_outbound()


@SETTINGS
@given(st.binary(max_size=3000))
def test_byte_sum_equals_the_plain_sum(data):
    from fix.codec import byte_sum

    assert byte_sum(data) == sum(data)
