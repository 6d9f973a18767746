"""Hypothesis properties of the core over random command sequences, held by every pairing of core
(compiled, reference) and book (fast, naive); and every pairing gives the compiled core's events."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.core_helpers import COMPILED, PAIRINGS, SYM, B, S, instrument
from tests.test_ledger_property import _fund, new_stage, random_command
from tests.test_ledger_property import instruments as ledger_instruments
from tests.test_ledger_support import DAY, T0
from tools.journal_worker import random_commands, worker_instruments
from venue.core.book import ORDER_ID
from venue.core.commands import CancelOrder, MassCancel, NewOrder, ReplaceOrder, SetAccountStp
from venue.core.events import (
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    OrderReplaced,
    OrderRestated,
    OrderTriggered,
    Trade,
)
from venue.core.types import OrdType, StpMode, TimeInForce

ACCOUNTS = ("a", "b", "c")
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

side_st = st.sampled_from((B, S))
price_st = st.integers(95, 105)
qty_st = st.integers(1, 10)
acct_st = st.sampled_from(ACCOUNTS)
stp_st = st.one_of(st.none(), st.sampled_from(list(StpMode)))

new_st = st.builds(
    lambda acct, side, qty, price, kind, stp: ("new", acct, side, qty, price, kind, stp),
    acct_st, side_st, qty_st, price_st,
    st.sampled_from(("limit", "limit", "limit", "market", "ioc", "fok", "post", "iceberg", "stop", "stoplimit")),
    stp_st,
)
cancel_st = st.builds(lambda acct, k: ("cancel", acct, k), acct_st, st.integers(0, 30))
replace_st = st.builds(lambda acct, k, qty, price: ("replace", acct, k, qty, price), acct_st, st.integers(0, 30),
                       qty_st, st.one_of(st.none(), price_st))
other_st = st.one_of(
    st.builds(lambda acct, m: ("stp", acct, m), acct_st, st.sampled_from(list(StpMode))),
    st.builds(lambda acct, side: ("mass", acct, side), acct_st, st.one_of(st.none(), side_st)),
)
ops_st = st.lists(st.one_of(new_st, new_st, new_st, cancel_st, replace_st, other_st), min_size=1, max_size=60)


def to_commands(ops, stop_side=None) -> list:
    """Turn drawn ops into commands (``stop_side``: force every stop onto one side)."""
    cmds = []
    issued: list[tuple[str, str]] = []
    for i, op in enumerate(ops):
        ts = 1000 + i
        if op[0] == "new":
            _, acct, side, qty, price, kind, stp = op
            cl = f"{acct}{i}"
            kw: dict = {"price": price, "stp": stp}
            if kind == "market":
                kw = {"ord_type": OrdType.MARKET, "stp": stp}
            elif kind == "ioc":
                kw["tif"] = TimeInForce.IOC
            elif kind == "fok":
                kw["tif"] = TimeInForce.FOK
            elif kind == "post":
                kw["post_only"] = True
            elif kind == "iceberg":
                kw["display_qty"] = max(1, qty // 3)
            elif kind in ("stop", "stoplimit"):
                side = stop_side or side
                kw = {"ord_type": OrdType.STOP, "stop_price": price, "stp": stp}
                if kind == "stoplimit":
                    kw = {"ord_type": OrdType.STOP_LIMIT, "stop_price": price, "price": price, "stp": stp}
            issued.append((acct, cl))
            cmds.append(NewOrder(ts, acct, SYM, cl, side, qty, **kw))
        elif op[0] == "cancel" and issued:
            acct, cl = issued[op[2] % len(issued)]
            cmds.append(CancelOrder(ts, acct, SYM, f"x{i}", orig_cl_ord_id=cl))
        elif op[0] == "replace" and issued:
            acct, cl = issued[op[2] % len(issued)]
            new_cl = f"{acct}r{i}"
            issued.append((acct, new_cl))
            cmds.append(ReplaceOrder(ts, acct, SYM, new_cl, op[3], price=op[4], orig_cl_ord_id=cl))
        elif op[0] == "stp":
            cmds.append(SetAccountStp(ts, op[1], op[2]))
        elif op[0] == "mass":
            cmds.append(MassCancel(ts, f"m{i}", account=op[1], side=op[2]))
    return cmds


def run(cmds, pairing=COMPILED):
    core = pairing([instrument()])
    per_cmd = []
    for cmd in cmds:
        pre_bids = [o[ORDER_ID] for o in core.book(SYM).orders(B)]
        pre_asks = [o[ORDER_ID] for o in core.book(SYM).orders(S)]
        per_cmd.append((cmd, core.process(cmd), pre_bids, pre_asks))
        book = core.book(SYM)
        assert book.best_bid is None or book.best_ask is None or book.best_bid < book.best_ask, "crossed book"
    return core, per_cmd


@SETTINGS
@given(ops_st)
def test_book_at_rest_is_never_crossed(pairing, ops):
    run(to_commands(ops), pairing)  # asserted after every command


@SETTINGS
@given(ops_st)
def test_quantity_is_conserved_per_order(pairing, ops):
    core, per_cmd = run(to_commands(ops), pairing)
    qty, filled, closed = {}, defaultdict(int), {}
    trade_qty = {}
    for _, events, _, _ in per_cmd:
        for e in events:
            t = type(e)
            if t is OrderAccepted:
                qty[e.order_id] = e.qty
            elif t in (OrderReplaced, OrderRestated):
                qty[e.order_id] = e.qty
            elif t is OrderFilled:
                filled[e.order_id] += e.last_qty
                trade_qty.setdefault(e.trade_id, []).append(e.last_qty)
            elif t is Trade:
                trade_qty.setdefault(e.trade_id, []).append(e.qty)
            elif t is OrderCancelled:
                closed[e.order_id] = e.cancelled_qty
            elif t is OrderExpired:
                closed[e.order_id] = e.expired_qty
    for oid, q in qty.items():
        o = core.order(oid)
        rest = o.leaves_qty if o is not None else closed.get(oid, 0)
        assert q == filled[oid] + rest, (oid, q, filled[oid], rest)
    assert all(len(v) == 3 and len(set(v)) == 1 for v in trade_qty.values())


@SETTINGS
@given(ops_st)
def test_price_time_priority(pairing, ops):
    _, per_cmd = run(to_commands(ops), pairing)
    for cmd, events, pre_bids, pre_asks in per_cmd:
        if type(cmd) is not NewOrder:
            continue
        acc = [e for e in events if type(e) is OrderAccepted]
        if not acc or cmd.stop_price is not None:
            continue
        taker = acc[0].order_id
        trades = [e for e in events if type(e) is Trade and e.taker_order_id == taker]
        prices = [t.price for t in trades]
        buy = cmd.side == B
        assert prices == sorted(prices, reverse=not buy)
        if cmd.price is not None:
            assert all(p <= cmd.price if buy else p >= cmd.price for p in prices)
        queue = pre_asks if buy else pre_bids
        firsts = list(dict.fromkeys(t.maker_order_id for t in trades))
        positions = [queue.index(m) for m in firsts]
        assert positions == sorted(positions)


@SETTINGS
@given(ops_st)
def test_fok_is_all_or_nothing(pairing, ops):
    cmds = to_commands(ops)
    _, per_cmd = run(cmds, pairing)
    for cmd, events, _, _ in per_cmd:
        if type(cmd) is NewOrder and cmd.tif is TimeInForce.FOK:
            acc = [e for e in events if type(e) is OrderAccepted]
            if acc:
                got = sum(e.last_qty for e in events if type(e) is OrderFilled and e.order_id == acc[0].order_id)
                assert got in (0, cmd.qty)


@SETTINGS
@given(ops_st)
def test_post_only_never_takes(pairing, ops):
    _, per_cmd = run(to_commands(ops), pairing)
    post = set()
    for cmd, events, _, _ in per_cmd:
        for e in events:
            if type(e) is OrderAccepted and type(cmd) is NewOrder and cmd.post_only:
                post.add(e.order_id)
            if type(e) is OrderFilled and e.aggressor:
                assert e.order_id not in post


@SETTINGS
@given(ops_st)
def test_no_self_trade_unless_the_taker_allows_it(pairing, ops):
    cmds = to_commands(ops)
    _, per_cmd = run(cmds, pairing)
    default: dict[str, StpMode] = {}
    mode: dict[int, StpMode] = {}
    for cmd, events, _, _ in per_cmd:
        if type(cmd) is SetAccountStp:
            default[cmd.account] = cmd.stp
        for e in events:
            if type(e) is OrderAccepted:
                mode[e.order_id] = cmd.stp if cmd.stp is not None else default.get(cmd.account, StpMode.EXPIRE_TAKER)
            if type(e) is Trade and e.maker_account == e.taker_account:
                assert mode[e.taker_order_id] is StpMode.NONE


@SETTINGS
@given(ops_st, side_st)
def test_stops_trigger_in_order_and_none_is_left_behind(pairing, ops, stop_side):
    core, per_cmd = run(to_commands(ops, stop_side), pairing)
    stop_px = {}
    requeued = set()  # replaced with a new queue position: FIFO by id does not apply
    for _, events, _, _ in per_cmd:
        placed_before = set(stop_px)  # stops already resting when this command ran
        for e in events:
            if type(e) is OrderAccepted and e.stop_price is not None:
                stop_px[e.order_id] = e.stop_price
            if type(e) is OrderReplaced and not e.kept_priority:
                requeued.add(e.order_id)
        trig = [(stop_px[e.order_id], e.order_id) for e in events if type(e) is OrderTriggered]
        px = [p for p, _ in trig]
        assert px == sorted(px, reverse=stop_side == S)
        for p in set(px):
            ids = [i for q, i in trig if q == p and i not in requeued]
            assert ids == sorted(ids)
        prices = [e.price for e in events if type(e) is Trade]
        if prices:
            for o in core.open_orders():  # the final state: only stops placed before this command count
                if o.stop_price is not None and not o.triggered and o.order_id in placed_before:
                    assert o.stop_price > max(prices) if o.side == B else o.stop_price < min(prices)


@settings(SETTINGS, max_examples=120)
@given(ops_st)
def test_every_pairing_gives_the_compiled_cores_events_and_state(ops):
    cmds = to_commands(ops)
    compiled, expected = run(cmds)
    for pairing in PAIRINGS[1:]:
        core, got = run(cmds, pairing)
        assert [x[1] for x in got] == [x[1] for x in expected], pairing
        assert core.snapshot() == compiled.snapshot(), pairing
        assert core.open_orders() == compiled.open_orders(), pairing


@settings(SETTINGS, max_examples=40)
@given(st.integers(0, 2**32 - 1))
def test_every_pairing_gives_the_compiled_cores_events_on_streams_of_every_command_type(seed):
    # banded instruments, stops, GTD/DAY expiry, kill switch, halts, mass cancels, STP modes
    cmds = list(random_commands(seed, 400))
    compiled = COMPILED(worker_instruments())
    expected = compiled.process_batch(cmds)
    for pairing in PAIRINGS[1:]:
        core = pairing(worker_instruments())
        assert core.process_batch(cmds) == expected, pairing
        assert core.snapshot() == compiled.snapshot(), pairing


@settings(SETTINGS, max_examples=30)
@given(st.data())
def test_every_pairing_with_the_ledger_stage_as_hooks_gives_the_compiled_cores_events(data):
    # the hooks path: pre-trade risk (pre_new, pre_replace), stops re-valued at their trigger
    # (on_trigger), ledger postings numbered into the sequence (on_events), deposits (apply)
    stage = new_stage()
    compiled = COMPILED(ledger_instruments(), stage)
    cmds: list = []
    _fund(cmds.append, T0 + DAY // 2)
    expected = compiled.process_batch(cmds)
    ts = T0 + DAY // 2
    for _ in range(data.draw(st.integers(1, 60), label="commands")):
        ts += data.draw(st.integers(0, 4 * 3600), label="dt") * 10**9
        cmds.append(random_command(data, ts, {i.symbol: i for i in compiled.instruments()}, compiled.open_orders()))
        expected += compiled.process(cmds[-1])
    for pairing in PAIRINGS[1:]:
        other_stage = new_stage()
        core = pairing(ledger_instruments(), other_stage)
        assert core.process_batch(cmds) == expected, pairing
        assert other_stage.snapshot() == stage.snapshot(), pairing
        assert core.snapshot() == compiled.snapshot(), pairing
