"""The command-line tools."""

from __future__ import annotations

from typing import Any

from click.testing import CliRunner

from proxyapi.auth import hash_key
from proxyapi.cli import main


def test_hash_key_from_argument_and_stdin() -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["hash-key", "my-key"]).output.strip() == hash_key("my-key")
    result = runner.invoke(main, ["hash-key"], input="my-key\n")
    assert result.exit_code == 0 and result.output.strip() == hash_key("my-key")


def test_hash_key_refuses_empty() -> None:
    result = CliRunner().invoke(main, ["hash-key"], input="\n")
    assert result.exit_code != 0 and "empty" in result.output


def test_check_config_reports_ok_without_secrets(tmp_config: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("UP_SECRET", "sk-do-not-print")
    path = tmp_config(
        "auth:\n  keys:\n    - {name: alice, sha256: " + hash_key("x") + "}\n"
        "providers:\n  - {name: up, base_url: 'http://h/v1', models: [m], api_key_env: UP_SECRET}\n"
    )
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code == 0, result.output
    assert (
        "config OK" in result.output and "alice" in result.output and "$UP_SECRET" in result.output
    )
    assert "sk-do-not-print" not in result.output and hash_key("x") not in result.output


def test_check_config_names_the_bad_key(tmp_config: Any) -> None:
    path = tmp_config(
        "providers:\n  - {name: up, base_url: 'http://h/v1', models: [m], priority: high}\n"
    )
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code == 1
    assert "providers[0] (up).priority must be a whole number, got 'high'" in result.output
