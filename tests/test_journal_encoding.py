"""The journal's binary rows: every command and event round-trips exactly, huge integers are still
refused by name, and journals written by older venues (JSON rows) still recover, also with binary
batches after them."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from venue.core import commands as cmd
from venue.core import events as ev
from venue.core.assets import Assets
from venue.core.engine import Core
from venue.core.risk import AccountRisk
from venue.core.stage import RiskLedgerStage
from venue.core.types import CancelReason, OrdType, RejectCode, Side, TimeInForce
from venue.db import make_engine
from venue.journal import BINARY_MAGIC, CODEC, Journal, JournalEncodeError, journal_table

from .test_ledger_support import FEES, btc_usdt


def _classes(module) -> list[type]:
    return [obj for name, obj in sorted(vars(module).items())
            if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == module.__name__]


COMMANDS, EVENTS = _classes(cmd), _classes(ev)
# integers as large as anything the venue journals (and past 2**63), text of any code point
st.register_type_strategy(int, st.integers(-(2**80), 2**80))
st.register_type_strategy(str, st.text(max_size=30))


def test_every_command_and_event_class_is_covered() -> None:
    assert len(COMMANDS) >= 16 and len(EVENTS) >= 16
    assert {cmd.NewOrder, cmd.Deposit, cmd.SetAccountRisk} <= set(COMMANDS)
    assert {ev.OrderAccepted, ev.OrderFilled, ev.LedgerEntry, ev.Trade} <= set(EVENTS)


@pytest.mark.parametrize("cls", COMMANDS + EVENTS, ids=lambda c: c.__name__)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_command_and_event_round_trips_exactly_in_the_binary_rows(cls, data) -> None:
    items = data.draw(st.lists(st.from_type(cls), min_size=1, max_size=4))
    if cls in EVENTS:
        first = items[0].seq
        items = [dataclasses.replace(x, seq=first + i) for i, x in enumerate(items)]
        blob = CODEC.encode(items)
        assert CODEC.decode(blob, first) == items
    else:
        blob = CODEC.encode(items)
        assert CODEC.decode(blob) == items
    assert zlib.decompress(blob)[:2] == BINARY_MAGIC


def test_values_of_enum_subclasses_where_plain_values_are_declared_round_trip() -> None:
    cancelled = ev.OrderCancelled(7, 12, 1, "c1", "c1", "A1", "BTC-USDT", Side.BUY, 100, 5, 2, 3, 300,
                                  CancelReason.KILL_SWITCH, "", "S1")
    rejected = ev.OrderRejected(8, 13, "c2", "A1", "BTC-USDT", Side.SELL, 5, None, RejectCode.UNKNOWN_ORDER,
                                "no", "S1")
    plain_side = cmd.NewOrder(1, "A", "BTC-USDT", "x", "2", 5)  # a str where the enum is declared
    assert CODEC.decode(CODEC.encode([cancelled, rejected]), 7) == [cancelled, rejected]
    (back,) = CODEC.decode(CODEC.encode([plain_side]))
    assert back == plain_side and back.side is Side.SELL


def test_an_integer_too_large_to_record_is_refused_by_name_and_a_long_text_is_not() -> None:
    with pytest.raises(JournalEncodeError, match=r"Deposit\.amount is an integer of about 5000 digits"):
        CODEC.encode_row(cmd.Deposit(1, "A", "USDT", 10**5000 - 1))
    with pytest.raises(JournalEncodeError, match=r"LedgerEntry\.postings holds an integer .* too large to record"):
        CODEC.encode_row(ev.LedgerEntry(1, 2, 3, "deposit", "r", (("A", "USDT", 10**5000),), ()))
    long_text = cmd.Deposit(1, "A", "USDT", 5, "x" * 10_000)
    assert CODEC.decode(CODEC.encode([long_text])) == [long_text]
    big_but_fine = cmd.Deposit(1, "A", "USDT", 10**3000)
    assert CODEC.decode(CODEC.encode([big_but_fine])) == [big_but_fine]


# ------------------------------------------------------------------- journals of older venues

# rows exactly as the venue wrote them before the binary encoding (JSON, one array per blob)
OLD_COMMANDS = (
    b'[["Deposit",1,"alice","USDT",1000000000,"seed"],["Deposit",1,"bob","BTC",10000000,"seed"],'
    b'["NewOrder",2,"alice","BTC-USDT","a1","1",30,"2",5000000,"1",null,null,false,null,null,"ALICE"]]'
)
NEW_COMMANDS = [cmd.NewOrder(3, "bob", "BTC-USDT", "b1", Side.SELL, 10, OrdType.LIMIT, 5_000_000,
                             TimeInForce.GTC, session="BOB")]


def _core() -> Core:
    return Core([btc_usdt()], hooks=RiskLedgerStage({a: AccountRisk(a) for a in ("alice", "bob")}, Assets(), FEES))


def _old_events_blob(events) -> bytes:
    """Events as the JSON rows of an older venue (tag, then the fields after seq; enums by value)."""
    def value(v):
        return v.value if hasattr(v, "value") else [value(x) for x in v] if isinstance(v, tuple) else v
    rows = [[type(e).__name__, *[value(getattr(e, f.name)) for f in dataclasses.fields(e)[1:]]] for e in events]
    return zlib.compress(json.dumps(rows, separators=(",", ":")).encode(), 1)


def test_a_journal_of_json_rows_followed_by_binary_batches_recovers_exactly(tmp_path) -> None:
    reference = _core()
    old_commands = CODEC.decode(zlib.compress(OLD_COMMANDS))
    assert [type(c).__name__ for c in old_commands] == ["Deposit", "Deposit", "NewOrder"]
    old_events = reference.process_batch(old_commands)
    new_events = reference.process_batch(NEW_COMMANDS)
    assert any(isinstance(e, ev.Trade) for e in new_events)

    async def main() -> None:
        engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'venue.db'}")
        try:
            journal = await Journal.open(engine)
            async with engine.begin() as conn:  # the batch an older venue wrote
                await conn.execute(journal_table.insert().values(
                    cmd_from=0, cmd_to=3, seq_from=1, seq_to=len(old_events), commands=zlib.compress(OLD_COMMANDS),
                    events=_old_events_blob(old_events)))
            journal = await Journal.open(engine)
            assert (journal.cmd_count, journal.seq) == (3, len(old_events))
            async with engine.begin() as conn:  # and one this venue writes after it
                await journal.write(conn, NEW_COMMANDS, new_events)
            core = await Journal.recover(engine, [btc_usdt()],
                                         RiskLedgerStage({a: AccountRisk(a) for a in ("alice", "bob")}, Assets(),
                                                         FEES), verify_events=True)
            assert core.snapshot() == reference.snapshot()
            assert await journal.events_since(0) == old_events + new_events
        finally:
            await engine.dispose()

    asyncio.run(main())
