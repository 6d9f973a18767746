"""Every number the operator CLI takes is bounded and refused with a message (exit status non-zero,
no traceback), and amounts are ASCII decimals printed in plain notation. Before: a limit of
1e999999 made every order of its account fail with "internal error: Overflow"; a throttle rate of
inf (no throttling), 1e-300 or nan (an IntegrityError traceback), a burst or tier of 20 digits
(OverflowError tracebacks) were accepted; "١٢٣", "+5" and " 5" were amounts and 1e2 printed 1E+2."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from click.testing import CliRunner

from tests.venue_proc import VenueProcess
from tools.cli import main
from venue import registry
from venue.db import make_engine, sqlite_url


@pytest.fixture(scope="module")
def venue(tmp_path_factory):
    v = VenueProcess(tmp_path_factory.mktemp("bounds") / "data").start()
    yield v
    if v.alive:
        v.stop()


def cli(v: VenueProcess, *args: str):
    return CliRunner().invoke(main, [*args, "--data-dir", str(v.data_dir), "--actor", "ops"])


def refused(result, *words: str) -> str:
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    for w in words:
        assert w in result.output, result.output
    return result.output


def registered(v: VenueProcess) -> tuple[set[str], set[str]]:
    async def go():
        engine = make_engine(sqlite_url(v.data_dir))
        try:
            return ({a.account_id for a in await registry.load_accounts(engine)},
                    {s.sender_comp_id for s in await registry.load_sessions(engine)})
        finally:
            await engine.dispose()

    return asyncio.run(go())


ACCOUNT = ("account", "create", "--firm", "DEMO", "--status", "verified", "--expires", "2099-01-01")


@pytest.mark.parametrize("extra, message", [
    (("--max-order-qty", "1e999999"), "plain positive decimal"),
    (("--max-order-notional", "1e999999"), "plain positive decimal"),
    (("--max-order-qty", "9" * 39), "at most 4611686018427387904"),
    (("--max-order-qty", "0." + "0" * 18 + "1"), "more than 18 decimals"),
    (("--max-order-qty", "١٢٣"), "ASCII digits"),
    (("--max-order-qty", "-5"), "plain positive decimal"),
    (("--max-order-qty", "0"), "must be positive"),
    (("--max-order-qty", "nan"), "plain positive decimal"),
    (("--tier", "99999999999999999999"), "tier must be a whole number from 0 to 2147483647"),
    (("--tier", "-1"), "tier must be a whole number from 0"),
])
def test_account_limits_and_tier_are_bounded(venue, extra, message):
    name = f"XACC{abs(hash(extra)) % 10_000}"
    refused(cli(venue, *ACCOUNT[:2], name, *ACCOUNT[2:], *extra), message)
    assert name not in registered(venue)[0]


def test_a_bounded_limit_is_stored_in_plain_notation(venue):
    r = cli(venue, *ACCOUNT[:2], "XACC-OK", *ACCOUNT[2:], "--max-order-qty", "4611686018427387904",
            "--max-order-notional", "0.5")
    assert r.exit_code == 0, r.output
    r = cli(venue, "account", "list")
    line = next(x for x in r.output.splitlines() if "XACC-OK" in x)
    assert "4611686018427387904" in line and "0.5" in line


def test_kyc_tier_is_bounded(venue):
    refused(cli(venue, "account", "kyc", "DEMO1-ACC", "--status", "verified", "--tier", "99999999999999999999"),
            "tier must be a whole number")


def test_a_kyc_expiry_in_the_past_needs_force(venue):
    refused(cli(venue, "account", "kyc", "DEMO2-ACC", "--status", "verified", "--expires", "1999-01-01"),
            "in the past", "--force")
    r = cli(venue, "account", "kyc", "DEMO2-ACC", "--status", "verified", "--expires", "2099-01-01")
    assert r.exit_code == 0, r.output


SESSION = ("session", "create", "--firm", "DEMO", "--unsigned")


@pytest.mark.parametrize("extra, message", [
    (("--throttle-rate", "inf"), "throttle rate must be a finite number"),
    (("--throttle-rate", "nan"), "throttle rate must be a finite number"),
    (("--throttle-rate", "1e-300"), "from 0.01 to 1e+07"),
    (("--throttle-rate", "0"), "from 0.01"),
    (("--throttle-rate", "1e8"), "from 0.01 to 1e+07"),
    (("--throttle-burst", "99999999999999999999"), "throttle burst must be a whole number from 1 to 10000000"),
    (("--throttle-burst", "0"), "throttle burst must be a whole number"),
    (("--heartbeat-max", "99999999999999999999"), "heartbeat max must be a whole number from 1 to 86400"),
])
def test_session_throttle_and_heartbeat_are_bounded(venue, extra, message):
    name = f"XS{abs(hash(extra)) % 10_000}"
    refused(cli(venue, *SESSION[:2], name, *SESSION[2:], *extra), message)
    assert name not in registered(venue)[1]


@pytest.mark.parametrize("comp_id", ["A\x01B", "A|B", "A=B", " DEMO9", "DEMO9 ", "A\nB", "A\x7fB", "", "X" * 65])
def test_session_comp_ids_that_cannot_travel_in_fix_are_refused(venue, comp_id):
    refused(cli(venue, *SESSION[:2], comp_id, *SESSION[2:]))
    assert comp_id not in registered(venue)[1]


def test_session_target_comp_id_is_checked_too(venue):
    refused(cli(venue, *SESSION[:2], "XS-TGT", *SESSION[2:], "--target", "VEN|UE"), "TargetCompID")


@pytest.mark.parametrize("amount", ["١٢٣", "+5", " 5", "5 ", "٥", "1_000"])
def test_amounts_are_ascii_decimals_without_sign_or_spaces(venue, amount):
    refused(cli(venue, "account", "deposit", "DEMO1-ACC", "USDT", amount), "is not an amount")


def test_amounts_print_in_plain_notation(venue):
    r = cli(venue, "account", "deposit", "DEMO1-ACC", "USDT", "1e2")
    assert r.exit_code == 0, r.output
    assert "deposited 100 USDT to DEMO1-ACC" in r.output
    assert "E+" not in r.output
    help_text = cli(venue, "account", "deposit", "--help").output
    assert "ASCII digits" in help_text and "plain notation" in help_text


@pytest.mark.parametrize("rate", ["nan", "inf", "-inf", "0"])
def test_loadgen_refuses_a_rate_that_is_not_a_positive_finite_number(rate):
    r = CliRunner().invoke(main, ["loadgen", "--rate", rate, "--session", "DEMO1"])
    refused(r, "--rate must be a positive finite number")


def test_a_decimal_limit_given_to_the_registry_directly_is_bounded_too():
    with pytest.raises(registry.RegistryError, match="at most"):
        registry._decimal(Decimal("1e999999"), "max order quantity")
