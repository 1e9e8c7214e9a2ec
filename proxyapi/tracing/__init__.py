"""Opt-in OpenTelemetry tracing: a SERVER span per request, a CLIENT span per upstream attempt.

On when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, or
``tracing.enabled: true``; it needs the extra (``pip install -r requirements-tracing.txt``).
Off, the gateway imports nothing of OpenTelemetry (redis-py may, for its own optional
metrics) and installs no hook: the request path is the one it is without tracing. The spans
themselves are made in :mod:`proxyapi.tracing.spans`.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from flask import Flask

from proxyapi.config import Config, ConfigError

if TYPE_CHECKING:
    from proxyapi.tracing.spans import Tracing

__all__ = ["EXTENSION", "check", "init_app", "worker_exit"]

EXTENSION = "proxyapi.tracing"
INSTALL = "pip install -r requirements-tracing.txt"


def check(cfg: Config) -> None:
    """Refuse to start a traced gateway without the extra (gunicorn's master asks first)."""
    if cfg.tracing.enabled:
        _spans()


def _spans() -> ModuleType:
    try:
        from proxyapi.tracing import spans
    except ImportError as exc:
        if not (exc.name or "").startswith(("opentelemetry", "google")):
            raise
        raise ConfigError(
            "tracing is on (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or "
            f"tracing.enabled is set) but the tracing extra is not installed: {INSTALL} "
            f"(missing: {exc.name})"
        ) from None
    return spans


def init_app(app: Flask, cfg: Config) -> Tracing | None:
    """Install the request hooks when tracing is on and return the tracer; None when off."""
    if not cfg.tracing.enabled:
        return None
    tracing: Tracing = _spans().Tracing(cfg)
    app.extensions[EXTENSION] = tracing
    app.before_request(tracing.start_request)
    app.after_request(tracing.finish_request)
    return tracing


def worker_exit(worker: Any) -> None:
    """Send the spans a gunicorn worker still holds before it exits (its ``worker_exit``)."""
    app = getattr(worker, "wsgi", None)
    tracing = getattr(app, "extensions", {}).get(EXTENSION)
    if tracing is not None:
        tracing.shutdown()
