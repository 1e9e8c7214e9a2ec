"""What each answer cost, and the usage log it goes into.

When a request ends (its answer sent, or its stream over) its usage is priced
(:class:`~proxyapi.pricing.Pricer`: the provider's own counts, cache and reasoning detail
included) and handed to the usage log (:mod:`proxyapi.usage`), which writes it off the request
path. A cache hit costs nothing upstream: it is recorded as a hit, with the units of the
answer it repeats and a cost of 0. A model with no known price is recorded with its units and
counted as unpriced: its cost is None, never a silent 0. The cost shows in the access line
(``cost_usd=``), in ``X-ProxyAPI-Cost-USD`` on answers and in a trailing SSE comment
(``: cost_usd=...``) on streams, which every SSE client ignores, and in Prometheus.
"""

from __future__ import annotations

import atexit
import logging
import sqlite3
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask

from proxyapi.cache import user_dir
from proxyapi.config import Config
from proxyapi.config.checks import ConfigError
from proxyapi.pricing import Pricer
from proxyapi.private_dir import ensure_private_dir
from proxyapi.providers.base import Usage
from proxyapi.usage import RedisUsageStore, SQLiteUsageStore, UsageEntry, UsageRecorder, UsageStore

EXTENSION = "proxyapi.accounting"
COST_HEADER = "X-ProxyAPI-Cost-USD"
UNPRICED = "unpriced"
log = logging.getLogger(__name__)

# Told (key, model label, provider, cost or None) of every answer priced: the metrics.
CostObserver = Callable[[str, str, str, "float | None"], None]


def format_usd(cost: float | None) -> str:
    """A cost as the header, the log line and the stream comment show it."""
    return UNPRICED if cost is None else f"{cost:.6f}"


def cost_comment(cost: float | None) -> bytes:
    """The SSE comment that ends a stream with its cost (SSE clients skip comments)."""
    return f": cost_usd={format_usd(cost)}\n\n".encode()


class Accounting:
    """Prices answers and records their usage."""

    def __init__(
        self,
        pricer: Pricer,
        store: UsageStore | None,
        recorder: UsageRecorder | None,
        on_cost: CostObserver | None = None,
    ) -> None:
        self.pricer = pricer
        self.store = store
        self.recorder = recorder
        self.on_cost = on_cost

    def account(
        self,
        *,
        key: str,
        route: str,
        provider: str,
        model: str,
        model_label: str,
        usage: Usage,
        cache_hit: bool,
        at: float | None = None,
    ) -> float | None:
        """Price one answer and log its usage; return its cost in USD (0 for a cache hit,
        None when the model has no price)."""
        # The log keeps the name the answer was priced by, so pricing the log later agrees.
        cost, billed = self.pricer.priced(provider, model, usage)
        if cache_hit:
            cost = 0.0
        if self.recorder is not None:
            self.recorder.record(
                UsageEntry(
                    at=time.time() if at is None else at,
                    key=key,
                    route=route,
                    provider=provider,
                    model=billed,
                    cache_hit=cache_hit,
                    input_tokens=usage.prompt_tokens,
                    cache_read_tokens=usage.cache_read_tokens,
                    cache_write_tokens=usage.cache_write_tokens,
                    cache_write_1h_tokens=usage.cache_write_1h_tokens,
                    output_tokens=usage.completion_tokens,
                    reasoning_tokens=usage.reasoning_tokens,
                )
            )
        if self.on_cost is not None:
            self.on_cost(key, model_label, provider, cost)
        return cost

    def flush(self) -> None:
        """Write this worker's gathered usage now (before a query reads the log)."""
        if self.recorder is not None:
            self.recorder.flush()

    def close(self) -> None:
        """Flush and stop (at worker exit)."""
        if self.recorder is not None:
            self.recorder.close()
        if self.store is not None:
            self.store.close()


def _close_at_exit(ref: weakref.ref[Accounting]) -> None:
    accounting = ref()
    if accounting is not None:
        accounting.close()


def usage_path(config: Config) -> Path:
    """The SQLite file of the usage log: ``usage.path``, else one per user and namespace in
    the temp dir (beside the default cache folders, never in one: the cache's sweeps remove
    the files they find there)."""
    if config.usage.path:
        return Path(config.usage.path)
    folder = ensure_private_dir(user_dir(), "the usage log's folder")
    return folder / f"usage-{config.redis.namespace}.sqlite3"


def _store(config: Config, shared: Any) -> UsageStore | None:
    kind = config.usage_store
    if kind == "none":
        return None
    if kind == "redis":
        return RedisUsageStore(shared, config.redis.namespace, config.usage.retention_days)
    path = usage_path(config)
    try:
        return SQLiteUsageStore(path, config.usage.retention_days)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"usage.path {str(path)!r} cannot hold the usage log: {exc}") from None


def init_app(
    app: Flask,
    config: Config,
    shared: Any,
    on_cost: CostObserver | None = None,
    on_error: Callable[[Exception], None] | None = None,
) -> Accounting:
    """Build the pricer and the usage log and keep them in ``app.extensions``; a failed write
    (its batch kept for the next flush) is logged and told to ``on_error`` (a metric)."""
    store = _store(config, shared)

    def failed(exc: Exception) -> None:
        log.warning("usage: %s", exc)
        if on_error is not None:
            on_error(exc)

    recorder = (
        UsageRecorder(store, config.usage.flush_interval, failed) if store is not None else None
    )
    accounting = Accounting(Pricer(config.pricing, config.providers), store, recorder, on_cost)
    app.extensions[EXTENSION] = accounting
    # A worker that exits writes what it gathered (gunicorn runs atexit handlers on a
    # graceful exit; a killed worker loses at most the last flush_interval of usage). By weak
    # reference: an app let go of (in tests, many) is not kept alive until exit.
    atexit.register(_close_at_exit, weakref.ref(accounting))
    return accounting
