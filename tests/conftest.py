"""Shared fixtures."""

from __future__ import annotations

import pytest

from tests.core_helpers import PAIRINGS


@pytest.fixture(scope="session", params=PAIRINGS, ids=str)
def pairing(request):
    """Every pairing of {compiled core, reference core} x {fast book, naive book}: the core suites
    that take it run on all four (session scope: a pairing is an immutable value, and hypothesis
    tests may use it)."""
    return request.param
