"""Configuration: the shipped TOML, an optional file, environment variables, then flags."""

from __future__ import annotations

import copy
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_FILE = Path(__file__).resolve().parent.parent / "config" / "venue.toml"
ENV_PREFIX = "VENUE_"


class ConfigError(ValueError):
    """A configuration file or override that cannot be used."""


def _merge(base: dict[str, Any], extra: Mapping[str, Any], where: str) -> None:
    for key, value in extra.items():
        if key not in base:
            raise ConfigError(f"{where}: unknown setting {key!r}")
        if isinstance(base[key], dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: {key!r} must be a table")
            _merge(base[key], value, f"{where}.{key}")
        else:
            base[key] = _coerce(base[key], value, f"{where}.{key}")


def _coerce(default: Any, value: Any, where: str) -> Any:
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if isinstance(default, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if isinstance(default, int):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    return str(value)


def load(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The effective configuration as nested dicts."""
    with open(DEFAULT_FILE, "rb") as f:
        cfg = tomllib.load(f)
    if path is not None:
        try:
            with open(path, "rb") as f:
                _merge(cfg, tomllib.load(f), str(path))
        except FileNotFoundError:
            raise ConfigError(f"configuration file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    env = os.environ if env is None else env
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX):].lower()
        for section in cfg:
            if rest.startswith(section + "_"):
                key = rest[len(section) + 1:]
                if key in cfg[section]:
                    cfg[section][key] = _coerce(cfg[section][key], value, name)
                    break
    if overrides:
        _merge(cfg, {s: {k: v for k, v in kv.items() if v is not None} for s, kv in overrides.items()}, "flag")
    return cfg


def database_url(cfg: Mapping[str, Any]) -> str:
    from venue.db import sqlite_url

    return cfg["database"]["url"] or sqlite_url(cfg["venue"]["data_dir"])


def to_toml(cfg: Mapping[str, Any]) -> str:
    """Render the (two-level) configuration back as TOML."""
    out: list[str] = []
    for section, values in cfg.items():
        out.append(f"[{section}]")
        for key, value in values.items():
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, int | float):
                text = str(value)
            else:
                text = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
            out.append(f"{key} = {text}")
        out.append("")
    return "\n".join(out)


def copy_of(cfg: Mapping[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(dict(cfg))
