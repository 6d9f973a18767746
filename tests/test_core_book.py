"""One test suite for both books (the fast one and the naive reference), as exchange-core does."""

from __future__ import annotations

import itertools

import pytest

from tests.core_helpers import BOOKS, B, S
from venue.core.book import LEAVES_QTY, ORDER_ID, VISIBLE_QTY, Row, new_row

_ids = itertools.count(1)


def order(side, price, qty, display=None, account="a") -> Row:
    return new_row(next(_ids), "c", account, "X", side, qty, price, display_qty=display)


@pytest.fixture(params=BOOKS, ids=lambda b: b.__name__)
def book(request):
    return request.param()


def test_levels_aggregate_visible_quantity_best_first(book):
    for p, q in [(100, 1), (101, 2), (100, 3), (99, 4)]:
        book.add(order(B, p, q))
    book.add(order(S, 105, 5, display=2))
    assert book.levels(B) == [(101, 2, 1), (100, 4, 2), (99, 4, 1)]
    assert book.levels(S) == [(105, 2, 1)]
    assert book.levels(B, depth=1) == [(101, 2, 1)]
    assert (book.best_bid, book.best_ask) == (101, 105)


def test_head_is_the_earliest_order_at_the_best_price(book):
    first = order(S, 100, 1)
    book.add(order(S, 101, 1))
    book.add(first)
    book.add(order(S, 100, 1))
    assert book.head(S) is first
    assert book.head(B) is None


def test_remove_updates_level_and_best_price(book):
    a, b = order(B, 100, 1), order(B, 99, 2)
    book.add(a)
    book.add(b)
    lvl = book.remove(a)
    assert (lvl.qty, lvl.count) == (0, 0)
    assert book.best_bid == 99 and book.levels(B) == [(99, 2, 1)]
    book.remove(b)
    assert book.best_bid is None and book.levels(B) == []


def test_removed_orders_are_skipped_at_the_head(book):
    orders = [order(S, 100, 1) for _ in range(50)]
    for o in orders:
        book.add(o)
    for o in orders[:-1]:
        book.remove(o)
    assert book.head(S) is orders[-1] and book.levels(S) == [(100, 1, 1)]


def test_full_fill_removes_the_head(book):
    a, b = order(S, 100, 2), order(S, 100, 3)
    book.add(a)
    book.add(b)
    a[LEAVES_QTY] = 0
    book.fill(a, 2)
    assert book.head(S) is b and book.levels(S) == [(100, 3, 1)]


def test_partial_fill_keeps_the_head(book):
    a = order(S, 100, 5)
    book.add(a)
    book.add(order(S, 100, 1))
    a[LEAVES_QTY] = 3
    book.fill(a, 2)
    assert book.head(S) is a and book.levels(S) == [(100, 4, 2)]


def test_iceberg_refresh_goes_to_the_back(book):
    ice, other = order(S, 100, 10, display=3), order(S, 100, 1)
    book.add(ice)
    book.add(other)
    ice[LEAVES_QTY] = 7
    book.fill(ice, 3)
    assert book.head(S) is other and ice[VISIBLE_QTY] == 3
    assert book.levels(S) == [(100, 4, 2)]
    assert list(book.orders(S)) == [other, ice]


def test_reduce_keeps_the_position(book):
    a, b = order(B, 100, 5), order(B, 100, 5)
    book.add(a)
    book.add(b)
    book.reduce(a, 2)
    assert book.head(B) is a and book.levels(B) == [(100, 7, 2)]


def test_dirty_levels_are_reported_once_with_their_final_state(book):
    a = order(B, 100, 5)
    book.add(a)
    book.add(order(S, 105, 1))
    book.remove(a)
    book.add(order(B, 99, 1))
    assert book.take_dirty() == [(B, 100, 0, 0), (S, 105, 1, 1), (B, 99, 1, 1)]
    assert book.take_dirty() == []


def test_orders_iterates_in_priority_order(book):
    xs = [order(B, p, 1) for p in (100, 101, 100, 102)]
    for o in xs:
        book.add(o)
    assert [o[ORDER_ID] for o in book.orders(B)] == [xs[3][ORDER_ID], xs[1][ORDER_ID], xs[0][ORDER_ID], xs[2][ORDER_ID]]


def test_a_long_level_keeps_arrival_order_while_its_front_is_consumed_and_dead_entries_compacted(book):
    # enough fills and cancels to trim the fast book's consumed front and compact its dead entries
    xs = [order(S, 100, 2) for _ in range(300)]
    for o in xs:
        book.add(o)
    for o in xs[1:150:3]:
        book.remove(o)
    live = [o for i, o in enumerate(xs) if not (1 <= i < 150 and (i - 1) % 3 == 0)]
    taken = []
    while len(taken) < 120:
        head = book.head(S)
        head[LEAVES_QTY] = 0
        book.fill(head, 2)
        taken.append(head)
    assert taken == live[:120]
    assert list(book.orders(S)) == live[120:]
    assert book.levels(S) == [(100, 2 * len(live[120:]), len(live[120:]))]


def test_icebergs_keep_cycling_in_arrival_order_through_many_refreshes(book):
    ices = [order(B, 100, 50, display=1) for _ in range(5)]
    for o in ices:
        book.add(o)
    seen = []
    for _ in range(100):  # 100 one-lot refreshes: the front is consumed and trimmed many times over
        head = book.head(B)
        head[LEAVES_QTY] -= 1
        book.fill(head, 1)
        seen.append(head[ORDER_ID])
    assert seen == [o[ORDER_ID] for o in ices] * 20
    assert book.levels(B) == [(100, 5, 5)]
