"""MarketDataBook: sequencing, incrementals, depth views and conflation (sans-I/O)."""

from __future__ import annotations

import random

from venue.core.events import BookLevel, Trade, TradingStatusChanged
from venue.core.types import Side, TradingStatus
from venue.marketdata import (
    Action,
    ClientBook,
    ConflatingQueue,
    EntryType,
    MarketData,
    MarketDataBook,
    MDUpdate,
    StatusUpdate,
)


def _random_events(rng: random.Random, n: int, instrument: str = "BTC-USD") -> list[object]:
    """Synthetic BookLevel/Trade events: levels appear, change and vanish at random."""
    levels: dict[tuple[Side, int], int] = {}
    events: list[object] = []
    seq = 0
    for _ in range(n):
        seq += 1
        if rng.random() < 0.1:
            events.append(Trade(seq, seq, seq, instrument, rng.randint(90, 110), rng.randint(1, 5), Side.BUY,
                                1, 2, "a", "b"))
            continue
        side = rng.choice([Side.BUY, Side.SELL])
        price = rng.randint(80, 100) if side is Side.BUY else rng.randint(100, 120)
        qty = 0 if rng.random() < 0.35 else rng.randint(1, 50)
        levels[(side, price)] = qty
        events.append(BookLevel(seq, seq, instrument, side, price, qty, 1 if qty else 0))
    return events


def test_level_actions_are_new_change_delete_with_gapless_seq() -> None:
    book = MarketDataBook("X")
    ups = []
    for ev in [BookLevel(1, 1, "X", Side.BUY, 100, 5, 1), BookLevel(2, 2, "X", Side.BUY, 100, 7, 2),
               BookLevel(3, 3, "X", Side.BUY, 100, 0, 0)]:
        ups += book.apply(ev)
    assert [(u.action, u.qty, u.seq) for u in ups] == [(Action.NEW, 5, 1), (Action.CHANGE, 7, 2),
                                                         (Action.DELETE, 0, 3)]
    assert all(u.entry is EntryType.BID for u in ups)


def test_unchanged_or_absent_level_emits_nothing_and_keeps_seq() -> None:
    book = MarketDataBook("X")
    book.apply(BookLevel(1, 1, "X", Side.SELL, 100, 5, 1))
    assert book.apply(BookLevel(2, 2, "X", Side.SELL, 100, 5, 1)) == []
    assert book.apply(BookLevel(3, 3, "X", Side.SELL, 101, 0, 0)) == []
    assert book.seq == 1


def test_trade_takes_a_sequence_number_and_is_last_trade() -> None:
    book = MarketDataBook("X")
    book.apply(BookLevel(1, 1, "X", Side.SELL, 100, 5, 1))
    (u,) = book.apply(Trade(2, 2, 77, "X", 100, 3, Side.BUY, 1, 2, "a", "b"))
    assert (u.entry, u.seq, u.trade_id, u.price, u.qty) == (EntryType.TRADE, 2, 77, 100, 3)
    assert book.snapshot().last_trade is u


def test_status_change_is_reported_unsequenced() -> None:
    md = MarketData(["X"])
    (u,) = md.apply_events([TradingStatusChanged(1, 1, "X", TradingStatus.HALTED)])
    assert isinstance(u, StatusUpdate) and u.status is TradingStatus.HALTED
    assert md.books["X"].seq == 0 and md.books["X"].snapshot().status is TradingStatus.HALTED


def test_snapshot_then_incrementals_rebuild_full_book_after_random_run() -> None:
    rng = random.Random(7)
    md = MarketData()
    events = _random_events(rng, 5000)
    md.apply_events(events[:1500])
    client = ClientBook(md.books["BTC-USD"].snapshot())
    for u in md.apply_events(events[1500:]):
        if isinstance(u, MDUpdate) and u.depth == 0:
            client.apply(u)
    book = md.books["BTC-USD"]
    assert client.seq == book.seq
    assert client.levels(Side.BUY) == book.levels(Side.BUY)
    assert client.levels(Side.SELL) == book.levels(Side.SELL)
    assert book.levels(Side.BUY)  # the run left a non-empty book


def test_depth_view_client_tracks_top_n_exactly_after_every_event() -> None:
    rng = random.Random(11)
    md = MarketData(["BTC-USD"])
    book = md.books["BTC-USD"]
    events = _random_events(rng, 3000)
    md.apply_events(events[:300])
    client = ClientBook(book.snapshot(depth=3))
    for ev in events[300:]:
        for u in md.apply_events([ev]):
            if isinstance(u, MDUpdate) and u.depth == 3:
                client.apply(u)
        assert client.levels(Side.BUY) == book.levels(Side.BUY, 3)
        assert client.levels(Side.SELL) == book.levels(Side.SELL, 3)
        assert len(client.bids) <= 3 and len(client.asks) <= 3


def test_client_book_detects_a_gap() -> None:
    book = MarketDataBook("X")
    client = ClientBook(book.snapshot())
    book.apply(BookLevel(1, 1, "X", Side.BUY, 100, 5, 1))
    (u2,) = book.apply(BookLevel(2, 2, "X", Side.BUY, 101, 5, 1))
    try:
        client.apply(u2)
    except ClientBook.GapError:
        return
    raise AssertionError("gap not detected")


def test_slow_subscriber_is_conflated_to_a_snapshot_and_ends_exact() -> None:
    rng = random.Random(3)
    md = MarketData(["BTC-USD"])
    book = md.books["BTC-USD"]
    queue = ConflatingQueue(limit=50)
    client = ClientBook(book.snapshot())
    events = _random_events(rng, 4000)
    snapshots = 0
    for i in range(0, len(events), 100):
        queue.push(u for u in md.apply_events(events[i:i + 100]) if not isinstance(u, MDUpdate) or u.depth == 0)
        if (i // 100) % 5 == 0:  # drains only every fifth batch: falls behind
            stale, pending = queue.drain()
            for name in stale:
                client.reset(md.books[name].snapshot())
                snapshots += 1
            for u in pending:
                if isinstance(u, MDUpdate):
                    client.apply(u)
    stale, pending = queue.drain()
    for name in stale:
        client.reset(md.books[name].snapshot())
    for u in pending:
        if isinstance(u, MDUpdate):
            client.apply(u)
    assert queue.conflations > 0 and snapshots > 0
    assert client.levels(Side.BUY) == book.levels(Side.BUY)
    assert client.levels(Side.SELL) == book.levels(Side.SELL)
    assert client.seq == book.seq


def test_conflating_queue_keeps_status_updates() -> None:
    queue = ConflatingQueue(limit=2)
    status = StatusUpdate("X", TradingStatus.HALTED, 1, 1)
    ups = [MDUpdate("X", 0, i, Action.NEW, EntryType.BID, 100 + i, 1, i, i) for i in range(1, 5)]
    queue.push([status, *ups])
    stale, pending = queue.drain()
    assert stale == ["X"] and pending == [status]


def _core_run(seed: int, n: int):
    """A real Core traded at random: limit orders around 100, cancels, replaces, some market orders."""
    from decimal import Decimal

    from venue.core import commands as cmd
    from venue.core.engine import Core
    from venue.core.instruments import Instrument
    from venue.core.types import OrdType, TimeInForce

    rng = random.Random(seed)
    core = Core([Instrument("BTC-USD", "BTC", "USDT", Decimal("0.5"), Decimal("0.001"))])
    accounts = ["A1", "A2", "A3"]
    live: list[tuple[str, str]] = []

    def commands():
        for i in range(n):
            acct = rng.choice(accounts)
            r = rng.random()
            if r < 0.6 or not live:
                side = rng.choice([Side.BUY, Side.SELL])
                px = rng.randint(90, 105) if side is Side.BUY else rng.randint(95, 110)
                cl = f"o{i}"
                live.append((acct, cl))
                yield cmd.NewOrder(i, acct, "BTC-USD", cl, side, rng.randint(1, 20), price=px,
                                   display_qty=rng.choice([None, None, 2]))
            elif r < 0.8:
                a, cl = live.pop(rng.randrange(len(live)))
                yield cmd.CancelOrder(i, a, "BTC-USD", f"x{i}", orig_cl_ord_id=cl)
            elif r < 0.9:
                a, cl = rng.choice(live)
                yield cmd.ReplaceOrder(i, a, "BTC-USD", f"r{i}", rng.randint(1, 30), price=rng.randint(92, 108),
                                       orig_cl_ord_id=cl)
                live.remove((a, cl))
                live.append((a, f"r{i}"))
            else:
                yield cmd.NewOrder(i, acct, "BTC-USD", f"m{i}", rng.choice([Side.BUY, Side.SELL]),
                                   rng.randint(1, 10), ord_type=OrdType.MARKET, tif=TimeInForce.IOC)

    return core, commands()


def test_real_core_random_run_snapshot_plus_incrementals_match_core_book() -> None:
    core, commands = _core_run(21, 6000)
    md = MarketData(["BTC-USD"])
    book = md.books["BTC-USD"]
    full = client3 = None
    trades = 0
    for i, c in enumerate(commands):
        events = core.process(c)
        trades += sum(isinstance(e, Trade) for e in events)
        for u in md.apply_events(events):
            if isinstance(u, MDUpdate):
                if u.depth == 0 and full is not None:
                    full.apply(u)
                elif u.depth == 3 and client3 is not None:
                    client3.apply(u)
        if i == 1000:
            full = ClientBook(book.snapshot())
            client3 = ClientBook(book.snapshot(depth=3))
    for side in (Side.BUY, Side.SELL):
        core_levels = [(p, q) for p, q, _n in core.book_levels("BTC-USD", side)]
        assert book.levels(side) == core_levels
        assert full.levels(side) == core_levels
        assert client3.levels(side) == core_levels[:3]
    assert trades > 100 and core_levels


def test_book_seeded_from_core_levels_matches_core() -> None:
    core, commands = _core_run(5, 500)
    for c in commands:
        core.process(c)
    book = MarketDataBook("BTC-USD")
    book.load(core.book_levels("BTC-USD", Side.BUY), core.book_levels("BTC-USD", Side.SELL))
    assert book.levels(Side.BUY) == [(p, q) for p, q, _ in core.book_levels("BTC-USD", Side.BUY)]
    assert book.levels(Side.SELL) == [(p, q) for p, q, _ in core.book_levels("BTC-USD", Side.SELL)]


def test_batch_nets_level_changes_and_keeps_trades() -> None:
    book = MarketDataBook("X")
    book.apply(BookLevel(1, 1, "X", Side.SELL, 101, 9, 1))
    ups = book.apply_batch([
        BookLevel(2, 2, "X", Side.BUY, 100, 5, 1),   # appears...
        BookLevel(3, 2, "X", Side.BUY, 100, 0, 0),   # ...and goes: nothing to say
        BookLevel(4, 2, "X", Side.SELL, 101, 4, 1),  # changed twice: one CHANGE, final qty
        Trade(5, 2, 1, "X", 101, 5, Side.BUY, 1, 2, "a", "b"),
        BookLevel(6, 2, "X", Side.SELL, 101, 2, 1),
    ])
    assert [(u.entry, u.action, u.price, u.qty, u.seq) for u in ups] == [
        (EntryType.OFFER, Action.CHANGE, 101, 2, 2), (EntryType.TRADE, Action.NEW, 101, 5, 3)]
    assert book.levels(Side.BUY) == [] and book.levels(Side.SELL) == [(101, 2)]


def test_property_any_batching_keeps_every_view_exact() -> None:
    """However events are cut into batches, a client of the full book and one of the top 2
    levels, starting from a snapshot at any point, end exactly at the venue's book."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    level = st.tuples(st.sampled_from([Side.BUY, Side.SELL]), st.integers(95, 105), st.integers(0, 3))
    batches = st.lists(st.lists(st.one_of(level, st.just("trade")), max_size=8), max_size=25)

    @settings(max_examples=80, deadline=None)
    @given(batches, st.integers(0, 25))
    def check(cut: list[list[object]], snap_at: int) -> None:
        md = MarketData(["X"])
        book = md.books["X"]
        book.view(2)
        full = top2 = None
        seq = 0
        for i, batch in enumerate(cut):
            if i == snap_at:
                full, top2 = ClientBook(book.snapshot()), ClientBook(book.snapshot(2))
            events = []
            for item in batch:
                seq += 1
                if item == "trade":
                    events.append(Trade(seq, seq, seq, "X", 100, 1, Side.BUY, 1, 2, "a", "b"))
                else:
                    side, price, qty = item
                    events.append(BookLevel(seq, seq, "X", side, price, qty, 1 if qty else 0))
            for u in md.apply_events(events):
                if isinstance(u, MDUpdate):
                    client = full if u.depth == 0 else top2
                    if client is not None:
                        client.apply(u)
        if full is None:
            full, top2 = ClientBook(book.snapshot()), ClientBook(book.snapshot(2))
        for side in (Side.BUY, Side.SELL):
            assert full.levels(side) == book.levels(side)
            assert top2.levels(side) == book.levels(side, 2)
        assert full.seq == book.seq

    check()
