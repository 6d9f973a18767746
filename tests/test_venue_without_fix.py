"""The venue owns its pipeline: with no FIX engine at all (`venue serve --no-fix`), an operator
request, a custody withdrawal's hold and a GTD order's expiry are each run through the core,
journaled and answered. (Before, the FIX acceptor's flush loop ran the venue's batches: without
it, nothing the operator, custody or the timers submitted was ever processed.)"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from datetime import UTC, datetime, timedelta

from tests.test_batch_isolation import journal_of
from tests.test_custody_venue_e2e import ENV, btc_balance, venue_cli
from tests.venue_proc import VenueProcess
from venue.core import commands as cmd
from venue.core import events as ev
from venue.custody.policy import starter_policy


def fix_time(t: datetime) -> str:
    return t.strftime("%Y%m%d-%H:%M:%S.%f")[:-3]


def rest_gtd_order(data, expire_in: float) -> None:
    """A GTD buy order resting on the book, placed over FIX, the venue then killed."""
    v = VenueProcess(data, env=ENV).start()
    try:
        c = v.client("DEMO1")
        expire = datetime.now(UTC) + timedelta(seconds=expire_in)
        c.send("D", [(11, "GTD-1"), (55, "BTC-USDT"), (54, "1"), (60, fix_time(datetime.now(UTC))), (38, "0.1"),
                     (40, "2"), (44, "56900"), (59, "6"), (126, fix_time(expire))])
        ack = {t: v.decode() for t, v in c.expect("8").fields}
        assert (ack[11], ack[150]) == ("GTD-1", "0"), ack.get(58)  # acknowledged once committed
    finally:
        v.kill()  # no Logout, so cancel-on-disconnect leaves the order resting


def test_operator_request_custody_hold_and_gtd_expiry_are_processed_with_no_fix_engine(tmp_path):
    data = tmp_path / "data"
    rest_gtd_order(data, expire_in=4.0)

    v = VenueProcess(data, env=ENV, args=["--no-fix"]).start()
    try:
        with socket.socket() as s:  # no FIX port is open
            assert s.connect_ex(("127.0.0.1", v.port)) != 0

        # an operator request: a deposit through the core, answered once committed
        assert "deposited 2 BTC to DEMO1-ACC" in venue_cli("account", "deposit", "DEMO1-ACC", "BTC", "2",
                                                           data_dir=data)
        assert btc_balance(data) == ("102", "0", "102")

        # custody: a signed withdrawal holds its funds in the core's ledger
        venue_cli("custody", "init", "--assets", "BTC", data_dir=data)
        policy = json.loads(starter_policy({"BTC": 8}).to_json())
        policy["whitelist_timelock_ns"] = 0
        policy["confirmations"] = 1
        (tmp_path / "policy.json").write_text(json.dumps(policy))
        venue_cli("custody", "policy", "--set", str(tmp_path / "policy.json"), data_dir=data)
        key = tmp_path / "d1.key"
        venue_cli("withdraw", "keygen", "--account", "DEMO1-ACC", "--out", str(key), data_dir=data)
        venue_cli("address", "add", "dest-1", "--account", "DEMO1-ACC", "--asset", "BTC", "--key", str(key),
                  data_dir=data)
        op_key = tmp_path / "desk.pem"  # the operator who submits it (an authenticated submitter)
        venue_cli("keygen", "--out", str(op_key))
        venue_cli("operator", "add", "desk", "--role", "operator", "--public-key", str(op_key), data_dir=data)
        req = tmp_path / "req.json"
        venue_cli("withdraw", "request", "--account", "DEMO1-ACC", "--asset", "BTC", "--amount", "0.5",
                  "--destination", "dest-1", "--out", str(req))
        wid = re.search(r"withdrawal (W\w+)", venue_cli("withdraw", "sign", str(req), "--key", str(key),
                                                         "--operator", "desk", "--operator-key", str(op_key),
                                                         data_dir=data)).group(1)
        assert re.search(r"funds\s+│ held", venue_cli("withdraw", "status", wid, data_dir=data))
        assert btc_balance(data) == ("102", "0.5", "101.5"), "the withdrawal's hold is in the core's ledger"

        # the GTD order expires on the venue's own timer
        deadline = time.monotonic() + 20
        while not any(isinstance(e, ev.OrderExpired) for e in asyncio.run(journal_of(data))[1]):
            assert time.monotonic() < deadline, "the GTD order never expired"
            time.sleep(0.3)
    finally:
        assert v.stop() == 0

    commands, events = asyncio.run(journal_of(data))
    assert [e.cl_ord_id for e in events if isinstance(e, ev.OrderExpired)] == ["GTD-1"]
    assert [c.ref for c in commands if isinstance(c, cmd.HoldFunds)] == [wid]
    assert any(isinstance(c, cmd.Deposit) and c.ref.startswith("operator:") for c in commands)
