"""``venue bench dictionary``: messages per second through ``DataDictionary.validate``.

Workloads, each validated against the venue's dictionary (config/FIX44.xml + venue-fix44.xml):
``nos`` a typical limit NewOrderSingle (17 fields, no group) — the hot path; ``nos-parties``
the same with a two-instance Parties group (the full, group-aware pass); ``reject`` a
NewOrderSingle with a bad enum value (the full pass down to the failing field). Every
iteration builds a fresh ``Message`` from the parsed field list, as the session does per
inbound frame. ``ref:parse_fields`` (splitting the same NewOrderSingle frame into fields, the
step before validation) is timed alongside as a reference for the machine's load.
"""

from __future__ import annotations

import json
import statistics
import time

import click

from fix.message import Message, encode, parse_fields

_TS = b"20260101-12:00:00.123"
_NOS = [
    (35, b"D"), (34, b"2"), (49, b"CLIENT"), (52, _TS), (56, b"VENUE"), (1, b"ACC1"),
    (11, b"ord-000001"), (38, b"1.5"), (40, b"2"), (44, b"50000.25"), (54, b"1"),
    (55, b"BTC-USD"), (59, b"1"), (60, _TS),
]
_PARTIES = [(453, b"2"), (448, b"TRADER1"), (447, b"D"), (452, b"11"), (448, b"DESK7"), (447, b"D"), (452, b"12")]


def workloads() -> dict[str, list[tuple[int, bytes]]]:
    bad = [(t, b"Z" if t == 40 else v) for t, v in _NOS]
    return {
        "nos": parse_fields(encode(_NOS)),
        "nos-parties": parse_fields(encode(_NOS[:7] + _PARTIES + _NOS[7:])),
        "reject": parse_fields(encode(bad)),
    }


def run(n: int, runs: int) -> dict[str, dict[str, float]]:
    from tools.cmd_dictionary import load_venue_dictionary

    dd = load_venue_dictionary()
    validate = dd.validate
    out: dict[str, dict[str, float]] = {}
    for name, fields in workloads().items():
        expect_ok = name != "reject"
        if (validate(Message(fields)) is None) != expect_ok:
            raise click.ClickException(f"workload {name} does not validate as expected")
        rates = []
        for _ in range(runs):
            t0 = time.perf_counter()
            for _ in range(n):
                validate(Message(fields))
            rates.append(n / (time.perf_counter() - t0))
        out[name] = {"median_msgs_per_s": statistics.median(rates), "best_msgs_per_s": max(rates),
                     "median_us_per_msg": 1e6 / statistics.median(rates)}
    # Reference on the same machine and load: splitting the NewOrderSingle frame into fields.
    frame = encode(_NOS)
    rates = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(n):
            parse_fields(frame)
        rates.append(n / (time.perf_counter() - t0))
    out["ref:parse_fields"] = {"median_msgs_per_s": statistics.median(rates), "best_msgs_per_s": max(rates),
                               "median_us_per_msg": 1e6 / statistics.median(rates)}
    return out


@click.command("dictionary")
@click.option("-n", "--messages", "n", default=100_000, show_default=True, help="Messages per run.")
@click.option("--runs", default=5, show_default=True, help="Runs per workload (median reported).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def command(n: int, runs: int, as_json: bool) -> None:
    """Validation throughput of the FIX data dictionary (messages/s)."""
    result = run(n, runs)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    for name, r in result.items():
        click.echo(f"{name:<12} {r['median_msgs_per_s']:>10,.0f} msgs/s median "
                   f"({r['median_us_per_msg']:.2f} us/msg, best {r['best_msgs_per_s']:,.0f})")
