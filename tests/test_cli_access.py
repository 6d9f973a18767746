"""`venue keygen|firm|account|session|audit`: changes land in the registry and the audit log."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.access_db import pg_database
from tools.cli import main
from venue import audit, registry
from venue.access import signing
from venue.db import make_engine, sqlite_url


def venue(data_dir: Path, *args: str, ok: bool = True, db_url: str | None = None):
    extra = ["--db-url", db_url] if db_url else ["--data-dir", str(data_dir)]
    result = CliRunner().invoke(main, [*args, *extra, "--actor", "alice"])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def load(url: str, fn):
    async def go():
        engine = make_engine(url)
        try:
            return await fn(engine)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def setup_session(d: Path, **kw) -> None:
    venue(d, "firm", "create", "F1", **kw)
    venue(d, "account", "create", "A1", "--firm", "F1", "--status", "verified", "--expires", "2030-01-01", **kw)
    venue(d, "session", "create", "C1", "--firm", "F1", "--account", "A1", "--key-out", str(d / "c1.pem"),
          "--allow", "127.0.0.1/32", **kw)


def test_keygen_writes_a_pkcs8_pem_and_prints_its_key_id(tmp_path):
    out = tmp_path / "k.pem"
    result = CliRunner().invoke(main, ["keygen", "--out", str(out)])
    assert result.exit_code == 0, result.output
    key = signing.load_private_key_file(out)
    assert signing.key_id_for(key.public_key()) in result.output
    assert signing.public_key_b64(key.public_key()) in result.output
    assert out.stat().st_mode & 0o777 == 0o600
    again = CliRunner().invoke(main, ["keygen", "--out", str(out)])
    assert again.exit_code != 0 and "exists" in again.output


def test_session_create_registers_settings_and_key_and_audits_it(tmp_path):
    setup_session(tmp_path)
    s = load(sqlite_url(tmp_path), lambda e: registry.load_session(e, "C1"))
    key = signing.load_private_key_file(tmp_path / "c1.pem")
    assert [k.key_id for k in s.active_keys] == [signing.key_id_for(key.public_key())]
    assert (s.firm_id, s.accounts, s.allowed_networks) == ("F1", ("A1",), ("127.0.0.1/32",))
    entries = load(sqlite_url(tmp_path), audit.entries)
    assert [e.kind for e in entries] == ["config.firm.create", "config.account.create", "config.session.create"]
    assert all(e.actor == "alice" for e in entries)
    assert entries[-1].data["key_id"] == s.active_keys[0].key_id


def test_session_list_and_show_print_tables(tmp_path):
    setup_session(tmp_path)
    listing = venue(tmp_path, "session", "list").output
    assert "C1" in listing and "127.0.0.1/32" in listing and "order_entry" in listing
    shown = venue(tmp_path, "session", "show", "C1").output
    s = load(sqlite_url(tmp_path), lambda e: registry.load_session(e, "C1"))
    assert s.active_keys[0].key_id in shown and "active" in shown


def test_rotate_then_retire_key(tmp_path):
    setup_session(tmp_path)
    old = signing.key_id_for(signing.load_private_key_file(tmp_path / "c1.pem").public_key())
    venue(tmp_path, "session", "rotate-key", "C1", "--key-out", str(tmp_path / "c1-new.pem"))
    new = signing.key_id_for(signing.load_private_key_file(tmp_path / "c1-new.pem").public_key())
    s = load(sqlite_url(tmp_path), lambda e: registry.load_session(e, "C1"))
    assert {k.key_id for k in s.active_keys} == {old, new}
    third = venue(tmp_path, "session", "rotate-key", "C1", "--key-out", str(tmp_path / "c1-3.pem"), ok=False)
    assert third.exit_code == 1 and "retire one first" in third.output
    assert not (tmp_path / "c1-3.pem").exists()
    venue(tmp_path, "session", "retire-key", "C1", old)
    s = load(sqlite_url(tmp_path), lambda e: registry.load_session(e, "C1"))
    assert [k.key_id for k in s.active_keys] == [new]
    kinds = [e.kind for e in load(sqlite_url(tmp_path), audit.entries)]
    assert kinds[-2:] == ["config.session.key_add", "config.session.key_retire"]


def test_rotate_key_accepts_a_base64_public_key(tmp_path):
    setup_session(tmp_path)
    key = signing.generate_key()
    out = venue(tmp_path, "session", "rotate-key", "C1", "--public-key", signing.public_key_b64(key.public_key()))
    assert signing.key_id_for(key.public_key()) in out.output


def test_disable_and_enable_session(tmp_path):
    setup_session(tmp_path)
    venue(tmp_path, "session", "disable", "C1")
    assert not load(sqlite_url(tmp_path), lambda e: registry.load_session(e, "C1")).enabled
    venue(tmp_path, "session", "enable", "C1")
    assert load(sqlite_url(tmp_path), lambda e: registry.load_session(e, "C1")).enabled


def test_allow_adds_removes_and_replaces_networks(tmp_path):
    setup_session(tmp_path)
    venue(tmp_path, "session", "allow", "C1", "10.0.0.0/8", "2001:db8::/32")
    venue(tmp_path, "session", "allow", "C1", "--remove", "127.0.0.1/32")
    s = load(sqlite_url(tmp_path), lambda e: registry.load_session(e, "C1"))
    assert s.allowed_networks == ("10.0.0.0/8", "2001:db8::/32")
    venue(tmp_path, "session", "allow", "C1", "--replace", "::1")
    s = load(sqlite_url(tmp_path), lambda e: registry.load_session(e, "C1"))
    assert s.allowed_networks == ("::1/128",)


def test_account_kyc_changes_status_tier_expiry_and_is_audited(tmp_path):
    setup_session(tmp_path)
    out = venue(tmp_path, "account", "kyc", "A1", "--status", "expired", "--tier", "2", "--expires", "2031-05-06")
    assert "verified -> expired" in out.output
    [a] = load(sqlite_url(tmp_path), registry.load_accounts)
    assert (a.kyc_status, a.tier, a.kyc_expires.isoformat()) == ("expired", 2, "2031-05-06")
    last = load(sqlite_url(tmp_path), lambda e: audit.tail(e, 1))[0]
    assert (last.kind, last.subject, last.data["status"]) == ("config.account.kyc", "A1", "expired")


@pytest.mark.parametrize(
    "args, message",
    [
        (["account", "kyc", "NOPE", "--status", "verified"], "unknown account NOPE"),
        (["account", "kyc", "A1", "--status", "approved"], "Invalid value for '--status'"),
        (["account", "kyc", "A1", "--status", "verified", "--expires", "tomorrow"], "YYYY-MM-DD"),
        (["session", "create", "C2", "--firm", "NOPE"], "unknown firm NOPE"),
        (["session", "create", "C2", "--firm", "F1", "--allow", "10.0.0.300/8"], "CIDR"),
        (["session", "create", "C1", "--firm", "F1"], "already exists"),
        (["session", "retire-key", "C1", "nokey"], "has no key nokey"),
        (["session", "disable", "NOPE"], "unknown session NOPE"),
        (["session", "rotate-key", "C1", "--public-key", "garbage"], "public key"),
        (["session", "rotate-key", "C1"], "--public-key"),
        (["session", "create", "C2", "--firm", "F1", "--public-key", "x", "--key-out", "y.pem"], "not both"),
        (["session", "allow", "C1", "--remove", "10.0.0.0/8"], "not in the allow-list"),
    ],
)
def test_bad_input_gets_a_clear_error_and_nonzero_exit_and_changes_nothing(tmp_path, args, message):
    setup_session(tmp_path)
    before = len(load(sqlite_url(tmp_path), audit.entries))
    result = venue(tmp_path, *args, ok=False)
    assert result.exit_code != 0
    assert message in result.output
    assert len(load(sqlite_url(tmp_path), audit.entries)) == before


def test_read_commands_refuse_a_missing_database(tmp_path):
    result = venue(tmp_path / "nowhere", "session", "list", ok=False)
    assert result.exit_code == 1 and "no venue database" in result.output


def test_audit_verify_passes_then_reports_the_tampered_seq(tmp_path):
    setup_session(tmp_path)
    venue(tmp_path, "audit", "checkpoint")
    ok = venue(tmp_path, "audit", "verify")
    assert "intact: 3 entries, 1 signed checkpoints" in ok.output
    with sqlite3.connect(tmp_path / "venue.db") as db:
        db.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    bad = venue(tmp_path, "audit", "verify", ok=False)
    assert bad.exit_code == 1
    assert "seq 2: edited" in bad.output and "first at seq 2" in bad.output


def test_audit_tail_shows_last_entries_and_filters_by_kind(tmp_path):
    setup_session(tmp_path)
    out = venue(tmp_path, "audit", "tail", "-n", "2").output
    assert "config.account.create" in out and "config.session.create" in out and "config.firm.create" not in out
    js = venue(tmp_path, "audit", "tail", "--kind", "config.firm.create", "--json").output.strip().splitlines()
    assert len(js) == 1 and '"subject": "F1"' in js[0]


def test_cli_against_postgresql(tmp_path):
    with pg_database() as url:
        setup_session(tmp_path, db_url=url)
        venue(tmp_path, "account", "kyc", "A1", "--status", "rejected", db_url=url)
        [a] = load(url, registry.load_accounts)
        problems = load(url, audit.verify)
        n = len(load(url, audit.entries))
    assert a.kyc_status == "rejected"
    assert (problems, n) == ([], 4)


def test_venue_entry_point_exits_nonzero_on_error(tmp_path):
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "venue"), "account", "kyc", "X", "--status", "verified",
         "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1
    assert "no venue database" in proc.stderr
