"""``venue serve`` and ``venue config show``."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import click

from venue import config as vconfig
from venue.lock import VenueLocked


def _load(config_file: str | None, **flags) -> dict:
    overrides = {"venue": {"data_dir": flags.pop("data_dir", None)},
                 "fix": {"host": flags.pop("host", None), "port": flags.pop("port", None)}}
    try:
        return vconfig.load(config_file, overrides=overrides)
    except vconfig.ConfigError as exc:
        raise click.ClickException(str(exc)) from None


_UNSAFE = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]}
_UNSAFE.update({0x2028: "\\u2028", 0x2029: "\\u2029"})


class OneLineFormatter(logging.Formatter):
    """Every record is one line: control characters and line separators in the message (a client's
    Logout Text, a CompID, anything a peer chose) are escaped, so nobody can forge a line of the
    venue's log. Tracebacks keep their own lines: they come from the venue, never from a peer."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = record.message.translate(_UNSAFE)
        return super().formatMessage(record)


def setup_logging(cfg: dict) -> None:
    data_dir = Path(cfg["venue"]["data_dir"])
    data_dir.mkdir(parents=True, exist_ok=True)
    level = getattr(logging, str(cfg["logging"]["level"]).upper(), logging.INFO)
    fmt = OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(level)
    for handler in (logging.StreamHandler(sys.stderr), logging.FileHandler(data_dir / "venue.log")):
        handler.setFormatter(fmt)
        root.addHandler(handler)


@click.command()
@click.option("--data-dir", type=click.Path(file_okay=False), help="Data directory (default ./var).")
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="FIX port (default 9876).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="A TOML file over the defaults.")
@click.option("--no-fix", is_flag=True,
              help="Open no FIX port: the venue still carries out operator requests, custody and its timers "
                   "(GTD expiry, KYC), e.g. during maintenance.")
def serve(data_dir, host, port, config_file, no_fix) -> None:
    """Run the venue until SIGINT/SIGTERM."""
    from tools.wiring import serve as run

    cfg = _load(config_file, data_dir=data_dir, host=host, port=port)
    setup_logging(cfg)

    def ready(v) -> None:
        where = "running without FIX" if no_fix else f"listening on {cfg['fix']['host']}:{v.port}"
        click.echo(f"venue {where} (data in {Path(cfg['venue']['data_dir']).resolve()}, "
                   f"database {v.engine.dialect.name})", err=False)
        sys.stdout.flush()

    try:
        asyncio.run(run(cfg, ready, fix=not no_fix))
    except VenueLocked as exc:
        raise click.ClickException(f"cannot start: {exc}") from None
    except OSError as exc:
        raise click.ClickException(f"cannot start: {exc}") from None
    click.echo("venue stopped")


@click.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("show")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="A TOML file over the defaults.")
@click.option("--data-dir", type=click.Path(file_okay=False))
def show(config_file, data_dir) -> None:
    """Print the effective configuration (defaults < file < VENUE_* environment < flags)."""
    click.echo(vconfig.to_toml(_load(config_file, data_dir=data_dir)), nl=False)


commands = [serve, config_group]
