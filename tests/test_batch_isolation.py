"""A failed commit never wedges the venue: whatever one command does, the batch loop refuses that
command alone (its sender told why, logged and audited once) and goes on; nothing acknowledged is
lost across a restart; a commit the database itself fails is retried whole, sending nothing before
it commits and disconnecting nobody.

The finding: a NewOrderSingle whose OrderQty had 5,000 digits reached the journal, whose encoder
refused it; the batch's commit failed, the command stayed in the venue's batch, so every later
commit failed as well and no session could log on or trade until a restart.

Failures are injected three ways: a real value the journal cannot store, sent to the real
``venue serve`` through the operator-request table the CLI writes (the FIX edge now bounds
OrderQty, so the same kind of value comes in that way); a journal codec that refuses marked
commands or their events, in an in-process venue over real TCP; and a database that fails a few
journal writes, in an in-process venue over real TCP.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import event, select

from fix.message import Message, encode
from tests.fix_client import FixClient, now_fix
from tests.venue_proc import VenueProcess, free_port
from tools.wiring import Server
from venue import audit, config, operator
from venue import pipeline as pipeline_module
from venue.core import commands as cmd
from venue.core import events as ev
from venue.core.types import Side
from venue.db import make_engine, sqlite_url
from venue.journal import Codec, _Kind

PX = "57000"


# ---------------------------------------------------------------------------------------- helpers


def fields(msg: Message) -> dict[int, str]:
    return {t: v.decode() for t, v in msg.fields}


def nos(cl: str, side: str, qty: str, price: str, tif: str = "1") -> list[tuple[int, object]]:
    return [(11, cl), (55, "BTC-USDT"), (54, side), (60, now_fix()), (38, qty), (40, "2"), (44, price), (59, tif)]


def frame(c: FixClient, msg_type: str, body: list[tuple[int, object]]) -> bytes:
    """One message as bytes, numbered as ``c.send`` would (to put several in one TCP write)."""
    head = [(35, msg_type), (49, c.sender), (56, c.target), (34, c.seq), (52, now_fix())]
    c.seq += 1
    return encode(Message.build(head + body).fields)


def report(c: FixClient, timeout: float = 5.0) -> dict[int, str]:
    """The next ExecutionReport (heartbeats answered, other admin messages skipped)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        msg = c.recv(left)
        if msg is None:
            break
        if msg.msg_type == "1":
            c.send("0", [(112, msg.get_str(112))])
        elif msg.msg_type == "8":
            return fields(msg)
    raise AssertionError(f"{c.sender}: no ExecutionReport within {timeout} s (connection closed: {c.closed(0.1)})")


def signed_client(data_dir: Path, port: int, sender: str) -> FixClient:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    keys = data_dir / "demo-keys"
    key = load_pem_private_key((keys / f"{sender}.pem").read_bytes(), None)
    c = FixClient("127.0.0.1", port, sender)
    c.logon(key=key, key_id=(keys / f"{sender}.keyid").read_text().strip(), reset=True)
    return c


async def journal_of(data_dir: Path) -> tuple[list, list]:
    """Every journaled command and event of a (stopped) venue's database."""
    from venue.journal import CODEC, journal_table

    engine = make_engine(sqlite_url(data_dir))
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(journal_table.c.commands, journal_table.c.events,
                                              journal_table.c.seq_from).order_by(journal_table.c.cmd_from))).all()
        return ([c for r in rows for c in CODEC.decode(r[0])], [e for r in rows for e in CODEC.decode(r[1], r[2])])
    finally:
        await engine.dispose()


def trade(buyer: FixClient, seller: FixClient, tag: str, qty: str = "0.1") -> None:
    """A buy resting, a sell crossing it: both acknowledged and filled."""
    buyer.send("D", nos(f"{tag}-B", "1", qty, PX))
    assert report(buyer)[150] == "0"
    seller.send("D", nos(f"{tag}-S", "2", qty, PX))
    assert report(seller)[150] == "0"
    assert report(seller)[150] == "F"
    assert report(buyer)[150] == "F"


# ------------------------------------------------------ a real value the journal cannot store


@pytest.fixture
def venue(tmp_path):
    v = VenueProcess(tmp_path / "data").start()
    yield v
    if v.alive:
        v.stop()


def test_a_deposit_too_large_to_record_is_refused_alone_and_everyone_keeps_trading(venue):
    buyer = venue.client("DEMO1", reset=True)

    async def huge_deposit() -> str:
        engine = make_engine(sqlite_url(venue.data_dir))
        try:
            rid = await operator.submit(engine, "deposit", {"account": "DEMO1-ACC", "asset": "USDT",
                                                            "amount": "1" + "0" * 5000}, "e2e")
            with pytest.raises(operator.OperatorError) as refused:
                await operator.wait(engine, rid, 10)
            return str(refused.value)
        finally:
            await engine.dispose()

    reason = asyncio.run(huge_deposit())
    assert "Deposit.amount" in reason and "too large to record" in reason, reason

    # the venue goes on: a session logs on after it, and both trade, acknowledged at once
    seller = venue.client("DEMO2", reset=True)
    trade(buyer, seller, "AFTER")
    held = balances(venue)
    assert held["DEMO1-ACC"]["BTC"]["total"] == "100.1"
    assert venue.stop() == 0
    log = "".join(venue.output)
    assert log.count("Deposit refused") == 1, "refused once, logged once"
    assert "Batch commit failed" not in log

    commands, events = asyncio.run(journal_of(venue.data_dir))
    assert not [c for c in commands if isinstance(c, cmd.Deposit) and c.amount > 10 ** 100]
    filled = {e.cl_ord_id for e in events if isinstance(e, ev.OrderFilled)}
    assert {"AFTER-B", "AFTER-S"} <= filled, "what was acknowledged is journaled"

    async def entries() -> list[audit.AuditEntry]:
        engine = make_engine(sqlite_url(venue.data_dir))
        try:
            return await audit.entries(engine, kind="command.refused")
        finally:
            await engine.dispose()

    (entry,) = asyncio.run(entries())
    assert entry.data["command"] == "Deposit" and "too large to record" in entry.data["reason"]

    # a restart recovers that journal (the refused command never reached it) to the same balances
    venue.start()
    assert balances(venue) == held


def balances(venue: VenueProcess) -> dict:
    async def ask() -> dict:
        engine = make_engine(sqlite_url(venue.data_dir))
        try:
            out = {}
            for account in ("DEMO1-ACC", "DEMO2-ACC"):
                rid = await operator.submit(engine, "balances", {"account": account}, "e2e")
                out[account] = (await operator.wait(engine, rid, 10))["balances"]
            return out
        finally:
            await engine.dispose()

    return asyncio.run(ask())


# ------------------------------------------------- in process: a codec that refuses marked items


class _Refusing(_Kind):
    """The codec's entry for one dataclass, refusing items whose ClOrdID has a prefix (as the JSON
    encoder refuses an integer of 5,000 digits)."""

    __slots__ = ("prefix",)

    def __init__(self, cls: type, tag: str, prefix: str) -> None:
        super().__init__(cls, tag)
        self.prefix = prefix

    def row(self, obj) -> list:
        if str(getattr(obj, "cl_ord_id", "")).startswith(self.prefix):
            raise ValueError(f"cannot store {obj.cl_ord_id}")
        return _Kind.row(self, obj)


def refusing_codec() -> Codec:
    codec = Codec()
    for cls, prefix in ((cmd.NewOrder, "POISON-CMD"), (ev.OrderAccepted, "POISON-EV")):
        kind = _Refusing(cls, codec._by_cls[cls].tag, prefix)
        codec._by_cls[cls] = codec._by_tag[kind.tag] = kind
    return codec


def venue_config(data_dir: Path) -> dict:
    return config.load(overrides={"venue": {"data_dir": str(data_dir)}, "fix": {"port": free_port()}})


async def holdings(v: Server) -> dict:
    return {acc: v.venue.stage.balances(acc) for acc in ("DEMO1-ACC", "DEMO2-ACC")}


def test_commands_that_cannot_be_recorded_are_refused_alone_within_their_batch(tmp_path):
    data_dir = tmp_path / "data"

    async def main() -> None:
        v = Server(venue_config(data_dir))
        port = await v.start()
        v.venue.journal.codec = refusing_codec()
        try:
            buyer = await asyncio.to_thread(signed_client, data_dir, port, "DEMO1")
            seller = await asyncio.to_thread(signed_client, data_dir, port, "DEMO2")
            # one TCP write, one batch: refused before the core / refused after it / good ones around
            burst = b"".join([frame(buyer, "D", nos("POISON-CMD-1", "1", "0.1", PX)),
                              frame(buyer, "D", nos("GOOD-1", "1", "0.1", PX)),
                              frame(buyer, "D", nos("POISON-EV-1", "1", "0.2", "57100")),
                              frame(buyer, "D", nos("GOOD-2", "1", "0.1", PX))])
            await asyncio.to_thread(buyer.sock.sendall, burst)
            got = [await asyncio.to_thread(report, buyer) for _ in range(4)]
            assert [(r[11], r[150]) for r in got] == [("POISON-CMD-1", "8"), ("GOOD-1", "0"),
                                                      ("POISON-EV-1", "8"), ("GOOD-2", "0")]
            assert got[0][58].startswith("refused: NewOrder cannot be recorded"), got[0][58]
            assert got[2][58].startswith("refused: OrderAccepted cannot be recorded"), got[2][58]
            assert v.venue.core.order_by_cl_ord_id("DEMO1-ACC", "POISON-EV-1") is None, "the core was rewound"

            # the seller crosses: had the refused 57100 bid stayed in the book it would fill first
            await asyncio.to_thread(seller.send, "D", nos("SELL-1", "2", "0.3", PX, tif="3"))
            sold = [await asyncio.to_thread(report, seller) for _ in range(4)]
            assert [r[150] for r in sold] == ["0", "F", "F", "C"]  # the IOC remainder expires
            assert {r[31] for r in sold if r[150] == "F"} == {PX}
            assert [(r[11], r[150]) for r in [await asyncio.to_thread(report, buyer) for _ in range(2)]] == [
                ("GOOD-1", "F"), ("GOOD-2", "F")]
            before = await holdings(v)
            buyer.close()
            seller.close()
        finally:
            await v.stop()
        # a restart recovers exactly the state the running venue had: the refused are nowhere
        again = Server(venue_config(data_dir))
        await again.start()
        try:
            assert await holdings(again) == before
            assert again.venue.core.order_by_cl_ord_id("DEMO1-ACC", "POISON-EV-1") is None
        finally:
            await again.stop()
        commands, events = await journal_of(data_dir)
        assert not [c for c in commands if getattr(c, "cl_ord_id", "").startswith("POISON")]
        assert sorted(e.cl_ord_id for e in events if isinstance(e, ev.OrderFilled)) == ["GOOD-1", "GOOD-2",
                                                                                      "SELL-1", "SELL-1"]
        engine = make_engine(sqlite_url(data_dir))
        try:
            refused = [e.data for e in await audit.entries(engine, kind="command.refused")]
        finally:
            await engine.dispose()
        assert [(d["command"], d["cl_ord_id"]) for d in refused] == [("NewOrder", "POISON-CMD-1"),
                                                                   ("NewOrder", "POISON-EV-1")]

    asyncio.run(main())


# ----------------------------------------------- in process: the database fails a few commits


def test_a_commit_the_database_fails_is_retried_whole_sending_nothing_before_and_dropping_no_one(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"

    async def main() -> None:
        v = Server(venue_config(data_dir))
        port = await v.start()
        failures: list[float] = []
        fail = {"left": 0}

        @event.listens_for(v.engine.sync_engine, "before_cursor_execute")
        def flaky(conn, cursor, statement, params, context, executemany):
            if statement.startswith("INSERT INTO core_journal") and fail["left"] > 0:
                fail["left"] -= 1
                failures.append(time.monotonic())
                raise sqlite3.OperationalError("disk I/O error (injected)")

        one_hop = pipeline_module.write_and_commit

        def flaky_one_hop(sqlconn, statements):  # the turn's transaction in one call on the DB thread
            if any(sql.startswith("INSERT INTO core_journal") for sql, _ in statements) and fail["left"] > 0:
                fail["left"] -= 1
                failures.append(time.monotonic())
                raise sqlite3.OperationalError("disk I/O error (injected)")
            one_hop(sqlconn, statements)

        monkeypatch.setattr(pipeline_module, "write_and_commit", flaky_one_hop)

        try:
            buyer = await asyncio.to_thread(signed_client, data_dir, port, "DEMO1")
            seller = await asyncio.to_thread(signed_client, data_dir, port, "DEMO2")
            fail["left"] = 3
            await asyncio.to_thread(buyer.send, "D", nos("HELD-B", "1", "0.1", PX))
            while not failures:  # the buyer's batch has failed once: the seller's joins the retry
                await asyncio.sleep(0.005)
            await asyncio.to_thread(seller.send, "D", nos("HELD-S", "2", "0.1", PX))
            b = await asyncio.to_thread(report, buyer)
            arrived = time.monotonic()
            assert (b[11], b[150]) == ("HELD-B", "0")
            assert len(failures) == 3 and arrived > failures[-1], "nothing is sent before its commit"
            assert [(r[11], r[150]) for r in [await asyncio.to_thread(report, seller) for _ in range(2)]] == [
                ("HELD-S", "0"), ("HELD-S", "F")]
            assert (await asyncio.to_thread(report, buyer))[150] == "F"
            # nobody was disconnected, and every message came in sequence (no gap, no resend)
            for c in (buyer, seller):
                seqs = [int(m.get_str(34)) for m in c.received]
                assert seqs == list(range(1, len(seqs) + 1)), (c.sender, seqs)
                assert not any(m.get_str(43) == "Y" for m in c.received)
            await asyncio.to_thread(trade, buyer, seller, "LATER")
            buyer.close()
            seller.close()
        finally:
            await v.stop()
        _, events = await journal_of(data_dir)
        filled = [e.cl_ord_id for e in events if isinstance(e, ev.OrderFilled)]
        assert sorted(filled) == ["HELD-B", "HELD-S", "LATER-B", "LATER-S"]
        again = Server(venue_config(data_dir))  # recovery checks the journal is contiguous
        await again.start()
        await again.stop()

    asyncio.run(main())


def test_the_operator_answer_is_not_lost_when_its_commit_fails(tmp_path):
    """The answer and its audit entry ride the retried write set: the CLI gets it once it commits."""
    data_dir = tmp_path / "data"

    async def main() -> None:
        v = Server(venue_config(data_dir))
        await v.start()
        fail = {"left": 2}

        @event.listens_for(v.engine.sync_engine, "before_cursor_execute")
        def flaky(conn, cursor, statement, params, context, executemany):
            if statement.startswith("UPDATE mailbox") and fail["left"] > 0:
                fail["left"] -= 1
                raise sqlite3.OperationalError("database is locked (injected)")

        try:
            rid = await operator.submit(v.engine, "deposit", {"account": "DEMO1-ACC", "asset": "USDT",
                                                              "amount": "5"}, "ops")
            assert (await operator.wait(v.engine, rid, 10))["events"] == ["LedgerEntry"]
            assert fail["left"] == 0
            assert v.venue.stage.balances("DEMO1-ACC")["USDT"][0] == (10_000_000 + 5) * 10 ** 6
        finally:
            await v.stop()
        deposits = [c for c in (await journal_of(data_dir))[0] if isinstance(c, cmd.Deposit) and c.ref == f"operator:{rid}"]
        assert len(deposits) == 1, "journaled once, though written three times"

    asyncio.run(main())


def test_a_journal_row_names_the_field_it_cannot_store():
    from venue.journal import CODEC, JournalEncodeError

    huge = cmd.NewOrder(ts=1, account="A", instrument="BTC-USDT", cl_ord_id="X", side=Side.BUY,
                        qty=10 ** 5000 - 1)
    with pytest.raises(JournalEncodeError, match=r"NewOrder\.qty is an integer of about 5000 digits"):
        CODEC.encode_row(huge)
    assert CODEC.decode(CODEC.pack([CODEC.encode_row(cmd.Tick(ts=5))])) == [cmd.Tick(ts=5)]


def test_an_audit_entry_that_cannot_be_stored_as_given_is_stored_with_a_note_and_the_batch_commits(tmp_path):
    data_dir = tmp_path / "data"

    async def main() -> None:
        v = Server(venue_config(data_dir))
        await v.start()
        try:
            v.venue.audit("test.unrecordable", actor="A\x00B", subject="S" * 500, details={"n": 10 ** 5000})
            rid = await operator.submit(v.engine, "deposit", {"account": "DEMO1-ACC", "asset": "USDT",
                                                              "amount": "5"}, "ops")
            assert (await operator.wait(v.engine, rid, 10))["events"] == ["LedgerEntry"]
            (entry,) = await audit.entries(v.engine, kind="test.unrecordable")
            assert entry.actor == "A\\x00B" and entry.subject == "S" * 128
            assert entry.data["keys"] == ["n"] and "4300 digits" in entry.data["unrecordable"]
        finally:
            await v.stop()

    asyncio.run(main())


def test_a_command_that_breaks_the_core_midway_is_refused_and_its_half_done_effects_undone(tmp_path, monkeypatch):
    """The stage raises after the core booked the order: the venue rebuilds the core without it."""
    from venue.core.stage import RiskLedgerStage

    on_events = RiskLedgerStage.on_events

    def breaking(self, events):
        if any(isinstance(e, ev.OrderAccepted) and e.cl_ord_id == "BOOM-1" for e in events):
            raise RuntimeError("stage bug")
        return on_events(self, events)

    monkeypatch.setattr(RiskLedgerStage, "on_events", breaking)
    data_dir = tmp_path / "data"

    async def main() -> None:
        v = Server(venue_config(data_dir))
        port = await v.start()
        try:
            buyer = await asyncio.to_thread(signed_client, data_dir, port, "DEMO1")
            seller = await asyncio.to_thread(signed_client, data_dir, port, "DEMO2")
            burst = b"".join([frame(buyer, "D", nos("BOOM-1", "1", "0.1", "57100")),
                              frame(buyer, "D", nos("FINE-1", "1", "0.1", PX))])
            await asyncio.to_thread(buyer.sock.sendall, burst)
            got = [await asyncio.to_thread(report, buyer) for _ in range(2)]
            assert [(r[11], r[150]) for r in got] == [("BOOM-1", "8"), ("FINE-1", "0")]
            assert got[0][58] == "refused: internal error: RuntimeError", got[0][58]  # details: the log
            await asyncio.to_thread(seller.send, "D", nos("SELL-2", "2", "0.2", PX, tif="3"))
            sold = [await asyncio.to_thread(report, seller) for _ in range(3)]
            assert [(r[150], r.get(31)) for r in sold] == [("0", None), ("F", PX), ("C", None)]
            before = await holdings(v)
            buyer.close()
            seller.close()
        finally:
            await v.stop()
        again = Server(venue_config(data_dir))
        await again.start()
        try:
            assert await holdings(again) == before
        finally:
            await again.stop()

    asyncio.run(main())


def test_a_session_whose_rows_the_database_refuses_is_cut_off_alone_and_the_others_trade_on(tmp_path):
    """Its outbound MsgSeqNum is beyond what SQLite can store (2**64): every commit carrying that
    session's rows fails, so after a few tries the acceptor finds that session, drops its output
    and disconnects it; everyone else's messages of the same batch are committed and sent."""
    data_dir = tmp_path / "data"

    async def main() -> None:
        v = Server(venue_config(data_dir))
        port = await v.start()
        try:
            buyer = await asyncio.to_thread(signed_client, data_dir, port, "DEMO1")
            seller = await asyncio.to_thread(signed_client, data_dir, port, "DEMO2")
            await asyncio.to_thread(seller.send, "D", nos("REST-S", "2", "0.1", PX))
            assert (await asyncio.to_thread(report, seller))[150] == "0"
            v.acceptor.find_session("DEMO2", "VENUE").next_sender = 2 ** 64  # SQLite: "int too large"
            await asyncio.to_thread(buyer.send, "D", nos("CROSS-B", "1", "0.1", PX))
            got = [await asyncio.to_thread(report, buyer) for _ in range(2)]
            assert [(r[11], r[150]) for r in got] == [("CROSS-B", "0"), ("CROSS-B", "F")]
            assert await asyncio.to_thread(seller.closed), "the session the database refuses is cut off"
            await asyncio.to_thread(buyer.send, "D", nos("NEXT-B", "1", "0.1", PX))
            assert (await asyncio.to_thread(report, buyer))[150] == "0", "the others trade on"
            seqs = [int(m.get_str(34)) for m in buyer.received]
            assert seqs == list(range(1, len(seqs) + 1))
            before = await holdings(v)
            buyer.close()
            seller.close()
        finally:
            await v.stop()
        again = Server(venue_config(data_dir))
        await again.start()
        try:
            assert await holdings(again) == before, "what was acknowledged is all in the journal"
        finally:
            await again.stop()

    asyncio.run(main())
