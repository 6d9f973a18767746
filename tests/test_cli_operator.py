"""The operator CLI against a real running venue: it refuses accounts, assets and instruments
that do not exist, parses amounts as amounts (bounded), and `instrument list` shows the status
the core has."""

from __future__ import annotations

import asyncio

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from tests.venue_proc import VenueProcess
from tools.cli import main
from venue import operator
from venue.db import make_engine, sqlite_url


@pytest.fixture(scope="module")
def venue(tmp_path_factory):
    v = VenueProcess(tmp_path_factory.mktemp("op") / "data").start()
    yield v
    if v.alive:
        v.stop()


def cli(v: VenueProcess, *args: str):
    return CliRunner().invoke(main, [*args, "--data-dir", str(v.data_dir), "--actor", "ops"])


def requests_about(v: VenueProcess, word: str) -> list[str]:
    """Operator requests that reached the venue and mention ``word``."""
    async def go() -> list[str]:
        engine = make_engine(sqlite_url(v.data_dir))
        try:
            async with engine.connect() as conn:
                rows = (await conn.execute(select(operator.requests.c.payload))).scalars().all()
            return [p for p in rows if word in p]
        finally:
            await engine.dispose()

    return asyncio.run(go())


def refused(result, *words: str) -> str:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    for w in words:
        assert w in result.output, result.output
    return result.output


@pytest.mark.parametrize("args, message", [
    (("account", "deposit", "NOPE-ACC", "USDT", "5"), "unknown account NOPE-ACC"),
    (("account", "withdraw", "NOPE-ACC", "USDT", "5"), "unknown account NOPE-ACC"),
    (("account", "kill-switch", "NOPE-ACC", "on"), "unknown account NOPE-ACC"),
    (("account", "balances", "NOPE-ACC"), "unknown account NOPE-ACC"),
    (("orders", "cancel", "--account", "NOPE-ACC"), "unknown account NOPE-ACC"),
    (("orders", "cancel", "--instrument", "NOPE-X"), "unknown instrument NOPE-X"),
    (("end-of-session", "--instrument", "NOPE-X"), "unknown instrument NOPE-X"),
    (("instrument", "status", "NOPE-X", "halted"), "unknown instrument NOPE-X"),
    (("account", "deposit", "DEMO1-ACC", "NOPE", "5"), "unknown asset NOPE"),
    (("withdraw", "status", "--account", "NOPE-ACC"), "unknown account NOPE-ACC"),
    (("session", "retire-key", "NOPE-S", "k1"), "unknown session NOPE-S"),
])
def test_what_does_not_exist_is_an_error_and_never_reaches_the_venue(venue, args, message):
    refused(cli(venue, *args), message)
    assert requests_about(venue, "NOPE") == []


@pytest.mark.parametrize("amount, message", [
    ("-5", "must be positive, got -5"),
    ("0", "must be positive"),
    ("1e400", "out of range"),
    ("NaN", "is not an amount"),
    ("Infinity", "is not an amount"),
    ("-Infinity", "is not an amount"),
    ("0x10", "is not an amount"),
    ("5" * 60, "at most 40"),
    ("0.0000001", "more than 6 decimals"),
    ("5e25", "beyond the ledger's maximum of 4611686018427.387904 USDT"),
    ("4611686018427.387905", "beyond the ledger's maximum"),
])
def test_amounts_parse_as_amounts_and_are_bounded(venue, amount, message):
    for verb in ("deposit", "withdraw"):
        out = refused(cli(venue, "account", verb, "DEMO1-ACC", "USDT", amount), message)
        assert "No such option" not in out
    assert requests_about(venue, amount) == []


def test_custody_amounts_are_bounded_the_same_way(venue):
    refused(cli(venue, "custody", "topup", "--asset", "BTC", "--amount", "1e400"), "out of range")
    refused(cli(venue, "custody", "topup", "--asset", "BTC", "--amount", "-1"), "must be positive")
    refused(cli(venue, "deposit", "--account", "DEMO1-ACC", "--asset", "BTC", "--amount", "0.000000001"),
            "more than 8 decimals")
    r = CliRunner().invoke(main, ["withdraw", "request", "--account", "DEMO1-ACC", "--asset", "BTC", "--amount",
                                  "99999999999999", "--destination", "d", "--out", str(venue.data_dir / "r.json")])
    refused(r, "beyond the ledger's maximum")


def test_a_valid_deposit_lands_and_shows_in_the_balances(venue):
    def usdt_total() -> str:
        r = cli(venue, "account", "balances", "DEMO2-ACC")
        assert r.exit_code == 0, r.output
        return next(line for line in r.output.splitlines() if "USDT" in line).split("│")[2].strip()

    before = usdt_total()
    r = cli(venue, "account", "deposit", "DEMO2-ACC", "usdt", "12.5")
    assert r.exit_code == 0 and "deposited 12.5 USDT to DEMO2-ACC" in r.output, r.output
    from decimal import Decimal

    assert Decimal(usdt_total()) == Decimal(before) + Decimal("12.5")


def status_in_list(v: VenueProcess, symbol: str) -> str:
    r = cli(v, "instrument", "list")
    assert r.exit_code == 0, r.output
    cells = [c.strip() for c in next(line for line in r.output.splitlines() if symbol in line).split("│")]
    return [c for c in cells if c][-1]


def test_instrument_list_shows_the_status_the_core_has(tmp_path):
    v = VenueProcess(tmp_path / "data").start()
    try:
        assert status_in_list(v, "ETH-USDT") == "open"
        r = cli(v, "instrument", "status", "ETH-USDT", "halted")
        assert r.exit_code == 0, r.output
        assert status_in_list(v, "ETH-USDT") == "halted"
        assert status_in_list(v, "BTC-USDT") == "open"
    finally:
        assert v.stop() == 0
    assert status_in_list(v, "ETH-USDT") == "halted"  # the venue stopped: still what the core has
    v = VenueProcess(tmp_path / "data", env={"VENUE_CORE_SNAPSHOT_EVERY": "1"}).start()
    try:  # restarted (recovered from the journal), resumed, snapshotted: still in step
        assert status_in_list(v, "ETH-USDT") == "halted"
        assert cli(v, "instrument", "status", "ETH-USDT", "open").exit_code == 0
        assert status_in_list(v, "ETH-USDT") == "open"
    finally:
        assert v.stop() == 0


def test_a_refused_withdrawal_names_amounts_in_the_asset_not_in_ledger_units(venue):
    """Before: "withdraw 99999999999000000 USDT: available 9171083000000" (integer ledger units)."""
    out = refused(cli(venue, "account", "withdraw", "DEMO1-ACC", "USDT", "99999999999"))
    import re

    m = re.search(r"withdraw (\S+) USDT: available (\S+) USDT", out)
    assert m is not None, out
    from decimal import Decimal

    assert Decimal(m[1]) == Decimal("99999999999")
    assert Decimal(m[2]) < Decimal("99999999999") and len(m[2].split(".")[0]) < 13, out
