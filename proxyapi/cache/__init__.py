"""The cache: one interface (:class:`CacheStore`) over a flask-caching backend.

Backends (``cache.backend``): ``filesystem`` (embedded default; one folder shared by every
worker on the host, kept across restarts), ``redis`` (distributed default; shared by every host),
``simple`` (per process, for tests) and ``none``. Categories ``responses``, ``models`` and
``metadata`` have their own TTLs. See :mod:`proxyapi.cache.responses` for response caching and
:mod:`proxyapi.cache.upkeep` for warming, sweeping and consistency checks.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from cachelib import BaseCache, NullCache
from flask import Flask
from flask_caching import Cache as FlaskCache

from proxyapi.cache.memory import MemoryTier
from proxyapi.cache.responses import ResponseCache
from proxyapi.cache.store import CacheStore
from proxyapi.cache.upkeep import Upkeep
from proxyapi.config import Config
from proxyapi.errors import ProxyAPIError

EXTENSION = "proxyapi.cache"
# How long a failed load's fallback is served before the source is asked again.
FAILED_LOAD_TTL = 30
log = logging.getLogger(__name__)


class Cache:
    """The app's cache: the store, response caching, and upkeep."""

    def __init__(self, store: CacheStore, responses: ResponseCache, upkeep: Upkeep) -> None:
        self.store = store
        self.responses = responses
        self.upkeep = upkeep

    def cached(
        self,
        category: str,
        key: str,
        loader: Callable[[], Any],
        fallback: Any = None,
    ) -> Any:
        """Return the cached value of ``key``, loading and storing it on a miss.

        The loader is remembered, so warmable categories are reloaded before they expire. If
        it fails with a gateway error, ``fallback`` is returned and kept for
        ``FAILED_LOAD_TTL`` seconds, so a failing source is not asked on every request.
        """
        self.upkeep.start()
        self.upkeep.remember(category, key, loader)
        entry = self.store.get(category, key)
        if entry is not None:
            return entry.value
        try:
            value = loader()
        except ProxyAPIError as exc:
            log.warning("could not load %s/%s: %s", category, key, exc.description)
            self.store.set(category, key, fallback, FAILED_LOAD_TTL)
            return fallback
        self.store.set(category, key, value)
        return value


def _backend(app: Flask, config: Config, shared: redis.Redis | None) -> tuple[BaseCache, str]:
    """Build the flask-caching backend the config asks for."""
    kind = config.cache_backend
    if kind == "none":
        return NullCache(), kind
    if kind == "filesystem":
        folder = config.cache.dir or str(Path(tempfile.gettempdir()) / "proxyapi-cache")
        Path(folder).mkdir(parents=True, exist_ok=True)
        settings: dict[str, Any] = {
            "CACHE_TYPE": "FileSystemCache",
            "CACHE_DIR": folder,
            # cachelib's file-count threshold is updated racily by concurrent workers (and
            # rewrites a count file on every set): off; the upkeep sweep removes expired files.
            "CACHE_THRESHOLD": 0,
        }
    elif kind == "redis":
        url = config.cache.redis_url or config.redis.url
        if url is None:
            raise ValueError(
                "cache.backend is redis but neither cache.redis_url nor REDIS_URL is set"
            )
        settings = {"CACHE_TYPE": "RedisCache"}
        if shared is not None and url == config.redis.url:
            settings["CACHE_REDIS_HOST"] = shared  # share the gateway's pool (fails fast)
        else:
            settings["CACHE_REDIS_URL"] = url
            settings["CACHE_OPTIONS"] = {
                "socket_connect_timeout": config.redis.timeout,
                "socket_timeout": config.redis.timeout,
            }
    else:
        settings = {"CACHE_TYPE": "SimpleCache", "CACHE_THRESHOLD": 10_000}
    flask_cache = FlaskCache(config={**settings, "CACHE_DEFAULT_TIMEOUT": 300})
    flask_cache.init_app(app)
    return flask_cache.cache, kind


def init_app(
    app: Flask,
    config: Config,
    shared: redis.Redis | None = None,
    observer: Callable[[str, str], None] | None = None,
) -> Cache:
    """Build the cache for ``config`` and keep it in ``app.extensions``."""
    backend, kind = _backend(app, config, shared)
    memory = None
    if config.cache.memory_tier:
        memory = MemoryTier(
            config.cache.max_memory_mb * 1024 * 1024,
            config.cache.max_entries,
            clock=time.time,  # entries expire on wall-clock times
        )
    store = CacheStore(backend, config.cache, kind, memory, observer=observer)
    cache = Cache(
        store,
        ResponseCache(store, config.cache, atomic_add=kind == "redis"),
        Upkeep(store),
    )
    app.extensions[EXTENSION] = cache
    # The upkeep thread (warming, sweeping, consistency) starts with a worker's first request.
    app.before_request(cache.upkeep.start)
    return cache
