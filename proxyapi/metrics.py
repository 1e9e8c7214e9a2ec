"""Prometheus metrics, correct under multi-worker gunicorn.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``gunicorn.conf.py`` sets it before anything imports
prometheus_client, wipes it once at start, and marks dead workers), every worker writes its
values to files there and ``GET /metrics`` merges them, so a counter is the whole server's
count, across worker restarts. Without it (``python app.py``, tests) the metrics are this
process's.

Labels are bounded: routes are the gateway's own endpoints, ``key`` the configured key names,
``provider`` the configured providers, ``model`` a configured model name, alias or glob (never
what a client typed), ``scope``/``outcome``/``result``/``kind`` fixed sets.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from flask import Flask, Response, current_app
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from proxyapi import auth
from proxyapi.config import Config

EXTENSION = "proxyapi.metrics"
PREFIX = "proxyapi"
# Seconds: LLM calls run from milliseconds (a cache hit) to minutes (a long answer).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# The gateway's own share of a request: sub-millisecond to a few milliseconds.
OVERHEAD_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
BREAKER_STATES = {"closed": 0, "half-open": 1, "open": 2}
GaugeMode = Literal["livesum", "livemostrecent"]


@dataclass
class Metrics:
    """The gateway's metrics, in one registry per app."""

    registry: CollectorRegistry
    requests: Counter
    duration: Histogram
    overhead: Histogram
    in_flight: Gauge
    streams: Gauge
    upstream_requests: Counter
    upstream_latency: Histogram
    first_token: Histogram
    retries: Counter
    fallbacks: Counter
    breaker_state: Gauge
    cache_results: Counter
    rejections: Counter
    redis_errors: Counter
    tokens: Counter
    cost: Counter
    unpriced: Counter
    budget_warnings: Counter
    usage_errors: Counter
    cache_refused: Counter
    worker_starts: Counter
    # Called before each scrape, to bring gauges up to date (breaker states).
    before_scrape: list[Callable[[], None]] = field(default_factory=list)

    # ------------------------------------------------------------------ recording

    def upstream_outcome(self, provider: str, outcome: str, seconds: float, retries: int) -> None:
        """Record one call to a provider (its retries included)."""
        self.upstream_requests.labels(provider, outcome).inc()
        if seconds:
            self.upstream_latency.labels(provider).observe(seconds)
        if retries:
            self.retries.labels(provider).inc(retries)

    def fell_back(self, provider: str) -> None:
        self.fallbacks.labels(provider).inc()

    def first_event(self, provider: str, seconds: float) -> None:
        self.first_token.labels(provider).observe(seconds)

    def breaker(self, provider: str, state: str) -> None:
        self.breaker_state.labels(provider).set(BREAKER_STATES.get(state, 0))

    def cache_result(self, category: str, result: str) -> None:
        self.cache_results.labels(category, result).inc()

    def rejected(self, scope: str) -> None:
        self.rejections.labels(scope).inc()

    def redis_error(self, component: str) -> None:
        """A shared-store command failed (``cache``, ``budgets``, ``limits``, ``fleet``)."""
        self.redis_errors.labels(component).inc()

    def priced(self, key: str, model: str, provider: str, cost: float | None) -> None:
        """An answer's cost (None: its model has no price)."""
        if cost is None:
            self.unpriced.labels(key, model, provider).inc()
        elif cost:
            self.cost.labels(key, model, provider).inc(cost)

    def budget_warning(self, key: str) -> None:
        self.budget_warnings.labels(key).inc()

    def usage_error(self, exc: Exception) -> None:
        """The usage log failed to write a batch (kept for the next flush) or dropped usage."""
        self.usage_errors.inc()

    def cache_refusal(self, reason: str) -> None:
        """A stored cache value was refused on read and served as a miss (see cache.codec)."""
        self.cache_refused.labels(reason).inc()


def _build(registry: CollectorRegistry) -> Metrics:
    def counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
        return Counter(f"{PREFIX}_{name}", doc, labels, registry=registry)

    def histogram(
        name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]
    ) -> Histogram:
        return Histogram(f"{PREFIX}_{name}", doc, labels, buckets=buckets, registry=registry)

    def gauge(name: str, doc: str, labels: tuple[str, ...], mode: GaugeMode) -> Gauge:
        return Gauge(f"{PREFIX}_{name}", doc, labels, registry=registry, multiprocess_mode=mode)

    return Metrics(
        registry=registry,
        requests=counter(
            "requests", "Requests answered, by route and status.", ("route", "status")
        ),
        duration=histogram(
            "request_duration_seconds",
            "Time to answer a request (to the end of its body).",
            ("route",),
            DURATION_BUCKETS,
        ),
        overhead=histogram(
            "gateway_overhead_seconds",
            "A non-streaming request's time minus its time in upstream calls.",
            ("route",),
            OVERHEAD_BUCKETS,
        ),
        in_flight=gauge("requests_in_flight", "Requests being answered.", (), "livesum"),
        streams=gauge("streams_in_flight", "Event streams being relayed.", (), "livesum"),
        upstream_requests=counter(
            "upstream_requests",
            "Calls to providers (retries included in one call), by outcome.",
            ("provider", "outcome"),
        ),
        upstream_latency=histogram(
            "upstream_latency_seconds",
            "Time of one call to a provider, its retries included.",
            ("provider",),
            DURATION_BUCKETS,
        ),
        first_token=histogram(
            "upstream_first_token_seconds",
            "Time from a stream's request to its first event.",
            ("provider",),
            DURATION_BUCKETS,
        ),
        retries=counter("upstream_retries", "Retries of calls to providers.", ("provider",)),
        fallbacks=counter(
            "fallbacks",
            "Calls to this provider that failed or declined, so the request moved on.",
            ("provider",),
        ),
        breaker_state=gauge(
            "breaker_state",
            "Circuit state per provider: 0 closed, 1 half-open, 2 open.",
            ("provider",),
            # The latest change any worker saw; the scraping worker reads the state first, so
            # shared (Redis) breakers show their current state.
            "livemostrecent",
        ),
        cache_results=counter(
            "cache_lookups", "Cache lookups by category and result.", ("category", "result")
        ),
        rejections=counter(
            "ratelimit_rejections", "Requests refused by a gateway limit, by scope.", ("scope",)
        ),
        redis_errors=counter(
            "redis_errors",
            "Redis commands that failed (the request went on per the outage policy), by part.",
            ("component",),
        ),
        tokens=counter(
            "tokens",
            "Tokens used, by key, model and kind: prompt (every input token, cached ones "
            "included), completion (reasoning included), cache_read, cache_write, "
            "cache_write_1h, reasoning.",
            ("key", "model", "kind"),
        ),
        cost=counter(
            "cost_usd",
            "What answers cost upstream, in USD (cache hits cost 0), by key, model and provider.",
            ("key", "model", "provider"),
        ),
        unpriced=counter(
            "unpriced_answers",
            "Answers whose model has no known price (their tokens are counted, not their cost).",
            ("key", "model", "provider"),
        ),
        budget_warnings=counter(
            "budget_warnings",
            "Times a key spent past a money budget's warn_at (once per window and worker).",
            ("key",),
        ),
        usage_errors=counter(
            "usage_write_errors", "Writes of the usage log that failed (retried).", ()
        ),
        cache_refused=counter(
            "cache_refused",
            "Stored cache values refused on read and served as misses, by reason: malformed, "
            "signature (unsigned or wrongly signed), misplaced (under another key), shape.",
            ("reason",),
        ),
        worker_starts=counter(
            "worker_starts",
            "Worker processes started (one per app built) since the server started.",
            (),
        ),
    )


def scrape(registry: CollectorRegistry) -> bytes:
    """Render the metrics: merged over every worker in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        merged = CollectorRegistry(support_collectors_without_names=True)
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return bytes(generate_latest(merged))
    return bytes(generate_latest(registry))


def init_app(app: Flask, config: Config) -> Metrics:
    """Create the metrics and serve them at ``GET /metrics``."""
    metrics = _build(CollectorRegistry(auto_describe=True))
    app.extensions[EXTENSION] = metrics
    # gunicorn builds the app once in each worker after the fork (preload_app is off), so this
    # counts worker processes; a dead worker's file stays, so the total only grows until the
    # server restarts, and a crash loop shows as a steep climb.
    metrics.worker_starts.inc()
    for provider in config.providers:
        metrics.breaker(provider.name, "closed")
    require_admin = config.metrics.require_admin

    def serve_metrics() -> Response:
        if require_admin:
            auth.require_admin()
        for refresh in metrics.before_scrape:
            refresh()
        return Response(scrape(metrics.registry), mimetype=CONTENT_TYPE_LATEST)

    app.add_url_rule("/metrics", "metrics", serve_metrics, methods=["GET"])
    if not require_admin:
        auth.public(app, "metrics")
    return metrics


def current() -> Metrics:
    """The app's metrics."""
    metrics: Metrics = current_app.extensions[EXTENSION]
    return metrics
