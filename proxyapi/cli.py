"""Command-line tools: hash a client key, check a config file without serving, manage keys.

Run as ``python -m proxyapi hash-key`` / ``python -m proxyapi check-config [PATH]`` /
``python -m proxyapi keys create --name ...``, or through Flask as ``flask --app wsgi hash-key``.
"""

from __future__ import annotations

import sys

import click
from flask import Flask

from proxyapi.config import ConfigError, load_config
from proxyapi.config.values import hash_key
from proxyapi.keys.cli import keys_command


@click.command("hash-key")
@click.argument("key", required=False)
def hash_key_command(key: str | None) -> None:
    """Print the SHA-256 digest to put in auth.keys[].sha256.

    The key is read from the argument, else from standard input (piped or typed hidden), so it
    need not land in the shell history.
    """
    if key is None:
        key = click.prompt("Key", hide_input=True) if sys.stdin.isatty() else sys.stdin.readline()
    key = (key or "").strip()
    if not key:
        raise click.UsageError("the key is empty")
    click.echo(hash_key(key))


@click.command("check-config")
@click.argument("path", required=False)
def check_config_command(path: str | None) -> None:
    """Load and validate a config file (default: PROXYAPI_CONFIG, ./proxyapi.yaml or env)."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        click.echo(f"config error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"config OK ({config.source})")
    names = ", ".join(k.name for k in config.auth.keys) or "none: every request will be refused"
    click.echo(f"  keys: {names}")
    for p in sorted(config.providers, key=lambda p: p.priority):
        secret = "key from $" + p.api_key_env if p.api_key_env else "no key"
        click.echo(
            f"  provider {p.name}: type={p.type} base_url={p.base_url} priority={p.priority} "
            f"({secret}) models={', '.join(p.models)}"
        )
    if not config.providers:
        click.echo("  providers: none: every model will be 404")


@click.group()
def main() -> None:
    """ProxyAPI command-line tools."""


main.add_command(hash_key_command)
main.add_command(check_config_command)
main.add_command(keys_command)


def init_app(app: Flask) -> None:
    """Expose the tools as ``flask --app wsgi <command>``."""
    app.cli.add_command(hash_key_command)
    app.cli.add_command(check_config_command)
    app.cli.add_command(keys_command)
