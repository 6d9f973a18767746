"""``venue certify``: the certification acceptor (echo application) and the script runner."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import tempfile
from pathlib import Path

import click

CHECKOUT = Path(__file__).resolve().parents[1]
#: The standard FIX 4.4 dictionary the repository ships (QuickFIX's FIX44.xml).
DEFAULT_DICTIONARY = CHECKOUT / "config" / "FIX44.xml"
#: The venue's own session-layer scenarios (always in the repository).
VENUE_SCRIPTS = CHECKOUT / "certification" / "venue-fix44"
#: QuickFIX's acceptance scripts, present only where the project is developed (``../shared``).
QUICKFIX_SCRIPTS = CHECKOUT.parent / "shared" / "certification" / "quickfix-fix44"
CERT_CLIENTS = ("TW44", "TW", "NO_CHECK_FIELDS_HAVE_VALUES")


def certification_lookup(begin: str, ours: str, theirs: str):
    """The sessions QuickFIX's acceptance suite assumes (certification/venue-fix44/README.md):
    ISLD <-> TW44 / TW / NO_CHECK_FIELDS_HAVE_VALUES, FIX.4.4, ResetOnLogon=Y, MaxLatency 120 s."""
    from fix.session import SessionConfig

    if begin != "FIX.4.4" or ours != "ISLD" or theirs not in CERT_CLIENTS:
        return None
    return SessionConfig(
        sender_comp_id="ISLD",
        target_comp_id=theirs,
        reset_on_logon=True,
        validate_fields_have_values=theirs != "NO_CHECK_FIELDS_HAVE_VALUES",
    )


async def serve_certification(host: str, port: int, dictionary: Path, data_dir: Path, log_dir: Path | None,
                              ready=None) -> None:
    from fix.acceptor import Acceptor
    from fix.dictionary import DataDictionary
    from fix.log import log_factory
    from sessions.echo import EchoApplication
    from venue.db import make_engine, sqlite_url

    engine = make_engine(sqlite_url(data_dir))
    acceptor = Acceptor(certification_lookup, EchoApplication(), engine,
                        dictionary=DataDictionary.load(dictionary), log_factory=log_factory(log_dir))
    bound = await acceptor.start(host, port)
    click.echo(f"certification acceptor listening on {host}:{bound} (ISLD; {', '.join(CERT_CLIENTS)})")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals on this platform
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await acceptor.stop(timeout=2.0)
    await engine.dispose()


@click.group()
def certify() -> None:
    """FIX session-layer certification: the venue's own scripts (certification/venue-fix44) and,
    where they are present, QuickFIX's acceptance scripts (../shared/certification/quickfix-fix44)."""


@certify.command("acceptor")
@click.option("--port", type=int, required=True, help="TCP port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--dictionary", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=DEFAULT_DICTIONARY, show_default=True, help="FIX 4.4 data dictionary (QuickFIX XML).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the SQLite message store lives (default: a fresh temporary directory).")
@click.option("--log-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Per-session message logs (default: <data-dir>/fixlog).")
@click.option("--verbose", is_flag=True, help="Session events to stderr.")
def acceptor_cmd(port: int, host: str, dictionary: Path, data_dir: Path | None, log_dir: Path | None,
                 verbose: bool) -> None:
    """Run the acceptor the certification scripts expect (echo application)."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tmp = None
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="venue-certify-")
        data_dir = Path(tmp.name)
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        asyncio.run(serve_certification(host, port, dictionary, data_dir, log_dir or data_dir / "fixlog"))
    finally:
        if tmp is not None:
            tmp.cleanup()


@certify.command("run")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, required=True)
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a JUnit XML report here.")
@click.option("--fields-fmt", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Patterns for free fields (default: fields.fmt beside the first script, else built in).")
@click.option("--timeout", type=float, default=65.0, show_default=True,
              help="Seconds to wait for each expected message.")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def run_cmd(host: str, port: int, junit: Path | None, fields_fmt: Path | None, timeout: float,
            files: tuple[Path, ...]) -> None:
    """Run certification scripts (FILES; default: the venue's own, certification/venue-fix44/*.def)
    against an acceptor; exit 0 only if all pass."""
    from fix.scenario import Result, Runner, junit_xml, load_formats

    if not files:
        files = tuple(sorted(VENUE_SCRIPTS.glob("*.def")))
        if not files:
            raise click.ClickException(f"no scripts given and none in {VENUE_SCRIPTS}")
    paths = [p for p in files if p.suffix == ".def"] or list(files)
    fmt = fields_fmt or (paths[0].parent / "fields.fmt")
    runner = Runner(host, port, formats=load_formats(fmt), expect_timeout=timeout)

    def progress(i: int, n: int, r: Result) -> None:
        if r.passed:
            click.echo(f"[{i}/{n}] PASS {r.name} ({r.seconds:.1f} s)")
        else:
            click.echo(f"[{i}/{n}] FAIL {r.name} line {r.line}: {r.message}")
        sys.stdout.flush()

    results = asyncio.run(runner.run_files(paths, progress))
    if junit is not None:
        junit.write_text(junit_xml(results))
    passed = sum(1 for r in results if r.passed)
    failed = len(results) - passed
    click.echo(f"{passed} passed, {failed} failed")
    sys.exit(0 if failed == 0 else 1)


commands = [certify]
