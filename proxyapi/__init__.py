"""ProxyAPI: a WSGI gateway that speaks the OpenAI API and routes to many providers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from proxyapi import (
    auth,
    cache,
    cli,
    errors,
    fleet,
    logs,
    ratelimit,
    redis_client,
    routing,
    upstream,
)
from proxyapi.config import Config, load_config, parse_config
from proxyapi.routes import register

__all__ = ["create_app"]


def create_app(config: Config | Mapping[str, Any] | None = None) -> Flask:
    """Build the gateway: load and validate config, then set up each piece.

    ``config`` may be a :class:`Config`, a mapping shaped like the YAML file, or None to load
    from ``PROXYAPI_CONFIG`` / ``./proxyapi.yaml`` / the environment.
    """
    cfg = load_config() if config is None else parse_config(config)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = cfg.server.max_body_bytes
    app.extensions["proxyapi.config"] = cfg
    app.extensions["proxyapi.secrets"] = tuple(cfg.secrets())
    # Order matters: before_request hooks run in this order (request id, key, then limits).
    logs.init_app(app, cfg.secrets())
    errors.init_app(app)
    auth.init_app(app, cfg.auth)
    ratelimit.init_app(app, cfg)
    routing.init_app(app, cfg)
    # No I/O here: redis-py connects on first use (and is fork-safe).
    shared = redis_client.connect(cfg.redis) if cfg.redis.url else None
    workers = fleet.init_app(app, shared)
    upstream.init_app(
        app,
        cfg,
        client=shared,
        fleet=workers,
        provider_gate=app.extensions[ratelimit.EXTENSION].admit_provider,
    )
    cached = cache.init_app(app, cfg, shared)
    if workers is not None:
        workers.register("cache", cached.store.stats)
    register(app)
    cli.init_app(app)
    return app
