"""`venue certify acceptor` passes the venue's own session-layer scenarios (always, from the
repository) and QuickFIX's FIX 4.4 acceptance scripts (where ../shared/certification is present)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]
VENUE_SCRIPTS = CHECKOUT / "certification" / "venue-fix44"
QUICKFIX_SCRIPTS = CHECKOUT.parent / "shared" / "certification" / "quickfix-fix44"
VENUE = [sys.executable, "-m", "tools.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"acceptor exited: {proc.stderr.read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("acceptor did not start listening")


@pytest.fixture
def acceptor(tmp_path):
    port = _free_port()
    proc = subprocess.Popen(
        [*VENUE, "certify", "acceptor", "--port", str(port), "--data-dir", str(tmp_path / "data")],
        cwd=CHECKOUT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_listening(port, proc)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _run(port: int, files: list[Path], *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*VENUE, "certify", "run", "--port", str(port), *extra, *map(str, files)],
                          cwd=CHECKOUT, capture_output=True, text=True, timeout=300)


def _passes(port: int, files: list[Path], tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    result = _run(port, files, "--junit", str(junit))
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == f"{len(files)} passed, 0 failed", result.stdout
    assert result.returncode == 0
    assert sum(" PASS " in line for line in lines) == len(files)
    assert junit.read_text().count("<testcase ") == len(files) and "<failure" not in junit.read_text()


def test_every_venue_script_passes(acceptor, tmp_path):
    files = sorted(VENUE_SCRIPTS.glob("*.def"))
    assert len(files) >= 11
    _passes(acceptor, files, tmp_path)


def test_each_venue_script_says_what_it_certifies():
    for path in sorted(VENUE_SCRIPTS.glob("*.def")):
        first = path.read_text(encoding="latin-1").splitlines()[0]
        assert first.startswith("# certifies: "), path.name


def test_certify_run_without_files_runs_the_venue_scripts(acceptor):
    result = subprocess.run([*VENUE, "certify", "run", "--port", str(acceptor)],
                            cwd=CHECKOUT, capture_output=True, text=True, timeout=300)
    n = len(list(VENUE_SCRIPTS.glob("*.def")))
    assert result.returncode == 0 and result.stdout.strip().splitlines()[-1] == f"{n} passed, 0 failed", result.stdout


@pytest.mark.slow
@pytest.mark.skipif(not QUICKFIX_SCRIPTS.is_dir(),
                    reason=f"QuickFIX's acceptance scripts are not beside this checkout ({QUICKFIX_SCRIPTS})")
def test_every_quickfix_certification_script_passes(acceptor, tmp_path):
    files = sorted(QUICKFIX_SCRIPTS.glob("*.def"))
    assert len(files) >= 30
    _passes(acceptor, files, tmp_path)


def test_a_wrong_expectation_fails_with_its_line_and_difference(acceptor, tmp_path):
    good = (VENUE_SCRIPTS / "02_HeartbeatAndTestRequest.def").read_bytes()
    bad = tmp_path / "bad.def"
    expected = b"56=TW44\x01112=PING-1\x01"  # the E line only (the I line carries 56=ISLD)
    assert good.count(expected) == 1
    bad.write_bytes(good.replace(expected, b"56=TW44\x01112=PING-X\x01"))
    line = good[:good.index(expected)].count(b"\n") + 1
    result = _run(acceptor, [bad])
    assert result.returncode == 1
    assert f"FAIL bad.def line {line}" in result.stdout
    assert "expected 112=PING-X, received 112=PING-1" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "0 passed, 1 failed"
