"""Each request's record: its id, one log line, its metrics, and ``X-ProxyAPI-Overhead-Ms``.

``X-Request-ID`` is echoed when the client sends a sane one and generated otherwise. The
route fills in the record (:func:`current`) as it learns things; when the response is closed
(for a stream, when it has ended) one line is logged with every field (``request_id``,
``client``, ``key``, ``route``, ``model``, ``provider``, ``status``, ``attempts``, ``cache``,
``total_ms``, ``upstream_ms``, ``overhead_ms``, ``prompt_tokens``, ``completion_tokens``) and
the request's metrics are recorded.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, g, request

from proxyapi.accounting import format_usd
from proxyapi.logs import clip
from proxyapi.metrics import Metrics
from proxyapi.providers.base import Usage

REQUEST_ID_HEADER = "X-Request-ID"
OVERHEAD_HEADER = "X-ProxyAPI-Overhead-Ms"
# Accept ids that are safe to echo and to write into a log line.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")

access_log = logging.getLogger("proxyapi.access")


@dataclass
class RequestRecord:
    """What one request did; logged and measured when its response closes."""

    request_id: str
    method: str
    path: str
    # The client's address (the forwarded one with server.trusted_proxies).
    client: str = "-"
    started: float = field(default_factory=time.perf_counter)
    route: str = "-"
    key: str = "-"
    model: str = "-"
    # The model as a metrics label: a configured name, alias or glob, never client input.
    model_label: str = "-"
    provider: str = "-"
    status: int = 0
    attempts: int = 0
    cache: str = "-"
    stream: bool = False
    # The client's session id, where its dialect has one (Claude Code's), escaped and clipped.
    session: str | None = None
    upstream_seconds: float = 0.0
    usage: Usage | None = None
    # What the answer cost in USD (None: no price known), once priced.
    cost_usd: float | None = None
    priced: bool = False
    response_started: float | None = None

    def fields(self, now: float) -> dict[str, Any]:
        """The log line's fields."""
        total = now - self.started
        # The gateway's own time before the response began: for a stream, up to its first
        # event; for an answer, all of it but the upstream calls.
        begun = (self.response_started or now) - self.started
        return {
            "request_id": self.request_id,
            # What the client decides is clipped; the text format escapes control characters.
            "method": clip(self.method),
            "path": clip(self.path),
            "client": clip(self.client),
            "route": self.route,
            "key": self.key,
            "model": clip(self.model),
            "provider": self.provider,
            "status": self.status,
            "attempts": self.attempts,
            "cache": self.cache,
            "stream": self.stream,
            "session": self.session,
            "total_ms": round(total * 1000, 2),
            "upstream_ms": round(self.upstream_seconds * 1000, 2),
            "overhead_ms": round(max(0.0, begun - self.upstream_seconds) * 1000, 3),
            "prompt_tokens": self.usage.prompt_tokens if self.usage else None,
            "completion_tokens": self.usage.completion_tokens if self.usage else None,
            "cache_read_tokens": self.usage.cache_read_tokens if self.usage else None,
            "reasoning_tokens": self.usage.reasoning_tokens if self.usage else None,
            "cost_usd": self.cost_usd if self.priced else None,
            "unpriced": self.priced and self.cost_usd is None,
        }


def current() -> RequestRecord:
    """The current request's record."""
    record: RequestRecord = g.record
    return record


def _start(metrics: Metrics) -> None:
    rid = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = rid if _SAFE_ID.match(rid) else uuid.uuid4().hex
    g.record = RequestRecord(g.request_id, request.method, request.path, request.remote_addr or "-")
    metrics.in_flight.inc()


def _finish(metrics: Metrics, response: Response) -> Response:
    record: RequestRecord = g.get("record") or RequestRecord("-", request.method, request.path)
    record.status = response.status_code
    record.route = request.endpoint or "unknown"
    record.key = g.get("key_name", "-")
    record.response_started = time.perf_counter()
    response.headers[REQUEST_ID_HEADER] = record.request_id
    overhead = max(0.0, record.response_started - record.started - record.upstream_seconds)
    response.headers[OVERHEAD_HEADER] = f"{overhead * 1000:.3f}"
    if record.stream:
        metrics.streams.inc()
    response.call_on_close(lambda: _close(metrics, record))
    return response


def _close(metrics: Metrics, record: RequestRecord) -> None:
    now = time.perf_counter()
    fields = record.fields(now)
    access_log.info(
        "%s %s %s %.1fms client=%s key=%s model=%s provider=%s attempts=%s cache=%s "
        "overhead=%.3fms cost_usd=%s%s",
        fields["method"],
        fields["path"],
        record.status,
        fields["total_ms"],
        fields["client"],
        record.key,
        fields["model"],
        record.provider,
        record.attempts,
        record.cache,
        fields["overhead_ms"],
        format_usd(record.cost_usd) if record.priced else "-",
        f" session={record.session}" if record.session else "",
        extra={"request_id": record.request_id, "fields": fields},
    )
    metrics.in_flight.dec()
    if record.stream:
        metrics.streams.dec()
    metrics.requests.labels(record.route, str(record.status)).inc()
    metrics.duration.labels(record.route).observe(now - record.started)
    if not record.stream and record.upstream_seconds:
        metrics.overhead.labels(record.route).observe(fields["overhead_ms"] / 1000)
    usage = record.usage
    if usage is not None:
        for kind, count in (
            ("prompt", usage.prompt_tokens),
            ("completion", usage.completion_tokens),
            ("cache_read", usage.cache_read_tokens),
            ("cache_write", usage.cache_write_tokens),
            ("cache_write_1h", usage.cache_write_1h_tokens),
            ("reasoning", usage.reasoning_tokens),
        ):
            if count:
                metrics.tokens.labels(record.key, record.model_label, kind).inc(count)


def init_app(app: Flask, metrics: Metrics) -> None:
    """Give every request a record, and log and measure it when its response closes."""
    app.before_request(lambda: _start(metrics))
    app.after_request(lambda response: _finish(metrics, response))
