"""Every QuickFIX FIX 4.4 certification script in shared/ passes against `venue certify acceptor`."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parents[2] / "shared" / "certification" / "quickfix-fix44"
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


@pytest.mark.slow
def test_every_shared_certification_script_passes(acceptor, tmp_path):
    files = sorted(SCRIPTS.glob("*.def"))
    assert len(files) >= 30
    junit = tmp_path / "junit.xml"
    result = _run(acceptor, files, "--junit", str(junit))
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == f"{len(files)} passed, 0 failed", result.stdout
    assert result.returncode == 0
    assert sum(" PASS " in line for line in lines) == len(files)
    assert junit.read_text().count("<testcase ") == len(files) and "<failure" not in junit.read_text()


def test_a_wrong_expectation_fails_with_its_line_and_difference(acceptor, tmp_path):
    good = (SCRIPTS / "4b_ReceivedTestRequest.def").read_bytes()
    bad = tmp_path / "bad.def"
    bad.write_bytes(good.replace(b"112=HELLO\x0110=0", b"112=HELLX\x0110=0"))
    result = _run(acceptor, [bad])
    assert result.returncode == 1
    assert "FAIL bad.def line 7" in result.stdout and "expected 112=HELLX, received 112=HELLO" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "0 passed, 1 failed"
