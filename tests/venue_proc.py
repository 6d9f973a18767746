"""Run the real venue (`venue serve`) as a child process on a free port, for end-to-end tests."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tests.fix_client import FixClient

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VenueProcess:
    def __init__(self, data_dir: Path, port: int | None = None, env: dict[str, str] | None = None,
                 args: list[str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.env = {"VENUE_FIX_LOGOUT_TIMEOUT": "1", **(env or {})}
        self.args = args or []
        self.proc: subprocess.Popen | None = None
        self.output: list[str] = []

    def start(self, timeout: float = 30.0) -> VenueProcess:
        env = {**os.environ, **self.env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "serve", "--data-dir", str(self.data_dir), "--port", str(self.port),
             *self.args],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        ready = threading.Event()

        def pump() -> None:
            for line in self.proc.stdout:
                self.output.append(line)
                if re.search(r"venue (listening on|running without FIX)", line):
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("venue did not start:\n" + "".join(self.output))
        return self

    def stop(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def key(self, sender: str):
        keys = self.data_dir / "demo-keys"
        key = load_pem_private_key((keys / f"{sender}.pem").read_bytes(), None)
        return key, (keys / f"{sender}.keyid").read_text().strip()

    def client(self, sender: str, logon: bool = True, **kw) -> FixClient:
        c = FixClient("127.0.0.1", self.port, sender)
        if logon:
            key, key_id = self.key(sender)
            c.logon(key=key, key_id=key_id, **kw)
        return c


if __name__ == "__main__":  # pragma: no cover
    print(free_port())
