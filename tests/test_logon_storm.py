"""A logon storm: 1,000 signed sessions logging on at once against the real `venue serve` all get in.

The venue judges each Logon's SendingTime against the moment its bytes arrived, not against the
moment it got round to checking it, so its own backlog during a storm refuses nobody. The window is
narrowed to 1 s here: the venue needs longer than that to get through 1,000 logons (2 to 12 s on
the 2-core machine), so a venue that judged at decision time would refuse (and lock out) the later
ones, as it did with 297 of 1,000 at the default 5 s.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections import Counter

import pytest

from fix.codec import FrameReader, format_timestamp, parse_frame
from fix.message import Message, encode
from tests.venue_proc import VenueProcess
from venue import registry
from venue.access import signing
from venue.db import make_engine, sqlite_url

N = 1000
PROBE = "STORMPROBE"
WINDOW = 1  # [access] logon_window, seconds


def raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"needs {need} file descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


async def register(data_dir, names: list[str]) -> dict[str, tuple[object, str]]:
    """Sessions (entitled to DEMO1-ACC) and one key each, in one registry transaction."""
    keys = {}
    engine = make_engine(sqlite_url(data_dir))
    try:
        async with engine.begin() as conn:
            for name in names:
                key = signing.generate_key()
                kid = signing.key_id_for(key.public_key())
                await registry.create_session(conn, name, firm_id="DEMO", entitled_accounts=["DEMO1-ACC"],
                                              allowed_networks=["127.0.0.1/32"])
                await registry.add_session_key(conn, name, kid, signing.public_key_b64(key.public_key()))
                keys[name] = (key, kid)
    finally:
        await engine.dispose()
    return keys


def logon_bytes(sender: str, key, kid: str) -> bytes:
    st = format_timestamp(time.time(), 3).decode()
    fields = [(35, "A"), (34, 1), (49, sender), (52, st), (56, "VENUE"), (98, 0), (108, 30), (141, "Y"),
              *signing.signed_logon_fields(key, kid, sender, "VENUE", 1, st)]
    return encode(Message.build(fields).fields)


async def answer(reader: asyncio.StreamReader, timeout: float) -> str:
    """The MsgType of the venue's first answer ('A' or '5'), or 'closed' / 'timeout'."""
    frames = FrameReader()
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            data = await asyncio.wait_for(reader.read(4096), left)
        except TimeoutError:
            break
        except OSError:
            return "closed"
        if not data:
            return "closed"
        for frame in frames.feed(data):
            return parse_frame(frame).get_str(35)
    return "timeout"


async def storm(port: int, keys: dict[str, tuple[object, str]]) -> tuple[Counter, float]:
    conns = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in keys))
    t0 = time.monotonic()
    for (_, writer), (name, (key, kid)) in zip(conns, keys.items(), strict=True):
        writer.write(logon_bytes(name, key, kid))  # signed at the moment it is sent
    answers = await asyncio.gather(*(answer(reader, 45.0) for reader, _ in conns))
    elapsed = time.monotonic() - t0
    for _, writer in conns:
        writer.close()
    return Counter(answers), elapsed


@pytest.mark.timeout(120)
def test_a_thousand_signed_sessions_logging_on_at_once_all_get_in(tmp_path):
    raise_fd_limit(4 * N + 200)  # the venue (a child: it inherits the limit) holds a socket and a log per session
    data = tmp_path / "data"
    v = VenueProcess(data, env={"VENUE_ACCESS_LOGON_WINDOW": str(WINDOW)}).start()
    try:
        names = [f"STORM{i:04d}" for i in range(N)]
        keys = asyncio.run(register(data, names + [PROBE]))
        probe_key, probe_kid = keys.pop(PROBE)
        # registered in one transaction: once the venue knows the probe it knows all of them
        deadline = time.monotonic() + 10
        while True:
            probe = v.client(PROBE, logon=False)
            probe.send("A", [(98, 0), (108, 30), (141, "Y")] + signing.signed_logon_fields(
                probe_key, probe_kid, PROBE, "VENUE", 1, st := format_timestamp(time.time(), 3).decode()),
                sending_time=st)
            msg = probe.recv(5)
            probe.close()
            if msg is not None and msg.get_str(35) == "A":
                break
            assert time.monotonic() < deadline, "the venue never picked up the new sessions"
            time.sleep(0.2)
        counts, elapsed = asyncio.run(storm(v.port, keys))
        print(f"\n{N} logons at once: {dict(counts)} in {elapsed:.2f} s")
        assert counts == Counter({"A": N}), counts
    finally:
        v.stop()
