"""The matching core the venue runs is the compiled one (venue/core/engine.pyx, built by
``pip install -e .`` / bin/setup-env), and its row layout is the one venue/core/rows.py documents."""

import importlib.machinery

import pytest

import venue.core.engine as engine
from venue.core import rows
from venue.core.types import Side


def test_the_core_is_the_compiled_extension_module():
    assert engine.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def test_the_compiled_row_layout_matches_rows_fields():
    assert list(engine._ROW_LAYOUT) == list(rows.FIELDS)
    assert list(engine._ROW_LAYOUT.values()) == list(range(len(rows.FIELDS)))


def test_a_row_is_addressed_by_the_index_of_its_field_in_rows_fields():
    o = rows.new_row(7, "c1", "acct", "X", Side.BUY, 10, price=100, display_qty=3)
    assert len(o) == len(rows.FIELDS)
    assert (o[rows.ORDER_ID], o[rows.LEAVES_QTY], o[rows.VISIBLE_QTY], o[rows.LIVE]) == (7, 10, 3, True)
    o[rows.LEAVES_QTY] = 4
    assert o.leaves_qty == 4 and o[-1] is True
    assert o[: rows.LIVE] == [getattr(o, name) for name in rows.FIELDS[: rows.LIVE]]
    assert rows.Order.from_row(o).leaves_qty == 4
    assert rows.row_from_json(rows.row_to_json(o))[:] == o[:]


def test_a_row_refuses_bad_indexes_and_the_wrong_number_of_values():
    o = rows.new_row(1, "c", "a", "X", Side.SELL, 1, price=1)
    with pytest.raises(IndexError):
        o[len(rows.FIELDS)]
    with pytest.raises(TypeError):
        o["qty"]
    with pytest.raises(TypeError):
        engine.Row(1, 2, 3)
