"""The tests' FIX client checks every frame it receives by itself (simplefix parses, the client checks).

A fake server on 127.0.0.1 sends hand-made bytes: well-formed streams are read whole however the
bytes are split, and each malformed frame (a wrong CheckSum, a wrong BodyLength, fields out of
order, a bad SendingTime, a MsgSeqNum going backwards without PossDupFlag) stops the test with an
assertion naming the rule, on both the blocking and the asyncio client.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.fix_client import AsyncFixClient, FixClient, Inbound, MalformedMessage, encode

ST = "20260101-12:00:00.000"


def venue_msg(seq: int, msg_type: str = "0", *fields: tuple[int, object], poss_dup: bool = False) -> bytes:
    """A well-formed message from VENUE to C1 (encoded by simplefix)."""
    return encode(msg_type, fields, sender="VENUE", target="C1", seq=seq, sending_time=ST, poss_dup=poss_dup)


def reframed(raw: bytes, *, body_length: int | None = None, checksum: str | None = None) -> bytes:
    """``raw`` (perhaps edited) with its BodyLength and CheckSum set: recomputed unless given."""
    body = raw[raw.index(b"\x0135=") + 1:raw.rindex(b"10=")]
    raw = re.sub(rb"^(8=FIX\.4\.4\x019=)\d+", rb"\g<1>%d" % (len(body) if body_length is None else body_length), raw)
    head = raw[:raw.rindex(b"10=")]
    return head + b"10=%s\x01" % (checksum or f"{sum(head) % 256:03d}").encode()


@contextlib.contextmanager
def fake_venue(*writes: bytes) -> Iterator[int]:
    """A server that accepts one connection, writes ``writes`` one by one, then waits for the client to close."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            for data in writes:
                conn.sendall(data)
            conn.settimeout(10)
            with contextlib.suppress(OSError):
                conn.recv(1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:  # the client has closed by now: the server's last read returns
        thread.join(10)
        server.close()


def test_a_well_formed_stream_is_read_whole_however_it_is_split():
    first, second = venue_msg(1, "A", (98, 0), (108, 30)), venue_msg(2, "8", (11, "X"), (58, "a=b c"))
    resend = venue_msg(1, "4", (123, "Y"), (36, 3), poss_dup=True)  # a lower MsgSeqNum, PossDupFlag=Y
    third = venue_msg(3, "0")
    stream = first + second + resend + third
    with fake_venue(*[stream[i:i + 7] for i in range(0, len(stream), 7)]) as port:
        client = FixClient("127.0.0.1", port, "C1")
        got = [client.recv() for _ in range(4)]
        client.close()
    assert [m.raw for m in got] == [first, second, resend, third]
    assert [m.msg_type for m in got] == ["A", "8", "4", "0"]
    assert got[1].get_str(58) == "a=b c" and got[2].get(43) == b"Y"
    assert client.received == got


GOOD = venue_msg(1, "8", (11, "ORD-1"), (150, "0"))

MALFORMED = {
    "wrong CheckSum": (reframed(GOOD, checksum=f"{(int(GOOD[-4:-1]) + 1) % 256:03d}"),
                       f"the bytes sum to {GOOD[-4:-1].decode()}"),
    "BodyLength too long": (reframed(GOOD, body_length=int(GOOD.split(b"\x01")[1][2:]) + 1),
                            "BodyLength is b'"),
    "BodyLength too short": (reframed(GOOD, body_length=int(GOOD.split(b"\x01")[1][2:]) - 1),
                             "BodyLength is b'"),
    "MsgType not third": (reframed(GOOD.replace(b"\x0135=8\x0149=VENUE", b"\x0149=VENUE\x0135=8")),
                          "fields must start 8, 9, 35"),
    "SendingTime without seconds": (reframed(GOOD.replace(ST.encode(), b"20260101-12:00")),
                                    "SendingTime (52) is b'20260101-12:00'"),
    "SendingTime not a date": (reframed(GOOD.replace(ST.encode(), b"20261301-12:00:00.000")),
                               "SendingTime (52) is b'20261301-12:00:00.000'"),
    "bytes before BeginString": (b"junk=1\x01" + GOOD, "simplefix cannot parse"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_frame_is_an_assertion_naming_the_rule(case):
    bad, says = MALFORMED[case]
    with fake_venue(bad) as port:
        client = FixClient("127.0.0.1", port, "C1")
        with pytest.raises(MalformedMessage) as raised:
            client.recv()
        client.close()
    assert says in str(raised.value), str(raised.value)
    assert isinstance(raised.value, AssertionError) and client.received == []


@pytest.mark.parametrize("later", [2, 3], ids=["lower", "repeated"])
def test_a_msgseqnum_that_does_not_increase_is_an_assertion_unless_possdup(later):
    with fake_venue(venue_msg(1, "A"), venue_msg(3, "0"), venue_msg(later, "0")) as port:
        client = FixClient("127.0.0.1", port, "C1")
        assert client.expect("A").get_int(34) == 1
        assert client.recv().get_int(34) == 3
        with pytest.raises(MalformedMessage, match=f"MsgSeqNum {later} after 3 on this connection"):
            client.recv()
        client.close()


def test_a_message_for_another_session_is_an_assertion():
    other = encode("0", (), sender="VENUE", target="SOMEONE", seq=1, sending_time=ST)
    with fake_venue(other) as port:
        client = FixClient("127.0.0.1", port, "C1")
        with pytest.raises(MalformedMessage, match="SenderCompID/TargetCompID are b'VENUE'/b'SOMEONE'"):
            client.recv()
        client.close()


def test_the_asyncio_client_checks_with_the_same_codec():
    wrong_sum = reframed(venue_msg(4, "0"), checksum="999")

    async def main() -> None:
        done, served = asyncio.Event(), asyncio.get_running_loop().create_future()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            logon = await reader.readuntil(b"\x0110=")
            writer.write(venue_msg(1, "A", (98, 0), (108, 30)) + venue_msg(3, "0") + wrong_sum)
            await writer.drain()
            await done.wait()
            writer.close()
            served.set_result(logon)

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        client = await AsyncFixClient.connect(server.sockets[0].getsockname()[1], sender="C1", target="VENUE")
        logon = await client.logon()
        assert logon.msg_type == "A" and logon.get_int(108) == 30
        assert (await client.recv()).get_int(34) == 3
        with pytest.raises(MalformedMessage, match="CheckSum is b'999'"):
            await client.recv()
        client.close()
        done.set()
        assert (await served).startswith(b"8=FIX.4.4\x019=")
        server.close()
        await server.wait_closed()

    asyncio.run(main())


def test_what_the_client_sends_is_well_formed_by_its_own_checks():
    """The encoder's frames (a resend among them) pass the same checks, as the venue's side."""
    with fake_venue() as port:
        client = FixClient("127.0.0.1", port, "C1")
        frames = [client.frame("D", [(11, "A"), (38, 1)]), client.frame("D", [(11, "B")]),
                  client.frame("4", [(123, "Y"), (36, 3)], seq=1)]
        client.close()
    venue_side = Inbound("VENUE", "C1")
    got = list(venue_side.feed(b"".join(frames)))
    assert [(m.get_int(34), m.get_str(43)) for m in got] == [(1, None), (2, None), (1, "Y")]
    assert got[2].get(122) == got[2].get(52) and client.seq == 3
