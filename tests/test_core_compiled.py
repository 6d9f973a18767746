"""The matching core the venue runs is the compiled one (venue/core/engine.pyx, built by
``pip install -e .`` / bin/setup-env), and its row layout is the one venue/core/rows.py documents."""

import importlib.machinery

import venue.core.engine as engine
from venue.core import rows


def test_the_core_is_the_compiled_extension_module():
    assert engine.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def test_the_compiled_row_layout_matches_rows_fields():
    assert list(engine._ROW_LAYOUT) == list(rows.FIELDS)
    assert list(engine._ROW_LAYOUT.values()) == list(range(len(rows.FIELDS)))
