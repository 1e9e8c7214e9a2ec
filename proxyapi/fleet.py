"""Figures of every worker on every host, gathered through Redis (distributed mode).

Each worker writes its own figures (one section per piece: ``providers``, ``cache``) to
``{<namespace>:stats}:<host>:<pid>`` (one hash slot, so one ``MGET`` reads them on a Redis
Cluster too) every few seconds, with an expiry, from a background thread
started on its first request; the status endpoints merge whatever is there. Nothing is written
on the request path, and a worker that stops simply drops out (its figures with it) once its
key expires. Redis errors are logged, never raised.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import redis
from flask import Flask

from proxyapi.background import PerProcessThread

EXTENSION = "proxyapi.fleet"
# How often a worker shares its figures, and how long they outlive a worker that went away.
PUBLISH_INTERVAL = 2.0
EXPIRY = 10

log = logging.getLogger(__name__)


class Fleet:
    """Publishes this worker's figures and collects everybody's."""

    def __init__(
        self,
        client: redis.Redis,
        namespace: str = "proxyapi",
        on_redis_error: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.on_redis_error = on_redis_error
        self.prefix = f"{{{namespace}:stats}}"
        self.sections: dict[str, Callable[[], Any]] = {}
        self._thread = PerProcessThread(self._loop, "proxyapi-fleet")
        self._logged_at = 0.0

    def register(self, section: str, figures: Callable[[], Any]) -> None:
        """Publish ``figures()`` under ``section`` with this worker's figures."""
        self.sections[section] = figures

    @property
    def key(self) -> str:
        return f"{self.prefix}:{socket.gethostname()}:{os.getpid()}"

    def start(self) -> None:
        """Start publishing from this process (once per process; safe to call often)."""
        self._thread.ensure_started()

    def _loop(self) -> None:
        while True:
            self.publish()
            time.sleep(PUBLISH_INTERVAL)

    def publish(self) -> None:
        """Write this worker's figures now."""
        try:
            figures = {name: fn() for name, fn in self.sections.items()}
            payload = json.dumps({"pid": os.getpid(), **figures})
            self.client.set(self.key, payload, ex=EXPIRY)
        except redis.RedisError as exc:
            self._warn(exc)

    def collect(self, section: str) -> list[Any] | None:
        """Return every live worker's ``section``, or None when Redis cannot be read."""
        try:
            keys = list(self.client.scan_iter(match=f"{self.prefix}:*", count=200))
            values = self.client.mget(keys) if keys else []
        except redis.RedisError as exc:
            self._warn(exc)
            return None
        workers = [json.loads(v) for v in values if v]
        return [w[section] for w in workers if section in w]

    def _warn(self, exc: Exception) -> None:
        if self.on_redis_error is not None:
            self.on_redis_error("fleet")
        now = time.monotonic()
        if now - self._logged_at > 60:  # once a minute is enough to say Redis is gone
            self._logged_at = now
            log.warning("figures not shared through Redis: %s", exc)


def init_app(
    app: Flask,
    client: redis.Redis | None,
    namespace: str,
    on_redis_error: Callable[[str], None] | None = None,
) -> Fleet | None:
    """Keep a :class:`Fleet` in ``app.extensions`` when Redis is configured."""
    fleet = Fleet(client, namespace, on_redis_error) if client is not None else None
    app.extensions[EXTENSION] = fleet
    return fleet
