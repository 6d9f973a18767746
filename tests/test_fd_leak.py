"""Sessions that log on and off do not leave open files behind in the venue process.

Each session's FIX message log is a file; it is open while the session is connected and closed
when the session disconnects (reopened in append mode on its next connection). The real venue
runs as a child process; its descriptors are counted in ``/proc/<pid>/fd``.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from tests.fix_client import FixClient
from tests.venue_proc import VenueProcess
from venue import registry
from venue.access import signing
from venue.db import make_engine, sqlite_url

SESSIONS = 200
SLACK = 10  # descriptors the venue may open for its own reasons (pooled DB connections...)

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def create_sessions(data_dir: Path, names: list[str]) -> dict[str, object]:
    """Register the sessions in the venue's registry, each with its own key; returns the keys."""
    keys = {name: signing.generate_key() for name in names}

    async def run() -> None:
        engine = make_engine(sqlite_url(data_dir))
        try:
            async with engine.begin() as conn:
                for name, key in keys.items():
                    await registry.create_session(conn, name, firm_id="DEMO", entitled_accounts=["DEMO1-ACC"])
                    await registry.add_session_key(conn, name, signing.key_id_for(key.public_key()),
                                                   signing.public_key_b64(key.public_key()))
        finally:
            await engine.dispose()

    asyncio.run(run())
    return keys


def log_on_and_off(v: VenueProcess, name: str, key) -> None:
    c = FixClient("127.0.0.1", v.port, name)
    try:
        c.logon(key=key, key_id=signing.key_id_for(key.public_key()), reset=True)
        c.send("5", [(58, "bye")])
        c.expect("5")
        assert c.closed(), f"{name}: the venue did not close the connection after the Logout"
    finally:
        c.close()


def settled_fds(pid: int, limit: int, timeout: float = 10.0) -> int:
    """The descriptor count once it is at most ``limit`` (closes finish just after the Logout),
    or the last count seen when ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    count = open_fds(pid)
    while count > limit and time.monotonic() < deadline:
        time.sleep(0.05)
        count = open_fds(pid)
    return count


def test_sessions_logging_on_and_off_leave_no_open_descriptors(tmp_path):
    data = tmp_path / "data"
    VenueProcess(data).start().stop()  # schema and demo firm
    names = [f"FD{i:03d}" for i in range(SESSIONS + 5)]
    keys = create_sessions(data, names)
    v = VenueProcess(data).start()
    try:
        pid = v.proc.pid
        for name in names[:5]:  # warm up: pooled connections, first log directory...
            log_on_and_off(v, name, keys[name])
        before = settled_fds(pid, 0, timeout=0.5)
        for name in names[5:]:
            log_on_and_off(v, name, keys[name])
        after = settled_fds(pid, before + SLACK)
        assert after <= before + SLACK, (
            f"{SESSIONS} sessions logged on and off: {before} -> {after} open descriptors")
        logs = sorted((data / "fixlog").glob("*FD*.messages.log"))
        assert len(logs) == SESSIONS + 5, "every session still has its message log"
        # a session that comes back appends to the same log file (reopened on the next connection)
        size = logs[0].stat().st_size
        log_on_and_off(v, names[0], keys[names[0]])
        assert settled_fds(pid, before + SLACK) <= before + SLACK
        deadline = time.monotonic() + 5
        while logs[0].stat().st_size <= size and time.monotonic() < deadline:
            time.sleep(0.05)
        text = logs[0].read_bytes()
        assert len(text) > size and text.count(b"35=A\x01") >= 4, "both connections are in the one log"
    finally:
        v.stop()
