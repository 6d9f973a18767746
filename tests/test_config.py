"""Configuration: shipped defaults < --config file < VENUE_* environment < flags."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

from tests.venue_proc import ROOT
from venue import config


def test_shipped_defaults_listen_on_loopback_9876_with_sqlite():
    cfg = config.load(env={})
    assert (cfg["fix"]["host"], cfg["fix"]["port"]) == ("127.0.0.1", 9876)
    assert config.database_url(cfg).startswith("sqlite+aiosqlite:///")
    assert cfg["venue"]["comp_id"] == "VENUE"


def test_every_shipped_setting_is_commented():
    lines = config.DEFAULT_FILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.lstrip().startswith("#"):
            assert lines[i - 1].lstrip().startswith("#"), f"setting without a comment: {line}"


def test_a_config_file_overrides_the_defaults(tmp_path):
    f = tmp_path / "venue.toml"
    f.write_text('[fix]\nport = 10001\n[mqtt]\nurl = "mqtt://127.0.0.1:1883"\n')
    cfg = config.load(f, env={})
    assert cfg["fix"]["port"] == 10001 and cfg["mqtt"]["url"] == "mqtt://127.0.0.1:1883"
    assert cfg["fix"]["host"] == "127.0.0.1"


def test_environment_overrides_the_file_and_flags_override_both(tmp_path):
    f = tmp_path / "venue.toml"
    f.write_text("[fix]\nport = 10001\n")
    cfg = config.load(f, env={"VENUE_FIX_PORT": "10002", "VENUE_DATABASE_URL": "postgresql://x@h/db"})
    assert cfg["fix"]["port"] == 10002
    assert config.database_url(cfg) == "postgresql://x@h/db"
    cfg = config.load(f, env={"VENUE_FIX_PORT": "10002"}, overrides={"fix": {"port": 10003}})
    assert cfg["fix"]["port"] == 10003


@pytest.mark.parametrize("text, message", [
    ("[fix]\nprot = 1\n", "unknown setting 'prot'"),
    ("[fix]\nport = \"abc\"\n", "expected an integer"),
    ("[fix\n", "venue.toml"),
])
def test_a_bad_config_file_is_refused_with_the_reason(tmp_path, text, message):
    f = tmp_path / "venue.toml"
    f.write_text(text)
    with pytest.raises(config.ConfigError, match=message):
        config.load(f, env={})


def test_a_bad_environment_value_is_refused():
    with pytest.raises(config.ConfigError, match="VENUE_FIX_PORT"):
        config.load(env={"VENUE_FIX_PORT": "many"})


def test_config_show_prints_the_effective_configuration_as_toml(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tools.cli", "config", "show"], cwd=ROOT, capture_output=True,
                         text=True, env={"VENUE_FIX_PORT": "10004", "PATH": ""}, timeout=60)
    assert out.returncode == 0, out.stderr
    shown = tomllib.loads(out.stdout)
    assert shown["fix"]["port"] == 10004 and shown["venue"]["data_dir"] == "var"


def test_serve_with_a_missing_config_file_exits_nonzero_with_a_message(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tools.cli", "serve", "--config", str(tmp_path / "nope.toml")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "configuration file not found" in out.stderr
