"""Cache administration (admin keys only): statistics, and clearing a category."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from proxyapi import auth, cache, fleet
from proxyapi.errors import InvalidRequest

bp = Blueprint("cache_admin", __name__, url_prefix="/v1/cache")


def _merge(workers: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum the counters of several workers' cache figures."""
    totals: Counter[str] = Counter()
    categories: dict[str, Counter[str]] = {}
    for w in workers:
        totals.update(w["totals"])
        for cat, counts in w["categories"].items():
            categories.setdefault(cat, Counter()).update(counts)
    memory = [w["memory"] for w in workers if w.get("memory")]
    merged_memory = dict(sum((Counter(m) for m in memory), Counter())) if memory else None
    return {
        "totals": dict(totals),
        "categories": {k: dict(v) for k, v in categories.items()},
        "memory": merged_memory,
    }


@bp.get("/stats")
def stats() -> Response:
    """Cache statistics: merged over every worker with Redis, else this worker's."""
    auth.require_admin()
    return jsonify(figures())


def figures() -> dict[str, Any]:
    """What ``GET /v1/cache/stats`` shows (the status page shows it too)."""
    c: cache.Cache = current_app.extensions[cache.EXTENSION]
    store = c.store
    workers = None
    shared: fleet.Fleet | None = current_app.extensions.get(fleet.EXTENSION)
    if shared is not None:
        shared.publish()
        workers = shared.collect("cache")
    merged = _merge(workers) if workers else store.stats()
    totals = merged["totals"]
    lookups = totals.get("hits", 0) + totals.get("misses", 0)
    return {
        "backend": store.kind,
        "scope": {
            "counters": "all workers" if workers else "this worker",
            "workers_reporting": len(workers) if workers else 1,
        },
        "worker_pid": os.getpid(),
        "hit_rate": round(totals.get("hits", 0) / lookups, 4) if lookups else 0.0,
        "backend_size": store.backend_size(),
        "totals": totals,
        "categories": {
            cat: {"ttl": ttl, **merged["categories"].get(cat, {})}
            for cat, ttl in store.config.ttl.items()
        },
        "memory_tier": merged["memory"],
    }


@bp.delete("")
def clear() -> Response:
    """Clear one category (``?category=responses``) or, without it, every category."""
    auth.require_admin()
    store = current_app.extensions[cache.EXTENSION].store
    category = request.args.get("category") or None
    if category is not None and category not in store.config.ttl:
        raise InvalidRequest(
            f"Unknown cache category {category!r}; one of: {', '.join(store.config.ttl)}.",
            param="category",
        )
    store.clear(category)
    return jsonify(cleared=[category] if category else list(store.config.ttl))
