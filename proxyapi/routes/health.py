"""Liveness and readiness: answer without a key, are never rate limited, never call a provider."""

from __future__ import annotations

import os
from typing import Any

import redis
from flask import Blueprint, Response, current_app, jsonify

from proxyapi import ratelimit, redis_client, upstream
from proxyapi.config import Config
from proxyapi.keys import setup as keys_setup
from proxyapi.keys.manager import ManagedKeys

bp = Blueprint("health", __name__)
PUBLIC_ENDPOINTS = ("health.health", "health.ready", "health.root")


@bp.get("/health")
def health() -> Response:
    """Report that the process is up."""
    return jsonify(status="ok")


@bp.get("/")
def root() -> Response:
    """Answer a connectivity probe (Claude Code sends ``HEAD /``): the gateway is here."""
    return jsonify(status="ok")


def _redis_state(client: redis.Redis | None) -> str:
    if client is None:
        return "not configured"
    try:
        client.ping()  # bounded by redis.timeout, with no retries (redis_client.connect)
    except redis.RedisError:
        return "unreachable"
    return "ok"


@bp.get("/health/ready")
def ready() -> Response:
    """Report whether this worker can serve: 503 only when it would refuse every request.

    That is the case when the rate-limit store is down and ``rate_limits.on_storage_error``
    is ``fail-closed``. An unreachable Redis used for breakers and figures, or open breakers,
    are reported but leave the worker ready: it still answers (each worker on its own state,
    or with a fallback provider), and taking every instance out of a load balancer at once
    for a provider outage would turn it into a total one: ``degraded`` says so instead.
    ``namespace`` is the prefix of every key this deployment writes to shared stores (hosts of
    one deployment show the same one).
    """
    body, refusing = readiness()
    response = jsonify(body)
    response.status_code = 503 if refusing else 200
    return response


def readiness() -> tuple[dict[str, Any], bool]:
    """What ``GET /health/ready`` shows, and whether this worker refuses every request."""
    config: Config = current_app.extensions["proxyapi.config"]
    limits: ratelimit.Limits = current_app.extensions[ratelimit.EXTENSION]
    up: upstream.Upstream = current_app.extensions[upstream.EXTENSION]
    shared: redis.Redis | None = current_app.extensions.get(redis_client.EXTENSION)
    checks = {"redis": _redis_state(shared)}
    if limits.limiter.enabled and limits.shared_storage:
        checks["rate_limit_storage"] = "ok" if limits.limiter.storage.check() else "unreachable"
    refusing = checks.get("rate_limit_storage") == "unreachable" and limits.policy == "fail-closed"
    breakers = {name: up.breakers.get(name).current_state for name in up.providers}
    keys: ManagedKeys | None = current_app.extensions.get(keys_setup.EXTENSION)
    if keys is not None:
        keys.keyset.ensure()
        checks["managed_keys"] = "unreachable" if keys.keyset.degraded else "ok"
    degraded = any(state != "ok" for name, state in checks.items() if state != "not configured")
    body = {
        "status": "not ready" if refusing else "ready",
        "degraded": degraded,
        "namespace": {"name": config.redis.namespace, "source": config.redis.namespace_source},
        "worker_pid": os.getpid(),
        "config": {
            "source": config.source,
            "providers": len(config.providers),
            "keys": len(config.auth.keys),
        },
        **({"managed_keys": keys.keyset.status()} if keys is not None else {}),
        "checks": checks,
        "breakers": breakers,
    }
    return body, refusing
