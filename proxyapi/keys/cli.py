"""``python -m proxyapi keys ...``: manage keys from a shell, against the store directly.

The same operations as ``/v1/admin/keys`` (:class:`~proxyapi.keys.manager.ManagedKeys`), with
the same checks and audit entries (actor ``cli:<user>``), for a host where the gateway runs or
any machine that reaches its Redis. The config (``--config``, else as the gateway finds it)
says where the store is.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from proxyapi import redis_client
from proxyapi.config import ConfigError, load_config
from proxyapi.errors import ProxyAPIError
from proxyapi.keys.manager import ManagedKeys
from proxyapi.keys.setup import build

T = TypeVar("T")
config_option = click.option(
    "--config", "config_path", help="The config file (default: as the gateway finds it)."
)


def _open(config_path: str | None) -> ManagedKeys:
    try:
        config = load_config(config_path)
        shared = redis_client.connect(config.redis) if config.redis.url else None
        keys = build(config, shared)
    except ConfigError as exc:
        raise click.ClickException(f"config error: {exc}") from None
    if keys is None:
        raise click.ClickException(
            "managed keys are off (auth.managed.enabled: false or store: none)"
        )
    return keys


def _run(action: Callable[[], T]) -> T:
    try:
        return action()
    except ProxyAPIError as exc:
        raise click.ClickException(str(exc.description)) from None


def _print(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _who() -> tuple[str, str]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}", "cli"


def _settings(
    model: tuple[str, ...],
    limit: tuple[str, ...],
    token_limit: tuple[str, ...],
    budget: tuple[str, ...],
    max_concurrent: int | None,
    max_tokens: int | None,
    admin: bool,
    ttl: str | None,
    expires_at: str | None,
    meta: tuple[str, ...],
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if model:
        body["models"] = list(model)
    if limit:
        body["limits"] = list(limit)
    if token_limit:
        body["token_limits"] = list(token_limit)
    if budget:
        budgets = []
        for text in budget:
            usd, _, period = text.partition("/")
            try:
                budgets.append({"usd": float(usd), "period": period})
            except ValueError:
                raise click.BadParameter(f"{text!r} is not USD/period, e.g. 50/month") from None
        body["budget"] = budgets
    if max_concurrent is not None:
        body["max_concurrent"] = max_concurrent
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if admin:
        body["admin"] = True
    if ttl is not None:
        body["ttl"] = int(ttl) if ttl.isdigit() else ttl
    if expires_at is not None:
        body["expires_at"] = expires_at
    if meta:
        pairs = [m.partition("=") for m in meta]
        if any(not sep for _, sep, _ in pairs):
            raise click.BadParameter("--meta takes KEY=VALUE")
        body["metadata"] = {k: v for k, _, v in pairs}
    return body


def _setting_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option("--model", multiple=True, help="A model glob the key may use (repeat)."),
            click.option("--limit", multiple=True, help='A request limit, e.g. "60/minute".'),
            click.option(
                "--token-limit", multiple=True, help='A token budget, e.g. "1000000/day".'
            ),
            click.option(
                "--budget", multiple=True, help="A money budget USD/period, e.g. 50/month."
            ),
            click.option("--max-concurrent", type=int, help="Requests in flight at most."),
            click.option("--max-tokens", type=int, help="The completion cap sent when none is."),
            click.option("--admin", is_flag=True, help="An admin key."),
            click.option("--ttl", help="Expire after seconds, or 30d, 12h, 15m."),
            click.option("--expires-at", help="Expire at an ISO 8601 time."),
            click.option("--meta", multiple=True, help="Metadata KEY=VALUE (repeat)."),
        ]
    ):
        f = option(f)
    return f


@click.group("keys")
def keys_command() -> None:
    """Create, list, show, change, rotate, revoke and delete managed keys."""


@keys_command.command("create")
@click.option("--name", required=True, help="The key's name (logs, metrics, usage).")
@_setting_options
@config_option
def create(config_path: str | None, name: str, **options: Any) -> None:
    """Make a key; its secret is printed once, as "key"."""
    keys = _open(config_path)
    view, plaintext = _run(lambda: keys.create({"name": name, **_settings(**options)}, *_who()))
    _print({**view, "key": plaintext})


@keys_command.command("list")
@config_option
def list_keys(config_path: str | None) -> None:
    """Every key: the config file's (read only) and the managed ones."""
    keys = _open(config_path)
    _print(_run(keys.listing))


@keys_command.command("show")
@click.argument("key_id")
@config_option
def show(config_path: str | None, key_id: str) -> None:
    keys = _open(config_path)
    _print(_run(lambda: keys.show(key_id)))


@keys_command.command("update")
@click.argument("key_id")
@_setting_options
@config_option
def update(config_path: str | None, key_id: str, **options: Any) -> None:
    """Change the settings given (the others are kept)."""
    keys = _open(config_path)
    _print(_run(lambda: keys.update(key_id, _settings(**options), *_who())))


@keys_command.command("rotate")
@click.argument("key_id")
@click.option("--grace", type=float, help="Seconds the old secret keeps working.")
@config_option
def rotate(config_path: str | None, key_id: str, grace: float | None) -> None:
    """Give a key a new secret (printed once, as "key")."""
    keys = _open(config_path)
    body = {} if grace is None else {"grace": grace}
    view, plaintext = _run(lambda: keys.rotate(key_id, body, *_who()))
    _print({**view, "key": plaintext})


@keys_command.command("revoke")
@click.argument("key_id")
@config_option
def revoke(config_path: str | None, key_id: str) -> None:
    keys = _open(config_path)
    _print(_run(lambda: keys.revoke(key_id, *_who())))


@keys_command.command("delete")
@click.argument("key_id")
@config_option
def delete(config_path: str | None, key_id: str) -> None:
    keys = _open(config_path)
    _run(lambda: keys.delete(key_id, *_who()))
    _print({"id": key_id, "deleted": True})


@keys_command.command("audit")
@click.option("--limit", type=click.IntRange(1, 1000), default=100)
@config_option
def audit(config_path: str | None, limit: int) -> None:
    """The newest admin actions first."""
    keys = _open(config_path)
    _print(_run(lambda: keys.audit(limit, None)))
