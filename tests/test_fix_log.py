"""Per-session message logs and the venue's event log."""

from __future__ import annotations

import logging

from fix.log import FileLog, log_factory
from fix.session import Session, SessionConfig
from sessions.echo import EchoApplication
from tests.test_fix_session import DD, T0, frame, out


def test_every_message_in_and_out_is_logged_with_direction_and_time_and_events_go_to_the_venue_log(
        tmp_path, caplog):
    log = log_factory(tmp_path)("FIX.4.4:ISLD->TW")
    assert isinstance(log, FileLog)
    session = Session(SessionConfig(sender_comp_id="ISLD", target_comp_id="TW"), dictionary=DD,
                      application=EchoApplication(), log=log)
    session.connection_made(T0)
    with caplog.at_level(logging.INFO, logger="venue.fix"):
        session.receive_data(frame("A", 1, (98, 0), (108, 30)) + frame("*", 2), T0)
    out(session)
    log.close()
    lines = log.path.read_bytes().splitlines()
    kinds = [line.split(b" ")[1] for line in lines]
    assert kinds.count(b"IN") == 2 and kinds.count(b"OUT") == 2  # Logon + bad MsgType in; Logon + Reject out
    assert all(line[:21].count(b":") == 2 and line[8:9] == b"-" for line in lines)
    assert any(b"\x0135=3\x01" in line for line in lines if b" OUT " in line)
    assert any("Rejected: Invalid MsgType" in r.getMessage() and "ISLD->TW" in r.getMessage() for r in caplog.records)
    assert log.path.name == "FIX.4.4-ISLD-TW.messages.log"
