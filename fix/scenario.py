"""Certification scripts (QuickFIX's ``.def`` grammar): parser and a TCP runner.

Grammar (one directive per line, ``#`` comments): ``iCONNECT``, ``iDISCONNECT``, ``eDISCONNECT``,
``I<message>`` (send), ``E<message>`` (expect); ``N,`` after the first letter selects connection N.
``<TIME>``, ``<TIME+n>``, ``<TIME-n>`` are UTC seconds timestamps. A message without ``9=`` gets its
BodyLength inserted, one without a trailing ``10=`` its CheckSum appended. Comparison: same tags in
the same order; tags listed in ``fields.fmt`` (10, 42, 52, 60, 122) only have to match their pattern.
Deliberately independent of ``fix.codec`` so that it checks the engine rather than itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SOH = "\x01"
DEFAULT_FORMATS = {
    10: r"\d{3}",
    42: r"\d{8}-\d{2}:\d{2}:\d{2}",
    52: r"\d{8}-\d{2}:\d{2}:\d{2}|\d{8}-\d{2}:\d{2}:\d{2}[.]\d{3}",
    60: r"\d{8}-\d{2}:\d{2}:\d{2}",
    122: r"\d{8}-\d{2}:\d{2}:\d{2}",
}
_TIME = re.compile(r"<TIME([+-]\d+)?>")
_DIRECTIVE = re.compile(r"^([iIeE])(?:(\d+),)?(.*)$", re.S)
_FRAME_HEAD = re.compile(rb"8=[^\x01]{1,16}\x019=(\d{1,7})\x01")


@dataclass(slots=True)
class Step:
    line: int
    action: str  # connect | disconnect | expect_disconnect | send | expect
    conn: int
    text: str = ""


@dataclass(slots=True)
class Result:
    name: str
    passed: bool
    line: int = 0
    message: str = ""
    seconds: float = 0.0


def parse_script(text: str) -> list[Step]:
    """Parse a ``.def`` script into steps (raises ``ValueError`` on an unknown directive)."""
    steps: list[Step] = []
    for no, raw_line in enumerate(text.split("\n"), 1):
        line = raw_line.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _DIRECTIVE.match(line)
        if m is None:
            raise ValueError(f"line {no}: unknown directive {line[:40]!r}")
        kind, conn_s, rest = m.groups()
        conn = int(conn_s) if conn_s else 1
        if kind in "ie":
            word = rest.strip().upper()
            if word not in ("CONNECT", "DISCONNECT") or (kind == "e" and word == "CONNECT"):
                raise ValueError(f"line {no}: unknown directive {line[:40]!r}")
            action = {"iCONNECT": "connect", "iDISCONNECT": "disconnect", "eDISCONNECT": "expect_disconnect"}[
                kind + word]
            steps.append(Step(no, action, conn))
        else:
            steps.append(Step(no, "send" if kind == "I" else "expect", conn, rest))
    return steps


def load_formats(path: Path | None) -> dict[int, re.Pattern[str]]:
    """Tag -> pattern from a ``fields.fmt`` file (``tag=regex`` per line), or the defaults."""
    formats = dict(DEFAULT_FORMATS)
    if path is not None and path.exists():
        formats = {}
        for line in path.read_text().splitlines():
            tag, sep, pattern = line.partition("=")
            if sep and tag.strip().isdigit():
                formats[int(tag)] = pattern.strip()
    return {tag: re.compile(p) for tag, p in formats.items()}


def _fix_time(now: float) -> str:
    return time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(now))


def prepare(message: str, now: float) -> bytes:
    """Substitute times, insert BodyLength and append CheckSum as the grammar says."""
    text = _TIME.sub(lambda m: _fix_time(now + int(m.group(1) or 0)), message)
    if text and not text.endswith(SOH):
        text += SOH
    data = text.encode("latin-1")
    if not data.startswith(b"8="):
        return data
    first = data.index(b"\x01") + 1
    has_len = data[first:first + 2] == b"9="
    cks_at = data.rfind(b"\x0110=")
    has_cks = cks_at >= 0 and data.find(b"\x01", cks_at + 1) == len(data) - 1
    if not has_len:
        if has_cks:
            body = data[first:cks_at]
        else:
            body = data[first:]
        data = data[:first] + b"9=%d\x01" % len(body) + data[first:]
    if not has_cks:
        data += b"10=%03d\x01" % (sum(data) & 0xFF)
    return data


def _fields(frame: bytes) -> list[tuple[str, str]]:
    out = []
    for part in frame.decode("latin-1").split(SOH):
        if part:
            tag, _, value = part.partition("=")
            out.append((tag, value))
    return out


def compare(expected: bytes, received: bytes, formats: dict[int, re.Pattern[str]]) -> str | None:
    """None if they match; otherwise a description of the first difference."""
    exp, got = _fields(expected), _fields(received)
    for i in range(max(len(exp), len(got))):
        e = exp[i] if i < len(exp) else None
        g = got[i] if i < len(got) else None
        if e is None or g is None or e[0] != g[0]:
            return f"field {i + 1}: expected {_show(e)}, received {_show(g)}"
        pattern = formats.get(int(e[0])) if e[0].lstrip("-").isdigit() else None
        if pattern is not None:
            if pattern.match(g[1]) is None:
                return f"field {i + 1}: received {_show(g)} does not match {pattern.pattern}"
        elif e[1] != g[1]:
            return f"field {i + 1}: expected {_show(e)}, received {_show(g)}"
    return None


def _show(field: tuple[str, str] | None) -> str:
    return "nothing" if field is None else f"{field[0]}={field[1]}"


def printable(frame: bytes) -> str:
    return frame.decode("latin-1").replace(SOH, "|")


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buf = b""
        self.eof = False

    async def read_frame(self, timeout: float) -> bytes | None:
        """The next frame, or None on EOF; raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            m = _FRAME_HEAD.search(self.buf)
            if m is not None:
                end = m.end() + int(m.group(1))
                close = self.buf.find(b"\x01", end + 3)
                if self.buf[end:end + 3] == b"10=" and close >= 0:
                    frame = self.buf[m.start():close + 1]
                    self.buf = self.buf[close + 1:]
                    return frame
                if len(self.buf) > end + 16 and self.buf[end:end + 3] != b"10=":
                    # malformed: hand back up to the first trailer so the caller sees something
                    t = self.buf.find(b"\x0110=", m.end())
                    c = self.buf.find(b"\x01", t + 4) if t >= 0 else -1
                    if c >= 0:
                        frame = self.buf[m.start():c + 1]
                        self.buf = self.buf[c + 1:]
                        return frame
            if self.eof:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), left)
            except (ConnectionError, OSError):
                chunk = b""
            if not chunk:
                self.eof = True
            self.buf += chunk

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already closed
            self.writer.close()

    async def close_and_wait(self, timeout: float = 2.0) -> None:
        """Close our side and wait (briefly) for the acceptor to close its side too, so that the
        next script never races the acceptor's handling of this disconnect."""
        deadline = time.monotonic() + timeout
        try:
            if self.writer.can_write_eof():
                self.writer.write_eof()
            while not self.eof and time.monotonic() < deadline:
                chunk = await asyncio.wait_for(self.reader.read(65536), deadline - time.monotonic())
                if not chunk:
                    break
        except (TimeoutError, ConnectionError, OSError):
            pass  # the acceptor closed or went quiet: what arrived so far is the answer
        self.close()


@dataclass(slots=True)
class Runner:
    """Runs scripts against an acceptor at ``host:port``."""

    host: str
    port: int
    formats: dict[int, re.Pattern[str]] = field(default_factory=lambda: load_formats(None))
    expect_timeout: float = 65.0  # long enough for a heartbeat at HeartBtInt=60 (+20%)
    disconnect_timeout: float = 10.0
    connect_timeout: float = 5.0

    async def probe(self) -> None:
        """Connect and close without sending anything (the acceptor must shrug it off)."""
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.connect_timeout)
            writer.close()
        except (TimeoutError, OSError):
            pass  # the probe only checks the acceptor shrugs off connect-and-close; a refusal is its answer

    async def run_file(self, path: Path) -> Result:
        start = time.monotonic()
        try:
            steps = parse_script(path.read_text(encoding="latin-1"))
        except ValueError as exc:
            return Result(path.name, False, 0, str(exc))
        await self.probe()
        result = await self.run_steps(path.name, steps)
        result.seconds = time.monotonic() - start
        return result

    async def run_steps(self, name: str, steps: list[Step]) -> Result:
        conns: dict[int, _Conn] = {}
        try:
            for step in steps:
                error = await self._step(step, conns)
                if error is not None:
                    return Result(name, False, step.line, error)
            return Result(name, True)
        finally:
            for conn in conns.values():
                await conn.close_and_wait()

    async def _step(self, step: Step, conns: dict[int, _Conn]) -> str | None:
        conn = conns.get(step.conn)
        if step.action == "connect":
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), self.connect_timeout)
            except (TimeoutError, OSError) as exc:
                return f"cannot connect: {exc}"
            conns[step.conn] = _Conn(reader, writer)
            return None
        if conn is None:
            return f"connection {step.conn} is not open"
        if step.action == "disconnect":
            del conns[step.conn]
            await conn.close_and_wait()
            return None
        if step.action == "send":
            data = prepare(step.text, time.time())
            try:
                conn.writer.write(data)
                await conn.writer.drain()
            except (ConnectionError, OSError):
                pass  # the acceptor may legitimately have closed already; expectations will tell
            return None
        if step.action == "expect_disconnect":
            try:
                frame = await conn.read_frame(self.disconnect_timeout)
            except TimeoutError:
                return f"expected disconnect within {self.disconnect_timeout:g} s, connection still open"
            conn.close()
            del conns[step.conn]
            if frame is not None:
                return f"expected disconnect, received {printable(frame)}"
            return None
        expected = prepare(step.text, time.time())
        try:
            frame = await conn.read_frame(self.expect_timeout)
        except TimeoutError:
            return f"expected {printable(expected)}, received nothing within {self.expect_timeout:g} s"
        if frame is None:
            return f"expected {printable(expected)}, received disconnect"
        diff = compare(expected, frame, self.formats)
        if diff is not None:
            return f"{diff}; expected {printable(expected)}, received {printable(frame)}"
        return None

    async def run_files(self, paths: list[Path], progress: Callable[[int, int, Result], None] | None = None
                        ) -> list[Result]:
        results = []
        for i, path in enumerate(paths, 1):
            result = await self.run_file(path)
            results.append(result)
            if progress is not None:
                progress(i, len(paths), result)
        return results


def junit_xml(results: list[Result], suite: str = "fix-certification") -> str:
    from xml.sax.saxutils import escape, quoteattr

    failures = sum(1 for r in results if not r.passed)
    total = sum(r.seconds for r in results)
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<testsuite name={quoteattr(suite)} tests="{len(results)}" failures="{failures}" '
           f'errors="0" time="{total:.3f}">']
    for r in results:
        head = f'  <testcase classname={quoteattr(suite)} name={quoteattr(r.name)} time="{r.seconds:.3f}"'
        if r.passed:
            out.append(head + "/>")
        else:
            text = f"line {r.line}: {r.message}"
            out.append(head + ">")
            out.append(f"    <failure message={quoteattr(text[:500])}>{escape(text)}</failure>")
            out.append("  </testcase>")
    out.append("</testsuite>")
    return "\n".join(out) + "\n"
