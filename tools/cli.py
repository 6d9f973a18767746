"""The ``venue`` command: one click group with a subcommand or group per operator task.

Each task lives in its own ``tools/cmd_*.py`` module exposing ``commands`` (a list of click
commands/groups); they are registered here.
"""

from __future__ import annotations

import importlib
import pkgutil

import click

import tools


@click.group()
@click.version_option(package_name="venue")
def main() -> None:
    """Operate the trading venue."""


def _register() -> None:
    for mod in sorted(m.name for m in pkgutil.iter_modules(tools.__path__) if m.name.startswith("cmd_")):
        module = importlib.import_module(f"tools.{mod}")
        for command in getattr(module, "commands", []):
            main.add_command(command)


_register()
main.add_command(importlib.import_module("tools.loadgen").command)  # `venue loadgen`: the load generator


if __name__ == "__main__":
    main()
