"""Untrusted values never forge a line in venue.log.

The finding: a Logon with ``49=EVIL\\n2026-12-03 19:58:00,000 INFO venue: operator root approved
withdrawal 42`` wrote that second line into venue.log, indistinguishable from a real one, twice: the
acceptor's "Closing connection ... Unknown session" and the venue's "logon of ... refused". CompIDs,
reasons built from them and peer data are escaped in every log message on the logon path.
"""

from __future__ import annotations

import time

import pytest

from tests.test_access_e2e import Client, audit_rows
from tests.venue_proc import VenueProcess

FORGED = "2026-12-03 19:58:00,000 INFO venue: operator root approved withdrawal 42"


@pytest.fixture(scope="module")
def venue(tmp_path_factory):
    v = VenueProcess(tmp_path_factory.mktemp("log-injection") / "data").start()
    try:
        yield v
    finally:
        if v.alive:
            v.stop()


def refused(v: VenueProcess, sender: str) -> None:
    """Wait for the audit entry of the refusal: the log lines are written before it is."""
    deadline = time.monotonic() + 5
    while not audit_rows(v, "logon.refused", sender):
        assert time.monotonic() < deadline, f"no logon.refused for {sender!r}"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sender, target", [
    (f"EVIL\n{FORGED}", "VENUE"),  # an unknown SenderCompID
    (f"EVIL\r{FORGED}", "VENUE"),
    ("DEMO1", f"VENUE\n{FORGED}"),  # a known one, with a TargetCompID no session has
])
def test_a_logon_with_a_newline_in_a_comp_id_forges_no_log_line(venue, sender, target):
    c = Client(venue.port, sender, "127.0.0.1")
    c.target = target
    c.send("A", [(98, 0), (108, 30), (141, "Y")])
    assert c.closed()  # no session for it: closed without a word
    c.close()
    refused(venue, sender)
    log = (venue.data_dir / "venue.log").read_text("utf-8", "replace")
    assert "EVIL" in log or "VENUE\\n" in log  # the refusal is logged ...
    assert not [line for line in log.splitlines() if line.startswith(FORGED)]  # ... on its own line
    assert "\r" not in log


@pytest.mark.timeout(60)
def test_a_logged_on_clients_logout_text_forges_no_log_line(venue):
    """Past the logon path too: every venue.log record is one line, whatever a peer put in it."""
    c = venue.client("DEMO1")
    c.send("5", [(58, f"bye\n{FORGED}")])
    c.expect("5")
    c.close()
    deadline = time.monotonic() + 5
    while "bye\\x0a" not in (venue.data_dir / "venue.log").read_text("utf-8", "replace"):
        assert time.monotonic() < deadline, "the Logout text was not logged"
        time.sleep(0.05)
    log = (venue.data_dir / "venue.log").read_text("utf-8", "replace")
    assert not [line for line in log.splitlines() if line.startswith(FORGED)]
