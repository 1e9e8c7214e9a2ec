"""What the status page shows, read from the sources of the JSON endpoints.

Providers and breakers come from :meth:`Upstream.describe` (``/v1/providers``), the cache from
the cache admin's figures (``/v1/cache/stats``), health from the readiness checks
(``/health/ready``), spend from the usage log (``/v1/usage``), limits and budgets from their
own counters. Each is merged over workers and hosts the way its endpoint merges it. A source
that cannot be read is shown as unavailable; it never breaks the page.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import redis
from flask import current_app

from proxyapi import accounting, budgets, fleet, ratelimit, upstream
from proxyapi.budgets.store import TOKENS
from proxyapi.config import Config, KeyConfig
from proxyapi.keys import setup as keys_setup
from proxyapi.routes import cache_admin, health
from proxyapi.routes import usage as usage_route
from proxyapi.status import history
from proxyapi.status.history import History

if TYPE_CHECKING:
    from proxyapi.keys.manager import ManagedKeys

log = logging.getLogger(__name__)
HISTORY_SECTION = "history"
# What a store may raise when it is away (Redis, the SQLite file, a socket).
_STORE_ERRORS = (redis.RedisError, sqlite3.Error, OSError)


def providers(local: History) -> dict[str, Any]:
    """Every provider's breaker and counters, and its last hour minute by minute."""
    up: upstream.Upstream = current_app.extensions[upstream.EXTENSION]
    scope, rows = up.describe()
    workers = None
    shared: fleet.Fleet | None = current_app.extensions.get(fleet.EXTENSION)
    if shared is not None:
        workers = shared.collect(HISTORY_SECTION)  # published by describe() just now
    merged = history.merge(workers if workers else [local.figures()])
    now = time.time()
    for row in rows:
        buckets = history.series(merged.get(row["name"], {}), now)
        row["hour"] = history.summary(buckets)
        row["buckets"] = buckets
    scope["history"] = "all workers" if workers else "this worker"
    scope["history_workers"] = len(workers) if workers else 1
    return {"scope": scope, "rows": rows}


def cache() -> dict[str, Any]:
    return cache_admin.figures()


def readiness() -> dict[str, Any]:
    body, refusing = health.readiness()
    return {**body, "refusing": refusing}


def _keys(config: Config) -> list[KeyConfig]:
    """The config's keys and the managed ones (as this worker's copy has them)."""
    keys = list(config.auth.keys)
    managed: ManagedKeys | None = current_app.extensions.get(keys_setup.EXTENSION)
    if managed is not None:
        names = {k.name for k in keys}
        keys += [k for k in managed.keyset.configs() if k.name not in names]
    return keys


def limits(config: Config, top: int) -> dict[str, Any]:
    """Request limits and budgets of every key, those nearest to exhaustion first."""
    guard: ratelimit.Limits = current_app.extensions[ratelimit.EXTENSION]
    counted: budgets.Budgets = current_app.extensions[budgets.EXTENSION]
    rows: list[dict[str, Any]] = []
    errors = []
    for key in _keys(config):
        try:
            for item, hits in guard.standing(key):
                rows.append(_row(key.name, "requests", str(item), hits, item.amount))
            for rule, used in counted.standing(key):
                unit = "USD" if rule.unit != TOKENS else "tokens"
                scale = 1e-9 if rule.unit != TOKENS else 1
                rows.append(_row(key.name, unit, rule.text, used * scale, rule.amount * scale))
        except (*_STORE_ERRORS, ratelimit.LimitStorageUnavailable) as exc:
            errors.append(f"{key.name}: {exc.__class__.__name__}")
    rows.sort(key=lambda r: r["ratio"], reverse=True)
    return {"rows": rows[:top], "count": len(rows), "errors": errors[:top]}


def _row(key: str, unit: str, limit_text: str, used: float, limit: float) -> dict[str, Any]:
    ratio = used / limit if limit else 0.0
    return {
        "key": key,
        "unit": unit,
        "limit_text": limit_text,
        "used": used,
        "limit": limit,
        "ratio": max(0.0, ratio),
    }


def spend(top: int) -> dict[str, Any]:
    """Each key's requests and cost today (UTC), from the usage log, highest cost first."""
    acc: accounting.Accounting = current_app.extensions[accounting.EXTENSION]
    if acc.store is None:
        return {"enabled": False, "rows": []}
    now = datetime.now(UTC)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    try:
        acc.flush()
        found = acc.store.query(start.timestamp(), now.timestamp(), "day", None)
    except _STORE_ERRORS as exc:
        return {"enabled": True, "rows": [], "error": exc.__class__.__name__}
    per_key: dict[str, dict[str, Any]] = {}
    for row in found:
        view = usage_route.row_view(acc, row)
        mine = per_key.setdefault(
            view["key"], {"key": view["key"], "requests": 0, "cost_usd": 0.0, "unpriced": 0}
        )
        mine["requests"] += view["requests"]
        if view["cost_usd"] is None:
            mine["unpriced"] += view["requests"]
        else:
            mine["cost_usd"] += view["cost_usd"]
    rows = sorted(per_key.values(), key=lambda r: (r["cost_usd"], r["requests"]), reverse=True)
    return {"enabled": True, "rows": rows[:top], "count": len(rows)}


def config_health(
    config: Config, ready: dict[str, Any], provider_rows: list[Any]
) -> dict[str, Any]:
    """The deployment at a glance, and what looks wrong in it."""
    warnings = []
    for name, state in ready.get("checks", {}).items():
        if state not in ("ok", "not configured"):
            warnings.append(f"{name.replace('_', ' ')}: {state}")
    for row in provider_rows:
        if row["breaker"]["state"] != "closed":
            warnings.append(f"provider {row['name']}: circuit {row['breaker']['state']}")
    if ready.get("refusing"):
        warnings.append("this worker refuses every request (rate-limit store down, fail-closed)")
    return {
        "source": config.source,
        "namespace": config.redis.namespace,
        "namespace_source": config.redis.namespace_source,
        "mode": "distributed" if config.redis.url else "embedded",
        "providers": len(config.providers),
        "config_keys": len(config.auth.keys),
        "managed_keys": ready.get("managed_keys", {}).get("keys"),
        "usage_store": config.usage_store,
        "warnings": warnings,
    }


def everything(config: Config, local: History) -> dict[str, Any]:
    """All the page's sections."""
    top = config.status.top
    provider_figures = providers(local)
    ready = readiness()
    return {
        "providers": provider_figures,
        "cache": cache(),
        "ready": ready,
        "limits": limits(config, top),
        "spend": spend(top),
        "config": config_health(config, ready, provider_figures["rows"]),
    }
