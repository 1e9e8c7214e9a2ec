"""ProxyAPI: a WSGI gateway that speaks the OpenAI API and routes to many providers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from proxyapi import (
    accounting,
    auth,
    budgets,
    cache,
    cli,
    errors,
    fleet,
    logs,
    metrics,
    observe,
    ratelimit,
    redis_client,
    response_store,
    routing,
    status,
    tracing,
    upstream,
)
from proxyapi.config import Config, load_config, parse_config
from proxyapi.keys import setup as keys_setup
from proxyapi.routes import register

__all__ = ["create_app"]


def _counter_client(cfg: Config, shared: Any) -> Any:
    """The Redis client of the limit counters (``rate_limits.storage_uri``), or None."""
    uri = cfg.limits_storage_uri
    if uri.startswith("memory://"):
        return None
    return (
        shared
        if shared is not None and uri == cfg.redis.url
        else redis_client.client_for(uri, cfg.redis)
    )


def create_app(config: Config | Mapping[str, Any] | None = None) -> Flask:
    """Build the gateway: load and validate config, then set up each piece.

    ``config`` may be a :class:`Config`, a mapping shaped like the YAML file, or None to load
    from ``PROXYAPI_CONFIG`` / ``./proxyapi.yaml`` / the environment.
    """
    cfg = load_config() if config is None else parse_config(config)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = cfg.server.max_body_bytes
    app.extensions["proxyapi.config"] = cfg
    app.extensions["proxyapi.secrets"] = errors.secret_forms(cfg.secrets())
    if cfg.server.trusted_proxies:
        # Behind N proxies, the client's address and scheme are in their X-Forwarded-* headers.
        n = cfg.server.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    # Order matters: before_request hooks run in this order (request record, key, limits).
    logs.init_app(app, cfg.secrets())
    measured = metrics.init_app(app, cfg)
    observe.init_app(app, measured)
    # After the request record (its span ends with what the record says), before the key and
    # limits (a refused request is traced too). Off: no hook, and no OpenTelemetry import.
    traced = tracing.init_app(app, cfg)
    errors.init_app(app)
    auth.init_app(app, cfg.auth)
    ratelimit.init_app(app, cfg, on_reject=measured.rejected, on_redis_error=measured.redis_error)
    routing.init_app(app, cfg)
    # No I/O here: redis-py connects on first use (and is fork-safe).
    shared = redis_client.connect(cfg.redis) if cfg.redis.url else None
    app.extensions[redis_client.EXTENSION] = shared
    workers = fleet.init_app(app, shared, cfg.redis.namespace, measured.redis_error)
    # The status page's history hears the upstream calls beside the metrics (when it is on).
    observer, recorded = status.observer(cfg, measured)
    up = upstream.init_app(
        app,
        cfg,
        client=shared,
        fleet=workers,
        provider_gate=app.extensions[ratelimit.EXTENSION].admit_provider,
        observer=observer,
    )
    up.tracer = traced
    measured.before_scrape.append(up.report_breakers)
    cached = cache.init_app(
        app,
        cfg,
        shared,
        observer=measured.cache_result,
        on_redis_error=measured.redis_error,
        on_refuse=measured.cache_refusal,
    )
    accounts = accounting.init_app(
        app, cfg, shared, on_cost=measured.priced, on_error=measured.usage_error
    )
    budgets.init_app(
        app,
        cfg,
        _counter_client(cfg, shared),
        measured.redis_error,
        pricer=accounts.pricer,
        on_warn=measured.budget_warning,
    )
    response_store.init_app(app, cfg, cached.store)
    managed = keys_setup.init_app(app, cfg, shared)
    if workers is not None:
        workers.register("cache", cached.store.stats)
    register(app)
    status.init_app(app, cfg, recorded, workers, managed)
    cli.init_app(app)
    return app
