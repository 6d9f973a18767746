"""``venue bench flood``: does one flooding session slow the others down?

A real venue (``venue serve`` in a child process, demo data in a temporary directory) serves two
order-entry sessions. The quiet one (DEMO1) sends one NewOrderSingle at a time, under its throttle,
and times each acknowledgement (the ExecutionReport for its ClOrdID). It does so first alone, then
while a second session (DEMO2, in another process) writes ``--flood`` NewOrderSingles as fast as
its socket takes them, ``--rounds`` times (the venue throttles it and logs it out each time).
Prints the quiet session's p50/p99/max acknowledgement latency in both conditions, their ratio,
and the venue's CPU time per order (from ``/proc/<pid>/stat``: per quiet order alone, and per
flood order beyond that baseline).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import click

_FRAME = re.compile(rb"8=FIX\.4\.4\x019=(\d+)\x01")
ROOT = Path(__file__).resolve().parent.parent


def _now_fix() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H:%M:%S.%f")[:-3]


def _frame(sender: str, seq: int, msg_type: str, body: list[tuple[int, object]], sending_time: str | None = None) -> bytes:
    from fix.message import Message, encode

    head = [(35, msg_type), (49, sender), (56, "VENUE"), (34, seq), (52, sending_time or _now_fix())]
    return encode(Message.build(head + body).fields)


def _order(sender: str, seq: int, cl: str, account: str, side: str, price: str) -> bytes:
    return _frame(sender, seq, "D", [(11, cl), (1, account), (55, "BTC-USDT"), (54, side), (60, _now_fix()),
                                     (38, "0.001"), (40, "2"), (44, price), (59, "1")])


class _Client:
    """A blocking FIX initiator: signed logon with a sequence reset, frames in, frames out."""

    def __init__(self, port: int, data_dir: Path, sender: str) -> None:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        from venue.access.signing import signed_logon_fields

        self.sender = sender
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        keys = data_dir / "demo-keys"
        key = load_pem_private_key((keys / f"{sender}.pem").read_bytes(), None)
        key_id = (keys / f"{sender}.keyid").read_text().strip()
        st = _now_fix()
        body = [(98, 0), (108, 30), (141, "Y"), *signed_logon_fields(key, key_id, sender, "VENUE", 1, st)]
        self.sock.sendall(_frame(sender, 1, "A", body, st))
        self.seq = 2
        logon = self.next_frame(10.0)
        if logon is None or b"\x0135=A\x01" not in logon:
            raise click.ClickException(f"{sender}: logon refused: {logon!r}")

    def next_frame(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        while True:
            m = _FRAME.search(self.buf)
            if m:
                end = m.end() + int(m.group(1)) + 7
                if len(self.buf) >= end:
                    raw, self.buf = self.buf[m.start():end], self.buf[end:]
                    return raw
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(1 << 16)
            except (TimeoutError, OSError):
                return None
            if not data:
                return None
            self.buf += data

    def answer_admin(self, raw: bytes) -> None:
        if b"\x0135=1\x01" in raw:  # TestRequest
            test_id = re.search(rb"\x01112=([^\x01]*)\x01", raw)
            self.sock.sendall(_frame(self.sender, self.seq, "0", [(112, test_id.group(1).decode() if test_id else "")]))
            self.seq += 1

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _quiet_orders(client: _Client, until, rate: float, tag: str, latencies: list[float]) -> None:
    """Orders one at a time (at most ``rate`` per second) while ``until()`` is false."""
    interval = 1.0 / rate
    n = 0
    next_at = time.perf_counter()
    while not until():
        now = time.perf_counter()
        if now < next_at:
            time.sleep(next_at - now)
        n += 1
        cl = f"Q{tag}-{n}".encode()
        raw = _order(client.sender, client.seq, cl.decode(), "DEMO1-ACC", "1", "50000")
        client.seq += 1
        t0 = time.perf_counter()
        client.sock.sendall(raw)
        next_at = t0 + interval
        while True:
            frame = client.next_frame(30.0)
            if frame is None:
                raise click.ClickException("the quiet session lost its connection or got no acknowledgement")
            if b"\x0135=8\x01" in frame and b"\x0111=" + cl + b"\x01" in frame:
                latencies.append(time.perf_counter() - t0)
                break
            client.answer_admin(frame)


def _flooder(port: int, data_dir: str, count: int, ready, go, result_q) -> None:
    """Child process: log DEMO2 on, then write ``count`` orders as fast as the socket takes them."""
    try:
        client = _Client(port, Path(data_dir), "DEMO2")
        orders = b"".join(_order("DEMO2", client.seq + i, f"F{os.getpid()}-{i}", "DEMO2-ACC", "1", "40000")
                          for i in range(count))
        stats = {"rejects_throttled": 0, "acks": 0, "logout": None}

        def drain() -> None:
            while True:
                frame = client.next_frame(60.0)
                if frame is None:
                    return
                if b"\x0135=8\x01" in frame:
                    stats["acks"] += 1
                    if b"\x017001=17\x01" in frame:
                        stats["rejects_throttled"] += 1
                elif b"\x0135=5\x01" in frame:
                    text = re.search(rb"\x0158=([^\x01]*)\x01", frame)
                    stats["logout"] = text.group(1).decode() if text else ""

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        ready.set()
        go.wait()
        t0 = time.perf_counter()
        sent = 0
        view = memoryview(orders)
        client.sock.settimeout(60)
        try:
            while sent < len(orders):
                sent += client.sock.send(view[sent:sent + (1 << 16)])
        except OSError:
            pass  # the venue closed the connection (logged out)
        write_s = time.perf_counter() - t0
        reader.join(60)
        written = orders[:sent].count(b"\x0110=")
        result_q.put({**stats, "written": written, "write_s": write_s, "closed_s": time.perf_counter() - t0})
        client.close()
    except Exception as exc:  # pragma: no cover - reported to the parent
        result_q.put({"error": repr(exc)})
        ready.set()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


def _figures(latencies: list[float]) -> dict:
    return {"n": len(latencies), "p50_ms": _pct(latencies, 0.5), "p99_ms": _pct(latencies, 0.99),
            "max_ms": max(latencies) * 1000, "mean_ms": statistics.fmean(latencies) * 1000}


def _start_venue(data_dir: Path) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "serve", "--data-dir", str(data_dir), "--port", str(port)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        if "venue listening on" in line:
            break
        if time.monotonic() > deadline:
            break
    else:
        raise click.ClickException("the venue did not start")
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, port


def run(orders: int, flood: int, rounds: int, rate: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="venue-bench-flood-") as tmp:
        data_dir = Path(tmp) / "data"
        proc, port = _start_venue(data_dir)
        try:
            quiet = _Client(port, data_dir, "DEMO1")
            warm: list[float] = []
            _quiet_orders(quiet, lambda: len(warm) >= 20, rate, "W", warm)
            alone: list[float] = []
            cpu0, t0 = _cpu_seconds(proc.pid), time.perf_counter()
            _quiet_orders(quiet, lambda: len(alone) >= orders, rate, "A", alone)
            cpu_alone, alone_s = _cpu_seconds(proc.pid) - cpu0, time.perf_counter() - t0
            flooded: list[float] = []
            floods = []
            ctx = mp.get_context("spawn")
            cpu_flood = flood_s = 0.0
            for r in range(rounds):
                ready, go, result_q = ctx.Event(), ctx.Event(), ctx.Queue()
                child = ctx.Process(target=_flooder, args=(port, str(data_dir), flood, ready, go, result_q))
                child.start()
                ready.wait(120)
                cpu0, t0 = _cpu_seconds(proc.pid), time.perf_counter()
                go.set()
                done = lambda child=child, q=result_q: not child.is_alive() or not q.empty()  # noqa: E731
                _quiet_orders(quiet, done, rate, f"F{r}", flooded)
                res = result_q.get(timeout=120)
                cpu_flood += _cpu_seconds(proc.pid) - cpu0
                flood_s += time.perf_counter() - t0
                child.join(30)
                if "error" in res:
                    raise click.ClickException(f"flooder: {res['error']}")
                floods.append(res)
            quiet.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    if not flooded:
        raise click.ClickException("no quiet order was acknowledged during the floods")
    written = sum(f["written"] for f in floods)
    a, f = _figures(alone), _figures(flooded)
    return {
        "alone": a, "flooded": f, "p99_ratio": f["p99_ms"] / a["p99_ms"],
        "quiet_rate_per_s": rate, "flood_orders": flood, "rounds": rounds, "floods": floods,
        "venue_cpu_us_per_quiet_order_alone": cpu_alone / len(alone) * 1e6,
        # the venue's CPU during the floods beyond what the quiet session alone costs it
        "venue_cpu_us_per_flood_order": max(0.0, cpu_flood - cpu_alone / alone_s * flood_s) / max(1, written) * 1e6,
        "venue_cpu_s_alone": cpu_alone, "alone_s": alone_s, "venue_cpu_s_floods": cpu_flood, "floods_s": flood_s,
        "flood_orders_written": written,
    }


@click.command("flood")
@click.option("--orders", default=200, show_default=True, help="Quiet orders timed alone.")
@click.option("--flood", default=20_000, show_default=True, help="Orders the flooding session writes per round.")
@click.option("--rounds", default=3, show_default=True, help="Floods (the quiet session is timed during each).")
@click.option("--rate", default=40.0, show_default=True,
              help="Quiet orders per second (under the demo throttle of 50/s).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def command(orders: int, flood: int, rounds: int, rate: float, as_json: bool) -> None:
    """Quiet session's acknowledgement latency, alone and while another session floods."""
    result = run(orders, flood, rounds, rate)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    a, f = result["alone"], result["flooded"]
    click.echo(f"quiet session: one order at a time, {rate:g}/s; flood: {rounds} x {flood} orders as fast as possible")
    for name, x in (("alone", a), ("flooded", f)):
        click.echo(f"{name:>8}: {x['n']:5d} acks  p50 {x['p50_ms']:7.2f} ms  p99 {x['p99_ms']:7.2f} ms  "
                   f"max {x['max_ms']:7.2f} ms")
    click.echo(f"p99 flooded / alone: {result['p99_ratio']:.1f}x")
    for i, fl in enumerate(result["floods"], 1):
        click.echo(f"flood {i}: {fl['written']} orders written in {fl['write_s']:.2f} s, "
                   f"{fl['rejects_throttled']} throttled rejects, {fl['acks']} reports, "
                   f"logout {fl['logout']!r}, connection closed after {fl['closed_s']:.2f} s")
    click.echo(f"venue CPU: {result['venue_cpu_us_per_quiet_order_alone']:.0f} us per quiet order (alone), "
               f"{result['venue_cpu_us_per_flood_order']:.1f} us per flood order written "
               "(beyond the quiet baseline)")
