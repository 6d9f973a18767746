"""The asyncio acceptor over real loopback TCP with a real SQLite store: the Application seams."""

from __future__ import annotations

import asyncio
import socket

from sqlalchemy import Column, Integer, MetaData, String, Table, func, select

from fix.acceptor import Acceptor
from fix.session import SessionConfig
from fix.store import outbound_messages
from sessions.echo import EchoApplication
from tests.fix_client import AsyncFixClient
from tests.test_fix_session import DD
from venue.db import make_engine, sqlite_url

journal_md = MetaData()
journal = Table("test_journal", journal_md, Column("id", Integer, primary_key=True), Column("what", String(50)))


def lookup(begin: str, ours: str, theirs: str) -> SessionConfig | None:
    if begin == "FIX.4.4" and ours == "ISLD" and theirs in ("TW", "TW2", "SLOW"):
        return SessionConfig(sender_comp_id="ISLD", target_comp_id=theirs, logout_timeout=1.0,
                             persist_messages=theirs != "SLOW")
    return None


class Journaling(EchoApplication):
    """Echo plus a journal written in the batch transaction, and a record of the hook order."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.refuse: str | None = None
        self.allowed = True
        self.fail_write = False

    def accept_connection(self, peer_addr):
        self.calls.append("accept_connection")
        return self.allowed

    def on_logon_request(self, session, logon, peer_addr):
        self.calls.append("on_logon_request")
        return self.refuse

    def from_app(self, session, msg):
        self.calls.append("from_app")
        super().from_app(session, msg)

    async def before_flush(self):
        self.calls.append("before_flush")

    async def write_batch(self, conn):
        self.calls.append("write_batch")
        if self.fail_write:
            raise RuntimeError("journal down")
        await conn.execute(journal.insert().values(what="batch"))


async def _start(tmp_path, app=None):
    engine = make_engine(sqlite_url(tmp_path))
    async with engine.begin() as conn:
        await conn.run_sync(journal_md.create_all)
    app = app or Journaling()
    acceptor = Acceptor(lookup, app, engine, dictionary=DD, tick_interval=0.05)
    port = await acceptor.start("127.0.0.1", 0)
    return acceptor, app, engine, port


async def _count(engine, table) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


def _nos(cl: str = "ID") -> tuple:
    return ((11, cl), (21, 1), (38, 100), (40, 1), (54, 1), (55, "INTC"), (60, "20260101-00:00:00"))


def test_echo_reply_is_committed_with_the_journal_before_it_is_sent(tmp_path):
    async def main():
        acceptor, app, engine, port = await _start(tmp_path)
        client = await AsyncFixClient.connect(port)
        assert (await client.logon()).get(35) == b"A"
        await client.send("D", *_nos())
        reply = await client.recv()
        assert reply.get(35) == b"D" and reply.get(11) == b"ID"
        # by the time the bytes arrived, the store row and the journal row were committed
        async with engine.connect() as conn:
            raw = (await conn.execute(select(outbound_messages.c.raw))).scalars().all()
        assert [bytes(r) for r in raw] == [reply.raw]
        assert await _count(engine, journal) >= 1
        i = app.calls.index("from_app")
        assert app.calls[i:i + 3] == ["from_app", "before_flush", "write_batch"]
        client.close()
        await acceptor.stop()
        await engine.dispose()

    asyncio.run(main())


def test_a_failed_batch_commit_sends_nothing_then_is_committed_and_sent_whole_on_a_later_try(tmp_path):
    async def main():
        acceptor, app, engine, port = await _start(tmp_path)
        client = await AsyncFixClient.connect(port)
        await client.logon()
        app.fail_write = True
        await client.send("D", *_nos())
        while app.calls.count("write_batch") < 3:  # failed, and failed again on the retries
            await asyncio.sleep(0.01)
        assert await client.recv(0.2) is None and client.pending == []  # nothing written meanwhile
        assert await _count(engine, outbound_messages) == 0
        app.fail_write = False
        reply = await client.recv()  # the connection was kept; the held-back echo arrives, in sequence
        assert reply.get(35) == b"D" and reply.get(34) == b"2" and reply.get(43) is None
        assert await _count(engine, outbound_messages) == 1
        client.close()
        await acceptor.stop()
        await engine.dispose()

    asyncio.run(main())


def test_accept_connection_false_closes_before_any_byte_is_read(tmp_path):
    async def main():
        acceptor, app, engine, port = await _start(tmp_path)
        app.allowed = False
        client = await AsyncFixClient.connect(port)
        assert await client.closed()
        assert app.calls == ["accept_connection"]
        await acceptor.stop()
        await engine.dispose()

    asyncio.run(main())


def test_refused_logon_gets_a_generic_logout_and_the_connection_closes(tmp_path):
    async def main():
        acceptor, app, engine, port = await _start(tmp_path)
        app.refuse = "signature does not verify"
        client = await AsyncFixClient.connect(port)
        logout = await client.logon()
        assert logout.get(35) == b"5" and logout.get(58) == b"Logon rejected"
        assert await client.closed()
        await acceptor.stop()
        await engine.dispose()

    asyncio.run(main())


def test_unknown_session_and_probes_are_closed_without_reply_and_do_no_harm(tmp_path):
    async def main():
        acceptor, app, engine, port = await _start(tmp_path)
        with socket.create_connection(("127.0.0.1", port)):
            pass  # connect-and-close probe
        stranger = await AsyncFixClient.connect(port, sender="WHO")
        assert await stranger.logon() is None and stranger.pending == []
        client = await AsyncFixClient.connect(port)
        assert (await client.logon()).get(35) == b"A"
        client.close()
        await acceptor.stop()
        await engine.dispose()

    asyncio.run(main())


def test_second_logon_for_a_connected_session_is_closed_and_the_first_keeps_working(tmp_path):
    async def main():
        acceptor, app, engine, port = await _start(tmp_path)
        first = await AsyncFixClient.connect(port)
        await first.logon()
        second = await AsyncFixClient.connect(port)
        assert await second.logon() is None
        await first.send("1", (112, "still"))
        assert (await first.recv()).get(112) == b"still"
        first.close()
        await acceptor.stop()
        await engine.dispose()

    asyncio.run(main())


def test_venue_sends_from_outside_a_callback_and_logs_a_session_out(tmp_path):
    async def main():
        acceptor, app, engine, port = await _start(tmp_path)
        client = await AsyncFixClient.connect(port, sender="TW2")
        await client.logon()
        session = acceptor.find_session("TW2")
        assert session is not None and session.is_logged_on and acceptor.find_session("TW2", "OTHER") is None
        seq = session.send_app([(35, "B"), (148, "venue news"), (33, 0)])
        acceptor.schedule_flush()
        news = await client.recv()
        assert news.get(35) == b"B" and news.get_int(34) == seq
        acceptor.logout(session, "KYC revoked")
        logout = await client.recv()
        assert logout.get(35) == b"5" and logout.get(58) == b"KYC revoked"
        await client.send("5")
        assert await client.closed()
        await acceptor.stop()
        await engine.dispose()

    asyncio.run(main())


def test_stop_logs_out_connected_sessions_and_closes(tmp_path):
    async def main():
        acceptor, app, engine, port = await _start(tmp_path)
        client = await AsyncFixClient.connect(port)
        await client.logon()
        stopping = asyncio.create_task(acceptor.stop(timeout=1.0))
        logout = await client.recv()
        assert logout.get(35) == b"5"
        await client.send("5")
        assert await client.closed()
        await stopping
        await engine.dispose()

    asyncio.run(main())


def test_seqnums_and_resend_survive_an_acceptor_restart(tmp_path):
    async def main():
        acceptor, app, engine, port = await _start(tmp_path)
        client = await AsyncFixClient.connect(port)
        await client.logon(reset=True)
        await client.send("D", *_nos("before-restart"))
        echo = await client.recv()
        assert echo.get_int(34) == 2
        await client.send("5")
        await client.recv()
        assert await client.closed()
        await acceptor.stop()
        await engine.dispose()

        acceptor, app, engine, port = await _start(tmp_path)
        client = await AsyncFixClient.connect(port)
        client.seq = 4  # logon 1, order 2, logout 3 were sent before the restart
        logon = await client.logon(reset=False)
        assert logon.get(35) == b"A" and logon.get_int(34) == 4  # our Logon 1, echo 2, Logout 3
        await client.send("2", (7, 2), (16, 2))
        resent = await client.recv()
        assert resent.get(35) == b"D" and resent.get(43) == b"Y" and resent.get(11) == b"before-restart"
        assert resent.get(122) == echo.get(52)
        client.close()
        await acceptor.stop()
        await engine.dispose()

    asyncio.run(main())


def test_a_client_that_stops_reading_is_closed_as_a_slow_consumer(tmp_path):
    async def main():
        acceptor, app, engine, port = await _start(tmp_path)
        acceptor.max_write_buffer = 256 * 1024
        client = await AsyncFixClient.connect(port, sender="SLOW")
        await client.logon()
        session = acceptor.find_session("SLOW")
        assert acceptor.transport_of(session) is not None and acceptor.write_backlog(session) == 0
        text = "x" * 1000
        for _ in range(200):  # up to 200 x 100 KB; the client reads nothing meanwhile
            for _ in range(100):
                session.send_app([(35, "B"), (148, text), (33, 0)])
            await acceptor.flush()
            if acceptor.transport_of(session) is None:
                break
        assert acceptor.transport_of(session) is None and not session.connected
        client.close()
        await acceptor.stop()
        await engine.dispose()

    asyncio.run(main())


class Exploding(EchoApplication):
    def from_app(self, session, msg):
        raise RuntimeError("bug in the application")


def test_an_application_error_drops_the_connection_and_the_acceptor_keeps_serving(tmp_path):
    async def main():
        acceptor, app, engine, port = await _start(tmp_path, Exploding())
        client = await AsyncFixClient.connect(port)
        await client.logon()
        await client.send("D", *_nos())
        assert await client.closed()
        again = await AsyncFixClient.connect(port)
        assert (await again.logon()).get(35) == b"A"
        again.close()
        await acceptor.stop()
        await engine.dispose()

    asyncio.run(main())
