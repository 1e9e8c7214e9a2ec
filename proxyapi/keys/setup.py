"""Building the managed keys' store and copy, for the app (``init_app``) and the CLI."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from flask import Flask

from proxyapi.cache import user_dir
from proxyapi.config import Config
from proxyapi.config.checks import ConfigError
from proxyapi.keys.keyset import KeySet
from proxyapi.keys.manager import ManagedKeys
from proxyapi.keys.records import KeyStore, KeyStoreError
from proxyapi.keys.redis_store import RedisKeyStore
from proxyapi.keys.sqlite_store import SQLiteKeyStore
from proxyapi.private_dir import ensure_private_dir

EXTENSION = "proxyapi.keys"


def keys_path(config: Config) -> Path:
    """The SQLite file of the managed keys: ``auth.managed.path``, else one per user and
    namespace in the temp dir, beside the usage log."""
    if config.auth.managed.path:
        return Path(config.auth.managed.path)
    folder = ensure_private_dir(user_dir(), "the managed keys' folder")
    return folder / f"keys-{config.redis.namespace}.sqlite3"


def open_store(config: Config, shared: Any) -> KeyStore | None:
    """The store of the managed keys (None when they are off); a bad path is a ConfigError."""
    kind = config.managed_keys_store
    if kind == "none":
        return None
    if kind == "redis":
        return RedisKeyStore(shared, config.redis.namespace)
    path = keys_path(config)
    try:
        return SQLiteKeyStore(path)
    except (OSError, sqlite3.Error, KeyStoreError) as exc:
        raise ConfigError(
            f"auth.managed.path {str(path)!r} cannot hold the managed keys: {exc}"
        ) from None


def build(config: Config, shared: Any) -> ManagedKeys | None:
    store = open_store(config, shared)
    if store is None:
        return None
    managed = config.auth.managed
    return ManagedKeys(config, store, KeySet(store, managed.refresh_interval, managed.max_stale))


def init_app(app: Flask, config: Config, shared: Any) -> ManagedKeys | None:
    """Keep the app's :class:`ManagedKeys` (None when off) in ``app.extensions``."""
    keys = build(config, shared)
    app.extensions[EXTENSION] = keys
    return keys
