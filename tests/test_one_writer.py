"""One writer per database: a running venue holds a lock that a second `venue serve` and the
commands that need the venue stopped respect; concurrent CLI use never fails a venue write."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
from click.testing import CliRunner

from tests.venue_proc import ROOT, VenueProcess, free_port
from tools.cli import main
from venue import lock
from venue.custody.policy import starter_policy
from venue.db import sqlite_url

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def serve(data_dir, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    """`venue serve` on a data directory another venue holds: it must exit by itself."""
    return subprocess.run([sys.executable, "-m", "tools.cli", "serve", "--data-dir", str(data_dir),
                           "--port", str(free_port())], cwd=ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def second_serve_is_refused(first: VenueProcess, env: dict[str, str] | None = None, data_dir=None) -> None:
    try:
        out = serve(data_dir or first.data_dir, env)
    except subprocess.TimeoutExpired as exc:  # it started and ran beside the first
        raise AssertionError("a second venue ran on the same database") from exc
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "already running" in text and f"pid {first.proc.pid}" in text, text


@pytest.fixture
def pg_url():
    import asyncpg

    name = f"one_writer_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f"CREATE DATABASE {name}"))
    except OSError:
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def test_a_second_serve_on_the_same_data_dir_exits_naming_the_holder(tmp_path):
    first = VenueProcess(tmp_path / "data").start()
    try:
        second_serve_is_refused(first)
        assert first.alive
        c = first.client("DEMO1")  # the first venue is untouched and trades on
        c.send("D", [(11, "X1"), (55, "BTC-USDT"), (54, "1"), (60, "20261125-00:00:00.000"), (38, "0.1"),
                     (40, "2"), (44, "60000"), (59, "1")])
        assert c.expect("8").get(150) == b"0"
        c.close()
    finally:
        assert first.stop() == 0
    # stopped cleanly, the lock is free again: the same data directory serves again
    again = VenueProcess(tmp_path / "data").start()
    assert again.stop() == 0


def test_a_data_dir_whose_database_is_a_symlink_to_a_live_one_is_refused(tmp_path):
    """The finding: `mkdir v3; ln -s v/venue.db v3/venue.db; venue serve --data-dir v3` started beside
    the venue on v, re-seeded the demo keys (retiring the live ones) and signed with another key."""
    first = VenueProcess(tmp_path / "v").start()
    try:
        (tmp_path / "v3").mkdir()
        (tmp_path / "v3" / "venue.db").symlink_to(first.data_dir / "venue.db")
        second_serve_is_refused(first, data_dir=tmp_path / "v3")
        c = first.client("DEMO1")  # its key was not retired by a second venue's seeding
        c.send("D", [(11, "S1"), (55, "BTC-USDT"), (54, "1"), (60, "20261125-00:00:00.000"), (38, "0.1"),
                     (40, "2"), (44, "60000"), (59, "1")])
        assert c.expect("8").get(150) == b"0"
        c.close()
    finally:
        assert first.stop() == 0


def test_commands_that_need_the_venue_stopped_are_refused_while_it_runs(tmp_path):
    """The finding: a second serve started, stopped (audit log: "venue.stopped"), and then the
    stopped-only commands ran beside the first venue. Now the second is refused, and so are they."""
    first = VenueProcess(tmp_path / "data").start()
    try:
        second = subprocess.Popen([sys.executable, "-m", "tools.cli", "serve", "--data-dir", str(first.data_dir),
                                   "--port", str(free_port())], cwd=ROOT, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            assert second.wait(10) != 0
        except subprocess.TimeoutExpired:  # it ran beside the first: stop it as an operator would
            second.send_signal(signal.SIGTERM)
            second.wait(20)
        out = CliRunner().invoke(main, ["custody", "process", "--data-dir", str(first.data_dir)])
        assert out.exit_code != 0
        assert "the venue is running" in out.output and f"pid {first.proc.pid}" in out.output, out.output
        assert asyncio.run(lock.holder(sqlite_url(first.data_dir))).pid == first.proc.pid
    finally:
        assert first.stop() == 0
    assert asyncio.run(lock.holder(sqlite_url(first.data_dir))) is None


def test_a_killed_venue_leaves_no_stale_lock(tmp_path):
    first = VenueProcess(tmp_path / "data").start()
    first.kill()  # kill -9: no chance to clean up; the kernel drops the flock
    assert asyncio.run(lock.holder(sqlite_url(first.data_dir))) is None
    again = VenueProcess(tmp_path / "data").start()
    try:
        second_serve_is_refused(again)
    finally:
        assert again.stop() == 0


def test_postgresql_advisory_lock_refuses_a_second_venue_and_dies_with_the_holder(tmp_path, pg_url):
    env = {"VENUE_DATABASE_URL": pg_url}
    first = VenueProcess(tmp_path / "a", env=env).start()
    try:
        # another data directory, the same database: still the same writer lock
        second = VenueProcess(tmp_path / "b", env=env)
        with pytest.raises(RuntimeError, match=f"already running on this database \\(pid {first.proc.pid}"):
            second.start(timeout=20)
        assert second.proc.wait(10) != 0
        assert asyncio.run(lock.holder(pg_url)).pid == first.proc.pid
        out = CliRunner().invoke(main, ["custody", "process", "--db-url", pg_url, "--data-dir", str(tmp_path / "b")])
        assert out.exit_code != 0 and f"pid {first.proc.pid}" in out.output, out.output
    finally:
        first.kill()  # its connection closes with it, and the advisory lock with the connection
    deadline = asyncio.run(_wait_free(pg_url))
    assert deadline, "the advisory lock outlived its holder"
    again = VenueProcess(tmp_path / "b", env=env).start()
    assert again.stop() == 0


async def _wait_free(url: str, timeout: float = 10.0) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if await lock.holder(url) is None:
            return True
        await asyncio.sleep(0.1)
    return False


def venue_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The real `venue` CLI in its own process (as an operator runs it beside the venue)."""
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)


def test_cli_writes_against_a_live_sqlite_venue_never_fail_its_writes(tmp_path):
    """Operator, registry, custody and audit commands (each a write), and customer withdrawals the
    venue's custody holds, settles or an operator rejects, from three CLI loops while two clients
    trade: every order is acknowledged, every command succeeds, and the venue never logs "database
    is locked" nor a failed batch commit. (The old venue deadlocked its batch with its own custody
    pass, which awaited the core inside a transaction holding SQLite's write lock.)"""
    env = {f"VENUE_CUSTODY_{t}_PASSPHRASE": t.lower() for t in ("HOT", "WARM", "COLD")}
    env["VENUE_KEY_PASSPHRASE"] = "customer"
    v = VenueProcess(tmp_path / "data", env=env).start()
    d = str(v.data_dir)
    stop, failures, cli_runs = threading.Event(), [], [0]

    def run(*args: str, data: bool = True) -> subprocess.CompletedProcess:
        r = venue_cli(*args, *(["--data-dir", d, "--actor", "ops"] if data else []), env=env)
        cli_runs[0] += 1
        if r.returncode != 0:
            failures.append((args, r.stdout[-300:] + r.stderr[-600:]))
        return r

    def setup(*args: str) -> None:
        r = venue_cli(*args, "--data-dir", d, "--actor", "ops", env=env)
        assert r.returncode == 0, r.stdout + r.stderr

    setup("custody", "init", "--assets", "USDT")
    policy = json.loads(starter_policy({"USDT": 6}).to_json())
    policy["whitelist_timelock_ns"] = policy["approval_timelock_ns"] = 0
    policy["confirmations"] = 1
    policy["assets"]["USDT"]["auto_threshold"] = 5 * 10**6  # 5 USDT and up: two approvals
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    setup("custody", "policy", "--set", str(tmp_path / "policy.json"))
    op_key = tmp_path / "op.pem"
    assert CliRunner().invoke(main, ["keygen", "--out", str(op_key)]).exit_code == 0
    setup("operator", "add", "checker", "--role", "operator", "--public-key", str(op_key))
    setup("withdraw", "keygen", "--account", "DEMO2-ACC", "--out", str(tmp_path / "w.key"))
    setup("address", "add", "dest-1", "--account", "DEMO2-ACC", "--asset", "USDT", "--key", str(tmp_path / "w.key"))

    def withdrawals_loop() -> None:
        """Withdrawals the venue's custody holds, signs, broadcasts and settles (consume), and others
        an operator rejects (release): each a ledger command custody awaits from the core."""
        i = 0
        while not stop.is_set():
            i += 1
            for amount in ("1", "6"):  # auto-approved; needs two approvals, rejected by one
                req = tmp_path / f"req-{i}-{amount}.json"
                if run("withdraw", "request", "--account", "DEMO2-ACC", "--asset", "USDT", "--amount", amount,
                       "--destination", "dest-1", "--out", str(req), data=False).returncode:
                    continue
                r = run("withdraw", "sign", str(req), "--key", str(tmp_path / "w.key"),
                        "--operator", "checker", "--operator-key", str(op_key))  # it only rejects: allowed
                m = re.search(r"withdrawal (W\w+): pending_approval", r.stdout)
                if m:
                    run("withdrawals", "reject", m.group(1), "--operator", "checker", "--key", str(op_key))

    def cli_loop(k: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            for args in (["firm", "create", f"F{k}-{i}"],
                         ["account", "create", f"ACC{k}-{i}", "--firm", f"F{k}-{i}"],
                         ["account", "deposit", "DEMO1-ACC", "USDT", "1"],
                         ["deposit", "--account", "DEMO2-ACC", "--asset", "USDT", "--amount", "1"],
                         ["session", "allow", "DEMO2", f"10.{k}.{i % 250}.0/24"],
                         ["audit", "checkpoint"]):
                run(*args)

    threads = [threading.Thread(target=cli_loop, args=(k,)) for k in range(2)]
    threads.append(threading.Thread(target=withdrawals_loop))
    for t in threads:
        t.start()
    acked = n = 0
    try:
        buyer, seller = v.client("DEMO1"), v.client("DEMO2")
        while n < 300 or (cli_runs[0] < 60 and n < 4000):  # trade until the loops have done their share
            time.sleep(0.025)  # pace: the sessions' throttle (50/s) is not what this test is about
            c, side = (buyer, "1") if n % 2 else (seller, "2")
            c.send("D", [(11, f"O{n}"), (55, "BTC-USDT"), (54, side), (60, "20261125-00:00:00.000"),
                         (38, "0.01"), (40, "2"), (44, "60000"), (59, "1")])
            while True:  # its acknowledgement (fills of earlier orders may come first)
                er = c.expect("8", timeout=30)
                if er.get(11) == f"O{n}".encode() and er.get(150) in (b"0", b"F"):
                    acked += 1
                    break
                assert er.get(11) != f"O{n}".encode() or er.get(150) != b"8", f"order O{n} rejected: {er!r}"
            n += 1
        buyer.close()
        seller.close()
    finally:
        stop.set()
        for t in threads:
            t.join(120)
        assert v.stop() == 0
    log = (v.data_dir / "venue.log").read_text()
    assert "database is locked" not in log
    assert "Batch commit failed" not in log
    assert acked == n >= 300
    assert not failures, failures[:3]
    assert cli_runs[0] >= 60
    assert "custody.error" not in venue_cli("audit", "tail", "-n", "100000", "--kind", "custody.error",
                                            "--data-dir", d, env=env).stdout

