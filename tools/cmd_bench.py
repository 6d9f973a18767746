"""``venue bench``: benchmarks that print figures (one subcommand per ``tools/bench_*.py``)."""

from __future__ import annotations

import importlib
import pkgutil

import click

import tools


@click.group()
def bench() -> None:
    """Run a benchmark and print its figures."""


for _m in sorted(m.name for m in pkgutil.iter_modules(tools.__path__) if m.name.startswith("bench_")):
    _cmd = getattr(importlib.import_module(f"tools.{_m}"), "command", None)
    if _cmd is not None:
        bench.add_command(_cmd)

commands = [bench]
