"""``venue loadgen`` and ``venue bench e2e`` against a real venue (``venue serve`` in a child process).

The venue's data directory is prepared as ``venue bench e2e`` prepares it: two signed order-entry
sessions LG1 (buys) and LG2 (sells) with funded accounts and throttles above the load.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.venue_proc import ROOT, VenueProcess
from tools.bench_e2e import KEYS, prepare
from tools.cli import main
from tools.loadgen import FIELDS, Flow


@pytest.fixture(scope="module")
def venue(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("loadgen") / "data"
    asyncio.run(prepare(data_dir, 2, Flow()))
    v = VenueProcess(data_dir).start()
    yield v
    if v.alive:
        v.stop()


def loadgen(venue: VenueProcess, *args: str, sessions: tuple[str, ...] = ("LG1", "LG2")) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tools.cli", "loadgen", "--port", str(venue.port),
           "--keys-dir", str(venue.data_dir / KEYS), *[a for s in sessions for a in ("--session", s)], *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)


def figures(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def documented_fields() -> set[str]:
    return {name.strip() for key in FIELDS for name in key.split("/")}


def test_a_bounded_closed_loop_run_acknowledges_every_order_and_every_order_trades(venue):
    r = figures(loadgen(venue, "--orders", "200", "--window", "50", "--json"))
    assert r["mode"] == "closed" and r["sessions"] == 2 and r["window"] == 50
    assert r["sent"] == r["sent_new"] == 200
    assert r["acked"] == r["measured"] == 200 and r["unacked"] == 0
    assert r["rejected"] == 0 and r["session_rejects"] == 0 and r["disconnected"] == []
    # 100 buys and 100 sells of one quantity at one price: every order fills completely, once
    assert r["fills"] == 200
    assert r["orders_per_s"] > 0
    lat = r["latency_ms"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["p999"] <= lat["max"]
    assert r["generator_cpu_us_per_order"] > 0
    assert r["venue_cpu_s"] is None  # no --venue-pid given


def test_the_acked_log_lists_every_acknowledgement_once(venue, tmp_path):
    log = tmp_path / "acked.txt"
    r = figures(loadgen(venue, "--orders", "120", "--cancel", "20", "--json", "--acked-log", str(log)))
    lines = [line.split() for line in log.read_text().splitlines()]
    assert len(lines) == r["acked"] == 120
    assert len({(sender, cl) for sender, cl, *_ in lines}) == 120
    assert {sender for sender, *_ in lines} == {"LG1", "LG2"}
    # new orders and cancels are acknowledged by ExecutionReports (35=8), a cancel that came too
    # late by an OrderCancelReject (35=9)
    assert sum(1 for _, _, mt, _ in lines if mt == "9") == r["cancel_rejected"]
    assert all(status in "04" for _, _, mt, status in lines if mt == "8")


def test_orders_carry_the_account_given(venue):
    r = figures(loadgen(venue, "--orders", "20", "--account", "LG1=LG1-ACC", "--account", "LG2=LG2-ACC", "--json"))
    assert r["acked"] == 20 and r["rejected"] == 0
    # an account the session may not trade: every order is rejected, and the run says so
    proc = loadgen(venue, "--orders", "4", "--account", "LG1=LG2-ACC", "--json")
    assert json.loads(proc.stdout)["rejected"] == 2
    res = cli(venue, "--session", "LG1", "--account", "LG9=X")
    assert res.exit_code != 0 and "give COMPID=ACCOUNT for one of the --session CompIDs" in res.output


def test_json_output_has_every_documented_field(venue):
    # enough orders that the venue's CPU shows in /proc's 10 ms clock ticks (20 orders could read as 0)
    r = figures(loadgen(venue, "--orders", "400", "--json", "--venue-pid", str(venue.proc.pid)))
    assert documented_fields() <= set(r), documented_fields() - set(r)
    assert set(r["latency_ms"]) == {"p50", "p99", "p999", "max", "mean"}
    assert r["venue_cpu_s"] is not None and r["venue_cpu_us_per_order"] > 0


def test_cancels_and_replaces_are_acknowledged_too(venue):
    r = figures(loadgen(venue, "--orders", "300", "--window", "20", "--cancel", "25", "--replace", "25",
                        "--json"))
    assert r["sent"] == r["acked"] == 300 and r["unacked"] == 0
    assert r["sent_cancel"] > 0 and r["sent_replace"] > 0
    assert r["sent_new"] + r["sent_cancel"] + r["sent_replace"] == 300
    assert r["rejected"] == 0  # a cancel of an order that filled meanwhile is a cancel reject, not a reject
    assert r["acked"] == r["measured"]


def test_open_loop_sends_at_the_rate_not_as_fast_as_acknowledged(venue):
    r = figures(loadgen(venue, "--rate", "300", "--duration", "2", "--warmup", "0", "--json"))
    assert r["mode"] == "open" and r["rate"] == 300 and r["window"] is None
    # ~600 requests in 2 s (a closed loop of 100 in flight sends thousands); loose bounds: a busy
    # machine delays the end of the run, and the pacer catches up on what fell due meanwhile
    assert 450 <= r["sent"] <= 900, r["sent"]
    assert r["acked"] == r["sent"] and r["unacked"] == 0
    assert r["max_behind_ms"] is not None


def test_an_unknown_compid_is_a_clear_error(venue):
    key = venue.data_dir / KEYS / "LG1.pem"
    proc = loadgen(venue, "--orders", "10", sessions=(f"NOSUCH:{key}",))
    assert proc.returncode != 0
    assert "NOSUCH: logon refused" in proc.stderr
    assert "Traceback" not in proc.stderr


def cli(venue: VenueProcess, *args: str):
    """``venue loadgen`` in this process (argument errors: nothing is sent)."""
    return CliRunner().invoke(main, ["loadgen", "--port", str(venue.port), "--keys-dir", str(venue.data_dir / KEYS),
                                     *args])


def test_a_missing_key_file_is_a_clear_error(venue, tmp_path):
    res = cli(venue, "--orders", "10", "--session", "LG1", "--session", "LG7")
    assert res.exit_code != 0 and isinstance(res.exception, SystemExit)
    assert f"session LG7: no key file {venue.data_dir / KEYS / 'LG7.pem'}" in res.output
    res = cli(venue, "--orders", "10", "--session", f"LG1:{tmp_path / 'absent.pem'}")
    assert res.exit_code != 0 and "no key file" in res.output and isinstance(res.exception, SystemExit)


def test_bad_flow_options_are_refused(venue):
    res = cli(venue, "--orders", "10", "--session", "LG1", "--cancel", "80", "--replace", "30")
    assert res.exit_code != 0 and "at most 100" in res.output and isinstance(res.exception, SystemExit)
    res = cli(venue, "--session", "LG1", "--window", "0")
    assert res.exit_code != 0 and "--window must be at least 1" in res.output


def test_bench_e2e_starts_its_own_venue_and_reports_venue_cpu(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tools.cli", "bench", "e2e", "--orders", "200", "--json",
                           "--keep", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    (run,) = out["runs"]
    assert run["acked"] == 200 and run["unacked"] == 0 and run["rejected"] == 0 and run["fills"] == 200
    assert run["venue_cpu_us_per_order"] > 0 and run["generator_cpu_us_per_order"] > 0
    assert out["median"]["orders_per_s"] == run["orders_per_s"]
    assert (Path(tmp_path) / "data" / KEYS / "LG2.pem").is_file()
