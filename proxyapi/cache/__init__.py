"""The cache: one interface (:class:`CacheStore`) over a flask-caching backend.

Backends (``cache.backend``): ``filesystem`` (embedded default; one folder shared by every
worker on the host, kept across restarts, private to the user), ``redis`` (distributed
default; shared by every host, every key under the deployment's namespace), ``simple`` (per
process, for tests) and ``none``. Every backend stores plain JSON through
:class:`~proxyapi.cache.codec.EntryCodec`, never a pickle. Categories ``responses``, ``models`` and
``metadata`` have their own TTLs. See :mod:`proxyapi.cache.responses` for response caching and
:mod:`proxyapi.cache.upkeep` for warming, sweeping and consistency checks.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from cachelib import BaseCache, NullCache
from flask import Flask
from flask_caching import Cache as FlaskCache

from proxyapi import redis_client
from proxyapi.cache.codec import EntryCodec
from proxyapi.cache.memory import MemoryTier
from proxyapi.cache.responses import ResponseCache
from proxyapi.cache.store import CacheStore
from proxyapi.cache.upkeep import Upkeep
from proxyapi.config import Config
from proxyapi.errors import ProxyAPIError
from proxyapi.private_dir import ensure_private_dir

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
        valid: Callable[[Any], bool] | None = None,
    ) -> Any:
        """Return the cached value of ``key``, loading and storing it on a miss.

        The loader is remembered, so warmable categories are reloaded before they expire. If
        it fails with a gateway error, ``fallback`` is returned and kept for
        ``FAILED_LOAD_TTL`` seconds, so a failing source is not asked on every request. A
        stored value that ``valid`` refuses (a shared store may hold anything) is a miss.
        """
        self.upkeep.start()
        self.upkeep.remember(category, key, loader)
        entry = self.store.get(category, key)
        if entry is not None:
            if valid is None or valid(entry.value):
                return entry.value
            if self.store.codec is not None:
                self.store.codec.refuse(f"a {category} value of the wrong shape", "shape")
        try:
            value = loader()
        except ProxyAPIError as exc:
            log.warning("could not load %s/%s: %s", category, key, exc.description)
            self.store.set(category, key, fallback, FAILED_LOAD_TTL)
            return fallback
        self.store.set(category, key, value)
        return value


def user_dir() -> Path:
    """This user's folder of the gateway's files in the temp dir (made private by callers)."""
    return Path(tempfile.gettempdir()) / f"proxyapi-cache-{os.geteuid()}"


def file_cache_dir(config: Config) -> Path:
    """The folder of the filesystem backend: ``cache.dir``, else one per user and namespace."""
    if config.cache.dir:
        return Path(config.cache.dir)
    return user_dir() / config.redis.namespace


def prepare_file_cache(config: Config) -> Path:
    """Create the filesystem backend's folder, private to this user; refuse one that is not."""
    folder = file_cache_dir(config)
    if not config.cache.dir:
        ensure_private_dir(folder.parent, "the cache folder's parent")
    return ensure_private_dir(folder, "cache.dir")


def _backend(
    app: Flask,
    config: Config,
    shared: redis.Redis | None,
    on_refuse: Callable[[str], None] | None = None,
) -> tuple[BaseCache, str]:
    """Build the flask-caching backend the config asks for, with the JSON codec installed."""
    kind = config.cache_backend
    if kind == "none":
        return NullCache(), kind
    if kind == "filesystem":
        folder = str(prepare_file_cache(config))
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
        # The namespace keeps two deployments on one Redis apart (DESIGN.md section 6).
        settings = {"CACHE_TYPE": "RedisCache", "CACHE_KEY_PREFIX": f"{config.redis.namespace}:"}
        # A client object (cachelib takes one as its host): the gateway's own when it is the
        # same Redis (one pool, fails fast), else one built the same way (Sentinel, Cluster).
        same = shared is not None and url == config.redis.url
        settings["CACHE_REDIS_HOST"] = (
            shared if same else redis_client.client_for(url, config.redis)
        )
    else:
        settings = {"CACHE_TYPE": "SimpleCache", "CACHE_THRESHOLD": 10_000}
    flask_cache = FlaskCache(config={**settings, "CACHE_DEFAULT_TIMEOUT": 300})
    flask_cache.init_app(app)
    backend: BaseCache = flask_cache.cache
    # cachelib's hook for how values are written and read: plain JSON instead of pickle.
    key = config.cache.signing_key
    codec = EntryCodec(key.encode("utf-8") if key else None, on_refuse)
    backend.serializer = codec  # type: ignore[attr-defined]
    return backend, kind


def init_app(
    app: Flask,
    config: Config,
    shared: redis.Redis | None = None,
    observer: Callable[[str, str], None] | None = None,
    on_redis_error: Callable[[str], None] | None = None,
    on_refuse: Callable[[str], None] | None = None,
) -> Cache:
    """Build the cache for ``config`` and keep it in ``app.extensions``.

    ``on_refuse`` is told the reason of every stored value refused on read (the metric).
    """
    backend, kind = _backend(app, config, shared, on_refuse)
    memory = None
    if config.cache.memory_tier:
        memory = MemoryTier(
            config.cache.max_memory_mb * 1024 * 1024,
            config.cache.max_entries,
            clock=time.time,  # entries expire on wall-clock times
        )
    store = CacheStore(
        backend, config.cache, kind, memory, observer=observer, on_redis_error=on_redis_error
    )
    cache = Cache(
        store,
        ResponseCache(store, config.cache, atomic_add=kind == "redis"),
        Upkeep(store),
    )
    app.extensions[EXTENSION] = cache
    # The upkeep thread (warming, sweeping, consistency) starts with a worker's first request.
    app.before_request(cache.upkeep.start)
    return cache
